"""Seeded synthetic VSD scenes with exact ground truth for all 9 relations.

Each scene is one image with two named shapes (``red circle``, ``blue square``) placed so that the
relation holds by construction, plus 0-2 small distractor shapes away from them:

=================  ==============================================================================
left/right         same row, a clear horizontal gap (>= 8% of the width)
above/under        same column, a clear vertical gap (>= 8% of the height)
next to            same row, boxes touching or 1 px apart (< 2% of the width)
on                 resting contact: the subject's bottom edge is the object's top edge, the subject
                   horizontally within a flat-topped object (square/rectangle)
in                 containment: the subject inside the object's shape (inscribed box for ellipses)
behind/in front of partial overlap (no box holds 90% of the other), drawn in painter's order: the
                   shape behind is drawn first, the one in front covers part of it
=================  ==============================================================================

The margins are generous on purpose, so `relations.geometric_relation` (which decides only clear
cases) never contradicts the label. Captions: 3-6 VSDv1-style sentences per scene in varied
phrasings (synonyms `relations.parse_relation` knows; some state the relation from the object's
side) and one longer VSDv2-style sentence. Output is VSD format (boxes ``[ymin, ymax, xmin, xmax]``
pixels, ``img_id`` = the image file name), so the VSD reader reads it like the real files.
"""

from __future__ import annotations

import io
import json
import os
import random
from collections import Counter
from dataclasses import dataclass, field

from PIL import Image, ImageChops, ImageDraw

from vsd import storage
from vsd.data.scene_captions import caption_v2 as _caption_v2
from vsd.data.scene_captions import captions as _captions
from vsd.relations import RELATIONS

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (214, 39, 40),
    "green": (44, 160, 44),
    "blue": (31, 119, 220),
    "yellow": (240, 210, 30),
    "orange": (255, 127, 14),
    "purple": (148, 73, 189),
    "pink": (240, 120, 190),
    "brown": (140, 86, 55),
    "black": (25, 25, 25),
    "white": (250, 250, 250),
    "gray": (127, 127, 127),
    "cyan": (23, 200, 215),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "light gray": (215, 215, 215),
    "beige": (235, 222, 190),
    "pale blue": (200, 222, 240),
    "dark gray": (70, 70, 75),
    "mint": (200, 238, 210),
    "cream": (250, 245, 225),
    "navy": (25, 35, 80),
}
SHAPES = ("square", "rectangle", "circle", "oval", "triangle", "diamond")
FLAT_TOP = ("square", "rectangle")  # what something can rest on
CONTAINERS = ("square", "rectangle", "circle", "oval")

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 pixels, x1/y1 exclusive


@dataclass
class Shape:
    kind: str
    color: str
    box: Box

    @property
    def name(self) -> str:
        return f"{self.color} {self.kind}"


@dataclass
class Scene:
    img_id: str
    width: int
    height: int
    background: str
    subject: Shape
    object: Shape
    relation: str
    distractors: list[Shape] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    caption_v2: str = ""


@dataclass
class SyntheticSet:
    """Where a generated set lies and what it holds."""

    out_dir: str
    vsd1: str
    vsd2: str
    images: str
    scenes: int
    per_relation: dict[str, int]


# ----------------------------------------------------------------------------- layout


def _dims(rng: random.Random, kind: str, lo: int, hi: int) -> tuple[int, int]:
    """Width/height for a shape kind: squares and circles are square, rectangles/ovals elongated."""
    a = rng.randint(lo, hi)
    if kind in ("square", "circle"):
        return a, a
    if kind in ("rectangle", "oval"):
        b = max(2, round(a * rng.uniform(0.45, 0.65)))
        return (a, b) if rng.random() < 0.5 else (b, a)
    return a, rng.randint(lo, hi)


_M = 2  # keep shapes off the border


def _apart(
    rng: random.Random, relation: str, W: int, H: int, s_kind: str, o_kind: str
) -> tuple[Box, Box] | None:
    """left/right/next to along a row, above/under along a column: a clear gap, or touching for next to."""
    u, m = min(W, H), _M
    horizontal = relation in ("to the left of", "to the right of", "next to")
    along, across = (W, H) if horizontal else (H, W)
    sw, sh = _dims(rng, s_kind, round(0.14 * u), round(0.28 * u))
    ow, oh = _dims(rng, o_kind, round(0.14 * u), round(0.28 * u))
    s_len, s_th = (sw, sh) if horizontal else (sh, sw)
    o_len, o_th = (ow, oh) if horizontal else (oh, ow)
    if relation == "next to":
        gap = rng.choice([0, 1]) if along >= 64 else 0
    else:
        gap = rng.randint(max(4, round(0.08 * along)), max(5, round(0.22 * along)))
    total = s_len + gap + o_len
    if total > along - 2 * m:
        return None
    start = rng.randint(m, along - m - total)
    subject_first = relation in ("to the left of", "above") or (relation == "next to" and rng.random() < 0.5)
    if subject_first:
        s_a, o_a = start, start + s_len + gap
    else:
        o_a, s_a = start, start + o_len + gap
    # Same row (column): centres within a quarter of the thinner shape, so the boxes overlap across.
    j = max(0, min(s_th, o_th) // 4)
    t = max(s_th, o_th)
    lo, hi = m + t // 2 + j, across - m - (t - t // 2) - j
    if lo > hi:
        return None
    c = rng.randint(lo, hi)
    s_c, o_c = c + rng.randint(-j, j), c + rng.randint(-j, j)
    s_b = (s_a, s_c - s_th // 2, s_a + s_len, s_c - s_th // 2 + s_th)
    o_b = (o_a, o_c - o_th // 2, o_a + o_len, o_c - o_th // 2 + o_th)
    if not horizontal:  # the boxes were built as (along=y, across=x): swap axes back
        s_b = (s_b[1], s_b[0], s_b[3], s_b[2])
        o_b = (o_b[1], o_b[0], o_b[3], o_b[2])
    return s_b, o_b


def _resting(
    rng: random.Random, relation: str, W: int, H: int, s_kind: str, o_kind: str
) -> tuple[Box, Box] | None:
    """on: the subject's bottom edge is the object's top edge, horizontally within the object."""
    u, m = min(W, H), _M
    ow = rng.randint(round(0.35 * W), round(0.6 * W))
    oh = rng.randint(round(0.15 * H), round(0.3 * H))
    if o_kind == "square":
        ow = oh = min(ow, round(0.45 * u))
    sw, sh = _dims(rng, s_kind, round(0.12 * u), round(0.25 * u))
    sw = min(sw, ow - 2)
    if s_kind in ("square", "circle"):
        sw = sh = min(sw, sh)
    if sh + oh > H - 2 * m:
        return None
    ox = rng.randint(m, W - m - ow)
    oy = rng.randint(m + sh, H - m - oh)
    sx = rng.randint(ox, ox + ow - sw)
    return (sx, oy - sh, sx + sw, oy), (ox, oy, ox + ow, oy + oh)


def _contained(
    rng: random.Random, relation: str, W: int, H: int, s_kind: str, o_kind: str
) -> tuple[Box, Box] | None:
    """in: the subject inside the object's shape."""
    u, m = min(W, H), _M
    ow, oh = _dims(rng, o_kind, round(0.5 * u), round(0.85 * u))
    ow, oh = min(ow, W - 2 * m), min(oh, H - 2 * m)
    ox, oy = rng.randint(m, W - m - ow), rng.randint(m, H - m - oh)
    # Inner region: the whole box for rectangles, the inscribed box (1/sqrt 2) for ellipses.
    shrink = 1.0 if o_kind in ("square", "rectangle") else 0.7
    iw, ih = int(ow * shrink) - 4, int(oh * shrink) - 4
    ix, iy = ox + (ow - iw) // 2, oy + (oh - ih) // 2
    sw, sh = _dims(rng, s_kind, max(3, round(0.3 * min(iw, ih))), max(4, round(0.7 * min(iw, ih))))
    sw, sh = min(sw, iw), min(sh, ih)
    if s_kind in ("square", "circle"):
        sw = sh = min(sw, sh)
    if sw < 3 or sh < 3:
        return None
    sx, sy = rng.randint(ix, ix + iw - sw), rng.randint(iy, iy + ih - sh)
    return (sx, sy, sx + sw, sy + sh), (ox, oy, ox + ow, oy + oh)


def _overlapping(
    rng: random.Random, relation: str, W: int, H: int, s_kind: str, o_kind: str
) -> tuple[Box, Box] | None:
    """behind/in front of: side by side with a partial overlap (who is in front is the drawing order)."""
    u, m = min(W, H), _M
    sw, sh = _dims(rng, s_kind, round(0.25 * u), round(0.42 * u))
    ow, oh = _dims(rng, o_kind, round(0.25 * u), round(0.42 * u))
    # Overlap 40-70% of the narrower width horizontally, most of the height vertically.
    overlap = round(min(sw, ow) * rng.uniform(0.4, 0.7))
    total_w = sw + ow - overlap
    total_h = max(sh, oh) + round(0.15 * min(sh, oh))
    if total_w > W - 2 * m or total_h > H - 2 * m:
        return None
    x = rng.randint(m, W - m - total_w)
    y = rng.randint(m, H - m - total_h)
    dy = rng.randint(0, round(0.15 * min(sh, oh)))
    if rng.random() < 0.5:
        s_b = (x, y, x + sw, y + sh)
        o_b = (x + sw - overlap, y + dy, x + sw - overlap + ow, y + dy + oh)
    else:
        o_b = (x, y, x + ow, y + oh)
        s_b = (x + ow - overlap, y + dy, x + ow - overlap + sw, y + dy + sh)
    return s_b, o_b


_LAYOUTS = {
    "to the left of": _apart,
    "to the right of": _apart,
    "next to": _apart,
    "above": _apart,
    "under": _apart,
    "on": _resting,
    "in": _contained,
    "behind": _overlapping,
    "in front of": _overlapping,
}


def _layout(
    rng: random.Random, relation: str, W: int, H: int, s_kind: str, o_kind: str
) -> tuple[Box, Box] | None:
    """Subject and object boxes that make ``relation`` hold, or None when this draw does not fit."""
    return _LAYOUTS[relation](rng, relation, W, H, s_kind, o_kind)


def _kinds(rng: random.Random, relation: str) -> tuple[str, str]:
    o_pool = FLAT_TOP if relation == "on" else CONTAINERS if relation == "in" else SHAPES
    return rng.choice(SHAPES), rng.choice(o_pool)


def _overlaps(a: Box, b: Box, pad: int) -> bool:
    return not (a[2] + pad <= b[0] or b[2] + pad <= a[0] or a[3] + pad <= b[1] or b[3] + pad <= a[1])


def _distractors(
    rng: random.Random, W: int, H: int, taken: list[Box], colors: list[str], used: set[str]
) -> list[Shape]:
    """0-2 small shapes well away from the pair (so they never change the pair's geometry)."""
    out: list[Shape] = []
    for _ in range(rng.choice([0, 1, 1, 2])):
        for _attempt in range(8):
            kind, color = rng.choice(SHAPES), rng.choice(colors)
            if f"{color} {kind}" in used:
                continue
            w, h = _dims(rng, kind, max(4, round(0.08 * min(W, H))), max(5, round(0.14 * min(W, H))))
            if w >= W - 4 or h >= H - 4:
                break
            x, y = rng.randint(2, W - 2 - w), rng.randint(2, H - 2 - h)
            box = (x, y, x + w, y + h)
            if any(_overlaps(box, t, 3) for t in taken):
                continue
            shape = Shape(kind, color, box)
            out.append(shape)
            taken.append(box)
            used.add(shape.name)
            break
    return out


# ----------------------------------------------------------------------------- drawing


def shape_mask(shape: Shape, width: int, height: int) -> Image.Image:
    """The shape's pixels (outline included) as a 0/255 mask."""
    mask = Image.new("L", (width, height), 0)
    draw_shape(ImageDraw.Draw(mask), shape, fill=255)
    return mask


def _visibly_overlap(a: Shape, b: Shape, width: int, height: int) -> bool:
    """Occlusion must be visible: the shapes (not just their boxes) share >= 10% of the smaller one."""
    ma, mb = shape_mask(a, width, height), shape_mask(b, width, height)
    both = ImageChops.multiply(ma, mb).histogram()[255]
    return both >= 0.1 * min(ma.histogram()[255], mb.histogram()[255])


def draw_shape(draw: ImageDraw.ImageDraw, shape: Shape, fill=None) -> None:
    """Draw one shape filling its box, with a darker outline (``fill`` overrides both: masks)."""
    x0, y0, x1, y1 = shape.box
    x1, y1 = x1 - 1, y1 - 1  # PIL boxes are inclusive
    if fill is None:
        fill = COLORS[shape.color]
        outline = tuple(max(0, c - 70) for c in fill)
    else:
        outline = fill
    if shape.kind in ("square", "rectangle"):
        draw.rectangle((x0, y0, x1, y1), fill=fill, outline=outline)
    elif shape.kind in ("circle", "oval"):
        draw.ellipse((x0, y0, x1, y1), fill=fill, outline=outline)
    elif shape.kind == "triangle":
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fill, outline=outline)
    else:  # diamond
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=fill, outline=outline)


def render(scene: Scene) -> Image.Image:
    """The scene in painter's order: distractors, then whichever of the pair is behind."""
    bg = BACKGROUNDS[scene.background]
    image = Image.new("RGB", (scene.width, scene.height), bg)
    draw = ImageDraw.Draw(image)
    for d in scene.distractors:
        draw_shape(draw, d)
    # The subject is drawn last except when it is behind (or is the container of nothing: 'in'
    # draws the container first so the contained subject stays visible).
    pair = [scene.subject, scene.object] if scene.relation == "behind" else [scene.object, scene.subject]
    for shape in pair:
        draw_shape(draw, shape)
    return image


# ----------------------------------------------------------------------------- generation


def _pick_size(rng: random.Random, size) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    if isinstance(size, range):
        return rng.choice(size), rng.choice(size)
    w, h = size
    return int(w), int(h)


MIN_SIDE = 32  # below this the shapes cannot keep the clear gaps the ground truth relies on


def _check_size(size) -> None:
    sides = [size] if isinstance(size, int) else list(size) if not isinstance(size, range) else list(size[:1])
    if not sides or min(sides) < MIN_SIDE:
        raise ValueError(f"image size {size!r} too small: each side must be at least {MIN_SIDE} px")


def make_scene(index: int, relation: str, seed: int, size=96, image_format: str = "png") -> Scene:
    """One scene; deterministic in (seed, index), independent of every other scene."""
    rng = random.Random(f"vsd-synth:{seed}:{index}")
    for _attempt in range(200):
        W, H = _pick_size(rng, size)
        background = rng.choice(list(BACKGROUNDS))
        bg = BACKGROUNDS[background]
        colors = [c for c, rgb in COLORS.items() if sum((a - b) ** 2 for a, b in zip(rgb, bg)) > 90**2]
        s_color, o_color = rng.sample(colors, 2)
        s_kind, o_kind = _kinds(rng, relation)
        boxes = _layout(rng, relation, W, H, s_kind, o_kind)
        if boxes is None:
            continue
        subject, obj = Shape(s_kind, s_color, boxes[0]), Shape(o_kind, o_color, boxes[1])
        if relation in ("behind", "in front of") and not _visibly_overlap(subject, obj, W, H):
            continue
        ext = "jpg" if image_format in ("jpg", "jpeg") else "png"
        scene = Scene(f"synth-{seed}-{index:05d}.{ext}", W, H, background, subject, obj, relation)
        scene.distractors = _distractors(rng, W, H, [subject.box, obj.box], colors, {subject.name, obj.name})
        scene.captions = _captions(rng, scene)
        scene.caption_v2 = _caption_v2(rng, scene)
        return scene
    raise ValueError(f"cannot lay out {relation!r} in images of size {size!r}: too small")


def _vsd_box(box: Box) -> list[int]:
    x0, y0, x1, y1 = box
    return [y0, y1, x0, x1]


def _record(scene: Scene, captions: list[str]) -> dict:
    return {
        "img_id": scene.img_id,
        "triple_list": [
            {
                "s": scene.subject.name,
                "o": scene.object.name,
                "p": scene.relation,
                "s_bbox": _vsd_box(scene.subject.box),
                "o_bbox": _vsd_box(scene.object.box),
            }
        ],
        "captions": captions,
        "dataset": "synthetic",
    }


def _encode(image: Image.Image, image_format: str) -> bytes:
    buf = io.BytesIO()
    if image_format in ("jpg", "jpeg"):
        image.save(buf, format="JPEG", quality=92)
    else:
        image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def generate(
    n: int,
    out_dir: str,
    seed: int = 0,
    size=96,
    relations: list[str] | tuple[str, ...] | None = None,
    image_format: str = "png",
) -> SyntheticSet:
    """Write ``n`` scenes to ``out_dir`` (local or ``s3://``): ``images/``, ``vsdv1.json``, ``vsdv2.json``.

    ``size``: an int (square), ``(width, height)``, or a ``range`` to draw each side from.
    ``relations``: the relations to cover, in turn (default all 9), so every relation gets
    ``n / len(relations)`` scenes (+-1).
    """
    relations = tuple(relations or RELATIONS)
    unknown = [r for r in relations if r not in RELATIONS]
    if unknown:
        raise ValueError(f"unknown relations {unknown}; expected some of {list(RELATIONS)}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    _check_size(size)
    out_dir = str(out_dir).rstrip("/")
    images = storage.join(out_dir, "images")
    local = not storage.is_s3(out_dir)
    if local:
        os.makedirs(images, exist_ok=True)
    v1, v2 = [], []
    counts: Counter = Counter()
    for i in range(n):
        scene = make_scene(i, relations[i % len(relations)], seed, size, image_format)
        data = _encode(render(scene), image_format)
        target = storage.join(images, scene.img_id)
        if local:  # plain writes: a fresh folder of our own, no need for fsync + rename per image
            with open(target, "wb") as f:
                f.write(data)
        else:
            storage.write_bytes(target, data)
        v1.append(_record(scene, scene.captions))
        v2.append(_record(scene, [scene.caption_v2]))
        counts[scene.relation] += 1
    vsd1, vsd2 = storage.join(out_dir, "vsdv1.json"), storage.join(out_dir, "vsdv2.json")
    storage.write_text(vsd1, json.dumps(v1, indent=None))
    storage.write_text(vsd2, json.dumps(v2, indent=None))
    return SyntheticSet(out_dir, vsd1, vsd2, images, n, {r: counts[r] for r in relations})
