"""``make_refiner(cfg)``: the refiner a config asks for: rules, off, or a backend's text entry point
(``vsd/backends``), whose runtime (torch, sglang) is imported only now."""

from __future__ import annotations

from vsd.backends import entry_point
from vsd.refine.base import OffRefiner, Refiner
from vsd.refine.config import RefineConfig
from vsd.refine.rules import RulesRefiner


def make_refiner(cfg: RefineConfig) -> Refiner:
    if cfg.mode == "off":
        return OffRefiner()
    if cfg.mode == "rules":
        return RulesRefiner()
    return entry_point(cfg.mode, "refiner", "refine.mode")(cfg)
