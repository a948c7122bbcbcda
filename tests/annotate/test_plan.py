"""`vsd annotate --plan`: what the run would do, on a real output, writing nothing."""

from __future__ import annotations

import json
import os

import vsd
from tests.fixtures.annotate import build_corpus, make_color_engine
from tests.fixtures.infra import REPO
from vsd import storage
from vsd.annotate.pipeline import run_annotation
from vsd.annotate.plan import make_plan
from vsd.cli import main
from vsd.corpus import Corpus, sync


def _listing(root: str) -> list[str]:
    return sorted(storage.list_files(root)) if os.path.exists(root) else []


def test_plan_names_cluster_paths_new_and_refused_rows_and_a_model_change(
    ray_local, tmp_path, annotate_config, capsys, monkeypatch
):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    corpus, out = str(tmp_path / "corpus"), str(tmp_path / "out")
    build_corpus(corpus, 4, seed=31)
    manifest = f"{corpus}/manifest.jsonl"
    run_annotation(annotate_config(manifest, out), engine_factory=make_color_engine)
    build_corpus(corpus, 2, seed=32, start=4)  # two new images
    with open(manifest, "a") as f:  # and one row outside the manifest's root
        f.write(json.dumps({"uri": "/etc/hostname"}) + "\n")
    before = _listing(out)
    monkeypatch.chdir(tmp_path)
    args = ["annotate", "--config", str(REPO / "jobs/configs/annotate-tiny-cpu.yaml"), "--plan"]
    args += ["--input", "corpus/manifest.jsonl", "--output", "out", "--model", "tiny:llava-other"]
    capsys.readouterr()
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "would start a local Ray cluster" in printed
    assert f"input:   {manifest} (manifest)" in printed and f"output:  {out} (4 current rows)" in printed
    assert "new:     3 image row(s)" in printed
    assert "refused: 1 row(s) outside an allowed root" in printed and "'/etc/hostname'" in printed
    assert "changed since the last run: model: 'tiny:llava' -> 'tiny:llava-other'" in printed
    assert "nothing was written (--plan)" in printed
    assert _listing(out) == before  # nothing written, not even the corpus sync
    args[args.index("--model") + 1] = "tiny:llava"
    assert main(args + ["--ray-address", "127.0.0.1:1"]) == 0  # only printed: nothing is contacted
    printed = capsys.readouterr().out
    assert "would join 127.0.0.1:1" in printed
    assert "changed since the last run: model" not in printed


def test_plan_says_which_deleted_files_leave_the_table_or_stay_when_prune_is_off(
    ray_local, tmp_path, annotate_config
):
    src = build_corpus(str(tmp_path / "src"), 4, seed=33)
    folder = tmp_path / "photos"
    folder.mkdir()
    names = [str(folder / f"p{i}.png") for i in range(4)]
    for name, uri in zip(names, sorted(src)):
        storage.write_bytes(name, storage.read_bytes(uri))
    corpus = Corpus.open_or_create(str(tmp_path / "corpus"))
    sync(corpus, str(folder))
    out = str(tmp_path / "out")
    run_annotation(annotate_config(corpus.root, out), engine_factory=make_color_engine)
    for gone in names[:2]:  # deleted between two syncs, twice
        os.remove(gone)
        assert sync(corpus, str(folder)).listing.gone == 1
    before = _listing(out)
    what = "prune:   2 deleted source file(s) from 2 sync(s)"
    lines = make_plan(annotate_config(corpus.root, out)).lines()
    assert f"{what} leave the current table before this run writes" in lines, lines
    lines = make_plan(annotate_config(corpus.root, out, "input.prune=off")).lines()
    assert f"{what} not applied (input.prune: off, append-only): their rows stay current" in lines, lines
    assert _listing(out) == before  # the plan applied nothing
    run_annotation(annotate_config(corpus.root, out, "run_date=2026-11-27"), engine_factory=make_color_engine)
    assert sorted(r["source_uri"] for r in vsd.read(out).to_pylist()) == names[2:]
    assert not [line for line in make_plan(annotate_config(corpus.root, out)).lines() if "prune" in line]
