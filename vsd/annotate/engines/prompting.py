"""The one prompt builder: the task prompts production sends, and the chat template every engine uses.

``task_prompts`` / ``scene_prompts`` are what the generate stage asks about a pair / an image, and
what tests and benches ask too, so they exercise exactly what production sends. ``chat_prompt`` is
the template both engines wrap them in, so hf and sglang see byte-identical prompts.

LLaVA-1.5 (Vicuna v1) format, as the checkpoints were tuned on and as `vsd.model.tiny` writes it:
``USER: <image>\\n{prompt} ASSISTANT:``. The generation prompt ends at ``ASSISTANT:`` with no
trailing space, so an answer's first token carries its own leading space (``" in"``) and the prompt
is a token-exact prefix of prompt + answer. BOS is the tokenizer's job, not the template's.
"""

from __future__ import annotations

from collections.abc import Sequence

from vsd.annotate.engines.base import Prompt
from vsd.data.prompts import task_prompt
from vsd.relations import RELATIONS

IMAGE_TOKEN = "<image>"
LLAVA_TEMPLATE = "USER: {image}\n{prompt} ASSISTANT:"

# Scene level (no pairs given): the open-ended task about the image's main objects.
SCENE_PROMPT = (
    "Using the image as a reference, generate three detailed and diverse textual descriptions "
    "that describe the spatial relationships between the main objects in the image."
)


def clean_name(name: str) -> str:
    """Names go into prompts on one line: newlines or runs of spaces in a name cannot fake a turn."""
    return " ".join(str(name).split())


def task_prompts(subject: str, object_: str, tasks: Sequence[int] = (1, 2, 3)) -> list[Prompt]:
    """The paper's task prompts for one pair (names cleaned), task 1 as a choice over the 9 relations."""
    subject, object_ = clean_name(subject), clean_name(object_)
    return [
        Prompt(task=t, text=task_prompt(t, subject, object_), choices=tuple(RELATIONS) if t == 1 else None)
        for t in tasks
    ]


def scene_prompts() -> list[Prompt]:
    """An image without pairs gets the open-ended task about its main objects."""
    return [Prompt(task=3, text=SCENE_PROMPT)]


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
