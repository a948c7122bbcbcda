"""`sync`: bring a corpus up to date with its source, writing shards only for what is new.

A row is new when its listing key (``uri|size|version``) is not in the corpus's key set: a file
seen before is never sharded twice, a changed file (new size or mtime/ETag) is a new row. The key
set is checked batch by batch (`vsd.keyset`), so no process holds the corpus's listing. An
``s3://`` prefix is listed in parallel Ray tasks, one per top-level entry, each writing its own
shards and keys; folders, manifests and VSD JSON are streamed in this process.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import pyarrow as pa

from vsd import storage
from vsd.corpus.shards import DEFAULT_SHARD_ROWS, Corpus, Shard, new_sync_id, source_key
from vsd.corpus.sources import (
    Source,
    list_entry,
    list_folder,
    open_source,
    read_manifest,
    read_vsd_source,
    top_level,
)
from vsd.keyset import Snapshot, key_of
from vsd.text import printable

log = logging.getLogger(__name__)


@dataclass
class SyncReport:
    source: Source
    listed: int = 0
    new: int = 0
    shards: list[Shard] = field(default_factory=list)
    repeated: list[str] = field(default_factory=list)  # rows listed twice in this sync (first kept)

    @property
    def problems(self) -> list[str]:
        return self.source.problems

    def merge(self, listed: int, new: int, shards: list[Shard], repeated: list[str]) -> None:
        self.listed += listed
        self.new += new
        self.shards += shards
        self.repeated += repeated


def _keys(table: pa.Table) -> list[bytes]:
    """One key per corpus entry (`source_key`)."""
    return [
        key_of(source_key(u, s, v, i))
        for u, s, v, i in zip(
            table.column("uri").to_pylist(),
            table.column("size").to_pylist(),
            table.column("version").to_pylist(),
            table.column("image_id").to_pylist(),
        )
    ]


def write_new(
    corpus: Corpus, batches: Iterable[pa.Table], snapshot: Snapshot, stem: str, shard_rows: int
) -> tuple[int, int, list[Shard], list[str]]:
    """Filter ``batches`` down to rows not yet in the corpus, shard them, record their keys.

    Order matters for crash safety: shards first, keys last -- a crash in between leaves rows that
    the next sync shards again (the annotation's own index still annotates each image once)."""
    writer = corpus.writer(stem, shard_rows)
    seen: set[bytes] = set()  # this sync's new keys: a row listed twice is sharded once
    seen_ids: set[bytes] = set()  # given ids: two rows claiming one id keep the first, deterministically
    repeated: list[str] = []
    listed = 0
    for table in batches:
        keys = _keys(table)
        known = snapshot.contains(keys)
        keep = []
        uris = table.column("uri").to_pylist()
        ids = table.column("image_id").to_pylist()
        for i, (key, old) in enumerate(zip(keys, known)):
            id_key = key_of("id:" + ids[i]) if ids[i] is not None else None
            if id_key is not None and id_key in seen_ids:
                repeated.append(
                    f"image_id {printable(ids[i], 200)}: row {listed + i + 1} repeats an earlier row (kept the first)"
                )
            elif key in seen:
                repeated.append(
                    f"{printable(uris[i], 300)}: listed again as row {listed + i + 1} (kept the first)"
                )
            elif not old:
                seen.add(key)
                if id_key is not None:
                    seen_ids.add(id_key)
                keep.append(i)
        listed += table.num_rows
        writer.add(table.take(pa.array(keep, pa.int64())) if len(keep) < table.num_rows else table)
    shards = writer.close()
    corpus.keys().add(seen, generation=stem)
    return listed, len(seen), shards, repeated


def _batches(
    source: Source, image_dir: str, vsd2: str, extensions, follow_dir_links: bool = False, allowed_roots=()
) -> Iterator[pa.Table]:
    if source.kind == "folder":
        return list_folder(source.uri, extensions, source.problems, follow_dir_links, allowed_roots)
    if source.kind == "manifest":
        return read_manifest(source.uri, source.roots[0], source.problems)
    return read_vsd_source(source.uri, image_dir, vsd2, source)


def sync(
    corpus: Corpus,
    uri: str,
    fmt: str = "auto",
    image_dir: str = "",
    vsd2: str = "",
    extensions: Iterable[str] = (),
    shard_rows: int = DEFAULT_SHARD_ROWS,
    parallel: bool = False,
    follow_dir_links: bool = False,
    allowed_roots: Iterable[str] = (),
) -> SyncReport:
    """Add to ``corpus`` the rows of ``uri`` it does not have yet; see the module docstring.
    ``parallel``: list an ``s3://`` prefix in Ray tasks (the caller has Ray initialised).
    ``follow_dir_links``: enter links to directories of a local input folder that lead under the
    folder or ``allowed_roots`` (`vsd.corpus.walk`); those roots are then recorded as the source's."""
    source = open_source(uri, fmt, image_dir)
    if follow_dir_links and source.kind == "folder":  # rows under a followed link read from those roots
        source.roots += [r.rstrip("/") for r in allowed_roots if not storage.is_s3(r)]
    report = SyncReport(source)
    stem = new_sync_id()
    snapshot = corpus.keys().snapshot()
    if parallel and source.kind == "folder" and storage.is_s3(uri) and storage.is_dir(uri):
        report.merge(*_parallel_listing(corpus, uri, list(extensions), snapshot, stem, shard_rows))
    else:
        report.merge(
            *write_new(
                corpus,
                _batches(source, image_dir, vsd2, list(extensions), follow_dir_links, list(allowed_roots)),
                snapshot,
                stem,
                shard_rows,
            )
        )
    # Once per sync, after every listing task: a night's keys are level-0 runs, merged as they
    # accumulate (vsd.keyset); never inside the tasks, which would merge each other's runs.
    corpus.keys().compact()
    corpus.add_source(source.kind, uri, source.roots)
    log.info(
        "corpus %s: %d listed, %d new in %d shard(s)",
        corpus.root,
        report.listed,
        report.new,
        len(report.shards),
    )
    return report


def _list_part(
    root: str, uri: str, entry: str, extensions: list[str], snapshot: Snapshot, stem: str, shard_rows: int
) -> tuple[int, int, list[Shard], list[str]]:
    return write_new(Corpus.open(root), list_entry(uri, entry, extensions), snapshot, stem, shard_rows)


def _parallel_listing(
    corpus: Corpus, uri: str, extensions: list[str], snapshot: Snapshot, stem: str, shard_rows: int
) -> tuple[int, int, list[Shard], list[str]]:
    """One Ray task per top-level entry of the prefix; each lists, filters and shards its part."""
    import ray

    task = ray.remote(num_cpus=0.25, max_retries=3)(_list_part)
    snap = ray.put(snapshot)
    entries = top_level(uri)
    refs = [
        task.remote(corpus.root, uri, entry, extensions, snap, f"{stem}-t{i:04d}", shard_rows)
        for i, entry in enumerate(entries)
    ]
    listed = new = 0
    shards: list[Shard] = []
    for got_listed, got_new, got_shards, _ in ray.get(refs):  # disjoint prefixes: nothing repeats
        listed, new, shards = listed + got_listed, new + got_new, shards + got_shards
    return listed, new, shards, []
