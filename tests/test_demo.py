"""`vsd demo` end to end at a small size: every stage runs and report.json carries the accuracy."""

from __future__ import annotations

import json

import pytest

from vsd.cli import main
from vsd.demo import raw as demo_raw
from vsd.demo import run as demo


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert (
        main(
            [
                "demo",
                "--out",
                str(out),
                "--train-scenes",
                "45",
                "--heldout-scenes",
                "18",
                "--raw-scenes",
                "8",
                "optim.max_steps=6",
                "checkpoint.every_n_steps=3",
            ]
        )
        == 0
    )
    report = json.loads((out / "report.json").read_text())
    # six steps cannot keep the promises; the report must still say, from its own figures, which it met
    assert set(report["promises"]) == set(demo.PROMISES)
    for key, promise in report["promises"].items():
        assert promise["value"] == report[key] and promise["met"] == demo.promises(report)[key]["met"]
    assert report["meets_promises"] == all(p["met"] for p in report["promises"].values())
    assert set(report["targets"]) == set(demo.TARGETS) and not set(demo.TARGETS) & set(demo.PROMISES)
    for key, target in report["targets"].items():
        assert target == demo.promises(report, demo.TARGETS)[key]
    # who wrote the published sentences is accounted for, sentence by sentence
    shares = report["task3_sources"]
    assert shares and sum(shares.values()) == pytest.approx(1.0, abs=1e-3)
    assert set(shares) <= {"model", "refined", "model_completed", "template"}
    assert report["annotation_counts"]["images"] == 18 and report["annotation_counts"]["ok"] == 18
    assert report["train_checkpoint"].endswith("checkpoint_00000006")
    assert (out / "report" / "report.md").exists() and (out / "report" / "confusion.png").exists()
    printed = capsys.readouterr().out
    assert "held-out relation accuracy" in printed
    # the held-out scenes come with their pairs: every row's boxes are the given ones
    assert {r["box_source"] for r in demo_raw.read_annotations(out / "annotations")} == {"given"}
    # the raw-corpus section: the same kind of scenes without boxes, measured in this run
    raw = report["raw"]
    assert raw["scenes"] == 8 and raw["annotation_counts"]["images"] == 8 and raw["pairs"]["error_rows"] == 0
    rows = demo_raw.read_annotations(out / "raw" / "annotations")
    assert demo_raw.pair_accuracy(rows, raw["seed"], raw["image_size"]) == raw["pairs"]
    assert (
        raw["detection"]["images"] == 8
        and 0 <= raw["detection"]["recall"] <= raw["detection"]["box_recall"] <= 1
    )
    # the targets hold on the demo's scenes and on the hidden seed alike (the worse of the two)
    hidden, k = raw["hidden"]["detection"], f"@{raw['detector']['pairs']['max_pairs']}"
    reached = [
        min(raw["detection"]["recall"], hidden["recall"]) >= 0.9,
        min(raw["detection"]["precision"], hidden["precision"]) >= 0.8,
        min(raw["detection"]["pair_recall"][k], hidden["pair_recall"][k]) >= 0.9,
        (raw["pairs"]["task1_accuracy_matched"] or 0) >= 0.8,
    ]
    assert raw["targets"] == demo_raw.TARGETS and raw["meets_targets"] == all(reached)
    assert "raw corpus: 8 held-out scenes given without boxes" in printed


@pytest.mark.slow
def test_demo_at_its_default_size_keeps_its_promises(tmp_path):
    """The figures `vsd demo` promises (`demo.PROMISES`: task-1 accuracy, no true sentence of the
    model overwritten by repair; issue #26's other targets are reported, not yet promised),
    measured on a full default run (about 5 minutes on 2 idle cores)."""
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--raw-scenes", "0"]) == 0
    report = json.loads((out / "report.json").read_text())
    missed = {k: p for k, p in report["promises"].items() if not p["met"]}
    assert not missed, missed
    assert report["relation_accuracy"] >= 0.95
