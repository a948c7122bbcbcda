"""Monocular depth per detected box (``AutoModelForDepthEstimation``, e.g. Depth Anything).

Each box gets the median of the depth map inside it: robust to the background pixels a box always
holds at its corners and to thin occluders. The map is read at the model's own resolution (the
box mapped onto it), not upsampled to the image, which is the same region at a fraction of the
memory for large photos.

What the numbers mean depends on the model, and `DepthEstimator.kind` says which:
``relative`` models (Depth Anything's default, DPT) predict relative inverse depth — larger is
nearer; ``metric`` ones (Depth Anything metric checkpoints, ZoeDepth, Depth Pro) predict metres —
larger is farther. Geometry must read `nearer_is_larger` before comparing two boxes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from vsd.errors import VSDError
from vsd.propose import runtime
from vsd.propose.config import ProposeConfig
from vsd.propose.detections import DIGITS, Detection
from vsd.relations.depth import METRIC, RELATIVE, nearer_is_larger

METRIC_TYPES = ("zoedepth", "depth_pro")


def depth_kind(config) -> str:
    """``metric`` (metres, larger = farther) or ``relative`` (inverse depth, larger = nearer)."""
    if getattr(config, "depth_estimation_type", None) == "metric" or config.model_type in METRIC_TYPES:
        return METRIC
    return RELATIVE


def box_median(depth_map, box: Sequence[float]) -> float:
    """Median of ``depth_map`` (a 2-D tensor covering the whole image) inside the normalised box;
    at least one cell, so a tiny box still reads the cell it lies in."""
    h, w = depth_map.shape[-2:]
    x0, x1 = min(w - 1, math.floor(box[0] * w)), max(math.ceil(box[2] * w), 1)
    y0, y1 = min(h - 1, math.floor(box[1] * h)), max(math.ceil(box[3] * h), 1)
    region = depth_map[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)]
    return round(float(region.float().median()), DIGITS)


class DepthEstimator:
    def __init__(self, model, processor, batch_size: int = 8, device: str = "cpu"):
        if getattr(processor, "do_pad", False):
            raise VSDError(
                f"propose.depth_model: {type(processor).__name__} pads images; only processors that "
                "resize the whole image (Depth Anything, DPT) are supported"
            )
        self.model, self.processor, self.batch_size, self.device = model, processor, batch_size, device
        self.dtype = next(model.parameters()).dtype
        self.kind = depth_kind(model.config)

    @property
    def nearer_is_larger(self) -> bool:
        return nearer_is_larger(self.kind)

    @classmethod
    def from_config(cls, cfg: ProposeConfig) -> DepthEstimator:
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        device = runtime.resolve_device(cfg.device)
        dtype = runtime.resolve_dtype(cfg.dtype, device)
        model, path = runtime.load_pretrained(
            AutoModelForDepthEstimation, cfg.depth_model, "propose.depth_model", device, dtype
        )
        return cls(model, AutoImageProcessor.from_pretrained(path), cfg.batch_size, device)

    def depth_maps(self, images: Sequence) -> list:
        """One float32 CPU tensor (model resolution, covering the whole image) per image, in order."""
        import torch

        images = runtime.rgb(images)
        maps: list = [None] * len(images)
        with torch.inference_mode():
            for group in runtime.size_groups(images, self.batch_size):
                inputs = self.processor(images=[images[i] for i in group], return_tensors="pt")
                pred = self.model(**runtime.to_model(inputs, self.device, self.dtype)).predicted_depth
                for i, m in zip(group, pred.float().cpu()):
                    maps[i] = m
        return maps

    def annotate(self, images: Sequence, detections: Sequence[Sequence[Detection]]) -> list[list[Detection]]:
        """``detections`` with each box's median depth filled in (images without detections skip
        the depth model)."""
        todo = [i for i, dets in enumerate(detections) if dets]
        maps = dict(zip(todo, self.depth_maps([images[i] for i in todo]))) if todo else {}
        return [
            [d.with_depth(box_median(maps[i], d.box)) for d in dets] if dets else []
            for i, dets in enumerate(detections)
        ]
