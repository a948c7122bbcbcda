"""`vsd train`'s console: a step table from the combined rows, only our known-noisy warnings filtered,
and (slow) a real tiny run whose output is the table, not Ray's ``TrainingReport(...)`` lines."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import warnings

import pytest

from tests.fixtures.infra import REPO
from vsd.train.console import StepTable, quiet_known_noise
from vsd.train.driver import MetricsWriter


def _row(step: int, t: float, **extra) -> dict:
    worker = {
        "step": step,
        "epoch": step / 10,
        "total_steps": 10,
        "resumed_from": 0,
        "final": step == 10,
        "loss": 2.0 - step / 10,
        "lr": 1e-3,
        "samples": 4,
        "tokens": 500,
        "samples_per_s": 8.0,
        "tokens_per_s": 1000.0,
        "samples_dropped": 0,
        "samples_truncated": 0,
        "step_time_s": 0.5,
    }
    row = MetricsWriter.combine([{**worker, "rank": 0}, {**worker, "rank": 1, "loss": 1.0}])
    return {**row, "time": t, **extra}


def test_the_table_shows_step_loss_throughput_and_eta():
    out = io.StringIO()
    table = StepTable(out, clock=lambda: 100.0)  # started at t=100
    table(_row(1, 130.0))  # 30 s of start-up before the first step: not a step's cost
    table(_row(2, 132.0))
    table(_row(4, 136.0, checkpoint="checkpoint_00000004"))
    table(_row(10, 148.0))
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["step", "loss", "tokens/s", "elapsed", "ETA"]
    assert lines[1].split() == ["1/10", "1.4500", "2000", "0:30", "-"]  # mean loss, summed tokens/s
    assert lines[2].split() == ["2/10", "1.4000", "2000", "0:32", "0:16"]  # 8 steps x 2 s
    assert lines[3].split() == ["4/10", "1.3000", "2000", "0:36", "0:12", "checkpoint"]
    assert lines[4].split() == ["10/10", "1.0000", "2000", "0:48", "0:00"]
    assert len({len(line.rstrip()) for line in lines[:3]}) == 1  # aligned columns


def test_only_the_known_noise_is_filtered():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_known_noise()
        warnings.warn(
            "`is_gradient_checkpointing` is deprecated and will be removed in v6.",
            FutureWarning,
            stacklevel=1,
        )
        warnings.warn(
            "`torch.distributed.all_gather_into_tensor` is deprecated.", FutureWarning, stacklevel=1
        )
        warnings.warn("`something_else` is deprecated", FutureWarning, stacklevel=1)
        warnings.warn(
            "`is_gradient_checkpointing` is deprecated", UserWarning, stacklevel=1
        )  # other category
    assert [str(w.message) for w in caught] == [
        "`something_else` is deprecated",
        "`is_gradient_checkpointing` is deprecated",
    ]


@pytest.mark.slow
def test_vsd_train_prints_the_step_table(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "vsd.cli", "train", "--config", "tiny-cpu", "--out", str(tmp_path / "run")]
        + ["optim.max_steps=3", "checkpoint.every_n_steps=3"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    output = proc.stdout + proc.stderr
    assert "TrainingReport(" not in output and "FutureWarning" not in output
    assert "Loading weights" not in output
    lines = proc.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["step", "loss"])
    steps = [line.split()[0] for line in lines[start + 1 : start + 4]]
    assert steps == ["1/3", "2/3", "3/3"] and lines[start + 3].endswith("checkpoint")
    assert lines[-1].startswith("trained to step 3 loss ")
