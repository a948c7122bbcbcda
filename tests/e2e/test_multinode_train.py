"""Training across nodes, losing one: `vsd train` on a head without CPUs plus two worker nodes.

Each worker node offers one ``train_slot`` and the run asks for one per Ray Train worker, so its two
workers sit on two nodes (the metrics say which). Checkpoints -- adapter plus every rank's optimizer
shard -- go to S3 (moto). Once checkpoint 2 is on S3 the node of one worker is killed (SIGKILL to
its raylet, object store and workers) and a replacement node joins:

* ZeRO-2, ``failure.max_failures=2``: Ray Train restarts the worker group on the surviving node plus
  the replacement, which resume from the last checkpoint; the CLI exits 0.
* ZeRO-3, ``failure.max_failures=0``: the run fails loudly (exit 1, one line naming the failure and
  the last checkpoint); launched again on the same ``--out``, it resumes there.

Either way the final adapter is exactly (``torch.equal``) the adapter of an undisturbed run with the
same config: the resume restores fp32 master weights, AdamW moments, RNG and data position, and fp32
CPU math in the same order gives the same bits (tests/train/test_resume.py says more).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.fixtures.multinode import REPO, VENV_BIN, fault_cluster, wait_process
from tests.fixtures.reliability import record_case
from tests.fixtures.train import assert_adapter_only, assert_loss_falls, assert_optimizer_state
from vsd import storage

pytestmark = pytest.mark.slow

SLOT = {"num_cpus": 1, "resources": {"train_slot": 1}}
STEPS = 6
RUN_TIMEOUT_S = 900


def overrides(stage: int, max_failures: int) -> list[str]:
    """The CI config, cut to a few seconds a step: 2 scenes, 3 samples per worker and step."""
    return [
        "data.synthetic.scenes=2",
        "data.shuffle=false",
        "optim.batch_size=3",
        f"optim.max_steps={STEPS}",
        "checkpoint.every_n_steps=2",
        "checkpoint.keep_n=3",
        "lora.rank=8",
        "scaling.resources_per_worker.train_slot=1",
        f"deepspeed.zero_stage={stage}",
        f"failure.max_failures={max_failures}",
    ]


@pytest.fixture(scope="module")
def train_cluster(s3_server, tmp_path_factory):
    with fault_cluster(SLOT, str(tmp_path_factory.mktemp("mn-train-cache"))) as cluster:
        yield cluster


def start_train(cluster, out: str, args: list[str], log: Path) -> subprocess.Popen:
    cmd = [
        str(VENV_BIN / "vsd"),
        "train",
        "--config",
        str(REPO / "jobs/configs/train-tiny-cpu.yaml"),
        "--out",
        out,
        *args,
    ]
    with open(log, "wb") as sink:
        return subprocess.Popen(cmd, env=cluster.env, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT)


def train(cluster, out: str, args: list[str], log: Path) -> tuple[int, str]:
    return wait_process(start_train(cluster, out, args, log), log, RUN_TIMEOUT_S)


def metrics(run: str) -> list[dict]:
    return [json.loads(x) for x in storage.read_text(storage.join(run, "metrics.jsonl")).splitlines()]


def final_adapter(run: str) -> dict:
    from vsd.model.checkpoints import checkpoint_uri
    from vsd.train.checkpoint import load_adapter_state

    return load_adapter_state(checkpoint_uri(run, STEPS))


def check_finished_run(run: str, stage: int) -> None:
    """What a finished run leaves on S3: a falling loss, the kept checkpoints, each a LoRA adapter
    only (under ZeRO-3 gathered into whole tensors, not shards) plus both ranks' optimizer shards,
    the answer-token lengths annotation sizes its budgets from, and the config it ran with."""
    from vsd.model.checkpoints import checkpoint_uri, list_checkpoints, read_meta
    from vsd.train.checkpoint import load_adapter_state

    assert_loss_falls(metrics(run))
    assert [step for step, _ in list_checkpoints(run)] == [2, 4, 6]  # every 2 steps, keep_n=3
    last = checkpoint_uri(run, STEPS)
    meta = read_meta(last)
    assert meta["step"] == STEPS and meta["zero_stage"] == stage and meta["base_model"] == "tiny:llava"
    lengths = meta["answer_tokens"]
    assert set(lengths) == {"1", "2", "3"} and lengths["3"]["p99"] > lengths["2"]["p99"] > lengths["1"]["p99"]
    assert_adapter_only(last)
    assert_optimizer_state(last, stage)
    assert all(t.numel() > 0 and t.dim() == 2 for t in load_adapter_state(last).values())
    assert f"zero_stage: {stage}" in storage.read_text(storage.join(run, "config.yaml"))


def adapter_differences(got: dict, want: dict) -> list[str]:
    """Tensors that are not bit-identical (plus the largest gap), or keys that differ; [] when equal."""
    import torch

    if sorted(got) != sorted(want):
        return [f"keys differ: {sorted(set(got) ^ set(want))[:3]}"]
    different = [k for k in want if not torch.equal(got[k], want[k])]
    if not different:
        return []
    return different[:3] + [f"max |diff| {max(float((got[k] - want[k]).abs().max()) for k in different):.3g}"]


def kill_after_checkpoint(
    cluster, proc: subprocess.Popen, run: str, log: Path, victim: str, step: int = 2
) -> str:
    """Once ``checkpoint_<step>`` is complete on S3, kill ``victim`` (the node of one of the two
    workers: each worker node holds one) and add a replacement; returns the killed node's id."""
    from vsd.model.checkpoints import checkpoint_uri

    meta = storage.join(checkpoint_uri(run, step), "meta.json")
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not storage.exists(meta) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.3)
    assert proc.poll() is None, f"the run ended before the fault:\n{log.read_text()[-4000:]}"
    victim_id = cluster.node_ids()[victim]
    cluster.kill_node(victim)
    cluster.wait_state(victim, "DEAD")
    cluster.add_replacement(**SLOT)
    return victim_id


@pytest.mark.timeout(3 * RUN_TIMEOUT_S)
@pytest.mark.parametrize("stage", [2, 3])
def test_node_lost_mid_run_resumes_on_a_replacement_to_the_undisturbed_adapter(
    train_cluster, s3_bucket, tmp_path, stage
):
    nodes = train_cluster.live_workers(2, **SLOT)
    baseline, faulted = f"{s3_bucket}/runs/undisturbed", f"{s3_bucket}/runs/node-lost"
    started = time.monotonic()
    code, text = train(train_cluster, baseline, overrides(stage, 2), tmp_path / "undisturbed.log")
    assert code == 0, text[-6000:]
    rows = metrics(baseline)
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1)) and all(
        r["resumed_from"] == 0 for r in rows
    )
    assert all(sorted(r["nodes"]) == sorted(nodes.values()) for r in rows)  # one worker per node
    check_finished_run(baseline, stage)
    undisturbed_s = time.monotonic() - started

    max_failures = 2 if stage == 2 else 0  # ZeRO-3: fail loudly, then a relaunch resumes
    log = tmp_path / "node-lost.log"
    started = time.monotonic()
    proc = start_train(train_cluster, faulted, overrides(stage, max_failures), log)
    try:
        victim_id = kill_after_checkpoint(train_cluster, proc, faulted, log, victim=sorted(nodes)[-1])
        code, text = wait_process(proc, log, RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if max_failures == 0:
        assert code == 1, text[-6000:]
        failure = [line for line in text.splitlines() if line.startswith("vsd train: failed:")]
        assert failure and "checkpoint_0000000" in failure[0], text[-6000:]
        assert "node has died" in failure[0], failure[0]  # one line that says what happened
        code, text = train(train_cluster, faulted, overrides(stage, max_failures), tmp_path / "relaunch.log")
    assert code == 0, text[-6000:]
    faulted_s = time.monotonic() - started

    rows = metrics(faulted)
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    resumed = [r for r in rows if r["resumed_from"] > 0]
    assert resumed and resumed[0]["resumed_from"] in (2, 4), [r["resumed_from"] for r in rows]
    assert all(
        victim_id not in r["nodes"] and len(set(r["nodes"])) == 2 for r in resumed
    )  # on the replacement
    meta = json.loads(
        storage.read_text(storage.join(faulted, "checkpoints", f"checkpoint_{STEPS:08d}", "meta.json"))
    )
    assert meta["optimizer"]["world_size"] == 2 and meta["zero_stage"] == stage
    diff = adapter_differences(final_adapter(faulted), final_adapter(baseline))
    how = "FailureConfig restart" if max_failures else "failed loudly, relaunched"
    note = (
        f"resumed from step {resumed[0]['resumed_from']} on the replacement node ({how}); final adapter "
        f"{'bit-identical to' if not diff else 'DIFFERS from'} the undisturbed run's; {faulted_s:.0f}s vs "
        f"{undisturbed_s:.0f}s undisturbed"
    )
    print(f"ZeRO-{stage}: {note}")
    record_case(
        f"training: worker node killed mid-run, ZeRO-{stage} (multi-node)",
        "train fault (multi-node)",
        rows=[{"row_id": f"step-{r['step']}", "status": "ok", "error": None} for r in rows],
        expected_ids={f"step-{n}" for n in range(1, STEPS + 1)},
        rows_in=STEPS,
        same_as_baseline=not diff,
        note=note,
    )
    assert not diff, diff
