"""Ids, paths and names from inputs reach the console escaped: an ANSI sequence or a newline in an
image_id is shown, never obeyed (it could clear the screen or forge a `vsd:` line)."""

from __future__ import annotations

import json

from tests.fixtures.infra import REPO
from vsd.cli import main

EVIL = "\x1b[2J\x1b[31mred\nvsd: error: forged\u202e"


def test_corpus_sync_prints_ids_and_paths_escaped(tmp_path, capsys):
    manifest = tmp_path / "m.jsonl"
    rows = [{"image": "a.png", "image_id": EVIL}, {"image": "b.png", "image_id": EVIL}]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{broken\n")
    assert main(["corpus", "sync", "--from", str(manifest), "--to", str(tmp_path / "corpus")]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u202e" not in out and "\nvsd: error: forged" not in out
    assert "skipped: image_id \\x1b[2J\\x1b[31mred\\nvsd: error: forged\\u202e: row 2 repeats" in out
    assert "line 3: invalid JSON" in out and "1 problem(s) skipped" in out
    folder = tmp_path / f"img{EVIL}"
    folder.mkdir()
    assert main(["corpus", "sync", "--from", str(folder), "--to", str(tmp_path / "corpus")]) == 0
    assert main(["corpus", "info", str(tmp_path / "corpus")]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u202e" not in out and "img\\x1b[2J" in out


def test_error_lines_print_input_text_escaped(tmp_path, capsys):
    missing = str(tmp_path / f"in{EVIL}")
    code = main(
        [
            "annotate",
            "--config",
            str(REPO / "jobs/configs/annotate-tiny-cpu.yaml"),
            "--input",
            missing,
            "--output",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "\x1b" not in err and "\u202e" not in err
    [line] = err.splitlines()
    assert (
        line.startswith("vsd: error: input.uri: ") and "in\\x1b[2J\\x1b[31mred\\nvsd: error: forged" in line
    )
