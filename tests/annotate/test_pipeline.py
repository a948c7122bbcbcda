"""The whole pipeline on a real local Ray cluster: hard files, exactly once, crash + rerun, growth, S3."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter

import pytest

from tests.fixtures.annotate import (
    build_corpus,
    check_table_matches_files,
    make_color_engine,
    outcome,
    read_rows,
    run_record,
)
from tests.fixtures.infra import REPO
from vsd import storage
from vsd.annotate.index import Output
from vsd.annotate.pipeline import run_annotation
from vsd.cli import main
from vsd.relations import RELATIONS

COMPARED = (
    "row_id",
    "image_id",
    "source_uri",
    "status",
    "error",
    "relation",
    "description",
    "descriptions",
    "refined_description",
    "refined_descriptions",
    "geometry_relation",
    "consistent",
    "flags",
)


def check_exactly_once(output: str, expected: dict[str, str]) -> list[dict]:
    """Every expected file has exactly one row (one pair each) with the expected outcome -- in the
    folder's files and in the table's current rows alike, and every row's run has a record."""
    rows = read_rows(output)
    check_table_matches_files(output, rows)
    ids = Counter(r["row_id"] for r in rows)
    assert not [i for i, n in ids.items() if n > 1], "duplicated rows"
    by_uri = {r["source_uri"]: r for r in rows}
    assert set(by_uri) == set(expected), "lost or unexpected rows"
    wrong = {
        u: (want, outcome(by_uri[u]), by_uri[u]["error"])
        for u, want in expected.items()
        if outcome(by_uri[u]) != want
    }
    assert not wrong, wrong
    return rows


def test_hf_tiny_hard_files_each_yield_their_row_once(ray_local, tmp_path, annotate_config):
    corpus, out = str(tmp_path / "corpus"), str(tmp_path / "out")
    expected = build_corpus(corpus, 40, seed=0, hard=True)
    result = run_annotation(
        annotate_config(storage.join(corpus, "manifest.jsonl"), out)
    )  # real hf engine, tiny model
    rows = check_exactly_once(out, expected)
    n_ok = sum(v == "ok" for v in expected.values())
    assert result.counts["images"] == len(expected) and result.counts["ok"] == n_ok
    assert result.counts["error"] == dict(Counter(v.split(":")[1] for v in expected.values() if v != "ok"))
    ok = [r for r in rows if r["status"] == "ok"]
    assert all(
        r["relation"] in RELATIONS and len(r["relation_scores"]) == 9 for r in ok
    )  # constrained choice
    assert all(r["refine_status"] and r["geometry_relation"] in (*RELATIONS, None) for r in ok)
    assert {r["model"] for r in rows} == {"tiny:llava"} and len({r["run_id"] for r in rows}) == 1
    manifest = run_record(out, result.run_id)
    partition = Output(out).partition_record("2026-11-26")
    assert manifest["counts"]["ok"] == n_ok and partition["totals"]["rows"] == len(expected)
    assert [r["run_id"] for r in partition["runs"]] == [result.run_id]
    # The partition's totals are what the parts hold: not the run's skips, deferrals or accounting.
    written = {k: v for k, v in result.counts.items() if k not in ("skipped", "deferred", "unaccounted")}
    assert partition["totals"] == written
    assert manifest["config"]["engine"]["model"] == "tiny:llava" and manifest["timings"]["pipeline_s"] > 0
    assert manifest["counts"]["unaccounted"] == 0 and sorted(manifest["parts"]) == sorted(result.parts)
    assert f"| ok | {n_ok} |" in storage.read_text(storage.join(out, "_README.md"))


def test_grown_corpus_annotates_only_the_new_images(ray_local, tmp_path, annotate_config):
    corpus, out = str(tmp_path / "corpus"), str(tmp_path / "out")
    manifest = storage.join(corpus, "manifest.jsonl")
    first = build_corpus(corpus, 30, seed=3)
    assert (
        run_annotation(annotate_config(manifest, out), engine_factory=make_color_engine).counts["images"]
        == 30
    )
    grown = build_corpus(corpus, 50, seed=4, start=30)  # 50 more lines in the same manifest
    nightly = run_annotation(
        annotate_config(manifest, out, "run_date=2026-11-27"), engine_factory=make_color_engine
    )
    # Only the new lines became a shard, and only that shard was read: the 30 are not even touched.
    assert nightly.counts["images"] == 50 and nightly.counts["skipped"]["already_annotated"] == 0
    record = run_record(out, nightly.run_id)
    assert record["source"]["new_since_last_sync"] == 50 and record["source"]["planned_images"] == 50
    rows = check_exactly_once(out, {**first, **grown})
    runs = Counter(r["run_id"] for r in rows)
    assert runs[nightly.run_id] == 50 and sorted(runs.values()) == [30, 50]
    assert Output(out).partition_record("2026-11-27")["totals"]["images"] == 50


def test_a_file_named_again_under_a_new_given_id_is_annotated_again(ray_local, tmp_path, annotate_config):
    """A manifest may name one file under two ids (say, with different pairs): annotating the first
    must not make the next run take the second for done (the listing key carries the given id)."""
    corpus, out = str(tmp_path / "corpus"), str(tmp_path / "out")
    manifest = storage.join(corpus, "manifest.jsonl")
    build_corpus(corpus, 2, seed=8)
    lines = [json.loads(line) for line in storage.read_text(manifest).splitlines()]
    storage.write_text(manifest, json.dumps({**lines[0], "image_id": "first-id"}) + "\n")
    assert (
        run_annotation(annotate_config(manifest, out), engine_factory=make_color_engine).counts["images"] == 1
    )
    storage.write_text(
        manifest, storage.read_text(manifest) + json.dumps({**lines[0], "image_id": "second-id"}) + "\n"
    )
    again = run_annotation(
        annotate_config(manifest, out, "run_date=2026-11-27"), engine_factory=make_color_engine
    )
    assert again.counts["images"] == 1 and again.counts["skipped"]["already_annotated"] == 0
    assert sorted({r["image_id"] for r in read_rows(out)}) == ["first-id", "second-id"]


def test_unchanged_folder_rerun_never_starts_the_ray_pipeline(
    ray_local, tmp_path, annotate_config, monkeypatch
):
    corpus, out = str(tmp_path / "corpus"), str(tmp_path / "out")
    build_corpus(corpus, 12, seed=6)
    images = storage.join(corpus, "images")  # a folder: known files are recognised by uri|size|mtime
    assert (
        run_annotation(annotate_config(images, out), engine_factory=make_color_engine).counts["images"] == 12
    )

    def no_ray_path(*_a, **_k):
        raise AssertionError("an unchanged corpus must not start the Ray pipeline")

    monkeypatch.setattr("vsd.annotate.pipeline._stream", no_ray_path)
    again = run_annotation(
        annotate_config(images, out, "run_date=2026-11-28"), engine_factory=make_color_engine
    )
    assert again.counts["images"] == 0 and again.counts["unaccounted"] == 0 and len(read_rows(out)) == 12
    assert run_record(out, again.run_id)["source"]["shards_read"] == []
    assert Output(out).partition_record("2026-11-28") is None  # a run that wrote nothing records no partition


DRIVER = textwrap.dedent("""
    import sys, ray
    from vsd.annotate.config import load_config
    from vsd.annotate.pipeline import run_annotation
    from tests.fixtures.annotate import make_slow_color_engine
    ray.init(address=sys.argv[1])
    cfg = load_config(sys.argv[2], sys.argv[3:])
    run_annotation(cfg, engine_factory=make_slow_color_engine)
""")


def parts_in(output: str) -> set[str]:
    return set(Output(output).data_parts())


def test_killed_driver_rerun_gives_exactly_the_uninterrupted_rows(ray_local, tmp_path, annotate_config):
    corpus = str(tmp_path / "corpus")
    expected = build_corpus(corpus, 40, seed=2)
    manifest = storage.join(corpus, "manifest.jsonl")
    killed_out, clean_out = str(tmp_path / "killed"), str(tmp_path / "clean")
    overrides = [
        f"input.uri={manifest}",
        f"output={killed_out}",
        "progress_bars=false",
        "run_date=2026-11-26",
        "stages.write.resources.batch_size=4",
        "engine.batch_size=2",
    ]
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.Popen(
        [
            sys.executable,
            str(script),
            ray_local.get_runtime_context().gcs_address,
            str(REPO / "jobs/configs/annotate-tiny-cpu.yaml"),
            *overrides,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 300
        while len(parts_in(killed_out)) < 3 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)  # the driver dies mid-run, as a node loss would take it
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    # Let the dead job's workers go away (Ray kills them) before rerunning on the same output.
    stable, seen = 0, parts_in(killed_out)
    while stable < 30:
        time.sleep(0.1)
        now = parts_in(killed_out)
        stable = stable + 1 if now == seen else 0
        seen = now
    written_before = len(read_rows(killed_out))
    assert 0 < written_before < len(expected)
    assert Output(killed_out).runs() == []  # the killed run left no record

    rerun = run_annotation(
        annotate_config(manifest, killed_out, "stages.write.resources.batch_size=4"),
        engine_factory=make_color_engine,
    )
    assert rerun.counts["images"] == len(expected) - written_before
    assert rerun.counts["skipped"]["already_annotated"] == written_before
    run_annotation(annotate_config(manifest, clean_out), engine_factory=make_color_engine)

    killed = {r["row_id"]: r for r in check_exactly_once(killed_out, expected)}
    clean = {r["row_id"]: r for r in check_exactly_once(clean_out, expected)}
    assert set(killed) == set(clean)
    assert [{k: killed[i][k] for k in COMPARED} for i in sorted(killed)] == [
        {k: clean[i][k] for k in COMPARED} for i in sorted(clean)
    ]


def test_cli_folder_scene_level_duplicates_and_rerun(ray_local, tmp_path, capsys):
    corpus, out = tmp_path / "photos", str(tmp_path / "out")
    expected = build_corpus(str(tmp_path / "src"), 4, seed=5)
    corpus.mkdir()
    for i, uri in enumerate(sorted(expected)):
        (corpus / f"p{i}.png").write_bytes(storage.read_bytes(uri))
    (corpus / "copy.png").write_bytes((corpus / "p0.png").read_bytes())  # same content: one image
    args = [
        "annotate",
        "--config",
        str(REPO / "jobs/configs/annotate-tiny-cpu.yaml"),
        "--input",
        str(corpus),
        "--output",
        out,
        "progress_bars=false",
        "run_date=2026-11-26",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert (
        "images: 4  rows: 4  ok: 4  error: 0  skipped: 1" in printed
        and "skipped duplicate_content: 1" in printed
    )
    rows = read_rows(out)
    assert sorted(r["pair_index"] for r in rows) == [-1] * 4 and all(
        r["descriptions"] is not None for r in rows
    )
    # Scene level: the text is where users look, and the card counts these rows apart from pairs.
    assert all(r["description"] == r["descriptions"][0] for r in rows if r["descriptions"])
    card = storage.read_text(f"{out}/_README.md")
    assert "| ok at scene level (no pair given" in card and "| none |" not in card
    [run_id] = Output(out).runs()
    assert any("copy.png" in d or "p0.png" in d for d in run_record(out, run_id)["source"]["duplicates"])

    assert main(args) == 0  # a finished shard is not read again: no file is opened
    printed = capsys.readouterr().out
    assert "nothing new" in printed and "images: 0  rows: 0  ok: 0  error: 0  skipped: 0" in printed
    assert len(read_rows(out)) == 4


def test_empty_corpus_finishes_cleanly(ray_local, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    out = str(tmp_path / "out")
    assert (
        main(
            [
                "annotate",
                "--config",
                str(REPO / "jobs/configs/annotate-tiny-cpu.yaml"),
                "--input",
                str(tmp_path / "empty"),
                "--output",
                out,
                "progress_bars=false",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "no images found" in printed and "images: 0  rows: 0" in printed
    assert read_rows(out) == []


def test_bad_config_and_paths_fail_before_any_work(tmp_path, capsys):
    cfg = str(REPO / "jobs/configs/annotate-tiny-cpu.yaml")
    assert (
        main(["annotate", "--config", cfg, "--input", str(tmp_path), "--output", str(tmp_path / "out")]) == 2
    )
    assert "inside the input" in capsys.readouterr().err
    assert (
        main(
            [
                "annotate",
                "--config",
                cfg,
                "--input",
                str(tmp_path / "x"),
                "--output",
                str(tmp_path / "o"),
                "tasks=[4]",
            ]
        )
        == 2
    )
    assert "tasks:" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["annotate-tiny-cpu.yaml", "annotate-nightly-llava15-13b-sglang.yaml"])
def test_shipped_configs_load_and_open_with_their_command(name):
    from vsd.annotate.config import load_config

    path = REPO / "jobs" / "configs" / name
    assert "annotate" in path.read_text().splitlines()[1]  # line 2 is the command that runs it
    cfg = load_config(str(path), ["input.uri=s3://in/", "output=s3://out/"])
    cfg.check_paths()
    if "nightly" in name:
        assert cfg.engine.kind == "sglang" and cfg.stages.generate.resources.concurrency == 8
        assert cfg.stages.generate.resources.num_gpus * cfg.stages.generate.resources.concurrency <= 8
