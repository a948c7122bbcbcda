"""Detection recall and precision at an IoU threshold, against known objects.

The raw-corpus figures of the demo and the tiny detector's acceptance test both use this: a
detection is a true positive when it overlaps a not-yet-matched true object with IoU >= 0.5 and
(by default) carries the same label. Matching is greedy in the detections' canonical order (best
score first), as in the PASCAL VOC protocol, so it is deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from vsd.propose.boxes import iou
from vsd.propose.detections import Detection, sort_key


@dataclass(frozen=True)
class DetectionMetrics:
    images: int
    truths: int
    detections: int
    true_positives: int
    recall: float
    precision: float
    box_recall: float  # label ignored: did a box land on every object?
    box_precision: float  # label ignored: is every box on some object?

    def to_dict(self) -> dict:
        return asdict(self)


def match(
    detections: Sequence[Detection], truths: Sequence, iou_threshold: float = 0.5, use_labels: bool = True
) -> list[int | None]:
    """For each detection (in the given order), the index of the true object it matches, or None.

    ``truths``: objects with ``.label`` and ``.box`` (normalised xyxy). Each true object matches at
    most once; among candidates the highest IoU wins, ties to the lower index.
    """
    taken: set[int] = set()
    out: list[int | None] = []
    for det in detections:
        best, best_iou = None, iou_threshold
        for j, truth in enumerate(truths):
            if j in taken or (use_labels and truth.label != det.label):
                continue
            v = iou(det.box, truth.box)
            if v >= best_iou and (best is None or v > best_iou):
                best, best_iou = j, v
        if best is not None:
            taken.add(best)
        out.append(best)
    return out


def _ratio(num: int, den: int) -> float:
    return round(num / den, 4) if den else 0.0


def evaluate_detections(
    per_image: Sequence[tuple[Sequence[Detection], Sequence]], iou_threshold: float = 0.5
) -> DetectionMetrics:
    """Recall and precision over images given as ``(detections, true objects)`` pairs.

    An image with no detections and no objects counts for nothing; precision of zero detections is
    reported as 0.0 (nothing found is never a perfect score).
    """
    n_truth = n_det = tp = box_tp = 0
    for detections, truths in per_image:
        ordered = sorted(detections, key=sort_key)
        matched = match(ordered, truths, iou_threshold)
        boxed = match(ordered, truths, iou_threshold, use_labels=False)
        n_truth += len(truths)
        n_det += len(ordered)
        tp += sum(m is not None for m in matched)
        box_tp += sum(m is not None for m in boxed)  # one-to-one: matched boxes = found objects
    return DetectionMetrics(
        images=len(per_image),
        truths=n_truth,
        detections=n_det,
        true_positives=tp,
        recall=_ratio(tp, n_truth),
        precision=_ratio(tp, n_det),
        box_recall=_ratio(box_tp, n_truth),
        box_precision=_ratio(box_tp, n_det),
    )


def true_pair_rank(pairs: Sequence, subject, object_, iou_threshold: float = 0.5) -> int | None:
    """1-based rank of the first proposed pair whose subject matches ``subject`` and object matches
    ``object_`` (right names, IoU >= ``iou_threshold``, same roles), or None: where the pair the
    scene is about stands among what the propose stage hands to the model."""
    for rank, pair in enumerate(pairs, 1):
        s, o = pair.subject, pair.object
        if (
            s.label == subject.label
            and o.label == object_.label
            and iou(s.box, subject.box) >= iou_threshold
            and iou(o.box, object_.box) >= iou_threshold
        ):
            return rank
    return None


def pair_recall(ranks: Sequence[int | None], ks: Sequence[int] = (1, 2, 4)) -> dict[str, float]:
    """Share of scenes whose true pair is among the top K proposals, per K (``{"@1": ..}``), from
    `true_pair_rank` of each scene. Why several K: with both roles proposed, K=2 is the best
    unordered pair and K=4 the two best — the demo annotates 4."""
    n = len(ranks)
    return {f"@{k}": _ratio(sum(r is not None and r <= k for r in ranks), n) for k in ks}
