"""The 9 VSD spatial relations, their inverses and the phrasings that name them.

Everything that has to agree on what a relation *is* imports it from here: the reader validates
triples against `RELATIONS`, the instruction builder lists them in the task-1 prompt (paper order),
the parser reads `SYNONYMS` into its phrase table, and geometry checks a relation name against
`INVERSE` before judging it.
"""

from __future__ import annotations

import re

#: The paper's order (the task-1 prompt lists them like this).
RELATIONS: tuple[str, ...] = (
    "on",
    "in",
    "next to",
    "under",
    "above",
    "behind",
    "in front of",
    "to the left of",
    "to the right of",
)

#: The relation seen from the object's side: ``A rel B`` => ``B INVERSE[rel] A``.
#: ``on`` maps to ``under`` (whatever A rests on is under A), but ``under`` maps back to ``above``:
#: being under something says nothing about contact. ``in`` has no inverse among the 9 (``contains``
#: is not a VSD relation), so a sentence stating "the box holds the cup" from the container's side
#: gives ``None`` rather than a wrong relation.
INVERSE: dict[str, str | None] = {
    "on": "under",
    "in": None,
    "next to": "next to",
    "under": "above",
    "above": "under",
    "behind": "in front of",
    "in front of": "behind",
    "to the left of": "to the right of",
    "to the right of": "to the left of",
}


def _side_phrases(side: str) -> list[str]:
    """'to the left of', 'on the left side of', 'left hand side of', ... for one side."""
    out = []
    for prep in ("to ", "on ", "at ", "in ", ""):
        for det in ("the ", ""):
            for tail in ("", " side", " hand side", " handside"):
                out.append(f"{prep}{det}{side}{tail} of")
    return out


#: Phrasings seen in VSD captions (and common English) -> relation. Multi-word phrases win over
#: their prefixes at parse time (longest match), so "in front of" never reads as "in".
SYNONYMS: dict[str, str] = {
    # on
    "on": "on",
    "upon": "on",
    "onto": "on",
    "atop": "on",
    "on top of": "on",
    "ontop of": "on",
    "on the top of": "on",
    "up on": "on",
    "on top": "on",
    # in
    "in": "in",
    "inside": "in",
    "inside of": "in",
    "within": "in",
    "into": "in",
    "in the middle of": "in",
    "in the center of": "in",
    "in the centre of": "in",
    # next to
    "next to": "next to",
    "nextto": "next to",
    "beside": "next to",
    "besides": "next to",
    "beside of": "next to",
    "alongside": "next to",
    "alongside of": "next to",
    "along side": "next to",
    "along side of": "next to",
    "by": "next to",
    "near": "next to",
    "near to": "next to",
    "nearby": "next to",
    "near by": "next to",
    "close to": "next to",
    "close by": "next to",
    "adjacent to": "next to",
    "by the side of": "next to",
    "at the side of": "next to",
    "to the side of": "next to",
    "against": "next to",
    "between": "next to",
    "in between": "next to",
    "on one side of": "next to",
    "on either side of": "next to",
    "on both sides of": "next to",
    "on each side of": "next to",
    # under
    "under": "under",
    "underneath": "under",
    "underneath of": "under",
    "under neath": "under",
    "beneath": "under",
    "below": "under",
    "down below": "under",
    # above
    "above": "above",
    "over": "above",
    "up above": "above",
    "overtop of": "above",
    "over top of": "above",
    "higher than": "above",
    # behind
    "behind": "behind",
    "in back of": "behind",
    "beyond": "behind",
    # in front of
    "in front of": "in front of",
    "infront of": "in front of",
    "in front": "in front of",
    "infront": "in front of",
    "ahead of": "in front of",
    # left / right
    **{p: "to the left of" for p in _side_phrases("left")},
    **{p: "to the right of" for p in _side_phrases("right")},
    "leftof": "to the left of",
    "rightof": "to the right of",
    "to the left": "to the left of",
    "on the left": "to the left of",
    "to the right": "to the right of",
    "on the right": "to the right of",
}
for _rel in RELATIONS:
    SYNONYMS.setdefault(_rel, _rel)

# Answers a model gives to task 1 without the preposition around the word.
_SINGLE_WORD_ANSWERS = {
    "left": "to the left of",
    "right": "to the right of",
    "front": "in front of",
    "next": "next to",
    "top": "on",
}


def normalize_relation(text: str) -> str | None:
    """A relation phrase or synonym (``on top of``, ``beneath``, ``left of``, ``beside``...) ->
    one of `RELATIONS`, or ``None`` when the text is not a relation phrase.

    Case, hyphens, surrounding quotes/punctuation, a leading ``is``/``are`` and a trailing article
    are ignored, so a task-1 answer like ``"In front of."`` or ``is to the left of the`` normalises.
    """
    words = re.findall(r"[a-z]+", text.lower().replace("-", " "))
    while words and words[0] in ("is", "are", "the", "it", "its", "answer"):
        words = words[1:]
    while words and words[-1] in ("the", "a", "an"):
        words = words[:-1]
    phrase = " ".join(words)
    return SYNONYMS.get(phrase) or _SINGLE_WORD_ANSWERS.get(phrase)
