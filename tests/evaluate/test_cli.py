"""`vsd evaluate` through the real CLI entry point: self-evaluation prints accuracy and BLEU-4 of
1.0 and the SPICE line; bad input exits 2 with one line on stderr."""

from __future__ import annotations

import json

from tests.fixtures.evaluate import answers_by_task, synthetic_references, write_instructions, write_jsonl
from vsd.cli import main
from vsd.evaluate.captions import spice_unavailable_reason


def test_cli_self_evaluation(tmp_path, capsys):
    ref = write_instructions(synthetic_references(12, seed=7), tmp_path / "ref.parquet")
    assert main(["evaluate", "--pred", ref, "--ref", ref, "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "task 1: accuracy 1.0000" in out
    rows = [line.split() for line in out.splitlines() if line.split()[:2] in (["2", "raw"], ["3", "raw"])]
    assert len(rows) == 2 and all(r[2] == "1.0000" and r[3] == "1.0000" for r in rows)  # BLEU-1, BLEU-4
    if spice_unavailable_reason() is not None:
        assert f"SPICE skipped: {spice_unavailable_reason()}" in out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["relation_accuracy"] == 1.0
    assert (tmp_path / "out" / "report.md").exists() and (tmp_path / "out" / "confusion.png").exists()


def test_cli_without_captions_counts_missing(tmp_path, capsys):
    rows = synthetic_references(9, seed=8)
    answers = answers_by_task(rows)
    del answers[1][sorted(answers[1])[0]]
    pred = write_jsonl(answers, tmp_path / "pred.jsonl")
    ref = write_instructions(rows, tmp_path / "ref.parquet")
    assert (
        main(["evaluate", "--pred", pred, "--ref", ref, "--out", str(tmp_path / "out"), "--no-captions"]) == 0
    )
    out = capsys.readouterr().out
    assert "task 1: 8/9 predicted, 1 missing (0 error rows)" in out
    assert "task 1: accuracy 0.8889" in out
    assert "SPICE skipped: caption metrics off" in out


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    ref = write_instructions(synthetic_references(2), tmp_path / "ref.parquet")
    code = main(
        ["evaluate", "--pred", str(tmp_path / "missing.jsonl"), "--ref", ref, "--out", str(tmp_path / "o")]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("vsd: error: predictions not found:") and err.count("\n") == 1
