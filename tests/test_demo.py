"""`vsd demo` end to end at a small size: every stage runs and report.json carries the accuracy."""

from __future__ import annotations

import json

import pytest

from vsd import demo_raw
from vsd.cli import main


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
    assert 0.0 <= report["relation_accuracy"] <= 1.0
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
    reached = [
        raw["detection"]["recall"] >= 0.9,
        raw["detection"]["precision"] >= 0.8,
        (raw["pairs"]["task1_accuracy_matched"] or 0) >= 0.8,
    ]
    assert raw["targets"] == demo_raw.TARGETS and raw["meets_targets"] == all(reached)
    assert "raw corpus: 8 held-out scenes given without boxes" in printed
