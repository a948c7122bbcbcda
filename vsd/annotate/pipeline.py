"""The annotation job: read ▸ preprocess ▸ generate ▸ verify ▸ refine ▸ write, on Ray Data.

Streaming end to end: the driver holds the source plan (URIs and pairs, no bytes) and one small
summary row per written part; images flow through the stages in batches and land in Parquet
parts as they finish, so memory stays flat as the corpus grows and a crash loses only the
parts in flight. The done set lives in the `IdLedger` actor, not the driver.

Order of the end of a run: every part (each followed by its ``_index/`` entry), then the dataset
card, then ``_runs/<run_id>.json``, then ``run_date=…/_manifest.json`` last: a manifest present
means its run finished.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa

from vsd import storage
from vsd.annotate.card import render_card
from vsd.annotate.config import AnnotateConfig, scrub
from vsd.annotate.index import IdLedger, part_uris, partition
from vsd.annotate.source import SourcePlan, plan_source
from vsd.annotate.stages import RunContext, build_dataset
from vsd.annotate.stages.write import RunMeta, merge_counts, plain, scan_counts, write_json
from vsd.config import to_dict
from vsd.schema import PROMPT_VERSION

log = logging.getLogger(__name__)

@dataclass
class RunResult:
    """What a run did: ``counts`` for this run, ``manifest`` as written, where it wrote."""

    output: str
    run_date: str
    run_id: str
    counts: dict
    manifest: dict = field(default_factory=dict)
    parts: list[str] = field(default_factory=list)


def new_run_id(run_date: str) -> str:
    return f"{run_date}T{dt.datetime.now(dt.timezone.utc):%H%M%S}-{uuid.uuid4().hex[:6]}"


def adapter_hash(model: str, adapter: str | None) -> str | None:
    """The LoRA adapter's hash: of ``adapter`` if one is applied, else the one a merged export
    (``vsd export``) recorded, so rows from a merged model still name their adapter."""
    from vsd.model.export import adapter_sha256, export_info

    if adapter:
        return adapter_sha256(adapter)
    if ":" in model and not storage.is_s3(model):  # tiny:llava and other built-in names
        return None
    if not (storage.is_s3(model) or storage.exists(model)):  # a hub id
        return None
    return export_info(model).get("adapter_sha256")


def planned_dataset(plan: SourcePlan, block: int):
    """The plan as a Ray dataset of small blocks, so read tasks start while others are planned."""
    import ray.data

    table = plan.table
    block = max(1, block)
    return ray.data.from_arrow([table.slice(i, block) for i in range(0, table.num_rows, block)])


def drop_known(plan: SourcePlan, ledger, chunk: int = 10_000) -> int:
    """Drop from the plan what the ledger already knows is written (by given id or by unchanged
    ``uri|size|mtime``), before any task starts: a nightly run over an unchanged corpus then reads
    no bytes and loads no model. Claims are idempotent per URI, so the read stage's own claim of
    the remaining items agrees. Returns how many were dropped."""
    import ray

    keep, table = [], plan.table
    for start in range(0, table.num_rows, chunk):
        part = table.slice(start, chunk)
        entries = list(zip(part.column("image_id").to_pylist(), part.column("source_key").to_pylist(),
                           part.column("source_uri").to_pylist()))
        verdicts = ray.get(ledger.claim.remote(entries))
        keep.append(part.filter(pa.array([v in ("new", "unknown") for v in verdicts], pa.bool_())))
    plan.table = pa.concat_tables(keep) if keep else table
    return table.num_rows - plan.table.num_rows


def _all_done_locally(plan: SourcePlan, output: str) -> dict | None:
    """The ledger's report when every planned image is already written (by given id or unchanged
    ``uri|size|mtime``), decided in the driver with the same ``IdLedger`` logic; else None. Costs
    one read of the output's small ``_index/`` files, repeated by the Ray ledger when work remains."""
    if not storage.exists(output):
        return None
    ledger = IdLedger(output)
    if not ledger.parts_before:
        return None
    table = plan.table
    entries = zip(table.column("image_id").to_pylist(), table.column("source_key").to_pylist(),
                  table.column("source_uri").to_pylist())
    if all(verdict == "done" for verdict in ledger.claim(list(entries))):
        return ledger.report()
    return None


def run_annotation(cfg: AnnotateConfig, *, engine_factory: Callable | None = None,
                   echo: Callable[[str], None] = print) -> RunResult:
    """Annotate what ``cfg.input`` holds and ``cfg.output`` lacks; returns this run's counts."""
    import ray
    from ray.data import DataContext

    cfg.check_paths()
    started = time.time()
    run_date = cfg.resolved_run_date()
    run_id = cfg.run_id or new_run_id(run_date)
    meta = RunMeta(output=cfg.output.rstrip("/"), run_date=run_date, run_id=run_id, model=cfg.engine.model,
                   adapter_sha256=adapter_hash(cfg.engine.model, cfg.engine.adapter), prompt_version=PROMPT_VERSION)

    src = cfg.input
    plan = plan_source(src.uri, src.format, src.image_dir, src.vsd2, src.extensions)
    for line in plan.duplicates[:20]:
        echo(f"duplicate in source (skipped): {line}")
    for line in plan.problems[:20]:
        echo(f"source problem (skipped): {line}")
    planned_s = time.time() - started

    counts: dict = {"images": 0, "rows": 0, "ok": 0}
    parts: list[str] = []
    ledger_report = {"skipped_done": 0, "skipped_duplicate": 0, "duplicates": []}
    planned = len(plan)
    if not planned:
        echo(f"no images found under {src.uri}: nothing to annotate")
    elif (done := _all_done_locally(plan, meta.output)) is not None:
        # The nightly run over an unchanged corpus: nothing to read, so no Ray cluster, no model.
        ledger_report = done
        echo(f"{planned} images planned from {src.uri} ({plan.kind}); all already annotated in "
             f"{cfg.output}: nothing to do")
    else:
        if not ray.is_initialized():
            ray.init()
        DataContext.get_current().enable_progress_bars = cfg.progress_bars
        ledger = ray.remote(IdLedger).options(num_cpus=0).remote(meta.output)
        try:  # a failed run (full disk, S3 outage) must not leave its ledger -- and the done set -- alive
            before = ray.get(ledger.report.remote())  # also surfaces a broken output before any work
            known = drop_known(plan, ledger)
            echo(f"{planned} images planned from {src.uri} ({plan.kind}); {known} already annotated in "
                 f"{cfg.output} ({before['images_done_before']} images there); {len(plan)} to read")
            if len(plan):
                ctx = RunContext(meta=meta, ledger=ledger, engine_factory=engine_factory)
                read_block = cfg.stages.read.resources.batch_size or 32
                ds = build_dataset(planned_dataset(plan, read_block), cfg, ctx)
                for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                    for part, blob in zip(batch.column("part").to_pylist(), batch.column("counts").to_pylist()):
                        parts.append(part)
                        merge_counts(counts, json.loads(blob))
            ledger_report = ray.get(ledger.report.remote())
        finally:
            ray.kill(ledger)
    pipeline_s = time.time() - started - planned_s

    counts = plain(counts)
    counts["skipped"] = {"already_annotated": ledger_report["skipped_done"],
                         "duplicate_content": ledger_report["skipped_duplicate"],
                         "duplicate_in_source": len(plan.duplicates),
                         "source_problems": len(plan.problems)}
    counts["unaccounted"] = planned - counts.get("images", 0) - ledger_report["skipped_done"] - ledger_report["skipped_duplicate"]
    if counts["unaccounted"]:
        log.error("%d planned images neither written nor skipped", counts["unaccounted"])
    result = RunResult(output=cfg.output, run_date=run_date, run_id=run_id, counts=counts, parts=sorted(parts))
    result.manifest = finish(cfg, meta, plan, planned, result, ledger_report,
                             timings={"plan_s": round(planned_s, 3), "pipeline_s": round(pipeline_s, 3)}, started=started)
    return result


def finish(cfg: AnnotateConfig, meta: RunMeta, plan: SourcePlan, planned: int, result: RunResult, ledger_report: dict,
           timings: dict, started: float) -> dict:
    """Dataset card, the run's record, then the partition's ``_manifest.json`` -- in that order."""
    data, _ = part_uris(meta.output)
    in_partition = [u for k, u in sorted(data.items()) if k.startswith(partition(meta.run_date) + "/")]
    runs = sorted({k.split("/", 1)[0].split("=", 1)[1] for k in data})
    card_counts = plain(scan_counts(list(data.values())))
    storage.write_text(storage.join(meta.output, "README.md"), render_card(card_counts, runs, meta.model))
    total_s = time.time() - started
    images = result.counts.get("images", 0)
    manifest = {
        "run_id": meta.run_id,
        "run_date": meta.run_date,
        "started_at": dt.datetime.fromtimestamp(started, dt.timezone.utc).isoformat(),
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "input": cfg.input.uri,
        "output": cfg.output,
        "source": {"kind": plan.kind, "planned_images": planned,
                   "duplicates": (plan.duplicates + ledger_report["duplicates"])[:1000],
                   "problems": plan.problems[:1000]},
        "model": meta.model,
        "adapter_sha256": meta.adapter_sha256,
        "prompt_version": meta.prompt_version,
        "counts": result.counts,
        "partition_totals": plain(scan_counts(in_partition)),
        "parts": result.parts,
        "timings": {**timings, "total_s": round(total_s, 3),
                    "images_per_s": round(images / timings["pipeline_s"], 3) if timings["pipeline_s"] > 0 else None},
        "config": scrub(to_dict(cfg)),
    }
    write_json(storage.join(meta.output, "_runs", f"{meta.run_id}.json"), manifest)
    write_json(storage.join(meta.output, partition(meta.run_date), "_manifest.json"), manifest)
    return manifest


def format_counts(counts: dict) -> str:
    """The closing lines of `vsd annotate`: ok, error by reason, skipped."""
    errors = counts.get("error", {})
    skipped = counts.get("skipped", {})
    lines = [f"images: {counts.get('images', 0)}  rows: {counts.get('rows', 0)}  ok: {counts.get('ok', 0)}  "
             f"error: {sum(errors.values())}  skipped: {sum(skipped.values())}"]
    lines += [f"  error {reason}: {n}" for reason, n in sorted(errors.items())]
    lines += [f"  skipped {why}: {n}" for why, n in skipped.items() if n]
    return "\n".join(lines)

