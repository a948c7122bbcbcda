"""What to annotate: plan the items of a folder / ``s3://`` prefix, a manifest or VSD JSON.

The driver only *plans* (lists URIs, reads the manifest) -- light metadata. Bytes are read and
hashed in Ray tasks by the read stage (`vsd.annotate.stages.read`), so a million-image corpus
never passes through the driver.
"""

from __future__ import annotations

import json
import math
import posixpath
from dataclasses import dataclass, field
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from vsd import storage
from vsd.annotate.items import ITEM_SCHEMA, fail_item, fail_pair, from_table, new_item, new_pair, to_table
from vsd.errors import VSDError

FORMATS = ("auto", "folder", "manifest", "vsd_json")
URI_COLUMNS = ("image", "uri", "image_uri", "source_uri", "path")


PLAN_CHUNK = 10_000  # items turned into Arrow at a time: the driver never holds a dict per image


@dataclass
class SourcePlan:
    """The items to read (metadata only, as an ``ITEM_SCHEMA`` table: ~100 bytes per image in the
    driver, not a Python dict each) and what the planner already had to report."""

    kind: str
    table: pa.Table = field(default_factory=ITEM_SCHEMA.empty_table)
    duplicates: list[str] = field(default_factory=list)  # one line each: which id/uri, kept which
    problems: list[str] = field(default_factory=list)  # skipped source records (VSD reader problems)

    def __len__(self) -> int:
        return self.table.num_rows

    @property
    def items(self) -> list[dict]:
        """The items as dicts (tests, small plans)."""
        return from_table(self.table)


def _tables(items) -> pa.Table:
    """Dicts -> one table, converted ``PLAN_CHUNK`` at a time from any iterable."""
    chunks, buf = [], []
    for item in items:
        buf.append(item)
        if len(buf) >= PLAN_CHUNK:
            chunks.append(to_table(buf))
            buf = []
    chunks.append(to_table(buf))
    return pa.concat_tables(chunks)


# ----------------------------------------------------------------------------------------------
# Planning (driver)
# ----------------------------------------------------------------------------------------------

def detect_format(uri: str, fmt: str = "auto") -> str:
    if fmt != "auto":
        return fmt
    lower = str(uri).lower()
    if lower.endswith((".parquet", ".jsonl", ".ndjson")):
        return "manifest"
    if lower.endswith(".json"):
        return "vsd_json"
    return "folder"


def plan_source(uri: str, fmt: str = "auto", image_dir: str = "", vsd2: str = "",
                extensions: list[str] | tuple[str, ...] = ()) -> SourcePlan:
    """List what ``uri`` holds. A missing path is a `VSDError`; an empty folder is an empty plan."""
    kind = detect_format(uri, fmt)
    if not storage.exists(uri):
        raise VSDError(f"input: {uri}: not found")
    if kind == "folder":
        return SourcePlan(kind, table=_tables(_plan_folder(uri, extensions)))
    if kind == "manifest":
        return _plan_manifest(uri, image_dir)
    if kind == "vsd_json":
        return _plan_vsd(uri, image_dir, vsd2)
    raise VSDError(f"source.format: must be one of {list(FORMATS)}, got {kind!r}")


def _plan_folder(uri: str, extensions) -> Iterator[dict]:
    fs, root = storage.resolve(uri)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.File:
        infos = [info]
    else:
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    prefix = "s3://" if storage.is_s3(uri) else ""
    wanted = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
    for i in sorted((i for i in infos if i.type == pafs.FileType.File), key=lambda i: i.path):
        name = posixpath.basename(i.path)
        if name.startswith(".") or (wanted and not name.lower().endswith(wanted)):
            continue  # hidden files (.DS_Store, editor swap files) are not corpus images
        mtime = i.mtime_ns if i.mtime_ns is not None else 0
        yield new_item(prefix + i.path, source_key=f"{prefix}{i.path}|{i.size}|{mtime}")


def _box(value: Any) -> list[float] | None:
    """A manifest box as 4 floats (NaN kept, so preprocess reports it as ``bad_box``)."""
    if value is None:
        return None
    try:
        box = [float(v) for v in value]
    except (TypeError, ValueError):
        return [math.nan] * 4
    return box if len(box) == 4 else [math.nan] * 4


def _name(value: Any) -> str | None:
    return None if value is None else str(value)


def _manifest_rows(uri: str) -> list[dict]:
    if uri.lower().endswith(".parquet"):
        fs, path = storage.resolve(uri)
        try:
            return pq.read_table(path, filesystem=fs).to_pylist()
        except (OSError, pa.ArrowInvalid) as exc:
            raise VSDError(f"input: {uri}: not a readable Parquet manifest ({exc})") from None
    rows = []
    for n, line in enumerate(storage.read_text(uri).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise VSDError(f"input: {uri}: line {n}: invalid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise VSDError(f"input: {uri}: line {n}: expected an object")
        rows.append(row)
    return rows


def _plan_manifest(uri: str, image_dir: str) -> SourcePlan:
    base = image_dir or posixpath.dirname(str(uri).rstrip("/"))
    plan = SourcePlan("manifest")
    seen: dict[str, int] = {}
    items = []
    for n, row in enumerate(_manifest_rows(uri), start=1):
        column = next((c for c in URI_COLUMNS if row.get(c)), None)
        if column is None:
            raise VSDError(f"input: {uri}: row {n}: no image URI (one of {', '.join(URI_COLUMNS)})")
        image = str(row[column])
        if not (storage.is_s3(image) or image.startswith(("/", "file://"))):
            image = storage.join(base, image)
        image_id = _name(row.get("image_id")) or None
        key = image_id or f"uri:{image}"
        if key in seen:
            plan.duplicates.append(f"{'image_id ' + image_id if image_id else 'uri ' + image}: "
                                   f"row {n} repeats row {seen[key]} (kept row {seen[key]})")
            continue
        seen[key] = n
        pairs = []
        for j, p in enumerate(row.get("pairs") or []):
            p = p if isinstance(p, dict) else {}
            pair = new_pair(j, _name(p.get("subject")), _name(p.get("object")),
                            _box(p.get("subject_box")), _box(p.get("object_box")))
            if not isinstance(p.get("subject_box"), (list, tuple)) or not isinstance(p.get("object_box"), (list, tuple)):
                fail_pair(pair, "bad_box: a pair needs subject_box and object_box as [x0, y0, x1, y1]")
            pairs.append(pair)
        items.append(new_item(image, image_id=image_id, pairs=pairs))
    plan.table = _tables(items)
    return plan


def _plan_vsd(uri: str, image_dir: str, vsd2: str) -> SourcePlan:
    from vsd.data.vsd_json import read_vsd

    if not image_dir:
        raise VSDError("source.image_dir: required with a VSD JSON input (the folder of its images)")
    read = read_vsd(uri, vsd2 or None, image_dir)
    plan = SourcePlan("vsd_json", problems=[str(p) for p in read.problems])
    by_image: dict[str, dict] = {}
    for r in read.records:
        item = by_image.get(r.img_id)
        if item is None:
            item = by_image[r.img_id] = new_item(r.image or storage.join(image_dir, r.img_id), image_id=r.img_id)
            item["pairs"] = []
        pair = new_pair(r.triple_index, r.subject, r.object,
                        list(r.subject_box) if r.subject_box else None, list(r.object_box) if r.object_box else None)
        if any(p["pair_index"] == r.triple_index for p in item["pairs"]):
            plan.duplicates.append(f"row_id {r.record_id}: repeated triple (kept the first)")
            continue
        item["pairs"].append(pair)
    for img_id in read.missing_images:
        item = by_image.get(img_id)
        if item is not None and item["status"] == "ok":
            fail_item(item, "missing_file", f"no readable image for img_id {img_id} in {image_dir}")
    plan.table = _tables(by_image.values())
    return plan
