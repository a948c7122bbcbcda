"""Relation phrases in a tokenised sentence: a word trie over the vocabulary's synonyms and the
lexicon's verb phrases, scanned longest match first (so "in front of" is never "in"), each match
read forward and backward and marked when it dangles ("the pole on the left": no object follows).
"""

from __future__ import annotations

from dataclasses import dataclass

from vsd.relations.lexicon import (
    ADVERB_ONLY,
    BOUNDARY,
    DANGLING_PHRASES,
    DETERMINERS,
    NP_BREAK,
    PASSIVE_BY,
    POSITION_MODIFIERS,
    POSITIONS,
    STRONG_VERBS,
    VERB_PHRASES,
    is_verb,
)
from vsd.relations.vocabulary import INVERSE, SYNONYMS


def _build_trie() -> dict:
    trie: dict = {}
    table = {p: (r, INVERSE[r]) for p, r in SYNONYMS.items()} | VERB_PHRASES
    for phrase, readings in table.items():
        node = trie
        for w in phrase.split():
            node = node.setdefault(w, {})
        node[None] = (readings, phrase)
    return trie


_TRIE = _build_trie()


@dataclass(frozen=True)
class Occurrence:
    """A relation phrase in the sentence, tokens [start, end). `forward` is the relation from the
    phrase's left argument to its right one, `backward` from right to left (``None``: not one of
    the 9). `dangling`: a location modifier ("in the middle") whose only object can be the
    position word ending at `dangle_end`."""

    start: int
    end: int
    forward: str | None
    backward: str | None
    dangling: bool
    dangle_end: int


def find_relations(toks: list[str]) -> list[Occurrence]:
    """Longest-match scan, left to right, non-overlapping."""
    occs: list[Occurrence] = []
    i, n = 0, len(toks)
    while i < n:
        node, best, j = _TRIE, None, i
        while j < n and toks[j] in node:
            node = node[toks[j]]
            j += 1
            if None in node:
                best = (j, *node[None])
        if best is None:
            i += 1
            continue
        end, (forward, backward), phrase = best
        after = toks[end] if end < n else "."
        if phrase in ADVERB_ONLY and i > 0 and toks[i - 1] in DETERMINERS:
            i = end  # "a nearby toy": an adjective, not a relation
            continue
        if phrase in ("on the left", "on the right") and not (after in BOUNDARY or after in STRONG_VERBS):
            end, forward, backward, phrase = i + 1, "on", INVERSE["on"], "on"  # "on the right track"
        if phrase == "by" and i > 0 and (toks[i - 1] in PASSIVE_BY or toks[i - 1].endswith("ed")):
            i = end  # "covered by snow", "held by a man": agent, not place
            continue
        dangling, dangle_end = _dangling(toks, end, phrase)
        occs.append(Occurrence(i, end, forward, backward, dangling, dangle_end))
        i = end
    return occs


def _dangling(toks: list[str], end: int, phrase: str) -> tuple[bool, int]:
    if phrase.split()[1:2] in (["his"], ["her"], ["its"], ["their"]):
        return True, end
    if phrase in DANGLING_PHRASES:
        return (end >= len(toks) or toks[end] in BOUNDARY or toks[end] in STRONG_VERBS), end
    if phrase not in ("in", "on", "at"):
        return False, end
    k = end
    if k < len(toks) and toks[k] in DETERMINERS:
        k += 1
    last = None
    while k < len(toks) and (toks[k] in POSITION_MODIFIERS or toks[k] in POSITIONS):
        last = k
        k += 1
    if last is None or toks[last] not in POSITIONS:
        return False, end
    if k < len(toks) and (
        toks[k] == "of" or not (toks[k] in NP_BREAK or toks[k] in _TRIE or is_verb(toks[k]))
    ):
        return False, end  # "in the middle of the road", "on the top floor": a real object follows
    return True, last + 1
