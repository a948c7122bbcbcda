"""Rules mode: mechanical fixes only, reproducible, guarded, one outcome per item."""

from __future__ import annotations

import pytest

from vsd.refine import RefineConfig, RefineItem, make_refiner
from vsd.refine.rules import tidy


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("the cup is on  the table", "The cup is on the table."),
        ("  The cup is on the table .  ", "The cup is on the table."),
        ("a apple is in a bowl", "An apple is in a bowl."),
        ("An cup is next to an umbrella", "A cup is next to an umbrella."),
        (
            "a umbrella is next to a unicorn and an hour glass",
            "An umbrella is next to a unicorn and an hour glass.",
        ),
        ("the the dog is under the chair,", "The dog is under the chair."),
        ("The dog is is under the chair..", "The dog is under the chair."),
        ("is the cup on the table?", "Is the cup on the table?"),
        ("'the cup' is on the table", "'The cup' is on the table."),
    ],
)
def test_tidy(raw, clean):
    assert tidy(raw) == clean


def test_tidy_is_idempotent():
    for raw in ("a apple is in a bowl", "the the dog is under the chair,"):
        assert tidy(tidy(raw)) == tidy(raw)


def refine(items):
    with make_refiner(RefineConfig(mode="rules")) as refiner:
        return refiner.refine(items)


def test_rules_mode_fixes_a_group_and_drops_repeats():
    item = RefineItem(
        "cup",
        "table",
        "on",
        [
            "the cup is on  the table",
            "A cup sits on top of a table",
            "The cup is on the table.",  # a repeat of sentence 1 once tidied
        ],
    )
    [out] = refine([item])
    assert out.sentences == ["The cup is on the table.", "A cup sits on top of a table."]
    assert out.status == "refined"
    assert out.reasons == ["sentence 3: repeats sentence 1, dropped"]


def test_already_clean_sentences_count_as_refined_without_reasons():
    [out] = refine([RefineItem("dog", "chair", "under", ["The dog is under the chair."])])
    assert (out.sentences, out.status, out.reasons) == (["The dog is under the chair."], "refined", [])


def test_a_sentence_the_guardrail_rejects_is_kept_with_its_reason():
    # Tidying cannot change facts, but a sentence with a line break stays as written.
    item = RefineItem(
        "dog", "chair", "under", ["the dog is under the chair", "the dog lies\nunder the chair"]
    )
    [out] = refine([item])
    assert out.sentences == ["The dog is under the chair.", "the dog lies\nunder the chair"]
    assert out.status == "partial"
    assert out.reasons == ["sentence 2: rewrite spans several lines"]


def test_one_outcome_per_item_in_order_including_empty_items():
    items = [
        RefineItem("cup", "table", "on", ["the cup is on the table"]),
        RefineItem("cup", "table", "on", []),
        RefineItem("", "", None, ["a dog is next to a cat", ""]),
    ]
    outs = refine(items)
    assert len(outs) == 3
    assert outs[0].sentences == ["The cup is on the table."]
    assert (outs[1].sentences, outs[1].status, outs[1].reasons) == ([], "skipped", ["no sentences to refine"])
    assert outs[2].sentences == ["A dog is next to a cat.", ""]
    assert outs[2].status == "partial"
    assert outs[2].reasons == ["sentence 2: empty, nothing to refine"]


def test_off_mode_passes_everything_through_as_skipped():
    items = [RefineItem("cup", "table", "on", ["the cup is on  the table"])]
    with make_refiner(RefineConfig(mode="off")) as refiner:
        [out] = refiner.refine(items)
    assert out.sentences == ["the cup is on  the table"]
    assert out.status == "skipped" and out.reasons == ["refinement is off (refine.mode=off)"]
