"""What per-box depth adds to the 2-D geometry: which of two boxes is clearly nearer.

A monocular depth model gives each detected box one number (the median depth inside it, see
`vsd.propose.depth`). What the number means depends on the model: ``relative`` models (Depth
Anything, DPT) predict inverse depth, larger = nearer; ``metric`` ones (ZoeDepth, Depth Pro)
predict metres, larger = farther. `BoxDepths` carries both boxes' values with that direction, and
`BoxDepths.nearer` says which box is in front only when the gap is clear: a relative difference of
at least `DEPTH_GAP` of the larger magnitude (median depths of two boxes on one table differ by a
few percent; a person a few metres before a wall, by far more). Depth models are noisy, so an
unclear gap decides nothing.

`vsd.relations.geometry` consults this for ``behind`` / ``in front of`` (and to tell ``in`` from
being in front of a larger thing, ``on`` from merely touching); without depths it is unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

#: The depth kinds a depth model reports (`vsd.propose.depth.depth_kind`) and the ``depth_kind`` column.
RELATIVE, METRIC = "relative", "metric"
DEPTH_KINDS = (RELATIVE, METRIC)
#: Relative depth difference (of the larger magnitude) from which one box is clearly nearer.
DEPTH_GAP = 0.1
#: Below this relative difference two boxes count as at the same depth (resting contact is possible).
SAME_DEPTH = 0.05
_FLOOR = 1e-6  # both depths ~0: no scale to compare against, nothing is clear


def nearer_is_larger(kind: str) -> bool:
    """True for relative (inverse) depth, False for metric depth."""
    if kind not in DEPTH_KINDS:
        raise ValueError(f"unknown depth kind {kind!r}; expected one of {', '.join(DEPTH_KINDS)}")
    return kind == RELATIVE


@dataclass(frozen=True)
class BoxDepths:
    """The subject's and the object's box depth, and which way the numbers run."""

    subject: float
    object: float
    nearer_is_larger: bool = True

    @classmethod
    def of(cls, subject: float | None, object_: float | None, kind: str | None) -> BoxDepths | None:
        """Depths from the annotation columns, or None when either is missing or not finite."""
        if subject is None or object_ is None or kind is None:
            return None
        s, o = float(subject), float(object_)
        if not (math.isfinite(s) and math.isfinite(o)):
            return None
        return cls(s, o, nearer_is_larger(kind))

    @classmethod
    def from_pair(cls, pair: Mapping) -> BoxDepths | None:
        """From a pair's ``subject_depth`` / ``object_depth`` / ``depth_kind`` (None without depth)."""
        return cls.of(pair.get("subject_depth"), pair.get("object_depth"), pair.get("depth_kind"))

    def _gap(self) -> float:
        """How much nearer the subject is, relative to the larger magnitude (> 0: subject nearer)."""
        scale = max(abs(self.subject), abs(self.object))
        if scale < _FLOOR:
            return 0.0
        diff = self.subject - self.object
        return (diff if self.nearer_is_larger else -diff) / scale

    def nearer(self) -> str | None:
        """``subject`` or ``object``: the one clearly in front; None when the gap is not clear."""
        gap = self._gap()
        if gap >= DEPTH_GAP:
            return "subject"
        if gap <= -DEPTH_GAP:
            return "object"
        return None

    def same_depth(self) -> bool:
        """The two boxes are at about the same depth (resting contact is possible)."""
        return abs(self._gap()) < SAME_DEPTH


def depth_relation(depths: BoxDepths) -> str | None:
    """``in front of`` / ``behind`` from subject to object when the depth gap is clear, else None."""
    nearer = depths.nearer()
    if nearer is None:
        return None
    return "in front of" if nearer == "subject" else "behind"
