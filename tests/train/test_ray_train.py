"""Real Ray Train + DeepSpeed (gloo) runs of the tiny LLaVA on 2 CPU workers.

Fault injection: ``fault.kill_at_step=k`` makes the last worker ``os._exit(1)`` right after step k
of a run that started from scratch; Ray Train (FailureConfig) replaces the worker group, which
resumes from the latest checkpoint (``ray.train.get_checkpoint()``).
"""

from __future__ import annotations

import json

import pytest

from vsd import storage
from vsd.config import from_dict
from vsd.train.config import TrainConfig

pytestmark = pytest.mark.slow


def _metrics(run_uri: str) -> list[dict]:
    return [json.loads(line) for line in storage.read_text(storage.join(run_uri, "metrics.jsonl")).splitlines()]


def _assert_falling(rows: list[dict]) -> None:
    losses = [r["loss"] for r in rows]
    assert losses[-1] < losses[0] - 0.15, losses


def _checkpoints(run_uri: str) -> list[int]:
    from vsd.model.checkpoints import list_checkpoints

    return [step for step, _ in list_checkpoints(run_uri)]


def _assert_adapter_only(checkpoint: str) -> None:
    from vsd.train.checkpoint import load_adapter_state

    state = load_adapter_state(checkpoint)
    assert state and all("lora_" in k for k in state), sorted(state)[:5]
    assert not any("vision_tower" in k for k in state)


def _assert_optimizer_state(checkpoint: str, stage: int) -> None:
    """Every rank's optimizer shard is stored next to the adapter and listed (size, sha256) in meta."""
    from vsd.model.checkpoints import read_meta
    from vsd.train.checkpoint import check_shards_present

    meta = read_meta(checkpoint)
    assert meta["optimizer"]["world_size"] == 2 and meta["optimizer"]["zero_stage"] == stage
    assert sorted(meta["optimizer"]["shards"]) == ["rank_00000-of-00002.pt", "rank_00001-of-00002.pt"]
    check_shards_present(checkpoint, meta)


def test_zero2_local_survives_a_killed_worker_and_resumes_when_relaunched(ray_local, tmp_path, train_config_dict):
    from vsd.model.checkpoints import read_meta
    from vsd.train.driver import train

    run = str(tmp_path / "run")
    cfg = from_dict(TrainConfig, train_config_dict(fault={"kill_at_step": 3}))
    result = train(cfg, run)
    assert result.error is None
    rows = _metrics(run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(r["workers"] == 2 for r in rows)  # every worker reported every step
    # Steps after the kill were redone by a new worker group from checkpoint 2.
    assert [r["resumed_from"] for r in rows] == [0, 0, 2, 2, 2, 2]
    _assert_falling(rows)
    assert all(r["tokens_per_s"] > 0 and r["samples_per_s"] > 0 and r["lr"] > 0 for r in rows)
    assert _checkpoints(run) == [4, 6]  # keep_n=2
    assert result.checkpoint.endswith("checkpoint_00000006")
    meta = read_meta(result.checkpoint)
    assert meta["step"] == 6 and meta["base_model"] == "tiny:llava"
    _assert_adapter_only(result.checkpoint)
    _assert_optimizer_state(result.checkpoint, 2)
    assert "zero_stage: 2" in storage.read_text(storage.join(run, "config.yaml"))

    # The same run launched again with a longer schedule continues at step 7, it does not restart.
    longer = from_dict(TrainConfig, train_config_dict(optim={"max_steps": 8}))
    again = train(longer, run)
    assert again.error is None
    rows = _metrics(run)
    assert [r["step"] for r in rows] == list(range(1, 9))
    assert [r["resumed_from"] for r in rows[6:]] == [6, 6]
    assert _checkpoints(run) == [6, 8]

    # Launched once more unchanged: already finished, nothing is redone.
    done = train(longer, run)
    assert done.error is None and done.metrics["resumed_from"] == 8 and "loss" not in done.metrics
    assert len(_metrics(run)) == 8


def test_zero3_checkpoints_to_s3(ray_local, s3_bucket, train_config_dict):
    from vsd.model.checkpoints import read_meta
    from vsd.train.driver import train

    run = f"{s3_bucket}/runs/zero3"
    cfg = from_dict(TrainConfig, train_config_dict(deepspeed={"zero_stage": 3}, optim={"max_steps": 4}))
    result = train(cfg, run)
    assert result.error is None
    rows = _metrics(run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    _assert_falling(rows)
    assert _checkpoints(run) == [2, 4]
    assert result.checkpoint == f"{run}/checkpoints/checkpoint_00000004"
    assert read_meta(result.checkpoint)["zero_stage"] == 3
    lengths = read_meta(result.checkpoint)["answer_tokens"]  # the record annotation sizes its budgets from
    assert set(lengths) == {"1", "2", "3"} and lengths["3"]["p99"] > lengths["2"]["p99"] > lengths["1"]["p99"]
    _assert_adapter_only(result.checkpoint)  # gathered: full LoRA tensors, not ZeRO-3 shards
    _assert_optimizer_state(result.checkpoint, 3)
    from vsd.train.checkpoint import load_adapter_state

    state = load_adapter_state(result.checkpoint)
    assert all(t.numel() > 0 and t.dim() == 2 for t in state.values())
    assert storage.exists(f"{run}/config.yaml")
