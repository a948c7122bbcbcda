"""Box conversions and what 2-D boxes decide or rule out (vsd/relations/geometry.py)."""

from __future__ import annotations

import math
import random

import pytest

from vsd.relations import (
    DEPTH_RELATIONS,
    INVERSE,
    RELATIONS,
    box_is_valid,
    geometric_relation,
    geometry_contradicts,
    vsd_box_to_xyxy,
    xyxy_to_vsd_box,
)

# ------------------------------------------------------------------------------ boxes


def test_vsd_box_round_trip():
    box = [40, 120, 30, 250]  # ymin, ymax, xmin, xmax
    xyxy = vsd_box_to_xyxy(box, width=500, height=400)
    assert xyxy == pytest.approx([0.06, 0.1, 0.5, 0.3])
    assert xyxy_to_vsd_box(xyxy, 500, 400) == box
    rng = random.Random(0)
    for _ in range(200):
        w, h = rng.randint(10, 2000), rng.randint(10, 2000)
        y0, y1 = sorted(rng.sample(range(h + 1), 2))
        x0, x1 = sorted(rng.sample(range(w + 1), 2))
        assert xyxy_to_vsd_box(vsd_box_to_xyxy([y0, y1, x0, x1], w, h), w, h) == [y0, y1, x0, x1]


def test_vsd_box_clipped_and_rejected():
    assert vsd_box_to_xyxy([-5, 500, -10, 700], 600, 400) == [0.0, 0.0, 1.0, 1.0]
    with pytest.raises(ValueError):
        vsd_box_to_xyxy([1, 2, 3], 10, 10)
    with pytest.raises(ValueError):
        vsd_box_to_xyxy([1, 2, 3, 4], 0, 10)


@pytest.mark.parametrize(
    "box,valid",
    [
        ([0.1, 0.2, 0.3, 0.4], True),
        ([0, 0, 1, 1], True),
        ([0.3, 0.2, 0.1, 0.4], False),
        ([0.1, 0.2, 0.1, 0.4], False),
        ([0.1, 0.2, 1.2, 0.4], False),
        ([0.1, math.nan, 0.3, 0.4], False),
        ([0.1, 0.2, math.inf, 0.4], False),
        ([0.1, 0.2, 0.3], False),
        (None, False),
        (["a", 0, 1, 1], False),
    ],
)
def test_box_is_valid(box, valid):
    assert box_is_valid(box) is valid


# ------------------------------------------------------------------------------ geometry

SQUARE = [0.4, 0.4, 0.6, 0.6]


@pytest.mark.parametrize(
    "subject,expected",
    [
        ([0.1, 0.42, 0.3, 0.58], "to the left of"),
        ([0.7, 0.35, 0.9, 0.55], "to the right of"),
        ([0.42, 0.1, 0.58, 0.3], "above"),
        ([0.45, 0.7, 0.55, 0.9], "under"),
        ([0.45, 0.45, 0.5, 0.5], "in"),
        ([0.42, 0.3, 0.58, 0.4], None),  # resting on top: on or above, the picture cannot tell
        ([0.3, 0.42, 0.4, 0.58], None),  # touching side by side: next to or left
        ([0.5, 0.5, 0.7, 0.7], None),  # partial overlap: behind / in front of
        ([0.1, 0.1, 0.3, 0.3], None),  # diagonal: left or above
        ([0.0, 0.05, 0.3, 0.35], None),
        ([0.0, 0.45, 0.1, 0.5], "to the left of"),  # far left, a little up: still left
    ],
)
def test_geometric_relation(subject, expected):
    assert geometric_relation(subject, SQUARE) == expected


def test_geometric_relation_is_antisymmetric():
    rng = random.Random(1)
    for _ in range(2000):
        a = sorted(rng.random() for _ in range(2))
        b = sorted(rng.random() for _ in range(2))
        c = sorted(rng.random() for _ in range(2))
        d = sorted(rng.random() for _ in range(2))
        s, o = [a[0], b[0], a[1], b[1]], [c[0], d[0], c[1], d[1]]
        g, back = geometric_relation(s, o), geometric_relation(o, s)
        if g not in (None, "in"):
            assert back == INVERSE[g]
        assert not (g is not None and geometry_contradicts(g, s, o))


def _scene(rng: random.Random, relation: str) -> tuple[list[float], list[float]]:
    """Boxes as the synthetic generator of issue 2 places them (placement, adjacency, resting
    contact, containment, occlusion), in pixels of a 128..160 px image, normalised."""
    W = H = rng.randint(128, 160)
    w1, h1, w2, h2 = (rng.randint(14, 40) for _ in range(4))
    x, y = rng.randint(2, W - 102), rng.randint(2, H - 102)
    gap = rng.randint(8, 20)
    if relation in ("to the left of", "next to"):
        s, o = (
            [x, y, x + w1, y + h1],
            [x + w1 + (gap if relation != "next to" else rng.randint(0, 1)), y + 2, 0, 0],
        )
    elif relation == "to the right of":
        o, s = [x, y, x + w2, y + h2], [x + w2 + gap, y + 3, 0, 0]
    elif relation == "above":
        s, o = [x, y, x + w1, y + h1], [x + 2, y + h1 + gap, 0, 0]
    elif relation == "under":
        o, s = [x, y, x + w2, y + h2], [x + 1, y + h2 + gap, 0, 0]
    elif relation == "on":
        o = [x, y + h1, x + 50, y + h1 + h2]
        s = [x + rng.randint(0, 50 - min(w1, 48)), y, 0, y + h1]
        s[2] = s[0] + min(w1, 48)
    elif relation == "in":
        o = [x, y, x + 60, y + 60]
        s = [x + 5, y + 6, x + 5 + min(w1, 50), y + 6 + min(h1, 50)]
    else:  # behind / in front of: partial overlap, neither box inside the other
        s = [x, y, x + 40, y + 40]
        o = [x + 20, y + rng.randint(0, 8), x + 60, y + 45]
    for b, (w, h) in ((s, (w1, h1)), (o, (w2, h2))):
        if b[2] == 0:
            b[2], b[3] = b[0] + w, b[1] + h
    return [v / W if i % 2 == 0 else v / H for i, v in enumerate(s)], [
        v / W if i % 2 == 0 else v / H for i, v in enumerate(o)
    ]


def test_geometry_never_contradicts_generated_scenes():
    rng = random.Random(2)
    decided = {r: 0 for r in RELATIONS}
    for i in range(900):
        rel = RELATIONS[i % 9]
        s, o = _scene(rng, rel)
        g = geometric_relation(s, o)
        assert g in (None, rel), (rel, g, s, o)
        assert not geometry_contradicts(rel, s, o), (rel, s, o)
        decided[rel] += g == rel
    for rel in ("to the left of", "to the right of", "above", "under", "in"):
        assert decided[rel] == 100, decided  # the clear cases are decided, not skipped


@pytest.mark.parametrize(
    "relation,subject,contradicts",
    [
        ("to the left of", [0.7, 0.4, 0.9, 0.6], True),
        ("to the left of", [0.1, 0.4, 0.3, 0.6], False),
        ("to the right of", [0.1, 0.4, 0.3, 0.6], True),
        ("next to", [0.1, 0.4, 0.3, 0.6], False),  # left is a kind of next to
        ("next to", [0.42, 0.0, 0.58, 0.2], True),  # far above, same column
        ("above", [0.42, 0.7, 0.58, 0.9], True),
        ("on", [0.42, 0.7, 0.58, 0.9], True),
        ("on", [0.45, 0.45, 0.55, 0.55], False),  # a window on a house lies inside it
        ("on", [0.42, 0.3, 0.58, 0.4], False),
        ("under", [0.42, 0.1, 0.58, 0.3], True),
        ("under", [0.42, 0.7, 0.58, 0.9], False),
        ("in", [0.8, 0.8, 0.9, 0.9], True),
        ("in", [0.45, 0.45, 0.55, 0.55], False),
        ("behind", [0.8, 0.8, 0.9, 0.9], False),  # depth is not in the boxes
        ("in front of", [0.0, 0.0, 0.1, 0.1], False),
    ],
)
def test_geometry_contradicts(relation, subject, contradicts):
    assert geometry_contradicts(relation, subject, SQUARE) is contradicts


def test_geometry_contradicts_rejects_unknown_relation():
    with pytest.raises(ValueError, match="unknown relation"):
        geometry_contradicts("inside of", SQUARE, SQUARE)


def test_depth_relations_are_neither_decided_nor_ruled_out_by_boxes():
    assert DEPTH_RELATIONS == {"behind", "in front of"} and DEPTH_RELATIONS <= set(RELATIONS)
    rng = random.Random(3)
    for _ in range(500):
        xs, ys = sorted(rng.random() for _ in range(2)), sorted(rng.random() for _ in range(2))
        s, o = [xs[0], ys[0], xs[1], ys[1]], [rng.random() * 0.5, rng.random() * 0.5, 0.6, 0.7]
        assert geometric_relation(s, o) not in DEPTH_RELATIONS
        assert not any(geometry_contradicts(rel, s, o) for rel in DEPTH_RELATIONS)
