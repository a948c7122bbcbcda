"""The detection backends end to end on tiny random checkpoints of the real architectures.

Random weights say nothing about accuracy (the committed detector's test does); these prove each
backend loads through ``Auto*.from_pretrained``, runs, and returns well-formed, deterministic
detections in the project's box convention whatever the image size or mode.
"""

from __future__ import annotations

import pytest

from tests.fixtures.propose import NAMES
from vsd import config as vconfig
from vsd.errors import VSDError
from vsd.propose.config import ProposeConfig
from vsd.propose.detections import sort_key
from vsd.propose.detectors import ClosedVocabularyDetector
from vsd.propose.load import load_detector
from vsd.propose.zero_shot import GroundingDinoDetector, OwlDetector


def cfg_for(model: str, **kw) -> ProposeConfig:
    settings = {
        "model": model,
        "vocabulary": NAMES,
        "score_threshold": 0.0,
        "max_detections": 5,
        "min_box_size": 0.0,
        "batch_size": 3,
        "device": "cpu",
    }
    return vconfig.from_dict(ProposeConfig, {**settings, **kw})


def assert_well_formed(per_image, n_images: int, labels, max_detections: int) -> None:
    assert len(per_image) == n_images
    assert sum(map(len, per_image)) > 0, "a zero threshold on random weights must find something"
    for dets in per_image:
        assert len(dets) <= max_detections
        assert dets == sorted(dets, key=sort_key)
        for d in dets:
            x0, y0, x1, y1 = d.box
            assert 0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0, d
            assert d.label in labels and 0.0 <= d.score <= 1.0 and d.depth is None


def assert_batching_invariant(cfg: ProposeConfig, images, reference) -> None:
    """Another batch size gives the same detections (batches hold one image size, so no image's
    padding depends on its batch-mates); floats may differ in the last digits of batched kernels."""
    other = load_detector(vconfig.from_dict(ProposeConfig, {**vconfig.to_dict(cfg), "batch_size": 1})).detect(
        images
    )
    for a, b in zip(reference, other):
        assert [d.label for d in a] == [d.label for d in b]
        for da, db in zip(a, b):
            assert da.box == pytest.approx(db.box, abs=1e-4) and da.score == pytest.approx(db.score, abs=1e-4)


@pytest.mark.parametrize(
    "fixture, cls",
    [("owlvit_dir", OwlDetector), ("owlv2_dir", OwlDetector), ("grounding_dino_dir", GroundingDinoDetector)],
)
def test_open_vocabulary_backends(request, fixture, cls, scene_images):
    cfg = cfg_for(request.getfixturevalue(fixture))
    detector = load_detector(cfg)
    assert type(detector) is cls
    first = detector.detect(scene_images)
    assert_well_formed(first, len(scene_images), set(NAMES), 5)
    assert detector.detect(scene_images) == first  # a rerun is identical
    assert_batching_invariant(cfg, scene_images, first)
    assert detector.detect([]) == []


def test_grounding_dino_prompts_split_to_fit_and_spans_cover_each_name(grounding_dino_dir):
    detector = load_detector(cfg_for(grounding_dino_dir))
    assert len(detector.prompts) > 1
    assert [n for _, names, _ in detector.prompts for n in names] == NAMES
    tok = detector.processor.tokenizer
    for text, names, spans in detector.prompts:
        ids = tok(text)["input_ids"]
        assert len(ids) <= 16
        for name, span in zip(names, spans):
            assert tok.decode([ids[i] for i in span]) == name


def test_closed_vocabulary_backend_uses_model_labels_and_filters(rt_detr_dir, scene_images):
    cfg = cfg_for(rt_detr_dir, backend="closed_vocabulary", vocabulary=[])
    detector = load_detector(cfg)
    assert type(detector) is ClosedVocabularyDetector
    found = detector.detect(scene_images)
    assert_well_formed(found, len(scene_images), set(NAMES), 5)
    assert detector.detect(scene_images) == found
    assert_batching_invariant(cfg, scene_images, found)
    kept = load_detector(cfg_for(rt_detr_dir, backend="closed_vocabulary", vocabulary=["cup", "table"]))
    assert {d.label for dets in kept.detect(scene_images) for d in dets} <= {"cup", "table"}
    with pytest.raises(VSDError, match="propose.vocabulary: none of"):
        load_detector(cfg_for(rt_detr_dir, backend="closed_vocabulary", vocabulary=["giraffe"]))


def test_wrong_or_unsafe_checkpoints_fail_clearly(rt_detr_dir, tmp_path):
    with pytest.raises(VSDError, match="propose.model: cannot load"):
        load_detector(cfg_for(rt_detr_dir))  # a fixed-label detector is not open-vocabulary
    with pytest.raises(VSDError, match="does not exist"):
        load_detector(cfg_for(str(tmp_path / "missing")))
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "config.json").write_text("{}")
    (tmp_path / "pickled" / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(VSDError, match="only pickle weights"):
        load_detector(cfg_for(str(tmp_path / "pickled")))
