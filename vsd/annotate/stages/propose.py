"""Propose stage (detector actors, off by default): objects and pairs for images given without pairs.

An image without given pairs would otherwise get one scene-level prompt (``pair_index`` -1) the
model was never trained on. With ``stages.propose.enabled`` each such image is decoded (by
`vsd.annotate.image_decode.decode`, as preprocess does, so the same guards apply), an
open-vocabulary detector (Grounding DINO, OWLv2; or a fixed-label one) finds its objects,
optionally a depth model measures each box, and `vsd.propose.select_pairs` picks the pairs to
describe. The scene pair is replaced by them,
``pair_index`` 0..K-1 in selection order, ``box_source`` ``detected``: the same image gives the same
detections, the same pairs and so the same row ids on a rerun (exactly once holds across reruns).

Left as they are: images with given pairs, images already failed, and images that do not decode
(preprocess turns them into their error row with its reason). An image where nothing (or no pair)
is found keeps the scene-level task, flagged ``no_pair_found:propose``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from vsd.annotate.image_decode import decode
from vsd.annotate.items import SCENE, from_table, new_pair, to_table
from vsd.annotate.stages.base import Resources, RunContext, map_stage, resources
from vsd.config import describe
from vsd.propose.config import ProposeConfig

if TYPE_CHECKING:
    from vsd.annotate.config import AnnotateConfig
    from vsd.propose import ImageProposal

NAME = "propose"
HELP = (
    "find objects in images given without pairs and choose the pairs to describe (detector actors; "
    "off unless enabled)"
)
NO_PAIR = "no_pair_found:propose"


@dataclass
class ProposeStageConfig(ProposeConfig):
    enabled: bool = describe(
        "enabled",
        False,
        help="run the stage: images without given pairs get detected pairs instead of the "
        "scene-level task (needs a detector checkpoint, see model)",
    )
    decode_size: int = describe(
        "decode_size",
        1024,
        ge=8,
        help="JPEGs are decoded reduced towards this side (DCT scaling, never below it); "
        "detectors resize to their own input anyway (Grounding DINO: 800 px)",
    )
    resources: Resources = resources(
        "detector actors: concurrency = model copies, num_gpus per actor (0 = CPU, "
        "num_cpus = its torch threads); batch_size = images per call (default: "
        "batch_size above)",
        num_cpus=1.0,
        concurrency=1,
    )


Config = ProposeStageConfig


def enabled(cfg: AnnotateConfig) -> bool:
    return cfg.stages.propose.enabled


def add(ds, cfg: AnnotateConfig, ctx: RunContext):
    stage = cfg.stages.propose
    return map_stage(
        ds,
        ProposeStageUDF,
        stage.resources,
        default_batch=stage.batch_size,
        actor=True,
        kwargs={"propose": stage, "max_pixels": cfg.stages.preprocess.max_pixels},
    )


def wants_proposal(item: dict) -> bool:
    """An image read fine whose only pair is the scene-level one (the input gave no pairs)."""
    pairs = item["pairs"] or []
    return (
        item["status"] == "ok"
        and item["data"] is not None
        and len(pairs) == 1
        and pairs[0]["pair_index"] == SCENE
        and pairs[0]["status"] == "ok"
    )


def apply_proposal(item: dict, proposal: ImageProposal) -> dict:
    """Replace the scene pair with the proposal's pairs (0..K-1), or flag it when there are none."""
    if not proposal.pairs:
        scene = item["pairs"][0]
        scene["flags"] = list(scene["flags"] or []) + [NO_PAIR]
        return item
    item["pairs"] = [
        new_pair(k, **pair.to_row(), depth_kind=proposal.depth_kind) for k, pair in enumerate(proposal.pairs)
    ]
    return item


class ProposeStageUDF:
    """``map_batches`` callable class: the detector (and depth model) load once per actor."""

    def __init__(self, propose: ProposeStageConfig, max_pixels: int):
        from vsd.propose import Proposer

        _torch_threads(propose)
        self.cfg, self.max_pixels = propose, max_pixels
        self.proposer = Proposer(propose)

    def __call__(self, batch: pa.Table) -> pa.Table:
        items = from_table(batch)
        todo, images = [], []
        for item in items:
            if not wants_proposal(item):
                continue
            try:
                image = decode(item["data"], self.max_pixels, self.cfg.decode_size)
            except Exception:  # noqa: BLE001 - BadImage or a decoder bug: preprocess decodes it
                continue  # again and writes the error row with its reason
            todo.append(item)
            images.append(image)
        if images:
            for item, proposal in zip(todo, self.proposer.propose(images)):
                apply_proposal(item, proposal)
        return to_table(items)


def _torch_threads(cfg: ProposeStageConfig) -> None:
    """On CPU, torch gets the actor's CPUs (its default, every core of the node, would oversubscribe
    a node shared with the other stages)."""
    import torch

    from vsd.propose.runtime import resolve_device

    if resolve_device(cfg.device) == "cpu":
        torch.set_num_threads(max(1, int(cfg.resources.num_cpus)))
