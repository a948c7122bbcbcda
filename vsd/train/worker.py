"""The per-worker loop Ray Train runs on every worker: model + LoRA, resume, sharded data, steps,
per-step metrics from every worker, checkpoints.

A checkpoint is the adapter (rank 0 writes it, gathered under ZeRO-3) plus one optimizer shard
per rank (`vsd.train.checkpoint`), so a run restarted after a lost node -- or relaunched -- continues
the very trajectory it was on: same adapter, same AdamW moments and step counts, same fp32 master
weights, same RNG, same next batch.
"""

from __future__ import annotations

import os
import shutil
import time

from vsd.train.loop import (
    DeepSpeedStepper,
    StepStats,
    deepspeed_config,
    make_optimizer,
    make_scheduler,
    run_step,
)


def load_for_training(cfg, base: str, device, world: int):
    """``(model with LoRA attached, processor, zero3_handle)``.

    Under ZeRO-3 the base is loaded partitioned: transformers sees the DeepSpeed config
    (``HfDeepSpeedConfig``) and builds the model inside ``deepspeed.zero.Init``, so each GPU only
    ever holds its 1/world of the base weights (LLaVA-1.5-13B in bf16 is 26 GB in full, 3.3 GB
    per GPU on 8) instead of a full copy per GPU that DeepSpeed would partition afterwards (the
    host reads the checkpoint one safetensors file at a time).
    transformers keeps only a weak reference to that config: the caller holds ``zero3_handle``
    for as long as the model trains.
    """
    import torch

    from vsd.model.loader import load_model
    from vsd.model.lora import attach_lora

    handle = None
    cuda = getattr(device, "type", str(device)) == "cuda"
    if cuda:
        torch.cuda.set_device(device)  # zero.Init puts each partition on the current device
    if cfg.deepspeed.zero_stage == 3:
        import deepspeed
        from transformers.integrations import HfDeepSpeedConfig

        # zero.Init partitions over DeepSpeed's view of the process group (Ray Train's, joined here).
        deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo")
        handle = HfDeepSpeedConfig(deepspeed_config(cfg, world))
    model, processor = load_model(
        base,
        dtype="bfloat16" if cfg.use_bf16 else "float32",
        device=str(device),
        trust_remote_code=cfg.model.trust_remote_code,
    )
    torch.manual_seed(cfg.seed)  # the LoRA init must not depend on how the base was loaded
    return attach_lora(model, cfg.lora), processor, handle


def build_engine(cfg, model, world: int, total_steps: int, start_step: int):
    """The DeepSpeed engine over the LoRA parameters, its LR schedule continuing at ``start_step``."""
    import deepspeed

    optimizer = make_optimizer(model, cfg.optim.lr, cfg.optim.weight_decay)
    scheduler = make_scheduler(optimizer, total_steps, cfg.optim.warmup_ratio, cfg.optim.cosine, start_step)
    engine, _, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=deepspeed_config(cfg, world)
    )
    engine.train()
    return engine


def _gather(obj) -> list:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def save_checkpoint(
    engine, checkpoint_uri: str, meta: dict, rank: int, world: int, reports: list[dict] | None = None
) -> str | None:
    """Every rank: join the adapter gather, store its optimizer shard under ``checkpoint_uri``.
    Rank 0 then returns a local dir with ``adapter/`` + ``meta.json`` (listing every stored
    shard) for Ray Train to persist into that same folder; the others return None.

    ``reports`` are this rank's metric reports since the previous checkpoint: meta.json keeps
    every rank's (``reports``, one list per step), so metrics.jsonl can be completed from the
    checkpoint when a lost node took the controller's copy of those steps along."""
    from vsd.train import checkpoint as ck

    stage = int(meta["zero_stage"])
    adapter = ck.trainable_state(engine.module, stage)  # collective under ZeRO-3
    entry = ck.write_shard(checkpoint_uri, rank, world, ck.optimizer_shard(engine))
    gathered = _gather(
        {"shard": entry, "loss": meta.get("loss"), "reports": reports or []}
    )  # every shard is stored
    if rank != 0:
        return None
    losses = [g["loss"] for g in gathered]
    if None not in losses:  # the step's loss as metrics.jsonl has it: the mean over workers
        meta = {**meta, "loss": sum(losses) / len(losses), "loss_per_worker": losses}
    by_step: dict[int, list[dict]] = {}
    for g in gathered:
        for r in g["reports"]:
            by_step.setdefault(int(r["step"]), []).append(r)
    shards = ck.shards_meta([g["shard"] for g in gathered], world, stage)
    return ck.write_checkpoint(
        engine.module,
        adapter,
        {**meta, "optimizer": shards, "reports": [by_step[s] for s in sorted(by_step)]},
    )


def _batches(dataset, indices: list[int], batch_size: int, collate, loader_workers: int, seed: int):
    import torch

    subset = torch.utils.data.Subset(dataset, indices)
    # Its own generator: creating a loader mid-epoch (a resume) must not draw from the global RNG
    # that dropout uses, or a resumed run would drift from an uninterrupted one.
    return torch.utils.data.DataLoader(
        subset,
        batch_size=batch_size,
        shuffle=False,
        collate_fn=collate,
        num_workers=loader_workers,
        drop_last=True,
        generator=torch.Generator().manual_seed(seed),
    )


def epoch_indices(n: int, world: int, rank: int, epoch: int, seed: int, shuffle: bool) -> list[int]:
    """This rank's sample indices for ``epoch`` (DistributedSampler: same on every relaunch)."""
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(
        range(n), num_replicas=world, rank=rank, shuffle=shuffle, seed=seed, drop_last=True
    )
    sampler.set_epoch(epoch)
    return list(sampler)


def steps_per_epoch(cfg, n_samples: int, world: int) -> int:
    per_epoch = (n_samples // world) // (cfg.optim.batch_size * cfg.optim.grad_accum)
    if per_epoch < 1:
        raise ValueError(
            f"{n_samples} samples cannot fill one step of {world} workers x "
            f"{cfg.optim.batch_size} x {cfg.optim.grad_accum}"
        )
    return per_epoch


def step_batches(cfg, dataset, collate, rank: int, world: int, start_step: int, total: int):
    """``(step, its micro-batches)`` for every optimizer step after ``start_step`` up to ``total``:
    the same batches, in the same order, whether the run started at 0 or resumes mid-epoch.
    Consume each step's micro-batches before asking for the next step."""
    per_epoch = steps_per_epoch(cfg, len(dataset), world)
    micro, size = cfg.optim.grad_accum, cfg.optim.batch_size
    step = start_step
    while step < total:
        epoch, offset = divmod(step, per_epoch)
        indices = epoch_indices(len(dataset), world, rank, epoch, cfg.seed, cfg.data.shuffle)[
            offset * micro * size :
        ]
        loader = iter(_batches(dataset, indices, size, collate, cfg.data.loader_workers, cfg.seed))
        for _ in range(min(per_epoch - offset, total - step)):
            step += 1
            yield step, (next(loader) for _ in range(micro))


def _restored_checkpoint() -> str | None:
    """The checkpoint Ray Train restored after a worker-group failure, as a URI of ours."""
    import ray.train

    restored = ray.train.get_checkpoint()
    if restored is None:
        return None
    path = restored.path
    return ("s3://" + path) if restored.filesystem.type_name == "s3" else path


def _die_after_the_controller_saw(step: int) -> None:
    """Test-only fault (``fault.kill_at_step``): exit hard, like a lost node. First wait out a few
    controller polls, so reports and checkpoints already made are registered (Ray Train drops
    reports it had not collected when a worker dies) and the test sees a deterministic history."""
    poll = float(os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "2"))
    time.sleep(3 * poll)
    os._exit(1)


def trained_input(processor) -> dict:
    """The image side the processor fed the vision tower and the visual prompt the instruction
    images carry (`vsd data build` always draws it): recorded in every checkpoint so that `vsd
    export` and annotation preprocess the way the model was trained (`vsd.annotate.model_record`)."""
    crop = getattr(getattr(processor, "image_processor", None), "crop_size", None) or {}
    side = crop.get("height") if isinstance(crop, dict) else getattr(crop, "height", None)
    return {"image_size": int(side) if side else None, "visual_prompt": True}


def train_loop_per_worker(config: dict) -> None:
    """Ray Train entry point; ``config`` = {"config": TrainConfig as a dict, "run_uri": str}."""
    import ray
    import ray.train
    import torch

    from vsd import config as vconfig
    from vsd.model.checkpoints import checkpoint_uri
    from vsd.model.loader import localize
    from vsd.train import resume as rs
    from vsd.train.answer_lengths import dataset_answer_tokens
    from vsd.train.checkpoint import checkpoint_name
    from vsd.train.collator import LlavaCollator
    from vsd.train.config import TrainConfig
    from vsd.train.console import quiet_known_noise, quiet_ray_train_reports
    from vsd.train.data import InstructionDataset, synthetic_dataset

    quiet_known_noise()  # the FutureWarnings every worker would repeat (vsd.train.console)
    if config.get("quiet_reports"):  # the driver prints a step table instead
        quiet_ray_train_reports()
    cfg: TrainConfig = vconfig.from_dict(TrainConfig, config["config"])
    run_uri: str = config["run_uri"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    node_id = ray.get_runtime_context().get_node_id()
    device = ray.train.torch.get_device() if cfg.scaling.use_gpu else torch.device("cpu")
    torch.manual_seed(cfg.seed)

    base = localize(cfg.model.base)  # tiny:llava is built here, once per node; s3:// is downloaded
    model, processor, zero3_handle = load_for_training(cfg, base, device, world)  # noqa: F841 - kept alive
    state = rs.choose(rs.candidates(run_uri, _restored_checkpoint()), rank, world)
    start_step = state.step
    state.apply_adapter(model)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    data_uri = cfg.data.uri or synthetic_dataset(cfg.data)
    dataset = InstructionDataset(data_uri)
    collate = LlavaCollator(processor, cfg.data.max_length)
    lengths = dataset_answer_tokens(data_uri, processor.tokenizer, cfg.seed) if rank == 0 else {}
    per_epoch = steps_per_epoch(cfg, len(dataset), world)
    total = cfg.optim.max_steps or cfg.optim.epochs * per_epoch

    engine = build_engine(cfg, model, world, total, start_step)
    state.apply_optimizer(engine, rank, world)
    stepper = DeepSpeedStepper(engine)

    since_checkpoint: list[dict] = []  # this rank's reports since the last checkpoint (see save_checkpoint)

    def report(step: int, stats: StepStats | None, save: bool, final: bool) -> None:
        metrics = {
            "step": step,
            "epoch": step / per_epoch,
            "rank": rank,
            "resumed_from": start_step,
            "total_steps": total,
            "final": final,
            "node_id": node_id,
            **(stats.metrics() if stats else {}),
        }
        since_checkpoint.append(metrics)
        local = None
        if save:
            meta = {
                "base_model": cfg.model.base,
                "base_model_path": base,
                "step": step,
                "epoch": step / per_epoch,
                "total_steps": total,
                "loss": metrics.get("loss"),
                "zero_stage": cfg.deepspeed.zero_stage,
                "world_size": world,
                "lora": vconfig.to_dict(cfg.lora),
                "answer_tokens": lengths,  # the trained answer lengths: annotation's token budgets
                "input": trained_input(processor),  # what the model saw: annotation's preprocessing
            }
            local = save_checkpoint(
                engine, checkpoint_uri(run_uri, step), meta, rank, world, since_checkpoint
            )
            since_checkpoint.clear()
        ray.train.report(
            metrics,
            checkpoint=ray.train.Checkpoint.from_directory(local) if local else None,
            checkpoint_dir_name=checkpoint_name(step) if save else None,
        )
        if local:  # persisted to the run folder by now (synchronous upload)
            shutil.rmtree(local, ignore_errors=True)

    if start_step >= total:  # a finished run launched again: nothing to redo
        report(start_step, None, save=False, final=True)
        return

    for step, micro_batches in step_batches(cfg, dataset, collate, rank, world, start_step, total):
        stats = run_step(stepper, micro_batches, device=device)
        final = step == total
        save = final or step % cfg.checkpoint.every_n_steps == 0
        if save or final or step % cfg.metrics_every_n_steps == 0:
            report(step, stats, save=save, final=final)
        if cfg.fault.kill_at_step == step and start_step == 0 and rank == world - 1:
            _die_after_the_controller_saw(step)
