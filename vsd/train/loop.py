"""The training step, and the DeepSpeed config the Ray Train workers build their engine from.

Two layers, so the GPU benchmark (a machine with torch + transformers + peft but no Ray or
DeepSpeed) runs the very same step code:

* the step: ``answer_loss`` (logits only where there are labels), ``Stepper`` with a plain
  PyTorch (``TorchStepper``) and a DeepSpeed (``DeepSpeedStepper``) implementation, and
  ``run_step`` (grad-accumulated optimizer step + throughput numbers). Imports nothing heavy.
* ``deepspeed_config``: DeepSpeed's JSON config from a TrainConfig. The Ray Train worker that runs
  the steps lives in ``vsd.train.worker``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

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
        optimizer, lambda i: lr_factor(i + start_step, total_steps, warmup, cosine)
    )


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
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )
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
        return {
            "loss": self.loss,
            "lr": self.lr,
            "samples": self.samples,
            "tokens": self.tokens,
            "samples_per_s": self.samples / self.seconds,
            "tokens_per_s": self.tokens / self.seconds,
            "samples_dropped": self.dropped,
            "samples_truncated": self.truncated,
            "step_time_s": self.seconds,
        }


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) if hasattr(v, "to") else v for k, v in batch.items()}


def run_step(
    stepper: Stepper, micro_batches: Iterable[dict], device=None, sync: Callable | None = None
) -> StepStats:
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
    return StepStats(
        loss=sum(losses) / max(1, len(losses)),
        lr=lr,
        samples=samples,
        tokens=tokens,
        dropped=dropped,
        truncated=truncated,
        seconds=max(time.perf_counter() - start, 1e-9),
    )


# ================================ DeepSpeed ================================


def deepspeed_config(cfg, world_size: int) -> dict:
    """DeepSpeed's JSON config from a TrainConfig (the one place the two vocabularies meet)."""
    zero: dict[str, Any] = {
        "stage": cfg.deepspeed.zero_stage,
        "overlap_comm": cfg.scaling.use_gpu,
        "contiguous_gradients": True,
    }
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
