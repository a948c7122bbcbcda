"""What a corpus is made from, each as a stream of shard-row tables (never the whole listing).

* a folder or ``s3://`` prefix of images: its listing (``uri``, ``size``, mtime/ETag);
* a manifest or listing file (Parquet / JSONL / CSV): one row per image -- ``uri`` (or ``image``,
  ``path``, … or ``bucket`` + ``key`` as in an S3 Inventory), optional ``size``, ``etag``/``mtime``,
  ``image_id`` and ``pairs`` (``subject``, ``object``, ``subject_box``, ``object_box`` normalised
  ``[x0, y0, x1, y1]``); relative URIs are relative to the manifest's folder (or ``image_dir``);
* VSD JSON (VSDv1 + optional VSDv2) with its image folder.

Rows are taken as given: a URI outside the allowed roots, a ``..`` or a broken box is not refused
here but becomes that row's error row when the annotation reads it, so one bad row never stops a
sync or a run.
"""

from __future__ import annotations

import json
import math
import os
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from vsd import storage
from vsd.corpus.shards import rows_table
from vsd.errors import VSDError

FORMATS = ("auto", "folder", "manifest", "vsd_json")
URI_COLUMNS = ("uri", "image", "image_uri", "source_uri", "path", "url")
VERSION_COLUMNS = ("version", "etag", "e_tag", "mtime", "mtime_ns", "last_modified", "last_modified_date")
BATCH = 10_000
BOM = b"\xef\xbb\xbf"


@dataclass
class Source:
    """One input, resolved: its kind, where its rows may read from, and what its reader reported."""

    kind: str
    uri: str
    roots: list[str]
    problems: list[str] = field(default_factory=list)


def detect_format(uri: str, fmt: str = "auto") -> str:
    if fmt != "auto":
        return fmt
    lower = str(uri).lower()
    if lower.endswith((".parquet", ".jsonl", ".ndjson", ".csv")):
        return "manifest"
    if lower.endswith(".json"):
        return "vsd_json"
    return "folder"


def open_source(uri: str, fmt: str = "auto", image_dir: str = "") -> Source:
    kind = detect_format(uri, fmt)
    if kind not in FORMATS[1:]:
        raise VSDError(f"input.format: must be one of {list(FORMATS)}, got {kind!r}")
    if not storage.exists(uri):
        raise VSDError(f"input: {uri}: not found")
    if kind == "folder":
        root = uri if storage.is_dir(uri) else posixpath.dirname(uri.rstrip("/"))
        return Source(kind, uri, [_root(root)])
    if kind == "vsd_json" and not image_dir:
        raise VSDError("input.image_dir: required with a VSD JSON input (the folder of its images)")
    base = image_dir or posixpath.dirname(str(uri).rstrip("/"))
    return Source(kind, uri, [_root(base)])


def _root(uri: str) -> str:
    """A root as the prefix check reads it (no trailing ``/``)."""
    norm = _norm(uri)
    return norm.rstrip("/") or norm


def _norm(uri: str) -> str:
    """A local path with ``.``/``..`` resolved lexically (so a root check sees where it really
    points). An ``s3://`` URI is returned as given: on S3 a key is an opaque string, ``a/../b`` and
    ``a//b`` are keys of their own, and "normalising" one would read another object."""
    uri = str(uri)
    if storage.is_s3(uri):
        return uri
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    return posixpath.normpath(uri if uri.startswith("/") else posixpath.abspath(uri))


def resolve_uri(value: str, base: str) -> str:
    """A manifest URI made absolute: relative ones against ``base``; a local ``..`` resolved
    lexically, an S3 key kept exactly as written (see `_norm`)."""
    value = str(value)
    if storage.is_s3(value) or value.startswith(("/", "file://")):
        return _norm(value)
    return _norm(base.rstrip("/") + "/" + value)


# ----------------------------------------------------------------------------------------------
# Folders and prefixes
# ----------------------------------------------------------------------------------------------


def under_roots(uri: str, roots: list[str]) -> bool:
    """Is ``uri`` (already normalised) inside one of ``roots``? Local paths are compared after
    resolving symbolic links, so a link inside the corpus cannot point out of it."""
    if not roots:
        return True
    target = resolve_uri(uri, "/")
    for root in roots:
        root = resolve_uri(root, "/")
        if storage.is_s3(target) != storage.is_s3(root):
            continue
        if not storage.is_s3(target):
            target_real, root_real = os.path.realpath(target), os.path.realpath(root)
            if target_real == root_real or target_real.startswith(root_real.rstrip("/") + "/"):
                return True
            continue
        if target == root or target.startswith(root.rstrip("/") + "/"):
            return True
    return False


def list_folder(
    uri: str,
    extensions: list[str] | tuple[str, ...] = (),
    problems: list[str] | None = None,
    follow_dir_links: bool = False,
    allowed_roots: list[str] | tuple[str, ...] = (),
) -> Iterator[pa.Table]:
    """The images below ``uri`` (recursively; hidden files skipped), in batches of shard rows.

    A local folder is walked by `vsd.corpus.walk` (links to directories not followed unless
    ``follow_dir_links``; dangling, looping and special entries kept as rows for their error rows;
    what cannot be a row is reported on ``problems``). An ``s3://`` prefix is listed as is: its
    keys are taken exactly, ``..`` and ``//`` included."""
    problems = [] if problems is None else problems
    wanted = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
    rows: list[dict] = []
    for path, size, version in _entries(uri, problems, follow_dir_links, allowed_roots):
        name = posixpath.basename(path)
        if name.startswith(".") or (wanted and not name.lower().endswith(wanted)):
            continue  # hidden files (.DS_Store, editor swap files) are not corpus images
        rows.append({"uri": path, "size": size, "version": version, "image_id": None, "pairs": None})
        if len(rows) >= BATCH:
            yield rows_table(rows)
            rows = []
    if rows:
        yield rows_table(rows)


def _entries(
    uri: str, problems: list[str], follow_dir_links: bool, allowed_roots
) -> Iterator[tuple[str, int | None, str]]:
    """(URI, size, version) of every file-like entry below ``uri``."""
    from vsd.corpus.walk import walk

    fs, root = storage.resolve(uri)
    if storage.is_s3(uri) and storage.needs_exact_key(root.partition("/")[2]):
        # A HEAD on "a/.." asks for another object (curl drops dot segments); a listing sends
        # the prefix as a query parameter, exactly: list it.
        info = pafs.FileInfo(root, pafs.FileType.Directory)
    else:
        info = fs.get_file_info(root)
    if not storage.is_s3(uri):
        if info.type == pafs.FileType.Directory:
            for e in walk(root, problems, follow_dir_links, allowed_roots):
                yield e.path, e.size, str(e.mtime_ns)
        elif info.type != pafs.FileType.NotFound:
            yield root, info.size, str(info.mtime_ns or 0)
        return
    infos = (
        [info]
        if info.type == pafs.FileType.File
        else fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    )
    for i in sorted((i for i in infos if i.type == pafs.FileType.File), key=lambda i: i.path):
        yield "s3://" + i.path, i.size, str(i.mtime_ns or 0)


def top_level(uri: str) -> list[str]:
    """The entries right below a prefix: the units a large listing is split into across tasks
    (each listed by `list_entry`)."""
    fs, root = storage.resolve(uri)
    prefix = "s3://" if storage.is_s3(uri) else ""
    return sorted({prefix + i.path for i in fs.get_file_info(pafs.FileSelector(root, recursive=False))})


def list_entry(uri: str, entry: str, extensions: list[str] | tuple[str, ...] = ()) -> Iterator[pa.Table]:
    """The rows of one `top_level` entry of the prefix ``uri``: exactly the keys whose first segment
    below ``uri`` is the entry's name. Why filter: on S3 a child may be named "" (``a//b``), "." or
    "..", and Arrow reports the first as the prefix itself and lists the others through curl's
    dot-segment removal -- listed as is, one task would list the whole prefix again (every row twice)."""
    base = uri.rstrip("/") + "/"
    own = base + (entry[len(base) :] if entry.startswith(base) else "")  # "" child: base itself
    for table in list_folder(entry, extensions):
        uris = table.column("uri").to_pylist()
        keep = [i for i, u in enumerate(uris) if u == own or u.startswith(own + "/")]
        if len(keep) == len(uris):
            yield table
        elif keep:
            yield table.take(pa.array(keep, pa.int64()))


# ----------------------------------------------------------------------------------------------
# Manifests and listing files
# ----------------------------------------------------------------------------------------------


def _box(value: Any) -> list[float] | None:
    """A box as 4 floats; anything else keeps a NaN box so the row's pair becomes ``bad_box``."""
    if value is None:
        return None
    try:
        box = [float(v) for v in value]
    except (TypeError, ValueError):
        return [math.nan] * 4
    return box if len(box) == 4 else [math.nan] * 4


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _pairs(value: Any) -> list[dict] | None:
    if not value:
        return None
    out = []
    for p in value:
        p = p if isinstance(p, dict) else {}
        out.append(
            {
                "index": None,
                "subject": _text(p.get("subject")),
                "object": _text(p.get("object")),
                "subject_box": _box(p.get("subject_box")),
                "object_box": _box(p.get("object_box")),
            }
        )
    return out


class BadRow(ValueError):
    """A manifest row that names no image: reported, skipped, never the end of a run."""


def manifest_row(row: dict, base: str, where: str) -> dict:
    """One manifest/listing row -> a shard row; a row without any URI is a `BadRow` naming it."""
    row = _decoded(row, where)
    column = next((c for c in URI_COLUMNS if row.get(c)), None)
    if column is not None:
        uri = resolve_uri(row[column], base)
    elif row.get("bucket") and row.get("key"):
        uri = f"s3://{row['bucket']}/{row['key']}"  # the key exactly: "/a.png" is not "a.png" on S3
    else:
        raise BadRow(f"{where}: no image URI (one of {', '.join(URI_COLUMNS)}, or bucket + key)")
    version = next((row[c] for c in VERSION_COLUMNS if row.get(c) is not None), None)
    size = row.get("size")
    try:
        size = None if size is None else int(size)
    except (TypeError, ValueError):
        size = None
    out = {
        "uri": uri,
        "size": size,
        "version": _text(version),
        "image_id": _text(row.get("image_id")) or None,
        "pairs": _pairs(row.get("pairs")),
    }
    try:  # JSON may spell a lone surrogate ("\udc80"), which no Parquet string can hold
        json.dumps(out, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadRow(f"{where}: a lone surrogate (\\udXXX) in a text field") from None
    return out


def _decoded(row: dict, where: str) -> dict:
    """Text columns as text. A CSV with one byte that is not UTF-8 has its column read as binary
    by Arrow (every row's value bytes, "b'a.png'" once made a string): decode each row's own
    values, and make the row whose value is not UTF-8 a `BadRow`."""
    if not any(isinstance(v, bytes) for v in row.values()):
        return row
    out = {}
    for key, value in row.items():
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BadRow(f"{where}: column {key}: not UTF-8 (byte 0x{value[exc.start]:02x})") from None
        out[key] = value
    return out


def _rows(rows: list[dict], base: str, where: str, first: int, problems: list[str]) -> pa.Table:
    out = []
    for i, row in enumerate(rows):
        try:
            out.append(manifest_row(row, base, f"{where}: row {first + i}"))
        except BadRow as exc:
            problems.append(str(exc))
    return rows_table(out)


def read_manifest(uri: str, base: str, problems: list[str] | None = None) -> Iterator[pa.Table]:
    """A Parquet, JSONL or CSV manifest as shard-row batches, streamed (never whole in memory).

    A row that cannot be used (no URI, a line that is not UTF-8 or not a JSON object) is reported
    on ``problems`` with its line number and skipped (a UTF-8 byte-order mark is accepted): one bad row never ends a sync or a run. A file that cannot be read
    at all is a `VSDError`."""
    problems = [] if problems is None else problems
    lower = uri.lower()
    if lower.endswith((".parquet", ".csv")):
        fs, path = storage.resolve(uri)
        try:
            if lower.endswith(".parquet"):
                batches = pq.ParquetFile(fs.open_input_file(path)).iter_batches(batch_size=BATCH)
            else:
                batches = pacsv.open_csv(
                    fs.open_input_stream(path), convert_options=pacsv.ConvertOptions(strings_can_be_null=True)
                )
            n = 1
            for batch in batches:
                rows = batch.to_pylist()
                yield _rows(rows, base, uri, n, problems)
                n += len(rows)
        except (OSError, pa.ArrowInvalid) as exc:
            raise VSDError(f"input: {uri}: not a readable manifest ({type(exc).__name__})") from None
        return
    rows: list[dict] = []
    for n, raw in enumerate(_lines(uri), start=1):
        if n == 1 and raw.startswith(BOM):
            raw = raw[len(BOM) :]  # Windows tools (Notepad, Excel's "UTF-8" export) start with one
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(
                f"{uri}: line {n}: not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
            )
            continue
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{uri}: line {n}: invalid JSON ({exc.msg})")
            continue
        if not isinstance(row, dict):
            problems.append(f"{uri}: line {n}: expected an object")
            continue
        try:
            rows.append(manifest_row(row, base, f"{uri}: line {n}"))
        except BadRow as exc:
            problems.append(str(exc))
        if len(rows) >= BATCH:
            yield rows_table(rows)
            rows = []
    if rows:
        yield rows_table(rows)


def _lines(uri: str) -> Iterator[bytes]:
    """The file's lines as bytes: each is decoded on its own, so one bad byte costs one line."""
    fs, path = storage.resolve(uri)
    with fs.open_input_stream(path) as f:
        tail = b""
        while chunk := f.read(1 << 20):
            *lines, tail = (tail + chunk).split(b"\n")
            yield from lines
        if tail:
            yield tail


# ----------------------------------------------------------------------------------------------
# VSD JSON
# ----------------------------------------------------------------------------------------------


def read_vsd_source(uri: str, image_dir: str, vsd2: str, source: Source) -> Iterator[pa.Table]:
    """VSD records grouped by image (one row per image, its triples as pairs); reader problems
    and repeated triples are reported on ``source.problems``."""
    from vsd.data.vsd_json import read_vsd

    read = read_vsd(uri, vsd2 or None, image_dir)
    source.problems.extend(str(p) for p in read.problems)
    by_image: dict[str, dict] = {}
    for r in read.records:
        row = by_image.get(r.img_id)
        if row is None:
            row = by_image[r.img_id] = {
                "uri": _norm(r.image) if r.image else resolve_uri(r.img_id, image_dir),
                "size": None,
                "version": None,
                "image_id": r.img_id,
                "pairs": [],
            }
        if any(p["index"] == r.triple_index for p in row["pairs"]):
            source.problems.append(f"row_id {r.record_id}: repeated triple (kept the first)")
            continue
        row["pairs"].append(
            {
                "index": r.triple_index,
                "subject": r.subject,
                "object": r.object,
                "subject_box": list(r.subject_box) if r.subject_box else None,
                "object_box": list(r.object_box) if r.object_box else None,
            }
        )
    rows = list(by_image.values())
    for start in range(0, len(rows), BATCH):
        yield rows_table(rows[start : start + BATCH])
