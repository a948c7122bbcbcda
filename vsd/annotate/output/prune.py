"""Deleted source files leave the current table: each ``_gone`` set of the corpus, applied once.

`vsd.corpus.listing` records, per sync, the source URIs the previous listing had and this one
lacks. Before a run writes anything (under the output's lease) every such set the output has not
applied yet is looked up in the table's ``source_uri`` column -- one column, file by file, so a
night without deletions reads nothing and one with deletions reads a column, not the rows -- and
the matching rows leave the current table in one commit (``vsd.operation = prune``): only the
files that scan found holding them are read whole and rewritten, not every file again; earlier
nights keep them for ``as_of`` reads until a vacuum. Their images are released
(`vsd.annotate.output.released`): a moved file is a deletion plus a new path with known content,
and that path is annotated. ``__vsd/pruned.json`` lists the sets applied:
a crash between the commit and that file only makes the next run find nothing left to remove.
"""

from __future__ import annotations

import json
import posixpath

import pyarrow.parquet as pq

from vsd import storage
from vsd.annotate.index import Output, image_key
from vsd.annotate.output import table
from vsd.annotate.output.delete import remove_uris
from vsd.annotate.output.released import release
from vsd.corpus.listing import gone_keys, gone_syncs, uri_key

APPLIED_FILE = "pruned.json"


def applied(out: Output) -> list[str]:
    try:
        return json.loads(storage.read_text(out.path(APPLIED_FILE)))["applied"]
    except FileNotFoundError:
        return []


def pending(out: Output, corpus_root: str) -> list[str]:
    """The corpus's sets of deleted files this output has not applied yet."""
    done = set(applied(out))
    return [s for s in gone_syncs(corpus_root) if s not in done]


def gone_uris(root: str, syncs: list[str], corpus_root: str) -> tuple[list[str], set[str], set[str]]:
    """The source URIs of current rows that one of ``syncs`` found deleted, the data files
    (relative to the root) holding them (the only ones the removal needs to read again), and
    those rows' image ids (`vsd.annotate.output.released`)."""
    snaps = [gone_keys(corpus_root, s).snapshot() for s in syncs]
    delta = table.open_table(root)
    fs, base = storage.resolve(root)
    found: set[str] = set()
    files: set[str] = set()
    ids: set[str] = set()
    for path in sorted(table.active_paths(delta)):
        uris = pq.read_table(posixpath.join(base, path), columns=["source_uri"], filesystem=fs)
        values = [u for u in set(uris.column("source_uri").to_pylist()) if u]
        keys = [uri_key(u) for u in values]
        hit = [False] * len(values)
        for snap in snaps:
            hit = [h or c for h, c in zip(hit, snap.contains(keys))]
        gone = {u for u, h in zip(values, hit) if h}
        if gone:
            found.update(gone)
            files.add(path)
            cols = pq.read_table(
                posixpath.join(base, path), columns=["source_uri", "image_id"], filesystem=fs
            )
            pairs = zip(cols.column("source_uri").to_pylist(), cols.column("image_id").to_pylist())
            ids.update(i for u, i in pairs if u in gone and i)
    return sorted(found), files, ids


def prune(out: Output, corpus_root: str) -> tuple[int, int | None]:
    """Apply every pending set (the caller holds the lease); (rows removed, table version)."""
    syncs = pending(out, corpus_root)
    if not syncs:
        return 0, None
    version, n = None, 0
    if table.exists(out.root):
        uris, files, ids = gone_uris(out.root, syncs, corpus_root)
        if uris:
            # before the commit: a moved file's new path is annotated, not skipped
            release(out.released, [(image_key(i, False), image_key(i, True)) for i in ids])
            version, n = remove_uris(
                out.root,
                uris,
                {
                    "vsd.operation": "prune",
                    "vsd.reason": f"deleted from the source (corpus syncs {', '.join(syncs)})",
                },
                paths=files,
            )
    storage.write_text(out.path(APPLIED_FILE), json.dumps({"applied": applied(out) + syncs}, indent=1) + "\n")
    return n, version
