"""The output is a Delta Lake table: Parquet parts written by Ray tasks, committed on the driver.

Why Delta and not Iceberg (measured on these machines, `docs/table-format.md`): no catalog service
(every writer would have to share one), the same protocol on a local disk and on S3 (commits are
conditional PUTs), relative paths, compaction and vacuum built in, and commit metadata for the
run's provenance. The write stage keeps writing whole-image parts under ``run_date=…/`` (the
table's partition column); this module adds them to the table's log in commits of a few parts at
a time (a killed run loses at most what was not committed yet, and its next run commits the parts
it finds written but not committed). Every commit carries the run's provenance (run id, model,
adapter, prompt version, config digest) in its metadata, so ``history`` explains every row.

Readers see a commit whole or not at all; `read` gives the current rows or the table as of an
earlier night, commit version or time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import posixpath
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from vsd import storage
from vsd.errors import VSDError
from vsd.schema import ANNOTATION_SCHEMA

PARTITION = "run_date"
TABLE_SCHEMA = ANNOTATION_SCHEMA.append(pa.field(PARTITION, pa.string()))


def _file_type(t: pa.DataType) -> pa.DataType:
    return pa.list_(pa.field("element", t.value_type)) if pa.types.is_fixed_size_list(t) else t


# What a data file stores: Delta has no fixed-size list, so the boxes are stored as plain lists
# (every reader -- polars included -- then agrees with the table's schema); `read` gives them
# back as the 4-float lists of ``ANNOTATION_SCHEMA``.
FILE_SCHEMA = pa.schema([f.with_type(_file_type(f.type)) for f in ANNOTATION_SCHEMA]).with_metadata(
    ANNOTATION_SCHEMA.metadata
)
TABLE_NAME = "vsd_annotations"
COMMIT_ATTEMPTS = 8
# A checkpoint (the table's state in one Parquet file) every this many versions: opening the table
# replays the JSON commits since the last one, and the driver opens it for every commit it makes.
# Delta's default (100) let a run's opens grow ~0.5 MiB a commit (`bench/driver_memory.py`); a
# checkpoint is one read and write of the state, which each of those commits reads anyway.
CHECKPOINT_EVERY = 10
# The log keeps every commit until `vsd maintain` expires what its --keep-days no longer reaches
# (`expire_log`): Delta's own cleanup (at its 100th-commit checkpoints, by a retention counted from
# the cleanup) is off, because a killed run's sweep reads the commits since its start
# (`added_since`) and only maintenance sweeps first. Retention 0 lets maintenance's
# ``cleanup_metadata`` at an older version delete exactly what precedes it.
LOG_PROPERTIES = {"delta.logRetentionDuration": "interval 0 days", "delta.enableExpiredLogCleanup": "false"}


@dataclass(frozen=True)
class Part:
    """One data file of the output: ``run_date=<run_date>/<name>``, with its row count if known."""

    run_date: str
    name: str
    rows: int | None = None

    @property
    def path(self) -> str:
        return f"{PARTITION}={self.run_date}/{self.name}"


def storage_options(root: str) -> dict[str, str] | None:
    """delta-rs's object-store options for ``root``: the same endpoint, region and credentials as
    `vsd.storage` (all from the environment); commits on S3 rely on conditional PUTs."""
    if not storage.is_s3(root):
        return None
    storage.skip_metadata_lookup()
    opts = {"AWS_REGION": storage.s3_region(), "aws_conditional_put": "etag"}
    endpoint = storage.s3_endpoint()
    if endpoint:
        opts["AWS_ENDPOINT_URL"] = endpoint
        opts["AWS_ALLOW_HTTP"] = "true" if urlparse(endpoint).scheme == "http" else "false"
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        if os.environ.get(var):
            opts[var] = os.environ[var]
    return opts


def table_uri(root: str) -> str:
    root = str(root).rstrip("/")
    if storage.is_s3(root):
        return root
    return storage.resolve(root)[1]


def exists(root: str) -> bool:
    """Whether ``root`` holds a table (see `current_version`)."""
    return current_version(root) is not None


def current_version(root: str) -> int | None:
    """The table's version, or None where ``root`` holds no table. By opening it, once:
    ``DeltaTable.is_deltatable`` (and ``history``) keep Python's GIL while they wait on the
    network, which deadlocks against an S3 server that runs in the same process (moto in the tests)."""
    from deltalake.exceptions import TableNotFoundError

    if not storage.is_s3(root) and not os.path.isdir(table_uri(root)):
        return None  # a file (say, predictions.parquet) or nothing at all
    try:
        return open_table(root).version()
    except TableNotFoundError:
        return None


def open_table(root: str, version: int | None = None):
    from deltalake import DeltaTable

    return DeltaTable(table_uri(root), version=version, storage_options=storage_options(root))


def ensure(root: str):
    """The output's table, created empty (schema, partition column) the first time."""
    from deltalake import DeltaTable
    from deltalake.exceptions import CommitFailedError

    for attempt in range(COMMIT_ATTEMPTS):
        if exists(root):
            return evolve(open_table(root))
        try:
            DeltaTable.create(
                table_uri(root),
                schema=TABLE_SCHEMA,
                partition_by=[PARTITION],
                mode="ignore",
                name=TABLE_NAME,
                description="llava-vsd annotations: one row per image x object pair (see _README.md)",
                configuration=LOG_PROPERTIES,
                storage_options=storage_options(root),
            )
        except CommitFailedError:  # another writer created it at the same moment
            time.sleep(0.2 * (attempt + 1))
    return open_table(root)


def table_columns(table) -> list[str]:
    return list(pa.schema(table.schema().to_arrow()).names)


def evolve(table):
    """Columns that `TABLE_SCHEMA` gained since the table was made are added to it (metadata
    only: older files read them as null), so a release that adds a column continues the table."""
    have = set(table_columns(table))
    missing = [f.with_type(_file_type(f.type)) for f in TABLE_SCHEMA if f.name not in have]
    if missing:
        from deltalake import Schema

        table.alter.add_columns(list(Schema.from_arrow(pa.schema(missing)).fields))
    return table


def active_paths(table) -> set[str]:
    """The data files of the table's current version, relative to its root."""
    return {str(p) for p in pa.table(table.get_add_actions(flatten=True)).column("path").to_pylist()}


def current_rows(root: str) -> int | None:
    """Rows in the table's current version, from the commit log's per-file counts (no data read)."""
    if not exists(root):
        return None
    actions = pa.table(open_table(root).get_add_actions(flatten=True))
    if "num_records" not in actions.column_names:
        return None
    return int(sum(n or 0 for n in actions.column("num_records").to_pylist()))


def _sizes(root: str, parts: list[Part]) -> dict[str, pafs.FileInfo]:
    fs, base = storage.resolve(root)
    infos = fs.get_file_info([posixpath.join(base, p.path) for p in parts])
    return {p.path: i for p, i in zip(parts, infos)}


def _add_action(part: Part, info: pafs.FileInfo):
    from deltalake.transaction import AddAction

    return AddAction(
        part.path,
        info.size,
        {PARTITION: part.run_date},
        int((info.mtime.timestamp() if info.mtime else time.time()) * 1000),
        True,
        json.dumps({"numRecords": part.rows} if part.rows is not None else {}),
    )


def supersede(
    root: str,
    table,
    fresh: dict[str, set[str]],
    replace: set[str] | None = None,
    writer: str | None = None,
    paths: set[str] | None = None,
) -> tuple[list, list, int]:
    """The actions that take out of the current table every row of a source URI in ``fresh``
    whose image id is not among that URI's new ones (the file changed: its new version's row
    replaces the old), and every row whose ``row_id`` is in ``replace`` (a redone row,
    `vsd.annotate.redo`). A data file holding such rows is rewritten without them -- a Remove and
    an Add in the same commit as the new rows, so readers never see both versions or neither.
    Rows of run ``writer`` (the run committing) are never taken: a run that commits one image's
    new rows in several commits (a redo keeps row ids; one file under two given ids) must not
    take out in a later commit what an earlier one of its own added.
    ``paths`` (relative to the root): only these data files are read -- a caller that already
    knows which files hold the rows (`vsd.annotate.output.prune` found them in its column scan)
    spares reading every file again.
    Returns (removes, adds, rows taken out)."""
    import pyarrow.compute as pc
    from deltalake.transaction import RemoveAction

    replace = replace or set()
    if not fresh and not replace:
        return [], [], 0
    fs, base = storage.resolve(root)
    flt = pc.field("source_uri").isin(pa.array(sorted(fresh), pa.string())) | pc.field("row_id").isin(
        pa.array(sorted(replace), pa.string())
    )
    removes, adds, dropped = [], [], 0
    for fragment in table.to_pyarrow_dataset().get_fragments(filter=flt):
        # the table's dataset addresses its files relative to the table root (a sub-tree filesystem)
        rel = posixpath.relpath(fragment.path, base) if fragment.path.startswith(base) else fragment.path
        if paths is not None and rel not in paths:
            continue
        data = pq.read_table(posixpath.join(base, rel), filesystem=fs)
        uris, ids = data.column("source_uri").to_pylist(), data.column("image_id").to_pylist()
        runs = data.column("run_id").to_pylist() if "run_id" in data.column_names else [None] * len(uris)
        stale = [
            ((u in fresh and i not in fresh[u]) or r in replace) and (writer is None or run != writer)
            for u, i, r, run in zip(uris, ids, data.column("row_id").to_pylist(), runs)
        ]
        if not any(stale):
            continue
        run_date = rel.split("/", 1)[0].split("=", 1)[1]
        size = fs.get_file_info(posixpath.join(base, rel)).size
        removes.append(RemoveAction(rel, True, int(time.time() * 1000), size, {PARTITION: run_date}))
        dropped += sum(stale)
        kept = data.filter(pa.array([not s for s in stale]))
        if kept.num_rows:
            part = Part(run_date, _part_name(kept.column("row_id").to_pylist(), rel), kept.num_rows)
            sink = pa.BufferOutputStream()
            pq.write_table(kept, sink, compression="zstd")
            storage.write_bytes(storage.join(root, part.path), sink.getvalue().to_pybytes())
            adds.append(_add_action(part, _sizes(root, [part])[part.path]))
    return removes, adds, dropped


def _part_name(row_ids: list[str], rewritten: str) -> str:
    """A rewritten file's name: like the write stage's parts (sha256 of the sorted row ids, here
    with the file it was rewritten from), with an ``s`` so it never collides with a part the write
    stage wrote. The source file leaves the table for good, so the name is new: a file that an
    earlier version still references (`read` ``as_of``) is never overwritten, even when the same
    rows (redone since) are kept again."""
    digest = hashlib.sha256("\n".join([rewritten, *sorted(row_ids)]).encode("utf-8")).hexdigest()[:20]
    return f"part-{digest}s.parquet"


def commit_parts(
    root: str,
    parts: Iterable[Part],
    provenance: dict,
    operation: str = "annotate",
    fresh: dict[str, set[str]] | None = None,
    replace: set[str] | None = None,
) -> int | None:
    """Add the parts the table does not hold yet, in one commit carrying ``provenance`` and the
    `supersede` of the older rows of the source URIs in ``fresh`` and of the rows ``replace``
    names; returns the new version (None
    when there was nothing to add). Idempotent: a part already in the table (committed before a
    kill, or by a sweep) is not added twice."""
    from deltalake.exceptions import CommitFailedError
    from deltalake.transaction import CommitProperties

    table = ensure(root)
    held = active_paths(table)
    todo = {p.path: p for p in parts if p.path not in held}
    if not todo:
        return None
    infos = _sizes(root, list(todo.values()))
    missing = [path for path, info in infos.items() if info.type != pafs.FileType.File]
    if missing:
        raise VSDError(f"output: {len(missing)} part(s) to commit are not there (first: {missing[0]})")
    adds = [_add_action(part, infos[path]) for path, part in sorted(todo.items())]
    for attempt in range(COMMIT_ATTEMPTS):
        removes, rewritten, superseded = supersede(
            root, table, fresh or {}, replace, writer=provenance.get("run_id")
        )
        meta = {
            "vsd.operation": operation,
            "vsd.parts": len(adds),
            "vsd.rows": sum(p.rows or 0 for p in todo.values()),
            "vsd.superseded_rows": superseded,
            **{f"vsd.{k}": v for k, v in provenance.items() if v is not None},
        }
        try:
            table.create_write_transaction(
                adds + rewritten + removes,
                mode="append",
                schema=table.schema(),
                partition_by=[PARTITION],
                commit_properties=CommitProperties(custom_metadata={k: str(v) for k, v in meta.items()}),
            )
            break
        except CommitFailedError:
            if attempt == COMMIT_ATTEMPTS - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
            table = open_table(root)
    latest = open_table(root)
    version = latest.version()
    if version % CHECKPOINT_EVERY == 0:
        latest.create_checkpoint()
    return version


def expire_log(root: str, keep_days: int, meta: dict[str, str]) -> int | None:
    """Drop the log's commits that no version of the last ``keep_days`` days needs (`vsd maintain`
    step 5): Delta's ``cleanup_metadata`` on the table as of the last commit older than that, which
    deletes the commit files before that version's checkpoint. The table's own retention is 0 days
    with Delta's automatic cleanup off, so only this call expires anything and ``keep_days`` alone
    says how far back. Returns the version cleaned up to (None: nothing that old)."""
    from deltalake.transaction import CommitProperties

    have = open_table(root).metadata().configuration
    if any(have.get(k) != v for k, v in LOG_PROPERTIES.items()):  # a table made before this policy
        open_table(root).alter.set_table_properties(
            LOG_PROPERTIES, commit_properties=CommitProperties(custom_metadata=meta)
        )
    cutoff = (time.time() - keep_days * 86400) * 1000
    old = [c["version"] for c in history(root) if c["timestamp"] is not None and c["timestamp"] <= cutoff]
    if not old:
        return None
    open_table(root, version=max(old)).cleanup_metadata()
    return max(old)


def part_rows(root: str, part: Part) -> int:
    fs, base = storage.resolve(root)
    return pq.read_metadata(posixpath.join(base, part.path), filesystem=fs).num_rows


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------


def _log_versions(root: str) -> dict[int, str]:
    """{version: its commit file} of the table's log (checkpoints and other files left out)."""
    found = {}
    for uri in storage.list_files(storage.join(root, "_delta_log"), recursive=False):
        name = posixpath.basename(uri)
        if name.endswith(".json") and name[:-5].isdigit():
            found[int(name[:-5])] = uri
    return found


def _actions(uri: str, kind: str) -> Iterator[dict]:
    """The ``kind`` actions (``commitInfo``, ``add``, ...) of one commit file of the log."""
    for line in storage.read_text(uri).splitlines():
        action = json.loads(line).get(kind) if line.strip() else None
        if action is not None:
            yield action


def created_at(root: str) -> float | None:
    """When the table was made (its first commit's time, seconds), or None if that commit is gone."""
    try:
        infos = list(_actions(storage.join(root, "_delta_log", f"{0:020d}.json"), "commitInfo"))
    except FileNotFoundError:
        return None
    stamps = [i["timestamp"] for i in infos if i.get("timestamp") is not None]
    return stamps[0] / 1000 if stamps else None


def added_since(root: str, version: int | None) -> set[str]:
    """The data files any commit after ``version`` added (None: every commit), relative to
    the root -- also those a later commit removed again. The sweep must not add back a part the
    table once held: a delete, a prune or a changed source's supersede that rewrote it since would
    come back (its rows stale, the rest twice)."""
    from urllib.parse import unquote

    start = -1 if version is None else version
    paths: set[str] = set()
    for v, uri in sorted(_log_versions(root).items()):
        if v <= start:
            continue
        paths.update(unquote(add["path"]) for add in _actions(uri, "add"))
    return paths


def history(root: str) -> list[dict]:
    """The table's commits still in its log, oldest first: version, timestamp (ms), operation and
    the vsd metadata (read from the log's commit files: see `exists` for why not ``history()``)."""
    out = []
    for version, uri in _log_versions(root).items():
        for info in _actions(uri, "commitInfo"):
            out.append(
                {
                    "version": version,
                    "timestamp": info.get("timestamp"),
                    "operation": info.get("operation"),
                    **{k[len("vsd.") :]: v for k, v in info.items() if k.startswith("vsd.")},
                }
            )
    return sorted(out, key=lambda e: e["version"])


def resolve_version(root: str, as_of: str | int | dt.datetime) -> int | None:
    """The version that ``as_of`` names: a commit version (int), a night (``YYYY-MM-DD``: the
    table after the last commit of that night's runs or any before), a run id (after its last
    commit), or a time (datetime / ISO string: the last commit at or before it). None: the table
    did not exist yet (an empty result)."""
    if isinstance(as_of, int):
        version, earliest = as_of, min(_log_versions(root), default=0)
    else:
        commits = history(root)
        version, earliest = _resolve(commits, as_of), commits[0]["version"] if commits else 0
    if earliest > 0 and (version is None or version < earliest):  # `vsd maintain` expired the log
        raise VSDError(
            f"as_of: {as_of!r} is older than this output's kept history (the earliest readable version "
            f"is {earliest}; `vsd maintain --keep-days` sets how far back as_of reaches)"
        )
    return version


def _resolve(commits: list[dict], as_of: str | dt.datetime) -> int | None:
    if isinstance(as_of, str) and len(as_of) == 10 and as_of[4] == "-" and as_of[7] == "-":
        night = [c["version"] for c in commits if c.get("run_date") and c["run_date"] <= as_of]
        return max(night) if night else None
    if isinstance(as_of, str):
        runs = [c["version"] for c in commits if c.get("run_id") == as_of]
        if runs:
            return max(runs)
        try:
            as_of = dt.datetime.fromisoformat(as_of)
        except ValueError:
            raise VSDError(
                f"as_of: {as_of!r} is not a version, a night (YYYY-MM-DD), a run id of this output or a time"
            ) from None
    if as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=dt.timezone.utc)
    limit = as_of.timestamp() * 1000
    at = [c["version"] for c in commits if c["timestamp"] is not None and c["timestamp"] <= limit]
    return max(at) if at else None


def read(
    root: str, as_of: str | int | dt.datetime | None = None, columns: list[str] | None = None
) -> pa.Table:
    """The output's rows: the current ones, or as of an earlier night / version / run / time.

    Columns as `TABLE_SCHEMA` (``ANNOTATION_SCHEMA`` + ``run_date``), boxes as 4-float lists."""
    schema = TABLE_SCHEMA if columns is None else pa.schema([TABLE_SCHEMA.field(c) for c in columns])
    if not exists(root):
        return schema.empty_table()
    version = None if as_of is None else resolve_version(root, as_of)
    if as_of is not None and version is None:
        return schema.empty_table()
    delta = open_table(root, version=version)
    have = set(table_columns(delta))
    try:
        table = delta.to_pyarrow_table(columns=[n for n in schema.names if n in have])
    except (FileNotFoundError, OSError) as exc:
        if version is None:
            raise
        raise VSDError(
            f"as_of: {as_of!r} (table version {version}) reads files that were vacuumed since "
            f"(`vsd maintain --keep-days` sets how far back as_of reaches): {str(exc).splitlines()[0]}"
        ) from None
    for field in schema:  # a column added after that version: null, as in `schema.conform`
        if field.name not in have:
            table = table.append_column(field.name, pa.nulls(table.num_rows, field.type))
    return table.select(schema.names).cast(schema)
