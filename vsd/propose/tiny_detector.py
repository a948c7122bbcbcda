"""The demo's tiny detector: OWL-ViT at a size that trains on one CPU core, prompted with the
synthetic generator's names.

Why OWL-ViT: it predicts one box per image patch (anchored at the patch by a fixed box bias) and
scores it against text queries, so it trains with *dense* per-patch targets — every patch near an
object learns that object — instead of DETR's set matching, which needs hundreds of epochs (an
RT-DETR of the same size had found nothing after 200 steps here). And the demo then
runs the same open-vocabulary path as Grounding DINO / OWLv2 in production: the detector is
prompted with `synthetic_truth.VOCABULARY` and each label is directly the object's name in the
task prompts. (OWL-ViT rather than OWLv2: the same heads less objectness, and its PIL image
processor needs no scipy.)

Sizes: 64x64 input (the demo's scenes, no resize), 4-px patches (16x16 = 256 tokens, so the
generator's smallest 5-px shapes still cover a patch), a 4-layer width-64 ViT, a 1-layer text tower
over a vocabulary made from those names. `scripts/train_tiny_detector.py` trains it;
``vsd/assets/tiny-detector`` is the committed result (RECIPE.md has the numbers).
"""

from __future__ import annotations

import json
from pathlib import Path

ASSET = Path(__file__).resolve().parents[1] / "assets" / "tiny-detector"
META = "detector_meta.json"
SIZES = {
    "image_size": 64,
    "patch_size": 4,
    "hidden": 64,
    "layers": 4,
    "heads": 4,
    "text_hidden": 64,
    "text_layers": 1,
}


PRIOR = 0.01  # initial probability of "this patch is that object" (focal-loss initialisation)


def build_tiny_detector(seed: int = 0, **sizes):
    """A freshly initialised (seeded) tiny OWL-ViT and its processor for the synthetic vocabulary.

    Two heads start from priors instead of OWL's default init, under which a random patch scores
    ~1 for every name and the box head saturates its sigmoid (boxes of 0 or 1, no gradient): the
    class head at a low prior (RetinaNet's focal-loss initialisation) and the box head's last layer
    at zero, so every patch first predicts its anchor box (OWL's box bias) and learns from there.
    """
    import math

    import torch

    from vsd.propose.synthetic_truth import VOCABULARY
    from vsd.propose.tiny_models import owl

    model, processor = owl(VOCABULARY, version=1, seed=seed, **{**SIZES, **sizes})
    bias = -math.log((1 - PRIOR) / PRIOR)
    with torch.no_grad():
        head = model.class_head
        head.logit_shift.weight.zero_()
        head.logit_shift.bias.fill_(bias)
        head.logit_scale.weight.zero_()
        head.logit_scale.bias.zero_()
        model.box_head.dense2.weight.zero_()
        model.box_head.dense2.bias.zero_()
    return model, processor


def detector_meta(path: str | Path = ASSET) -> dict:
    """The training record written next to the weights (threshold chosen on validation scenes)."""
    return json.loads((Path(path) / META).read_text())


def demo_propose_config(path: str | Path = ASSET, **overrides):
    """The `ProposeConfig` the demo uses with the committed detector: open vocabulary over the
    generator's names, the score threshold and NMS IoU picked on validation scenes."""
    from vsd.config import from_dict
    from vsd.propose.config import ProposeConfig
    from vsd.propose.synthetic_truth import VOCABULARY

    meta = detector_meta(path)
    settings = {
        "backend": "open_vocabulary",
        "model": str(path),
        "vocabulary": list(VOCABULARY),
        "score_threshold": meta["score_threshold"],
        "nms_iou": meta["nms_iou"],
        "max_detections": 10,
        "device": "cpu",
        "dtype": "float32",
    }
    return from_dict(ProposeConfig, {**settings, **overrides})
