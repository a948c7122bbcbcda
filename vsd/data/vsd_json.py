"""Read VSDv1 / VSDv2 annotation files (local or ``s3://``) into one ``VSDRecord`` per triple.

The two files describe the same images in the same order: VSDv1 has several short captions per
record, VSDv2 one longer sentence about the record's first triple(s). They are paired by position
and checked by ``img_id`` (falling back to the id when the order differs); a VSDv2 caption is
attached to a triple only when the VSDv2 triple at that index is the same triple.

Bad input never stops a non-strict read: each bad record or triple becomes a ``Problem`` naming the
file and record, is skipped, and every valid record is kept (a truncated file keeps the records
before the cut). ``strict=True`` raises ``VSDError`` with that one line on the first problem.

Image sizes: VSD files carry none. With an images folder the size is read from each image header
and boxes are normalised and checked against it; without one (or when an image is missing) width,
height and the normalised boxes stay ``None`` -- we do not guess a size from the boxes, because a
guessed size would silently shift every normalised coordinate.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from vsd import storage
from vsd.data.images import ImageFolder
from vsd.data.records import VSDRecord, dedupe
from vsd.errors import VSDError
from vsd.relations import RELATIONS

TRIPLE_FIELDS = ("s", "o", "p", "s_bbox", "o_bbox")


@dataclass(frozen=True)
class Problem:
    """A skipped record (``triple`` None) or triple, with a short ``reason`` and the ``detail``."""

    file: str
    index: int
    reason: str
    detail: str = ""
    triple: int | None = None

    def __str__(self) -> str:
        where = f"record {self.index}" + (f" triple {self.triple}" if self.triple is not None else "")
        text = f"{self.file}: {where}: {self.reason}" + (f": {self.detail}" if self.detail else "")
        return " ".join(text.split())  # always one line


@dataclass
class VSDRead:
    """What a read produced: the valid records, the problems, and ids whose image was not found."""

    records: list[VSDRecord] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    missing_images: list[str] = field(default_factory=list)


class _Problems:
    """Collects problems; in strict mode the first one is raised as a one-line ``VSDError``."""

    def __init__(self, strict: bool):
        self.strict = strict
        self.items: list[Problem] = []

    def add(self, problem: Problem) -> None:
        if self.strict:
            raise VSDError(str(problem))
        self.items.append(problem)


# ----------------------------------------------------------------------------- JSON, record by record

_WS = re.compile(r"\s*")


def iter_json_list(text: str, file: str, problems: _Problems) -> Iterator[tuple[int, Any]]:
    """Yield ``(index, element)`` of a JSON list one element at a time, so a truncated or corrupt
    file still yields every element before the damage (reported once, as a problem)."""
    decoder = json.JSONDecoder()
    pos = _WS.match(text, 0).end()
    if not text.startswith("[", pos):
        problems.add(Problem(file, 0, "invalid JSON", "expected a list of records ('[' at the start)"))
        return
    pos += 1
    index = 0
    while True:
        pos = _WS.match(text, pos).end()
        if pos >= len(text):
            problems.add(
                Problem(file, index, "invalid JSON", "file ends before the closing ']' (truncated?)")
            )
            return
        if text[pos] == "]":
            rest = text[pos + 1 :].strip()
            if rest:
                problems.add(Problem(file, index, "invalid JSON", "extra data after the closing ']'"))
            return
        if index > 0:
            if text[pos] != ",":
                problems.add(
                    Problem(file, index, "invalid JSON", f"expected ',' between records at char {pos}")
                )
                return
            pos = _WS.match(text, pos + 1).end()
        try:
            element, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            problems.add(
                Problem(
                    file,
                    index,
                    "invalid JSON",
                    f"{exc.msg} (line {exc.lineno} column {exc.colno}; truncated?)",
                )
            )
            return
        yield index, element
        index += 1


def read_text(uri: str) -> str:
    """The whole file as text; a missing or unreadable file is a one-line ``VSDError``."""
    try:
        return storage.read_text(uri)
    except FileNotFoundError:
        raise VSDError(f"{uri}: file not found") from None
    except UnicodeDecodeError as exc:
        raise VSDError(f"{uri}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise VSDError(f"{uri}: cannot read: {first}") from None


# ----------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class _Triple:
    subject: str
    object: str
    relation: str
    s_px: tuple[float, float, float, float]
    o_px: tuple[float, float, float, float]


@dataclass
class _Record:
    index: int
    img_id: str
    captions: tuple[str, ...]
    triples: dict[int, _Triple | None]  # None: the triple was invalid (already reported)
    dataset: str | None


class _Invalid(Exception):
    """A triple that cannot be used: ``reason`` (short, for the stats) and ``detail``."""

    def __init__(self, reason: str, detail: str):
        super().__init__(reason, detail)
        self.reason, self.detail = reason, detail


def _check_box(value: Any, name: str, size: tuple[int, int] | None) -> tuple[float, float, float, float]:
    """The VSD box as a tuple; raises ``_Invalid`` when it is not a usable box."""
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise _Invalid("bad box", f"{name} must be [ymin, ymax, xmin, xmax], got {value!r}"[:200])
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise _Invalid("bad box", f"{name} must hold 4 numbers, got {value!r}"[:200])
    if not all(math.isfinite(v) if isinstance(v, float) else abs(v) < 2**53 for v in value):
        raise _Invalid("non-finite box", f"{name} = {list(value)}")
    ymin, ymax, xmin, xmax = value
    if ymin >= ymax or xmin >= xmax:
        raise _Invalid("box out of order", f"{name} = {list(value)} needs ymin < ymax and xmin < xmax")
    if ymin < 0 or xmin < 0:
        raise _Invalid("box outside image", f"{name} = {list(value)} has a negative coordinate")
    if size is not None and (xmax > size[0] or ymax > size[1]):
        raise _Invalid(
            "box outside image", f"{name} = {list(value)} exceeds the image size {size[0]}x{size[1]}"
        )
    return ymin, ymax, xmin, xmax


def _check_triple(raw: Any, size: tuple[int, int] | None) -> _Triple:
    """The triple with names and relation normalised; raises ``_Invalid`` for a bad one."""
    if not isinstance(raw, dict):
        raise _Invalid("bad triple", f"expected an object, got {type(raw).__name__}")
    missing = [k for k in TRIPLE_FIELDS if k not in raw]
    if missing:
        raise _Invalid("missing field", ", ".join(repr(k) for k in missing))
    for key in ("s", "o"):
        if not isinstance(raw[key], str) or not raw[key].strip():
            raise _Invalid("empty name", f"{key!r} = {raw[key]!r}")
    relation = " ".join(raw["p"].lower().split()) if isinstance(raw["p"], str) else None
    if relation not in RELATIONS:
        raise _Invalid("unknown relation", f"p = {raw['p']!r} (expected one of: {', '.join(RELATIONS)})")
    return _Triple(
        " ".join(raw["s"].split()),
        " ".join(raw["o"].split()),
        relation,
        _check_box(raw["s_bbox"], "s_bbox", size),
        _check_box(raw["o_bbox"], "o_bbox", size),
    )


def _parse_file(uri: str, problems: _Problems, sizes) -> list[_Record]:
    """Every record of one file, triples validated; bad ones reported to ``problems``."""
    records: list[_Record] = []
    seen_ids: set[str] = set()
    for index, raw in iter_json_list(read_text(uri), uri, problems):
        if not isinstance(raw, dict):
            problems.add(Problem(uri, index, "bad record", f"expected an object, got {type(raw).__name__}"))
            continue
        missing = [k for k in ("img_id", "triple_list", "captions") if k not in raw]
        if missing:
            problems.add(Problem(uri, index, "missing field", ", ".join(repr(k) for k in missing)))
            continue
        img_id = raw["img_id"]
        if isinstance(img_id, int) and not isinstance(img_id, bool):
            img_id = str(img_id)
        if not isinstance(img_id, str) or not img_id.strip():
            problems.add(Problem(uri, index, "empty img_id", f"img_id = {raw['img_id']!r}"))
            continue
        img_id = img_id.strip()
        if img_id in seen_ids:
            problems.add(Problem(uri, index, "duplicate img_id", f"{img_id!r} appears earlier in the file"))
            continue
        captions = raw["captions"]
        if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
            problems.add(Problem(uri, index, "bad captions", "captions must be a list of strings"))
            continue
        triples_raw = raw["triple_list"]
        if not isinstance(triples_raw, list) or not triples_raw:
            problems.add(Problem(uri, index, "bad triple_list", "triple_list must be a non-empty list"))
            continue
        seen_ids.add(img_id)
        size = sizes(img_id)
        triples: dict[int, _Triple | None] = {}
        for t_index, t_raw in enumerate(triples_raw):
            try:
                triples[t_index] = _check_triple(t_raw, size)
            except _Invalid as bad:
                problems.add(Problem(uri, index, bad.reason, bad.detail, triple=t_index))
                triples[t_index] = None
        dataset = raw.get("dataset") if isinstance(raw.get("dataset"), str) else None
        records.append(_Record(index, img_id, dedupe(captions), triples, dataset))
    return records


# ----------------------------------------------------------------------------- pairing


def _pair(v1: list[_Record], v2: list[_Record]) -> list[tuple[_Record | None, _Record | None]]:
    """Pair records by position when the ids agree, else by ``img_id``; unpaired ones stand alone."""
    by_id = {r.img_id: r for r in v2}
    used: set[int] = set()
    pairs: list[tuple[_Record | None, _Record | None]] = []
    by_pos = {i: r for i, r in enumerate(v2)}
    for i, r1 in enumerate(v1):
        r2 = by_pos.get(i)
        if r2 is None or r2.img_id != r1.img_id:
            r2 = by_id.get(r1.img_id)
        if r2 is not None and id(r2) in used:
            r2 = None
        if r2 is not None:
            used.add(id(r2))
        pairs.append((r1, r2))
    pairs.extend((None, r2) for r2 in v2 if id(r2) not in used)
    return pairs


def read_vsd(
    vsd1: str | None = None,
    vsd2: str | None = None,
    images: str | None = None,
    *,
    strict: bool = False,
    dataset: str | None = None,
) -> VSDRead:
    """Read one or both VSD files into records (one per valid triple, in file order).

    ``images``: a folder (local or ``s3://``) holding the images named by ``img_id``; gives each
    record its image URI, width/height and normalised boxes. ``dataset`` overrides the source name
    (default ``VSDv1+VSDv2``, ``VSDv1`` or ``VSDv2`` by the files given, or a record's ``dataset``).
    """
    if not vsd1 and not vsd2:
        raise VSDError("give at least one VSD file (--vsd1 and/or --vsd2)")
    problems = _Problems(strict)
    folder = ImageFolder(images) if images else None
    missing_images: list[str] = []

    def image_of(img_id: str) -> str | None:
        return folder.find(img_id) if folder else None

    def size_of(img_id: str) -> tuple[int, int] | None:
        uri = image_of(img_id)
        return folder.size(uri) if folder and uri else None

    v1 = _parse_file(str(vsd1), problems, size_of) if vsd1 else []
    v2 = _parse_file(str(vsd2), problems, size_of) if vsd2 else []
    default_name = "VSDv1+VSDv2" if vsd1 and vsd2 else ("VSDv1" if vsd1 else "VSDv2")

    out = VSDRead(problems=problems.items, missing_images=missing_images)
    for r1, r2 in _pair(v1, v2):
        base = r1 or r2
        assert base is not None
        name = dataset or base.dataset or default_name
        uri = image_of(base.img_id)
        size = folder.size(uri) if folder and uri else None
        if folder is not None and (uri is None or size is None):
            missing_images.append(base.img_id)
            uri = None if size is None else uri
        captions_v2 = r2.captions if r2 else ()
        triples = dict(r1.triples) if r1 else {}
        v2_match: dict[int, bool] = {}
        for j, t2 in r2.triples.items() if r2 else ():
            if t2 is None:
                continue
            if j not in triples:
                triples[j] = t2  # a triple only VSDv2 has
                v2_match[j] = True
            elif triples[j] is not None:
                if triples[j] == t2:
                    v2_match[j] = True
                else:
                    problems.add(
                        Problem(
                            str(vsd2),
                            r2.index,
                            "triple differs from VSDv1",
                            f"VSDv2 caption not attached to {base.img_id}-p{j}",
                            triple=j,
                        )
                    )
        for j in sorted(triples):
            t = triples[j]
            if t is None:
                continue
            matched = v2_match.get(j, False)
            out.records.append(
                _make_record(
                    name, base, j, t, r1.captions if r1 else (), captions_v2 if matched else (), uri, size
                )
            )
    return out


def _make_record(
    dataset: str,
    base: _Record,
    j: int,
    t: _Triple,
    captions: tuple[str, ...],
    captions_v2: tuple[str, ...],
    image: str | None,
    size: tuple[int, int] | None,
) -> VSDRecord:
    # Prefer a VSDv2 sentence that is not a copy of a VSDv1 caption (a few VSDv2 records repeat them).
    v1_keys = {c.lower() for c in captions}
    fresh = [c for c in captions_v2 if c.lower() not in v1_keys]
    caption_v2 = (fresh or list(captions_v2) or [None])[0]
    record = VSDRecord(
        dataset=dataset,
        img_id=base.img_id,
        record_index=base.index,
        triple_index=j,
        subject=t.subject,
        object=t.object,
        relation=t.relation,
        subject_box_px=t.s_px,
        object_box_px=t.o_px,
        captions=captions,
        caption_v2=caption_v2,
        captions_v2=captions_v2,
    )
    return record.with_image(image, size)
