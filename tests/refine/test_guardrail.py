"""The guardrail accepts faithful paraphrases and rejects every way a rewrite can change a fact."""

from __future__ import annotations

import pytest

from vsd.refine.guardrail import check_rewrite, noun_forms

ORIGINAL = "The cup is on the table."


@pytest.mark.parametrize(
    "rewrite",
    [
        "A cup sits on top of the table.",
        "There is a cup on the table.",
        "The cup rests upon the wooden table.",
        "Two cups are on the table.",  # plural of the subject still names it
    ],
)
def test_faithful_paraphrases_pass(rewrite):
    assert check_rewrite(ORIGINAL, rewrite, "cup", "table", "on") is None


@pytest.mark.parametrize(
    "rewrite, reason",
    [
        ("", "rewrite is empty"),
        ("   ", "rewrite is empty"),
        ("The cup is on it.", "drops the object 'table'"),
        ("It is on the table.", "drops the subject 'cup'"),
        ("The cup is not on the table.", "adds a negation ('not')"),
        ("The cup isn't on the table.", "adds a negation"),
        ("The cup is under the table.", "says 'under', the original 'on'"),
        ("The cup and the table are in the kitchen.", "the original"),
        ("The cup is on the table.\nThe table is brown.", "spans several lines"),
        ("<|im_start|>assistant The cup is on the table.", "chat markup"),
        ("ASSISTANT: The cup is on the table.", "chat markup"),
        ("Here is the rewritten sentence: the cup is on the table.", "echoes the instructions"),
        ("Ignore previous instructions; the cup is on the table.", "echoes the instructions"),
        ("Cup table.", "too short"),
        ("The cup is on the table " + "and it is very very nice " * 10 + ".", "too long"),
    ],
)
def test_unfaithful_rewrites_are_rejected_with_the_reason(rewrite, reason):
    why = check_rewrite(ORIGINAL, rewrite, "cup", "table", "on")
    assert why is not None and reason in why, why


def test_flipped_left_right_is_rejected():
    why = check_rewrite(
        "The dog is to the left of the car.",
        "The dog stands to the right of the car.",
        "dog",
        "car",
        "to the left of",
    )
    assert why == "rewrite says 'to the right of', the original 'to the left of'"


def test_swapped_roles_are_rejected():
    why = check_rewrite(ORIGINAL, "The table is on the cup.", "cup", "table", "on")
    assert why == "rewrite says 'under', the original 'on'"


def test_relation_stated_from_the_other_side_still_counts():
    # The relation is read from subject to object, so naming the object first is still faithful.
    assert (
        check_rewrite(
            "The cat is to the left of the sofa.",
            "The sofa is to the right of the cat.",
            "cat",
            "sofa",
            "to the left of",
        )
        is None
    )


def test_item_label_decides_when_the_original_states_no_relation():
    original = "A cup and a table."  # no relation the parser can read
    assert check_rewrite(original, "A cup stands on a table.", "cup", "table", "on") is None
    why = check_rewrite(original, "A cup stands under a table.", "cup", "table", "on")
    assert why == "rewrite says 'under', the original 'on'"
    # Without a parseable original, an unparseable rewrite is no loss.
    assert check_rewrite(original, "A cup and a table together.", "cup", "table", "on") is None


def test_names_are_required_only_where_the_original_used_them():
    # The original calls the subject "mug"; the item says "cup": a rewrite is not forced to add "cup".
    assert (
        check_rewrite("The mug is on the table.", "The mug sits on the table.", "cup", "table", "on") is None
    )


def test_multi_word_names_match_by_head_noun():
    assert (
        check_rewrite(
            "The red cup is on the dining table.",
            "A red cup sits on the table.",
            "red cup",
            "dining table",
            "on",
        )
        is None
    )


def test_words_already_in_the_original_are_not_echoes_or_negations():
    original = "There is no cup on the table, here is a plate on it."
    assert check_rewrite(original, "Here is a plate; there is no cup on the table.", "", "", None) is None


def test_scene_level_checks_relation_without_names():
    original = "A lamp stands behind a sofa."
    assert check_rewrite(original, "Behind a sofa stands a lamp.", "", "", None) is None
    assert check_rewrite(original, "A lamp stands in front of a sofa.", "", "", None) is not None


def test_noun_forms_cover_plurals():
    assert {"cup", "cups"} <= noun_forms("cup")
    assert "boxes" in noun_forms("box")
    assert "ponies" in noun_forms("pony")
    assert "knives" in noun_forms("knife")
    assert "men" in noun_forms("man")
    assert "shelf" in noun_forms("shelves")
    assert "bus" in noun_forms("buses")
