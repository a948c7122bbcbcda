"""SIGTERM (what Kubernetes sends a pod) stops `vsd annotate` cleanly: one ``vsd: stopped by
SIGTERM`` line, Ray shut down, exit 143 -- and the rerun writes the rest, every image once."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from tests.fixtures.annotate import build_corpus, read_rows, vsd_annotate_args
from tests.fixtures.infra import REPO
from vsd.annotate.index import Output


def _ray_processes(ray_tmp: str) -> list[str]:
    """Live processes of the Ray cluster under ``ray_tmp`` (each names its session dir)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if ray_tmp in cmd:
            found.append(f"{pid}: {cmd[:120]}")
    return found


def _gone(ray_tmp: str, seconds: float = 30) -> list[str]:
    deadline = time.time() + seconds
    while (left := _ray_processes(ray_tmp)) and time.time() < deadline:
        time.sleep(0.5)
    return left


def _data_files(out: str) -> list[str]:
    """Parquet files the run wrote under ``out`` (committed or not), its own bookkeeping aside."""
    return [
        os.path.join(d, f)
        for d, _, files in os.walk(out)
        for f in files
        if f.endswith(".parquet") and "__vsd" not in d
    ]


def _vsd_annotate(manifest: str, out: str, ray_tmp: str, log) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_TMPDIR": ray_tmp, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)  # its own local cluster, as a pod's driver has
    return subprocess.Popen(
        vsd_annotate_args(
            manifest,
            out,
            "engine.batch_size=2",
            "stages.write.resources.batch_size=2",
            "stages.read.resources.batch_size=4",
            "input.shard_rows=8",  # 5 shards
        ),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # the signal goes to the driver alone, as kubelet sends it to PID 1
    )


@pytest.mark.slow
def test_sigterm_mid_run_is_a_clean_stop_and_the_rerun_writes_every_image_once(tmp_path):
    expected = build_corpus(str(tmp_path / "corpus"), 40, seed=7)
    manifest, out = str(tmp_path / "corpus" / "manifest.jsonl"), str(tmp_path / "out")
    ray_tmp = tempfile.mkdtemp(prefix="vsdterm-", dir="/tmp")  # short: Ray's socket paths are limited
    log_path = tmp_path / "first.log"
    with open(log_path, "w") as log:
        proc = _vsd_annotate(manifest, out, ray_tmp, log)
        try:
            deadline = time.time() + 600
            while proc.poll() is None and time.time() < deadline and not _data_files(out):
                time.sleep(0.1)  # until the first data file is written: the stages are streaming
            assert proc.poll() is None, "ended before the signal:\n" + log_path.read_text()[-3000:]
            os.kill(proc.pid, signal.SIGTERM)
            code = proc.wait(timeout=180)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    try:
        text = log_path.read_text(errors="replace")
        assert code == 143, text[-4000:]
        assert text.rstrip().endswith("vsd: stopped by SIGTERM"), text[-2000:]
        assert "*** SIGTERM received" not in text and "internal error" not in text, text[-4000:]
        assert "Traceback" not in text, text[-6000:]
        assert _gone(ray_tmp) == []  # ray.shutdown() stopped the cluster the driver started
        assert Output(out).runs() == []  # stopped mid-run: the run left no record (what it wrote stays)
        before = len(read_rows(out))  # committed rows: what the stopped run leaves to the rerun
        assert before < len(expected), before
        with open(tmp_path / "rerun.log", "w") as log:
            rerun = _vsd_annotate(manifest, out, ray_tmp, log)
            assert rerun.wait(timeout=900) == 0, (tmp_path / "rerun.log").read_text()[-4000:]
        rows = read_rows(out)
        assert sorted(r["source_uri"] for r in rows) == sorted(expected)  # every image, exactly once
        assert all(r["status"] == "ok" for r in rows)
        rerun_text = (tmp_path / "rerun.log").read_text()
        assert f"images: {len(expected) - before} " in rerun_text  # the rerun wrote only the rest
    finally:
        for line in _ray_processes(ray_tmp):  # never leave a cluster behind, whatever failed
            os.kill(int(line.split(":")[0]), signal.SIGKILL)
        shutil.rmtree(ray_tmp, ignore_errors=True)
