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

import pyarrow.fs as pafs
import pytest
import torch

from vsd import storage
from vsd.config import from_dict
from vsd.model.checkpoints import checkpoint_uri, list_checkpoints, read_meta
from vsd.train.config import TrainConfig

TOTAL, K = 4, 2


def _cfg(train_config_dict, stage: int) -> TrainConfig:
    return from_dict(TrainConfig, train_config_dict(
        deepspeed={"zero_stage": stage}, lora={"rank": 8, "dropout": 0.1},
        optim={"lr": 5e-3, "cosine": True, "warmup_ratio": 0.25, "max_steps": TOTAL},
        scaling={"num_workers": 1}))


def _persist(local: str, checkpoint: str) -> None:
    """What Ray Train does with rank 0's directory on ``ray.train.report``: copy it into the folder."""
    fs, path = storage.resolve(checkpoint)
    fs.create_dir(path, recursive=True)
    pafs.copy_files(local, path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)


def _run(cfg: TrainConfig, run_uri: str, stop_at: int, *, resume: bool = True, with_optimizer: bool = True):
    """Train from scratch or from the run's checkpoint up to ``stop_at``, checkpointing at K.
    Returns (adapter tensors, the Resume it started from)."""
    from vsd.model.loader import localize
    from vsd.train import resume as rs
    from vsd.train.collator import LlavaCollator
    from vsd.train.data import InstructionDataset, synthetic_dataset
    from vsd.train.loop import DeepSpeedStepper, run_step
    from vsd.train.worker import build_engine, load_for_training, save_checkpoint, step_batches

    torch.manual_seed(cfg.seed)
    model, processor, _zero3 = load_for_training(cfg, localize(cfg.model.base), torch.device("cpu"), 1)
    state = rs.choose(rs.candidates(run_uri), 0, 1) if resume else rs.Resume()
    if not with_optimizer:
        state.shard = None
    state.apply_adapter(model)
    engine = build_engine(cfg, model, 1, TOTAL, state.step)
    state.apply_optimizer(engine, 0, 1)
    dataset = InstructionDataset(synthetic_dataset(cfg.data))
    collate = LlavaCollator(processor, cfg.data.max_length)
    stepper = DeepSpeedStepper(engine)
    for step, batches in step_batches(cfg, dataset, collate, 0, 1, state.step, stop_at):
        run_step(stepper, batches)
        if step == K and not state.checkpoint:
            meta = {"base_model": cfg.model.base, "step": step, "zero_stage": cfg.deepspeed.zero_stage, "world_size": 1}
            _persist(save_checkpoint(engine, checkpoint_uri(run_uri, step), meta, 0, 1), checkpoint_uri(run_uri, step))
    from vsd.train.checkpoint import trainable_state

    return trainable_state(engine.module, cfg.deepspeed.zero_stage), state


def _assert_same(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    different = [k for k in want if not torch.equal(got[k], want[k])]
    assert not different, (different[:3], max(float((got[k] - want[k]).abs().max()) for k in different))


@pytest.mark.parametrize("stage, where", [(2, "local"), (3, "s3")])
def test_resumed_run_ends_on_the_adapter_of_an_uninterrupted_one(stage, where, single_process_group, train_config_dict,
                                                                 tmp_path, request):
    cfg = _cfg(train_config_dict, stage)
    run = str(tmp_path / "run") if where == "local" else f"{request.getfixturevalue('s3_bucket')}/runs/r"
    straight, _ = _run(cfg, str(tmp_path / "straight"), TOTAL, resume=False)
    interrupted, _ = _run(cfg, run, K, resume=False)  # stops right after checkpoint K

    checkpoint = checkpoint_uri(run, K)
    meta = read_meta(checkpoint)
    assert [s for s, _ in list_checkpoints(run)] == [K]
    shards = meta["optimizer"]["shards"]
    assert list(shards) == ["rank_00000-of-00001.pt"] and meta["optimizer"]["zero_stage"] == stage
    assert storage.exists(storage.join(checkpoint, "adapter", "adapter_model.safetensors"))  # export's layout

    resumed, state = _run(cfg, run, TOTAL)
    assert state.checkpoint == checkpoint and state.step == K and state.shard is not None
    _assert_same(resumed, straight)
    assert any(not torch.equal(interrupted[k], straight[k]) for k in straight)  # the last steps did move it


def test_adapter_only_resume_drifts_which_is_what_the_optimizer_state_prevents(single_process_group,
                                                                               train_config_dict, tmp_path):
    cfg = _cfg(train_config_dict, 2)
    run = str(tmp_path / "run")
    straight, _ = _run(cfg, str(tmp_path / "straight"), TOTAL, resume=False)
    _run(cfg, run, K, resume=False)
    drifted, state = _run(cfg, run, TOTAL, with_optimizer=False)
    assert state.step == K
    gap = max(float((drifted[k] - straight[k]).abs().max()) for k in straight)
    assert gap > 1e-4, gap  # AdamW restarting from zero moments takes different steps


def test_a_corrupt_optimizer_shard_falls_back_to_the_checkpoint_before(single_process_group, train_config_dict,
                                                                       tmp_path, caplog):
    from vsd.train import resume as rs

    cfg = _cfg(train_config_dict, 2)
    run = str(tmp_path / "run")
    _run(cfg, run, K, resume=False)
    # A later checkpoint whose shard was torn: same name and listed size, other bytes.
    later = checkpoint_uri(run, K + 2)
    for uri in storage.list_files(checkpoint_uri(run, K)):
        data = storage.read_bytes(uri)
        if "/optimizer/" in uri:
            data = data[:-64] + b"\0" * 64
        rel = uri[len(checkpoint_uri(run, K)):]
        storage.write_bytes(later + rel, data.replace(b'"step": 2', b'"step": 4') if rel.endswith("meta.json") else data)
    assert [s for s, _ in list_checkpoints(run)] == [K, K + 2]
    state = rs.choose(rs.candidates(run), 0, 1)
    assert state.checkpoint == checkpoint_uri(run, K) and state.shard is not None
    assert any("checkpoint_00000004" in r.getMessage() and "sha256" in r.getMessage() for r in caplog.records)
