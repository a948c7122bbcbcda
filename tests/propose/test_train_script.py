"""`scripts/train_tiny_detector.py`, the committed detector's recipe, runs and resumes (2 steps)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "train_tiny_detector.py"


@pytest.fixture(scope="module")
def recipe():
    spec = importlib.util.spec_from_file_location("train_tiny_detector", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_assignment_gives_each_object_its_own_patches(recipe):
    from vsd.propose.synthetic_truth import TrueObject

    container = TrueObject("blue square", (0.1, 0.1, 0.9, 0.9))
    inside = TrueObject("red circle", (0.4, 0.4, 0.6, 0.6))
    speck = TrueObject("pink oval", (0.01, 0.01, 0.04, 0.04))
    for mode in ("center", "inside"):
        pos = recipe.assign([container, inside, speck], grid=16, mode=mode)
        owners: dict[int, list[int]] = {}
        for patch, k, _ in pos:
            owners.setdefault(k, []).append(patch)
        assert set(owners) == {0, 1, 2} and len(pos) == len({p for p, _, _ in pos})  # each patch one owner
        assert len(owners[2]) == 1  # the speck: nearest patch
        # the small shape inside keeps the centre: anchors at ((col+1)/16, (row+1)/16) ~ (0.5, 0.5)
        assert 7 * 16 + 7 in owners[1] and 7 * 16 + 7 not in owners[0]
    center = recipe.assign([container, inside, speck], grid=16, mode="center")
    assert sum(k == 1 for _, k, _ in center) == recipe.POSITIVES and {w for _, _, w in center} == {1.0}
    inside_mode = {p: (k, w) for p, k, w in recipe.assign([container, inside, speck], grid=16, mode="inside")}
    # every anchor inside the container and not taken by the shape within is the container's;
    # centre-ness: 1 at the centre, lower towards the edges, floor 0.1
    assert (
        sum(k == 0 for k, _ in inside_mode.values())
        == 13 * 13 - sum(k == 1 for k, _ in inside_mode.values())
        == 160
    )
    assert inside_mode[7 * 16 + 7] == (1, 1.0) and 0.1 <= inside_mode[1 * 16 + 1][1] < 0.5


def test_recipe_runs_and_resumes(recipe, tmp_path):
    out = str(tmp_path / "det")
    args = [
        "--out",
        out,
        "--steps",
        "2",
        "--batch",
        "4",
        "--eval-every",
        "1",
        "--eval-scenes",
        "3",
        "--log-every",
        "1",
    ]
    assert recipe.main(args) == 0
    meta = json.loads((tmp_path / "det" / "detector_meta.json").read_text())
    assert meta["steps"] == 2 and meta["history"][0]["step"] == 1 and "score_threshold" in meta
    assert recipe.main([*args[:2], "--steps", "3", *args[4:], "--resume"]) == 0
    assert json.loads((tmp_path / "det" / "detector_meta.json").read_text())["steps"] == 3

    from vsd.propose import Proposer
    from vsd.propose.synthetic_truth import labelled_scenes
    from vsd.propose.tiny_detector import demo_propose_config

    images = [s[0] for s in labelled_scenes(2, seed=1)]
    assert len(Proposer(demo_propose_config(out)).propose(images)) == 2


def test_widened_patches_see_an_upsampled_image_as_the_old_ones_saw_the_small_one(recipe):
    """``--init`` from 4-px patches into 8-px patches on the same 16x16 grid: the widened kernel on
    a 2x nearest-upsampled image gives exactly the old embedding of the original image."""
    import torch
    import torch.nn.functional as F

    from vsd.propose.tiny_detector import build_tiny_detector

    small, _ = build_tiny_detector(seed=1, patch_size=4, image_size=64)
    large, _ = build_tiny_detector(seed=2, patch_size=8, image_size=128)
    state = recipe.widen_patches(small.state_dict(), large.state_dict())
    assert state[recipe.PATCH_KEY].shape == large.state_dict()[recipe.PATCH_KEY].shape
    result = large.load_state_dict(state, strict=False)
    assert not result.unexpected_keys and not [k for k in result.missing_keys if k != "box_bias"]
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    old = small.owlvit.vision_model.embeddings.patch_embedding
    new = large.owlvit.vision_model.embeddings.patch_embedding
    with torch.no_grad():
        torch.testing.assert_close(
            new(F.interpolate(image, scale_factor=2, mode="nearest")), old(image), rtol=1e-4, atol=1e-5
        )
    same = small.state_dict()
    assert recipe.widen_patches(same, same) is same  # same shapes: untouched
    odd, _ = build_tiny_detector(seed=3, patch_size=6, image_size=96)
    with pytest.raises(SystemExit, match="cannot widen"):
        recipe.widen_patches(same, odd.state_dict())


def test_recipe_trains_at_another_image_size_from_a_smaller_checkpoint(recipe, tmp_path):
    first, second = str(tmp_path / "det64"), str(tmp_path / "det128")
    common = ["--batch", "2", "--eval-every", "1", "--eval-scenes", "2", "--log-every", "1", "--steps", "1"]
    assert recipe.main(["--out", first, *common]) == 0
    assert (
        recipe.main(["--out", second, *common, "--init", first, "--image-size", "128", "--patch-size", "8"])
        == 0
    )
    meta = json.loads((tmp_path / "det128" / "detector_meta.json").read_text())
    assert meta["validation"]["size"] == 128 and meta["args"]["image_size"] == 128
    config = json.loads((tmp_path / "det128" / "config.json").read_text())["vision_config"]
    assert config["image_size"] == 128 and config["patch_size"] == 8
