"""The annotation job: input shards ▸ read ▸ preprocess ▸ generate ▸ verify ▸ refine ▸ write.

A night's cost follows what is new. The input is a corpus of immutable shards (`vsd.corpus`):
given directly (``--input`` a corpus root, made by `vsd corpus sync`), or made here from a
folder, prefix, manifest or VSD JSON into ``<output>/__vsd/corpus/`` (only what appeared since
the last run becomes a new shard). Planning is two listings -- the shards and the output's
completion markers -- so a night with nothing new ends in seconds without starting Ray. The
unfinished shards stream through the stages (`vsd.annotate.stages`) from Ray Data's Parquet
reader; the driver holds one summary row per written part. "Already annotated" is looked up
inside the read tasks in the output's bucketed key set, never in one process.

The end of a run, in order: completion markers of the shards it finished, compaction of the
progress entries into the key set and the totals (`vsd.annotate.index`), the dataset card from the
totals, the partition's record, then the run's own record last: a record present means its run
finished.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from vsd import storage
from vsd.annotate.card import render_card
from vsd.annotate.config import AnnotateConfig
from vsd.annotate.index import IdLedger, Output, merge_counts, partition, plain
from vsd.annotate.memory import release_unused
from vsd.annotate.output import maintain as maintenance
from vsd.annotate.output import released, table
from vsd.annotate.output.commits import (
    Committer,
    Provenance,
    adopt_existing,
    check_run_id,
    config_digest,
    sweep,
    write_start_record,
)
from vsd.annotate.output.lease import Lease
from vsd.annotate.output.prune import prune
from vsd.annotate.redo import Request, add_to_run
from vsd.annotate.run_meta import RunMeta
from vsd.annotate.stages import RunContext, build_dataset
from vsd.annotate.stages.read import shard_rows
from vsd.corpus import Corpus, Shard, sync
from vsd.corpus.listing import ListingResult
from vsd.corpus.merge import unfinished
from vsd.raycluster import connect
from vsd.redact import redact_config, redact_text
from vsd.schema import PROMPT_VERSION
from vsd.text import printable

log = logging.getLogger(__name__)

# Ray's core worker logs an error-level line for every actor pool whose constructor arguments sit
# in the object store; for this pipeline it is expected, so it is explained once instead.
RAY_ACTOR_NOTE = (
    "note: Ray logs 'has constructor arguments in the object store and max_restarts > 0' for the "
    "engine actors: harmless here -- the arguments are this run's configs, which the driver holds "
    "until the run ends, so a restarted actor still finds them"
)


@dataclass
class RunResult:
    """What a run did: ``counts`` for this run, ``manifest`` (its record) as written, where it wrote."""

    output: str
    run_date: str
    run_id: str
    counts: dict
    manifest: dict = field(default_factory=dict)
    parts: list[str] = field(default_factory=list)


@dataclass
class InputPlan:
    """What the run will read: the corpus, its unfinished shards, and what the sync reported."""

    corpus: Corpus
    kind: str
    todo: list[Shard]
    shards: int
    new_rows: int = 0
    problems: list[str] = field(default_factory=list)
    repeated: list[str] = field(default_factory=list)
    repeats: int = 0
    listing: ListingResult | None = None

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.todo)


def new_run_id(run_date: str) -> str:
    return f"{run_date}T{dt.datetime.now(dt.timezone.utc):%H%M%S}-{uuid.uuid4().hex[:6]}"


def adapter_hash(model: str, adapter: str | None) -> str | None:
    """The LoRA adapter's hash: of ``adapter`` if one is applied, else the one a merged export
    (``vsd export``) recorded, so rows from a merged model still name their adapter."""
    if adapter:
        from vsd.model.export import adapter_sha256

        return adapter_sha256(adapter)
    if ":" in model and not storage.is_s3(model):  # tiny:llava and other built-in names
        return None
    if not (storage.is_s3(model) or storage.exists(model)):  # a hub id
        return None
    from vsd.model.export import export_info  # imports torch: only when there is an export to read

    return export_info(model).get("adapter_sha256")


def plan_input(cfg: AnnotateConfig, out: Output) -> InputPlan:
    """The input's shards (syncing an implicit corpus first) minus those the output finished."""
    src = cfg.input
    if src.format == "corpus" or (src.format == "auto" and Corpus.is_corpus(src.uri)):
        corpus, kind, new_rows, problems, repeated = Corpus.open(src.uri), "corpus", 0, [], []
        repeats, listing = 0, None
    else:
        corpus = Corpus.open_or_create(out.path("corpus"))
        report = sync(
            corpus,
            src.uri,
            src.format,
            src.image_dir,
            src.vsd2,
            src.extensions,
            shard_rows=cfg.input.shard_rows,
            follow_dir_links=src.follow_dir_links,
            allowed_roots=src.allowed_roots,
            prune=src.prune,
        )
        kind, new_rows, problems, repeated = report.source.kind, report.new, report.problems, report.repeated
        repeats, listing = report.repeats, report.listing
    shards = corpus.shards()
    todo, carried = unfinished(shards, out.finished_shards())
    for shard in carried:  # merged from shards this output finished: nothing in it to read
        out.write_marker(shard.name, {"shard": shard.uri, "rows": shard.rows, "merged": True})
    return InputPlan(corpus, kind, todo, len(shards), new_rows, problems, repeated, repeats, listing)


def _ledger(output: str, run_id: str):
    """The claim desk, on this (the driver's) node: a worker node's loss never takes it along;
    if its process dies it is restarted and rebuilds from this run's progress entries."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    return (
        ray.remote(IdLedger)
        .options(
            num_cpus=0,
            max_restarts=-1,
            max_task_retries=-1,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=False),
        )
        .remote(output, run_id)
    )


def _stream(
    cfg: AnnotateConfig, plan: InputPlan, meta: RunMeta, out: Output, engine_factory, committer: Committer
) -> tuple[dict, dict, dict]:
    """Run the pipeline over the unfinished shards, committing the parts to the table as they
    come; returns (counts, {"parts": names, "written": images per shard}) and the ledger's report.
    Per part the driver keeps its name only (a run of 100M images has millions): its counts are
    summed as they come, so the driver's memory does not grow with a part's counts."""
    import ray

    from vsd.annotate.console import ray_data_console
    from vsd.annotate.progress import Progress

    ray_data_console(cfg.progress_bars)
    ledger = _ledger(meta.output, meta.run_id)
    progress = Progress(plan.rows, in_place=False if cfg.progress_bars else None)
    counts: dict = {}
    parts: set[str] = set()
    written: Counter = Counter()
    try:  # a failed run (full disk, S3 outage) must not leave its ledger alive
        ds = shard_rows([s.uri for s in plan.todo], cfg.stages.read.resources.batch_size or 32)
        ctx = RunContext(
            meta=meta,
            ledger=ledger,
            ids=out.ids().snapshot(),
            released=released.load(out.released),
            roots=sorted(set(plan.corpus.roots) | set(cfg.input.allowed_roots)),
            engine_factory=engine_factory,
        )
        for batch in build_dataset(ds, cfg, ctx).iter_batches(batch_size=None, batch_format="pyarrow"):
            for part, blob, shards in zip(
                *(batch.column(c).to_pylist() for c in ("part", "counts", "shards"))
            ):
                if part in parts:  # a re-executed write after a node loss reports its part again
                    continue
                parts.add(part)
                got = json.loads(blob)
                merge_counts(counts, got)
                progress.update(got)
                written.update(json.loads(shards))
                committer.add(table.Part(meta.run_date, part, got.get("rows")))
        committer.flush()
        progress.close()
        report = ray.get(ledger.report.remote())
    finally:
        ray.kill(ledger)
    return counts, {"parts": parts, "written": dict(written)}, report


def run_annotation(
    cfg: AnnotateConfig,
    *,
    engine_factory: Callable | None = None,
    echo: Callable[[str], None] = print,
    ray_address: str | None = None,
    redo: Request | None = None,
) -> RunResult:
    """Annotate what ``cfg.input`` holds and ``cfg.output`` lacks, and the rows ``redo`` selects
    again (`vsd.annotate.redo`); returns this run's counts."""
    cfg.check_paths()
    started = time.time()
    run_date = cfg.resolved_run_date()
    run_id = cfg.run_id or new_run_id(run_date)
    meta = RunMeta(
        output=cfg.output.rstrip("/"),
        run_date=run_date,
        run_id=run_id,
        model=cfg.engine.model,
        adapter_sha256=adapter_hash(cfg.engine.model, cfg.engine.adapter),
        prompt_version=PROMPT_VERSION,
    )
    out = Output(meta.output)
    if cfg.run_id:
        check_run_id(out, cfg.run_id)
    config = redact_config(cfg)
    prov = Provenance(
        run_id, run_date, meta.model, meta.adapter_sha256, PROMPT_VERSION, config_digest(config)
    )
    with Lease(out.vsd, run_id) as lease:  # one writer at a time: a second run stops here, one line
        write_start_record(
            out, prov, config, {"input": redact_text(cfg.input.uri), "output": redact_text(cfg.output)}
        )
        committer = Committer(out, prov, lease)
        return _run_leased(cfg, meta, out, committer, engine_factory, echo, started, ray_address, redo)


def _run_leased(
    cfg: AnnotateConfig,
    meta: RunMeta,
    out: Output,
    committer: Committer,
    engine_factory: Callable | None,
    echo: Callable[[str], None],
    started: float,
    ray_address: str | None = None,
    redo: Request | None = None,
) -> RunResult:
    """The run itself, once it holds the output's lease."""
    run_date, run_id = meta.run_date, meta.run_id
    adopted = adopt_existing(out)
    if adopted:
        echo(f"{cfg.output}: {adopted} part(s) written before the output was a table are its first commit")
    plan = plan_input(cfg, out)
    if plan.listing is not None and plan.listing.note:
        echo(f"deleted files: {plan.listing.note}")
    if cfg.input.prune != "off":
        committer.lease.check()
        removed, version = prune(out, plan.corpus.root)
        if removed:
            echo(
                f"{removed} row(s) of files deleted from the source left the current table (version {version})"
            )
    if redo:
        shards, line = add_to_run(out, plan.corpus, meta, redo, committer)
        plan.todo += shards
        echo(line)
    release_unused()  # the sync's parse is freed: its pages go back before the stream starts
    for line in plan.repeated[:20]:
        echo(f"duplicate in source (skipped): {printable(line, 500)}")
    for line in plan.problems[:20]:
        echo(f"source problem (skipped): {printable(line, 500)}")
    planned_s = time.time() - started
    echo(
        f"{printable(cfg.input.uri)} ({plan.kind}): {plan.shards} shard(s), {plan.new_rows} new image(s) since the last "
        f"sync; {len(plan.todo)} unfinished shard(s) with {plan.rows} row(s) to read"
    )

    counts: dict = {}
    stream = {"parts": {}, "written": {}}
    report = {
        "skipped_done": 0,
        "skipped_duplicate": 0,
        "deferred": 0,
        "duplicates": [],
        "skipped_by_shard": {},
    }
    if plan.todo:
        echo(RAY_ACTOR_NOTE)
        echo(connect(ray_address))  # the named cluster, else a local one: never a leftover
        counts, stream, report = _stream(cfg, plan, meta, out, engine_factory, committer)
    elif not plan.shards:
        echo(f"no images found under {printable(cfg.input.uri)}: nothing to annotate")
    else:  # the nightly run over an unchanged corpus: no Ray cluster, no model
        echo(
            f"nothing new: every shard of {printable(cfg.input.uri)} is annotated in {printable(cfg.output)}"
        )
    pipeline_s = time.time() - started - planned_s

    counts = plain(counts)
    written_counts = dict(counts)  # what the parts hold, before the run's own skips and deferrals
    counts.setdefault("images", 0)
    counts["skipped"] = {
        "already_annotated": report["skipped_done"],
        "duplicate_content": report["skipped_duplicate"],
        "duplicate_in_source": plan.repeats,
        "source_problems": len(plan.problems),
    }
    counts["deferred"] = report["deferred"]
    counts["unaccounted"] = (
        plan.rows
        - counts["images"]
        - report["skipped_done"]
        - report["skipped_duplicate"]
        - report["deferred"]
    )
    if counts["unaccounted"]:
        log.error("%d planned images neither written nor skipped", counts["unaccounted"])
    finished = mark_finished(out, plan, stream["written"], report, run_id)
    result = RunResult(
        output=cfg.output, run_date=run_date, run_id=run_id, counts=counts, parts=sorted(stream["parts"])
    )
    result.manifest = finish(
        cfg,
        meta,
        plan,
        result,
        report,
        stream["parts"],
        finished,
        timings={"plan_s": round(planned_s, 3), "pipeline_s": round(pipeline_s, 3)},
        started=started,
        lease=committer.lease,
        written_counts=written_counts,
    )
    return result


def mark_finished(out: Output, plan: InputPlan, written: dict, report: dict, run_id: str) -> list[str]:
    """A completion marker for every shard whose rows are all written or skipped (deferred rows
    keep their shard open for the next run)."""
    done = []
    for shard in plan.todo:
        skipped = report["skipped_by_shard"].get(shard.name, {})
        accounted = written.get(shard.name, 0) + skipped.get("done", 0) + skipped.get("duplicate", 0)
        if accounted == shard.rows:
            out.write_marker(
                shard.name,
                {
                    "shard": shard.uri,
                    "rows": shard.rows,
                    "run_id": run_id,
                    "written": written.get(shard.name, 0),
                    "skipped": skipped,
                },
            )
            done.append(shard.name)
    return done


def finish(
    cfg: AnnotateConfig,
    meta: RunMeta,
    plan: InputPlan,
    result: RunResult,
    report: dict,
    parts: Collection[str],
    finished: list[str],
    timings: dict,
    started: float,
    lease: Lease | None = None,
    written_counts: dict | None = None,
) -> dict:
    """The sweep (parts written but not committed, also by killed runs), compaction, dataset card,
    the partition's record, then the run's record -- in that order."""
    out = Output(meta.output)
    recovered = sweep(out, lease)
    out.compact()
    release_unused()
    totals = out.totals()
    storage.write_text(
        out.card, render_card(totals, out.runs() + [meta.run_id], meta.model, table.current_rows(out.root))
    )
    if parts:  # a run that wrote nothing leaves the partition's record as it was
        record = out.partition_record(meta.run_date) or {"run_date": meta.run_date, "runs": [], "totals": {}}
        record["runs"].append({"run_id": meta.run_id, "parts": len(parts), "images": result.counts["images"]})
        merge_counts(record["totals"], written_counts or {})
        record["totals"] = plain(record["totals"])
        out.records("partitions").put(partition(meta.run_date), record)
    maintained = _maintain_if_due(cfg, out, lease)
    total_s = time.time() - started
    images = result.counts.get("images", 0)
    manifest = {
        "run_id": meta.run_id,
        "run_date": meta.run_date,
        "started_at": dt.datetime.fromtimestamp(started, dt.timezone.utc).isoformat(),
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "input": redact_text(cfg.input.uri),
        "output": redact_text(cfg.output),
        "source": {
            "kind": plan.kind,
            "corpus": plan.corpus.root,
            "shards": plan.shards,
            "shards_read": [s.name for s in plan.todo],
            "shards_finished": finished,
            "planned_images": plan.rows,
            "new_since_last_sync": plan.new_rows,
            "duplicates": (plan.repeated + report["duplicates"])[:1000],
            "problems": plan.problems[:1000],
        },
        "model": meta.model,
        "adapter_sha256": meta.adapter_sha256,
        "prompt_version": meta.prompt_version,
        "counts": result.counts,
        "parts": result.parts,
        "table": {
            "version": table.current_version(out.root),
            "recovered_parts": recovered,
            "maintained": maintained,
        },
        "timings": {
            **timings,
            "total_s": round(total_s, 3),
            "images_per_s": round(images / timings["pipeline_s"], 3) if timings["pipeline_s"] > 0 else None,
        },
        "config": redact_config(cfg),
    }
    out.records("runs").put(meta.run_id, manifest)
    out.pack_records()  # after the run's own record: a year of nights stays a few objects a kind
    return manifest


def _maintain_if_due(cfg: AnnotateConfig, out: Output, lease: Lease | None) -> dict | None:
    """`maintain.every_days` after the last maintenance, the run's finish maintains the table (the
    run holds the lease). Housekeeping: a failure is logged and recorded, the run still finishes."""
    if lease is None or not maintenance.due(out, cfg.maintain.every_days):
        return None
    try:
        done = maintenance.maintain_leased(out, lease, cfg.maintain.vacuum_keep_days or None)
    except Exception as exc:  # noqa: BLE001 -- the night's rows are committed; the next run tries again
        log.warning("table maintenance failed (the next run tries again): %s", exc)
        return {"error": f"{type(exc).__name__}: {exc}"}
    log.info("maintained the table: %s", done)
    return dataclasses.asdict(done)


def format_counts(counts: dict) -> str:
    """The closing lines of `vsd annotate`: ok, error by reason, skipped."""
    errors = counts.get("error", {})
    skipped = counts.get("skipped", {})
    lines = [
        f"images: {counts.get('images', 0)}  rows: {counts.get('rows', 0)}  ok: {counts.get('ok', 0)}  "
        f"error: {sum(errors.values())}  skipped: {sum(skipped.values())}"
    ]
    lines += [f"  error {reason}: {n}" for reason, n in sorted(errors.items())]
    lines += [f"  skipped {why}: {n}" for why, n in skipped.items() if n]
    if counts.get("deferred"):
        lines.append(f"  deferred (read failed after retries; tried again next run): {counts['deferred']}")
    return "\n".join(lines)
