"""Resuming continues the same trajectory: checkpoints carry every rank's optimizer state.

Real DeepSpeed engines (ZeRO-2 and ZeRO-3, one gloo rank in this process) over the tiny LLaVA with
LoRA dropout on, built and stepped by the very functions the Ray Train worker uses
(`vsd.train.worker`). A run checkpointed at step k, then continued by a fresh engine from that
checkpoint (local folder, or S3 on moto), must end with the adapter of a run that never stopped.

Tolerance: exact (``torch.equal``). On CPU in fp32 both runs execute the same kernels on the same
inputs in the same order -- the resumed run gets back the bit-identical fp32 master weights, AdamW
moments and step counts, RNG state (dropout) and the next batch -- so nothing may differ, not even
rounding. The control case shows what an adapter-only resume (AdamW restarting) does instead.
"""

from __future__ import annotations

import pytest
import torch

from tests.fixtures.train import run_tiny_training
from vsd import storage
from vsd.config import from_dict
from vsd.model.checkpoints import checkpoint_uri, list_checkpoints, read_meta
from vsd.train.config import TrainConfig

TOTAL, K = 4, 2  # a run of TOTAL steps checkpointed at K


def _cfg(train_config_dict, stage: int) -> TrainConfig:
    return from_dict(
        TrainConfig,
        train_config_dict(
            deepspeed={"zero_stage": stage},
            lora={"rank": 8, "dropout": 0.1},
            optim={"lr": 5e-3, "cosine": True, "warmup_ratio": 0.25, "max_steps": TOTAL},
            scaling={"num_workers": 1},
        ),
    )


def _train(cfg: TrainConfig, run: str, stop_at: int, **kwargs):
    return run_tiny_training(cfg, run, stop_at, total=TOTAL, checkpoint_at=K, **kwargs)


def _assert_same(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    different = [k for k in want if not torch.equal(got[k], want[k])]
    assert not different, (different[:3], max(float((got[k] - want[k]).abs().max()) for k in different))


@pytest.mark.parametrize("stage, where", [(2, "local"), (3, "s3")])
def test_resumed_run_ends_on_the_adapter_of_an_uninterrupted_one(
    stage, where, single_process_group, train_config_dict, tmp_path, request
):
    cfg = _cfg(train_config_dict, stage)
    run = str(tmp_path / "run") if where == "local" else f"{request.getfixturevalue('s3_bucket')}/runs/r"
    straight, _ = _train(cfg, str(tmp_path / "straight"), TOTAL, resume=False)
    interrupted, _ = _train(cfg, run, K, resume=False)  # stops right after checkpoint K

    checkpoint = checkpoint_uri(run, K)
    meta = read_meta(checkpoint)
    assert [s for s, _ in list_checkpoints(run)] == [K]
    shards = meta["optimizer"]["shards"]
    assert list(shards) == ["rank_00000-of-00001.pt"] and meta["optimizer"]["zero_stage"] == stage
    assert storage.exists(storage.join(checkpoint, "adapter", "adapter_model.safetensors"))  # export's layout

    resumed, state = _train(cfg, run, TOTAL)
    assert state.checkpoint == checkpoint and state.step == K and state.shard is not None
    _assert_same(resumed, straight)
    assert any(not torch.equal(interrupted[k], straight[k]) for k in straight)  # the last steps did move it


def test_adapter_only_resume_drifts_which_is_what_the_optimizer_state_prevents(
    single_process_group, train_config_dict, tmp_path
):
    cfg = _cfg(train_config_dict, 2)
    run = str(tmp_path / "run")
    straight, _ = _train(cfg, str(tmp_path / "straight"), TOTAL, resume=False)
    _train(cfg, run, K, resume=False)
    drifted, state = _train(cfg, run, TOTAL, with_optimizer=False)
    assert state.step == K
    gap = max(float((drifted[k] - straight[k]).abs().max()) for k in straight)
    assert gap > 1e-4, gap  # AdamW restarting from zero moments takes different steps
