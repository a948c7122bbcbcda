"""The refine stage's config: which rewriter runs and how it samples.

Refinement is optional polish on top of the annotation, so the default (`rules`) runs offline
with no model; a model backend (``vsd/backends``: `hf`, `sglang`) loads a chat LLM through its
text entry point (the paper used Qwen-2 instruct models).
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any

from vsd.backends import refiners
from vsd.config import DEVICE, ConfigError, check_fields, describe
from vsd.serving import check_engine_args

DEFAULT_SYSTEM_PROMPT = "You edit short descriptions of images. Answer with the rewritten sentence only."

# Placeholders: {sentence} (required), {subject}, {object}, {relation} and {keep} (a phrase naming
# what must survive, which also reads well at scene level where there is no subject/object pair).
DEFAULT_PROMPT = (
    "Rewrite the sentence below so that it reads fluently and uses different words. "
    "Keep {keep}; do not add, remove or negate any fact. Answer with one sentence only.\n\n"
    "Sentence: {sentence}"
)

PROMPT_FIELDS = ("sentence", "subject", "object", "relation", "keep")


@dataclass
class RefineConfig:
    mode: str = describe(
        "mode",
        "rules",
        choices=["rules", *refiners(), "off"],
        help="rules: deterministic offline tidy-up; hf: transformers chat LLM; "
        "sglang: sglang.Engine on GPU; off: pass descriptions through",
    )
    model: str = describe(
        "model",
        "Qwen/Qwen2-7B-Instruct",
        help="chat LLM for hf/sglang: hub id or local directory (paper: Qwen-2)",
    )
    dtype: str = describe(
        "dtype",
        "auto",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="hf weights dtype; auto = bfloat16 on GPU, float32 on CPU",
    )
    device: str = describe(
        "device", "auto", pattern=DEVICE, help="hf device: auto (cuda if available), cpu, cuda, cuda:N"
    )
    max_new_tokens: int = describe(
        "max_new_tokens",
        64,
        ge=1,
        help="cap per rewrite; a sentence needs ~30, more only wastes time on rambling",
    )
    temperature: float = describe(
        "temperature", 0.7, ge=0, help="0 = greedy (one variant); higher = more diverse wording, more rejects"
    )
    top_p: float = describe("top_p", 0.9, gt=0, le=1, help="nucleus sampling mass when temperature > 0")
    n_variants: int = describe(
        "n_variants",
        3,
        ge=1,
        help="rewrites sampled per sentence; the first that passes the guardrail is "
        "kept (more = fewer originals kept, proportionally more compute)",
    )
    batch_size: int = describe(
        "batch_size", 16, ge=1, help="sentences per generate call (each with n_variants samples)"
    )
    seed: int = describe("seed", 0, help="sampling seed, reset per batch so a rerun writes the same text")
    engine_args: dict[str, Any] = describe(
        "engine_args",
        factory=dict,
        help="sglang only: passed to sglang.Engine (tp_size, mem_fraction_static, ...)",
    )
    allow_engine_args: list[str] = describe(
        "allow_engine_args",
        factory=list,
        help="sglang only: engine_args keys that change what is loaded or run "
        "(load_format, revision, ...), refused unless listed here",
    )
    system_prompt: str = describe(
        "system_prompt", DEFAULT_SYSTEM_PROMPT, help="system turn of the chat prompt"
    )
    prompt: str = describe(
        "prompt",
        DEFAULT_PROMPT,
        help="user turn; placeholders {sentence} (required), {subject}, {object}, {relation}, {keep}",
    )

    def validate(self) -> None:
        check_fields(self)  # also for a config built in code (from_dict checked them already)
        check_engine_args(self.engine_args, self.allow_engine_args)
        if self.mode in refiners() and not self.model.strip():
            raise ConfigError(f"model: required when mode is {self.mode}")
        try:
            fields = {name for _, name, _, _ in string.Formatter().parse(self.prompt) if name is not None}
        except ValueError as exc:
            raise ConfigError(f"prompt: not a valid template ({exc})") from None
        unknown = sorted(fields - set(PROMPT_FIELDS))
        if unknown:
            raise ConfigError(
                f"prompt: unknown placeholder {{{unknown[0]}}} (known: {', '.join(PROMPT_FIELDS)})"
            )
        if "sentence" not in fields:
            raise ConfigError("prompt: must contain the {sentence} placeholder")

    @property
    def variants_per_sentence(self) -> int:
        """Greedy decoding gives the same text every time, so it asks for one variant only."""
        return self.n_variants if self.temperature > 0 else 1
