"""Read stage (CPU tasks): input-shard rows -> items with their bytes and a stable id, or skipped.

Rows arrive from `shard_rows` over the unfinished input shards (no per-image object is ever built
in the driver). Per row, in this order, so that a known image costs no read:

1. its listing key (``uri|size|version[|id=…]``) or given ``image_id`` is in the output's key set
   (looked up here, in the task, by bucket) -> ``done``;
2. the run's `IdLedger` claim -> ``done`` / ``duplicate`` (another row has the image) / ``new``;
3. the URI must lie under an allowed root (the input's own folder/prefix, plus
   ``input.allowed_roots``) and be a regular file of at most ``max_file_bytes``: anything else
   is an error row (``outside_root``, ``not_a_file``, ``missing_file``, ``file_too_large``)
   and is never opened;
4. read (storage hiccups retried with backoff), hash -> content id -> key set and claim again.

Failures are sorted by cause (`vsd.annotate.read_causes`). One of the name or the entry -- a
dangling link, a link loop (``link_loop``), a path too long or refused (``bad_path``), an S3 key
the client refuses (``bad_key``), a denied permission -- is that row's error row at once. One of
the storage (5xx, throttling, timeouts, resets, EIO) that still fails after its retries is
*deferred*: not written, so its shard stays unfinished and the next run tries it again (an outage
must not become a final error row). S3 keys are read exactly as listed: ``a/../b`` is not ``b``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import stat
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.fs as pafs

from vsd import storage
from vsd.annotate.index import Claim, image_key, listing_key
from vsd.annotate.items import SCENE, fail_item, new_item, new_pair, to_table
from vsd.annotate.read_causes import ExactKeyError, local_cause, read_exact_key, s3_cause
from vsd.annotate.stages.base import Resources, RunContext, enabled_always, map_stage, resources
from vsd.config import describe
from vsd.corpus.shards import SHARD_SCHEMA, source_key
from vsd.corpus.sources import resolve_uri, under_roots

if TYPE_CHECKING:
    from vsd.annotate.config import AnnotateConfig
    from vsd.keyset import Snapshot

log = logging.getLogger(__name__)

NAME = "read"
HELP = "claim, read and hash the images of the unfinished input shards (CPU tasks)"
enabled = enabled_always


@dataclass
class ReadStageConfig:
    max_file_bytes: int = describe(
        "max_file_bytes",
        100 * 1024 * 1024,
        ge=1,
        help="files larger than this are error rows (file_too_large); never more than "
        "this plus one byte is read, whatever the storage reports",
    )
    attempts: int = describe(
        "attempts",
        4,
        ge=1,
        help="tries per file before a read failure is deferred to the next run "
        "(backoff 0.5 s, 1 s, 2 s, ...; on top of the S3 client's retries)",
    )
    resources: Resources = resources(
        "CPU tasks; batch_size = images per task call (default 32)", num_cpus=0.25
    )


Config = ReadStageConfig


def shard_rows(uris: list[str], rows_per_block: int):
    """The rows of the input shards ``uris`` as a Dataset with a ``path`` column, read by plain Ray
    tasks, one per shard.

    Why not ``ray.data.read_parquet``: Ray 2.60's Parquet datasource lists footers through actors,
    and when a node dies under one the read raises ``ActorDiedError`` inside the listing task and
    the whole run fails (the multi-node node-kill test); a plain task lost with its node is retried.
    """
    import ray.data

    ds = ray.data.from_items([{"path": u} for u in uris], override_num_blocks=max(1, len(uris)))
    ds = ds.map_batches(_read_shards, batch_size=1, batch_format="pyarrow", zero_copy_batch=True)
    return ds.repartition(target_num_rows_per_block=rows_per_block)


def _read_shards(batch: pa.Table) -> pa.Table:
    import pyarrow.parquet as pq

    tables = []
    for uri in batch.column("path").to_pylist():
        fs, path = storage.resolve(uri)
        try:
            table = pq.read_table(path, filesystem=fs)
        except FileNotFoundError:
            # A sync merged it into a bigger shard since this run's plan (vsd.corpus.merge): its
            # rows are there. Read nothing, so no marker says it is finished; the next run reads
            # the merged shard or carries it over.
            log.warning("input shard %s: merged away since the plan; its rows wait for the next run", uri)
            table = SHARD_SCHEMA.empty_table()
        tables.append(table.append_column("path", pa.array([path] * table.num_rows, pa.string())))
    return pa.concat_tables(tables)


def add(ds, cfg: AnnotateConfig, ctx: RunContext):
    stage = cfg.stages.read
    return map_stage(
        ds,
        read_rows,
        stage.resources,
        default_batch=32,
        keeps_rows=False,
        kwargs={
            "ledger": ctx.ledger,
            "ids": ctx.ids,
            "released": ctx.released,
            "roots": ctx.roots,
            "max_file_bytes": stage.max_file_bytes,
            "attempts": stage.attempts,
        },
    )


# ----------------------------------------------------------------------------------------------
# Rows -> items
# ----------------------------------------------------------------------------------------------


def shard_name(path: str) -> str:
    name = posixpath.basename(str(path))
    return name[: -len(".parquet")] if name.endswith(".parquet") else name


def item_from_row(row: dict, shard: str) -> dict:
    pairs = []
    for j, p in enumerate(row.get("pairs") or []):
        pairs.append(
            new_pair(
                p["index"] if p.get("index") is not None else j,
                p.get("subject"),
                p.get("object"),
                p.get("subject_box"),
                p.get("object_box"),
                box_source="given",
            )
        )
    item = new_item(
        row["uri"],
        image_id=row.get("image_id") or None,
        pairs=pairs or None,
        source_key=source_key(row["uri"], row.get("size"), row.get("version"), row.get("image_id") or None),
    )
    item.update(shard=shard, shard_row=int(row["row"]), given_id=row.get("image_id") is not None)
    if not item["pairs"]:
        item["pairs"] = [new_pair(SCENE)]
    return item


def _claimant(item: dict) -> str:
    return f"{item['shard']}#{item['shard_row']}"


def _ikey(item: dict) -> bytes | None:
    return image_key(item["image_id"], item["given_id"]) if item["image_id"] is not None else None


def _claim(ledger, items: list[dict], known: list[bool]) -> list[str]:
    import ray

    entries = [
        Claim(_claimant(it), it["shard"], _ikey(it), listing_key(it["source_key"]), k, it["source_uri"])
        for it, k in zip(items, known)
    ]
    return ray.get(ledger.claim.remote(entries))


def read_rows(
    batch: pa.Table,
    *,
    ledger,
    ids: Snapshot | None,
    roots: list[str],
    max_file_bytes: int,
    attempts: int = 4,
    released: frozenset[bytes] = frozenset(),
) -> pa.Table:
    """Claim, read and hash one batch of shard rows; returns the items to annotate. An image key
    in ``released`` (its rows were pruned: `vsd.annotate.output.released`) is not done."""
    import ray

    paths = batch.column("path").to_pylist() if "path" in batch.column_names else [""] * batch.num_rows
    rows = batch.drop_columns([c for c in ("path",) if c in batch.column_names]).to_pylist()
    items = [item_from_row(r, shard_name(p)) for r, p in zip(rows, paths)]
    # A row of a redo shard (`vsd.annotate.redo`) is in the key set on purpose: not skipped for it.
    redo_of = {id(it): r["redo_of"] for it, r in zip(items, rows) if r.get("redo_of")}
    if ids is not None:
        probe = [listing_key(it["source_key"]) for it in items] + [_ikey(it) or b"\0" * 16 for it in items]
        hits = ids.contains(probe)
        known = [
            (a or (b and it["image_id"] is not None and _ikey(it) not in released)) and id(it) not in redo_of
            for it, a, b in zip(items, hits[: len(items)], hits[len(items) :])
        ]
    else:
        known = [False] * len(items)
    verdicts = _claim(ledger, items, known)
    todo = [it for it, v in zip(items, verdicts) if v in ("new", "unknown")]
    deferred = []
    for item in todo:
        if item["status"] != "ok":
            continue
        try:
            item["data"] = read_bytes(item["source_uri"], roots, max_file_bytes, attempts)
        except ReadError as exc:
            if exc.transient:
                deferred.append(item)
                continue
            fail_item(item, exc.reason, exc.detail)
    if deferred:
        ray.get(ledger.defer.remote([(_claimant(it), it["shard"]) for it in deferred]))
    gone = set(map(id, deferred))
    todo = [it for it in todo if id(it) not in gone]
    unknown = [it for it in todo if it["image_id"] is None]
    for item in unknown:
        # An unreadable file has no content to hash: its URI names it (stable across runs).
        content = item["data"] if item["data"] is not None else ("unreadable:" + item["source_uri"]).encode()
        item["image_id"] = hashlib.sha256(content).hexdigest()
    if unknown:
        known = ids.contains([_ikey(it) for it in unknown]) if ids is not None else [False] * len(unknown)
        # a redone image that reads as the one it redoes is not "already annotated"; one that now
        # reads as another image (say, an unreadable file fixed) is looked up like any other
        known = [
            k and redo_of.get(id(it)) != it["image_id"] and _ikey(it) not in released
            for it, k in zip(unknown, known)
        ]
        second = dict(zip(map(id, unknown), _claim(ledger, unknown, known)))
        todo = [it for it in todo if second.get(id(it), "new") == "new"]
    return to_table(todo)


# ----------------------------------------------------------------------------------------------
# Reading one object
# ----------------------------------------------------------------------------------------------


class ReadError(Exception):
    def __init__(self, reason: str, detail: str, transient: bool = False):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail, self.transient = reason, detail, transient


def read_bytes(uri: str, roots: list[str], max_file_bytes: int, attempts: int = 4) -> bytes:
    """The object's bytes, within the rules above; storage hiccups are retried with backoff."""
    try:
        inside = under_roots(uri, roots)
    except ValueError:  # a NUL byte: no file has this name, and realpath refuses it
        raise ReadError("bad_path", "a NUL byte in the path") from None
    if not inside:
        raise ReadError("outside_root", "the URI is not under an allowed root (input.allowed_roots)")
    for attempt in range(attempts):
        try:
            return _read_once(uri, max_file_bytes)
        except ReadError as exc:
            if not exc.transient or attempt == attempts - 1:
                raise
            time.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


def _read_once(uri: str, max_file_bytes: int) -> bytes:
    if not storage.is_s3(uri):
        try:
            path = resolve_uri(uri, "/")
        except ValueError:  # a NUL byte in the path: no file can have this name
            raise ReadError("bad_path", "a NUL byte in the path") from None
        return _read_local(path, max_file_bytes)
    bucket, _, key = uri[len("s3://") :].partition("/")
    fs, path = storage.filesystem_for(uri), f"{bucket}/{key}"  # the key exactly: no "/" stripped
    if storage.needs_exact_key(key):  # a//b, a/./b, a/../b: keys of their own, which Arrow cannot address
        try:
            data = read_exact_key(bucket, key, max_file_bytes)
        except ExactKeyError as exc:
            raise ReadError(exc.reason, exc.detail, exc.transient) from None
    else:
        try:
            info = fs.get_file_info(path)
            if info.type == pafs.FileType.NotFound:
                raise ReadError("missing_file", "no such object")
            if info.type != pafs.FileType.File:
                raise ReadError("not_a_file", "a prefix, not an object")
            if info.size is not None and info.size > max_file_bytes:
                raise ReadError(
                    "file_too_large", f"{info.size} bytes > stages.read.max_file_bytes {max_file_bytes}"
                )
            with fs.open_input_stream(path) as f:
                data = f.read(max_file_bytes + 1)
        except ReadError:
            raise
        except (
            OSError,
            ValueError,
        ) as exc:  # by cause: the store's failures are deferred, the key's are final
            raise ReadError(*s3_cause(exc)) from None
    if len(data) > max_file_bytes:
        raise ReadError("file_too_large", f"more than stages.read.max_file_bytes {max_file_bytes} bytes")
    return data


def _read_local(path: str, max_file_bytes: int) -> bytes:
    """Regular files only (a FIFO would hang, /dev/zero never ends), at most the limit + 1 byte.
    Failures are sorted by cause (`local_cause`): only the storage's own are transient."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens at once, then fails fstat
    except OSError as exc:
        raise ReadError(*local_cause(exc)) from None
    except ValueError:  # a NUL byte
        raise ReadError("bad_path", "a NUL byte in the path") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ReadError("not_a_file", "not a regular file")
        if st.st_size > max_file_bytes:
            raise ReadError(
                "file_too_large", f"{st.st_size} bytes > stages.read.max_file_bytes {max_file_bytes}"
            )
        chunks, total = [], 0
        while total <= max_file_bytes:
            chunk = os.read(fd, min(1 << 20, max_file_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > max_file_bytes:
            raise ReadError("file_too_large", f"more than stages.read.max_file_bytes {max_file_bytes} bytes")
        return b"".join(chunks)
    except OSError as exc:
        raise ReadError(*local_cause(exc)) from None
    finally:
        os.close(fd)
