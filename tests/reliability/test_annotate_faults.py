"""Faults during annotation on a real local Ray cluster with the tiny hf model: a killed engine
actor, a killed driver, flaky and failing S3 (a fault proxy in front of moto), a full disk. Each
ends with the same rows -- ids and content -- as the undisturbed `rel_baseline` run."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.fixtures.annotate import read_rows
from tests.fixtures.reliability import (
    DeviceErrorOnceFactory,
    FaultProxy,
    KillOnceFactory,
    copy_corpus_to,
    differences,
    fill,
    record_case,
    rel_config,
    run_driver,
    start_driver,
    wait_quiet,
)
from vsd.annotate.index import Output
from vsd.annotate.pipeline import run_annotation


def _alive(class_name: str) -> list[str]:
    """Live actors of a class on the session cluster (GCS table; the state API needs a dashboard)."""
    from ray._private.state import actors

    return [
        a["ActorID"]
        for a in actors().values()
        if class_name in a.get("ActorClassName", "") and a.get("State") not in ("DEAD", 4)
    ]


def check_same_as_baseline(case: str, output: str, baseline: dict, corpus: dict, note: str) -> list[dict]:
    rows = read_rows(output)
    diff = differences(rows, baseline["rows"])
    record_case(
        case,
        "annotate fault",
        rows=rows,
        expected_ids={r["row_id"] for r in baseline["rows"]},
        rows_in=corpus["input_lines"],
        reported={"dup-id line 2"},
        same_as_baseline=not diff,
        note=note,
    )
    assert not diff, diff
    assert len(rows) == len({r["row_id"] for r in rows})
    return rows


def test_engine_actor_sigkilled_mid_batch_is_restarted_and_its_batch_redone(
    rel_corpus, rel_baseline, tmp_path
):
    marker, out = str(tmp_path / "killed"), str(tmp_path / "out")
    result = run_annotation(rel_config(rel_corpus["manifest"], out), engine_factory=KillOnceFactory(marker))
    pid, batch = map(int, open(marker).read().split())
    assert batch > 0  # it died holding a batch
    assert result.counts["unaccounted"] == 0
    check_same_as_baseline(
        "engine actor SIGKILLed mid-batch",
        out,
        rel_baseline,
        rel_corpus,
        f"pid {pid} died holding {batch} requests; Ray Data restarted it (max_restarts=-1) "
        "and re-ran the batch (max_task_retries=-1)",
    )


def test_engine_device_error_ends_its_actor_and_the_batch_is_redone(rel_corpus, rel_baseline, tmp_path):
    """A device error leaves the engine unusable inside a live actor: without the engine watch every
    later batch would fail (engine_error rows, then a failed job); with it the actor exits, Ray
    starts a new one and the batch is redone -- the same rows as the undisturbed run."""
    marker, out = str(tmp_path / "broken"), str(tmp_path / "out")
    result = run_annotation(
        rel_config(rel_corpus["manifest"], out), engine_factory=DeviceErrorOnceFactory(marker)
    )
    pid, batch = map(int, open(marker).read().split())
    assert batch > 0
    assert result.counts["unaccounted"] == 0 and "engine_error" not in result.counts.get("error", {})
    check_same_as_baseline(
        "engine device error inside a live actor",
        out,
        rel_baseline,
        rel_corpus,
        f"pid {pid} raised a CUDA error holding {batch} requests; the engine watch ended the actor, "
        "Ray started a new one and re-ran the batch",
    )


@pytest.mark.slow
def test_driver_sigkilled_mid_run_then_rerun(ray_local, rel_corpus, rel_baseline, tmp_path):
    out = str(tmp_path / "out")
    proc = start_driver(ray_local, {}, rel_corpus["manifest"], out, log=str(tmp_path / "driver.log"))
    try:
        deadline = time.time() + 600
        while len(Output(out).data_parts()) < 2 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, (
            "the run ended before it could be killed:\n" + (tmp_path / "driver.log").read_text()[-3000:]
        )
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    wait_quiet(out)
    before = len(read_rows(out))
    assert 0 < before < len(rel_baseline["rows"])
    assert Output(out).runs() == []  # the killed run left no record
    rerun = run_annotation(rel_config(rel_corpus["manifest"], out))
    assert rerun.counts["unaccounted"] == 0 and rerun.counts["skipped"]["already_annotated"] > 0
    check_same_as_baseline(
        "driver SIGKILLed mid-run, then rerun",
        out,
        rel_baseline,
        rel_corpus,
        f"{before} rows written before the kill; the rerun wrote only the rest",
    )


def _s3_case(ray_local, rel_corpus, rel_baseline, bucket, case, plan, budget, note, expect_failure=False):
    manifest = copy_corpus_to(rel_corpus, f"{bucket}/corpus")
    out = f"{bucket}/out"
    with FaultProxy(os.environ["AWS_ENDPOINT_URL"], plan, budget=budget) as proxy:
        code, log = run_driver(ray_local, {"AWS_ENDPOINT_URL": proxy.url}, manifest, out)
        faults, requests = dict(proxy.faults), dict(proxy.requests)
    assert proxy.total_faults > 0, f"no fault was injected ({requests})"
    if expect_failure:
        assert code != 0, "the run should have failed loudly:\n" + log[-3000:]
        code, log = run_driver(ray_local, {}, manifest, out)  # storage healthy again
    assert code == 0, log[-5000:]
    check_same_as_baseline(case, out, rel_baseline, rel_corpus, f"{note}; injected {faults} over {requests}")


@pytest.mark.slow
def test_s3_read_faults_transient_ones_are_retried_an_outage_waits_for_the_next_run(
    ray_local, rel_corpus, rel_baseline, s3_bucket
):
    """Reads that fail a couple of times (503, dropped, stalled) are retried within the run; an image
    whose reads fail past every retry is not made a final `read_error` row: the run ends (exit 0)
    without it, leaves its shard unfinished, and the next run reads and annotates it."""
    from tests.fixtures.annotate import run_record
    from vsd.annotate.pipeline import format_counts

    victim = "scene-21-00005.png"  # a plain synthetic scene (one pair, no image_id in the manifest)
    transient = {"left": 24}

    def plan(method, path, attempt):
        if method not in ("GET", "HEAD") or "/corpus/images/" not in path:
            return None
        if path.endswith(f"/corpus/images/{victim}"):
            return 503  # every attempt: an outage longer than all retries
        if attempt <= 2 and transient["left"] > 0:
            transient["left"] -= 1
            return (503, "drop", "stall")[hash(path) % 3]
        return None

    manifest = copy_corpus_to(rel_corpus, f"{s3_bucket}/corpus")
    out = f"{s3_bucket}/out"
    with FaultProxy(os.environ["AWS_ENDPOINT_URL"], plan, budget=10_000) as proxy:
        # stages.read.attempts=1: the outage outlasts the S3 client's own 8 tries once, not 4 times
        code, log = run_driver(
            ray_local, {"AWS_ENDPOINT_URL": proxy.url}, manifest, out, "stages.read.attempts=1"
        )
        faults = dict(proxy.faults)
    assert code == 0, log[-5000:]
    assert transient["left"] == 0 and sum(faults.values()) > 24, faults
    first = read_rows(out)
    assert not [r for r in first if r["source_uri"].endswith(victim)], "an outage became a final row"
    others = [r for r in rel_baseline["rows"] if not r["source_uri"].endswith(victim)]
    assert len(others) == len(rel_baseline["rows"]) - 1
    assert not differences(first, others), differences(
        first, others
    )  # transient faults: retried, nothing lost
    (run_id,) = Output(out).runs()
    record = run_record(out, run_id)
    assert record["counts"]["deferred"] == 1 and record["source"]["shards_finished"] == [], record["counts"]
    assert "deferred (read failed after retries; tried again next run): 1" in format_counts(record["counts"])

    code, log = run_driver(ray_local, {}, manifest, out)  # storage healthy again
    assert code == 0, log[-5000:]
    rows = check_same_as_baseline(
        "S3 reads: 503 / dropped / stalled on the first 2 tries of each image, one image "
        "failing past every retry, then rerun",
        out,
        rel_baseline,
        rel_corpus,
        f"injected {faults}; the transient ones retried in the run, the outage deferred (no "
        "row, shard left open) and read by the rerun",
    )
    assert [r for r in rows if r["source_uri"].endswith(victim)][0]["status"] == "ok"


@pytest.mark.slow
def test_s3_transient_faults_during_writes(ray_local, rel_corpus, rel_baseline, s3_bucket):
    def plan(method, path, attempt):
        if method in ("PUT", "POST") and "/out/" in path and attempt <= 2:
            return (500, "drop", 503)[hash(path) % 3]
        return None

    _s3_case(
        ray_local,
        rel_corpus,
        rel_baseline,
        s3_bucket,
        "S3 5xx / dropped writes (transient)",
        plan,
        40,
        "first 2 attempts of every output PUT fail",
    )


@pytest.mark.slow
def test_s3_write_outage_beyond_retries_fails_loudly_and_rerun_completes(
    ray_local, rel_corpus, rel_baseline, s3_bucket
):
    state = {"victim": None}

    def plan(method, path, attempt):
        if method in ("PUT", "POST") and "/out/run_date=" in path and "/part-" in path:
            state["victim"] = state["victim"] or path
            if path == state["victim"]:
                return 503  # every attempt at one data part (each multipart step): beyond all retries
        return None

    _s3_case(
        ray_local,
        rel_corpus,
        rel_baseline,
        s3_bucket,
        "S3 outage on a part write beyond all retries, then rerun",
        plan,
        60,
        "one part's PUT failed every time: the run failed loudly; the rerun completed",
        expect_failure=True,
    )


@pytest.mark.slow
def test_output_disk_full_fails_loudly_and_rerun_after_freeing_completes(
    ray_local, rel_corpus, rel_baseline, small_disk
):
    out = os.path.join(small_disk, "out")
    filler = fill(small_disk, leave_bytes=24 * 1024)
    with pytest.raises(Exception) as info:
        run_annotation(rel_config(rel_corpus["manifest"], out))
    assert (
        "No space left" in str(info.value)
        or "ENOSPC" in str(info.value)
        or "errno 28" in str(info.value).lower()
    )
    deadline = time.time() + 30
    while _alive("IdLedger") and time.time() < deadline:
        time.sleep(0.5)
    assert not _alive("IdLedger"), "a failed run left its ledger actor alive"
    before = len(read_rows(out))
    leftovers = [f for _, _, fs in os.walk(out) for f in fs if ".tmp-" in f]
    os.unlink(filler)
    wait_quiet(out)
    rerun = run_annotation(rel_config(rel_corpus["manifest"], out))
    assert rerun.counts["unaccounted"] == 0
    check_same_as_baseline(
        "output disk full (1 MiB tmpfs), then rerun",
        out,
        rel_baseline,
        rel_corpus,
        f"ENOSPC after {before} rows; run failed loudly; rerun after freeing space completed"
        + (f"; {len(leftovers)} .tmp- files left behind" if leftovers else ""),
    )


@pytest.mark.slow
def test_worker_tmpdir_full(ray_local, rel_corpus, rel_baseline, small_disk, tmp_path):
    fill(small_disk, leave_bytes=0)
    out = str(tmp_path / "out")
    code, log = run_driver(
        ray_local, {"TMPDIR": small_disk, "TEMP": small_disk, "TMP": small_disk}, rel_corpus["manifest"], out
    )
    assert code == 0, log[-5000:]
    check_same_as_baseline(
        "worker TMPDIR full (tmpfs, 0 bytes free)",
        out,
        rel_baseline,
        rel_corpus,
        "every task and actor ran with TMPDIR on a full tmpfs",
    )
