"""What a detector returns for one image, in the project's conventions.

A `Detection` is one object: its box (normalised ``[x0, y0, x1, y1]``), its label (the name that
goes into the task prompts: ``the {subject} is [BLANK] the {object}``), the detector's score and,
when a depth model ran, a robust depth statistic of the box. `finalize` is the one place where
raw candidates become the stable, filtered list every backend returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from vsd.propose import boxes as B

DIGITS = 6  # boxes and scores are rounded so a rerun (or another batch size) orders them the same


@dataclass(frozen=True)
class Detection:
    box: B.Box
    label: str
    score: float
    depth: float | None = None

    def with_depth(self, depth: float | None) -> Detection:
        return replace(self, depth=depth)

    def to_dict(self) -> dict:
        return {"box": list(self.box), "label": self.label, "score": self.score, "depth": self.depth}


def sort_key(d: Detection) -> tuple:
    """Best score first; ties by position, then label: the canonical order of an image's detections."""
    return (-d.score, d.box, d.label)


def finalize(
    boxes: Sequence[Sequence[float]],
    scores: Sequence[float],
    labels: Sequence[str],
    *,
    score_threshold: float,
    nms_iou: float,
    class_agnostic: bool,
    min_box_size: float,
    max_detections: int,
) -> list[Detection]:
    """Clip, round, threshold, drop slivers, NMS, cap: the detections of one image, canonical order.

    ``min_box_size`` is the smallest side as a fraction of the image side; ``nms_iou`` >= 1 turns
    NMS off.
    """
    cands = []
    for box, score, label in zip(boxes, scores, labels):
        score = round(float(score), DIGITS)
        if score < score_threshold:
            continue
        b = tuple(round(v, DIGITS) for v in B.clip(box))
        if b[2] - b[0] < min_box_size or b[3] - b[1] < min_box_size or B.area(b) <= 0:
            continue
        cands.append(Detection(b, str(label), score))
    if nms_iou < 1.0:
        keep = B.nms(
            [d.box for d in cands],
            [d.score for d in cands],
            nms_iou,
            None if class_agnostic else [d.label for d in cands],
        )
        cands = [cands[i] for i in keep]
    return sorted(cands, key=sort_key)[:max_detections]
