"""Monocular depth per box (tiny Depth Anything) and the `Proposer` that the stage calls."""

from __future__ import annotations

import pytest
import torch

from tests.fixtures.propose import NAMES
from vsd import config as vconfig
from vsd.errors import VSDError
from vsd.propose import Detection, ProposeConfig, Proposer
from vsd.propose.depth import DepthEstimator, box_median, depth_kind


def test_box_median_reads_the_box_region_of_the_map():
    depth = torch.arange(100, dtype=torch.float32).reshape(10, 10)  # value = 10 * row + col
    # box x 0.2..0.5, y 0.1..0.3 -> cols 2..4, rows 1..2: values 12..14, 22..24 -> lower median 14
    assert box_median(depth, (0.2, 0.1, 0.5, 0.3)) == 14.0
    assert box_median(depth, (0.0, 0.0, 1.0, 1.0)) == 49.0
    assert box_median(depth, (0.991, 0.991, 1.0, 1.0)) == 99.0  # a speck reads its cell
    assert box_median(depth, (0.5, 0.5, 0.5, 0.5)) == 55.0  # even a degenerate box


def test_kind_says_which_way_is_near():
    from transformers import DepthAnythingConfig

    assert depth_kind(DepthAnythingConfig()) == "relative"
    assert depth_kind(DepthAnythingConfig(depth_estimation_type="metric")) == "metric"


def _cfg(model: str, depth_model: str, **kw) -> ProposeConfig:
    settings = {
        "model": model,
        "vocabulary": NAMES,
        "score_threshold": 0.0,
        "max_detections": 4,
        "min_box_size": 0.0,
        "depth": True,
        "depth_model": depth_model,
        "batch_size": 2,
        "device": "cpu",
        "pairs": {"max_pairs": 3},
    }
    return vconfig.from_dict(ProposeConfig, {**settings, **kw})


def test_depth_estimator_fills_every_box(depth_dir, scene_images):
    est = DepthEstimator.from_config(_cfg("unused", depth_dir))
    assert est.kind == "relative" and est.nearer_is_larger
    maps = est.depth_maps(scene_images)
    assert len(maps) == len(scene_images) and all(m.ndim == 2 and m.dtype == torch.float32 for m in maps)
    # aspect kept: the 96x72 scenes give wider maps than the square ones
    assert maps[0].shape[0] == maps[0].shape[1] and maps[3].shape[1] > maps[3].shape[0]
    dets = [[Detection((0.1, 0.1, 0.5, 0.5), "cup", 0.9), Detection((0.5, 0.5, 0.9, 0.9), "table", 0.8)]] + [
        [] for _ in scene_images[1:]
    ]
    out = est.annotate(scene_images, dets)
    assert [d.depth for d in out[0]] == [box_median(maps[0], d.box) for d in dets[0]]
    assert out[1:] == dets[1:]


def test_proposer_end_to_end_with_depth_is_deterministic(owlvit_dir, depth_dir, scene_images):
    proposer = Proposer(_cfg(owlvit_dir, depth_dir))
    first = proposer.propose(scene_images)
    assert len(first) == len(scene_images)
    assert sum(len(p.pairs) for p in first) > 0
    for proposal in first:
        assert proposal.depth_kind == "relative"
        assert len(proposal.pairs) <= 3
        assert all(d.depth is not None for d in proposal.detections)
        for pair in proposal.pairs:
            row = pair.to_row()
            assert row["box_source"] == "detected" and row["subject"] in NAMES and row["object"] in NAMES
            assert row["subject_depth"] is not None and 0 <= row["subject_score"] <= 1
            assert pair.subject in proposal.detections and pair.object in proposal.detections
    assert Proposer(_cfg(owlvit_dir, depth_dir)).propose(scene_images) == first  # fresh load, same pairs


def test_proposer_without_depth_and_bad_depth_model(owlvit_dir, scene_images, tmp_path):
    proposals = Proposer(_cfg(owlvit_dir, "", depth=False)).propose(scene_images[:2])
    assert all(p.depth_kind is None and all(d.depth is None for d in p.detections) for p in proposals)
    with pytest.raises(VSDError, match="propose.depth_model"):
        Proposer(_cfg(owlvit_dir, str(tmp_path / "nothing")))
