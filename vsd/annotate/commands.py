"""`vsd annotate`: run the annotation pipeline on a corpus and print the run's counts."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "annotate", help="annotate an image corpus (folder, s3:// prefix, manifest, VSD JSON) on Ray Data",
        description="Annotates what --input holds and --output lacks (exactly once across runs); "
                    "ends by printing ok / error by reason / skipped. Config fields: --help-config.")
    p.add_argument("--config", help="YAML config (jobs/configs/annotate-*.yaml)")
    p.add_argument("--input", help="corpus URI (overrides input)")
    p.add_argument("--output", help="output root URI (overrides output)")
    p.add_argument("--model", help="model: dir, s3:// prefix, hub id or tiny:llava (overrides engine.model)")
    p.add_argument("--adapter", help="PEFT adapter dir (overrides engine.adapter)")
    p.add_argument("--ray-address", help="connect to this Ray cluster (default: RAY_ADDRESS or a local one)")
    p.add_argument("--help-config", action="store_true", help="list every config field with its description")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. engine.batch_size=16 resources.generate_concurrency=8")
    p.set_defaults(func=run)


def load_config(args: argparse.Namespace):
    from vsd.annotate.config import load_config as load_annotate_config

    overrides = list(args.overrides or [])
    for flag, key in (("input", "input"), ("output", "output"), ("model", "engine.model"), ("adapter", "engine.adapter")):
        value = getattr(args, flag, None)
        if value:
            overrides.append(f"{key}={value}")
    return load_annotate_config(args.config, overrides)


def run(args: argparse.Namespace) -> int:
    if args.help_config:
        from vsd.annotate.config import AnnotateConfig
        from vsd.config import help_text

        print(help_text(AnnotateConfig))
        return 0
    cfg = load_config(args)
    cfg.check_paths()  # fail before any cluster starts

    import ray

    from vsd.annotate.pipeline import format_counts, run_annotation

    if args.ray_address and not ray.is_initialized():
        ray.init(address=args.ray_address)
    result = run_annotation(cfg)
    print(f"run {result.run_id}: {result.output}/run_date={result.run_date}/")
    print(format_counts(result.counts))
    return 0
