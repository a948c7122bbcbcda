"""What per-box depth adds to the geometry (vsd/relations/depth.py and its use in geometry.py)."""

from __future__ import annotations

import random

import pytest

from vsd.relations import RELATIONS, BoxDepths, geometric_relation, geometry_contradicts
from vsd.relations.depth import DEPTH_GAP, depth_relation, nearer_is_larger

LEFT, RIGHT = [0.05, 0.4, 0.25, 0.6], [0.6, 0.4, 0.9, 0.6]
# side by side, half overlapping: 2-D says nothing
A, B = [0.2, 0.3, 0.5, 0.7], [0.35, 0.32, 0.7, 0.72]
SMALL_INSIDE, BIG = [0.4, 0.4, 0.5, 0.5], [0.1, 0.1, 0.9, 0.9]
CUP, TABLE = [0.42, 0.3, 0.52, 0.5], [0.2, 0.45, 0.8, 0.9]  # cup's bottom inside the table top's box


def relative(subject, object_):
    return BoxDepths(subject, object_, nearer_is_larger=True)


def metric(subject, object_):
    return BoxDepths(subject, object_, nearer_is_larger=False)


def test_kinds_and_which_box_is_nearer():
    assert nearer_is_larger("relative") and not nearer_is_larger("metric")
    with pytest.raises(ValueError, match="depth kind"):
        nearer_is_larger("disparity")
    assert relative(10.0, 5.0).nearer() == "subject" and metric(10.0, 5.0).nearer() == "object"
    assert relative(5.0, 10.0).nearer() == "object" and metric(2.0, 8.0).nearer() == "subject"
    # below the gap: nothing is clear
    assert relative(10.0, 10.0 * (1 - DEPTH_GAP / 2)).nearer() is None
    assert relative(0.0, 0.0).nearer() is None and relative(10.0, 9.8).same_depth()
    assert (
        depth_relation(relative(10.0, 5.0)) == "in front of" and depth_relation(metric(10.0, 5.0)) == "behind"
    )


def test_depths_from_annotation_columns():
    pair = {"subject_depth": 3.0, "object_depth": 1.0, "depth_kind": "metric"}
    assert BoxDepths.from_pair(pair) == BoxDepths(3.0, 1.0, False)
    assert BoxDepths.from_pair({**pair, "object_depth": None}) is None
    assert BoxDepths.from_pair({**pair, "depth_kind": None}) is None
    assert BoxDepths.from_pair({**pair, "subject_depth": float("nan")}) is None
    assert BoxDepths.from_pair({"subject_depth": None}) is None


def test_overlapping_boxes_with_a_clear_gap_are_behind_or_in_front():
    assert geometric_relation(A, B) is None
    assert geometric_relation(A, B, relative(8.0, 4.0)) == "in front of"
    assert geometric_relation(A, B, relative(4.0, 8.0)) == "behind"
    assert geometric_relation(A, B, metric(2.0, 6.0)) == "in front of"
    assert geometric_relation(A, B, relative(8.0, 7.9)) is None  # no clear gap: undecided, as in 2-D


def test_inside_a_larger_box_is_in_unless_clearly_in_front_or_behind():
    assert geometric_relation(SMALL_INSIDE, BIG) == "in"
    assert geometric_relation(SMALL_INSIDE, BIG, relative(5.0, 5.1)) == "in"
    assert (
        geometric_relation(SMALL_INSIDE, BIG, relative(9.0, 3.0)) == "in front of"
    )  # a person before a wall
    assert geometric_relation(SMALL_INSIDE, BIG, metric(9.0, 3.0)) == "behind"


def test_resting_at_the_same_depth_is_on():
    assert geometric_relation(CUP, TABLE) is None
    assert geometric_relation(CUP, TABLE, relative(5.0, 5.05)) == "on"
    assert geometric_relation(CUP, TABLE, relative(5.0, 4.7)) is None  # neither same depth nor a clear gap
    touching = ([0.4, 0.2, 0.5, 0.4], [0.2, 0.4, 0.8, 0.7])  # the synthetic 'on': edge to edge
    assert geometric_relation(*touching, relative(3.0, 3.0)) == "on"
    beside = ([0.05, 0.2, 0.15, 0.4], [0.2, 0.4, 0.8, 0.7])  # not over the object: not resting
    assert geometric_relation(*beside, relative(3.0, 3.0)) is None


def test_boxes_apart_keep_their_two_d_side():
    for depths in (relative(9.0, 1.0), relative(1.0, 9.0), metric(1.0, 1.0)):
        assert geometric_relation(LEFT, RIGHT, depths) == "to the left of"
        assert geometric_relation(RIGHT, LEFT, depths) == "to the right of"


def test_depth_contradicts_only_the_depth_relations():
    nearer = relative(8.0, 4.0)
    assert geometry_contradicts("behind", A, B, nearer) and not geometry_contradicts(
        "in front of", A, B, nearer
    )
    assert geometry_contradicts("in front of", A, B, metric(8.0, 4.0))
    assert not geometry_contradicts("behind", A, B, relative(8.0, 7.9))  # unclear gap: lenient
    assert not geometry_contradicts("behind", A, B) and not geometry_contradicts("in front of", A, B)
    for rel in ("on", "in", "next to", "above"):  # a cup on a long table: medians may differ a lot
        assert geometry_contradicts(rel, CUP, TABLE, nearer) == geometry_contradicts(rel, CUP, TABLE)


def test_without_depths_the_two_d_answers_are_unchanged():
    """Passing no depths is the 2-D geometry exactly (parser agreement and verify rely on it)."""
    rng = random.Random(7)
    for _ in range(500):
        s = sorted(rng.random() for _ in range(2)), sorted(rng.random() for _ in range(2))
        o = sorted(rng.random() for _ in range(2)), sorted(rng.random() for _ in range(2))
        sb, ob = [s[0][0], s[1][0], s[0][1], s[1][1]], [o[0][0], o[1][0], o[0][1], o[1][1]]
        assert geometric_relation(sb, ob, None) == geometric_relation(sb, ob)
        same = relative(1.0, 1.0)  # same depth: only 'on' may be added, and only where 2-D is silent
        flat, deep = geometric_relation(sb, ob), geometric_relation(sb, ob, same)
        assert deep == flat or (flat is None and deep == "on")
        for rel in RELATIONS:
            assert geometry_contradicts(rel, sb, ob, same) == geometry_contradicts(rel, sb, ob)
