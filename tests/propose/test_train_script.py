"""`recipes/train_tiny_detector.py`, the committed detector's recipe: its anchor assignment, that it
runs and resumes, and that it is the recipe of the committed weights (same config, same first
losses on a rerun)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "recipes" / "train_tiny_detector.py"


@pytest.fixture(scope="module")
def recipe():
    spec = importlib.util.spec_from_file_location("train_tiny_detector", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_anchor_cells_follow_the_models_flattened_pyramid(recipe):
    """The targets are laid out in the order RT-DETR flattens its levels: the recipe's cells must
    be exactly as many as the encoder's scores, level by level."""
    import torch

    from vsd.demo.tiny_detector import build_tiny_detector

    cells = recipe.anchor_cells(64)
    assert [sum(c[0] == lvl for c in cells) for lvl in range(3)] == [256, 64, 16]
    assert cells[0][1:] == (0.5 / 16, 0.5 / 16, 1 / 16) and cells[17][1:3] == (1.5 / 16, 1.5 / 16)
    model, processor = build_tiny_detector(seed=0)
    model.eval()
    with torch.no_grad():
        out = model(pixel_values=torch.rand(1, 3, 64, 64))
    assert out.enc_outputs_class.shape[1] == len(cells)
    # the model's own anchors (logits of cx, cy) sit at the recipe's cell centres
    anchors, _ = model.model.generate_anchors(((16, 16), (8, 8), (4, 4)))
    centres = torch.sigmoid(anchors[0, :, :2])
    torch.testing.assert_close(centres, torch.tensor([c[1:3] for c in cells]), rtol=0, atol=1e-6)


def test_assignment_gives_each_object_its_own_cells_at_its_scale(recipe):
    from vsd.demo.synthetic_truth import TrueObject

    cells = recipe.anchor_cells(64)
    container = TrueObject("blue square", (0.1, 0.1, 0.9, 0.9))
    inside = TrueObject("red circle", (0.4, 0.4, 0.6, 0.6))
    speck = TrueObject("pink oval", (0.01, 0.01, 0.04, 0.04))
    claimed = recipe.assign([container, inside, speck], cells)
    owners: dict[int, list[int]] = {}
    for a, k in claimed.items():
        owners.setdefault(k, []).append(a)
    assert set(owners) == {0, 1, 2}
    # the container (side 0.8) trains the coarsest level only, the speck the finest, the 0.2 shape two
    assert {cells[a][0] for a in owners[0]} == {2}
    assert {cells[a][0] for a in owners[2]} == {0} and len(owners[2]) == 1  # nearest cell
    assert {cells[a][0] for a in owners[1]} == {0, 1}
    # centre sampling: cells inside the box within 1.5 cells of its centre (0.4-0.6 at 1/16: 6..9)
    assert sorted(a for a in owners[1] if cells[a][0] == 0) == [
        16 * y + x for y in range(6, 10) for x in range(6, 10)
    ]
    # the container: at 1/4 every centre (0.125 .. 0.875) lies inside and within 1.5 cells of 0.5
    assert sorted(owners[0]) == list(range(256 + 64, 256 + 64 + 16))
    # a shape as large as the speck but elsewhere does not take the speck's cell
    other = TrueObject("red oval", (0.9, 0.9, 0.93, 0.93))
    assert len(set(recipe.assign([speck, other], cells).values())) == 2


def test_dense_loss_targets_each_query_with_its_anchors_object(recipe):
    """The decoder's queries inherit the targets of the anchors RT-DETR selected them from."""
    from types import SimpleNamespace

    import torch

    b, n, q = 1, 5, 2
    enc_class = torch.full((b, n, 3), -5.0)
    enc_class[0, 3, 1], enc_class[0, 1, 0] = 4.0, 3.0  # anchors 3 then 1 are the top two
    labels = torch.tensor([[-1, 2, -1, 1, -1]])
    boxes = torch.zeros(b, n, 4)
    boxes[0, 1], boxes[0, 3] = torch.tensor([0.1, 0.1, 0.3, 0.3]), torch.tensor([0.5, 0.5, 0.9, 0.9])
    exact = torch.tensor([[[0.7, 0.7, 0.4, 0.4], [0.2, 0.2, 0.2, 0.2]]])  # query 0 = anchor 3's box
    logits = torch.full((b, q, 3), -9.0)
    logits[0, 0, 1], logits[0, 1, 2] = 9.0, 9.0
    outputs = SimpleNamespace(
        enc_outputs_class=enc_class,
        enc_outputs_coord_logits=torch.zeros(b, n, 4),
        logits=logits,
        pred_boxes=exact,
    )
    args = SimpleNamespace(w_cls=1.0, w_l1=1.0, w_giou=1.0, cls_target="hard")
    cls, l1, gi = recipe.head_loss(logits, exact, labels[:, [3, 1]], boxes[:, [3, 1]])
    assert l1.item() < 1e-6 and gi.item() < 1e-6 and cls.item() < 1e-3  # right names, exact boxes
    swapped = SimpleNamespace(**{**vars(outputs), "pred_boxes": exact.flip(1), "logits": logits.flip(1)})
    assert (
        recipe.dense_loss(swapped, labels, boxes, args)[0]
        > recipe.dense_loss(outputs, labels, boxes, args)[0] + 1
    )


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
    assert len(meta["first_losses"]) == 2
    assert recipe.main([*args[:2], "--steps", "3", *args[4:], "--resume"]) == 0
    meta = json.loads((tmp_path / "det" / "detector_meta.json").read_text())
    assert meta["steps"] == 3 and len(meta["first_losses"]) == 3

    from vsd.demo.synthetic_truth import labelled_scenes
    from vsd.demo.tiny_detector import demo_propose_config
    from vsd.propose import Proposer

    images = [s[0] for s in labelled_scenes(2, seed=1)]
    assert len(Proposer(demo_propose_config(out)).propose(images)) == 2


def test_recipe_builds_the_committed_models_config():
    """The committed weights are this recipe's model: the same `RTDetrConfig`, label for label."""
    from transformers import AutoConfig

    from vsd.demo.synthetic_truth import VOCABULARY
    from vsd.demo.tiny_detector import ASSET, tiny_config

    volatile = {"transformers_version", "architectures", "dtype", "torch_dtype", "_name_or_path"}

    def comparable(config) -> dict:
        d = {k: v for k, v in config.to_dict().items() if k not in volatile}
        d["backbone_config"] = {k: v for k, v in d["backbone_config"].items() if k not in volatile}
        return d

    assert comparable(AutoConfig.from_pretrained(ASSET)) == comparable(tiny_config(VOCABULARY))


def test_a_rerun_of_the_recipe_reproduces_the_committed_first_losses(recipe, tmp_path):
    """Seeded init, seeded scenes, a step-based schedule: the committed run's first steps replay
    (3 steps with the committed flags; the schedule's warm-up does not depend on ``--steps``)."""
    from vsd.demo.tiny_detector import detector_meta

    meta = detector_meta()
    flags = meta["args"]
    assert flags["warmup"] > 3
    argv = ["--out", str(tmp_path / "rerun"), "--steps", "3", "--eval-every", "1000", "--eval-scenes", "2"]
    for name in (
        "batch",
        "lr",
        "warmup",
        "weight_decay",
        "clip",
        "w_cls",
        "names",
        "cls_target",
        "w_l1",
        "w_giou",
        "seed",
        "data_seed",
    ):
        argv += [f"--{name.replace('_', '-')}", str(flags[name])]
    assert recipe.main(argv) == 0
    rerun = json.loads((tmp_path / "rerun" / "detector_meta.json").read_text())["first_losses"]
    assert rerun == pytest.approx(meta["first_losses"][:3], rel=1e-4)
