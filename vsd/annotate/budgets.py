"""How many tokens each task may generate: from the data the model was trained on, not a hand-set cap.

Training records the answer-length distribution per task (tokens of the gpt turn, in
`vsd.train.answer_lengths`) in the checkpoint's ``meta.json``, and ``vsd export`` copies it into the
export's ``vsd_export.json``. A task's budget is its p99 plus a margin, so task 2 gets room for one
sentence and task 3 for three, and a budget hit is rare enough to mean the model is rambling (it is
flagged ``truncated`` either way). ``engine.max_new_tokens`` set to a number overrides it for every
free-text task; a model without the record (a hub checkpoint, ``tiny:``) gets `DEFAULTS`.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from vsd import storage

log = logging.getLogger(__name__)

DEFAULTS = {2: 64, 3: 160}  # LLaVA-1.5 answers in VSD: one sentence ~20-40 tokens, three ~60-120
MARGIN = 1.25  # p99 x this, and at least 8 tokens more


def budget_from(stats: dict) -> int:
    p99 = float(stats["p99"])
    return int(max(math.ceil(p99 * MARGIN), p99 + 8))


def recorded_lengths(model: str, adapter: str | None = None) -> dict[int, dict]:
    """The answer-length record of an export or of an adapter's checkpoint ({} when there is none)."""
    try:
        if adapter:
            from vsd.model.checkpoints import resolve_adapter

            meta = resolve_adapter(adapter)[1]
        elif ":" in model and not storage.is_s3(model) or not (storage.is_s3(model) or storage.exists(model)):
            return {}  # tiny:… and hub ids carry no record
        else:
            from vsd.model.export import export_info

            meta = export_info(model)
    except (OSError, ValueError) as exc:
        log.warning("no answer-length record for %s (%s): default token budgets", model, exc)
        return {}
    return {int(task): stats for task, stats in (meta.get("answer_tokens") or {}).items()}


def token_budgets(engine: Any) -> dict[int, int]:
    """``{task: max_new_tokens}`` for the free-text tasks (2 and 3)."""
    if getattr(engine, "max_new_tokens", None):
        return {task: int(engine.max_new_tokens) for task in DEFAULTS}
    recorded = recorded_lengths(engine.model, getattr(engine, "adapter", None))
    return {
        task: budget_from(recorded[task]) if task in recorded else default
        for task, default in DEFAULTS.items()
    }
