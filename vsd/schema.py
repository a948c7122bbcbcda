"""Arrow schemas of every table the system writes, each column defined once (name, type, doc).

They are the contract with our users (the Parquet they train on) and between the jobs, so they
live in one place: the annotation row, the between-stage item of the annotation pipeline (derived
from the annotation columns, so adding a column is one line here), and the dataset card's column
table (from the docs) all come from the `Column` lists below. Writers go through `to_table`, which
refuses a row with an unknown or a missing key (also inside nested structs): a typo or a forgotten
column fails loudly instead of silently becoming null. Readers of older partitions use `conform`.
Boxes are normalised ``[x0, y0, x1, y1]`` in 0..1 (float32), converted once at the reader.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pyarrow as pa

PROMPT_VERSION = "vsd-prompts-v1"

BOX = pa.list_(pa.float32(), 4)

TASKS = {1: "classification", 2: "single_description", 3: "open_description"}


@dataclass(frozen=True)
class Column:
    """One column: its Arrow type and the one line a user reads in the dataset card."""

    name: str
    type: pa.DataType
    doc: str
    nullable: bool = True

    def field(self) -> pa.Field:
        return pa.field(self.name, self.type, nullable=self.nullable, metadata={"doc": self.doc})


def schema_of(columns: Iterable[Column]) -> pa.Schema:
    return pa.schema([c.field() for c in columns])


def doc(field: pa.Field) -> str:
    return (field.metadata or {}).get(b"doc", b"").decode()


# ----------------------------------------------------------------------------------------------
# Instruction dataset (`vsd data build`): one row per (triple, task)
# ----------------------------------------------------------------------------------------------

INSTRUCTION_COLUMNS = (
    Column("id", pa.string(), "unique row id: <record_id>-t<task>", nullable=False),
    Column(
        "record_id",
        pa.string(),
        "<img_id>-p<triple_index>: equals the annotation row_id of the same pair",
        nullable=False,
    ),
    Column("dataset", pa.string(), "source: VSDv1+VSDv2, synthetic, ..."),
    Column("img_id", pa.string(), "the source image id (VG id or file name)"),
    Column("image", pa.string(), "path of the visual-prompt image, relative to the output"),
    Column("source_image", pa.string(), "path/URI of the original image, if known"),
    Column("width", pa.int32(), "original image width in pixels"),
    Column("height", pa.int32(), "original image height in pixels"),
    Column("task", pa.int8(), "1 classification, 2 single, 3 open-ended", nullable=False),
    Column("task_name", pa.string(), "classification | single_description | open_description"),
    Column("prompt", pa.string(), "the human turn, without <image>", nullable=False),
    Column("answer", pa.string(), "the gpt turn", nullable=False),
    Column("subject", pa.string(), "the subject's name"),
    Column("object", pa.string(), "the object's name"),
    Column("relation", pa.string(), "one of relations.RELATIONS"),
    Column("subject_box", BOX, "normalised xyxy"),
    Column("object_box", BOX, "normalised xyxy"),
    Column("references", pa.list_(pa.string()), "all captions of the record (evaluation)"),
    Column("split", pa.string(), "train | heldout | val ..."),
    Column("prompt_version", pa.string(), "version of the task prompts the row was built with"),
)
INSTRUCTION_SCHEMA = schema_of(INSTRUCTION_COLUMNS)


# ----------------------------------------------------------------------------------------------
# Annotation rows (`vsd annotate`): one per image x object pair, or one per image at scene level
# ----------------------------------------------------------------------------------------------

# Where each column's value comes from decides where it lives in the pipeline's item: "image"
# columns once per image, "pair" columns once per pair, "run" columns stamped at write time.
IMAGE, PAIR, RUN = "image", "pair", "run"

ANNOTATION_COLUMNS: tuple[tuple[str, Column], ...] = (
    (RUN, Column("row_id", pa.string(), "<image_id>-p<pair_index>: the exactly-once key", nullable=False)),
    (
        IMAGE,
        Column(
            "image_id", pa.string(), "sha256 of the image bytes, unless the input gives an id", nullable=False
        ),
    ),
    (IMAGE, Column("source_uri", pa.string(), "where the image was read from")),
    (
        PAIR,
        Column(
            "pair_index",
            pa.int32(),
            "index of the pair in the input (given boxes) or in the propose stage's "
            "selection order (detected boxes); -1 at scene level",
        ),
    ),
    (IMAGE, Column("width", pa.int32(), "image width in pixels (after EXIF rotation)")),
    (IMAGE, Column("height", pa.int32(), "image height in pixels (after EXIF rotation)")),
    (PAIR, Column("subject", pa.string(), "the subject's name (drawn in red)")),
    (PAIR, Column("object", pa.string(), "the object's name (drawn in green)")),
    (PAIR, Column("subject_box", BOX, "subject box, normalised [x0, y0, x1, y1]; null at scene level")),
    (PAIR, Column("object_box", BOX, "object box, normalised [x0, y0, x1, y1]; null at scene level")),
    (
        PAIR,
        Column(
            "box_source",
            pa.string(),
            "given (the input's pair) | detected (the propose stage); null at scene level",
        ),
    ),
    (
        PAIR,
        Column(
            "subject_score", pa.float32(), "detector confidence of the subject's box; null for given boxes"
        ),
    ),
    (
        PAIR,
        Column("object_score", pa.float32(), "detector confidence of the object's box; null for given boxes"),
    ),
    (
        PAIR,
        Column(
            "pair_score",
            pa.float32(),
            "pair selection's score (0..1: confidence, size, proximity); null for given boxes",
        ),
    ),
    (
        PAIR,
        Column(
            "subject_depth", pa.float32(), "median depth inside the subject's box; null without a depth model"
        ),
    ),
    (
        PAIR,
        Column(
            "object_depth", pa.float32(), "median depth inside the object's box; null without a depth model"
        ),
    ),
    (
        PAIR,
        Column(
            "depth_kind",
            pa.string(),
            "how to read the depths: relative (larger = nearer) | metric (metres, "
            "larger = farther); null without depth",
        ),
    ),
    (PAIR, Column("relation", pa.string(), "task 1: one of the 9 relations")),
    (
        PAIR,
        Column(
            "relation_scores",
            pa.list_(pa.float32()),
            "task 1: log-likelihood per relation in RELATIONS order (engines that score; else null)",
        ),
    ),
    (PAIR, Column("description", pa.string(), "task 2: one sentence stating the relation")),
    (PAIR, Column("descriptions", pa.list_(pa.string()), "task 3: the descriptions, one per sentence")),
    (PAIR, Column("refined_description", pa.string(), "task 2 after refinement (the original when kept)")),
    (PAIR, Column("refined_descriptions", pa.list_(pa.string()), "task 3 after refinement")),
    (
        PAIR,
        Column(
            "description_source",
            pa.string(),
            "who wrote refined_description: model | refined (the refiner rewrote a model sentence) "
            "| model_completed (a forced opening stating task 1, ended by the model) | template "
            "(the forced opening alone); null when there is no refined_description",
        ),
    ),
    (
        PAIR,
        Column(
            "descriptions_source",
            pa.list_(pa.string()),
            "who wrote each sentence of refined_descriptions, same order and values as description_source",
        ),
    ),
    (
        PAIR,
        Column(
            "refine_status",
            pa.string(),
            "refined | partial | kept_original | skipped | filled (some published sentence is "
            "model_completed or template), reasons in flags",
        ),
    ),
    (
        PAIR,
        Column(
            "geometry_relation",
            pa.string(),
            "what the boxes' geometry decides (2-D, and depth when the boxes "
            "have depths), or null when it cannot",
        ),
    ),
    (PAIR, Column("consistent", pa.bool_(), "true when task 1, the descriptions and the geometry agree")),
    (PAIR, Column("flags", pa.list_(pa.string()), "findings of verify and refine (`<finding>:<where>`)")),
    (PAIR, Column("status", pa.string(), "ok | error", nullable=False)),
    (PAIR, Column("error", pa.string(), "<reason>: <detail> when status is error")),
    (RUN, Column("model", pa.string(), "the model that answered")),
    (RUN, Column("adapter_sha256", pa.string(), "hash of the LoRA adapter applied or merged, if any")),
    (RUN, Column("prompt_version", pa.string(), "version of the task prompts")),
    (RUN, Column("run_id", pa.string(), "the run that wrote the row")),
    (RUN, Column("annotated_at", pa.timestamp("us", tz="UTC"), "when the row was written (UTC)")),
)
ANNOTATION_SCHEMA = schema_of(c for _, c in ANNOTATION_COLUMNS)


def annotation_columns(level: str) -> tuple[Column, ...]:
    return tuple(c for lvl, c in ANNOTATION_COLUMNS if lvl == level)


# ----------------------------------------------------------------------------------------------
# The annotation pipeline's item: one image with all its pairs (derived from the columns above)
# ----------------------------------------------------------------------------------------------

# Working fields: they travel between stages and never reach the output.
PAIR_WORKING = (Column("view", pa.int32(), "index into the item's views: the JPEG this pair is asked about"),)
ITEM_WORKING = (
    Column("shard", pa.string(), "the input shard the image came from (its completion is tracked per shard)"),
    Column("shard_row", pa.int64(), "the image's row in that shard: with the shard, who claims the image"),
    Column("given_id", pa.bool_(), "image_id came from the input (not the content hash): its own key space"),
    Column(
        "source_key",
        pa.string(),
        "uri|size|version[|id=<given id>]: lets a rerun skip a known corpus entry unread",
    ),
    Column("data", pa.binary(), "the original bytes; dropped after preprocess"),
    Column("views", pa.list_(pa.binary()), "prepared JPEGs sent to the engine"),
)
_ITEM_STATUS = ("status", "error")  # image-level status/error: the pair columns' definitions

PAIR_STRUCT = pa.struct([c.field().with_nullable(True) for c in annotation_columns(PAIR) + PAIR_WORKING])
ITEM_SCHEMA = schema_of(
    annotation_columns(IMAGE)
    + ITEM_WORKING
    + (Column("pairs", pa.list_(PAIR_STRUCT), "the image's pairs, in input order"),)
    + tuple(c for c in annotation_columns(PAIR) if c.name in _ITEM_STATUS)
)
ITEM_SCHEMA = pa.schema([f.with_nullable(True) for f in ITEM_SCHEMA])  # items are filled stage by stage


# ----------------------------------------------------------------------------------------------
# Rows <-> tables
# ----------------------------------------------------------------------------------------------


class SchemaMismatch(KeyError):
    """A row does not have exactly the schema's keys: a writer's bug, never silently dropped."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def _check(value: object, tp: pa.DataType, where: str) -> None:
    if value is None:
        return
    if pa.types.is_struct(tp):
        if not isinstance(value, dict):
            raise SchemaMismatch(f"{where}: expected a mapping, got {type(value).__name__}")
        names = [tp.field(i).name for i in range(tp.num_fields)]
        _check_keys(value, names, where)
        for i, name in enumerate(names):
            _check(value[name], tp.field(i).type, f"{where}.{name}")
    elif pa.types.is_list(tp) or pa.types.is_fixed_size_list(tp) or pa.types.is_large_list(tp):
        inner = tp.value_type
        if pa.types.is_struct(inner):
            for i, v in enumerate(value):  # type: ignore[arg-type]
                _check(v, inner, f"{where}[{i}]")


def _check_keys(row: dict, names: Sequence[str], where: str) -> None:
    if len(row) == len(names) and all(n in row for n in names):
        return
    extra = sorted(set(row) - set(names))
    missing = [n for n in names if n not in row]
    parts = []
    if extra:
        parts.append(f"not in the schema: {extra}")
    if missing:
        parts.append(f"missing: {missing}")
    raise SchemaMismatch(f"{where}: keys {'; '.join(parts)}")


def to_table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Rows -> table in ``schema``; every row must have exactly the schema's keys, nested structs
    included (``pa.Table.from_pylist`` alone would drop an unknown key and null a missing one)."""
    names = schema.names
    nested = [
        (f.name, f.type)
        for f in schema
        if pa.types.is_struct(f.type) or (pa.types.is_list(f.type) and pa.types.is_struct(f.type.value_type))
    ]
    for i, row in enumerate(rows):
        _check_keys(row, names, f"row {i}")
        for name, tp in nested:
            _check(row[name], tp, f"row {i}.{name}")
    return pa.Table.from_pylist(rows, schema=schema)


def empty_row(schema: pa.Schema) -> dict:
    """A dict with every column of ``schema`` set to None (writers fill what they know)."""
    return {name: None for name in schema.names}


def conform(table: pa.Table, schema: pa.Schema = ANNOTATION_SCHEMA) -> pa.Table:
    """A table read from an older partition, in today's ``schema``: columns added since are null,
    columns no longer written are dropped, order and types as ``schema`` says."""
    columns = []
    for field in schema:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=schema.with_metadata(None)) if columns else table


def column_docs(schema: pa.Schema = ANNOTATION_SCHEMA) -> list[tuple[str, str, str]]:
    """(name, type, doc) per column: the dataset card's column table."""
    return [(f.name, str(f.type), doc(f)) for f in schema]
