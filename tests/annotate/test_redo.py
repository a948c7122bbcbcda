"""`vsd annotate --retry-errors` and `--reannotate changed-model`: real runs of the tiny CPU config
on local files. Each selected row is replaced by its new one in one commit (one current row per
image, the old row still readable as of an earlier run), and a rerun redoes nothing new."""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter

from ray.data import DataContext
from ray.data._internal.logging import SessionFileHandler

import vsd
from tests.fixtures.annotate import build_corpus, vsd_annotate_args
from vsd.annotate.index import Output
from vsd.cli import main

RAY_DATA_CHATTER = ("logging_progress.py", "Execution plan of Dataset", "streaming_executor.py")


def _annotate(manifest: str, out: str, *extra: str) -> list[str]:
    """`vsd annotate`'s arguments (no program name: `vsd.cli.main` runs them in this process)."""
    return vsd_annotate_args(manifest, out, "stages.write.resources.batch_size=2", *extra)[1:]


def _current(out: str) -> list[dict]:
    return vsd.read(out).to_pylist()


def test_retry_errors_replaces_the_error_rows_once_and_a_rerun_does_nothing(
    ray_local, tmp_path, capfd, monkeypatch
):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    corpus, elsewhere, out = str(tmp_path / "corpus"), str(tmp_path / "elsewhere"), str(tmp_path / "out")
    build_corpus(corpus, 2, seed=41)
    build_corpus(elsewhere, 2, seed=42)  # a config mistake: these are outside the allowed roots
    manifest = f"{corpus}/manifest.jsonl"
    with open(manifest, "a") as f:
        f.write(open(f"{elsewhere}/manifest.jsonl").read())
    args = _annotate(manifest, out)
    assert main(args) == 0
    first = _current(out)
    assert Counter(r["status"] for r in first) == {"ok": 2, "error": 2}
    assert {r["error"].split(":")[0] for r in first if r["status"] == "error"} == {"outside_root"}
    printed = capfd.readouterr()
    assert not [c for c in RAY_DATA_CHATTER if c in printed.out + printed.err], (
        "Ray Data chatter without --verbose"
    )
    first_run = Output(out).runs()[0]

    fixed = args + [f"input.allowed_roots=[{elsewhere}]"]
    assert main(fixed + ["--retry-errors", "decode_error", "--plan"]) == 0
    assert "would redo: 0 current row(s)" in capfd.readouterr().out
    assert main(fixed + ["--retry-errors", "--plan"]) == 0
    assert "would redo: 2 current row(s) of 2 image(s)" in capfd.readouterr().out
    assert _current(out) == first  # the plan wrote nothing

    assert main(fixed + ["--retry-errors", "outside_root"]) == 0
    now = _current(out)
    assert len(now) == len(first) and Counter(r["status"] for r in now) == {"ok": 4}
    assert len({r["source_uri"] for r in now}) == len(now) == len({r["row_id"] for r in now})
    assert sorted(r["row_id"] for r in vsd.read(out, as_of=first_run).to_pylist()) == sorted(
        r["row_id"] for r in first
    )
    redone = {r["source_uri"] for r in first if r["status"] == "error"}
    assert {r["run_id"] for r in now if r["source_uri"] in redone} == {Output(out).runs()[-1]}

    capfd.readouterr()
    assert main(fixed + ["--retry-errors"]) == 0
    printed = capfd.readouterr().out
    assert "redo: 0 current row(s)" in printed and "images: 0" in printed
    assert _current(out) == now


def test_reannotate_changed_model_replaces_by_row_id_with_shared_files_and_given_ids(
    ray_local, tiny_llava_dir, tmp_path, capfd, monkeypatch
):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    corpus, out = str(tmp_path / "corpus"), str(tmp_path / "out")
    expected = build_corpus(corpus, 2, seed=43)
    first_uri, second_uri = sorted(expected)
    copy = f"{corpus}/images/copy-of-first.png"  # identical bytes under another URI: one image
    shutil.copy(first_uri, copy)
    manifest = f"{corpus}/manifest.jsonl"
    with open(manifest, "a") as f:
        f.write(json.dumps({"image": copy}) + "\n")
        for given in ("given-a", "given-b"):  # one file, two given ids: two images of one URI
            f.write(json.dumps({"image": second_uri, "image_id": given}) + "\n")
    args = _annotate(manifest, out)
    assert main(args) == 0
    first = _current(out)
    assert len(first) == 4 and {r["model"] for r in first} == {"tiny:llava"}
    capfd.readouterr()

    other = str(tmp_path / "other-model")  # the same tiny model, exported to another folder
    shutil.copytree(tiny_llava_dir, other)
    args += ["--model", other]
    assert main(args + ["--plan"]) == 0
    printed = capfd.readouterr().out
    assert "a choice: as is, the 4 current row(s) another model/adapter/prompt made stay" in printed
    assert main(args + ["--reannotate", "changed-model", "--plan"]) == 0
    assert "would redo: 4 current row(s) of 4 image(s)" in capfd.readouterr().out

    assert main(args + ["--reannotate", "changed-model", "--verbose"]) == 0
    capfd.readouterr()
    # Ray Data's console handler may write to a stream an earlier test in this process made (not
    # the fd capfd reads), so what --verbose sets is checked, not what reached the capture.
    ctx = DataContext.get_current()
    assert ctx.enable_progress_bars and ctx.enable_operator_progress_bars and ctx.print_on_execution_start
    console = [h for h in logging.getLogger("ray.data").handlers if not isinstance(h, SessionFileHandler)]
    assert all(h.level <= logging.INFO for h in console), "--verbose shows Ray Data's output"
    now = _current(out)
    assert sorted(r["row_id"] for r in now) == sorted(r["row_id"] for r in first)
    assert {r["model"] for r in now} == {other} and len(now) == 4
    assert {r["image_id"] for r in now if r["source_uri"] == second_uri} >= {"given-a", "given-b"}
    old = vsd.read(out, as_of=Output(out).runs()[0]).to_pylist()
    assert {r["model"] for r in old} == {"tiny:llava"} and len(old) == 4

    assert main(args + ["--reannotate", "changed-model"]) == 0
    printed = capfd.readouterr().out
    assert "redo: 0 current row(s)" in printed and "images: 0" in printed
    assert _current(out) == now


def test_retry_errors_on_s3_replaces_the_error_rows_once(ray_local, tmp_path, s3_bucket, capfd, monkeypatch):
    """The same redo with the corpus and the output on S3 (moto on 127.0.0.1)."""
    from vsd import storage

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    lines = []
    for name, seed in (("corpus", 43), ("elsewhere", 44)):
        local = str(tmp_path / name)
        build_corpus(local, 2, seed=seed)
        for uri in storage.list_files(storage.join(local, "images")):
            storage.write_bytes(f"{s3_bucket}/{name}" + uri[len(local) :], storage.read_bytes(uri))
        lines.append(
            storage.read_text(f"{local}/manifest.jsonl").replace(local + "/", f"{s3_bucket}/{name}/")
        )
    manifest, out = f"{s3_bucket}/corpus/manifest.jsonl", f"{s3_bucket}/out"
    storage.write_text(manifest, "".join(lines))
    args = _annotate(manifest, out)
    assert main(args) == 0
    first = _current(out)
    assert Counter(r["error"].split(":")[0] if r["error"] else "ok" for r in first) == {
        "ok": 2,
        "outside_root": 2,
    }
    capfd.readouterr()
    fixed = args + [f"input.allowed_roots=[{s3_bucket}/elsewhere/]"]
    assert main(fixed + ["--retry-errors", "outside_root"]) == 0
    now = _current(out)
    assert Counter(r["status"] for r in now) == {"ok": 4}
    assert len({r["source_uri"] for r in now}) == len(now) == len({r["row_id"] for r in now}) == 4
    assert main(fixed + ["--retry-errors"]) == 0 and "images: 0" in capfd.readouterr().out
    assert _current(out) == now
