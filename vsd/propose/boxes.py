"""Box arithmetic on normalised ``[x0, y0, x1, y1]`` boxes (0..1, y down): IoU, gaps, NMS.

Plain Python on purpose: an image has tens of detections, and pair selection, NMS and the
detection metrics must give the same answer on every machine (no float-order surprises from
vectorised kernels), so they are exact, ordered loops.
"""

from __future__ import annotations

from collections.abc import Sequence

Box = tuple[float, float, float, float]


def area(b: Sequence[float]) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def intersection(a: Sequence[float], b: Sequence[float]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    inter = intersection(a, b)
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def gap(a: Sequence[float], b: Sequence[float]) -> float:
    """Euclidean distance between the two boxes' closest points (0 when they touch or overlap)."""
    dx = max(0.0, max(a[0], b[0]) - min(a[2], b[2]))
    dy = max(0.0, max(a[1], b[1]) - min(a[3], b[3]))
    return (dx * dx + dy * dy) ** 0.5


def clip(box: Sequence[float]) -> Box:
    """Clamp to the image (0..1); detectors may reach a little past the border."""
    x0, y0, x1, y1 = (min(1.0, max(0.0, float(v))) for v in box)
    return (x0, y0, x1, y1)


def cxcywh_to_xyxy(b: Sequence[float]) -> Box:
    cx, cy, w, h = b
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def xyxy_to_cxcywh(b: Sequence[float]) -> Box:
    x0, y0, x1, y1 = b
    return ((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0)


def nms(
    boxes: Sequence[Sequence[float]],
    scores: Sequence[float],
    iou_threshold: float,
    labels: Sequence[str] | None = None,
) -> list[int]:
    """Indices kept by greedy non-maximum suppression, best first.

    Order is by score, then by box coordinates, then by index, so equal scores never depend on the
    input order's accidents. With ``labels`` only boxes of the same label suppress each other.
    """
    order = sorted(range(len(boxes)), key=lambda i: (-scores[i], tuple(boxes[i]), i))
    kept: list[int] = []
    for i in order:
        if all(
            (labels is not None and labels[i] != labels[k]) or iou(boxes[i], boxes[k]) <= iou_threshold
            for k in kept
        ):
            kept.append(i)
    return kept
