"""`sync`: bring a corpus up to date with its source, writing shards only for what is new.

A row is new when its listing key (``uri|size|version``) is not in the corpus's key set: a file
seen before is never sharded twice, a changed file (new size or mtime/ETag; a new content hash
where the source gives neither, `vsd.corpus.fingerprint`) is a new row. The key
set is checked batch by batch (`vsd.keyset`), so no process holds the corpus's listing. An
``s3://`` prefix is listed in parallel Ray tasks, one per top-level entry, each writing its own
shards and keys; folders, manifests and VSD JSON are streamed in this process.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import pyarrow as pa

from vsd import storage
from vsd.corpus.fingerprint import fingerprint
from vsd.corpus.listing import Listing, ListingResult, prunes
from vsd.corpus.merge import merge_small
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
from vsd.corpus.spill import SpillingKeys
from vsd.keyset import KeySet, Snapshot, key_of
from vsd.text import printable

log = logging.getLogger(__name__)


@dataclass
class SyncReport:
    source: Source
    listed: int = 0
    new: int = 0
    shards: list[Shard] = field(default_factory=list)
    repeated: list[str] = field(default_factory=list)  # rows listed twice (first kept): the first messages
    repeats: int = 0  # how many rows were listed twice
    listing: ListingResult | None = None  # with pruning: the comparison with the previous listing
    merged: list[Shard] = field(default_factory=list)  # small shards merged after the listing

    @property
    def problems(self) -> list[str]:
        return self.source.problems

    def merge(self, listed: int, new: int, shards: list[Shard], repeated: list[str], repeats: int) -> None:
        self.listed += listed
        self.new += new
        self.shards += shards
        self.repeated += repeated
        self.repeats += repeats


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


MAX_REPEATED = 1000  # messages kept about rows listed twice (the rest are counted)


def write_new(
    corpus: Corpus,
    batches: Iterable[pa.Table],
    snapshot: Snapshot,
    stem: str,
    shard_rows: int,
    listing: Listing | None = None,
) -> tuple[int, int, list[Shard], list[str], int]:
    """Filter ``batches`` down to rows not yet in the corpus, shard them, record their keys (and,
    with ``listing``, every listed URI: what a later sync diffs to find deleted files).

    Memory is bounded however long the listing (`vsd.corpus.spill`): this sync's keys spill into
    the corpus key set as generations, each only once the shards holding its rows are written --
    shards first, keys last, so a crash in between leaves rows that the next sync shards again
    (the annotation's own index still annotates each image once), never a key without its row.
    Given image ids (a row claiming an id taken earlier in this sync keeps the first) spill into
    a scratch key set that is deleted at the end."""
    writer = corpus.writer(stem, shard_rows)
    seen = SpillingKeys(corpus.keys(), stem)
    scratch = tempfile.mkdtemp(prefix="vsd-sync-ids-")
    seen_ids = SpillingKeys(KeySet(scratch), "ids")
    repeated: list[str] = []
    repeats = listed = 0
    try:
        for table in batches:
            keys = _keys(table)
            known = snapshot.contains(keys)
            mine = seen.contains(keys)
            uris = table.column("uri").to_pylist()
            ids = table.column("image_id").to_pylist()
            id_keys = [key_of("id:" + i) if i is not None else None for i in ids]
            taken = seen_ids.contains([k for k in id_keys if k is not None])
            taken_ids = {k for k, hit in zip((k for k in id_keys if k is not None), taken) if hit}
            if listing is not None:
                listing.add(uris)
            keep = []
            for i, (key, old) in enumerate(zip(keys, known)):
                id_key = id_keys[i]
                if id_key is not None and id_key in taken_ids:
                    message = f"image_id {printable(ids[i], 200)}: row {listed + i + 1} repeats an earlier row (kept the first)"
                elif mine[i] or seen.pending_has(key):
                    message = (
                        f"{printable(uris[i], 300)}: listed again as row {listed + i + 1} (kept the first)"
                    )
                elif not old:
                    seen.add(key)
                    if id_key is not None:
                        seen_ids.add(id_key)
                        taken_ids.add(id_key)
                    keep.append(i)
                    continue
                else:
                    continue
                repeats += 1
                if len(repeated) < MAX_REPEATED:
                    repeated.append(message)
            listed += table.num_rows
            writer.add(table.take(pa.array(keep, pa.int64())) if len(keep) < table.num_rows else table)
            if seen.over_limit():  # spill the keys of rows already in written shards
                seen.flush(sum(s.rows for s in writer.written) - (seen.count - seen.pending), level0=False)
            if seen_ids.over_limit():
                seen_ids.flush(level0=False)
        shards = writer.close()
        seen.flush(level0=None if seen.spilled == 0 else False)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if listing is not None:
        listing.close()
    return listed, seen.count, shards, repeated, repeats


def _batches(
    source: Source, image_dir: str, vsd2: str, extensions, follow_dir_links: bool = False, allowed_roots=()
) -> Iterator[pa.Table]:
    if source.kind == "folder":
        return list_folder(source.uri, extensions, source.problems, follow_dir_links, allowed_roots)
    roots = [*source.roots, *allowed_roots]
    if source.kind == "manifest":
        rows = read_manifest(source.uri, source.roots[0], source.problems)
    else:
        rows = read_vsd_source(source.uri, image_dir, vsd2, source)
    return (fingerprint(t, roots) for t in rows)  # no size/version given: the content's hash


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
    prune: str = "auto",
) -> SyncReport:
    """Add to ``corpus`` the rows of ``uri`` it does not have yet; see the module docstring.
    ``parallel``: list an ``s3://`` prefix in Ray tasks (the caller has Ray initialised).
    ``follow_dir_links``: enter links to directories of a local input folder that lead under the
    folder or ``allowed_roots`` (`vsd.corpus.walk`); those roots are then recorded as the source's.
    ``prune`` (auto | on | off, `vsd.corpus.listing.prunes`): keep this listing and record the
    files the previous one had and this one lacks, for the outputs to delete."""
    source = open_source(uri, fmt, image_dir)
    if follow_dir_links and source.kind == "folder":  # rows under a followed link read from those roots
        source.roots += [r.rstrip("/") for r in allowed_roots if not storage.is_s3(r)]
    report = SyncReport(source)
    stem = new_sync_id()
    snapshot = corpus.keys().snapshot()
    listing = Listing(corpus.root, source.kind, uri, stem) if prunes(source.kind, prune) else None
    if parallel and source.kind == "folder" and storage.is_s3(uri) and storage.is_dir(uri):
        report.merge(
            *_parallel_listing(corpus, uri, list(extensions), snapshot, stem, shard_rows, listing is not None)
        )
    else:
        report.merge(
            *write_new(
                corpus,
                _batches(source, image_dir, vsd2, list(extensions), follow_dir_links, list(allowed_roots)),
                snapshot,
                stem,
                shard_rows,
                listing,
            )
        )
    if listing is not None:
        listing.rows = report.listed  # a parallel listing's rows were counted in its tasks
        report.listing = listing.finish(source.problems)
    # Once per sync, after every listing task: a night's keys are level-0 runs, merged as they
    # accumulate (vsd.keyset); never inside the tasks, which would merge each other's runs.
    corpus.keys().compact()
    # Shards likewise: the newest small ones merged, a few per level (vsd.corpus.merge), after
    # the keys, so a kill here leaves shards whose rows the key set already knows.
    report.merged = merge_small(corpus, shard_rows, {s.name for s in report.shards})
    corpus.add_source(source.kind, uri, source.roots)
    log.info(
        "corpus %s: %d listed, %d new in %d shard(s), %d merged shard(s)",
        corpus.root,
        report.listed,
        report.new,
        len(report.shards),
        len(report.merged),
    )
    return report


def _list_part(
    root: str,
    uri: str,
    entry: str,
    extensions: list[str],
    snapshot: Snapshot,
    stem: str,
    shard_rows: int,
    part: str,
    record: bool,
) -> tuple[int, int, list[Shard], list[str], int]:
    listing = Listing(root, "folder", uri, stem, part=part) if record else None
    return write_new(
        Corpus.open(root), list_entry(uri, entry, extensions), snapshot, f"{stem}-{part}", shard_rows, listing
    )


def _parallel_listing(
    corpus: Corpus,
    uri: str,
    extensions: list[str],
    snapshot: Snapshot,
    stem: str,
    shard_rows: int,
    record: bool,
) -> tuple[int, int, list[Shard], list[str], int]:
    """One Ray task per top-level entry of the prefix; each lists, filters and shards its part
    (and, with ``record``, writes its part of the listing under the sync's own name)."""
    import ray

    task = ray.remote(num_cpus=0.25, max_retries=3)(_list_part)
    snap = ray.put(snapshot)
    entries = top_level(uri)
    refs = [
        task.remote(corpus.root, uri, entry, extensions, snap, stem, shard_rows, f"t{i:04d}", record)
        for i, entry in enumerate(entries)
    ]
    listed = new = 0
    shards: list[Shard] = []
    for got_listed, got_new, got_shards, _, _ in ray.get(refs):  # disjoint prefixes: nothing repeats
        listed, new, shards = listed + got_listed, new + got_new, shards + got_shards
    return listed, new, shards, [], 0
