"""How a run's parts reach the table: a few at a time while it runs, the rest by the next sweep.

The write stage writes a part only after its progress entry (`vsd.annotate.index`), so every part
on storage is named by an entry until the run's end compacts the entries away. That gives the
sweep: before compaction, every part an entry names that the table does not hold is committed --
the parts of a run killed between its write and its commit, whichever run comes next. Each run
also leaves a start record (``__vsd/started/<run_id>.json``: model, adapter, prompt version,
config) before it writes anything, so a row of a run that never finished is still explained.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import posixpath
import time
from dataclasses import asdict, dataclass

import pyarrow.parquet as pq

from vsd import storage
from vsd.annotate import redo
from vsd.annotate.index import Output
from vsd.annotate.memory import Releaser
from vsd.annotate.output import table
from vsd.annotate.output.lease import Lease
from vsd.corpus.listing import uri_key
from vsd.errors import VSDError
from vsd.keyset import Snapshot

COMMIT_EVERY_PARTS = 8
COMMIT_EVERY_S = 30.0


@dataclass(frozen=True)
class Provenance:
    """What every commit of a run says about it (also the run's start record)."""

    run_id: str
    run_date: str
    model: str
    adapter_sha256: str | None
    prompt_version: str
    config_sha256: str

    def metadata(self) -> dict:
        return asdict(self)


def config_digest(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_run_id(out: Output, run_id: str) -> None:
    """A given ``run_id`` names one run: a finished run's id is refused (its record and totals
    would be overwritten); an unfinished one (killed, rerun with the same id) may go on -- unless
    a later run's finish (or `vsd maintain`) already folded what it wrote: its totals are then
    final, and the keys of what it wrote next would never reach the key set (annotated again the
    night after, twice)."""
    if out.run_record(run_id) is not None:
        raise VSDError(
            f"run_id: {run_id!r} already names a finished run of {out.root}; leave run_id empty (each "
            "run gets a new id) or give one not used before"
        )
    if out.records("totals").has(run_id):
        raise VSDError(
            f"run_id: {run_id!r} names a killed run of {out.root} whose parts a later run already "
            "finished; leave run_id empty (each run gets a new id) or give one not used before"
        )


def write_start_record(out: Output, prov: Provenance, config: dict, extra: dict) -> None:
    record = {
        **prov.metadata(),
        "started_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        # the table before this run's first commit: a sweep of its parts reads the log from here
        "table_version": table.current_version(out.root),  # None: no table yet
        **extra,
        "config": config,
    }
    out.records("started").put(prov.run_id, record)


def start_record(out: Output, run_id: str) -> dict | None:
    return out.records("started").get(run_id)


def fresh_sources(out: Output, parts: list[table.Part], ids: Snapshot) -> dict[str, set[str]]:
    """{source URI: its new image ids} for the parts' rows whose URI an earlier run annotated
    (its ``u:`` key is in the output's key set): a changed file, whose old row these replace.
    A bounded lookup (the parts' own rows, the bucketed key set), so a night with no changed
    file never scans the table."""
    fs, base = storage.resolve(out.root)
    pairs: dict[str, set[str]] = {}
    for part in parts:
        data = pq.read_table(
            posixpath.join(base, part.path), filesystem=fs, columns=["source_uri", "image_id"]
        )
        for uri, image_id in zip(data.column("source_uri").to_pylist(), data.column("image_id").to_pylist()):
            if uri:
                pairs.setdefault(uri, set()).add(image_id)
    uris = sorted(pairs)
    hits = ids.contains([uri_key(u) for u in uris])
    return {u: pairs[u] for u, hit in zip(uris, hits) if hit}


class Committer:
    """Commits the parts the write stage reports, every few parts or seconds, fenced by the lease."""

    def __init__(self, out: Output, prov: Provenance, lease: Lease | None):
        self.out, self.prov, self.lease = out, prov, lease
        self.replace: dict[str, set[str]] = {}  # {source URI: old row ids} a redo replaces
        self.pending: list[table.Part] = []
        self.last = time.monotonic()
        self.ids = out.ids().snapshot()  # the key set changes only at the run's end (compaction)
        self.release = Releaser()

    def add(self, part: table.Part) -> None:
        self.pending.append(part)
        if len(self.pending) >= COMMIT_EVERY_PARTS or time.monotonic() - self.last >= COMMIT_EVERY_S:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            if self.lease is not None:
                self.lease.check()
            fresh, rows = redo.replacements(
                self.out, self.pending, fresh_sources(self.out, self.pending, self.ids), self.replace
            )
            table.commit_parts(self.out.root, self.pending, self.prov.metadata(), fresh=fresh, replace=rows)
            self.pending = []
            self.release()  # a commit replays the table's log: its freed pages go back (vsd.annotate.memory)
        self.last = time.monotonic()


def sweep(out: Output, lease: Lease | None, ids: Snapshot | None = None) -> dict[str, int]:
    """Commit every part an uncompacted progress entry names that the table never held (a run
    killed between write and commit) -- not one it held and lost since (`table.added_since`);
    returns {run_id: parts committed now}."""
    done: dict[str, int] = {}
    entries = out.progress()
    if not entries:
        return done
    # Runs' parts are disjoint: one look at the table (and the key set) serves every run below.
    before = table.active_paths(table.ensure(out.root))
    ids = ids if ids is not None else out.ids().snapshot()
    for run_id, uris in entries.items():
        parts = [
            table.Part(meta["vsd.run_date"], meta["vsd.part"], json.loads(meta["vsd.counts"]).get("rows"))
            for _, meta, _ in out.read_progress(uris, drop_orphans=False, columns=[])
        ]
        if not parts:
            continue
        record = start_record(out, run_id) or {"run_id": run_id}
        prov = {k: record.get(k) for k in Provenance.__dataclass_fields__}
        if lease is not None:
            lease.check()
        todo = [p for p in parts if p.path not in before]
        if todo:  # not current: never committed, or committed and rewritten since (not to come back)
            once = table.added_since(out.root, record.get("table_version"))
            todo = [p for p in todo if p.path not in once]
        if todo:
            fresh, rows = redo.replacements(
                out, todo, fresh_sources(out, todo, ids), redo.replaced(out, run_id)
            )
            table.commit_parts(out.root, todo, prov, operation="recover", fresh=fresh, replace=rows)
            done[run_id] = len(todo)
    return done


def adopt_existing(out: Output) -> int:
    """An output written before the table existed (parts under ``run_date=*/``, no log): its parts
    become the table's first commit, once; later runs read and continue it. Returns parts adopted."""
    if table.exists(out.root):
        return 0
    parts = []
    for rel in sorted(out.data_parts()):
        run_date = rel.split("/", 1)[0].split("=", 1)[1]
        part = table.Part(run_date, rel.split("/", 1)[1])
        parts.append(table.Part(run_date, part.name, table.part_rows(out.root, part)))
    table.ensure(out.root)
    if parts:
        table.commit_parts(
            out.root, parts, {"note": "parts written before the output was a table"}, "migrate"
        )
    return len(parts)
