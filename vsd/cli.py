"""`vsd` command line: one sub-command per job, each registered by the module that owns the job.

Sub-command modules import heavy libraries (torch, ray) inside their run functions, so
`vsd --help` and config errors stay instant and fail before any cluster starts.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from vsd.errors import VSDError

# (module, what it registers); each module has add_parser(subparsers) that calls set_defaults(func=...)
COMMAND_MODULES = [
    "vsd.corpus.commands",     # vsd corpus sync | info
    "vsd.data.commands",       # vsd data synth | build
    "vsd.train.commands",      # vsd train
    "vsd.model.commands",      # vsd export | vsd model tiny
    "vsd.annotate.commands",   # vsd annotate
    "vsd.evaluate.commands",   # vsd evaluate
    "vsd.demo",                # vsd demo
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vsd", description="LLaVA-VSD: data, training, annotation, evaluation")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # a job not built yet; the others still work
                continue
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except VSDError as exc:
        print(f"vsd: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vsd: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `vsd annotate --help-config | head`: the reader has all it wanted
        sys.stderr.close()
        return 0
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
