"""``make_refiner(cfg)``: the refiner a config asks for; model backends import torch/sglang lazily."""

from __future__ import annotations

from vsd.refine.base import OffRefiner, Refiner
from vsd.refine.config import RefineConfig
from vsd.refine.rules import RulesRefiner


def make_refiner(cfg: RefineConfig) -> Refiner:
    if cfg.mode == "off":
        return OffRefiner()
    if cfg.mode == "rules":
        return RulesRefiner()
    if cfg.mode == "hf":
        from vsd.refine.llm import HFRefiner

        return HFRefiner(cfg)
    if cfg.mode == "sglang":
        from vsd.refine.sglang import SGLangRefiner

        return SGLangRefiner(cfg)
    raise ValueError(f"refine.mode: unknown mode {cfg.mode!r}")
