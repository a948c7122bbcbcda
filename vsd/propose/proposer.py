"""`Proposer`: detector + optional depth + pair selection for a batch of images.

This is what the propose stage holds once per actor (loading models is the expensive part) and
calls per batch: images without given pairs in, per image its detections and the pairs to
describe out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from vsd.propose.config import ProposeConfig
from vsd.propose.detections import Detection
from vsd.propose.pairs import ProposedPair, select_pairs


@dataclass(frozen=True)
class ImageProposal:
    detections: list[Detection]
    pairs: list[ProposedPair]
    depth_kind: str | None = None  # relative (larger = nearer) | metric (metres) | None: no depth
    meta: dict = field(default_factory=dict)


class Proposer:
    def __init__(self, cfg: ProposeConfig, detector=None, depth=None):
        """``detector`` / ``depth``: already built backends (tests, or an actor sharing them);
        by default they are loaded from ``cfg`` (depth only when ``cfg.depth`` is on)."""
        from vsd.propose.load import load_detector

        self.cfg = cfg
        self.detector = detector if detector is not None else load_detector(cfg)
        if depth is None and cfg.depth:
            from vsd.propose.depth import DepthEstimator

            depth = DepthEstimator.from_config(cfg)
        self.depth = depth

    def propose(self, images: Sequence) -> list[ImageProposal]:
        """One `ImageProposal` per PIL image, in order; deterministic for the same images."""
        detections = self.detector.detect(images)
        kind = None
        if self.depth is not None:
            detections = self.depth.annotate(images, detections)
            kind = self.depth.kind
        return [ImageProposal(dets, select_pairs(dets, self.cfg.pairs), kind) for dets in detections]
