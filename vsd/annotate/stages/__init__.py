"""The annotation pipeline as a list of stages, in order.

Each module here is one stage: its config (``Config``: its own settings plus a ``resources`` block)
and its Ray Data UDF, joined to the graph by ``add(ds, cfg, ctx)``. Adding a stage is one module
plus one line in ``STAGES``: its config section (``stages.<name>.*``) is generated from this list,
so ``--help-config``, dotted overrides and YAML pick it up with no other edit.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from vsd.annotate.stages import generate, preprocess, propose, read, refine, verify, write
from vsd.annotate.stages.base import Resources, RunContext
from vsd.config import describe

if TYPE_CHECKING:
    from vsd.annotate.config import AnnotateConfig

STAGES = (
    read,  # claim, read, hash (CPU tasks)
    propose,  # detect objects, pick pairs for images without pairs (detector actors; off by default)
    preprocess,  # decode, guard, visual prompt, resize (CPU tasks)
    generate,  # the engine (GPU/CPU actors)
    verify,  # answers vs answers vs geometry (CPU tasks)
    refine,  # rewrite under a guardrail (tasks, or actors with an LLM)
    write,  # Parquet parts, exactly once (CPU tasks)
)


def stages_config(stages=STAGES) -> type:
    """The ``stages`` config section: one field per stage module, in pipeline order."""
    cls = dataclasses.make_dataclass(
        "StagesConfig", [(s.NAME, s.Config, describe(s.NAME, factory=s.Config, help=s.HELP)) for s in stages]
    )
    cls.__doc__ = "One section per stage, in pipeline order: its settings and its resources."
    cls.__module__ = __name__
    return cls


StagesConfig = stages_config()


def build_dataset(ds, cfg: AnnotateConfig, ctx: RunContext, stages=STAGES):
    """The lazy Ray Data graph over ``ds`` (planned items); nothing runs until it is iterated.

    Ray Data restarts a dead actor and re-runs its batch by default (``max_restarts=-1``,
    ``max_task_retries=-1``); a re-run write lands on the same part name, so retries never
    duplicate rows."""
    for stage in stages:
        if stage.enabled(cfg):
            ds = stage.add(ds, cfg, ctx)
    return ds


__all__ = ["STAGES", "Resources", "RunContext", "StagesConfig", "build_dataset", "stages_config"]
