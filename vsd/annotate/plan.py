"""`vsd annotate --plan`: what tonight's run would do, printed before anything is written.

A data team wants to know before a night runs which cluster it will join, what is new, what will
be refused and why, and whether the model, adapter, prompt version or config differ from the
output's last run. Switching models on the same output re-annotates nothing by itself (the rows
stay as the old model wrote them); the plan then states the choice and its size:
``--reannotate changed-model`` (`vsd.annotate.redo`) and, with either redo flag, how many rows it
would redo. The plan reads listings, the corpus key set and run records;
it writes nothing (an implicit corpus is not synced, its new rows are only counted) and starts no
Ray cluster.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

from vsd.annotate import redo
from vsd.annotate.config import AnnotateConfig
from vsd.annotate.index import Output
from vsd.annotate.output import table
from vsd.annotate.output.commits import config_digest
from vsd.annotate.output.prune import pending
from vsd.annotate.redo import Request
from vsd.annotate.stages.read import under_roots
from vsd.corpus import Corpus
from vsd.corpus.listing import gone_keys
from vsd.corpus.merge import unfinished
from vsd.corpus.sync import _batches, _keys
from vsd.redact import redact_config, redact_text
from vsd.schema import PROMPT_VERSION

SHOWN = 10


@dataclass
class Plan:
    cluster: str
    input: str
    output: str
    model: str
    kind: str
    shards: int = 0
    unfinished: list[str] = field(default_factory=list)
    rows_to_read: int = 0
    new_rows: int = 0
    refused: Counter = field(default_factory=Counter)
    refused_examples: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    current_rows: int | None = None
    changed_rows: int = 0  # current rows another model/adapter/prompt made
    redo: str = ""  # what --reannotate / --retry-errors would redo
    prune: str = ""  # the corpus's deleted files this output has not applied, and what happens

    def lines(self) -> list[str]:
        out = [
            f"cluster: {self.cluster}",
            f"input:   {self.input} ({self.kind})",
            f"output:  {self.output}"
            + ("" if self.current_rows is None else f" ({self.current_rows} current rows)"),
            f"model:   {self.model}",
        ]
        if self.kind == "corpus":
            out.append(
                f"shards:  {self.shards}, {len(self.unfinished)} unfinished with {self.rows_to_read} row(s) to read"
            )
        else:
            out.append(f"new:     {self.new_rows} image row(s) the output's corpus has not seen")
        for why, n in sorted(self.refused.items()):
            out.append(f"refused: {n} row(s) {why}")
        out += [f"  e.g. {e}" for e in self.refused_examples[:SHOWN]]
        out += [f"source problem: {p}" for p in self.problems[:SHOWN]]
        if self.prune:
            out.append(f"prune:   {self.prune}")
        out += [f"changed since the last run: {c}" for c in self.changes] or [
            "same model, adapter, prompt and config as the last run"
        ]
        if self.changes and not self.redo:
            out.append(
                f"  a choice: as is, the {self.changed_rows} current row(s) another model/adapter/prompt "
                "made stay and only new images get this one; --reannotate changed-model re-annotates "
                "them (each replaced in the commit of its new row)"
            )
        if self.redo:
            out.append(f"would {self.redo}")
        out.append("nothing was written (--plan)")
        return out


def _cluster(ray_address: str | None) -> str:
    address = ray_address or os.environ.get("RAY_ADDRESS") or ""
    if address and address != "local":
        return f"would join {address}"
    return "would start a local Ray cluster (no --ray-address, no RAY_ADDRESS)"


def _changes(out: Output, cfg: AnnotateConfig) -> list[str]:
    from vsd.annotate.pipeline import adapter_hash

    runs = out.runs()
    if not runs:
        return []
    last = out.run_record(runs[-1]) or {}
    now = {
        "model": cfg.engine.model,
        "adapter_sha256": adapter_hash(cfg.engine.model, cfg.engine.adapter),
        "prompt_version": PROMPT_VERSION,
    }
    changes = [f"{k}: {last.get(k)!r} -> {v!r}" for k, v in now.items() if last.get(k) != v]
    if last.get("config") is not None:
        before, after = config_digest(last["config"]), config_digest(redact_config(cfg))
        if before != after:
            changes.append(f"config (digest {before} -> {after})")
    return changes


def _redo(plan: Plan, out: Output, cfg: AnnotateConfig, request: Request | None) -> None:
    """How many current rows the run would redo (``request``), or could (``changed-model``)."""
    from vsd.annotate.pipeline import adapter_hash

    if not (request or plan.changes) or plan.current_rows is None:
        return
    annotator = (cfg.engine.model, adapter_hash(cfg.engine.model, cfg.engine.adapter), PROMPT_VERSION)
    if plan.changes:
        plan.changed_rows = redo.select(out.root, Request(redo.CHANGED_MODEL), annotator).rows_changed_model
    if request:
        plan.redo = redo.describe(redo.select(out.root, request, annotator), request)


def _prune(out: Output, corpus_root: str, setting: str) -> str:
    """The ``_gone`` sets of the corpus this output has not applied (counted from their key files'
    sizes, no table read), and whether the run applies them (`vsd.annotate.pipeline`: unless
    ``input.prune`` is off)."""
    syncs = pending(out, corpus_root)
    if not syncs:
        return ""
    n = sum(gone_keys(corpus_root, s).stored_keys() for s in syncs)
    what = f"{n} deleted source file(s) from {len(syncs)} sync(s)"
    if setting == "off":
        return f"{what} not applied (input.prune: off, append-only): their rows stay current"
    return f"{what} leave the current table before this run writes"


def make_plan(cfg: AnnotateConfig, ray_address: str | None = None, request: Request | None = None) -> Plan:
    """The plan of a run of ``cfg`` (its paths already checked and absolute), with the rows
    ``request`` would redo."""
    out = Output(cfg.output.rstrip("/"))
    src = cfg.input
    is_corpus = src.format == "corpus" or (src.format == "auto" and Corpus.is_corpus(src.uri))
    plan = Plan(
        cluster=_cluster(ray_address),
        input=redact_text(src.uri),
        output=redact_text(cfg.output),
        model=cfg.engine.model + (f" + adapter {cfg.engine.adapter}" if cfg.engine.adapter else ""),
        kind="corpus" if is_corpus else src.format,
    )
    if table.exists(out.root):
        plan.current_rows = table.open_table(out.root).count()
    plan.changes = _changes(out, cfg)
    _redo(plan, out, cfg, request)
    if is_corpus:
        corpus = Corpus.open(src.uri)
        shards = corpus.shards()
        todo, _ = unfinished(shards, out.finished_shards())
        plan.shards, plan.unfinished = len(shards), [s.name for s in todo]
        plan.rows_to_read = sum(s.rows for s in todo)
        if plan.current_rows is not None:
            plan.prune = _prune(out, corpus.root, src.prune)
        return plan
    from vsd.corpus.sources import open_source

    source = open_source(src.uri, src.format, src.image_dir)
    plan.kind = source.kind
    corpus_root = out.path("corpus")
    known = Corpus.open(corpus_root).keys().snapshot() if Corpus.is_corpus(corpus_root) else None
    if known is not None and plan.current_rows is not None:
        plan.prune = _prune(out, corpus_root, src.prune)
    roots = sorted(set(source.roots) | set(cfg.input.allowed_roots))
    for batch in _batches(
        source, src.image_dir, src.vsd2, src.extensions, src.follow_dir_links, src.allowed_roots
    ):
        seen = known.contains(_keys(batch)) if known is not None else [False] * batch.num_rows
        for uri, old in zip(batch.column("uri").to_pylist(), seen):
            if old:
                continue
            plan.new_rows += 1
            if not under_roots(uri, roots):
                plan.refused["outside an allowed root (outside_root error rows)"] += 1
                if len(plan.refused_examples) < SHOWN:
                    plan.refused_examples.append(repr(uri))
    plan.problems = source.problems
    return plan


def print_plan(cfg: AnnotateConfig, ray_address: str | None = None, request: Request | None = None) -> None:
    for line in make_plan(cfg, ray_address, request).lines():
        print(line)
