"""The GPU training benchmark runs our step code; its --tiny mode keeps that path working on CPU."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_gpu_train_tiny_runs_on_cpu():
    out = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "bench", "gpu_train.py"),
            "--tiny",
            "--steps",
            "2",
            "--warmup",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line.split() for line in out.stdout.splitlines() if line.startswith("tiny")]
    assert len(rows) == 2 and all(float(r[4].replace(",", "")) > 0 for r in rows), out.stdout
