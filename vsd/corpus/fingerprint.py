"""A content hash for rows whose listing gives no version: a manifest of bare URIs, VSD JSON.

A corpus row's identity is ``uri|size|version`` (`vsd.corpus.shards.source_key`): a folder or
prefix listing gives size and mtime/ETag, so a file changed in place is a new row. A manifest
without them would make a file replaced under the same name invisible forever, so the sync reads
such a file and takes its SHA-256 as the version (``sha256:<32 hex>``) and its length as the size.
That costs a read of every such file at every sync: a manifest that carries ``size`` and
``mtime``/``etag`` (an S3 Inventory does) costs none. Only files under the source's roots are read
(a row elsewhere keeps no version and becomes its ``outside_root`` error row at annotation); a file
that cannot be read keeps none either, and its read error is reported by the annotation.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa

from vsd import storage
from vsd.corpus.sources import under_roots

HASH_THREADS = 8
CHUNK_BYTES = 1 << 20


def content_version(uri: str) -> tuple[int, str] | None:
    """(size, ``sha256:…``) of the file's bytes, streamed; None if it cannot be read."""
    try:
        fs, path = storage.resolve(uri)
        digest, size = hashlib.sha256(), 0
        with fs.open_input_stream(path) as stream:
            while chunk := stream.read(CHUNK_BYTES):
                digest.update(chunk)
                size += len(chunk)
    except (OSError, ValueError):
        return None
    return size, "sha256:" + digest.hexdigest()[:32]


def fingerprint(table: pa.Table, roots: list[str]) -> pa.Table:
    """``table`` (corpus rows) with size and version filled from the content where both are null."""
    sizes, versions = table.column("size").to_pylist(), table.column("version").to_pylist()
    uris = table.column("uri").to_pylist()
    todo = [i for i, (s, v) in enumerate(zip(sizes, versions)) if s is None and v is None and uris[i]]
    todo = [i for i in todo if _inside(uris[i], roots)]
    if not todo:
        return table
    with ThreadPoolExecutor(HASH_THREADS) as pool:
        for i, got in zip(todo, pool.map(lambda i: content_version(uris[i]), todo)):
            if got is not None:
                sizes[i], versions[i] = got
    table = table.set_column(table.schema.get_field_index("size"), "size", pa.array(sizes, pa.int64()))
    return table.set_column(
        table.schema.get_field_index("version"), "version", pa.array(versions, pa.string())
    )


def _inside(uri: str, roots: list[str]) -> bool:
    try:
        return bool(roots) and under_roots(uri, roots)
    except ValueError:  # a NUL byte: no file has this name
        return False
