"""Exactly-once bookkeeping of an output: what is written, by whom, and what is finished.

Layout below the output root (everything but the data is under ``__vsd/``, which pandas, pyarrow,
Ray Data, duckdb globs and Hugging Face ``datasets`` all skip, so the root reads as a dataset)::

    run_date=YYYY-MM-DD/part-<sha20>.parquet  the data (ANNOTATION_SCHEMA), whole images per part
    _README.md                                 the dataset card
    __vsd/progress/<run_id>/part-<sha20>.parquet  one entry per part: its images' keys, shard rows,
                                               counts (written BEFORE the part: an entry whose part
                                               is missing is dropped, so no part is ever unindexed)
    __vsd/ids/                                 a `vsd.keyset.KeySet` of every written image: content
                                               ids ``c:``, given ids ``g:``, listing keys ``s:``
    __vsd/shards/<shard>.json                  completion marker: every row of that input shard is
                                               written or skipped; a nightly run reads only shards
                                               without one
    __vsd/totals/<run_id>.json                 the counts a run's parts added (the card sums these)
    __vsd/runs/<run_id>.json                   each run's record, never overwritten
    __vsd/partitions/run_date=YYYY-MM-DD.json  which runs wrote the partition, and its totals
    __vsd/corpus/                              shards made from a folder/manifest/VSD input

Why our own index and not Ray Data's checkpointing: our id is usually the content hash, known only
after a read task has read the bytes; "annotated in any earlier run" must hold across run dates;
and identical files within a corpus must become one image (a per-row checkpoint cannot do that).

At the end of a run `compact` folds the progress entries into the id key set and the totals (each
step idempotent, so a crash in between is repaired by the next run), which keeps the number of
files bounded and lets every later lookup happen inside tasks, against the bucketed key set.
"""

from __future__ import annotations

import json
import posixpath
from collections import Counter
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from vsd import storage
from vsd.annotate.output import released
from vsd.annotate.records import Records
from vsd.keyset import KeySet, Snapshot, as_array, key_of

VSD_DIR = "__vsd"
CARD_FILE = "_README.md"
PART_PREFIX = "part-"
RECORD_KINDS = ("runs", "started", "totals", "shards", "partitions")

PROGRESS_SCHEMA = pa.schema(
    [
        pa.field("image_id", pa.string()),
        pa.field("image_key", pa.binary(16)),  # c:/g: key of the image id
        pa.field("source_key", pa.binary(16)),  # s: key of uri|size|version (null if unknown)
        pa.field("uri_key", pa.binary(16)),  # u: key of the source URI: a later version of it supersedes
        pa.field("shard", pa.string()),
        pa.field("row", pa.int64()),
    ]
)


def partition(run_date: str) -> str:
    return f"run_date={run_date}"


def image_key(image_id: str, given: bool) -> bytes:
    """Given ids and content ids live in separate key spaces: a manifest row that claims another
    image's content hash as its ``image_id`` can never make that image count as annotated."""
    return key_of(("g:" if given else "c:") + image_id)


def listing_key(source_key: str) -> bytes:
    return key_of("s:" + source_key)


def _files(uri: str, recursive: bool = True) -> list[pafs.FileInfo]:
    fs, base = storage.resolve(uri)
    if fs.get_file_info(base).type != pafs.FileType.Directory:
        return []
    return [
        i
        for i in fs.get_file_info(pafs.FileSelector(base, recursive=recursive, allow_not_found=True))
        if i.type == pafs.FileType.File
    ]


class Output:
    """Paths and bookkeeping of one output root."""

    def __init__(self, root: str):
        self.root = root.rstrip("/")
        self.vsd = storage.join(self.root, VSD_DIR)
        self._prefix = "s3://" if storage.is_s3(self.root) else ""

    def path(self, *parts: str) -> str:
        return storage.join(self.vsd, *parts)

    def data_part(self, run_date: str, name: str) -> str:
        return storage.join(self.root, partition(run_date), name)

    @property
    def card(self) -> str:
        return storage.join(self.root, CARD_FILE)

    def ids(self) -> KeySet:
        return KeySet(self.path("ids"))

    @property
    def released(self) -> str:
        """`vsd.annotate.output.released`: images a prune took out, annotated again when seen."""
        return self.path(released.FILE)

    def data_parts(self) -> dict[str, str]:
        """{"run_date=…/part-….parquet": URI} of every data part (a full listing: tools and tests;
        the pipeline itself never needs it)."""
        fs, base = storage.resolve(self.root)
        out = {}
        for info in _files(self.root):
            rel = posixpath.relpath(info.path, base).split("/")
            if (
                len(rel) == 2
                and rel[0].startswith("run_date=")
                and rel[1].startswith(PART_PREFIX)
                and rel[1].endswith(".parquet")
            ):
                out["/".join(rel)] = self._prefix + info.path
        return out

    def records(self, kind: str) -> Records:
        """``runs``, ``started``, ``totals``, ``shards`` (completion markers), ``partitions``."""
        return Records(self.path(kind))

    def pack_records(self) -> int:
        """Fold each kind's loose records once they pile up (`vsd.annotate.records`)."""
        return sum(self.records(k).pack() for k in RECORD_KINDS)

    def run_record(self, run_id: str) -> dict | None:
        return self.records("runs").get(run_id)

    def partition_record(self, run_date: str) -> dict | None:
        return self.records("partitions").get(partition(run_date))

    # ------------------------------------------------------------------ completion markers
    def finished_shards(self) -> set[str]:
        return set(self.records("shards").names())

    def write_marker(self, shard: str, record: dict) -> None:
        self.records("shards").put(shard, record)

    # ------------------------------------------------------------------ progress entries
    def progress_uri(self, run_id: str, part: str) -> str:
        return self.path("progress", run_id, part)

    def write_progress(self, run_id: str, part: str, run_date: str, table: pa.Table, counts: dict) -> None:
        meta = {
            b"vsd.part": part.encode(),
            b"vsd.run_date": run_date.encode(),
            b"vsd.counts": json.dumps(counts, sort_keys=True).encode(),
        }
        sink = pa.BufferOutputStream()
        if "uri_key" not in table.column_names:
            table = table.append_column("uri_key", pa.nulls(table.num_rows, pa.binary(16)))
        pq.write_table(
            table.select(PROGRESS_SCHEMA.names).cast(PROGRESS_SCHEMA).replace_schema_metadata(meta), sink
        )
        storage.write_bytes(self.progress_uri(run_id, part), sink.getvalue().to_pybytes())

    def progress(self) -> dict[str, list[str]]:
        """{run_id: [entry URI, ...]} for every run whose entries are not compacted yet."""
        out: dict[str, list[str]] = {}
        base = self.path("progress")
        fs, base_path = storage.resolve(base)
        for info in _files(base):
            rel = posixpath.relpath(info.path, base_path).split("/")
            if len(rel) == 2 and rel[1].startswith(PART_PREFIX):
                out.setdefault(rel[0], []).append(self._prefix + info.path)
        return {k: sorted(v) for k, v in sorted(out.items())}

    def read_progress(
        self, uris: list[str], drop_orphans: bool = True, columns: list[str] | None = None
    ) -> Iterator[tuple[str, dict, pa.Table]]:
        """(uri, metadata, entries) of each progress file whose data part exists, one file at a
        time (a run's entries hold every row it wrote: never all in memory); ``columns=[]`` reads
        the metadata alone. An entry whose part is missing (the run died between the two writes)
        is deleted: its images are redone."""
        for uri in uris:
            fs, path = storage.resolve(uri)
            table = pq.read_table(path, filesystem=fs, columns=columns)
            meta = {
                k.decode(): v.decode()
                for k, v in (table.schema.metadata or {}).items()
                if k.startswith(b"vsd.")
            }
            if not storage.exists(self.data_part(meta["vsd.run_date"], meta["vsd.part"])):
                if drop_orphans:
                    storage.delete(uri)
                continue
            yield uri, meta, table

    # ------------------------------------------------------------------ compaction and totals
    def compact(self, max_generations: int = 8) -> dict[str, int]:
        """Fold every run's progress entries into the id key set and a totals file, then delete
        them. Each step is idempotent (same generation name, same totals file), so a crash
        anywhere is repaired by the next call. Returns {run_id: images folded}."""
        ids = self.ids()
        folded = {}
        for run_id, uris in self.progress().items():
            done_before = self.records("totals").has(run_id)  # a crash after totals, before the deletes
            keys: list[np.ndarray] = []  # 16 bytes a key (a list of bytes objects is ~70)
            counts: dict = {}
            entries = 0
            for _, meta, table in self.read_progress(uris, drop_orphans=not done_before):
                entries += 1
                for column in ("image_key", "source_key", "uri_key"):  # older entries lack uri_key
                    if column in table.column_names:
                        keys.append(as_array(k for k in table.column(column).to_pylist() if k))
                merge_counts(counts, json.loads(meta["vsd.counts"]))
            if not done_before:
                ids.add(np.concatenate(keys) if keys else [], generation=f"g-{run_id}")
                self.records("totals").put(run_id, plain(counts))
            if keys:
                released.spend(self.released, np.concatenate(keys))
            for uri in uris:
                if storage.exists(uri):
                    storage.delete(uri)
            storage.delete(self.path("progress", run_id))  # the emptied folder (local disks keep it)
            folded[run_id] = entries
        ids.compact(max_generations=max_generations)
        return folded

    def totals(self) -> dict:
        """Counts of every row ever written: the sum of the runs' totals files (no data read)."""
        total: dict = {}
        for counts in self.records("totals").items().values():
            merge_counts(total, counts)
        return plain(total)

    def runs(self) -> list[str]:
        return self.records("runs").names()


# ----------------------------------------------------------------------------------------------
# Counting
# ----------------------------------------------------------------------------------------------


def merge_counts(total: dict, part: dict) -> dict:
    for key, value in part.items():
        if isinstance(value, dict):
            merge_counts(total.setdefault(key, {}), value)
        else:
            total[key] = total.get(key, 0) + value
    return total


def plain(counts: dict) -> dict:
    """Nested counters -> sorted plain dicts (stable JSON)."""
    return {k: (plain(dict(v)) if isinstance(v, (dict, Counter)) else v) for k, v in sorted(counts.items())}


# ----------------------------------------------------------------------------------------------
# The run's claim desk
# ----------------------------------------------------------------------------------------------


class Claim(NamedTuple):
    """One shard row asking the ledger (`IdLedger.claim`) whether to annotate its image."""

    claimant: str  # "<shard>#<row>": who asks (a retried task asks again as the same claimant)
    shard: str
    image_key: bytes | None  # `image_key` of its id (given or content); None: not read yet
    source_key: bytes | None  # `listing_key` of its listing entry, if any
    known_done: bool  # the id snapshot says an earlier run wrote it
    uri: str  # where it was read, for the duplicates report


class IdLedger:
    """The run's claims (a Ray actor pinned to the driver's node, so losing a worker node never
    loses it); it holds only what this run and any unfinished earlier run touched -- never the
    corpus's ids, which tasks look up in the key set themselves.

    ``claim`` answers per entry ``(claimant, shard, image_key | None, listing_key | None, known_done)``
    where the claimant is ``<shard>#<row>``: ``done`` (written before: by the key set, which the
    task checked, or by an uncompacted entry), ``duplicate`` (another row claimed the same image in
    this run), ``new`` (go ahead; the same claimant asking again stays ``new``, so a retried task
    never loses its images) or ``unknown`` (no id yet: read and hash, then claim again).
    ``commit`` is asked by the write stage: an image already committed to another part is not
    written again (a re-executed upstream task after a node loss can send it twice).
    """

    def __init__(self, output: str, run_id: str):
        self.output = Output(output)
        self.run_id = run_id
        self._done_keys: set[bytes] = set()
        self._claims: dict[bytes, str] = {}
        self._commits: dict[bytes, str] = {}
        for rid, uris in self.output.progress().items():
            for _, meta, table in self.output.read_progress(uris):
                ikeys = table.column("image_key").to_pylist()
                skeys = [k for k in table.column("source_key").to_pylist() if k]
                if rid == self.run_id:  # restarted mid-run: this run's writes are its commits
                    claimants = [
                        f"{s}#{r}"
                        for s, r in zip(table.column("shard").to_pylist(), table.column("row").to_pylist())
                    ]
                    self._claims.update(zip(ikeys, claimants))
                    self._commits.update((k, meta["vsd.part"]) for k in ikeys)
                    self._done_keys.update(skeys)
                else:
                    self._done_keys.update(ikeys)
                    self._done_keys.update(skeys)
        # Sets keyed by claimant: a retried task asks again and must not be counted twice.
        self._skipped: dict[str, tuple[str, str]] = {}
        self._duplicates: dict[str, str] = {}

    def claim(self, entries: list[Claim]) -> list[str]:
        return [self._claim_one(e) for e in entries]

    def _claim_one(self, c: Claim) -> str:
        if (
            c.known_done
            or (c.source_key is not None and c.source_key in self._done_keys)
            or (c.image_key is not None and c.image_key in self._done_keys)
        ):
            self._skipped[c.claimant] = (c.shard, "done")
            return "done"
        if c.image_key is None:
            return "unknown"
        owner = self._claims.setdefault(c.image_key, c.claimant)
        if owner != c.claimant:
            self._skipped[c.claimant] = (c.shard, "duplicate")
            self._duplicates[c.claimant] = f"{c.uri} ({c.claimant}): same image as {owner}"
            return "duplicate"
        return "new"

    def defer(self, claimants: list[tuple[str, str]]) -> None:
        """Rows whose read failed transiently: not written now, so their shard stays unfinished
        and the next run tries them again."""
        for claimant, shard in claimants:
            self._skipped[claimant] = (shard, "deferred")

    def commit(self, part: str, keys: list[bytes]) -> list[bool]:
        keep = []
        for key in keys:
            owner = self._commits.setdefault(key, part)
            keep.append(owner == part)
        return keep

    def report(self) -> dict:
        by_shard: dict[str, Counter] = {}
        for shard, why in self._skipped.values():
            by_shard.setdefault(shard, Counter())[why] += 1
        reasons = Counter(why for _, why in self._skipped.values())
        return {
            "skipped_done": reasons["done"],
            "skipped_duplicate": reasons["duplicate"],
            "deferred": reasons["deferred"],
            "duplicates": sorted(self._duplicates.values())[:1000],
            "skipped_by_shard": {s: dict(c) for s, c in by_shard.items()},
        }


def ids_snapshot(output: str) -> Snapshot:
    return Output(output).ids().snapshot()
