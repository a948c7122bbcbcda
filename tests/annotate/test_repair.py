"""Descriptions you can train on: cut-off, missing and contradicting sentences are flagged, and the
refined columns get complete sentences stating task 1's relation -- unless the boxes disagree."""

from __future__ import annotations

from vsd.annotate.engines import EngineConfig
from vsd.annotate.engines.base import Answer, ImageRequest, ImageResult
from vsd.annotate.items import from_table, new_item, new_pair, to_table
from vsd.annotate.repair import REPAIR_TOKENS, Repair, finish, geometry_sides_with, judge, plan, source_of
from vsd.annotate.stages.generate import GenerateStageUDF
from vsd.relations import parse_relation

LEFT, RIGHT = [0.05, 0.4, 0.25, 0.6], [0.6, 0.4, 0.9, 0.6]


def _pair(relation="to the left of", description=None, descriptions=None, sb=LEFT, ob=RIGHT):
    p = new_pair(0, "cup", "plate", sb, ob)
    p.update(relation=relation, description=description, descriptions=descriptions, view=0)
    return p


def test_judge_names_why_a_sentence_cannot_be_trained_on():
    assert judge("The cup is to the left of the plate.", False, "cup", "plate", "to the left of") is None
    assert judge("The cup is to the left of", True, "cup", "plate", "to the left of") == "truncated"
    assert judge("A nice picture.", False, "cup", "plate", "to the left of") == "no_relation_stated"
    assert (
        judge("The cup is to the right of the plate.", False, "cup", "plate", "to the left of") == "disagrees"
    )
    assert judge(None, False, "cup", "plate", "to the left of") == "missing"


def test_plan_flags_truncation_and_short_task3_and_keeps_what_is_fine():
    p = _pair(description="The cup is close to", descriptions=["The cup is to the left of the plate."])
    repairs, flags, kept = plan(p, {1: False, 2: True, 3: False}, [1, 2, 3])
    assert flags == ["truncated:task2", "too_few_sentences:task3 (1 of 3)"]
    assert [(r.task, r.slot, r.why) for r in repairs] == [
        (2, 0, "truncated"),
        (3, 1, "missing"),
        (3, 2, "missing"),
    ]
    assert kept == {
        "task2": None,
        "task3": ["The cup is to the left of the plate.", None, None],
        "task2_source": None,
        "task3_sources": ["model", None, None],
    }
    for r in repairs:  # every forced start already states task 1's relation between the two
        assert parse_relation(r.prefix + ".", "cup", "plate") == "to the left of"
    assert len({r.prefix for r in repairs if r.task == 3}) == 2  # three different openings


def test_a_cut_last_task3_sentence_counts_short():
    p = _pair(
        description="The cup is to the left of the plate.",
        descriptions=["The cup is to the left of the plate.", "There is a cup left of"],
    )
    repairs, flags, _ = plan(p, {2: False, 3: True}, [1, 2, 3])
    assert flags == ["truncated:task3.1", "too_few_sentences:task3 (1 of 3)"]
    assert [(r.slot, r.why) for r in repairs] == [(1, "truncated"), (2, "missing")]


def test_nothing_is_repaired_when_task1_and_the_boxes_disagree():
    p = _pair(
        relation="to the right of",
        description="The cup is to the left of the plate.",
        descriptions=["The cup is to the left of the plate."] * 3,
    )
    repairs, flags, kept = plan(p, {}, [1, 2, 3])
    assert repairs == [] and kept == {
        "task2": None,
        "task3": None,
        "task2_source": None,
        "task3_sources": None,
    }
    assert flags == ["not_repaired (task 1 and geometry disagree)"]


def test_finish_keeps_a_clean_ending_and_drops_a_cut_or_contradicting_one():
    r = Repair(2, 0, "The cup is to the left of the plate", "truncated")
    assert (
        finish(r, ", near the edge.", False, "cup", "plate", "to the left of")
        == "The cup is to the left of the plate, near the edge."
    )
    assert (
        finish(r, "and the", True, "cup", "plate", "to the left of") == "The cup is to the left of the plate."
    )
    assert finish(r, "", False, "cup", "plate", "to the left of") == "The cup is to the left of the plate."
    assert (
        finish(r, "ge square.", False, "cup", "plate", "to the left of")
        == "The cup is to the left of the plate."
    )
    assert (
        finish(r, "while a ball lies near them.", False, "cup", "plate", "to the left of")
        == "The cup is to the left of the plate while a ball lies near them."
    )


OVERLAP_S, OVERLAP_O = [0.3, 0.3, 0.6, 0.6], [0.35, 0.35, 0.65, 0.65]  # 2-D cannot order them in depth


def test_a_sentence_task1_disagrees_with_is_kept_when_the_geometry_cannot_decide():
    # task 1 says behind, the model's sentences say in front of; boxes without depth cannot tell:
    # the model's own sentences are published (flagged), none is overwritten with task 1's word
    p = _pair(
        relation="behind",
        description="The cup is in front of the plate.",
        descriptions=["The cup is in front of the plate.", "The cup is behind the plate.", "A nice cup."],
        sb=OVERLAP_S,
        ob=OVERLAP_O,
    )
    repairs, flags, kept = plan(p, {}, [1, 2, 3])
    assert kept["task2"] == "The cup is in front of the plate." and kept["task2_source"] == "model"
    assert kept["task3"] == ["The cup is in front of the plate.", "The cup is behind the plate.", None]
    assert kept["task3_sources"] == ["model", "model", None]
    assert [(r.task, r.slot, r.why) for r in repairs] == [(3, 2, "no_relation_stated")]
    assert "kept_disagreeing:task2 (geometry cannot decide)" in flags
    assert "kept_disagreeing:task3.0 (geometry cannot decide)" in flags


def test_a_sentence_is_overwritten_when_the_geometry_sides_with_task1():
    assert geometry_sides_with(_pair(), "to the left of", "to the right of")  # boxes rule it out
    assert geometry_sides_with(_pair(), "to the left of", "above")  # geometry decides left, not above
    assert not geometry_sides_with(_pair(), "to the left of", "next to")  # both can be true
    assert not geometry_sides_with(_pair(sb=OVERLAP_S, ob=OVERLAP_O), "behind", "in front of")
    # with depths the geometry decides depth too: the subject is clearly farther, so behind wins
    deep = _pair(relation="behind", sb=OVERLAP_S, ob=OVERLAP_O)
    deep.update(subject_depth=0.1, object_depth=0.9, depth_kind="relative")
    assert geometry_sides_with(deep, "behind", "in front of")
    deep.update(description="The cup is in front of the plate.", descriptions=[])
    repairs, flags, _ = plan(deep, {}, [2])
    assert [(r.task, r.why) for r in repairs] == [(2, "disagrees")] and not any("kept" in f for f in flags)


def test_a_cut_sentence_that_disagrees_and_cannot_be_decided_is_left_out_not_overwritten():
    p = _pair(
        relation="behind",
        description="The cup is behind the plate.",
        descriptions=["The cup is behind the plate.", "The cup is behind it.", "The cup is in front of the"],
        sb=OVERLAP_S,
        ob=OVERLAP_O,
    )
    repairs, flags, kept = plan(p, {3: True}, [2, 3])
    assert kept["task3"][2] is None and [r.slot for r in repairs] == []
    assert "not_repaired:task3.2 (cut off, disagrees with task 1)" in flags


def test_source_of_tells_a_forced_opening_alone_from_one_the_model_ended():
    r = Repair(2, 0, "The cup is to the left of the plate", "missing")
    assert source_of(r, "The cup is to the left of the plate.") == "template"
    assert source_of(r, "The cup is to the left of the plate, near the edge.") == "model_completed"


class ScriptedVLM:
    """Answers like a small VLM under a tight budget: task 2 cut off, task 3 one sentence that says
    another relation; a forced start is continued with a clean ending. Records every request."""

    def __init__(self, cfg=None):
        self.requests: list[ImageRequest] = []

    def generate(self, batch: list[ImageRequest]) -> list[ImageResult]:
        self.requests += batch
        out = []
        for req in batch:
            answers = []
            for p in req.prompts:
                if p.choices is not None:
                    answers.append(
                        Answer("to the left of", [0.0 if c == "to the left of" else -3.0 for c in p.choices])
                    )
                elif p.answer_prefix:
                    answers.append(Answer(", in a simple drawing."))
                elif p.task == 2:
                    answers.append(Answer("In this drawing, the cup is close to", truncated=True))
                else:
                    answers.append(Answer("The cup is above the plate."))
            out.append(ImageResult(req.key, answers))
        return out

    def close(self) -> None:
        pass


def _run(repair: bool):
    engine = ScriptedVLM()
    udf = GenerateStageUDF(
        EngineConfig(kind="hf", model="tiny:llava"), [1, 2, 3], lambda cfg: engine, repair=repair
    )
    item = new_item("file:///x.jpg", "img", pairs=[_pair(relation=None)])
    item["views"] = [b"jpeg"]
    [out] = from_table(udf(to_table([item])))
    return out["pairs"][0], engine


def test_generate_stage_repairs_in_a_second_pass_over_the_same_image():
    pair, engine = _run(repair=True)
    assert pair["description"] == "In this drawing, the cup is close to"  # what the model said stays
    assert pair["descriptions"] == ["The cup is above the plate."]
    assert pair["refined_description"] == "The cup is to the left of the plate, in a simple drawing."
    assert pair["refined_descriptions"] == [
        "The cup is to the left of the plate, in a simple drawing.",
        "There is a cup to the left of the plate, in a simple drawing.",
        "A cup can be seen to the left of the plate, in a simple drawing.",
    ]
    assert pair["description_source"] == "model_completed"
    assert pair["descriptions_source"] == ["model_completed"] * 3
    assert "truncated:task2" in pair["flags"] and "too_few_sentences:task3 (1 of 3)" in pair["flags"]
    assert {
        "repaired:task2 (truncated)",
        "repaired:task3.0 (disagrees)",
        "repaired:task3.1 (missing)",
        "repaired:task3.2 (missing)",
    } <= set(pair["flags"])
    first, second = engine.requests
    assert second.key == first.key + "#repair" and second.image == first.image
    assert all(p.answer_prefix and p.max_new_tokens == REPAIR_TOKENS for p in second.prompts)
    budgets = {p.task: p.max_new_tokens for p in first.prompts if p.choices is None}
    assert budgets == {2: 64, 3: 160}  # no record for tiny:llava: the defaults, task 3 the roomiest


def test_with_repair_off_the_model_text_is_only_flagged():
    pair, engine = _run(repair=False)
    assert pair["refined_description"] is None and pair["refined_descriptions"] is None
    assert pair["description_source"] is None and pair["descriptions_source"] is None
    assert "truncated:task2" in pair["flags"] and len(engine.requests) == 1
