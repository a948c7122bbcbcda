"""Generate stage: a stateful Ray Data UDF (one engine per actor) that answers every task prompt.

All prompts about one prepared image -- its pairs x tasks -- go in one ``ImageRequest``, so the
engine prefills the image once (hf) or finds it in its radix cache (sglang). With visual prompts on
(the default, as LLaVA-VSD was trained) each pair has its own drawn image, so a request holds that
pair's tasks; with them off, one request holds every pair of the image.

A batch the engine refuses is retried one request at a time, so a single poisonous image becomes
an ``engine_error`` row instead of failing its neighbours; an actor that dies is restarted by Ray
Data and its batch re-run (the write stage is idempotent), and an engine that dies inside a live
actor (SGLang's scheduler gone, a device error) ends the actor so that this happens
(`vsd.annotate.engine_watch`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from vsd.annotate.budgets import token_budgets
from vsd.annotate.engine_watch import start_watched
from vsd.annotate.engines import make_engine
from vsd.annotate.engines.base import Engine, ImageRequest, ImageResult, Prompt, account
from vsd.annotate.engines.prompting import scene_prompts, task_prompts
from vsd.annotate.items import SCENE, error_text, fail_pair, from_table, ok_pairs, to_table
from vsd.annotate.repair import REPAIR_TOKENS, Repair, finish, plan, source_of
from vsd.annotate.stages.base import (
    Resources,
    RunContext,
    close_quietly,
    enabled_always,
    map_stage,
    resources,
)
from vsd.config import describe

if TYPE_CHECKING:
    from vsd.annotate.config import AnnotateConfig
    from vsd.annotate.engines import EngineConfig

log = logging.getLogger(__name__)

NAME = "generate"
HELP = "the engine actors that answer every task prompt (engine: the model and its backend)"
enabled = enabled_always


@dataclass
class GenerateStageConfig:
    repair: bool = describe(
        "repair",
        True,
        help="re-decode a description that is cut off, states no relation or "
        "contradicts task 1, with its start forced to state task 1's relation (the original stays "
        "in description(s), the repair goes to refined_*; never when task 1 and geometry disagree)",
    )
    min_lines: int = describe(
        "min_lines",
        3,
        help="task 3 may not end before this many lines (one sentence per line, as trained; "
        "the end-of-answer token is masked until then, every word stays the model's); 0: no floor",
    )
    resources: Resources = resources(
        "engine actors: concurrency = model copies (one per GPU); num_cpus = its "
        "torch threads (hf on CPU) or SGLANG_CPU_WORKERS; batch_size = images per "
        "call, default engine.batch_size x the engine's steps per call (hf 4, sglang 1)",
        num_cpus=1.0,
        concurrency=1,
    )


Config = GenerateStageConfig


def add(ds, cfg: AnnotateConfig, ctx: RunContext):
    return map_stage(
        ds,
        GenerateStageUDF,
        cfg.stages.generate.resources,
        default_batch=cfg.engine.images_per_call,
        actor=True,
        kwargs={
            "engine": cfg.engine,
            "tasks": list(cfg.tasks),
            "engine_factory": ctx.engine_factory,
            "repair": cfg.stages.generate.repair,
            "min_lines": cfg.stages.generate.min_lines,
            "run_id": ctx.run_id,
        },
    )


def prompts_for(pair: dict, tasks: list[int]) -> list[Prompt]:
    if pair["pair_index"] == SCENE:
        return scene_prompts()
    return task_prompts(pair["subject"], pair["object"], tasks)


def stage_prompts(pair: dict, tasks: list[int], budgets: dict[int, int], min_lines: int) -> list[Prompt]:
    """What the stage asks of ``pair``: its prompts with each free-text task's token budget and
    task 3's line floor (`bench/pipeline_efficiency`'s bare loop asks the same, so both sides
    decode the same tokens)."""
    return [
        dataclasses.replace(p, max_new_tokens=budgets.get(p.task), min_lines=min_lines if p.task == 3 else 0)
        if p.choices is None
        else p
        for p in prompts_for(pair, tasks)
    ]


def split_sentences(text: str) -> list[str]:
    """Task 3's answer: one description per line (as trained), blank lines dropped."""
    return [line.strip() for line in str(text).splitlines() if line.strip()]


def fill(pair: dict, prompts: list[Prompt], answers) -> dict[int, bool]:
    """Put the answers in the pair's columns; returns which tasks' answers hit their token budget."""
    truncated: dict[int, bool] = {}
    for prompt, answer in zip(prompts, answers):
        truncated[prompt.task] = bool(getattr(answer, "truncated", False))
        if prompt.task == 1:
            pair["relation"] = answer.text.strip()
            pair["relation_scores"] = [float(s) for s in answer.scores] if answer.scores is not None else None
        elif prompt.task == 2:
            pair["description"] = answer.text.strip()
        elif prompt.task == 3:
            pair["descriptions"] = split_sentences(answer.text)
            if pair["pair_index"] == SCENE:  # no task 2 at scene level: its text goes where users look
                pair["description"] = pair["descriptions"][0] if pair["descriptions"] else None
    return truncated


class GenerateStageUDF:
    """``map_batches`` callable class: built once per actor (loads the model), called per batch."""

    def __init__(
        self,
        engine: EngineConfig,
        tasks: list[int],
        engine_factory: Callable[[EngineConfig], Engine] | None = None,
        repair: bool = True,
        run_id: str = "",
        min_lines: int = 3,
    ):
        self.tasks = sorted(set(tasks))
        self.repair = repair
        self.min_lines = min_lines
        self.budgets = token_budgets(engine)
        # The engine dies with the processes it started (SGLang's scheduler, detokenizer).
        start = engine_factory or make_engine
        self.engine, self.watch = start_watched(f"{engine.kind} engine", lambda: start(engine), run_id)

    def prompts(self, pair: dict) -> list[Prompt]:
        return stage_prompts(pair, self.tasks, self.budgets, self.min_lines)

    def __call__(self, batch: pa.Table) -> pa.Table:
        items = from_table(batch)
        groups: list[tuple[ImageRequest, list[tuple[dict, list[Prompt]]]]] = []
        for item in items:
            by_view: dict[int, list[tuple[dict, list[Prompt]]]] = {}
            for pair in ok_pairs(item):
                by_view.setdefault(pair["view"], []).append((pair, self.prompts(pair)))
            for view, members in sorted(by_view.items()):
                request = ImageRequest(
                    key=f"{item['image_id']}#{view}",
                    image=item["views"][view],
                    prompts=[p for _, ps in members for p in ps],
                )
                groups.append((request, members))
        with self.watch.batch([g[0].key for g in groups]):
            self._answer(groups)
        for item in items:
            item["views"] = []  # JPEGs are not needed after generation
        return to_table(items)

    def _answer(self, groups: list[tuple[ImageRequest, list[tuple[dict, list[Prompt]]]]]) -> None:
        """Every group's answers into its pairs, then the repair pass."""
        repairs: list[tuple[ImageRequest, list[tuple[dict, Repair]]]] = []
        if groups:
            for (request, members), result in zip(groups, self._generate([g[0] for g in groups])):
                if isinstance(result, str):
                    for pair, _ in members:
                        fail_pair(pair, result)
                    continue
                answers = iter(result.answers)
                todo: list[tuple[dict, Repair]] = []
                for pair, prompts in members:
                    truncated = fill(pair, prompts, [next(answers) for _ in prompts])
                    todo += self._plan(pair, truncated)
                if todo:
                    prompts = [
                        Prompt(
                            task=r.task,
                            text=task_prompts(pair["subject"], pair["object"], [r.task])[0].text,
                            answer_prefix=r.prefix,
                            max_new_tokens=REPAIR_TOKENS,
                        )
                        for pair, r in todo
                    ]
                    repairs.append(
                        (
                            ImageRequest(key=request.key + "#repair", image=request.image, prompts=prompts),
                            todo,
                        )
                    )
        if repairs:
            self._repair(repairs)

    def _plan(self, pair: dict, truncated: dict[int, bool]) -> list[tuple[dict, Repair]]:
        """Flag truncation and short task-3 answers; with repairs on, set the refined text that
        needs none and return the sentences to re-decode."""
        todo, flags, kept = plan(pair, truncated, self.tasks)
        pair["flags"] = list(pair["flags"] or []) + flags
        if not (self.repair and todo):
            return []
        pair["refined_description"] = kept["task2"]
        pair["refined_descriptions"] = kept["task3"]
        pair["description_source"] = kept["task2_source"]
        pair["descriptions_source"] = kept["task3_sources"]
        return [(pair, r) for r in todo]

    def _repair(self, repairs: list[tuple[ImageRequest, list[tuple[dict, Repair]]]]) -> None:
        """Second pass over the same images (their prefill is cached or redone once): each forced
        clause finished by the model; a request that fails leaves the clause alone."""
        results = self._generate([r for r, _ in repairs])
        for (_request, todo), result in zip(repairs, results):
            answers = result.answers if not isinstance(result, str) else [None] * len(todo)
            for (pair, repair), answer in zip(todo, answers):
                text = finish(
                    repair,
                    answer.text if answer else "",
                    bool(answer and answer.truncated) or answer is None,
                    pair["subject"],
                    pair["object"],
                    pair["relation"],
                )
                if repair.task == 2:
                    pair["refined_description"] = text
                    pair["description_source"] = source_of(repair, text)
                    pair["flags"].append(f"repaired:task2 ({repair.why})")
                else:
                    pair["refined_descriptions"][repair.slot] = text
                    pair["descriptions_source"][repair.slot] = source_of(repair, text)
                    pair["flags"].append(f"repaired:task3.{repair.slot} ({repair.why})")

    def _generate(self, requests: list[ImageRequest]) -> list[ImageResult | str]:
        """Results in request order; an error message (``engine_error: ...``) where a request failed alone.

        If every request of a multi-request batch fails on its own too, the engine itself is broken
        (out of memory, a bad checkpoint): that raises, so the task fails and the run can be rerun,
        instead of turning the whole corpus into final error rows."""
        try:
            return account(requests, self.engine.generate(requests))
        except Exception as exc:  # noqa: BLE001 - isolate the request that breaks the engine
            self.watch.failed(exc)  # a device error: the actor exits here, Ray redoes the batch
            if len(requests) == 1:
                log.warning("engine failed on %s: %s", requests[0].key, exc)
                return [error_text("engine_error", f"{type(exc).__name__}: {exc}")]
            alone = [r for req in requests for r in self._generate([req])]
            if all(isinstance(r, str) for r in alone):
                raise
            return alone

    def __del__(self):
        if getattr(self, "watch", None) is not None:
            self.watch.stop()
        close_quietly(self, "engine")
