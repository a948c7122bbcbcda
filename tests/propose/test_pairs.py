"""Pair selection: exact scores, roles, filters, the K cap and order independence."""

from __future__ import annotations

import itertools
import random

import pytest

from vsd.propose.config import PairConfig
from vsd.propose.detections import Detection
from vsd.propose.pairs import pair_score, pair_terms, select_pairs

CUP = Detection((0.40, 0.30, 0.50, 0.40), "cup", 0.81)  # 0.1 x 0.1
TABLE = Detection((0.20, 0.40, 0.80, 0.80), "table", 0.64)  # 0.6 x 0.4, touching the cup
LAMP = Detection((0.90, 0.00, 1.00, 0.20), "lamp", 0.49)  # far top-right


def test_terms_and_score_by_hand():
    cfg = PairConfig()
    conf, size, prox = pair_terms(CUP, TABLE, cfg)
    assert conf == pytest.approx((0.81 * 0.64) ** 0.5)  # 0.72
    assert size == pytest.approx(0.1 / 0.25)  # sqrt(0.01) / 0.25
    assert prox == pytest.approx(1.0)  # touching: gap 0
    assert pair_score(CUP, TABLE, cfg) == pytest.approx((1.0 * 0.72 + 0.5 * 0.4 + 0.5 * 1.0) / 2.0)
    # cup - lamp: gap dx = 0.4, dy = 0.1 -> sqrt(0.17); proximity 1 - 0.4123 / 0.5
    conf, size, prox = pair_terms(CUP, LAMP, cfg)
    assert prox == pytest.approx(1 - 0.17**0.5 / 0.5)
    assert size == pytest.approx(0.4)
    assert conf == pytest.approx((0.81 * 0.49) ** 0.5)


def test_smaller_box_is_subject_and_best_pair_first():
    pairs = select_pairs([LAMP, TABLE, CUP], PairConfig())
    names = [(p.subject.label, p.object.label) for p in pairs]
    # cup-table 0.71, lamp-table (gap 0.2 -> prox 0.6, conf 0.56, size 0.632) ..., cup-lamp last
    assert names[0] == ("cup", "table")
    assert set(names) == {("cup", "table"), ("lamp", "table"), ("cup", "lamp")}
    assert [p.score for p in pairs] == sorted((p.score for p in pairs), reverse=True)
    row = pairs[0].to_row()
    assert row == {
        "subject": "cup",
        "object": "table",
        "subject_box": [0.4, 0.3, 0.5, 0.4],
        "object_box": [0.2, 0.4, 0.8, 0.8],
        "box_source": "detected",
        "subject_score": 0.81,
        "object_score": 0.64,
        "subject_depth": None,
        "object_depth": None,
        "pair_score": pairs[0].score,
    }


def test_at_most_k_and_orientation_both():
    assert len(select_pairs([LAMP, TABLE, CUP], PairConfig(max_pairs=2))) == 2
    assert select_pairs([LAMP, TABLE, CUP], PairConfig(max_pairs=0)) == []
    both = select_pairs([TABLE, CUP], PairConfig(orientation="both"))
    assert [(p.subject.label, p.object.label) for p in both] == [("cup", "table"), ("table", "cup")]
    assert both[0].score == both[1].score


def test_filters_duplicates_labels_and_weak_detections():
    twin = Detection((0.21, 0.41, 0.80, 0.80), "desk", 0.6)  # the table found again: IoU ~0.97
    assert [(p.subject.label, p.object.label) for p in select_pairs([TABLE, twin], PairConfig())] == []
    same = Detection((0.0, 0.0, 0.1, 0.1), "cup", 0.9)
    assert len(select_pairs([CUP, same], PairConfig())) == 1
    assert select_pairs([CUP, same], PairConfig(distinct_labels=True)) == []
    assert [
        (p.subject.label, p.object.label) for p in select_pairs([CUP, TABLE, LAMP], PairConfig(min_score=0.6))
    ] == [("cup", "table")]


def test_independent_of_input_order_and_ties_are_stable():
    # four identical-score, identical-size boxes on a grid: every pair ties on some terms
    dets = [
        Detection((x, y, x + 0.1, y + 0.1), f"obj{i}", 0.5)
        for i, (x, y) in enumerate(itertools.product((0.0, 0.3), (0.0, 0.3)))
    ]
    reference = select_pairs(dets, PairConfig())
    rng = random.Random(0)
    for _ in range(10):
        shuffled = dets[:]
        rng.shuffle(shuffled)
        assert select_pairs(shuffled, PairConfig()) == reference
    # equal areas: the canonical first (same score -> smaller x0, y0) is the subject
    assert (reference[0].subject.label, reference[0].object.label) == ("obj0", "obj1")


def test_zero_weights_give_zero_scores():
    cfg = PairConfig(weight_score=0, weight_size=0, weight_proximity=0)
    assert pair_score(CUP, TABLE, cfg) == 0.0
