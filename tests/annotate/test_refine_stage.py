"""The refine stage never polishes a cut-off sentence into looking complete, and prefers the repair."""

from __future__ import annotations

from vsd.annotate.items import from_table, new_item, new_pair, to_table
from vsd.annotate.stages.refine import RefineStageUDF, refinable
from vsd.refine.config import RefineConfig

LEFT, RIGHT = [0.05, 0.4, 0.25, 0.6], [0.6, 0.4, 0.9, 0.6]


def _pair(**cols):
    p = new_pair(0, "cup", "plate", LEFT, RIGHT)
    p.update(relation="to the left of", **cols)
    return p


def _refine(pair):
    [item] = from_table(
        RefineStageUDF(RefineConfig(mode="rules"))(to_table([new_item("file:///x.jpg", "x", [pair])]))
    )
    return item["pairs"][0]


def test_a_truncated_sentence_is_left_out_and_the_pair_is_not_counted_refined():
    pair = _pair(
        description="The cup is to the left of",
        descriptions=["The cup is left of the plate.", "A cup and a plate are on the"],
        flags=["truncated:task2", "truncated:task3.1"],
    )
    texts, left_out = refinable(pair)
    assert texts == {"task3": ["The cup is left of the plate."]} and left_out
    out = _refine(pair)
    assert out["refined_description"] is None  # never "The cup is to the left of."
    assert all("on the" not in s for s in out["refined_descriptions"])
    assert out["refine_status"] != "refined" and "refine: a truncated sentence is not refined" in out["flags"]


def test_a_repaired_text_is_what_gets_refined():
    pair = _pair(
        description="The cup is to the left of",
        flags=["truncated:task2", "repaired:task2 (truncated)"],
        refined_description="The cup is to the left of the plate.",
    )
    assert refinable(pair) == ({"task2": ["The cup is to the left of the plate."]}, False)
    out = _refine(pair)
    assert out["refined_description"].startswith("The cup is to the left of the plate")


def test_only_cut_text_is_skipped_with_a_reason():
    pair = _pair(description="The cup is to the left of", flags=["truncated:task2"])
    out = _refine(pair)
    assert out["refine_status"] == "skipped" and out["refined_description"] is None


def test_who_wrote_each_published_sentence_follows_it_through_refinement():
    pair = _pair(
        description="the cup is left of the plate",  # the rules refiner capitalises and closes it
        descriptions=["The cup is to the left of the plate.", "The cup is left of the plate."],
    )
    out = _refine(pair)
    assert out["description_source"] == "refined"
    assert out["descriptions_source"] == ["model", "model"]
    assert out["refine_status"] != "filled"


def test_a_row_with_filled_in_text_is_not_reported_refined():
    pair = _pair(
        description="The cup is left of the plate.",
        descriptions=["The cup is left of the plate."],
        refined_descriptions=[
            "The cup is left of the plate.",  # the model's, kept
            "The cup is left of the plate.",  # a repeat the rules refiner drops: sources shift with it
            "There is a cup to the left of the plate.",
        ],
        descriptions_source=["model", "model_completed", "template"],
        flags=["repaired:task3.1 (missing)", "repaired:task3.2 (missing)"],
    )
    out = _refine(pair)
    assert out["refined_descriptions"] == [
        "The cup is left of the plate.",
        "There is a cup to the left of the plate.",
    ]
    assert out["descriptions_source"] == ["model", "template"]
    assert out["refine_status"] == "filled"
