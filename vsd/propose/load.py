"""``load_detector(cfg)``: the configured detection backend, its checkpoint loaded.

Apart from both backends' modules (`detectors`, `zero_shot`) so that neither imports the other.
"""

from __future__ import annotations

from vsd.propose import runtime
from vsd.propose.config import ProposeConfig
from vsd.propose.detectors import ClosedVocabularyDetector, Detector
from vsd.propose.zero_shot import zero_shot_detector


def load_detector(cfg: ProposeConfig) -> Detector:
    """The configured backend with its checkpoint loaded on the configured device and dtype."""
    from transformers import (
        AutoImageProcessor,
        AutoModelForObjectDetection,
        AutoModelForZeroShotObjectDetection,
        AutoProcessor,
    )

    device = runtime.resolve_device(cfg.device)
    dtype = runtime.resolve_dtype(cfg.dtype, device)
    if cfg.backend == "closed_vocabulary":
        model, path = runtime.load_pretrained(
            AutoModelForObjectDetection, cfg.model, "propose.model", device, dtype
        )
        return ClosedVocabularyDetector(model, AutoImageProcessor.from_pretrained(path), cfg, device)
    model, path = runtime.load_pretrained(
        AutoModelForZeroShotObjectDetection, cfg.model, "propose.model", device, dtype
    )
    return zero_shot_detector(model, AutoProcessor.from_pretrained(path), cfg, device)
