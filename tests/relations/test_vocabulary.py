"""The relation vocabulary: paper order, inverses, synonyms (vsd/relations/vocabulary.py)."""

from __future__ import annotations

import pytest

from vsd.relations import INVERSE, RELATIONS, SYNONYMS, normalize_relation


def test_relations_in_paper_order():
    assert RELATIONS == (
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


def test_inverse_reads_back_except_contact_and_containment():
    assert set(INVERSE) == set(RELATIONS)
    for rel, inv in INVERSE.items():
        assert inv is None or inv in RELATIONS
        if rel not in ("on", "in"):
            assert INVERSE[inv] == rel  # above<->under, behind<->in front of, left<->right, next to
    assert INVERSE["on"] == "under" and INVERSE["under"] == "above"  # under says nothing of contact
    assert INVERSE["in"] is None  # "contains" is not a VSD relation


@pytest.mark.parametrize(
    "text,expected",
    [
        ("on top of", "on"),
        ("atop", "on"),
        ("beneath", "under"),
        ("below", "under"),
        ("underneath", "under"),
        ("inside", "in"),
        ("inside of", "in"),
        ("within", "in"),
        ("beside", "next to"),
        ("near", "next to"),
        ("by", "next to"),
        ("close to", "next to"),
        ("left of", "to the left of"),
        ("on the left side of", "to the left of"),
        ("right of", "to the right of"),
        ("in front", "in front of"),
        ("infront of", "in front of"),
        ("in back of", "behind"),
        ("over", "above"),
        ("In front of.", "in front of"),
        ("'to the left of'", "to the left of"),
        ("is under the", "under"),
        ("left", "to the left of"),
        ("ON", "on"),
        ("in-front of", "in front of"),
        ("sideways", None),
        ("", None),
        ("the cat", None),
        ("inside of of", None),
    ],
)
def test_normalize_relation(text, expected):
    assert normalize_relation(text) == expected


def test_every_relation_and_synonym_normalises_to_a_relation():
    for rel in RELATIONS:
        assert normalize_relation(rel) == rel
    for phrase, rel in SYNONYMS.items():
        assert rel in RELATIONS
        assert normalize_relation(phrase) == rel, phrase
