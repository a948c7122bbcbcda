"""`bench/gpu_propose.py --tiny` runs the stage's code path on CPU and ends with its RATIO line."""

from __future__ import annotations

from tests.bench.test_bench_smoke import run_bench


def test_gpu_propose_tiny_smoke():
    out, match = run_bench("gpu_propose", "--tiny")
    assert "detect (Grounding DINO-T)" in out and "pairs proposed:" in out
    assert float(match["target"]) == 40
