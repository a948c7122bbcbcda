"""`vsd annotate`: run the annotation pipeline on a corpus and print the run's counts.

Exit codes: 0 the run finished (some reads may be deferred to the next run); 2 a user error (one
``vsd: error:`` line, before any cluster starts); 74 (sysexits' ``EX_IOERR``) nothing was written
because every read was deferred -- the storage failed past its retries, so a scheduler should alert
or retry later, not call the night a success; 75 (``EX_TEMPFAIL``) another run holds the output;
143 stopped by SIGTERM; 130 interrupted; 1 anything else.
"""

from __future__ import annotations

import argparse
import sys

from vsd.config import add_config_arguments, config_from_args

EXIT_ALL_DEFERRED = 74  # sysexits' EX_IOERR: every read failed (75, EX_TEMPFAIL, is a busy output's)

FLAGS = {"input": "input.uri", "output": "output", "model": "engine.model", "adapter": "engine.adapter"}


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "annotate",
        help="annotate an image corpus (folder, s3:// prefix, manifest, VSD JSON) on Ray Data",
        description="Annotates what --input holds and --output lacks (exactly once across runs); "
        "ends by printing ok / error by reason / skipped. Config fields: --help-config. Exit: 0 done, "
        "2 user error, 74 nothing written because every read was deferred (storage failing), 75 output busy, "
        "143 SIGTERM.",
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
    p.add_argument(
        "--plan",
        action="store_true",
        help="print what the run would do (cluster, paths, new and refused rows, changes since the "
        "output's last run) and exit without writing anything",
    )
    p.add_argument(
        "--reannotate",
        choices=["changed-model"],
        help="also re-annotate the current rows made by another model, adapter or prompt version "
        "than this run's; each is replaced in the commit that adds its new row",
    )
    p.add_argument(
        "--retry-errors",
        nargs="*",
        metavar="KIND",
        help="also re-annotate the current error rows (all, or those whose reason is a KIND such as "
        "outside_root, decode_error); each is replaced in the commit that adds its new row",
    )
    p.add_argument(
        "--verbose",
        action="store_true",
        help="show Ray Data's operator progress bars, execution plans and warnings (sets progress_bars)",
    )
    add_config_arguments(
        p,
        example_config="jobs/configs/annotate-*.yaml",
        example_overrides="engine.batch_size=16 stages.generate.resources.concurrency=8",
        job="annotate",
    )
    p.set_defaults(func=run)


def load_config(args: argparse.Namespace, *, against_model: bool = True):
    """The config from --config (a file or a shipped name), the flags and the overrides; with
    ``against_model``, resolved against the model's own record too (`resolve_model_input`)."""
    from vsd.annotate.config import AnnotateConfig
    from vsd.annotate.config import load_config as load_annotate_config

    cfg = config_from_args(AnnotateConfig, args, FLAGS, loader=load_annotate_config, job="annotate")
    if cfg is not None and against_model:
        resolve_model_input(cfg, args)
    return cfg


def resolve_model_input(cfg, args: argparse.Namespace) -> None:
    """Image size, visual prompt and token budgets from the model's record where the config is
    silent; a contradiction is one ConfigError line, before any cluster starts
    (`vsd.annotate.model_record`). Only the file and the overrides can set those keys (the flags
    set input, output, model and adapter)."""
    from vsd.annotate.model_record import resolve_against_model
    from vsd.named_configs import resolve_config

    resolve_against_model(cfg, resolve_config(args.config, "annotate"), args.overrides)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args, against_model=False)
    if cfg is None:  # --help-config
        return 0
    cfg.check_paths()  # fail before any cluster starts
    from vsd.annotate.redo import Request

    redo = Request(args.reannotate or "", None if args.retry_errors is None else tuple(args.retry_errors))
    redo.validate()
    if args.verbose:
        cfg.progress_bars = True
    if args.plan:
        from vsd.annotate.plan import print_plan

        print_plan(cfg, args.ray_address, redo)
        return 0
    from vsd.preflight import check_annotate

    check_annotate(
        cfg
    )  # every URI once, in seconds; also switches off a metadata lookup Ray workers would inherit
    resolve_model_input(cfg, args)  # after preflight: an unreachable model is its one line, fast

    from vsd.annotate.pipeline import format_counts, run_annotation
    from vsd.stop import install_after_ray_init

    install_after_ray_init()  # ray.init replaces the SIGTERM handler: put ours back after it

    result = run_annotation(cfg, ray_address=args.ray_address, redo=redo)
    print(f"run {result.run_id}: {result.output}/run_date={result.run_date}/")
    print(format_counts(result.counts))
    return exit_code(result.counts)


def exit_code(counts: dict) -> int:
    """0, or `EXIT_ALL_DEFERRED` with one line saying why when the run wrote nothing because every
    read it tried was deferred (an outage: exit 0 would let a nightly job look green for weeks)."""
    if counts.get("images", 0) == 0 and counts.get("deferred", 0) > 0:
        print(
            f"vsd: error: nothing written: all {counts['deferred']} image read(s) failed past their retries "
            f"(storage unavailable?); they are tried again next run (exit {EXIT_ALL_DEFERRED})",
            file=sys.stderr,
        )
        return EXIT_ALL_DEFERRED
    return 0
