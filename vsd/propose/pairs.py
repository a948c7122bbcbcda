"""Deterministic pair selection: which of an image's detections to describe, and in which role.

A pair's score (0..1) is a weighted mean of three terms, each in 0..1:

* confidence — ``sqrt(score_a * score_b)``: a relation between two doubtful objects is doubtful;
* size — the smaller box's side (``sqrt`` of its area share) over ``size_reference``, capped at 1:
  specks make poor subjects and are where detectors err most;
* proximity — ``1 - gap / proximity_reference`` (floored at 0), ``gap`` the distance between the
  boxes' closest points: near objects have the relations worth saying (on, in, next to, behind).

Pairs overlapping more than ``max_pair_iou`` are skipped (one object found twice). With
``orientation = smaller_subject`` the smaller box is the subject (the cup on the table, not the
table under the cup). Everything is ordered by rounded values with index tie-breaks over the
detections' canonical order, so the same detections always give the same pairs, in the same order
— and the same row ids downstream.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vsd.propose import boxes as B
from vsd.propose.config import PairConfig
from vsd.propose.detections import DIGITS, Detection, sort_key

BOX_SOURCE = "detected"


@dataclass(frozen=True)
class ProposedPair:
    subject: Detection
    object: Detection
    score: float
    box_source: str = BOX_SOURCE

    def to_row(self) -> dict:
        """The pair's columns of an annotation row (names, normalised boxes, provenance)."""
        s, o = self.subject, self.object
        return {
            "subject": s.label,
            "object": o.label,
            "subject_box": list(s.box),
            "object_box": list(o.box),
            "box_source": self.box_source,
            "subject_score": s.score,
            "object_score": o.score,
            "subject_depth": s.depth,
            "object_depth": o.depth,
            "pair_score": self.score,
        }


def pair_terms(a: Detection, b: Detection, cfg: PairConfig) -> tuple[float, float, float]:
    """(confidence, size, proximity) of the pair, each in 0..1."""
    confidence = (max(a.score, 0.0) * max(b.score, 0.0)) ** 0.5
    size = min(1.0, min(B.area(a.box), B.area(b.box)) ** 0.5 / cfg.size_reference)
    proximity = max(0.0, 1.0 - B.gap(a.box, b.box) / cfg.proximity_reference)
    return confidence, size, proximity


def pair_score(a: Detection, b: Detection, cfg: PairConfig) -> float:
    """The weighted mean of `pair_terms` (0 when every weight is 0), rounded for stable ordering."""
    weights = (cfg.weight_score, cfg.weight_size, cfg.weight_proximity)
    total = sum(weights)
    if total <= 0:
        return 0.0
    return round(sum(w * t for w, t in zip(weights, pair_terms(a, b, cfg))) / total, DIGITS)


def select_pairs(detections: Sequence[Detection], cfg: PairConfig) -> list[ProposedPair]:
    """At most ``cfg.max_pairs`` pairs, best first; independent of the input order."""
    dets = [d for d in sorted(detections, key=sort_key) if d.score >= cfg.min_score]
    ranked: list[tuple[tuple, ProposedPair]] = []
    for i in range(len(dets)):
        for j in range(i + 1, len(dets)):
            a, b = dets[i], dets[j]
            if cfg.distinct_labels and a.label == b.label:
                continue
            if B.iou(a.box, b.box) > cfg.max_pair_iou:
                continue
            score = pair_score(a, b, cfg)
            # smaller box first as subject; equal areas keep the canonical (better-scored) one first
            first, second = (j, i) if B.area(b.box) < B.area(a.box) else (i, j)
            orders = (
                [(first, second)]
                if cfg.orientation == "smaller_subject"
                else [(first, second), (second, first)]
            )
            for rank, (s, o) in enumerate(orders):
                ranked.append(((-score, min(i, j), max(i, j), rank), ProposedPair(dets[s], dets[o], score)))
    ranked.sort(key=lambda item: item[0])
    return [pair for _, pair in ranked[: cfg.max_pairs]]
