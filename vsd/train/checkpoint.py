"""Writing adapter-only checkpoints in the layout of `vsd.model.checkpoints` (which reads them).

``<run>/checkpoints/checkpoint_<step:08d>/adapter/`` is PEFT's ``save_pretrained`` output
(safetensors) and ``meta.json`` says where it came from (``base_model``, ``step``, ``epoch``, ...).
Only the LoRA (and, when trained, projector) tensors are written: a 13B run's checkpoint is
~1 GB, not 26 GB, and resuming needs nothing else because the base weights never change.
Under ZeRO-3 those tensors are partitioned across ranks, so every rank joins the gather and
rank 0 alone writes.
"""

from __future__ import annotations

import logging

import json
import os
import tempfile
from typing import Any

from vsd import storage
from vsd.model.checkpoints import ADAPTER_DIR, CHECKPOINT_PREFIX, META_FILE, list_checkpoints, read_meta  # noqa: F401


def checkpoint_name(step: int) -> str:
    """The folder name Ray Train persists a checkpoint under (zero-padded: names sort by step)."""
    return f"{CHECKPOINT_PREFIX}{step:08d}"


def trainable_state(model, zero_stage: int) -> dict:
    """The full (unpartitioned) trainable tensors on CPU, keyed like ``model.state_dict()``.

    Collective under ZeRO-3: every rank must call it."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if zero_stage == 3:
        import deepspeed

        with deepspeed.zero.GatheredParameters([p for _, p in named], modifier_rank=None):
            return {n: p.detach().to("cpu", copy=True) for n, p in named}
    return {n: p.detach().to("cpu", copy=True) for n, p in named}


def write_checkpoint(peft_model, state: dict, meta: dict[str, Any], parent: str | None = None) -> str:
    """Write ``adapter/`` + ``meta.json`` into a new local directory and return it (meta last, so a
    directory with meta.json is complete)."""
    out = tempfile.mkdtemp(prefix=checkpoint_name(int(meta["step"])) + "-", dir=parent)
    peft_model.save_pretrained(os.path.join(out, ADAPTER_DIR), state_dict=state, safe_serialization=True)
    with open(os.path.join(out, META_FILE), "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
    return out


def load_adapter_state(checkpoint: str) -> dict:
    """The adapter tensors of a checkpoint (local or s3://), keyed as PEFT saved them."""
    from safetensors.torch import load as load_safetensors

    return load_safetensors(storage.read_bytes(storage.join(checkpoint, ADAPTER_DIR, "adapter_model.safetensors")))


def loads(checkpoint: str) -> bool:
    """Whether a checkpoint's adapter tensors read back; a torn or corrupt one is logged loudly."""
    try:
        load_adapter_state(checkpoint)
        return True
    except Exception as exc:  # noqa: BLE001 - any unreadable file means: do not resume from it
        logging.getLogger(__name__).warning(
            "checkpoint %s is unreadable (%s: %s); falling back to the one before",
            checkpoint, type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc) else "")
        return False


def latest(run_uri: str) -> str | None:
    """The run's highest-step checkpoint that is complete and loads, or None for a new run.
    A corrupt newest checkpoint (a torn write, a bad disk) is skipped with a warning, so a
    restart resumes from the one before instead of failing on every attempt."""
    for _, checkpoint in reversed(list_checkpoints(run_uri)):
        if loads(checkpoint):
            return checkpoint
    return None
