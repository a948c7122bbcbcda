"""The one chat template both engines use, so hf and sglang see byte-identical prompts.

LLaVA-1.5 (Vicuna v1) format, as the checkpoints were tuned on and as `vsd.model.tiny` writes it:
``USER: <image>\\n{prompt} ASSISTANT:``. The generation prompt ends at ``ASSISTANT:`` with no
trailing space, so an answer's first token carries its own leading space (``" in"``) and the prompt
is a token-exact prefix of prompt + answer. BOS is the tokenizer's job, not the template's.
"""

from __future__ import annotations

IMAGE_TOKEN = "<image>"
LLAVA_TEMPLATE = "USER: {image}\n{prompt} ASSISTANT:"


def chat_prompt(text: str, *, image_token: str = IMAGE_TOKEN, template: str = LLAVA_TEMPLATE) -> str:
    """The full generation prompt for one user turn about one image."""
    return template.format(image=image_token, prompt=text)


def choice_answer(choice: str) -> str:
    """How a constrained choice is written as the assistant's answer (leading space, as trained).

    The end of the answer (EOS) is scored too, by the engine: without it ``in`` would always beat
    ``in front of``, since a prefix is at least as likely as any of its continuations.
    """
    return " " + choice


def choice_regex(choices: tuple[str, ...]) -> str:
    """A regular expression matching exactly one of ``choices`` (optional leading space)."""
    import re

    return " ?(" + "|".join(re.escape(c) for c in sorted(choices, key=len, reverse=True)) + ")"
