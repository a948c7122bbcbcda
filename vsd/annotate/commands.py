"""`vsd annotate`: run the annotation pipeline on a corpus and print the run's counts."""

from __future__ import annotations

import argparse

from vsd.config import add_config_arguments, config_from_args

FLAGS = {"input": "input.uri", "output": "output", "model": "engine.model", "adapter": "engine.adapter"}


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "annotate",
        help="annotate an image corpus (folder, s3:// prefix, manifest, VSD JSON) on Ray Data",
        description="Annotates what --input holds and --output lacks (exactly once across runs); "
        "ends by printing ok / error by reason / skipped. Config fields: --help-config.",
        epilog="A manifest (JSONL, Parquet or CSV) has one row per image: uri (s3://..., an absolute path or a path "
        "relative to the manifest's folder; only under the allowed roots), optional image_id, size, etag/mtime, "
        "and pairs: [{subject, object, subject_box, object_box}] with boxes normalised to 0..1 as "
        '[x0, y0, x1, y1]. Example line: {"uri": "images/a.jpg", "pairs": [{"subject": "cup", '
        '"object": "table", "subject_box": [0.42, 0.31, 0.55, 0.48], "object_box": [0.1, 0.45, 0.95, '
        "0.98]}]}. See the README's 'Manifests' section.",
    )
    p.add_argument("--input", help="corpus URI (overrides input.uri)")
    p.add_argument("--output", help="output root URI (overrides output)")
    p.add_argument("--model", help="model: dir, s3:// prefix, hub id or tiny:llava (overrides engine.model)")
    p.add_argument("--adapter", help="PEFT adapter dir (overrides engine.adapter)")
    p.add_argument("--ray-address", help="connect to this Ray cluster (default: RAY_ADDRESS or a local one)")
    add_config_arguments(
        p,
        example_config="jobs/configs/annotate-*.yaml",
        example_overrides="engine.batch_size=16 stages.generate.resources.concurrency=8",
        job="annotate",
    )
    p.set_defaults(func=run)


def load_config(args: argparse.Namespace):
    """The config from --config (a file or a shipped name), the flags and the overrides, resolved
    against the model's own record (image size, visual prompt, token budgets: a contradiction is
    refused here, before any cluster starts; `vsd.annotate.model_record`)."""
    from vsd.annotate.config import AnnotateConfig
    from vsd.annotate.config import load_config as load_annotate_config
    from vsd.annotate.model_record import resolve_against_model

    def load(path, overrides):
        return resolve_against_model(load_annotate_config(path, overrides), path, overrides)

    return config_from_args(AnnotateConfig, args, FLAGS, loader=load, job="annotate")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    if cfg is None:  # --help-config
        return 0
    cfg.check_paths()  # fail before any cluster starts
    from vsd.preflight import check_annotate

    check_annotate(
        cfg
    )  # every URI once, in seconds; also switches off a metadata lookup Ray workers would inherit

    from vsd.annotate.pipeline import format_counts, run_annotation

    result = run_annotation(cfg, ray_address=args.ray_address)
    print(f"run {result.run_id}: {result.output}/run_date={result.run_date}/")
    print(format_counts(result.counts))
    return 0
