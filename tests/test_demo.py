"""`vsd demo` end to end at a small size: every stage runs and report.json carries the accuracy."""

from __future__ import annotations

import json

import pytest

from vsd.cli import main


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--train-scenes", "45", "--heldout-scenes", "18",
                 "optim.max_steps=6", "checkpoint.every_n_steps=3"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert 0.0 <= report["relation_accuracy"] <= 1.0
    assert report["annotation_counts"]["images"] == 18 and report["annotation_counts"]["ok"] == 18
    assert report["train_checkpoint"].endswith("checkpoint_00000006")
    assert (out / "report" / "report.md").exists() and (out / "report" / "confusion.png").exists()
    assert "held-out relation accuracy" in capsys.readouterr().out
