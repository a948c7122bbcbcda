"""`vsd maintain`: keep a years-old output cheap to read and take deleted rows off storage.

Each night adds a few small data files per commit, and every supersede, prune and `vsd delete`
leaves the rewritten files behind for ``as_of`` reads. Over a year that is thousands of small files
a reader opens and bytes a takedown promised to remove. Maintenance, under the output's lease (no
run writes meanwhile):

1. finishes what killed runs left (the sweep commits their parts, their progress entries are
   folded into the key set), as a run's finish does -- the compaction below must never meet a part
   that a later sweep would still commit;
2. compacts each night's small files into few (Delta's ``optimize.compact``: a ``dataChange:
   false`` commit, same rows; readers of any version are unaffected);
3. vacuums the files no version of the last ``keep_days`` days needs (Delta's ``vacuum``): rows
   deleted or superseded longer ago than that are gone from storage, and ``as_of`` reaches back
   ``keep_days`` only;
4. writes a checkpoint of the log, so opening the table reads one file, not every commit;
5. with a vacuum, expires the log's commits that no version of the last ``keep_days`` needs
   (`table.expire_log`: Delta's ``cleanup_metadata``): the versions whose files the vacuum took
   could not be read anyway, and a year of nights stays ``keep_days`` of commits. Only here, after
   the sweep: Delta's own cleanup is switched off, because a killed run's sweep reads the commits
   since its start (`table.added_since`).

Our own files under ``__vsd/`` and the ``_delta_log`` are not data files: vacuum leaves them.
"""

from __future__ import annotations

import argparse
import getpass
import json
import time
from dataclasses import asdict, dataclass

from vsd import storage
from vsd.annotate.index import Output
from vsd.annotate.output import table
from vsd.annotate.output.commits import sweep
from vsd.annotate.output.lease import Lease
from vsd.errors import VSDError

DEFAULT_KEEP_DAYS = 30
RECORD = "maintained.json"  # under __vsd/: when the table was last maintained
TARGET_FILE_BYTES = 128 * 1024 * 1024


@dataclass(frozen=True)
class Maintained:
    recovered_parts: int
    files_before: int
    files_after: int
    compacted_away: int
    vacuumed: int
    version: int


def maintain(root: str, keep_days: int = DEFAULT_KEEP_DAYS, vacuum: bool = True) -> Maintained:
    """Steps 1-4 of the module docstring, under the output's lease."""
    if keep_days < 0:
        raise VSDError(f"--keep-days: must be >= 0, got {keep_days}")
    out = Output(root.rstrip("/"))
    if not table.exists(out.root):
        raise VSDError(f"output: {root} is not an annotation output (no table there)")
    with Lease(out.vsd, "maintain") as lease:
        lease.check()
        return maintain_leased(out, lease, keep_days if vacuum else None)


def maintain_leased(out: Output, lease: Lease, keep_days: int | None) -> Maintained:
    """Steps 1-4 by the lease's holder (`vsd maintain`, or a run's finish when `due`); no vacuum
    when ``keep_days`` is None. Leaves ``__vsd/maintained.json`` for `due`."""
    from deltalake.transaction import CommitProperties

    meta = {"vsd.operation": "maintain", "vsd.by": getpass.getuser()}
    recovered = sweep(out, lease)
    out.compact()
    delta = table.open_table(out.root)
    before = len(table.active_paths(delta))
    lease.check()
    metrics = delta.optimize.compact(
        target_size=TARGET_FILE_BYTES, commit_properties=CommitProperties(custom_metadata=meta)
    )
    delta = table.open_table(out.root)
    removed: list[str] = []
    if keep_days is not None:
        lease.check()
        removed = delta.vacuum(
            retention_hours=keep_days * 24,
            dry_run=False,
            enforce_retention_duration=False,  # the team's choice of days, not delta's 7-day floor
            commit_properties=CommitProperties(custom_metadata=meta),
        )
        delta = table.open_table(out.root)
    delta.create_checkpoint()
    if keep_days is not None:
        lease.check()
        table.expire_log(out.root, keep_days, meta)
    done = Maintained(
        recovered_parts=sum(recovered.values()),
        files_before=before,
        files_after=len(table.active_paths(delta)),
        compacted_away=int(metrics.get("numFilesRemoved", 0)),
        vacuumed=len(removed),
        version=delta.version(),
    )
    record = {"at": time.time(), "keep_days": keep_days, **asdict(done)}
    storage.write_text(out.path(RECORD), json.dumps(record, indent=1))
    return done


def due(out: Output, every_days: int, now: float | None = None) -> bool:
    """Whether the last maintenance (``__vsd/maintained.json``), or else the table's creation, is
    ``every_days`` old: a run's finish then maintains the table too (never with ``every_days`` 0)."""
    if every_days <= 0 or not table.exists(out.root):
        return False
    now = time.time() if now is None else now
    try:
        last = float(json.loads(storage.read_text(out.path(RECORD)))["at"])
    except FileNotFoundError:
        created = table.created_at(out.root)
        if created is None:
            return True  # the log's first commit is gone: older than anything we keep
        last = created
    return now - last >= every_days * 86400


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "maintain",
        help="compact an output's small files, vacuum what no recent night needs, checkpoint its log",
        description="Under the output's lease: commits what killed runs left, compacts small data files "
        "(same rows), deletes from storage the files no version of the last --keep-days needs (deleted "
        "and superseded rows older than that are then gone; as_of reaches back that far), and "
        "checkpoints the log. Exit 0 done, 2 a usage error, 75 a run is writing the output.",
    )
    p.add_argument("output", help="the output root (local or s3://)")
    p.add_argument(
        "--keep-days",
        type=int,
        default=DEFAULT_KEEP_DAYS,
        help=f"how far back as_of must still read (default {DEFAULT_KEEP_DAYS})",
    )
    p.add_argument("--no-vacuum", action="store_true", help="compact and checkpoint only; delete nothing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    done = maintain(args.output, args.keep_days, vacuum=not args.no_vacuum)
    print(
        f"maintained {args.output}: {done.files_before} -> {done.files_after} data file(s) "
        f"({done.compacted_away} compacted), {done.vacuumed} file(s) vacuumed"
        + (f", {done.recovered_parts} part(s) of killed runs committed" if done.recovered_parts else "")
        + f" (table version {done.version})"
    )
    return 0
