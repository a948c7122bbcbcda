"""Object proposals for raw images: detectors, depth, pair selection.

Images without given pairs (a raw corpus) get their objects found here, so the system's core
output — subject, object, their boxes, the relation — exists for them too. The propose stage
(`vsd.annotate.stages.propose`) builds one `Proposer` per actor and calls it per batch::

    from vsd.propose import ProposeConfig, Proposer
    proposer = Proposer(cfg)                         # loads the detector (+ depth model)
    for proposal in proposer.propose(pil_images):    # one per image, in order
        rows = [pair.to_row() for pair in proposal.pairs]   # subject/object names, boxes, scores

Modules: `config` (ProposeConfig), `detectors` / `zero_shot` (backends), `depth`, `pairs`,
`metrics` (recall/precision at IoU 0.5), `tiny_models` (offline checkpoints for tests and benches;
the demo's own detector and the synthetic scenes' ground truth live in `vsd.demo`).
Importing this package does not import torch.
"""

from __future__ import annotations

from vsd.propose.config import PairConfig, ProposeConfig
from vsd.propose.detections import Detection
from vsd.propose.metrics import DetectionMetrics, evaluate_detections
from vsd.propose.pairs import BOX_SOURCE, ProposedPair, select_pairs
from vsd.propose.proposer import ImageProposal, Proposer

__all__ = [
    "BOX_SOURCE",
    "Detection",
    "DetectionMetrics",
    "ImageProposal",
    "PairConfig",
    "ProposeConfig",
    "ProposedPair",
    "Proposer",
    "evaluate_detections",
    "select_pairs",
]
