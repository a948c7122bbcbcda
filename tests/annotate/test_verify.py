"""Verify: descriptions against the task-1 label, the label against the boxes."""

from __future__ import annotations

from vsd.annotate.items import new_pair
from vsd.annotate.stages.verify import check

LEFT, RIGHT = [0.05, 0.4, 0.25, 0.6], [0.6, 0.4, 0.9, 0.6]


def pair(relation, description, descriptions, sb=LEFT, ob=RIGHT):
    p = new_pair(0, "cup", "plate", sb, ob)
    p.update(relation=relation, description=description, descriptions=descriptions)
    check(p)
    return p


def test_agreeing_answers_are_consistent():
    p = pair("to the left of", "The cup is to the left of the plate.", ["A cup sits left of a plate."])
    assert p["geometry_relation"] == "to the left of"
    assert p["consistent"] is True and p["flags"] == []


def test_disagreements_and_geometry_are_flagged():
    p = pair(
        "to the right of",
        "The cup is to the left of the plate.",
        ["The cup is to the right of the plate.", "Nothing to see here."],
    )
    assert "geometry_contradicts:task1" in p["flags"]
    assert "description_disagrees:task2" in p["flags"]
    assert "no_relation_stated:task3.1" in p["flags"]
    assert "description_disagrees:task3.0" not in p["flags"]
    assert p["consistent"] is False


def test_depth_is_never_contradicted_and_unparsed_text_is_not_inconsistent():
    p = pair("behind", "zzz", [])
    assert p["flags"] == ["no_relation_stated:task2"] and p["consistent"] is True


def test_a_label_outside_the_nine_is_flagged():
    p = pair("beside-ish", "The cup is next to the plate.", [])
    assert "not_a_relation:task1" in p["flags"] and p["consistent"] is False


def test_scene_level_has_nothing_to_check():
    p = new_pair(-1)
    p.update(descriptions=["A cup on a table."])
    check(p)
    assert p["consistent"] is None and p["flags"] == []
