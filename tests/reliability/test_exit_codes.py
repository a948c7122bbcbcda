"""`vsd annotate`'s exit code tells a scheduler what happened: a run that wrote nothing because every
read was deferred (the storage failing past its retries) is not a green night: exit 74."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.fixtures.annotate import build_corpus, read_rows, vsd_annotate_args
from tests.fixtures.infra import REPO
from tests.fixtures.reliability import FaultProxy
from vsd import storage
from vsd.annotate.commands import EXIT_ALL_DEFERRED


def _vsd_annotate(manifest: str, out: str, endpoint: str, ray_tmp: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "AWS_ENDPOINT_URL": endpoint,
        "RAY_TMPDIR": ray_tmp,
        "RAY_AUTH_MODE": "disabled",
    }
    env.pop("RAY_ADDRESS", None)
    return subprocess.run(
        vsd_annotate_args(manifest, out, "stages.read.attempts=1"),
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.slow
def test_a_run_whose_every_read_is_deferred_exits_74_and_the_next_run_writes_them(s3_bucket, tmp_path):
    import tempfile

    expected = build_corpus(str(tmp_path / "local"), 3, seed=5)
    local_root = str(tmp_path / "local")
    for uri in expected:
        storage.write_bytes(f"{s3_bucket}/corpus{uri[len(local_root) :]}", storage.read_bytes(uri))
    manifest = f"{s3_bucket}/corpus/manifest.jsonl"
    lines = (tmp_path / "local" / "manifest.jsonl").read_text()
    storage.write_text(manifest, lines.replace(json.dumps(local_root)[1:-1], f"{s3_bucket}/corpus"))
    out = f"{s3_bucket}/out"

    def outage(method, path, attempt):  # the images' objects fail every time; listing and writes work
        return 503 if method in ("GET", "HEAD") and "/corpus/images/" in path else None

    ray_tmp = tempfile.mkdtemp(prefix="vsdexit-", dir="/tmp")
    try:
        _check(manifest, out, ray_tmp, expected, local_root, s3_bucket, outage)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _check(manifest, out, ray_tmp, expected, local_root, s3_bucket, outage) -> None:
    with FaultProxy(os.environ["AWS_ENDPOINT_URL"], outage, budget=100_000) as proxy:
        first = _vsd_annotate(manifest, out, proxy.url, ray_tmp)
    assert first.returncode == EXIT_ALL_DEFERRED == 74, first.stdout[-3000:] + first.stderr[-3000:]
    assert "deferred (read failed after retries; tried again next run): 3" in first.stdout
    last = first.stderr.strip().splitlines()[-1]
    assert last.startswith("vsd: error: nothing written: all 3 image read(s) failed past their retries")
    assert read_rows(out) == []
    healthy = _vsd_annotate(manifest, out, os.environ["AWS_ENDPOINT_URL"], ray_tmp)
    assert healthy.returncode == 0, healthy.stdout[-3000:] + healthy.stderr[-3000:]
    rows = read_rows(out)
    assert sorted(r["source_uri"] for r in rows) == sorted(
        f"{s3_bucket}/corpus{u[len(local_root) :]}" for u in expected
    )
