"""Training throughput of our loop (Ray Train + DeepSpeed, 2 CPU workers) vs a plain
transformers + PEFT loop (one process, no Ray, no DeepSpeed) on the same tiny LLaVA and data.

    python bench/train_throughput.py [--steps 40] [--metrics-every 10]

Both sides train the same global batch for the same number of steps; tokens/s is counted over
the steady-state steps from wall-clock time, so our side pays for its report barriers and data
loading like the plain loop does. Our side reports every ``--metrics-every`` steps (each report is
a barrier across workers; 1 = every step, the config default): its tokens between two reports are
estimated as steps x the reported steps' mean tokens (same data distribution). Prints
``RATIO train_throughput <ours/plain> target 0.8 PASS|FAIL``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MODEL = "tiny:llava?text_hidden=256&text_layers=4&image_tokens=64"
TARGET = 0.8
WARMUP = 2


def config_dict(steps: int, batch: int, metrics_every: int = 1) -> dict:
    return {
        "metrics_every_n_steps": metrics_every,
        "model": {"base": MODEL},
        "data": {"synthetic": {"scenes": 16, "seed": 0}, "max_length": 512, "shuffle": True},
        "lora": {"rank": 16, "alpha": 32.0, "dropout": 0.0},
        "deepspeed": {"zero_stage": 2},
        "optim": {"lr": 1e-3, "warmup_ratio": 0.0, "batch_size": batch, "max_steps": steps},
        "scaling": {"num_workers": 2, "use_gpu": False, "resources_per_worker": {"CPU": 1}},
        "checkpoint": {"every_n_steps": 10**6, "keep_n": 1},
        "failure": {"max_failures": 0},
    }


def ours(cfg, out: str) -> float:
    """Tokens/s of `vsd.train.driver.train`, from the controller's per-step timestamps."""
    from vsd import storage
    from vsd.train.driver import train

    result = train(cfg, out)
    if result.error:
        raise SystemExit(f"our run failed: {result.error}")
    rows = [json.loads(x) for x in storage.read_text(storage.join(out, "metrics.jsonl")).splitlines()]
    steady = [r for r in rows if r["step"] > WARMUP]
    if len(steady) < 2:
        raise SystemExit("too few reports after warm-up: raise --steps or lower --metrics-every")
    per_step = sum(r["tokens"] for r in steady) / len(steady)
    steps = steady[-1]["step"] - steady[0]["step"]
    return per_step * steps / (steady[-1]["time"] - steady[0]["time"])


def plain(cfg, steps: int) -> float:
    """Tokens/s of the textbook loop: model(**batch, labels=...).loss.backward(); AdamW.step()."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from vsd.model.loader import localize
    from vsd.train.collator import LlavaCollator
    from vsd.train.data import InstructionDataset, synthetic_dataset

    torch.set_num_threads(cfg.scaling.num_workers)  # the same cores our two workers get
    path = localize(cfg.model.base)
    model = LlavaForConditionalGeneration.from_pretrained(path, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(path)
    model = get_peft_model(
        model,
        LoraConfig(
            r=cfg.lora.rank,
            lora_alpha=cfg.lora.alpha,
            lora_dropout=0.0,
            target_modules=cfg.lora.target_modules,
        ),
    )
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.optim.lr)
    data = InstructionDataset(synthetic_dataset(cfg.data))
    global_batch = cfg.optim.batch_size * cfg.scaling.num_workers
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=global_batch,
        shuffle=True,
        drop_last=True,
        collate_fn=LlavaCollator(processor, cfg.data.max_length),
    )
    batches = iter(loader)
    tokens, start = 0, None
    for step in range(steps):
        if step == WARMUP:
            start = time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values", "labels")}
        model(**inputs).loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        optimizer.zero_grad()
        if step >= WARMUP:
            tokens += int(batch["attention_mask"].sum())
    return tokens / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument(
        "--metrics-every", type=int, default=10, help="our side reports every N steps (1: every step)"
    )
    ap.add_argument("--batch", type=int, default=4, help="per worker (the plain loop takes 2x)")
    args = ap.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")

    import ray

    from vsd.config import from_dict
    from vsd.train.config import TrainConfig
    from vsd.train.driver import prepare_inputs

    cfg = from_dict(TrainConfig, config_dict(args.steps, args.batch, args.metrics_every))
    prepare_inputs(cfg)  # tiny model + synthetic data built before either side is timed
    plain_tps = plain(cfg, args.steps)
    print(f"plain (transformers + PEFT, 1 process, 2 threads):   {plain_tps:,.0f} tokens/s", flush=True)
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as out:
            ours_tps = ours(cfg, os.path.join(out, "run"))
    finally:
        ray.shutdown()
    ratio = ours_tps / plain_tps
    print(
        f"ours (Ray Train + DeepSpeed ZeRO-2, 2 CPU workers, report every {args.metrics_every}): {ours_tps:,.0f} tokens/s"
    )
    print(f"RATIO train_throughput {ratio:.2f} target {TARGET} {'PASS' if ratio >= TARGET else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
