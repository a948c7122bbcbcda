"""A corpus: immutable Parquet manifest shards, the unit of nightly incrementality.

Layout below the corpus root (local or ``s3://``)::

    _corpus.json                          what the corpus was built from (sources, their roots)
    shards/shard-<sync>-<task>-<n>-r<rows>.parquet   immutable; the row count is in the name
    _keys/                                a `vsd.keyset.KeySet` of `source_key`s seen so far

A shard is never rewritten: a night that finds new images adds new shards (img2dataset and
datatrove work the same way), so "what is new" is "which shards have no completion marker" in an
output -- decided from two listings, never from the images. The row count lives in the file name
so planning reads no shard. Small shards are merged into new ones a few per size level
(`vsd.corpus.merge`), so a year of nights stays a few shards; a merged shard is new too.
"""

from __future__ import annotations

import datetime as dt
import json
import posixpath
import re
import uuid
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from vsd import storage
from vsd.errors import VSDError
from vsd.keyset import KeySet

META_FILE = "_corpus.json"
SHARDS_DIR = "shards"
KEYS_DIR = "_keys"
DEFAULT_SHARD_ROWS = 200_000
_NAME = re.compile(r"^shard-(?P<stem>[A-Za-z0-9T_-]+)-r(?P<rows>\d+)\.parquet$")

BOX32 = pa.list_(pa.float32())
PAIR_ROW = pa.struct(
    [
        pa.field(
            "index", pa.int32()
        ),  # the pair's index (VSD: the triple's); null = its position in the list
        pa.field("subject", pa.string()),
        pa.field("object", pa.string()),
        pa.field("subject_box", BOX32),
        pa.field("object_box", BOX32),
    ]
)
SHARD_SCHEMA = pa.schema(
    [
        pa.field(
            "row",
            pa.int64(),
            metadata={"doc": "row number inside the shard: with the shard's name, the row's identity"},
        ),
        pa.field("uri", pa.string(), metadata={"doc": "absolute URI of the image (s3://… or a local path)"}),
        pa.field("size", pa.int64(), metadata={"doc": "bytes, from the listing (null if unknown)"}),
        pa.field(
            "version",
            pa.string(),
            metadata={"doc": "mtime (ns) or ETag from the listing: a changed file is a new row"},
        ),
        pa.field(
            "image_id",
            pa.string(),
            metadata={"doc": "an id given by the manifest (else the content hash is used)"},
        ),
        pa.field(
            "pairs",
            pa.list_(PAIR_ROW),
            metadata={"doc": "object pairs with normalised [x0, y0, x1, y1] boxes; null = none given"},
        ),
    ]
)


def source_key(uri: str, size: int | None, version: str | None, image_id: str | None = None) -> str:
    """What identifies one corpus entry: one version of one file, plus the id a manifest gave it --
    two manifest rows naming one file under two ids (say, with different pairs) are two entries,
    and annotating one of them must not make a rerun skip the other."""
    return f"{uri}|{'' if size is None else size}|{version or ''}" + (
        "" if image_id is None else f"|id={image_id}"
    )


@dataclass(frozen=True)
class Shard:
    name: str  # the file name without ".parquet": how markers and rows refer to the shard
    uri: str
    rows: int


@dataclass
class Corpus:
    """A corpus root; `open` an existing one or `create` a new one."""

    root: str
    meta: dict = field(default_factory=dict)

    @staticmethod
    def is_corpus(uri: str) -> bool:
        return storage.exists(storage.join(uri, META_FILE))

    @classmethod
    def open(cls, root: str) -> Corpus:
        try:
            meta = json.loads(storage.read_text(storage.join(root, META_FILE)))
        except FileNotFoundError:
            raise VSDError(
                f"input: {root}: not a corpus (no {META_FILE}; make one with `vsd corpus sync`)"
            ) from None
        return cls(root.rstrip("/"), meta)

    @classmethod
    def open_or_create(cls, root: str) -> Corpus:
        if cls.is_corpus(root):
            return cls.open(root)
        corpus = cls(root.rstrip("/"), {"version": 1, "created_at": _now(), "sources": []})
        corpus.save()
        return corpus

    def save(self) -> None:
        storage.write_text(storage.join(self.root, META_FILE), json.dumps(self.meta, indent=2) + "\n")

    def add_source(self, kind: str, uri: str, roots: list[str]) -> None:
        """Remember a source and the roots its rows may read from (the default allowed roots)."""
        entry = {"kind": kind, "uri": uri, "roots": sorted(set(roots))}
        if entry not in self.meta.setdefault("sources", []):
            self.meta["sources"].append(entry)
            self.save()

    @property
    def roots(self) -> list[str]:
        return sorted({r for s in self.meta.get("sources", []) for r in s.get("roots", [])})

    def keys(self) -> KeySet:
        return KeySet(storage.join(self.root, KEYS_DIR))

    def shards(self) -> list[Shard]:
        """Every shard, sorted by name (creation order): one listing, no file read."""
        fs, base = storage.resolve(storage.join(self.root, SHARDS_DIR))
        if fs.get_file_info(base).type != pafs.FileType.Directory:
            return []
        prefix = "s3://" if storage.is_s3(self.root) else ""
        out = []
        for info in fs.get_file_info(pafs.FileSelector(base, recursive=False)):
            name = posixpath.basename(info.path)
            match = _NAME.match(name)
            if info.type == pafs.FileType.File and match:
                out.append(Shard(name[: -len(".parquet")], prefix + info.path, int(match["rows"])))
        return sorted(out, key=lambda s: s.name)

    def writer(self, stem: str, shard_rows: int = DEFAULT_SHARD_ROWS) -> ShardWriter:
        return ShardWriter(self, stem, shard_rows)

    def write_shard(self, stem: str, rows: pa.Table, metadata: dict[bytes, bytes] | None = None) -> Shard:
        """``rows`` as the shard ``shard-<stem>-r<rows>``, written whole (one PUT / rename), its
        ``row`` column numbered from 0; ``metadata`` goes into its footer."""
        rows = rows.set_column(0, "row", pa.array(range(rows.num_rows), pa.int64())).cast(SHARD_SCHEMA)
        name = f"shard-{stem}-r{rows.num_rows}"
        uri = storage.join(self.root, SHARDS_DIR, name + ".parquet")
        sink = pa.BufferOutputStream()
        pq.write_table(rows.replace_schema_metadata(metadata) if metadata else rows, sink, compression="zstd")
        storage.write_bytes(uri, sink.getvalue().to_pybytes())
        return Shard(name, uri, rows.num_rows)


def new_sync_id() -> str:
    """Sorts in creation order (shards, listings and ``_gone`` sets are ordered by it): to the
    microsecond, so two syncs in one second do not sort by their random suffix (an older id in
    seconds sorts before a newer one of the same second: '-' < any digit)."""
    return f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:6]}"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


class ShardWriter:
    """Buffers rows (as Arrow tables) and writes a shard every ``shard_rows``: memory stays at one
    shard's worth however long the listing. Shards are written whole (one PUT / rename)."""

    def __init__(self, corpus: Corpus, stem: str, shard_rows: int):
        self.corpus, self.stem, self.shard_rows = corpus, stem, max(1, shard_rows)
        self._buf: list[pa.Table] = []
        self._rows = 0
        self.written: list[Shard] = []

    def add(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        self._buf.append(table)
        self._rows += table.num_rows
        while self._rows >= self.shard_rows:
            self._flush(self.shard_rows)

    def close(self) -> list[Shard]:
        if self._rows:
            self._flush(self._rows)
        return self.written

    def _flush(self, n: int) -> None:
        table = pa.concat_tables(self._buf)
        head, rest = table.slice(0, n), table.slice(n)
        self._buf, self._rows = ([rest] if rest.num_rows else []), rest.num_rows
        self.written.append(self.corpus.write_shard(f"{self.stem}-{len(self.written):05d}", head))


def rows_table(rows: list[dict]) -> pa.Table:
    """Shard rows (dicts with SHARD_SCHEMA's keys but ``row``) as a table; ``row`` is set on write."""
    return pa.Table.from_pylist([{"row": 0, **r} for r in rows], schema=SHARD_SCHEMA)
