"""Box helpers, `finalize` (the one filter every backend goes through) and detection metrics."""

from __future__ import annotations

import pytest

from vsd.demo.synthetic_truth import VOCABULARY, TrueObject, scene_at, scene_objects
from vsd.propose import boxes as B
from vsd.propose.detections import Detection, finalize
from vsd.propose.metrics import evaluate_detections, match


def test_iou_gap_nms():
    a, b = (0.0, 0.0, 0.5, 0.5), (0.25, 0.0, 0.75, 0.5)
    assert B.iou(a, b) == pytest.approx(0.125 / 0.375)
    assert B.iou(a, (0.6, 0.6, 0.7, 0.7)) == 0.0
    assert B.gap(a, (0.8, 0.9, 0.9, 1.0)) == pytest.approx((0.3**2 + 0.4**2) ** 0.5)
    assert B.gap(a, b) == 0.0
    boxes = [a, b, (0.01, 0.0, 0.5, 0.5), (0.6, 0.6, 0.7, 0.7)]
    scores = [0.9, 0.8, 0.95, 0.1]
    assert B.nms(boxes, scores, 0.5) == [2, 1, 3]  # box 0 ~ box 2 (IoU 0.98)
    assert B.nms(boxes, scores, 0.5, labels=["x", "x", "y", "x"]) == [2, 0, 1, 3]
    assert B.xyxy_to_cxcywh(B.cxcywh_to_xyxy((0.5, 0.5, 0.2, 0.4))) == pytest.approx((0.5, 0.5, 0.2, 0.4))


def test_finalize_clips_filters_suppresses_and_orders():
    dets = finalize(
        boxes=[
            (-0.1, 0.2, 0.4, 0.6),
            (0.0, 0.2, 0.4, 0.6),
            (0.5, 0.5, 0.505, 0.9),
            (0.6, 0.1, 0.9, 0.3),
            (0.7, 0.7, 0.9, 0.9),
        ],
        scores=[0.9, 0.7, 0.99, 0.3, 0.2],
        labels=["cup", "mug", "pen", "lamp", "box"],
        score_threshold=0.25,
        nms_iou=0.7,
        class_agnostic=True,
        min_box_size=0.02,
        max_detections=10,
    )
    # clipped cup wins over the mug (same box), the 0.005-wide pen is a sliver, the box is below 0.25
    assert dets == [Detection((0.0, 0.2, 0.4, 0.6), "cup", 0.9), Detection((0.6, 0.1, 0.9, 0.3), "lamp", 0.3)]
    per_label = finalize(
        boxes=[(0, 0, 0.5, 0.5), (0, 0, 0.5, 0.5)],
        scores=[0.5, 0.6],
        labels=["a", "b"],
        score_threshold=0,
        nms_iou=0.7,
        class_agnostic=False,
        min_box_size=0,
        max_detections=1,
    )
    assert per_label == [Detection((0.0, 0.0, 0.5, 0.5), "b", 0.6)]


def test_metrics_count_labels_and_boxes():
    truths = [
        TrueObject("red circle", (0.1, 0.1, 0.3, 0.3)),
        TrueObject("blue square", (0.5, 0.5, 0.9, 0.9)),
        TrueObject("green oval", (0.6, 0.0, 0.8, 0.2)),
    ]
    dets = [
        Detection((0.1, 0.1, 0.3, 0.32), "red circle", 0.9),  # TP
        Detection((0.1, 0.1, 0.3, 0.3), "red circle", 0.8),  # duplicate: FP
        Detection((0.5, 0.5, 0.9, 0.85), "blue circle", 0.7),  # right box, wrong name
        Detection((0.0, 0.8, 0.1, 0.9), "pink diamond", 0.6),
    ]  # nothing there
    assert match(dets, truths) == [0, None, None, None]
    assert match(dets, truths, use_labels=False) == [0, None, 1, None]
    m = evaluate_detections([(dets, truths), ([], [])])
    assert (m.images, m.truths, m.detections, m.true_positives) == (2, 3, 4, 1)
    assert (m.recall, m.precision, m.box_recall, m.box_precision) == (0.3333, 0.25, 0.6667, 0.5)
    assert evaluate_detections([([], truths)]).precision == 0.0


def test_synthetic_truth_covers_every_drawn_shape():
    scene = scene_at(7, seed=3, size=(80, 60))
    objects = scene_objects(scene)
    assert [o.label for o in objects[:2]] == [scene.subject.name, scene.object.name]
    assert len(objects) == 2 + len(scene.distractors)
    x0, y0, x1, y1 = scene.subject.box
    assert objects[0].box == (x0 / 80, y0 / 60, x1 / 80, y1 / 60)
    assert all(o.label in VOCABULARY for o in objects) and len(VOCABULARY) == 72 == len(set(VOCABULARY))


def test_true_pair_rank_needs_both_names_boxes_and_roles():
    from vsd.propose.metrics import pair_recall, true_pair_rank
    from vsd.propose.pairs import ProposedPair

    subject = TrueObject("red circle", (0.1, 0.1, 0.3, 0.3))
    object_ = TrueObject("blue square", (0.4, 0.1, 0.8, 0.5))
    s = Detection((0.1, 0.1, 0.3, 0.31), "red circle", 0.9)
    o = Detection((0.41, 0.1, 0.8, 0.5), "blue square", 0.8)
    misnamed = Detection(o.box, "blue diamond", 0.8)
    elsewhere = Detection((0.1, 0.6, 0.3, 0.9), "blue square", 0.8)
    pairs = [
        ProposedPair(o, s, 0.9),  # roles swapped
        ProposedPair(s, misnamed, 0.8),  # wrong name
        ProposedPair(s, elsewhere, 0.7),  # right name, wrong place
        ProposedPair(s, o, 0.6),  # the true pair, 4th
    ]
    assert true_pair_rank(pairs, subject, object_) == 4
    assert true_pair_rank(pairs[:3], subject, object_) is None
    assert pair_recall([1, 4, None, 2], (1, 2, 4)) == {"@1": 0.25, "@2": 0.5, "@4": 0.75}
    assert pair_recall([], (4,)) == {"@4": 0.0}
