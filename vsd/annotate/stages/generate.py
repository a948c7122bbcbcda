"""Generate stage: a stateful Ray Data UDF (one engine per actor) that answers every task prompt.

All prompts about one prepared image -- its pairs x tasks -- go in one ``ImageRequest``, so the
engine prefills the image once (hf) or finds it in its radix cache (sglang). With visual prompts on
(the default, as LLaVA-VSD was trained) each pair has its own drawn image, so a request holds that
pair's tasks; with them off, one request holds every pair of the image.

A batch the engine refuses is retried one request at a time, so a single poisonous image becomes
an ``engine_error`` row instead of failing its neighbours; an actor that dies is restarted by Ray
Data and its batch re-run (the write stage is idempotent).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from vsd.annotate.engines import make_engine
from vsd.annotate.engines.base import Engine, ImageRequest, ImageResult, Prompt, account
from vsd.annotate.engines.prompting import scene_prompts, task_prompts
from vsd.annotate.items import SCENE, error_text, fail_pair, from_table, ok_pairs, to_table
from vsd.annotate.stages.base import RunContext, Resources, close_quietly, enabled_always, map_stage, resources

if TYPE_CHECKING:
    from vsd.annotate.config import AnnotateConfig
    from vsd.annotate.engines import EngineConfig

log = logging.getLogger(__name__)

NAME = "generate"
HELP = "the engine actors that answer every task prompt (engine: the model and its backend)"
enabled = enabled_always


@dataclass
class GenerateStageConfig:
    resources: Resources = resources("engine actors: concurrency = model copies (one per GPU); num_cpus = its "
                                     "torch threads (hf on CPU) or SGLANG_CPU_WORKERS; batch_size default "
                                     "engine.batch_size", num_cpus=1.0, concurrency=1)


Config = GenerateStageConfig


def add(ds, cfg: AnnotateConfig, ctx: RunContext):
    return map_stage(ds, GenerateStageUDF, cfg.stages.generate.resources, default_batch=cfg.engine.batch_size,
                     actor=True, kwargs={"engine": cfg.engine, "tasks": list(cfg.tasks),
                                         "engine_factory": ctx.engine_factory})


def prompts_for(pair: dict, tasks: list[int]) -> list[Prompt]:
    if pair["pair_index"] == SCENE:
        return scene_prompts()
    return task_prompts(pair["subject"], pair["object"], tasks)


def split_sentences(text: str) -> list[str]:
    """Task 3's answer: one description per line (as trained), blank lines dropped."""
    return [line.strip() for line in str(text).splitlines() if line.strip()]


def fill(pair: dict, prompts: list[Prompt], answers) -> None:
    for prompt, answer in zip(prompts, answers):
        if prompt.task == 1:
            pair["relation"] = answer.text.strip()
            pair["relation_scores"] = [float(s) for s in answer.scores] if answer.scores is not None else None
        elif prompt.task == 2:
            pair["description"] = answer.text.strip()
        elif prompt.task == 3:
            pair["descriptions"] = split_sentences(answer.text)
            if pair["pair_index"] == SCENE:  # no task 2 at scene level: its text goes where users look
                pair["description"] = pair["descriptions"][0] if pair["descriptions"] else None


class GenerateStageUDF:
    """``map_batches`` callable class: built once per actor (loads the model), called per batch."""

    def __init__(self, engine: EngineConfig, tasks: list[int], engine_factory: Callable[[EngineConfig], Engine] | None = None):
        self.tasks = sorted(set(tasks))
        self.engine = (engine_factory or make_engine)(engine)

    def __call__(self, batch: pa.Table) -> pa.Table:
        items = from_table(batch)
        groups: list[tuple[ImageRequest, list[tuple[dict, list[Prompt]]]]] = []
        for item in items:
            by_view: dict[int, list[tuple[dict, list[Prompt]]]] = {}
            for pair in ok_pairs(item):
                by_view.setdefault(pair["view"], []).append((pair, prompts_for(pair, self.tasks)))
            for view, members in sorted(by_view.items()):
                request = ImageRequest(key=f"{item['image_id']}#{view}", image=item["views"][view],
                                       prompts=[p for _, ps in members for p in ps])
                groups.append((request, members))
        if groups:
            for (request, members), result in zip(groups, self._generate([g[0] for g in groups])):
                if isinstance(result, str):
                    for pair, _ in members:
                        fail_pair(pair, result)
                    continue
                answers = iter(result.answers)
                for pair, prompts in members:
                    fill(pair, prompts, [next(answers) for _ in prompts])
        for item in items:
            item["views"] = []  # JPEGs are not needed after generation
        return to_table(items)

    def _generate(self, requests: list[ImageRequest]) -> list[ImageResult | str]:
        """Results in request order; an error message (``engine_error: ...``) where a request failed alone.

        If every request of a multi-request batch fails on its own too, the engine itself is broken
        (out of memory, a bad checkpoint): that raises, so the task fails and the run can be rerun,
        instead of turning the whole corpus into final error rows."""
        try:
            return account(requests, self.engine.generate(requests))
        except Exception as exc:  # noqa: BLE001 - isolate the request that breaks the engine
            if len(requests) == 1:
                log.warning("engine failed on %s: %s", requests[0].key, exc)
                return [error_text("engine_error", f"{type(exc).__name__}: {exc}")]
            alone = [r for req in requests for r in self._generate([req])]
            if all(isinstance(r, str) for r in alone):
                raise
            return alone

    def __del__(self):
        close_quietly(self, "engine")
