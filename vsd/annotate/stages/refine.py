"""Refine stage: a stateful Ray Data UDF (one refiner per actor) wrapping ``vsd.refine``.

Task 2's sentence and task 3's sentences are refined as two items (the rules refiner may drop a
repeated sentence, so one flat list could not be split back by position). The guardrail inside
the refiner decides what is kept; here the outcome is only recorded: ``refined_description(s)``,
``refine_status`` (both items refined -> ``refined``, both kept/skipped -> that, else ``partial``;
``filled`` whenever a published sentence was filled in by repair) and each reason as a flag
``refine:task<N>: <reason>``, so every kept original says why, per row. Who wrote each published
sentence goes to ``description_source`` / ``descriptions_source`` (`refinable_with_sources`,
`published_sources`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from vsd.annotate.engine_watch import start_watched
from vsd.annotate.items import from_table, ok_pairs, to_table
from vsd.annotate.repair import FILLED, MODEL, REFINED, truncated_slots
from vsd.annotate.stages.base import (
    Resources,
    RunContext,
    close_quietly,
    enabled_always,
    map_stage,
    resources,
)
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
    resources: Resources = resources(
        "rules/off: light CPU tasks; hf/sglang: refiner actors (concurrency = model "
        "copies, num_gpus per actor); batch_size = images per call (default 16)",
        num_cpus=0.25,
        concurrency=1,
    )


Config = RefineStageConfig


def add(ds, cfg: AnnotateConfig, ctx: RunContext):
    stage = cfg.stages.refine
    if stage.mode in MODEL_FREE:
        plain = Resources(num_cpus=stage.resources.num_cpus, batch_size=stage.resources.batch_size)
        return map_stage(ds, refine_batch, plain, default_batch=16, kwargs={"refine": stage})
    return map_stage(
        ds,
        WatchedRefineStageUDF,
        stage.resources,
        default_batch=16,
        actor=True,
        kwargs={"refine": stage, "run_id": ctx.run_id},
    )


def refinable(pair: dict) -> tuple[dict[str, list[str]], bool]:
    """What the refiner gets, and whether a cut-off sentence was left out: the repaired text where
    the generate stage repaired (complete and consistent by construction), else the model's own
    text less any sentence it cut off -- a truncated sentence is never polished into looking
    complete, and a pair that had one is never counted as wholly refined."""
    texts, left_out = refinable_with_sources(pair)
    return {task: [s for s, _ in pairs] for task, pairs in texts.items()}, left_out


def refinable_with_sources(pair: dict) -> tuple[dict[str, list[tuple[str, str]]], bool]:
    """`refinable`, each sentence with who wrote it (``repair.SOURCES``): the generate stage's
    record for repaired text, ``model`` for the model's own."""
    out: dict[str, list[tuple[str, str]]] = {}
    left_out = False
    if pair["refined_description"] is not None:
        out["task2"] = [(pair["refined_description"], pair["description_source"] or MODEL)]
    elif pair["description"] is not None and pair["pair_index"] >= 0:
        if truncated_slots(pair["flags"], 2):
            left_out = True
        else:
            out["task2"] = [(pair["description"], MODEL)]
    if pair["refined_descriptions"] is not None:
        sources = list(pair["descriptions_source"] or [])
        sources += [MODEL] * (len(pair["refined_descriptions"]) - len(sources))
        out["task3"] = [(s, src or MODEL) for s, src in zip(pair["refined_descriptions"], sources) if s]
    elif pair["descriptions"]:
        cut = truncated_slots(pair["flags"], 3)
        out["task3"] = [(s, MODEL) for i, s in enumerate(pair["descriptions"]) if i not in cut]
        left_out = left_out or bool(cut)
    return {task: sentences for task, sentences in out.items() if sentences}, left_out


def published_sources(given: list[tuple[str, str]], outcome: RefineOutcome) -> list[str]:
    """Who wrote each refined sentence: its input sentence's writer, and ``refined`` where the
    refiner changed a model sentence (a filled-in sentence stays filled in however it is polished)."""
    out = []
    for k, sentence in enumerate(outcome.sentences):
        original, source = given[outcome.origin(k)]
        out.append(REFINED if source == MODEL and sentence != original else source)
    return out


def combined_status(outcomes: list[RefineOutcome]) -> str:
    statuses = {o.status for o in outcomes}
    return statuses.pop() if len(statuses) == 1 else "partial"


class RefineStageUDF:
    """``map_batches`` callable class: the refiner (maybe an LLM) loads once per actor."""

    def __init__(self, refine: RefineConfig):
        self.refiner = make_refiner(refine)

    def __call__(self, batch: pa.Table) -> pa.Table:
        items = from_table(batch)
        work: list[tuple[dict, str, RefineItem, list[tuple[str, str]]]] = []
        partial: set[int] = set()  # pairs with a cut-off sentence left out: never wholly "refined"
        for item in items:
            for pair in ok_pairs(item):
                subject, object_ = pair["subject"] or "", pair["object"] or ""
                texts, left_out = refinable_with_sources(pair)
                if left_out:
                    partial.add(id(pair))
                    pair["flags"] = list(pair["flags"] or []) + [
                        "refine: a truncated sentence is not refined"
                    ]
                if not texts and (pair["description"] is not None or pair["descriptions"]):
                    pair["refine_status"] = "skipped"
                for task, given in texts.items():
                    sentences = [sentence for sentence, _ in given]
                    work.append(
                        (pair, task, RefineItem(subject, object_, pair["relation"], sentences), given)
                    )
        outcomes = self._refine(items, [w[2] for w in work]) if work else []
        if len(outcomes) != len(work):
            raise RuntimeError(f"refiner returned {len(outcomes)} outcomes for {len(work)} items")
        per_pair: dict[int, list[RefineOutcome]] = {}
        for (pair, task, _, given), outcome in zip(work, outcomes):
            sources = published_sources(given, outcome)
            if task == "task2":
                pair["refined_description"] = outcome.sentences[0] if outcome.sentences else None
                pair["description_source"] = sources[0] if sources else None
            else:
                pair["refined_descriptions"] = list(outcome.sentences)
                pair["descriptions_source"] = sources
            pair["flags"] = list(pair["flags"] or []) + [
                f"refine:{task}: {' '.join(r.split())}" for r in outcome.reasons
            ]
            per_pair.setdefault(id(pair), []).append(outcome)
            pair["refine_status"] = combined_status(per_pair[id(pair)])
            if id(pair) in partial and pair["refine_status"] == "refined":
                pair["refine_status"] = "partial"
            if pair["pair_index"] < 0 and task == "task3":  # scene level: description is the first sentence
                pair["refined_description"] = outcome.sentences[0] if outcome.sentences else None
                pair["description_source"] = sources[0] if sources else None
        for pair, *_ in work:  # text repair filled in is never reported as refined model text
            written = [pair["description_source"], *(pair["descriptions_source"] or [])]
            if any(source in FILLED for source in written):
                pair["refine_status"] = "filled"
        return to_table(items)

    def _refine(self, items: list[dict], work: list[RefineItem]) -> list[RefineOutcome]:
        return self.refiner.refine(work)

    def __del__(self):
        close_quietly(self, "refiner")


class WatchedRefineStageUDF(RefineStageUDF):
    """The actor form (an LLM refiner): a refiner whose engine dies inside the actor -- SGLang's
    scheduler gone, a device error -- ends the actor, so Ray redoes the batch (engine_watch)."""

    def __init__(self, refine: RefineConfig, run_id: str = ""):
        self.refiner, self.watch = start_watched("refiner", lambda: make_refiner(refine), run_id)

    def _refine(self, items: list[dict], work: list[RefineItem]) -> list[RefineOutcome]:
        with self.watch.batch([str(item["image_id"]) for item in items]):
            return super()._refine(items, work)

    def __del__(self):
        if getattr(self, "watch", None) is not None:
            self.watch.stop()
        super().__del__()


def refine_batch(batch: pa.Table, *, refine: RefineConfig) -> pa.Table:
    """Model-free modes as a plain task: no actor to start, and nothing to keep loaded."""
    return RefineStageUDF(refine)(batch)
