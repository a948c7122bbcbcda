"""What a picture's boxes say about a relation: box conversions, validity, and 2-D geometry.

Boxes inside the system are normalised ``[x0, y0, x1, y1]`` in 0..1 with y growing downwards
(image convention); VSD JSON boxes are ``[ymin, ymax, xmin, xmax]`` pixels and are converted once,
at the reader, with `vsd_box_to_xyxy`.

Boxes alone carry no depth, so ``behind`` / ``in front of`` (`DEPTH_RELATIONS`) are decided and
contradicted only when the caller passes the boxes' depths (`vsd.relations.depth.BoxDepths`, from a
monocular depth model in the propose stage); without them the 2-D rules below are all there is,
and they do not change when depths are given -- depth only adds decisions where 2-D has none (or
says ``in`` for what is clearly in front of a larger thing).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from vsd.relations.depth import BoxDepths, depth_relation
from vsd.relations.vocabulary import INVERSE, RELATIONS

# --------------------------------------------------------------------------------------------
# Boxes
# --------------------------------------------------------------------------------------------


def _clip01(v: float) -> float:
    return min(1.0, max(0.0, v))


def vsd_box_to_xyxy(box: Sequence[float], width: float, height: float) -> list[float]:
    """VSD ``[ymin, ymax, xmin, xmax]`` pixels -> normalised ``[x0, y0, x1, y1]`` clipped to 0..1."""
    if len(box) != 4:
        raise ValueError(f"a VSD box has 4 numbers [ymin, ymax, xmin, xmax], got {list(box)!r}")
    if not (width > 0 and height > 0):
        raise ValueError(f"image size must be positive, got {width}x{height}")
    ymin, ymax, xmin, xmax = (float(v) for v in box)
    return [_clip01(xmin / width), _clip01(ymin / height), _clip01(xmax / width), _clip01(ymax / height)]


def xyxy_to_vsd_box(box: Sequence[float], width: float, height: float) -> list[int]:
    """Normalised ``[x0, y0, x1, y1]`` -> VSD ``[ymin, ymax, xmin, xmax]`` integer pixels."""
    if len(box) != 4:
        raise ValueError(f"an xyxy box has 4 numbers [x0, y0, x1, y1], got {list(box)!r}")
    x0, y0, x1, y1 = (float(v) for v in box)
    return [round(y0 * height), round(y1 * height), round(x0 * width), round(x1 * width)]


def box_is_valid(box_xyxy: Sequence[float] | None) -> bool:
    """Four finite numbers within 0..1, ordered, with positive area."""
    if box_xyxy is None or len(box_xyxy) != 4:
        return False
    try:
        x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    except (TypeError, ValueError):
        return False
    if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in (x0, y0, x1, y1)):
        return False
    return x0 < x1 and y0 < y1


# --------------------------------------------------------------------------------------------
# Geometry: what a 2-D picture can say about a relation
# --------------------------------------------------------------------------------------------

#: Gap (fraction of the image) the boxes must keep apart on an axis to count as separated on it;
#: touching boxes (``on`` resting contact, ``next to`` adjacency) stay undecided.
SEPARATION = 0.02
#: When the boxes are apart on both axes (diagonal), the larger gap decides only if it is this
#: many times the smaller one; otherwise the picture does not say left/right vs above/under.
DOMINANCE = 4.0
#: Share of the subject's area that must lie inside the object for ``in``.
CONTAINMENT = 0.9
#: Relations about depth, which the boxes do not show (the seam for depth-aware checks).
DEPTH_RELATIONS: frozenset[str] = frozenset({"behind", "in front of"})


def _area(b: Sequence[float]) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def _inside_share(s: Sequence[float], o: Sequence[float]) -> float:
    """Share of the subject's area that lies inside the object's box."""
    ix = max(0.0, min(s[2], o[2]) - max(s[0], o[0]))
    iy = max(0.0, min(s[3], o[3]) - max(s[1], o[1]))
    a = _area(s)
    return ix * iy / a if a > 0 else 0.0


def _gaps(s: Sequence[float], o: Sequence[float]) -> tuple[float, float, float, float]:
    """Signed gaps: subject left of / right of / above / under the object (> 0: apart that much)."""
    return o[0] - s[2], s[0] - o[2], o[1] - s[3], s[1] - o[3]


def geometric_relation(
    subject_box: Sequence[float], object_box: Sequence[float], depths: BoxDepths | None = None
) -> str | None:
    """The relation the geometry decides, from subject to object, or ``None``.

    Decides ``to the left of`` / ``to the right of`` / ``above`` / ``under`` only when the boxes
    are clearly apart on that axis (by `SEPARATION`) and the other axis does not compete, and
    ``in`` when the subject lies (almost) entirely inside a larger object. Never ``on``, ``next to``,
    ``behind`` or ``in front of``: touching boxes may be ``on`` or ``above``, adjacency may be
    ``next to`` or a side, and depth is not in the boxes. Compare against a stated relation with
    `geometry_contradicts`, which treats ``next to`` as compatible with left/right and ``on`` as
    compatible with ``above``/``in``.

    With ``depths`` (see `_with_depth`) it also decides ``behind`` / ``in front of`` and ``on``;
    without them the answer is the 2-D one above.
    """
    s, o = [float(v) for v in subject_box], [float(v) for v in object_box]
    if _area(s) <= 0 or _area(o) <= 0:
        return None
    flat = _relation_2d(s, o)
    return flat if depths is None else _with_depth(flat, s, o, depths)


def _relation_2d(s: list[float], o: list[float]) -> str | None:
    if _area(s) < _area(o) and _inside_share(s, o) >= CONTAINMENT:
        return "in"
    left, right, up, down = _gaps(s, o)
    hgap, hrel = (left, "to the left of") if left >= right else (right, "to the right of")
    vgap, vrel = (up, "above") if up >= down else (down, "under")
    h_apart, v_apart = hgap >= SEPARATION, vgap >= SEPARATION
    if h_apart and v_apart:
        if hgap >= DOMINANCE * vgap:
            return hrel
        if vgap >= DOMINANCE * hgap:
            return vrel
        return None
    if h_apart and vgap < 0:
        return hrel
    if v_apart and hgap < 0:
        return vrel
    return None


def _overlap(s: Sequence[float], o: Sequence[float]) -> bool:
    """The boxes share area (not merely touch)."""
    return min(s[2], o[2]) - max(s[0], o[0]) > 0 and min(s[3], o[3]) - max(s[1], o[1]) > 0


def _resting(s: Sequence[float], o: Sequence[float]) -> bool:
    """The subject could rest on the object: horizontally within it, sticking out above its top,
    its bottom edge at the object's top edge or within the object's upper half (a cup on a table
    seen from above sits inside the table's box)."""
    within = s[0] >= o[0] - SEPARATION and s[2] <= o[2] + SEPARATION
    return within and s[1] < o[1] and o[1] - SEPARATION <= s[3] <= (o[1] + o[3]) / 2


def _with_depth(flat: str | None, s: list[float], o: list[float], depths: BoxDepths) -> str | None:
    """What depth adds to the 2-D answer ``flat``: boxes apart keep their side (left, above, ...);
    a subject inside the object's box with a clear depth gap is in front of / behind it, not in
    it; overlapping boxes with a clear gap are ``behind`` / ``in front of``; a subject resting on
    the object's top at the same depth is ``on`` it."""
    in_depth = depth_relation(depths)
    if flat == "in":
        return in_depth or flat
    if flat is not None:
        return flat
    if in_depth is not None and _overlap(s, o):
        return in_depth
    if _resting(s, o) and depths.same_depth():
        return "on"
    return None


def geometry_contradicts(
    relation: str, subject_box: Sequence[float], object_box: Sequence[float], depths: BoxDepths | None = None
) -> bool:
    """True when the boxes clearly rule out `relation` (from subject to object).

    Lenient on purpose: the verify stage flags a description only when the picture is
    unambiguous, e.g. ``to the left of`` with the subject entirely right of the object,
    ``on``/``above`` with the subject entirely below it, ``in`` with the boxes far apart, ``next to``
    with one box far above the other. ``behind`` / ``in front of`` are contradicted only with
    ``depths``, when the subject is clearly on the other side (nearer for ``behind``, farther for
    ``in front of``); depth never contradicts the other relations (a cup on a long table may have
    a very different median depth than the table).
    """
    if relation not in INVERSE:
        raise ValueError(f"unknown relation {relation!r}; expected one of {', '.join(RELATIONS)}")
    s, o = [float(v) for v in subject_box], [float(v) for v in object_box]
    if relation in DEPTH_RELATIONS:
        in_depth = depth_relation(depths) if depths is not None else None
        return in_depth is not None and in_depth != relation
    left, right, up, down = _gaps(s, o)
    if relation == "to the left of":
        return right >= SEPARATION
    if relation == "to the right of":
        return left >= SEPARATION
    if relation in ("on", "above"):
        return down >= SEPARATION
    if relation == "under":
        return up >= SEPARATION
    if relation == "in":
        return max(left, right, up, down) >= SEPARATION
    # next to: far apart vertically while sharing columns, one is above the other, not beside it.
    return max(up, down) >= 0.1 and max(left, right) < 0
