"""Refine stage: a stateful Ray Data UDF (one refiner per actor) wrapping ``vsd.refine``.

Task 2's sentence and task 3's sentences are refined as two items (the rules refiner may drop a
repeated sentence, so one flat list could not be split back by position). The guardrail inside
the refiner decides what is kept; here the outcome is only recorded: ``refined_description(s)``,
``refine_status`` (both items refined -> ``refined``, both kept/skipped -> that, else ``partial``)
and each reason as a flag ``refine:task<N>: <reason>``, so every kept original says why, per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from vsd.annotate.items import from_table, ok_pairs, to_table
from vsd.annotate.stages.base import RunContext, Resources, close_quietly, enabled_always, map_stage, resources
from vsd.refine.base import RefineItem, RefineOutcome
from vsd.refine.config import RefineConfig
from vsd.refine.factory import make_refiner

if TYPE_CHECKING:
    from vsd.annotate.config import AnnotateConfig

NAME = "refine"
HELP = "rewrite descriptions (rules | hf | sglang | off) under a guardrail"
enabled = enabled_always
MODEL_FREE = ("rules", "off")  # no model to keep loaded: plain tasks instead of actors


@dataclass
class RefineStageConfig(RefineConfig):
    resources: Resources = resources("rules/off: light CPU tasks; hf/sglang: refiner actors (concurrency = model "
                                     "copies, num_gpus per actor); batch_size = images per call (default 16)",
                                     num_cpus=0.25, concurrency=1)


Config = RefineStageConfig


def add(ds, cfg: AnnotateConfig, ctx: RunContext):
    stage = cfg.stages.refine
    if stage.mode in MODEL_FREE:
        plain = Resources(num_cpus=stage.resources.num_cpus, batch_size=stage.resources.batch_size)
        return map_stage(ds, refine_batch, plain, default_batch=16, kwargs={"refine": stage})
    return map_stage(ds, RefineStageUDF, stage.resources, default_batch=16, actor=True, kwargs={"refine": stage})


def combined_status(outcomes: list[RefineOutcome]) -> str:
    statuses = {o.status for o in outcomes}
    return statuses.pop() if len(statuses) == 1 else "partial"


class RefineStageUDF:
    """``map_batches`` callable class: the refiner (maybe an LLM) loads once per actor."""

    def __init__(self, refine: RefineConfig):
        self.refiner = make_refiner(refine)

    def __call__(self, batch: pa.Table) -> pa.Table:
        items = from_table(batch)
        work: list[tuple[dict, str, RefineItem]] = []
        for item in items:
            for pair in ok_pairs(item):
                subject, object_ = pair["subject"] or "", pair["object"] or ""
                if pair["description"] is not None:
                    work.append((pair, "task2", RefineItem(subject, object_, pair["relation"], [pair["description"]])))
                if pair["descriptions"]:
                    work.append((pair, "task3", RefineItem(subject, object_, pair["relation"], list(pair["descriptions"]))))
        outcomes = self.refiner.refine([w[2] for w in work]) if work else []
        if len(outcomes) != len(work):
            raise RuntimeError(f"refiner returned {len(outcomes)} outcomes for {len(work)} items")
        per_pair: dict[int, list[RefineOutcome]] = {}
        for (pair, task, _), outcome in zip(work, outcomes):
            if task == "task2":
                pair["refined_description"] = outcome.sentences[0] if outcome.sentences else None
            else:
                pair["refined_descriptions"] = list(outcome.sentences)
            pair["flags"] = list(pair["flags"] or []) + [f"refine:{task}: {' '.join(r.split())}" for r in outcome.reasons]
            per_pair.setdefault(id(pair), []).append(outcome)
            pair["refine_status"] = combined_status(per_pair[id(pair)])
        return to_table(items)

    def __del__(self):
        close_quietly(self, "refiner")


def refine_batch(batch: pa.Table, *, refine: RefineConfig) -> pa.Table:
    """Model-free modes as a plain task: no actor to start, and nothing to keep loaded."""
    return RefineStageUDF(refine)(batch)
