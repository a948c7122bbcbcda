"""The training step and the per-worker loop that Ray Train runs on every worker.

Two layers, so the GPU benchmark (a machine with torch + transformers + peft but no Ray or
DeepSpeed) runs the very same step code:

* the step: ``answer_loss`` (logits only where there are labels), ``Stepper`` with a plain
  PyTorch (``TorchStepper``) and a DeepSpeed (``DeepSpeedStepper``) implementation, and
  ``run_step`` (grad-accumulated optimizer step + throughput numbers). Imports nothing heavy.
* the loop: ``train_loop_per_worker`` (Ray Train + DeepSpeed): model + LoRA, resume, sharded
  data, steps, per-step metrics from every worker, adapter checkpoints.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from vsd.train.collator import IGNORE_INDEX, model_inputs

# ================================ the step (no Ray, no DeepSpeed) ================================


def lr_factor(step: int, total: int, warmup: int, cosine: bool) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total`` (or constant)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if not cosine:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model, lr: float, weight_decay: float):
    """AdamW over the trainable parameters only (the frozen base carries no optimizer state)."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    fused = bool(params) and params[0].is_cuda  # one kernel for all LoRA tensors on GPU
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.999), fused=fused)


def make_scheduler(optimizer, total_steps: int, warmup_ratio: float, cosine: bool, start_step: int = 0):
    """Per-optimizer-step LR schedule; ``start_step`` continues a resumed run where it stopped."""
    import torch

    warmup = int(round(warmup_ratio * total_steps))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: lr_factor(i + start_step, total_steps, warmup, cosine))


def answer_loss(model, batch: dict):
    """Mean token cross-entropy over the answer tokens; (loss, number of answer tokens).

    Logits are computed only at positions that predict a label (``logits_to_keep`` with indices):
    on LLaVA most positions are image and prompt tokens, so this skips most of the vocabulary
    projection and its memory. A batch without labels (all samples dropped) gives a zero loss
    that still runs the full forward/backward, so ranks stay in lockstep.
    """
    import torch

    labels = batch["labels"]
    targets_next = labels[:, 1:]
    keep = (targets_next != IGNORE_INDEX).any(dim=0).nonzero().flatten()
    if keep.numel() == 0:
        keep = torch.zeros(1, dtype=torch.long, device=labels.device)
    out = model(**model_inputs(batch), logits_to_keep=keep, use_cache=False)
    logits = out.logits.float()
    targets = targets_next[:, keep]
    n = int((targets != IGNORE_INDEX).sum())
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1),
                                             ignore_index=IGNORE_INDEX, reduction="sum")
    return loss / max(n, 1), n


class Stepper:
    """One micro-step at a time; ``step()`` applies the optimizer at the accumulation boundary."""

    model: Any

    def forward_backward(self, batch: dict) -> float:
        raise NotImplementedError

    def step(self) -> None:
        raise NotImplementedError

    def lr(self) -> float:
        raise NotImplementedError


class TorchStepper(Stepper):
    """Plain PyTorch: loss/grad_accum backward, clip, AdamW step, scheduler step."""

    def __init__(self, model, optimizer, scheduler, grad_accum: int = 1, max_grad_norm: float = 0.0):
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.grad_accum, self.max_grad_norm = grad_accum, max_grad_norm

    def forward_backward(self, batch: dict) -> float:
        loss, _ = answer_loss(self.model, batch)
        (loss / self.grad_accum).backward()
        return float(loss.detach())

    def step(self) -> None:
        import torch

        if self.max_grad_norm:
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])


class DeepSpeedStepper(Stepper):
    """A DeepSpeed engine: it scales by grad_accum, clips, steps optimizer + scheduler itself at
    the boundary (every ``engine.step()`` call counts one micro-step)."""

    def __init__(self, engine):
        self.engine = engine
        self.model = engine

    def forward_backward(self, batch: dict) -> float:
        loss, _ = answer_loss(self.engine, batch)
        self.engine.backward(loss)
        self.engine.step()
        return float(loss.detach())

    def step(self) -> None:
        pass  # the engine stepped at the boundary micro-step already

    def lr(self) -> float:
        return float(self.engine.get_lr()[0])


@dataclass
class StepStats:
    loss: float
    lr: float
    samples: int
    tokens: int
    dropped: int
    truncated: int
    seconds: float

    def metrics(self) -> dict:
        return {"loss": self.loss, "lr": self.lr, "samples": self.samples, "tokens": self.tokens,
                "samples_per_s": self.samples / self.seconds,
                "tokens_per_s": self.tokens / self.seconds, "samples_dropped": self.dropped,
                "samples_truncated": self.truncated, "step_time_s": self.seconds}


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) if hasattr(v, "to") else v for k, v in batch.items()}


def run_step(stepper: Stepper, micro_batches: Iterable[dict], device=None, sync: Callable | None = None) -> StepStats:
    """One optimizer step over ``grad_accum`` micro-batches; throughput counts every non-pad token
    (image tokens included: they go through the whole language model)."""
    start = time.perf_counter()
    losses, samples, tokens, dropped, truncated = [], 0, 0, 0, 0
    for batch in micro_batches:
        if device is not None:
            batch = to_device(batch, device)
        losses.append(stepper.forward_backward(batch))
        samples += int(batch["input_ids"].shape[0])
        tokens += int(batch["attention_mask"].sum())
        dropped += int(batch.get("num_dropped", 0))
        truncated += int(batch.get("num_truncated", 0))
    lr = stepper.lr()  # the rate this step used (the scheduler moves on in step())
    stepper.step()
    if sync is not None:
        sync()
    return StepStats(loss=sum(losses) / max(1, len(losses)), lr=lr, samples=samples, tokens=tokens,
                     dropped=dropped, truncated=truncated, seconds=max(time.perf_counter() - start, 1e-9))


# ================================ the Ray Train worker ================================


def deepspeed_config(cfg, world_size: int) -> dict:
    """DeepSpeed's JSON config from a TrainConfig (the one place the two vocabularies meet)."""
    zero: dict[str, Any] = {"stage": cfg.deepspeed.zero_stage, "overlap_comm": cfg.scaling.use_gpu,
                            "contiguous_gradients": True}
    if cfg.deepspeed.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": cfg.scaling.use_gpu}
    if cfg.deepspeed.zero_stage == 3:
        # Adapter checkpoints gather only the LoRA tensors; never consolidate the 16-bit base.
        zero["stage3_gather_16bit_weights_on_model_save"] = False
    return {
        "train_micro_batch_size_per_gpu": cfg.optim.batch_size,
        "gradient_accumulation_steps": cfg.optim.grad_accum,
        "train_batch_size": cfg.optim.batch_size * cfg.optim.grad_accum * world_size,
        "gradient_clipping": cfg.optim.max_grad_norm,
        "zero_optimization": zero,
        "bf16": {"enabled": cfg.use_bf16},
        "fp16": {"enabled": False},
        # Our client optimizer is torch AdamW over the LoRA tensors only.
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def _batches(dataset, indices: list[int], batch_size: int, collate, loader_workers: int):
    import torch

    subset = torch.utils.data.Subset(dataset, indices)
    return torch.utils.data.DataLoader(subset, batch_size=batch_size, shuffle=False, collate_fn=collate,
                                       num_workers=loader_workers, drop_last=True)


def epoch_indices(n: int, world: int, rank: int, epoch: int, seed: int, shuffle: bool) -> list[int]:
    """This rank's sample indices for ``epoch`` (DistributedSampler: same on every relaunch)."""
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=shuffle, seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    return list(sampler)


def _resume_point(run_uri: str) -> tuple[dict | None, str | None]:
    """(meta, checkpoint dir) to resume from: Ray's restored checkpoint after a worker failure,
    else the run folder's latest checkpoint when the same run is launched again."""
    import ray.train

    from vsd.train import checkpoint as ck

    restored = ray.train.get_checkpoint()
    if restored is not None:
        fs, path = restored.filesystem, restored.path
        # Read through our storage layer: the same bytes, local or s3://.
        uri = ("s3://" + path) if fs.type_name == "s3" else path
        if ck.loads(uri):
            return ck.read_meta(uri), uri
    latest = ck.latest(run_uri)
    if latest is None:
        return None, None
    return ck.read_meta(latest), latest


def _die_after_the_controller_saw(step: int) -> None:
    """Test-only fault (``fault.kill_at_step``): exit hard, like a lost node. First wait out a few
    controller polls, so reports and checkpoints already made are registered (Ray Train drops
    reports it had not collected when a worker dies) and the test sees a deterministic history."""
    poll = float(os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "2"))
    time.sleep(3 * poll)
    os._exit(1)


def train_loop_per_worker(config: dict) -> None:
    """Ray Train entry point; ``config`` = {"config": TrainConfig as a dict, "run_uri": str}."""
    import deepspeed
    import ray.train
    import torch
    from peft import set_peft_model_state_dict

    from vsd import config as vconfig
    from vsd.model.loader import load_model, localize
    from vsd.model.lora import attach_lora
    from vsd.train import checkpoint as ck
    from vsd.train.collator import LlavaCollator
    from vsd.train.config import TrainConfig
    from vsd.train.answer_lengths import dataset_answer_tokens
    from vsd.train.data import InstructionDataset, synthetic_dataset

    cfg: TrainConfig = vconfig.from_dict(TrainConfig, config["config"])
    run_uri: str = config["run_uri"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device() if cfg.scaling.use_gpu else torch.device("cpu")
    torch.manual_seed(cfg.seed)

    base = localize(cfg.model.base)  # tiny:llava is built here, once per node; s3:// is downloaded
    # Straight onto this worker's GPU: DeepSpeed partitions (ZeRO-3) from there without a host copy.
    model, processor = load_model(base, dtype="bfloat16" if cfg.use_bf16 else "float32", device=str(device),
                                  trust_remote_code=cfg.model.trust_remote_code)
    model = attach_lora(model, cfg.lora)
    meta, resume_dir = _resume_point(run_uri)
    start_step = int(meta["step"]) if meta else 0
    if resume_dir is not None:
        set_peft_model_state_dict(model, ck.load_adapter_state(resume_dir))
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    data_uri = cfg.data.uri or synthetic_dataset(cfg.data)
    dataset = InstructionDataset(data_uri)
    collate = LlavaCollator(processor, cfg.data.max_length)
    lengths = dataset_answer_tokens(data_uri, processor.tokenizer, cfg.seed) if rank == 0 else {}
    micro_per_step = cfg.optim.grad_accum
    per_epoch = (len(dataset) // world) // (cfg.optim.batch_size * micro_per_step)
    if per_epoch < 1:
        raise ValueError(f"{len(dataset)} samples cannot fill one step of {world} workers x "
                         f"{cfg.optim.batch_size} x {micro_per_step}")
    total = cfg.optim.max_steps or cfg.optim.epochs * per_epoch

    optimizer = make_optimizer(model, cfg.optim.lr, cfg.optim.weight_decay)
    scheduler = make_scheduler(optimizer, total, cfg.optim.warmup_ratio, cfg.optim.cosine, start_step)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler,
                                           config=deepspeed_config(cfg, world))
    engine.train()
    stepper = DeepSpeedStepper(engine)

    def report(step: int, stats: StepStats | None, save: bool, final: bool) -> None:
        metrics = {"step": step, "epoch": step / per_epoch, "rank": rank, "resumed_from": start_step,
                   "total_steps": total, "final": final, **(stats.metrics() if stats else {})}
        local = None
        if save:
            state = ck.trainable_state(engine.module, cfg.deepspeed.zero_stage)  # collective
            if rank == 0:
                meta_out = {"base_model": cfg.model.base, "base_model_path": base, "step": step,
                            "epoch": step / per_epoch, "total_steps": total, "loss": metrics.get("loss"),
                            "zero_stage": cfg.deepspeed.zero_stage, "world_size": world,
                            "lora": vconfig.to_dict(cfg.lora), "answer_tokens": lengths}
                local = ck.write_checkpoint(engine.module, state, meta_out)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(local) if local else None,
                         checkpoint_dir_name=ck.checkpoint_name(step) if save else None)
        if local:  # persisted to the run folder by now (synchronous upload)
            shutil.rmtree(local, ignore_errors=True)

    if start_step >= total:  # a finished run launched again: nothing to redo
        report(start_step, None, save=False, final=True)
        return

    step = start_step
    while step < total:
        epoch, offset = divmod(step, per_epoch)
        indices = epoch_indices(len(dataset), world, rank, epoch, cfg.seed, cfg.data.shuffle)
        indices = indices[offset * micro_per_step * cfg.optim.batch_size:]
        loader = iter(_batches(dataset, indices, cfg.optim.batch_size, collate, cfg.data.loader_workers))
        for _ in range(min(per_epoch - offset, total - step)):
            stats = run_step(stepper, (next(loader) for _ in range(micro_per_step)), device=device)
            step += 1
            final = step == total
            save = final or step % cfg.checkpoint.every_n_steps == 0
            if save or final or step % cfg.metrics_every_n_steps == 0:
                report(step, stats, save=save, final=final)
            if cfg.fault.kill_at_step == step and start_step == 0 and rank == world - 1:
                _die_after_the_controller_saw(step)
