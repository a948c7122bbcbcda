"""Each CPU benchmark runs end to end at a tiny size and ends with a well-formed RATIO line.

Targets are not asserted here (the machine is shared; speed claims live in the bench output):
these tests prove the documented command works, every image is accounted for (the benches exit
non-zero otherwise) and the last line is ``RATIO <name> <value> target <target> PASS|FAIL``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RATIO = re.compile(
    r"^RATIO (?P<name>[a-z_]+) (?P<value>\d+(\.\d+)?) target (?P<target>\d+(\.\d+)?) (?P<verdict>PASS|FAIL)$"
)


def run_bench(name: str, *args: str, timeout: int = 600) -> tuple[str, re.Match]:
    """``python bench/<name>.py ARGS`` as docs/benchmarks.md documents it; (stdout, the RATIO match)."""
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / f"{name}.py"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    match = RATIO.match(lines[-1])
    assert match, f"last line is not a RATIO line: {lines[-1]!r}"
    assert match["name"] == name
    assert sum(line.startswith("RATIO ") for line in lines) == 1, "exactly one RATIO line"
    target, value = float(match["target"]), float(match["value"])
    higher_is_better = name in ("pipeline_efficiency", "preprocess_throughput")
    assert match["verdict"] == (
        "PASS" if (value >= target if higher_is_better else value <= target) else "FAIL"
    )
    return proc.stdout, match


def test_preprocess_throughput_smoke():
    out, match = run_bench(
        "preprocess_throughput",
        "--images",
        "8",
        "--width",
        "160",
        "--height",
        "120",
        "--image-size",
        "64",
        "--repeats",
        "1",
        "--profile",
    )
    assert float(match["target"]) == 1.5 and float(match["value"]) > 0
    assert "HF CLIPImageProcessorPil" in out and "cProfile" in out


@pytest.mark.slow
def test_pipeline_efficiency_smoke(tmp_path):
    out, match = run_bench(
        "pipeline_efficiency",
        "--images",
        "16",
        "--max-new-tokens",
        "2",
        "--write-batch-size",
        "4",
        "--workdir",
        str(tmp_path),
    )
    assert float(match["target"]) == 0.85 and float(match["value"]) > 0
    assert "bare loop (no Ray), mean of 2" in out and "pipeline (vsd annotate, Ray Data)" in out
    assert "bare (before)" in out and "bare (after)" in out
    assert not list(tmp_path.iterdir()), "the bench leaves no corpus or output behind"


@pytest.mark.slow
def test_resume_cost_smoke(tmp_path):
    out, match = run_bench(
        "resume_cost", "--images", "6", "--max-new-tokens", "2", "--workdir", str(tmp_path)
    )
    assert float(match["target"]) == 0.1 and float(match["value"]) > 0
    assert "rerun new rows: 0" in out


@pytest.mark.slow
def test_streaming_memory_smoke(tmp_path):
    out, match = run_bench(
        "streaming_memory",
        "--n-small",
        "6",
        "--n-large",
        "12",
        "--max-new-tokens",
        "2",
        "--hz",
        "2",
        "--workdir",
        str(tmp_path),
    )
    assert float(match["target"]) == 1.2 and float(match["value"]) > 0
    peak = re.search(r"^tree RSS \(object store once\)\s+(\d+)\s+(\d+)", out, re.M)
    assert peak and int(peak[1]) > 100 and int(peak[2]) > 100, "the sampler saw the Ray processes' memory"


def test_table_maintain_smoke(tmp_path):
    out, _ = run_bench(
        "table_maintain", "--nights", "6", "--parts", "3", "--rows", "10", "--workdir", str(tmp_path)
    )
    assert "before maintain  19" in out and "after maintain   6 " in out, (
        out
    )  # 18 parts + 1 rewrite; 1 a night


def test_nightly_scale_nights_smoke(tmp_path):
    out, _ = run_bench(
        "nightly_scale",
        "--sizes",
        "300",
        "--nights",
        "3",
        "--maintain-every",
        "2",
        "--workdir",
        str(tmp_path),
    )
    assert "night 3: cost" in out and "maintained in" in out and "probe (the same sync" in out
    assert "bookkeeping objects after night K / after night 1: " in out
