"""`ProposeConfig`: every field described, bad values fail in one line naming the field."""

from __future__ import annotations

import dataclasses

import pytest

from vsd import config as vconfig
from vsd.propose.config import PairConfig, ProposeConfig


def test_every_field_has_help():
    for cls in (ProposeConfig, PairConfig):
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help text"
    text = vconfig.help_text(ProposeConfig)
    for name in (
        "backend",
        "vocabulary",
        "score_threshold",
        "nms_iou",
        "max_detections",
        "min_box_size",
        "pairs.max_pairs",
        "pairs.weight_proximity",
        "depth",
        "depth_model",
        "device",
        "dtype",
        "batch_size",
    ):
        assert f"{name} (" in text or f"{name}:" in text


def test_overrides_and_cleaning():
    cfg = vconfig.from_dict(
        ProposeConfig,
        {"vocabulary": [" cup ", "table"]},
        ["pairs.max_pairs=3", "backend=closed_vocabulary", "depth=true"],
    )
    assert cfg.vocabulary == ["cup", "table"] and cfg.pairs.max_pairs == 3 and cfg.depth
    assert (
        vconfig.from_dict(ProposeConfig, {"backend": "closed_vocabulary", "vocabulary": []}).vocabulary == []
    )


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["backend=yolo"], "backend: must be one of"),
        (["vocabulary=[]"], "vocabulary: open_vocabulary needs at least one object name"),
        (["vocabulary=[cup, cup]"], "vocabulary: 'cup' is listed twice"),
        (["vocabulary=[cup, '']"], "vocabulary: names must be non-empty"),
        (["score_threshold=1.5"], "score_threshold: must be in [0, 1]"),
        (["nms_iou=0"], "nms_iou: must be in (0, 1]"),
        (["max_detections=0"], "max_detections: must be >= 1"),
        (["batch_size=0"], "batch_size: must be >= 1"),
        (["model=' '"], "model: must name a detector checkpoint"),
        (["dtype=int8"], "dtype: must be one of"),
        (["pairs.max_pairs=-1"], "pairs.max_pairs: must be >= 0"),
        (["pairs.weight_size=-1"], "pairs.weight_size: must be >= 0"),
        (["pairs.max_pair_iou=2"], "pairs.max_pair_iou: must be in [0, 1]"),
        (["pairs.orientation=random"], "pairs.orientation: must be one of"),
        (["pairs.proximity_reference=0"], "pairs.proximity_reference: must be > 0"),
    ],
)
def test_bad_values_name_the_field(overrides, message):
    with pytest.raises(vconfig.ConfigError) as err:
        vconfig.from_dict(ProposeConfig, {}, overrides)
    assert message in str(err.value) and "\n" not in str(err.value)
