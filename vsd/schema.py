"""Arrow schemas of every table the system writes.

They are the contract with our users (the Parquet they train on) and between the jobs, so they
live in one place and every writer casts to them (a missing column is an error, not a silent
null). Boxes are normalised ``[x0, y0, x1, y1]`` in 0..1 (float32), converted once at the reader.
"""

from __future__ import annotations

import pyarrow as pa

PROMPT_VERSION = "vsd-prompts-v1"

BOX = pa.list_(pa.float32(), 4)

TASKS = {1: "classification", 2: "single_description", 3: "open_description"}

# One row per (triple, task) of the instruction dataset (`vsd data build`).
INSTRUCTION_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False, metadata={"doc": "unique row id: <record_id>-t<task>"}),
        pa.field("record_id", pa.string(), nullable=False, metadata={"doc": "<img_id>-p<triple_index>: equals the annotation row_id of the same pair"}),
        pa.field("dataset", pa.string(), metadata={"doc": "source: VSDv1+VSDv2, synthetic, ..."}),
        pa.field("img_id", pa.string(), metadata={"doc": "the source image id (VG id or file name)"}),
        pa.field("image", pa.string(), metadata={"doc": "path of the visual-prompt image, relative to the output"}),
        pa.field("source_image", pa.string(), metadata={"doc": "path/URI of the original image, if known"}),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("task", pa.int8(), nullable=False, metadata={"doc": "1 classification, 2 single, 3 open-ended"}),
        pa.field("task_name", pa.string()),
        pa.field("prompt", pa.string(), nullable=False, metadata={"doc": "the human turn, without <image>"}),
        pa.field("answer", pa.string(), nullable=False, metadata={"doc": "the gpt turn"}),
        pa.field("subject", pa.string()),
        pa.field("object", pa.string()),
        pa.field("relation", pa.string(), metadata={"doc": "one of relations.RELATIONS"}),
        pa.field("subject_box", BOX, metadata={"doc": "normalised xyxy"}),
        pa.field("object_box", BOX, metadata={"doc": "normalised xyxy"}),
        pa.field("references", pa.list_(pa.string()), metadata={"doc": "all captions of the record (evaluation)"}),
        pa.field("split", pa.string()),
        pa.field("prompt_version", pa.string()),
    ]
)

# One row per image x object pair (pair_index >= 0), or one per image at scene level (pair_index -1).
ANNOTATION_SCHEMA = pa.schema(
    [
        pa.field("row_id", pa.string(), nullable=False, metadata={"doc": "<image_id>-p<pair_index>: the exactly-once key"}),
        pa.field("image_id", pa.string(), nullable=False, metadata={"doc": "sha256 of the image bytes unless given"}),
        pa.field("source_uri", pa.string()),
        pa.field("pair_index", pa.int32(), metadata={"doc": "-1 at scene level"}),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("subject", pa.string()),
        pa.field("object", pa.string()),
        pa.field("subject_box", BOX, metadata={"doc": "normalised xyxy; null at scene level"}),
        pa.field("object_box", BOX),
        pa.field("relation", pa.string(), metadata={"doc": "task 1: one of the 9 relations"}),
        pa.field("relation_scores", pa.list_(pa.float32()), metadata={"doc": "task 1: log-prob per relation, RELATIONS order"}),
        pa.field("description", pa.string(), metadata={"doc": "task 2"}),
        pa.field("descriptions", pa.list_(pa.string()), metadata={"doc": "task 3"}),
        pa.field("refined_description", pa.string()),
        pa.field("refined_descriptions", pa.list_(pa.string())),
        pa.field("refine_status", pa.string(), metadata={"doc": "refined | partial | kept_original | skipped, with reasons in flags"}),
        pa.field("geometry_relation", pa.string(), metadata={"doc": "what 2-D box geometry decides, or null"}),
        pa.field("consistent", pa.bool_()),
        pa.field("flags", pa.list_(pa.string())),
        pa.field("status", pa.string(), nullable=False, metadata={"doc": "ok | error"}),
        pa.field("error", pa.string(), metadata={"doc": "<reason>: <detail> when status is error"}),
        pa.field("model", pa.string()),
        pa.field("adapter_sha256", pa.string()),
        pa.field("prompt_version", pa.string()),
        pa.field("run_id", pa.string()),
        pa.field("annotated_at", pa.timestamp("us", tz="UTC")),
    ]
)


def empty_row(schema: pa.Schema) -> dict:
    """A dict with every column of ``schema`` set to None (writers fill what they know)."""
    return {name: None for name in schema.names}


def to_table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Rows -> table in ``schema``; unknown keys are an error so a typo never drops a column."""
    names = set(schema.names)
    for row in rows:
        extra = set(row) - names
        if extra:
            raise KeyError(f"columns not in schema: {sorted(extra)}")
    return pa.Table.from_pylist([{n: row.get(n) for n in schema.names} for row in rows], schema=schema)
