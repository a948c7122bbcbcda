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
  then both are kept and flagged, since it is not known which is wrong -- never invent;
* a complete sentence that states *another* relation than task 1 is overwritten only when the
  geometry (with depth where the pair has it) sides with task 1 (`geometry_sides_with`); when it
  cannot decide -- ``behind`` / ``in front of`` without depth, touching boxes -- the model's sentence
  is published as it is and the disagreement flagged: task 1 is one guess of the same model, and
  overwriting on its word alone replaced true sentences with false ones whenever task 1 was wrong.

Who wrote each published sentence is recorded (``description_source`` / ``descriptions_source``):
``model`` (kept as generated), ``model_completed`` (a forced opening the model ended cleanly),
``template`` (the forced opening alone); the refine stage adds ``refined`` (a model sentence the
refiner changed).

Flags (per row): ``truncated:task2``, ``truncated:task3.<i>``, ``too_few_sentences:task3 (<n> of 3)``,
``repaired:task2 (<why>)``, ``repaired:task3.<i> (<why>)``, ``not_repaired (task 1 and geometry
disagree)`` -- ``<why>`` one of truncated, no_relation_stated, disagrees, missing --,
``kept_disagreeing:task2`` / ``:task3.<i>`` (the model's sentence published although it states
another relation than task 1: the geometry cannot decide) and ``not_repaired:task3.<i>`` (a cut-off
sentence stating another relation than task 1, left out rather than overwritten).
"""

from __future__ import annotations

from dataclasses import dataclass

from vsd.data.prompts import template_sentence
from vsd.relations import RELATIONS, BoxDepths, geometric_relation, geometry_contradicts, parse_relation

SENTENCES = 3  # what task 3 asks for
REPAIR_TOKENS = 24  # tokens a forced clause may be finished with (a short ending, not a new sentence)
# Who wrote a published sentence (the values of description_source / descriptions_source).
MODEL, REFINED, COMPLETED, TEMPLATE = "model", "refined", "model_completed", "template"
SOURCES = (MODEL, REFINED, COMPLETED, TEMPLATE)
MODEL_WRITTEN = (MODEL, REFINED)  # text the model chose, word for word or polished
FILLED = (COMPLETED, TEMPLATE)  # text whose relation was put there by repair
# Relations that can both be true of one pair: geometry that decides one does not rule out the other.
_COMPATIBLE = frozenset(
    {("next to", "to the left of"), ("next to", "to the right of"), ("on", "above"), ("on", "in")}
)


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


def compatible(a: str, b: str) -> bool:
    return a == b or (a, b) in _COMPATIBLE or (b, a) in _COMPATIBLE


def geometry_sides_with(pair: dict, label: str, stated: str) -> bool:
    """Whether the boxes (and depths, where the pair has them) side with task 1's ``label`` against a
    sentence stating ``stated``: they rule the sentence out and not the label, or they decide the
    label and ``stated`` cannot be true beside it. Otherwise it is one answer of the model against
    another, and the sentence is not overwritten."""
    sb, ob = pair.get("subject_box"), pair.get("object_box")
    if sb is None or ob is None:
        return False
    depths = BoxDepths.from_pair(pair)
    if geometry_contradicts(label, sb, ob, depths):
        return False
    if geometry_contradicts(stated, sb, ob, depths):
        return True
    return geometric_relation(sb, ob, depths) == label and not compatible(stated, label)


def _overrule(pair: dict, sentence: str | None, why: str | None, label: str) -> bool:
    """A sentence stating another relation than ``label`` that the geometry does not overrule."""
    if why not in ("disagrees", "truncated"):
        return False
    stated = parse_relation(sentence or "", pair["subject"], pair["object"])
    if stated is None or stated == label or (why == "truncated" and compatible(stated, label)):
        return False  # a cut-off sentence that can be true beside task 1 is safely finished by it
    return not geometry_sides_with(pair, label, stated)


def plan(pair: dict, truncated: dict[int, bool], tasks: list[int]) -> tuple[list[Repair], list[str], dict]:
    """What to repair in one generated pair: (repairs, flags, refined texts kept as they are).

    ``truncated`` says per task whether its answer hit the token budget (task 3: its last sentence).
    The third value holds the refined text that needs no repair: ``{"task2": str | None,
    "task3": list[str | None], "task2_source": str | None, "task3_sources": list[str | None]}``
    with None in every slot a repair will fill (or a cut-off sentence that is left out)."""
    flags: list[str] = []
    kept: dict = {"task2": None, "task3": None, "task2_source": None, "task3_sources": None}
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
        if why is None or (why == "disagrees" and _overrule(pair, pair["description"], why, label)):
            kept["task2"], kept["task2_source"] = pair["description"], MODEL
            if why:
                flags.append("kept_disagreeing:task2 (geometry cannot decide)")
        elif why == "truncated" and _overrule(pair, pair["description"], why, label):
            flags.append("not_repaired:task2 (cut off, disagrees with task 1)")
        else:
            repairs.append(Repair(2, 0, _prefix(subject, label, object_, 0), why))
    if 3 in tasks:
        slots: list[str | None] = []
        sources: list[str | None] = []
        for i in range(SENTENCES):
            sentence = sentences[i] if i < len(sentences) else None
            last_cut = truncated.get(3) and i == len(sentences) - 1
            why = judge(sentence, bool(last_cut), subject, object_, label)
            keep = why is None or (why == "disagrees" and _overrule(pair, sentence, why, label))
            slots.append(sentence if keep else None)
            sources.append(MODEL if keep else None)
            if keep and why:
                flags.append(f"kept_disagreeing:task3.{i} (geometry cannot decide)")
            elif why == "truncated" and _overrule(pair, sentence, why, label):
                flags.append(f"not_repaired:task3.{i} (cut off, disagrees with task 1)")
            elif not keep:
                repairs.append(Repair(3, i, _prefix(subject, label, object_, i), why))
        kept["task3"], kept["task3_sources"] = slots, sources
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


def source_of(repair: Repair, sentence: str) -> str:
    """Who wrote a repaired sentence: the forced opening alone, or the opening and the model's ending."""
    return TEMPLATE if sentence == repair.prefix + "." else COMPLETED


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
