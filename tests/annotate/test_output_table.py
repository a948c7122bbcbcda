"""The output as a table: one writer at a time, commits that survive a crash, a reused run id,
an output written before the table, a schema that grows. Real files, real processes, real S3
protocol (moto on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pyarrow as pa
import pytest

import vsd
from tests.fixtures.annotate import build_corpus, check_table_matches_files, make_color_engine, read_rows
from tests.fixtures.infra import REPO
from vsd import storage
from vsd.annotate.index import Output
from vsd.annotate.output import table
from vsd.annotate.output.commits import start_record
from vsd.annotate.output.delete import delete_sources
from vsd.annotate.output.lease import Lease, LeaseLost, OutputBusy, create_exclusive
from vsd.annotate.pipeline import run_annotation
from vsd.errors import VSDError

# --------------------------------------------------------------------------------------------
# The lease
# --------------------------------------------------------------------------------------------


def test_a_live_lease_refuses_a_second_writer_and_is_free_once_released(tmp_path):
    vsd_dir = str(tmp_path / "__vsd")
    with Lease(vsd_dir, "night-1") as first:
        with pytest.raises(OutputBusy, match="night-1") as busy:
            Lease(vsd_dir, "night-2").acquire()
        assert busy.value.exit_code == 75
        first.check()  # still the holder
    with Lease(vsd_dir, "night-2") as second:  # released: the next run takes the next generation
        assert second.generation == first.generation + 1


def test_a_dead_or_expired_holder_is_taken_over_and_the_stalled_one_is_fenced(tmp_path):
    vsd_dir = str(tmp_path / "__vsd")
    lease_dir = storage.join(vsd_dir, "lease")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    record = {"run_id": "killed", "host": os.uname().nodename, "pid": int(dead.stdout), "started": "x"}
    assert create_exclusive(
        storage.join(lease_dir, "g-000000000001.json"),
        json.dumps({**record, "expires": time.time() + 3600, "released": False}).encode(),
    )
    with Lease(vsd_dir, "rerun") as rerun:  # its pid is gone: no waiting out the ttl
        assert rerun.generation == 2
    stalled = Lease(vsd_dir, "stalled", ttl_s=0.3).acquire()
    stalled._stop.set()  # it stops renewing, as a hung driver would
    time.sleep(0.5)
    with Lease(vsd_dir, "next"):  # expired: taken over
        with pytest.raises(LeaseLost, match="lost its writer lease"):
            stalled.check()  # fencing: the stalled run may not commit any more
    stalled.release()


def test_exclusive_create_holds_on_s3(s3_bucket):
    uri = f"{s3_bucket}/out/__vsd/lease/g-000000000001.json"
    assert create_exclusive(uri, b"{}")
    assert not create_exclusive(uri, b"{}")  # If-None-Match: 412 for the second writer
    with Lease(f"{s3_bucket}/out/__vsd", "a") as held:
        assert held.generation == 2
        with pytest.raises(OutputBusy):
            Lease(f"{s3_bucket}/out/__vsd", "b").acquire()


# --------------------------------------------------------------------------------------------
# Runs on one output
# --------------------------------------------------------------------------------------------


def test_two_overlapping_vsd_annotate_processes_write_every_image_once(ray_local, tmp_path):
    """Last night's run still going when tonight's starts (another run_date): the second process
    stops before writing with one line and exit 75; its rerun later finds nothing new."""
    corpus, out = str(tmp_path / "corpus"), str(tmp_path / "out")
    expected = build_corpus(corpus, 24, seed=21)
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": ""}
    address = ray_local.get_runtime_context().gcs_address

    def annotate(date: str) -> subprocess.Popen:
        args = [
            str(REPO / ".venv/bin/vsd"),
            "annotate",
            "--config",
            str(REPO / "jobs/configs/annotate-tiny-cpu.yaml"),
        ]
        args += ["--input", f"{corpus}/manifest.jsonl", "--output", out, "--ray-address", address]
        args += ["progress_bars=false", f"run_date={date}", "stages.write.resources.batch_size=4"]
        return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    first = annotate("2026-12-03")
    lease = storage.join(out, "__vsd", "lease", "g-000000000001.json")
    deadline = time.time() + 120
    while not storage.exists(lease) and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    second = annotate("2026-12-04")
    _, err2 = second.communicate(timeout=120)
    out1, err1 = first.communicate(timeout=600)
    assert first.returncode == 0, err1[-2000:]
    assert second.returncode == 75, err2[-2000:]
    lines = [line for line in err2.splitlines() if line.startswith("vsd:")]
    assert len(lines) == 1 and "another run is writing this output" in lines[0], err2[-2000:]
    rows = check_table_matches_files(out)
    assert sorted(r["source_uri"] for r in rows) == sorted(expected)  # every image once
    assert {r["run_date"] for r in rows} == {"2026-12-03"}
    rerun = annotate("2026-12-04")
    stdout, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-2000:]
    assert "nothing new" in stdout
    assert len(vsd.read(out)) == len(expected) and len(read_rows(out)) == len(expected)


def test_a_finished_run_id_is_refused_before_anything_is_written(ray_local, tmp_path, annotate_config):
    corpus, out = str(tmp_path / "corpus"), str(tmp_path / "out")
    build_corpus(corpus, 3, seed=22)
    cfg = annotate_config(f"{corpus}/manifest.jsonl", out, "run_id=nightly")
    run_annotation(cfg, engine_factory=make_color_engine)
    build_corpus(corpus, 2, seed=23, start=3)
    with pytest.raises(VSDError, match="run_id: 'nightly' already names a finished run"):
        run_annotation(cfg, engine_factory=make_color_engine)
    assert len(vsd.read(out)) == 3


def test_a_run_that_dies_at_its_commit_is_committed_by_the_next_run(
    ray_local, tmp_path, annotate_config, monkeypatch
):
    """Parts written, the commit never made (a kill at that moment): the next run's sweep commits
    them once, under the dead run's own provenance; nothing is annotated twice."""
    corpus, out = str(tmp_path / "corpus"), str(tmp_path / "out")
    expected = build_corpus(corpus, 10, seed=24)
    cfg = annotate_config(f"{corpus}/manifest.jsonl", out, "stages.write.resources.batch_size=4")
    real_commit = table.commit_parts

    def dies(*args, **kwargs):
        raise RuntimeError("killed at the commit")

    monkeypatch.setattr(table, "commit_parts", dies)
    with pytest.raises(RuntimeError, match="killed at the commit"):
        run_annotation(cfg, engine_factory=make_color_engine)
    dead = {r["run_id"] for r in read_rows(out)}
    assert len(read_rows(out)) == len(expected) and len(vsd.read(out)) == 0  # written, not committed
    monkeypatch.setattr(table, "commit_parts", real_commit)
    again = run_annotation(
        annotate_config(f"{corpus}/manifest.jsonl", out, "stages.write.resources.batch_size=4"),
        engine_factory=make_color_engine,
    )
    assert again.counts["images"] == 0 and again.counts["skipped"]["already_annotated"] == len(expected)
    rows = check_table_matches_files(out)
    assert len(rows) == len(expected) and {r["run_id"] for r in rows} == dead
    [recovered] = [c for c in table.history(out) if c["operation"] == "recover"]
    assert recovered["run_id"] in dead and recovered["model"] == "tiny:llava"
    assert again.manifest["table"]["recovered_parts"] == {recovered["run_id"]: 3}
    assert start_record(Output(out), recovered["run_id"])["config"]["engine"]["model"] == "tiny:llava"


def test_a_killed_runs_part_rewritten_since_is_not_brought_back_by_the_sweep(
    ray_local, tmp_path, annotate_config, monkeypatch
):
    """A run killed after its commits, before its finish folded its progress entries; a takedown
    (`vsd delete`) then rewrites one of its parts. The next run's sweep must not add the old part
    back: the deleted row would be current again and the rest of that part there twice."""
    corpus, out = str(tmp_path / "corpus"), str(tmp_path / "out")
    expected = build_corpus(corpus, 8, seed=27)
    cfg = annotate_config(f"{corpus}/manifest.jsonl", out, "stages.write.resources.batch_size=4")
    real_compact = Output.compact

    def killed(self, *args, **kwargs):
        raise RuntimeError("killed before its finish")

    monkeypatch.setattr(Output, "compact", killed)
    with pytest.raises(RuntimeError, match="killed before its finish"):
        run_annotation(cfg, engine_factory=make_color_engine)
    monkeypatch.setattr(Output, "compact", real_compact)
    assert len(vsd.read(out)) == len(expected) and Output(out).progress()  # committed, not folded
    gone = sorted(expected)[0]
    version, removed = delete_sources(out, [gone], "takedown")
    assert version is not None and removed == 1
    again = run_annotation(
        annotate_config(f"{corpus}/manifest.jsonl", out, "stages.write.resources.batch_size=4"),
        engine_factory=make_color_engine,
    )
    assert again.counts["images"] == 0
    current = vsd.read(out).to_pylist()
    assert sorted(r["source_uri"] for r in current) == sorted(set(expected) - {gone})  # once each
    assert again.manifest["table"]["recovered_parts"] == {}
    assert not Output(out).progress()  # folded by the run that came next
    (dead,) = {r["run_id"] for r in current}
    with pytest.raises(VSDError, match=f"run_id: '{dead}' names a killed run .* a later run already"):
        run_annotation(  # its totals are final: what it would write next could never be folded
            annotate_config(f"{corpus}/manifest.jsonl", out, f"run_id={dead}"),
            engine_factory=make_color_engine,
        )


def test_an_output_written_before_the_table_becomes_its_first_commit(ray_local, tmp_path, annotate_config):
    corpus, out = str(tmp_path / "corpus"), str(tmp_path / "out")
    expected = build_corpus(corpus, 6, seed=25)
    run_annotation(annotate_config(f"{corpus}/manifest.jsonl", out), engine_factory=make_color_engine)
    before = sorted(r["row_id"] for r in read_rows(out))
    storage.delete(storage.join(out, "_delta_log"))  # the layout of the previous release: parts only
    assert not table.exists(out)
    build_corpus(corpus, 2, seed=26, start=6)
    again = run_annotation(
        annotate_config(f"{corpus}/manifest.jsonl", out, "run_date=2026-11-27"),
        engine_factory=make_color_engine,
    )
    assert again.counts["images"] == 2  # the old rows were neither lost nor annotated again
    current = sorted(vsd.read(out).column("row_id").to_pylist())
    assert len(current) == len(expected) + 2 and set(before) < set(current)
    assert current == sorted(r["row_id"] for r in read_rows(out))
    assert [c["operation"] for c in table.history(out)] == ["CREATE TABLE", "migrate", "annotate"]


def test_a_column_added_to_the_schema_is_added_to_an_existing_table(tmp_path):
    root = str(tmp_path / "out")
    old = pa.schema([f for f in table.TABLE_SCHEMA if f.name != "refine_status"])
    from deltalake import DeltaTable

    DeltaTable.create(root, schema=old, partition_by=[table.PARTITION])
    assert table.read(root).schema == table.TABLE_SCHEMA  # read fills a column the table lacks
    table.ensure(root)
    assert "refine_status" in pa.schema(table.open_table(root).schema().to_arrow()).names
    assert table.read(root).schema == table.TABLE_SCHEMA


def test_every_tenth_version_is_a_checkpoint_so_opening_the_table_replays_few_commits(tmp_path):
    """The driver opens the table for every commit: with a checkpoint every `CHECKPOINT_EVERY`
    versions an open replays at most that many JSON commits, not all of a long run's."""
    import pyarrow.parquet as pq

    root = str(tmp_path / "out")
    table.ensure(root)  # version 0
    os.makedirs(os.path.join(root, "run_date=2026-01-01"))
    parts = []
    for i in range(table.CHECKPOINT_EVERY + 2):
        part = table.Part("2026-01-01", f"part-{i:020d}.parquet", 3)
        pq.write_table(pa.table({"image_id": ["a", "b", "c"]}), os.path.join(root, part.path))
        assert table.commit_parts(root, [part], {"run_id": "r"}) == i + 1
        parts.append(part)
    log = sorted(os.listdir(os.path.join(root, "_delta_log")))
    assert [f for f in log if "checkpoint.parquet" in f] == [
        f"{table.CHECKPOINT_EVERY:020d}.checkpoint.parquet"
    ]
    assert table.active_paths(table.open_table(root)) == {p.path for p in parts}
    assert table.current_rows(root) == 3 * len(parts)
    assert table.commit_parts(root, parts[:2], {"run_id": "r"}) is None  # still idempotent


def test_a_file_replaced_in_place_has_one_current_row_and_the_old_one_stays_readable(
    ray_local, tmp_path, annotate_config
):
    """A source whose content changed (new bytes, new mtime): the next night annotates it again,
    and the commit that adds its new row takes the old one out of the current table -- one
    current row per file, the old version still there for `as_of` the night before."""
    src = build_corpus(str(tmp_path / "src"), 6, seed=27)
    folder, out = tmp_path / "photos", str(tmp_path / "out")
    folder.mkdir()
    names = []
    for i, uri in enumerate(sorted(src)[:4]):
        (folder / f"p{i}.png").write_bytes(storage.read_bytes(uri))
        names.append(str(folder / f"p{i}.png"))
    run_annotation(annotate_config(str(folder), out), engine_factory=make_color_engine)
    night1 = {r["source_uri"]: r["image_id"] for r in vsd.read(out).to_pylist()}
    assert sorted(night1) == names
    changed = folder / "p1.png"
    changed.write_bytes(storage.read_bytes(sorted(src)[5]))  # new content under the same name
    os.utime(changed, (time.time() + 5, time.time() + 5))
    again = run_annotation(
        annotate_config(str(folder), out, "run_date=2026-11-27"), engine_factory=make_color_engine
    )
    assert again.counts["images"] == 1
    current = vsd.read(out).to_pylist()
    assert sorted(r["source_uri"] for r in current) == names  # one current row per file
    by_uri = {r["source_uri"]: r for r in current}
    assert by_uri[str(changed)]["image_id"] != night1[str(changed)]
    assert by_uri[str(changed)]["run_date"] == "2026-11-27"
    assert {u: by_uri[u]["image_id"] for u in names if u != str(changed)} == {
        u: i for u, i in night1.items() if u != str(changed)
    }
    before = {r["source_uri"]: r["image_id"] for r in vsd.read(out, as_of="2026-11-26").to_pylist()}
    assert before == night1  # the old version, as of the night before
    [commit] = [c for c in table.history(out) if c.get("run_date") == "2026-11-27"]
    assert commit["superseded_rows"] == "1"
    rerun = run_annotation(
        annotate_config(str(folder), out, "run_date=2026-11-28"), engine_factory=make_color_engine
    )
    assert rerun.counts["images"] == 0 and len(vsd.read(out)) == 4


def test_vsd_delete_takes_an_image_out_of_the_current_rows_in_one_commit(
    ray_local, tmp_path, annotate_config
):
    from vsd.cli import main

    corpus, out = str(tmp_path / "corpus"), str(tmp_path / "out")
    expected = build_corpus(corpus, 5, seed=28)
    run_annotation(annotate_config(f"{corpus}/manifest.jsonl", out), engine_factory=make_color_engine)
    gone = sorted(expected)[2]
    assert main(["delete", out, "--uri", gone, "--reason", "takedown 42"]) == 0
    current = vsd.read(out).to_pylist()
    assert sorted(r["source_uri"] for r in current) == sorted(u for u in expected if u != gone)
    last = table.history(out)[-1]
    assert last["operation"] == "delete" and last["reason"] == "takedown 42" and last["rows"] == "1"
    assert len(vsd.read(out, as_of=last["version"] - 1)) == 5  # the night before still shows it
    assert main(["delete", out, "--uri", gone]) == 0  # nothing left to delete: says so, exit 0
    again = run_annotation(
        annotate_config(f"{corpus}/manifest.jsonl", out, "run_date=2026-11-27"),
        engine_factory=make_color_engine,
    )
    assert again.counts["images"] == 0 and len(vsd.read(out)) == 4  # not annotated again
    assert main(["delete", out]) == 2
