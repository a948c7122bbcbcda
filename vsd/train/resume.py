"""Where a (re)started run continues -- the same checkpoint on every rank.

Candidates, newest first: the checkpoint Ray Train restored after a worker-group failure, then the
run folder's own checkpoints (a relaunch of the same ``--out``). Every rank reads the adapter and
its own optimizer shard of a candidate; the ranks then agree (an all-reduce of "I could read it")
on the first candidate that every rank could read. So a corrupt shard on one rank makes all ranks
fall back together to the checkpoint before -- loudly -- instead of one rank diverging or the
whole group failing on every restart.
"""

from __future__ import annotations

from dataclasses import dataclass

from vsd.model.checkpoints import list_checkpoints, read_meta
from vsd.train import checkpoint as ck


@dataclass
class Resume:
    """What a rank starts from: nothing (a new run), or a checkpoint's adapter + its own shard."""

    checkpoint: str | None = None
    meta: dict | None = None
    adapter: dict | None = None  # PEFT-keyed adapter tensors
    shard: dict | None = None  # this rank's optimizer + RNG state; None: the optimizer restarts

    @property
    def step(self) -> int:
        return int(self.meta["step"]) if self.meta else 0

    def apply_adapter(self, model) -> None:
        """The adapter tensors into the PEFT model (before the DeepSpeed engine wraps it)."""
        if self.adapter is not None:
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(model, self.adapter)

    def apply_optimizer(self, engine, rank: int, world: int) -> None:
        """This rank's optimizer partition + RNG into the fresh engine (every rank, together)."""
        if self.shard is not None:
            ck.restore_shard(engine, self.shard, rank, world)


def candidates(run_uri: str, restored: str | None = None) -> list[str]:
    """Checkpoints to try, newest first (Ray's restored one leads; no duplicates)."""
    found = [uri for _, uri in reversed(list_checkpoints(run_uri))]
    ordered = ([restored] if restored else []) + found
    return list(dict.fromkeys(u.rstrip("/") for u in ordered))


def all_ranks_agree(ok: bool) -> bool:
    """True when every rank's ``ok`` is true (one rank without torch.distributed: its own)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return ok
    flag = torch.tensor([1 if ok else 0], dtype=torch.int32)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def _read(checkpoint: str, rank: int, world: int) -> Resume:
    meta = read_meta(checkpoint)
    ck.check_shards_present(checkpoint, meta)
    return Resume(
        checkpoint=checkpoint,
        meta=meta,
        adapter=ck.load_adapter_state(checkpoint),
        shard=ck.read_shard(checkpoint, meta, rank, world),
    )


def choose(options: list[str], rank: int, world: int) -> Resume:
    """The newest candidate every rank can read (adapter + own shard), or a fresh start. Every
    rank must call it with the same ``options``."""
    for checkpoint in options:
        try:
            resume, ok = _read(checkpoint, rank, world), True
        except Exception as exc:  # noqa: BLE001 - any unreadable file means: do not resume from it
            ck.warn_unusable(checkpoint, exc)
            resume, ok = Resume(), False
        if all_ranks_agree(ok):
            if resume.checkpoint and resume.shard is None and rank == 0:
                ck.log.warning("resuming %s without optimizer state: AdamW moments restart", checkpoint)
            return resume
        if ok and rank == 0:
            ck.log.warning(
                "checkpoint %s is unreadable on another rank; falling back to the one before", checkpoint
            )
    return Resume()
