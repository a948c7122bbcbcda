"""Write stage: image items -> ``ANNOTATION_SCHEMA`` Parquet parts, committed exactly once.

A part holds whole images (every pair row of an image lands in the same file), is named
``part-<sha256 of its sorted row_ids, 20 hex>.parquet`` (a retried task rewrites the same file,
never a second one) and is written in one atomic PUT / rename. Its ``_index/`` entry follows; see
`vsd.annotate.index` for why the part itself is the commit. Each call returns one summary row of
counts that the driver sums for ``_manifest.json``, which is written last, after every part.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from vsd import storage
from vsd.annotate.index import PART_PREFIX, partition, write_index_entry
from vsd.annotate.items import from_table
from vsd.annotate.stages.base import RunContext, Resources, enabled_always, map_stage, resources
from vsd.schema import ANNOTATION_SCHEMA, IMAGE, PAIR, annotation_columns, to_table

if TYPE_CHECKING:
    from vsd.annotate.config import AnnotateConfig

NAME = "write"
HELP = "Parquet parts of whole images, each committed once, then its index entry (CPU tasks)"
enabled = enabled_always

SUMMARY_SCHEMA = pa.schema([pa.field("part", pa.string()), pa.field("counts", pa.string())])
COUNT_COLUMNS = ["status", "error", "relation", "refine_status", "consistent"]


@dataclass
class WriteStageConfig:
    resources: Resources = resources("CPU tasks; batch_size = images per Parquet part (default 256): larger = "
                                     "fewer, bigger files; a crash loses at most the parts in flight", num_cpus=0.25)


Config = WriteStageConfig


def add(ds, cfg: AnnotateConfig, ctx: RunContext):
    return map_stage(ds, write_parts, cfg.stages.write.resources, default_batch=256, keeps_rows=False,
                     kwargs={"meta": ctx.meta})


@dataclass(frozen=True)
class RunMeta:
    """What every row of one run carries besides its annotation (and where the run writes)."""

    output: str
    run_date: str
    run_id: str
    model: str
    adapter_sha256: str | None
    prompt_version: str


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
            model=meta.model, adapter_sha256=meta.adapter_sha256, prompt_version=meta.prompt_version,
            run_id=meta.run_id, annotated_at=now,
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


def count_rows(table: pa.Table) -> dict:
    """Counts over annotation rows: ok, error by reason, relation histogram, refine status."""
    cols = {c: table.column(c).to_pylist() for c in COUNT_COLUMNS}
    out = {"rows": table.num_rows, "ok": 0, "error": Counter(), "relations": Counter(),
           "refine_status": Counter(), "inconsistent": 0}
    for status, error, relation, refine_status, consistent in zip(*(cols[c] for c in COUNT_COLUMNS)):
        if status == "ok":
            out["ok"] += 1
            out["relations"][relation or "none"] += 1
            if refine_status:
                out["refine_status"][refine_status] += 1
            out["inconsistent"] += consistent is False
        else:
            out["error"][error_reason(error)] += 1
    return out


def merge_counts(total: dict, part: dict) -> dict:
    for key, value in part.items():
        if isinstance(value, dict):
            total.setdefault(key, Counter()).update(value)
        else:
            total[key] = total.get(key, 0) + value
    return total


def plain(counts: dict) -> dict:
    """Counters -> sorted plain dicts (for JSON and stable output)."""
    return {k: (dict(sorted(v.items())) if isinstance(v, dict) else v) for k, v in counts.items()}


def write_parts(batch: pa.Table, *, meta: RunMeta) -> pa.Table:
    """The Ray Data ``map_batches`` function of this stage: one part per batch of images."""
    items = from_table(batch)
    if not items:
        return SUMMARY_SCHEMA.empty_table()
    now = dt.datetime.now(dt.timezone.utc)
    rows = sorted((r for item in items for r in annotation_rows(item, meta, now)), key=lambda r: r["row_id"])
    table = to_table(rows, ANNOTATION_SCHEMA)
    name = part_name([r["row_id"] for r in rows])
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    storage.write_bytes(storage.join(meta.output, partition(meta.run_date), name), sink.getvalue().to_pybytes())
    write_index_entry(meta.output, meta.run_date, name, [i["image_id"] for i in items], [i["source_key"] for i in items])
    counts = count_rows(table)
    counts["images"] = len(items)
    return pa.table({"part": [name], "counts": [json.dumps(plain(counts))]}, schema=SUMMARY_SCHEMA)


def scan_counts(uris: list[str]) -> dict:
    """Counts over existing parts, read column by column in batches (memory flat in corpus size)."""
    total: dict = {"rows": 0, "ok": 0, "error": Counter(), "relations": Counter(), "refine_status": Counter(),
                   "inconsistent": 0}
    if not uris:
        return total
    fs, _ = storage.resolve(uris[0])
    dataset = pads.dataset([storage.resolve(u)[1] for u in uris], filesystem=fs, format="parquet")
    for record_batch in dataset.to_batches(columns=COUNT_COLUMNS):
        merge_counts(total, count_rows(pa.Table.from_batches([record_batch])))
    return total


def write_json(uri: str, data: dict) -> None:
    storage.write_text(uri, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
