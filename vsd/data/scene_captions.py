"""Captions of the synthetic scenes (`vsd.data.synthetic`): VSDv1-style short sentences in varied
phrasings and one longer VSDv2-style sentence, each stating the scene's relation in words the
relation parser knows (so the instruction builder can use every one of them).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from vsd.relations import INVERSE, RELATIONS

if TYPE_CHECKING:
    from vsd.data.synthetic import Scene

# Phrasings per relation, all known to `relations.SYNONYMS`; the verbs in front are free text.
PHRASES: dict[str, tuple[str, ...]] = {
    "on": ("on", "on top of", "atop", "on the top of"),
    "in": ("in", "inside", "inside of", "within", "in the middle of"),
    "next to": ("next to", "beside", "near", "close to", "adjacent to", "alongside"),
    "under": ("under", "below", "beneath", "underneath"),
    "above": ("above", "over", "higher than"),
    "behind": ("behind", "in back of"),
    "in front of": ("in front of",),
    "to the left of": ("to the left of", "left of", "on the left side of", "at the left of"),
    "to the right of": ("to the right of", "right of", "on the right side of", "at the right of"),
}
# Participles that read naturally before each relation's phrase ("a red circle resting on ...").
VERBS: dict[str, tuple[str, ...]] = {
    "on": ("resting", "sitting", "lying", "placed"),
    "in": ("placed", "drawn", "sitting"),
    "behind": ("partly hidden", "placed", "standing"),
    "in front of": ("placed", "standing", "drawn"),
}
_DEFAULT_VERBS = ("placed", "drawn", "located", "positioned")
# Relations whose inverse reads back to the same relation (``on`` -> ``under`` -> ``above`` does not).
_INVERTIBLE = tuple(r for r in RELATIONS if INVERSE[r] and INVERSE[INVERSE[r]] == r)


def _a(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def captions(rng: random.Random, scene: Scene) -> list[str]:
    """3-6 short VSDv1-style captions in different phrasings (relation stated subject -> object,
    or from the object's side for the relations whose inverse reads back unambiguously)."""
    s, o, rel = scene.subject.name, scene.object.name, scene.relation
    phrases = list(PHRASES[rel])
    rng.shuffle(phrases)
    frames = [
        "the {s} is {p} the {o}.",
        "{a_s} {s} {p} {a_o} {o}",
        "there is {a_s} {s} {p} the {o}.",
        "{a_s} {s} {verb} {p} {a_o} {o}.",
        "{a_size} {size} {s} is {verb} {p} the {o}.",
        "the {s} is shown {p} the {o}.",
    ]
    rng.shuffle(frames)
    verbs = VERBS.get(rel, _DEFAULT_VERBS)
    size = rng.choice(["small", "large", "little", "big"])
    out = []
    for i in range(rng.randint(3, 6)):
        text = frames[i % len(frames)].format(
            s=s,
            o=o,
            p=phrases[i % len(phrases)],
            a_s=_a(s),
            a_o=_a(o),
            size=size,
            a_size=_a(size),
            verb=rng.choice(verbs),
        )
        out.append(text[0].upper() + text[1:] if i == 0 else text)
    if rel in _INVERTIBLE and rng.random() < 0.6:
        inv = rng.choice(PHRASES[INVERSE[rel]][:2])
        out.append(f"the {o} is {inv} the {s}.")
    return out


def caption_v2(rng: random.Random, scene: Scene) -> str:
    """One longer scene-level sentence about the pair (VSDv2 style), sometimes naming a distractor."""
    s, o, rel = scene.subject.name, scene.object.name, scene.relation
    p = rng.choice(PHRASES[rel])
    opening = rng.choice(
        [
            f"In this picture with a {scene.background} background, ",
            "In this simple drawing, ",
            f"Against a plain {scene.background} backdrop, ",
            "",
        ]
    )
    adj = rng.choice(["small", "bright", "solid", "flat", "large"])
    core = f"the {adj} {s} is {p} the {o}"
    tail = ""
    if scene.distractors and rng.random() < 0.5:
        d = scene.distractors[0].name
        tail = f", while {_a(d)} {d} can also be seen far from them"
    sentence = opening + core + tail + "."
    return sentence[0].upper() + sentence[1:]
