"""The committed tiny detector (`vsd/assets/tiny-detector`) that lets `vsd demo` annotate raw scenes.

It must load through the open-vocabulary backend like any OWL checkpoint, stay small enough for
git, and meet the raw-corpus targets on synthetic scenes of a seed it never saw: recall >= 0.90
and precision >= 0.80 at IoU 0.5 with the right name (the name the prompts will use).
"""

from __future__ import annotations

import json
import os

import pytest

from vsd.propose import Proposer, evaluate_detections
from vsd.propose.synthetic_truth import VOCABULARY, labelled_scenes
from vsd.propose.tiny_detector import ASSET, demo_propose_config, detector_meta

FRESH_SEED = 424242  # neither the training (777000) nor the validation (777001) seed, nor the demo's


def test_is_a_small_safetensors_owl_checkpoint():
    files = os.listdir(ASSET)
    assert {"config.json", "model.safetensors", "processor_config.json", "tokenizer.json", "RECIPE.md",
            "detector_meta.json"} <= set(files)
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth"))]
    assert sum(os.path.getsize(ASSET / f) for f in files) < 3_000_000
    assert json.loads((ASSET / "config.json").read_text())["model_type"] == "owlvit"
    meta = detector_meta()
    assert 0 < meta["score_threshold"] < 1 and 0 < meta["nms_iou"] <= 1
    assert meta["validation"]["metrics"]["recall"] >= 0.9


@pytest.fixture(scope="module")
def proposer():
    return Proposer(demo_propose_config())


def test_meets_the_raw_corpus_targets_on_fresh_scenes(proposer):
    scenes = list(labelled_scenes(30, FRESH_SEED, size=64))
    found = proposer.detector.detect([s[0] for s in scenes])
    metrics = evaluate_detections([(dets, s[2]) for dets, s in zip(found, scenes)])
    assert metrics.truths >= 60
    assert metrics.recall >= 0.90, metrics
    assert metrics.precision >= 0.80, metrics
    assert {d.label for dets in found for d in dets} <= set(VOCABULARY)


def test_proposed_pairs_include_the_described_pair(proposer):
    """The pair a VSD caption talks about (subject, object) should be among the proposed pairs,
    matched by name, so the demo can score task 1 on proposed pairs."""
    scenes = list(labelled_scenes(30, FRESH_SEED + 1, size=64))
    proposals = proposer.propose([s[0] for s in scenes])
    hits = sum(any({p.subject.label, p.object.label} == {scene.subject.name, scene.object.name}
                   for p in proposal.pairs) for proposal, (_, scene, _) in zip(proposals, scenes))
    assert hits / len(scenes) >= 0.8
    assert all(p.box_source == "detected" for proposal in proposals for p in proposal.pairs)
