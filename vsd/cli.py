"""`vsd` command line: one sub-command per job, each registered by the module that owns the job.

Sub-command modules import heavy libraries (torch, ray) inside their run functions, so
`vsd --help` and config errors stay instant and fail before any cluster starts. What the user can
fix (`VSDError`, `ConfigError`) is one ``vsd: error:`` line, exit 2; anything else is a bug: one
``vsd: internal error:`` line, then the traceback to report, exit 1. SIGTERM (what Kubernetes
sends) is a clean stop: ``vsd: stopped by SIGTERM``, exit 143 (`vsd.stop`). Text from inputs in
these lines goes through `vsd.text.printable`, so it cannot drive the terminal.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from vsd.errors import VSDError

# (module, what it registers); each module has add_parser(subparsers) that calls set_defaults(func=...)
COMMAND_MODULES = [
    "vsd.corpus.commands",  # vsd corpus sync | info
    "vsd.data.commands",  # vsd data synth | build
    "vsd.train.commands",  # vsd train
    "vsd.model.commands",  # vsd export | vsd model tiny
    "vsd.annotate.commands",  # vsd annotate
    "vsd.evaluate.commands",  # vsd evaluate
    "vsd.demo.run",  # vsd demo
    "vsd.show.commands",  # vsd show
    "vsd.runs",  # vsd runs
    "vsd.annotate.output.delete",  # vsd delete
    "vsd.annotate.output.maintain",  # vsd maintain
    "vsd.ask.commands",  # vsd ask
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vsd", description="LLaVA-VSD: data, training, annotation, evaluation"
    )
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


def _call(func, args: argparse.Namespace):
    """``func(args)``, with a SIGTERM stop raised as itself even when Ray's code wrapped it."""
    from vsd.stop import stopped_by

    try:
        return func(args)
    except BaseException as exc:
        stopped = stopped_by(exc)
        if stopped is not None and stopped is not exc:
            raise stopped from None
        raise


def main(argv: list[str] | None = None) -> int:
    from vsd import stop

    parser = build_parser()
    args = parser.parse_args(argv)
    stop.install()  # again after any ray.init: see vsd.stop
    try:
        return _run(args)
    finally:
        stop.finishing()  # a SIGTERM from here on (Ray's atexit shutdown) only hurries the exit


def _run(args: argparse.Namespace) -> int:
    from vsd import stop
    from vsd.text import printable

    try:
        result = _call(args.func, args)
    except stop.Stopped:
        stop.clean_stop()
        print(stop.LINE, file=sys.stderr)
        stop.said()
        return stop.EXIT_SIGTERM
    except VSDError as exc:
        print(f"vsd: error: {printable(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("vsd: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `vsd annotate --help-config | head`: the reader has all it wanted
        sys.stderr.close()
        return 0
    except OSError as exc:  # storage or disk failing mid-run (beyond its retries): not a bug in vsd
        print(
            f"vsd: error: I/O failure: {type(exc).__name__}: {printable(' '.join(str(exc).split()), 400)} (fix it and "
            "run again: what was written stays, nothing is written twice)",
            file=sys.stderr,
        )
        return 1
    except Exception as exc:  # noqa: BLE001 - anything else is a bug: one line saying so, then the details
        print(internal_error_line(exc), file=sys.stderr)
        traceback.print_exc()
        return 1
    return int(result or 0)


def internal_error_line(exc: BaseException) -> str:
    """The line a user reads first when vsd itself failed: what, and that it is ours to fix (a
    bare traceback reads like the user's mistake and hides the message at its very end)."""
    from vsd.text import printable

    lines = str(exc).strip().splitlines()
    message = f": {printable(lines[0], 500)}" if lines else ""
    return f"vsd: internal error: {type(exc).__name__}{message} (a bug: please report it with the traceback below)"


if __name__ == "__main__":
    sys.exit(main())
