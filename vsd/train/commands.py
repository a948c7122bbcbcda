"""`vsd train --config FILE --out URI [key=value ...]`: LoRA fine-tuning on Ray Train + DeepSpeed."""

from __future__ import annotations

import argparse

from vsd.config import add_config_arguments, config_from_args


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="LoRA fine-tune a LLaVA on an instruction set (Ray Train + DeepSpeed)",
        description="Runs (or resumes: the same --out continues from its latest checkpoint) a LoRA "
        "fine-tune. Writes <out>/config.yaml, <out>/metrics.jsonl and "
        "<out>/checkpoints/checkpoint_<step>/{adapter/,optimizer/,meta.json} (optimizer/: "
        "every rank's optimizer state, so a resume continues the same trajectory).",
    )
    p.add_argument("--out", help="run folder: local path or s3:// prefix")
    add_config_arguments(
        p,
        example_config="jobs/configs/train-*.yaml",
        example_overrides="optim.lr=1e-4 deepspeed.zero_stage=3",
        job="train",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vsd.config import ConfigError
    from vsd.train.config import TrainConfig

    cfg = config_from_args(TrainConfig, args, job="train")
    if cfg is None:  # --help-config
        return 0
    if not args.out:
        raise ConfigError("out: --out (the run folder, local or s3://) is required")
    return run_training(cfg, args.out)


def run_training(cfg, out: str) -> int:
    """Shared by `vsd train` and jobs/train.py: train, print where the adapter is, exit status."""
    import sys

    from vsd.train.console import StepTable, quiet_known_noise
    from vsd.train.driver import train

    quiet_known_noise()
    result = train(cfg, out, progress=StepTable())
    last = result.metrics
    if result.error:
        print(f"vsd train: failed: {result.error} (last checkpoint: {result.checkpoint})", file=sys.stderr)
        return 1
    loss = f" loss {last['loss']:.4f}" if "loss" in last else ""
    print(f"trained to step {last.get('step')}{loss}; latest checkpoint: {result.checkpoint}")
    return 0
