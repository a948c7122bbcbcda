"""Prompting a chat LLM to rewrite one sentence, and reading its answer back.

Shared by the `hf` and `sglang` refiners so both send byte-identical prompts (rendered with the
model's own chat template) and parse answers the same way; they differ only in how they generate.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

from vsd.errors import VSDError
from vsd.refine.base import GuardedRefiner, RewriteRequest
from vsd.refine.config import RefineConfig
from vsd.refine.rules import tidy

# Lead-ins a chat model puts before the sentence it was asked for.
_LABEL = re.compile(
    r"^\s*(?:rewritten sentence|rewritten|rewrite|sentence|answer|output)\s*:\s*", re.IGNORECASE
)
_QUOTES = {'"': '"', "'": "'", "\u201c": "\u201d", "\u2018": "\u2019", "`": "`"}


def load_tokenizer(model: str) -> Any:
    """The model's tokenizer (chat template included), or a one-line error naming the model."""
    from transformers import AutoTokenizer

    from vsd.model.loader import localize

    try:
        return AutoTokenizer.from_pretrained(localize(model))
    except (OSError, ValueError, VSDError) as exc:
        raise VSDError(
            f"refine.model: cannot load a tokenizer from {model!r}: {str(exc).splitlines()[0]}"
        ) from None


def keep_phrase(request: RewriteRequest) -> str:
    """What the rewrite must keep, in words the prompt can use at pair and at scene level."""
    if request.subject and request.object:
        relation = f" ({request.relation})" if request.relation else ""
        return f"the {request.subject}, the {request.object} and their spatial relation{relation}"
    return "every object it names and how they are placed"


def parse_rewrite(text: str) -> str:
    """The answer without a label ('Rewrite: ...') or wrapping quotes; anything else is left for
    the guardrail to judge (a second line, chat debris), never silently cut."""
    out = _LABEL.sub("", text.strip()).strip()
    if len(out) >= 2 and _QUOTES.get(out[0]) == out[-1]:
        out = out[1:-1].strip()
    return out


class PromptBuilder:
    """Renders a request into the model's chat format (system + user turn + generation prompt)."""

    def __init__(self, cfg: RefineConfig, tokenizer: Any):
        self.cfg = cfg
        self.tokenizer = tokenizer

    def messages(self, request: RewriteRequest) -> list[dict[str, str]]:
        user = self.cfg.prompt.format(
            sentence=request.sentence.strip(),
            subject=request.subject,
            object=request.object,
            relation=request.relation or "as stated",
            keep=keep_phrase(request),
        )
        system = [{"role": "system", "content": self.cfg.system_prompt}] if self.cfg.system_prompt else []
        return system + [{"role": "user", "content": user}]

    def render(self, request: RewriteRequest) -> str:
        messages = self.messages(request)
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        # A base model without a template still gets a usable prompt.
        return "\n\n".join(m["content"] for m in messages) + "\n\nRewritten sentence:"

    def adds_bos(self, text: str) -> bool:
        """Tokenize with special tokens unless the template already wrote BOS (Llama-3 style)."""
        bos = getattr(self.tokenizer, "bos_token", None)
        return not (bos and text.startswith(bos))


class ChatRefiner(GuardedRefiner):
    """A chat-LLM refiner: render prompts, generate ``variants_per_sentence`` answers each, parse."""

    def __init__(self, cfg: RefineConfig, tokenizer: Any):
        self.cfg = cfg
        self.batch_size = cfg.batch_size
        self.prompts = PromptBuilder(cfg, tokenizer)

    @abstractmethod
    def _generate(self, prompts: list[str], n: int) -> list[list[str]]:
        """``n`` raw answers for each prompt, same order."""

    def _candidates(self, requests: Sequence[RewriteRequest]) -> list[list[str]]:
        prompts = [self.prompts.render(r) for r in requests]
        answers = self._generate(prompts, self.cfg.variants_per_sentence)
        return [[tidy(parse_rewrite(a)) for a in group] for group in answers]
