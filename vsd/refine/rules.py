"""Deterministic refinement for offline runs: the mechanical fixes an editor would make.

Generated and crowd-sourced captions share the same small defects (double spaces, lower-case
starts, missing full stops, "a apple", "the the", the same sentence twice in one group). Fixing
them needs no model, is reproducible byte for byte, and still goes through the guardrail.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from vsd.refine.base import GuardedRefiner, RewriteRequest

# Words spelt with a vowel but said with a consonant ("a unicorn") and the reverse ("an hour").
_CONSONANT_SOUND = ("uni", "use", "usu", "usa", "uti", "ute", "eu", "ewe", "one", "once", "ubiq")
_VOWEL_SOUND = ("hour", "honest", "honor", "honour", "heir")
_REPEATABLE = r"a|an|the|is|are|of|on|in|to|at|by"

_SPACES = re.compile(r"[^\S\n]+")  # not newlines: a second line is for the guardrail to reject
_SPACE_BEFORE_PUNCT = re.compile(r" ([,.;:!?])")
_REPEATED_WORD = re.compile(rf"\b({_REPEATABLE})(\s+\1\b)+", re.IGNORECASE)
_ARTICLE = re.compile(r"\b(a|an)(\s+)([A-Za-z][\w-]*)", re.IGNORECASE)
_TRAILING = re.compile(r"[ ,;:]*$")


def _wants_an(word: str) -> bool:
    low = word.lower()
    if low.startswith(_VOWEL_SOUND):
        return True
    return low[0] in "aeiou" and not low.startswith(_CONSONANT_SOUND)


def _fix_article(match: re.Match) -> str:
    article, space, word = match.groups()
    right = "an" if _wants_an(word) else "a"
    if article[0].isupper():
        right = right.capitalize()
    return f"{right}{space}{word}"


def tidy(sentence: str) -> str:
    """Whitespace, repeated function words, a/an, a capital first letter and a final full stop."""
    text = _SPACES.sub(" ", sentence).strip()
    if not text:
        return text
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = _REPEATED_WORD.sub(r"\1", text)
    text = _ARTICLE.sub(_fix_article, text)
    text = _TRAILING.sub("", text)
    text = re.sub(r"([.!?])\1+$", r"\1", text)  # "table.." -> "table."
    if text and text[-1] not in ".!?":
        text += "."
    for k, ch in enumerate(text):
        if ch.isalpha():
            text = text[:k] + ch.upper() + text[k + 1 :]
            break
    return text


class RulesRefiner(GuardedRefiner):
    """``mode: rules``: one candidate per sentence, its tidied form; repeats are dropped."""

    drop_duplicates = True

    def __init__(self, batch_size: int = 256):
        self.batch_size = batch_size

    def _candidates(self, requests: Sequence[RewriteRequest]) -> list[list[str]]:
        return [[tidy(r.sentence)] for r in requests]
