"""Where a sentence names an object (vsd/relations/mentions.py)."""

from __future__ import annotations

from vsd.relations import find_mentions, tokenize


def test_tokenize_expands_contractions_and_keeps_possessives():
    assert tokenize("There's a cat; it isn't on the man's mat.") == [
        "there",
        "is",
        "a",
        "cat",
        ";",
        "it",
        "is",
        "not",
        "on",
        "the",
        "man",
        "'s",
        "mat",
        ".",
    ]
    assert tokenize("in-front of") == ["in", "front", "of"]


def test_find_mentions_tiers():
    toks = tokenize("a young man stands by the tv near a lightbulb and some ballons")
    assert find_mentions(toks, "young man") == [(1, 3)]  # whole name
    assert find_mentions(toks, "man walking") == [(2, 3)]  # head noun, not the -ing word
    assert find_mentions(toks, "television") == [(6, 7)]  # same thing
    assert find_mentions(toks, "bulb") == [(9, 10)]  # compound
    assert find_mentions(toks, "balloons") == [(12, 13)]  # near spelling
    assert find_mentions(toks, "person") == [(2, 3)]  # person word
    assert find_mentions(toks, "giraffe") == []
