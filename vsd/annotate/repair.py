"""Descriptions you can train on: complete sentences, three of them, each saying the relation.

The generate stage asks the paper's three tasks; a small model (or a hand-set token budget) can
answer task 2/3 with a sentence cut off mid-phrase, with fewer than three sentences, or with a
sentence whose relation contradicts its own task-1 answer. Those texts stay as they are in
``description``/``descriptions`` (what the model said, flagged); the *refined* columns get
complete, consistent text by construction:

* a sentence that is truncated, states no relation, or states another relation than task 1 is
  re-decoded with its start forced to say task 1's relation between the named subject and object
  (the training data's own template openings: "The cup is on the table", "There is a cup on the
  table", "A cup can be seen on the table") and the model finishes it; a continuation that is cut
  off again or changes the relation is dropped, leaving the forced clause as the sentence;
* task 3 is brought to three sentences the same way;
* nothing is repaired when task 1 and the boxes' geometry disagree (``geometry_contradicts``):
  then both are kept and flagged, since it is not known which is wrong -- never invent.

Flags (per row): ``truncated:task2``, ``truncated:task3.<i>``, ``too_few_sentences:task3 (<n> of 3)``,
``repaired:task2 (<why>)``, ``repaired:task3.<i> (<why>)``, ``not_repaired (task 1 and geometry
disagree)`` -- ``<why>`` one of truncated, no_relation_stated, disagrees, missing.
"""

from __future__ import annotations

from dataclasses import dataclass

from vsd.data.prompts import template_sentence
from vsd.relations import RELATIONS, geometry_contradicts, parse_relation

SENTENCES = 3  # what task 3 asks for
REPAIR_TOKENS = 24  # tokens a forced clause may be finished with (a short ending, not a new sentence)


@dataclass(frozen=True)
class Repair:
    """One sentence to re-decode: which slot of the refined text it fills, its forced start, why."""

    task: int
    slot: int  # task 2: 0; task 3: the sentence index in the refined list
    prefix: str
    why: str


def _prefix(subject: str, relation: str, object_: str, variant: int) -> str:
    return template_sentence(subject, relation, object_, variant).rstrip(".")


def judge(sentence: str | None, truncated: bool, subject: str, object_: str, label: str) -> str | None:
    """Why a sentence needs repairing, or None when it is complete and states ``label``."""
    if sentence is None or not sentence.strip():
        return "missing"
    if truncated:
        return "truncated"
    stated = parse_relation(sentence, subject, object_)
    if stated is None:
        return "no_relation_stated"
    return None if stated == label else "disagrees"


def plan(pair: dict, truncated: dict[int, bool], tasks: list[int]) -> tuple[list[Repair], list[str], dict]:
    """What to repair in one generated pair: (repairs, flags, refined texts kept as they are).

    ``truncated`` says per task whether its answer hit the token budget (task 3: its last sentence).
    The third value holds the refined text that needs no repair: ``{"task2": str | None,
    "task3": list[str | None]}`` with None in every slot a repair will fill."""
    flags: list[str] = []
    kept: dict = {"task2": None, "task3": None}
    subject, object_, label = pair["subject"], pair["object"], pair["relation"]
    sentences = list(pair["descriptions"] or [])
    if truncated.get(2):
        flags.append("truncated:task2")
    if truncated.get(3) and sentences:
        flags.append(f"truncated:task3.{len(sentences) - 1}")
    if 3 in tasks:
        complete = len(sentences) - (1 if truncated.get(3) and sentences else 0)
        if complete < SENTENCES:
            flags.append(f"too_few_sentences:task3 ({complete} of {SENTENCES})")
    if label not in RELATIONS or pair["pair_index"] < 0:
        return [], flags, kept  # nothing to say the relation from (scene level, or no task 1)
    if pair["subject_box"] is not None and geometry_contradicts(
        label, pair["subject_box"], pair["object_box"]
    ):
        return [], flags + ["not_repaired (task 1 and geometry disagree)"], kept
    repairs: list[Repair] = []
    if 2 in tasks:
        why = judge(pair["description"], bool(truncated.get(2)), subject, object_, label)
        if why is None:
            kept["task2"] = pair["description"]
        else:
            repairs.append(Repair(2, 0, _prefix(subject, label, object_, 0), why))
    if 3 in tasks:
        slots: list[str | None] = []
        for i in range(SENTENCES):
            sentence = sentences[i] if i < len(sentences) else None
            last_cut = truncated.get(3) and i == len(sentences) - 1
            why = judge(sentence, bool(last_cut), subject, object_, label)
            if why is None:
                slots.append(sentence)
            else:
                slots.append(None)
                repairs.append(Repair(3, i, _prefix(subject, label, object_, i), why))
        kept["task3"] = slots
    return repairs, flags, kept


# What may follow a complete clause: punctuation, or a word that opens a modifier or a new clause.
# Anything else ("ge square.", "table table.") is a broken word or a run-on and is dropped.
JOINERS = frozenset(
    "and while which with where as in on at near from against under beside that whose".split()
)


def truncated_slots(flags: list[str] | None, task: int) -> set[int]:
    """The sentence indices `plan` flagged as cut off for ``task`` (2: ``{0}``; 3: ``truncated:task3.<i>``)
    -- the one reader of these flags, for the refine stage and the evaluation."""
    out: set[int] = set()
    for flag in flags or ():
        if flag == f"truncated:task{task}":
            out.add(0)
        elif flag.startswith(f"truncated:task{task}."):
            out.add(int(flag.rsplit(".", 1)[1]))
    return out


def finish(repair: Repair, continuation: str, truncated: bool, subject: str, object_: str, label: str) -> str:
    """The repaired sentence: the forced clause plus the model's ending, unless that ending was cut
    off, does not join the clause (a word fragment, a run-on) or changes what the sentence says --
    then the clause alone, closed with a full stop."""
    ending = " ".join(continuation.split())
    first = ending.split(" ", 1)[0].lower() if ending else ""
    joins = ending[:1] in ",.;:!?" or first in JOINERS
    sentence = f"{repair.prefix}{'' if ending[:1] in ',.;:!?' or not ending else ' '}{ending}".strip()
    clean = (
        not truncated
        and joins
        and sentence[-1:] in ".!?"
        and parse_relation(sentence, subject, object_) == label
    )
    return sentence if clean else repair.prefix + "."
