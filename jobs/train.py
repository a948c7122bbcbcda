"""`ray job submit` entrypoint for LoRA fine-tuning; the same code path as `vsd train`.

    ray job submit --working-dir . -- python jobs/train.py \
        --config jobs/configs/train-llava15-13b.yaml --out s3://bucket/runs/llava15-13b-vsd
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv: list[str] | None = None) -> int:
    from vsd import config as vconfig
    from vsd.errors import VSDError
    from vsd.named_configs import resolve_config
    from vsd.train.commands import run_training
    from vsd.train.config import TrainConfig

    parser = argparse.ArgumentParser(description="LoRA fine-tune a LLaVA on Ray Train + DeepSpeed")
    parser.add_argument(
        "--config", required=True, help="YAML config (jobs/configs/train-*.yaml) or a shipped name (tiny-cpu)"
    )
    parser.add_argument("--out", required=True, help="run folder: local path or s3:// prefix")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.lr=1e-4")
    args = parser.parse_args(argv)
    try:
        cfg = vconfig.load(TrainConfig, resolve_config(args.config, "train"), args.overrides)
        return run_training(cfg, args.out)
    except VSDError as exc:
        print(f"train: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
