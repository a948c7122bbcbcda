"""`vsd annotate` on a multi-node cluster losing a worker node mid-run (issue 13).

As a new user would run it: a head without CPUs plus two worker nodes (each its own raylet and
object store, tests/fixtures/multinode.py), the CLI with jobs/configs/annotate-tiny-cpu.yaml, a
corpus on S3 (moto) of synthetic scenes plus a few broken files, output to S3. The worker node that
hosts the engine actor (else the first one) is killed a few seconds after the job starts working
(SIGKILL to its raylet, object store, workers: a machine dying), or preempted once the first Parquet
part is written, so every stage has work in flight (SIGTERM to `ray start`, which drains the node,
SIGKILL after the grace period); a replacement node joins, as an autoscaler would add one. The job
itself must finish (exit 0) with the same rows -- ids and content -- as an undisturbed run on the
same cluster: none lost, none twice.

``VSD_MULTINODE_REPEAT=N`` runs each fault N times against one baseline (a pass rate, not one draw).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.fixtures.annotate import hard_files
from tests.fixtures.multinode import REPO, VENV_BIN, fault_cluster, wait_process
from tests.fixtures.reliability import differences, record_case
from vsd import storage

pytestmark = pytest.mark.slow

N_SYNTH = 96
BROKEN = ("truncated.jpg", "zero.jpg", "notes.png", "bomb.png")
RUN_DATE = "2026-11-26"
RUN_TIMEOUT_S = 600
KILL_DELAY_S = 8  # "a few seconds in": after the pipeline's first task or actor started on a worker node
FIRST_PART_LIMIT_S = 240  # the mid-run fault lands at the first written part, or after this at the latest
# Above Ray's own drain window on SIGTERM (RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S, 30 s), so the node
# drains and stops itself before the SIGKILL; the pod default (terminationGracePeriodSeconds) is 30.
PREEMPT_GRACE_S = 40
ATTEMPTS = range(int(os.environ.get("VSD_MULTINODE_REPEAT", "1")))
ENGINE_TITLES = ("Generate", "Engine")  # process titles of the engine actor (ray::...GenerateStageUDF...)
WORKER = {"num_cpus": 2}


@pytest.fixture(scope="module")
def mn_corpus(s3_server, tmp_path_factory) -> dict:
    """N_SYNTH scenes (one pair each) + the BROKEN files, on S3, listed in a JSONL manifest."""
    import boto3

    from tests.fixtures.annotate import build_corpus

    bucket = f"vsd-mn-{int(time.time() * 1000) % 10**9}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=bucket)
    root = f"s3://{bucket}/corpus"
    expected = build_corpus(root, N_SYNTH, seed=31)
    lines = []
    for name, data, pair, want in hard_files():
        if name in BROKEN:
            uri = storage.join(root, "images", name)
            storage.write_bytes(uri, data)
            lines.append(json.dumps({"image": uri, "pairs": [pair]}) + "\n")
            expected[uri] = want
    manifest = storage.join(root, "manifest.jsonl")
    storage.write_text(manifest, storage.read_text(manifest) + "".join(lines))
    return {
        "bucket": f"s3://{bucket}",
        "manifest": manifest,
        "expected": expected,
        "input_lines": len(storage.read_text(manifest).splitlines()),
    }


@pytest.fixture(scope="module")
def mn_cluster(s3_server, tmp_path_factory):
    """Head (0 CPUs) + w1 + w2 (2 CPUs each); replacements are added by the tests. All stopped after."""
    with fault_cluster(WORKER, str(tmp_path_factory.mktemp("mn-vsd-cache"))) as cluster:
        yield cluster


def start_annotate(cluster, corpus: dict, output: str, log: Path) -> subprocess.Popen:
    """`vsd annotate` as a user runs it on the head machine, joined to the cluster."""
    cmd = [
        str(VENV_BIN / "vsd"),
        "annotate",
        "--config",
        str(REPO / "jobs/configs/annotate-tiny-cpu.yaml"),
        "--input",
        corpus["manifest"],
        "--output",
        output,
        "--ray-address",
        cluster.gcs_address,
        f"run_date={RUN_DATE}",
        "progress_bars=false",
        "stages.write.resources.batch_size=8",
    ]
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, env=cluster.env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)


def wait_done(proc: subprocess.Popen, log: Path) -> tuple[int, str]:
    return wait_process(proc, log, RUN_TIMEOUT_S)


def data_parts(output: str) -> list[str]:
    """The dataset's Parquet files: ``<output>/run_date=*/<name>.parquet`` (bookkeeping lives in
    ``_``-prefixed folders and files, which a dataset reader skips)."""
    if not storage.exists(output):
        return []
    root = output.rstrip("/") + "/"
    parts = []
    for uri in storage.list_files(output):
        rel = uri[len(root) :].split("/")
        if (
            len(rel) == 2
            and rel[0].startswith("run_date=")
            and rel[1].endswith(".parquet")
            and not rel[1].startswith(("_", "."))
        ):
            parts.append(uri)
    return sorted(parts)


def read_dataset(output: str) -> list[dict]:
    import pyarrow.parquet as pq

    rows = []
    for uri in data_parts(output):
        fs, path = storage.resolve(uri)
        rows += pq.read_table(path, filesystem=fs).to_pylist()
    return rows


def node_hosting(cluster, titles: tuple[str, ...]) -> tuple[str, list[str]]:
    """(the live worker node whose processes carry one of ``titles``, its process titles); the
    first live worker node when none does (e.g. the engine is still starting)."""
    workers = [n for n in cluster.nodes.values() if not n.head and n.pids()]
    for node in workers:
        names = node.titles()
        if any(t in name for name in names for t in titles):
            return node.name, names
    return workers[0].name, workers[0].titles()


@pytest.fixture(scope="module")
def mn_baseline(mn_cluster, mn_corpus, tmp_path_factory) -> dict:
    """The undisturbed run on the same cluster: what every fault case must reproduce."""
    out = f"{mn_corpus['bucket']}/baseline"
    log = tmp_path_factory.mktemp("mn-baseline") / "annotate.log"
    started = time.monotonic()
    code, text = wait_done(start_annotate(mn_cluster, mn_corpus, out, log), log)
    assert code == 0, f"the undisturbed run failed (exit {code}):\n{text[-6000:]}"
    rows = read_dataset(out)
    assert len(rows) == len(mn_corpus["expected"]) == N_SYNTH + len(BROKEN), len(rows)
    assert len({r["row_id"] for r in rows}) == len(rows)
    errors = sorted(r["source_uri"].rsplit("/", 1)[1] for r in rows if r["status"] == "error")
    assert errors == sorted(BROKEN), errors
    return {"rows": rows, "seconds": time.monotonic() - started}


def test_undisturbed_run_writes_each_file_once_with_its_outcome_and_a_rerun_reads_nothing(
    mn_cluster, mn_corpus, mn_baseline, tmp_path
):
    """The baseline itself, S3 in and out on the multi-node cluster: every file of the manifest has
    exactly one row with its expected outcome (``ok`` or ``error:<reason>``), the run's record counts
    them, and the nightly rerun over the unchanged manifest reads no shard and starts no Ray job."""
    from tests.fixtures.annotate import outcome, run_record
    from vsd.annotate.index import Output

    out = f"{mn_corpus['bucket']}/baseline"
    rows = mn_baseline["rows"]
    by_uri = {r["source_uri"]: r for r in rows}
    assert len(by_uri) == len(rows) and set(by_uri) == set(mn_corpus["expected"])
    wrong = {
        u: (want, outcome(by_uri[u]))
        for u, want in mn_corpus["expected"].items()
        if outcome(by_uri[u]) != want
    }
    assert not wrong, wrong
    (first,) = Output(out).runs()
    record = run_record(out, first)
    assert record["counts"]["images"] == len(rows) and record["counts"]["unaccounted"] == 0
    assert storage.exists(f"{out}/_README.md")

    log = tmp_path / "rerun.log"
    code, text = wait_done(start_annotate(mn_cluster, mn_corpus, out, log), log)
    assert code == 0 and "nothing new" in text, text[-4000:]
    (again,) = set(Output(out).runs()) - {first}
    assert run_record(out, again)["counts"]["images"] == 0
    assert run_record(out, again)["source"]["shards_read"] == []
    assert len(read_dataset(out)) == len(rows)


def pipeline_running(cluster) -> bool:
    """A worker node runs pipeline work (a Ray task or actor, not an idle worker or an agent)."""
    titles = [t for n in cluster.nodes.values() if not n.head for t in n.titles()]
    return any(t.startswith("ray::") and not t.startswith("ray::IDLE") and "Agent" not in t for t in titles)


def a_few_seconds_in(cluster, proc: subprocess.Popen, log: Path, out: str) -> None:
    """KILL_DELAY_S after the first pipeline task or actor started on a worker node."""
    deadline = time.monotonic() + FIRST_PART_LIMIT_S
    while not pipeline_running(cluster) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(KILL_DELAY_S)


def at_first_part(cluster, proc: subprocess.Popen, log: Path, out: str) -> None:
    deadline = time.monotonic() + FIRST_PART_LIMIT_S
    while not data_parts(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)


def _fault_case(cluster, corpus: dict, baseline: dict, tmp_path: Path, case: str, when, fault) -> None:
    cluster.live_workers(2, **WORKER)
    out = f"{corpus['bucket']}/{tmp_path.name}"
    log = tmp_path / "annotate.log"
    started = time.monotonic()
    proc = start_annotate(cluster, corpus, out, log)
    try:
        when(cluster, proc, log, out)
        assert proc.poll() is None, f"the run ended before the fault:\n{log.read_text()[-4000:]}"
        victim, titles = node_hosting(cluster, ENGINE_TITLES)
        at_s, parts_before = time.monotonic() - started, len(data_parts(out))
        what = fault(cluster, victim)
        cluster.add_replacement(**WORKER)
        code, text = wait_done(proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    seconds = time.monotonic() - started
    rows = read_dataset(out)
    diff = differences(rows, baseline["rows"])
    engine_there = [t for t in titles if any(k in t for k in ENGINE_TITLES)]
    note = (
        f"{victim} {what} at {at_s:.0f}s ({parts_before} parts written; it hosted {engine_there or 'no engine'}); "
        f"replacement node added; job exit {code}; run {seconds:.0f}s vs undisturbed {baseline['seconds']:.0f}s"
    )
    print(note)
    record_case(
        case,
        "annotate fault (multi-node)",
        rows=rows,
        expected_ids={r["row_id"] for r in baseline["rows"]},
        rows_in=corpus["input_lines"],
        same_as_baseline=(code == 0 and not diff),
        note=note,
    )
    assert code == 0, f"the job itself failed (exit {code}) after {victim} {what}; log tail:\n{text[-8000:]}"
    assert len(rows) == len({r["row_id"] for r in rows}), "a row was written twice"
    assert not diff, diff


@pytest.mark.timeout(3 * RUN_TIMEOUT_S)  # a replacement node may need minutes to start on a loaded machine
@pytest.mark.parametrize("attempt", ATTEMPTS)
def test_worker_node_killed_a_few_seconds_in_job_finishes_with_every_row_once(
    mn_cluster, mn_corpus, mn_baseline, tmp_path, attempt
):
    def kill(cluster, victim):
        pids = cluster.kill_node(victim)
        cluster.wait_state(victim, "DEAD")
        return f"SIGKILLed ({len(pids)} processes)"

    _fault_case(
        mn_cluster,
        mn_corpus,
        mn_baseline,
        tmp_path,
        "worker node killed a few seconds in (multi-node)",
        a_few_seconds_in,
        kill,
    )


@pytest.mark.timeout(3 * RUN_TIMEOUT_S)
@pytest.mark.parametrize("attempt", ATTEMPTS)
def test_worker_node_preempted_mid_run_job_finishes_with_every_row_once(
    mn_cluster, mn_corpus, mn_baseline, tmp_path, attempt
):
    def preempt(cluster, victim):
        how = cluster.preempt_node(victim, grace_s=PREEMPT_GRACE_S)
        cluster.wait_state(victim, "DEAD")
        return f"SIGTERMed ({'stopped within' if how['graceful'] else 'SIGKILLed after'} {how['seconds']}s grace)"

    _fault_case(
        mn_cluster,
        mn_corpus,
        mn_baseline,
        tmp_path,
        "worker node preempted mid-run (SIGTERM, multi-node)",
        at_first_part,
        preempt,
    )
