"""The three LLaVA-VSD task prompts (verbatim from the paper) and how each answer is picked.

Prompts are shared by the instruction builder, training and annotation, so a prompt change is one
edit here (and a new ``schema.PROMPT_VERSION``).

How answers are picked -- a caption "agrees" when ``parse_relation(caption, subject, object)``
returns the triple's relation; captions that state another relation (VSDv2 sentences often describe
another pair or disagree with their triple) or none (the parser cannot tell) are never used, because
the model would learn a sentence that does not say what the label says:

* task 1: the triple's relation.
* task 2: the VSDv2 sentence if it agrees (the paper's single description is the longer VSDv2 one);
  else the first agreeing VSDv1 caption in file order; else a template sentence
  ``The {subject} is {relation} the {object}.``
* task 3: three distinct sentences joined by ``"\\n"``: up to two (three if VSDv2 does not agree)
  agreeing VSDv1 captions sampled with a per-record seed (``f"{seed}:{record_id}"``, so a record's
  answer does not depend on the others), kept in file order, then the agreeing VSDv2 sentence last.
  Captions are deduplicated case-insensitively first. With fewer than three agreeing captions the
  rest are filled with template sentences in different phrasings, so every answer has three lines.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

from vsd.data.records import VSDRecord, clean_caption, dedupe
from vsd.relations import RELATIONS, parse_relation
from vsd.schema import TASKS

TASK_NAMES: dict[int, str] = dict(TASKS)

_PROMPTS = {
    1: (
        "Given the image, choose the most appropriate preposition to complete the sentence: "
        "'The {subject} is [BLANK] the {object}'. Select from: on, in, next to, under, above, "
        "behind, in front of, to the left of, to the right of."
    ),
    2: (
        "Based on the image, provide a concise textual description or phrase of the single spatial "
        "relationship between the two objects {subject} and {object}."
    ),
    3: (
        "Using the image as a reference, generate three detailed and diverse textual descriptions "
        "that describe the spatial relationship between the two objects {subject} and {object}."
    ),
}

# Template sentences for padding; each states the relation with the names in subject-object order.
_TEMPLATES = (
    "The {subject} is {relation} the {object}.",
    "There is a {subject} {relation} the {object}.",
    "A {subject} can be seen {relation} the {object}.",
)


def task_prompt(task: int, subject: str, object: str) -> str:  # noqa: A002 - the paper's word
    """The human turn of ``task`` (1, 2 or 3) for one pair, without the ``<image>`` token."""
    if task not in _PROMPTS:
        raise ValueError(f"task must be 1, 2 or 3, got {task!r}")
    return _PROMPTS[task].format(subject=subject, object=object)


def template_sentence(subject: str, relation: str, object: str, variant: int = 0) -> str:  # noqa: A002
    return _TEMPLATES[variant % len(_TEMPLATES)].format(subject=subject, relation=relation, object=object)


@lru_cache(maxsize=1 << 16)
def _parse(sentence: str, subject: str, object: str) -> str | None:  # noqa: A002
    # Tasks 2 and 3 judge the same captions: parse each (sentence, pair) once.
    return parse_relation(sentence, subject, object)


def agrees(sentence: str | None, record: VSDRecord) -> bool:
    """Whether the sentence states the record's relation from its subject to its object."""
    return bool(sentence) and _parse(sentence, record.subject, record.object) == record.relation


@dataclass(frozen=True)
class Answer:
    """An answer and where each of its sentences came from (``vsdv1``, ``vsdv2``, ``template``)."""

    text: str
    sources: tuple[str, ...]


def single_description(record: VSDRecord) -> Answer:
    """Task 2: the agreeing VSDv2 sentence, else the first agreeing VSDv1 caption, else a template."""
    if record.caption_v2 and agrees(record.caption_v2, record):
        return Answer(clean_caption(record.caption_v2), ("vsdv2",))
    for caption in dedupe(record.captions):
        if agrees(caption, record):
            return Answer(caption, ("vsdv1",))
    return Answer(template_sentence(record.subject, record.relation, record.object), ("template",))


def open_descriptions(record: VSDRecord, seed: int = 0) -> Answer:
    """Task 3: three agreeing sentences (VSDv1 then VSDv2), padded with templates; seeded per record."""
    v1 = [c for c in dedupe(record.captions) if agrees(c, record)]
    v2 = clean_caption(record.caption_v2) if record.caption_v2 and agrees(record.caption_v2, record) else None
    if v2 is not None:
        v1 = [c for c in v1 if c.lower().rstrip(".") != v2.lower().rstrip(".")]
    want_v1 = 3 - (v2 is not None)
    rng = random.Random(f"{seed}:{record.record_id}")
    picked = sorted(rng.sample(range(len(v1)), min(want_v1, len(v1))))
    sentences = [v1[i] for i in picked]
    sources = ["vsdv1"] * len(sentences)
    variant = 0
    while len(sentences) < want_v1:
        candidate = template_sentence(record.subject, record.relation, record.object, variant)
        variant += 1
        if candidate.lower() not in {s.lower() for s in sentences + ([v2] if v2 else [])}:
            sentences.append(candidate)
            sources.append("template")
        if variant > len(_TEMPLATES) * 2:
            break
    if v2 is not None:
        sentences.append(v2)
        sources.append("vsdv2")
    return Answer("\n".join(s.replace("\n", " ") for s in sentences), tuple(sources))


def answer(task: int, record: VSDRecord, seed: int = 0) -> Answer:
    """The gpt turn of ``task`` for one record."""
    if task == 1:
        return Answer(record.relation, ("relation",))
    if task == 2:
        return single_description(record)
    if task == 3:
        return open_descriptions(record, seed)
    raise ValueError(f"task must be 1, 2 or 3, got {task!r}")


assert _PROMPTS[1].endswith("Select from: " + ", ".join(RELATIONS) + "."), (
    "task 1 prompt out of sync with RELATIONS"
)
