"""`vsd annotate` with jobs/configs/annotate-tiny-sglang-cpu.yaml and the real engine: a folder with
broken files gives Parquet with every file exactly once, and a rerun adds nothing."""

from __future__ import annotations

from collections import Counter

from tests.fixtures.annotate import build_corpus, hard_files, read_rows
from tests.fixtures.infra import REPO
from vsd import storage
from vsd.cli import main

# hard files whose outcome does not depend on pairs (a folder is annotated at scene level)
HARD = {"truncated.jpg", "zero.jpg", "notes.png", "page.jpg", "bomb.png", "cmyk.jpg", "gray16.png", "animated.gif"}


def test_folder_with_broken_files_once_and_rerun_adds_nothing(ray_local, tmp_path, capsys):
    corpus, out = tmp_path / "photos", str(tmp_path / "out")
    corpus.mkdir()
    expected = {}
    for i, uri in enumerate(sorted(build_corpus(str(tmp_path / "src"), 5, seed=3))):
        (corpus / f"scene{i}.png").write_bytes(storage.read_bytes(uri))
        expected[f"scene{i}.png"] = "ok"
    for name, data, _, want in hard_files():
        if name in HARD:
            (corpus / name).write_bytes(data)
            expected[name] = want
    args = ["annotate", "--config", str(REPO / "jobs/configs/annotate-tiny-sglang-cpu.yaml"), "--input", str(corpus),
            "--output", out, "run_date=2026-11-29", "progress_bars=false"]
    assert main(args) == 0
    n_ok = sum(v == "ok" for v in expected.values())
    assert f"images: {len(expected)}  rows: {len(expected)}  ok: {n_ok}  error: {len(expected) - n_ok}" in \
        capsys.readouterr().out

    rows = read_rows(out)
    by_file = Counter(r["source_uri"].rsplit("/", 1)[-1] for r in rows)
    assert by_file == Counter(set(expected))  # every file exactly once
    for row in rows:
        want = expected[row["source_uri"].rsplit("/", 1)[-1]]
        assert row["status"] == want.split(":")[0], (row["source_uri"], row["error"])
        if want == "ok":  # scene level: the open-ended task, answered by the real engine
            assert row["pair_index"] == -1 and row["descriptions"] is not None and row["model"] == "tiny:llava-sglang"
        else:
            assert row["error"].startswith(want.split(":")[1])

    assert main(args) == 0  # rerun: nothing new, nothing written twice
    printed = capsys.readouterr().out
    assert "nothing new" in printed and "images: 0  rows: 0  ok: 0  error: 0" in printed
    assert len(read_rows(out)) == len(expected)
