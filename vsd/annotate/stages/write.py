"""Write stage: image items -> ``ANNOTATION_SCHEMA`` Parquet parts, committed exactly once.

A part holds whole images (every pair row of an image lands in the same file), is named
``part-<sha256 of its sorted row_ids, 20 hex>.parquet`` (a retried task rewrites the same file,
never a second one) and is written in one atomic PUT / rename. Before it, the part's progress
entry is written (`vsd.annotate.index`: its images' keys and shard rows); an entry whose part
never arrived is dropped by the next reader, so a part is never written without its entry. The
run's ledger is asked first whether each image is already committed to another part (a
re-executed upstream task after a node loss can send an image twice): such an image is dropped.
Each call returns one summary row (counts, images per input shard) that the driver sums.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from vsd import storage
from vsd.annotate.index import PART_PREFIX, Output, image_key, listing_key, plain
from vsd.annotate.items import from_table
from vsd.annotate.output.table import FILE_SCHEMA
from vsd.annotate.redo import REDO_PREFIX
from vsd.annotate.run_meta import RunMeta
from vsd.annotate.stages.base import Resources, RunContext, enabled_always, map_stage, resources
from vsd.corpus.listing import uri_key
from vsd.schema import ANNOTATION_SCHEMA, IMAGE, PAIR, annotation_columns, to_table

if TYPE_CHECKING:
    from vsd.annotate.config import AnnotateConfig

NAME = "write"
HELP = "Parquet parts of whole images, each committed once after its progress entry (CPU tasks)"
enabled = enabled_always

SUMMARY_SCHEMA = pa.schema(
    [pa.field("part", pa.string()), pa.field("counts", pa.string()), pa.field("shards", pa.string())]
)
COUNT_COLUMNS = ["status", "error", "relation", "refine_status", "consistent", "pair_index", "flags"]


@dataclass
class WriteStageConfig:
    resources: Resources = resources(
        "CPU tasks; batch_size = images per Parquet part (default 256): larger = "
        "fewer, bigger files; a crash loses at most the parts in flight",
        num_cpus=0.25,
    )


Config = WriteStageConfig


def add(ds, cfg: AnnotateConfig, ctx: RunContext):
    return map_stage(
        ds,
        write_parts,
        cfg.stages.write.resources,
        default_batch=256,
        keeps_rows=False,
        kwargs={"meta": ctx.meta, "ledger": ctx.ledger},
    )


def row_id(image_id: str, pair_index: int) -> str:
    return f"{image_id}-p{pair_index}"


_PAIR_OUT = [c.name for c in annotation_columns(PAIR)]
_IMAGE_OUT = [c.name for c in annotation_columns(IMAGE)]


def annotation_rows(item: dict, meta: RunMeta, now: dt.datetime) -> list[dict]:
    """One ``ANNOTATION_SCHEMA`` row per pair of an item (an image error repeats on every pair).

    Which value comes from where follows the column's level in `vsd.schema`; `to_table` then
    refuses a row that misses a column or carries one the schema does not know."""
    rows = []
    for pair in item["pairs"]:
        row = {k: pair[k] for k in _PAIR_OUT}
        row.update({k: item[k] for k in _IMAGE_OUT})
        row.update(
            row_id=row_id(item["image_id"], pair["pair_index"]),
            model=meta.model,
            adapter_sha256=meta.adapter_sha256,
            prompt_version=meta.prompt_version,
            run_id=meta.run_id,
            annotated_at=now,
        )
        if row["status"] == "error":  # an error row carries its reason, not half an annotation
            row.update(consistent=None)
        rows.append(row)
    return rows


def part_name(row_ids: list[str]) -> str:
    digest = hashlib.sha256("\n".join(sorted(row_ids)).encode("utf-8")).hexdigest()[:20]
    return f"{PART_PREFIX}{digest}.parquet"


def error_reason(error: str | None) -> str:
    return (error or "unknown").split(":", 1)[0].strip() or "unknown"


def flag_kind(flag: str) -> str:
    """What a flag says, without its detail: ``repaired:task3.1 (missing)`` -> ``repaired:task3``,
    ``refine:task2: <reason>`` -> ``refine:task2``."""
    kind = flag.split(" (", 1)[0]
    if kind.startswith("refine:"):
        kind = ":".join(kind.split(":")[:2])
    head, _, tail = kind.rpartition(".")
    return head if head and tail.isdigit() else kind.strip()


def count_rows(table: pa.Table) -> dict:
    """Counts over annotation rows: ok, error by reason, relation histogram, refine status, and
    rows per flag kind (truncated, repaired, disagreeing ... -- what the card shows)."""
    cols = {c: table.column(c).to_pylist() for c in COUNT_COLUMNS}
    out = {
        "rows": table.num_rows,
        "ok": 0,
        "error": Counter(),
        "relations": Counter(),
        "refine_status": Counter(),
        "inconsistent": 0,
        "scene_level": 0,
        "flags": Counter(),
    }
    for status, error, relation, refine_status, consistent, pair_index, flags in zip(
        *(cols[c] for c in COUNT_COLUMNS)
    ):
        out["flags"].update({flag_kind(f) for f in flags or ()})
        if status == "ok":
            out["ok"] += 1
            if pair_index == -1:  # an image without pairs: described as a scene, no relation to count
                out["scene_level"] += 1
            else:
                out["relations"][relation or "none"] += 1
            if refine_status:
                out["refine_status"][refine_status] += 1
            out["inconsistent"] += consistent is False
        else:
            out["error"][error_reason(error)] += 1
    return plain(out)


def write_parts(batch: pa.Table, *, meta: RunMeta, ledger=None) -> pa.Table:
    """The Ray Data ``map_batches`` function of this stage: one part per batch of images."""
    import ray

    items = from_table(batch)
    if not items:
        return SUMMARY_SCHEMA.empty_table()
    now = dt.datetime.now(dt.timezone.utc)
    # A redone image writes its row ids again: its redo shard (named for the run) joins the name,
    # so the new part never overwrites the old file, which earlier versions still read.
    redone = sorted({i["shard"] for i in items if (i["shard"] or "").startswith(REDO_PREFIX)})
    name = part_name([row_id(i["image_id"], p["pair_index"]) for i in items for p in i["pairs"]] + redone)
    keys = [image_key(i["image_id"], bool(i["given_id"])) for i in items]
    if ledger is not None:
        keep = ray.get(ledger.commit.remote(name, keys))
        items = [i for i, k in zip(items, keep) if k]
        keys = [k for k, ok in zip(keys, keep) if ok]
    if not items:
        return SUMMARY_SCHEMA.empty_table()
    rows = sorted((r for item in items for r in annotation_rows(item, meta, now)), key=lambda r: r["row_id"])
    table = to_table(rows, ANNOTATION_SCHEMA).cast(FILE_SCHEMA)
    counts = count_rows(table)
    counts["images"] = len(items)
    out = Output(meta.output)
    entries = pa.table(
        {
            "image_id": [i["image_id"] for i in items],
            "image_key": keys,
            "source_key": [listing_key(i["source_key"]) if i["source_key"] else None for i in items],
            "uri_key": [uri_key(i["source_uri"]) if i["source_uri"] else None for i in items],
            "shard": [i["shard"] for i in items],
            "row": [i["shard_row"] for i in items],
        }
    )
    out.write_progress(meta.run_id, name, meta.run_date, entries, counts)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    storage.write_bytes(out.data_part(meta.run_date, name), sink.getvalue().to_pybytes())
    shards = Counter(i["shard"] for i in items if i["shard"])
    return pa.table(
        {"part": [name], "counts": [json.dumps(counts)], "shards": [json.dumps(dict(shards))]},
        schema=SUMMARY_SCHEMA,
    )
