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

import pyarrow as pa

from vsd.annotate.engines.base import Engine, EngineConfig, ImageRequest, ImageResult, Prompt, account, make_engine
from vsd.annotate.items import SCENE, error_text, fail_pair, from_table, ok_pairs, to_table
from vsd.data.prompts import task_prompt
from vsd.relations import RELATIONS

log = logging.getLogger(__name__)

# Scene level (no pairs given): the open-ended task about the image's main objects.
SCENE_PROMPT = ("Using the image as a reference, generate three detailed and diverse textual descriptions "
                "that describe the spatial relationships between the main objects in the image.")


def clean_name(name: str) -> str:
    """Names go into prompts on one line: newlines or runs of spaces in a name cannot fake a turn."""
    return " ".join(str(name).split())


def prompts_for(pair: dict, tasks: list[int]) -> list[Prompt]:
    if pair["pair_index"] == SCENE:
        return [Prompt(task=3, text=SCENE_PROMPT)]
    subject, object_ = clean_name(pair["subject"]), clean_name(pair["object"])
    return [Prompt(task=t, text=task_prompt(t, subject, object_), choices=tuple(RELATIONS) if t == 1 else None)
            for t in tasks]


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
        close = getattr(getattr(self, "engine", None), "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # noqa: BLE001 - shutting down anyway
                pass
