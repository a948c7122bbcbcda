"""The demo's raw-corpus section (vsd/demo/raw.py): scoring rules, and the section end to end."""

from __future__ import annotations

import json

import pytest

from tests.fixtures.infra import REPO
from vsd.demo import raw as demo_raw
from vsd.demo.synthetic_truth import scene_at, scene_objects

SEED = 1000


def row(index: int, subject, object_, relation: str, *, source="detected", status="ok", pair_index=0) -> dict:
    """An annotation row for scene ``index`` with the given (label, box) subject and object."""
    return {
        "image_id": f"id{index}",
        "source_uri": f"/x/synth-{SEED}-{index:05d}.png",
        "box_source": source,
        "status": status,
        "pair_index": pair_index,
        "subject": subject[0],
        "subject_box": subject[1],
        "object": object_[0],
        "object_box": object_[1],
        "relation": relation,
    }


def truth(index: int, size: int = 64):
    scene = scene_at(index, SEED, size)
    s, o = scene_objects(scene)[:2]
    return scene, (s.label, list(s.box)), (o.label, list(o.box))


def shifted(obj, dx: float):
    label, box = obj
    return label, [box[0] + dx, box[1], box[2] + dx, box[3]]


def test_a_proposed_pair_matches_only_with_both_boxes_names_and_roles():
    scene0, s0, o0 = truth(0)
    scene1, s1, o1 = truth(1)
    wrong = next(r for r in ("above", "under", "in") if r != scene1.relation)
    rows = [
        row(0, s0, o0, scene0.relation),  # matched, right
        row(0, o0, s0, scene0.relation, pair_index=1),  # roles swapped: not matched
        row(1, s1, o1, wrong),  # matched, wrong relation
        row(1, ("no such thing", s1[1]), o1, scene1.relation, pair_index=1),  # wrong name
        row(1, s1, shifted(o1, 0.9), scene1.relation, pair_index=2),  # object box elsewhere
        row(2, (None, None), (None, None), "in", source=None, pair_index=-1),  # scene level: no pair found
        row(3, s0, o0, "in", status="error"),  # error rows are not scored
    ]
    got = demo_raw.pair_accuracy(rows, SEED, 64)
    assert got["matched_pairs"] == 2 and got["task1_correct"] == 1 and got["task1_accuracy_matched"] == 0.5
    assert got["images_with_true_pair_proposed"] == 2 and got["images_with_detected_pairs"] == 2
    assert got["scene_level_rows"] == 1 and got["error_rows"] == 1 and got["detected_pair_rows"] == 5
    # by boxes alone the wrongly named pair counts too (right relation): 2 right of 3
    assert got["box_matched_pairs"] == 3 and got["task1_accuracy_box_matched"] == 0.6667
    empty = demo_raw.pair_accuracy([], SEED, 64)
    assert empty["task1_accuracy_matched"] is None and empty["task1_accuracy_box_matched"] is None
    with pytest.raises(Exception, match="unexpected image"):
        demo_raw.pair_accuracy([{**rows[0], "source_uri": "/x/cat.jpg"}], SEED, 64)


def test_the_demo_detector_config_proposes_both_roles():
    cfg = demo_raw.propose_config()
    assert cfg.enabled and cfg.pairs.orientation == "both" and cfg.model.endswith("tiny-detector")
    assert demo_raw.raw_image_size() >= 64


def test_raw_section_end_to_end(ray_local, tmp_path):
    """Folder of raw scenes -> `run_annotation` with the propose stage (tiny hf LLaVA) -> the section."""
    import torch

    torch.set_num_threads(1)
    raw = demo_raw.run_raw(
        tmp_path / "raw",
        6,
        SEED,
        str(REPO / "jobs/configs/annotate-tiny-cpu.yaml"),
        "tiny:llava",
        ["progress_bars=false"],
    )
    json.dumps(raw)  # goes into report.json as is
    d, p = raw["detection"], raw["pairs"]
    assert d["images"] == 6 and d["truths"] >= 12 and 0 <= d["recall"] <= d["box_recall"] <= 1
    assert raw["annotation_counts"]["images"] == 6 and p["error_rows"] == 0
    assert (
        p["detected_pair_rows"] + p["scene_level_rows"] == p["rows"] and p["images_with_detected_pairs"] >= 3
    )
    assert p["matched_pairs"] <= p["detected_pair_rows"] and raw["meets_targets"] in (True, False)
    h = raw["hidden"]["detection"]
    assert raw["hidden"]["seed"] != SEED and h["images"] == 6 and 0 <= h["recall"] <= h["box_recall"] <= 1
    for m in (d, h):
        assert set(m["pair_recall"]) == {"@1", "@2", "@4"}
        assert m["pair_recall"]["@1"] <= m["pair_recall"]["@2"] <= m["pair_recall"]["@4"] <= 1
    # the proposals scored for pair recall are the ones annotated: @4 (the stage's 4 pairs) counts
    # the scenes the annotation rows show with the true pair
    assert abs(round(d["pair_recall"]["@4"] * 6) - p["images_with_true_pair_proposed"]) <= 1
    text = "\n".join(demo_raw.summary_lines(raw))
    assert "demo seed 1000: recall" in text and "hidden seed" in text and "task-1 accuracy" in text
    assert "boxes alone" in text and "top-K" in text
