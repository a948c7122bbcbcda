"""Refinement: an LLM (or offline rules) rewrites descriptions; a guardrail keeps the facts.

from vsd.refine import RefineConfig, RefineItem, make_refiner
with make_refiner(RefineConfig(mode="rules")) as refiner:
    [outcome] = refiner.refine([RefineItem("cup", "table", "on", ["the cup is on  the table"])])
outcome.sentences, outcome.status, outcome.reasons
# (['The cup is on the table.'], 'refined', [])
"""

from vsd.refine.base import STATUSES, RefineItem, RefineOutcome, Refiner
from vsd.refine.config import RefineConfig
from vsd.refine.factory import make_refiner
from vsd.refine.guardrail import check_rewrite

__all__ = [
    "STATUSES",
    "RefineConfig",
    "RefineItem",
    "RefineOutcome",
    "Refiner",
    "check_rewrite",
    "make_refiner",
]
