"""Task prompts (verbatim) and how the answers of tasks 1-3 are picked."""

from __future__ import annotations

import pytest

from vsd.data.prompts import TASK_NAMES, answer, open_descriptions, single_description, task_prompt
from vsd.data.records import VSDRecord


def rec(captions=(), v2=None, relation="on", subject="cup", object="table") -> VSDRecord:
    return VSDRecord(
        dataset="t",
        img_id="9",
        record_index=0,
        triple_index=0,
        subject=subject,
        object=object,
        relation=relation,
        subject_box_px=(1, 2, 3, 4),
        object_box_px=(1, 2, 3, 4),
        captions=tuple(captions),
        caption_v2=v2,
    )


def test_prompts_are_the_papers_verbatim():
    assert task_prompt(1, "cup", "table") == (
        "Given the image, choose the most appropriate preposition to complete the sentence: 'The cup is "
        "[BLANK] the table'. Select from: on, in, next to, under, above, behind, in front of, to the left "
        "of, to the right of."
    )
    assert task_prompt(2, "cup", "table") == (
        "Based on the image, provide a concise textual description or phrase of the single spatial "
        "relationship between the two objects cup and table."
    )
    assert task_prompt(3, "cup", "table") == (
        "Using the image as a reference, generate three detailed and diverse textual descriptions that "
        "describe the spatial relationship between the two objects cup and table."
    )
    assert TASK_NAMES == {1: "classification", 2: "single_description", 3: "open_description"}
    with pytest.raises(ValueError):
        task_prompt(4, "a", "b")


def test_task1_is_the_relation():
    assert answer(1, rec(relation="in front of")).text == "in front of"


def test_task2_prefers_an_agreeing_vsdv2_sentence():
    r = rec(["a cup on a table ."], v2="The white cup is sitting on the wooden table.")
    a = single_description(r)
    assert a.text == "The white cup is sitting on the wooden table." and a.sources == ("vsdv2",)


def test_task2_falls_back_to_the_first_agreeing_vsdv1_caption():
    r = rec(
        ["a cup near a plate.", "a cup on a table .", "the cup is on the table."],
        v2="The table is next to the cup.",
    )  # VSDv2 disagrees with the triple
    a = single_description(r)
    assert a.text == "a cup on a table." and a.sources == ("vsdv1",)


def test_task2_template_when_no_caption_states_the_relation():
    a = single_description(rec(["a cup under a table"], relation="to the left of"))
    assert a.text == "The cup is to the left of the table." and a.sources == ("template",)


def test_task3_three_agreeing_lines_vsdv2_last_deterministic_per_seed():
    caps = [f"{d} cup is on {e} table." for d in ("a", "the", "one") for e in ("a", "the", "that")]
    r = rec(caps + ["a cup beside a table."], v2="A white cup stands on top of the table.")
    a = open_descriptions(r, seed=0)
    lines = a.text.split("\n")
    assert len(lines) == 3 and lines[2] == "A white cup stands on top of the table."
    assert a.sources == ("vsdv1", "vsdv1", "vsdv2")
    assert all(line in caps for line in lines[:2]) and lines[0] != lines[1]
    assert caps.index(lines[0]) < caps.index(lines[1])  # file order kept
    assert open_descriptions(r, seed=0) == a
    assert len({open_descriptions(r, seed=s).text for s in range(10)}) > 1


def test_task3_dedupes_and_pads_with_distinct_templates():
    r = rec(["a cup on a table", "A cup on a table.", "a cup under a table"])  # one agreeing after dedupe
    a = open_descriptions(r)
    lines = a.text.split("\n")
    assert lines == ["a cup on a table", "The cup is on the table.", "There is a cup on the table."]
    assert a.sources == ("vsdv1", "template", "template")
    empty = open_descriptions(rec())
    assert len(set(empty.text.split("\n"))) == 3 and empty.sources == ("template",) * 3
