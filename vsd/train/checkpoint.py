"""Writing checkpoints in the layout of `vsd.model.checkpoints` (which reads the adapter).

``<run>/checkpoints/checkpoint_<step:08d>/adapter/`` is PEFT's ``save_pretrained`` output
(safetensors) and ``meta.json`` says where it came from (``base_model``, ``step``, ``epoch``, ...).
Only the LoRA (and, when trained, projector) tensors are written: a 13B run's checkpoint is
~1 GB, not 26 GB, because the base weights never change. Under ZeRO-3 those tensors are
partitioned across ranks, so every rank joins the gather and rank 0 alone writes.

``optimizer/rank_<r>-of-<world>.pt`` (one per rank) is what a resumed run needs to continue the
same trajectory: that rank's ZeRO optimizer partition (AdamW moments, step count, the fp32 master
weights -- under bf16 the adapter holds only their bf16 rounding) and its RNG state (dropout).
Every rank writes its own shard straight to the checkpoint folder; ``meta.json`` (written after
all shards are stored) lists each shard's size and sha256, so a torn or corrupt shard is caught
before it is trained on. Export and annotate read ``adapter/`` only and never touch these.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
from typing import Any

from vsd import storage
from vsd.errors import VSDError
from vsd.model.checkpoints import (  # noqa: F401
    ADAPTER_DIR,
    CHECKPOINT_PREFIX,
    META_FILE,
    OPTIMIZER_DIR,
    list_checkpoints,
    read_meta,
)

log = logging.getLogger(__name__)


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
    # LoRA on the output head (lora.lm_head) makes PEFT save the frozen head itself too by default:
    # only the trained tensors in ``state`` belong in the adapter.
    peft_model.save_pretrained(
        os.path.join(out, ADAPTER_DIR), state_dict=state, safe_serialization=True, save_embedding_layers=False
    )
    with open(os.path.join(out, META_FILE), "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
    return out


def load_adapter_state(checkpoint: str) -> dict:
    """The adapter tensors of a checkpoint (local or s3://), keyed as PEFT saved them."""
    from safetensors.torch import load as load_safetensors

    return load_safetensors(
        storage.read_bytes(storage.join(checkpoint, ADAPTER_DIR, "adapter_model.safetensors"))
    )


def loads(checkpoint: str) -> bool:
    """Whether a checkpoint's adapter tensors read back and every optimizer shard its meta lists is
    there in full; a torn or corrupt one is logged loudly."""
    try:
        load_adapter_state(checkpoint)
        check_shards_present(checkpoint, read_meta(checkpoint))
        return True
    except Exception as exc:  # noqa: BLE001 - any unreadable file means: do not resume from it
        warn_unusable(checkpoint, exc)
        return False


def warn_unusable(checkpoint: str, exc: BaseException) -> None:
    log.warning(
        "checkpoint %s is unreadable (%s: %s); falling back to the one before",
        checkpoint,
        type(exc).__name__,
        str(exc).splitlines()[0][:200] if str(exc) else "",
    )


# ------------------------------------------------------------------------ optimizer state (per rank)


def shard_name(rank: int, world: int) -> str:
    return f"rank_{rank:05d}-of-{world:05d}.pt"


def _safe_globals() -> list:
    """The DeepSpeed classes a ZeRO optimizer state holds besides tensors: plain data objects, so
    shards load with ``weights_only=True`` (no arbitrary pickle code runs on resume)."""
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, ZeroStageEnum, fragment_address]


def optimizer_shard(engine) -> dict:
    """This rank's training state: its ZeRO optimizer partition + its RNG state. Every rank must
    call it (under ZeRO-3 the epilogue re-gathers the persistent parameters collectively)."""
    import torch

    optimizer = engine.optimizer
    if hasattr(optimizer, "checkpoint_event_prologue"):
        optimizer.checkpoint_event_prologue()
    state = {"optimizer_state_dict": optimizer.state_dict(), "rng_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["rng_cuda"] = torch.cuda.get_rng_state_all()
    if hasattr(optimizer, "checkpoint_event_epilogue"):
        optimizer.checkpoint_event_epilogue()
    return state


def write_shard(checkpoint: str, rank: int, world: int, state: dict) -> dict:
    """Store one rank's shard under ``<checkpoint>/optimizer/``; returns its listing for meta.json."""
    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    name = shard_name(rank, world)
    storage.write_bytes(storage.join(checkpoint, OPTIMIZER_DIR, name), data)
    return {"name": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def shards_meta(entries: list[dict], world: int, zero_stage: int) -> dict:
    """meta.json's ``optimizer`` section, from every rank's ``write_shard`` listing."""
    return {
        "world_size": world,
        "zero_stage": zero_stage,
        "shards": {e["name"]: {"bytes": e["bytes"], "sha256": e["sha256"]} for e in entries},
    }


def check_shards_present(checkpoint: str, meta: dict) -> None:
    """Every shard meta.json lists exists with its listed size (cheap: sizes, not contents)."""
    section = meta.get("optimizer")
    if not section:
        return  # an adapter-only checkpoint (older runs): resumable, the optimizer restarts
    fs, root = storage.resolve(storage.join(checkpoint, OPTIMIZER_DIR))
    for name, want in sorted(section["shards"].items()):
        info = fs.get_file_info(f"{root}/{name}")
        if info.size != want["bytes"]:
            found = "missing" if info.size is None else f"{info.size} bytes"
            raise VSDError(f"checkpoint: optimizer shard {name} is {found}, meta.json says {want['bytes']}")


def read_shard(checkpoint: str, meta: dict, rank: int, world: int) -> dict | None:
    """This rank's shard, verified against meta.json's sha256; None when the checkpoint has no
    optimizer state this run can use (adapter-only, or saved by a different number of ranks:
    ZeRO partitions by rank). A corrupt shard raises."""
    import torch

    section = meta.get("optimizer")
    if not section:
        return None
    if int(section["world_size"]) != world:
        log.warning(
            "checkpoint %s holds optimizer state for %s ranks, this run has %d: resuming the adapter "
            "only (AdamW moments restart)",
            checkpoint,
            section["world_size"],
            world,
        )
        return None
    name = shard_name(rank, world)
    data = storage.read_bytes(storage.join(checkpoint, OPTIMIZER_DIR, name))
    want = section["shards"][name]["sha256"]
    if hashlib.sha256(data).hexdigest() != want:
        raise VSDError(f"checkpoint: optimizer shard {name} does not match its sha256 in meta.json")
    with torch.serialization.safe_globals(_safe_globals()):
        return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")


def restore_shard(engine, state: dict, rank: int, world: int) -> None:
    """Load this rank's optimizer partition (moments, step, fp32 master weights) and RNG state
    into a freshly initialised engine (every rank, together)."""
    import torch

    optimizer = engine.optimizer
    if hasattr(optimizer, "checkpoint_event_prologue"):
        optimizer.checkpoint_event_prologue()
    # ZeRO indexes the list by data-parallel rank and, with an unchanged world size, reads only its own.
    states: list[Any] = [None] * world
    states[rank] = state["optimizer_state_dict"]
    optimizer.load_state_dict(state_dict_list=states, load_optimizer_states=True, load_from_fp32_weights=True)
    if hasattr(optimizer, "checkpoint_event_epilogue"):
        optimizer.checkpoint_event_epilogue()
    torch.set_rng_state(state["rng_cpu"])
    if "rng_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng_cuda"])


def latest(run_uri: str) -> str | None:
    """The run's highest-step checkpoint that is complete and loads, or None for a new run.
    A corrupt newest checkpoint (a torn write, a bad disk) is skipped with a warning, so a
    restart resumes from the one before instead of failing on every attempt."""
    for _, checkpoint in reversed(list_checkpoints(run_uri)):
        if loads(checkpoint):
            return checkpoint
    return None
