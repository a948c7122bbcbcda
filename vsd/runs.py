"""`vsd runs`: one line per run of an output (its run records), and thresholds a nightly job can
fail on.

The run records (``__vsd/runs/<run_id>.json``, written last by every `vsd annotate`) already hold a
night's counts and timings, so this reads a few small JSON files and never the data: it answers in
seconds on any output size, which is what a monitor or a CI gate after the nightly run needs.
"""

from __future__ import annotations

import argparse
import json
import operator
import re
import sys
from dataclasses import asdict, dataclass

from vsd import storage
from vsd.annotate.records import Records
from vsd.errors import VSDError

RUNS_DIR = ("__vsd", "runs")
EXIT_THRESHOLD = 3  # a --fail-if threshold crossed (2 stays the CLI's "usage or config error")

METRICS = {
    "images": "images written by the night",
    "rows": "rows written (one per image x pair)",
    "ok": "rows with status ok",
    "errors": "rows with status error",
    "error_share": "errors / rows (0 when no rows)",
    "repaired": "rows with a repaired:* flag (the larger per-task count when the record has no total)",
    "repaired_share": "repaired / rows",
    "inconsistent_share": "ok rows whose relation, descriptions and geometry disagree / ok rows",
    "deferred": "images whose read failed after retries (tried again next run)",
    "unaccounted": "planned images neither written nor skipped (should be 0)",
    "images_per_s": "images / pipeline seconds (undefined, never crossing, when the run wrote nothing)",
}
OPERATORS = {">=": operator.ge, "<=": operator.le, "==": operator.eq, ">": operator.gt, "<": operator.lt}
_EXPR = re.compile(r"^\s*([a-z_]+)\s*(>=|<=|==|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


def read_run_records(root: str) -> list[dict]:
    """Every run record of the output at ``root``, oldest first (by run date, then start time).
    The one place that knows where records live (`vsd.annotate.records`: loose and packed)."""
    folder = storage.join(root, *RUNS_DIR)
    try:
        records = list(Records(folder).items().values())
    except json.JSONDecodeError as exc:
        raise VSDError(f"run record under {folder} is not valid JSON: {exc}") from exc
    return sorted(
        records, key=lambda r: (r.get("run_date", ""), r.get("started_at", ""), r.get("run_id", ""))
    )


@dataclass
class Night:
    """One run record, reduced to what a person compares night to night."""

    run_date: str
    run_id: str
    started_at: str
    images: int
    rows: int
    ok: int
    errors: int
    error_share: float
    repaired: int
    repaired_share: float
    inconsistent_share: float
    deferred: int
    unaccounted: int
    images_per_s: float | None
    model: str
    errors_by_reason: dict
    flags: dict

    def metric(self, name: str) -> float | None:
        """The metric's value; None where it is undefined (the speed of a run that wrote nothing)."""
        value = getattr(self, name)
        return None if value is None else float(value)


def repaired_rows(flags: dict) -> int:
    """Rows with a repaired flag. The record counts rows per flag kind (``repaired:task2``,
    ``repaired:task3``); a row repaired in both tasks is in both, so without a ``repaired`` total
    the larger of the two is the honest lower bound (never double counting)."""
    if "repaired" in flags:
        return int(flags["repaired"])
    return max((int(n) for k, n in flags.items() if k.startswith("repaired:")), default=0)


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def night_of(record: dict) -> Night:
    counts = record.get("counts") or {}
    rows = int(counts.get("rows", 0))
    ok = int(counts.get("ok", 0))
    errors_by_reason = dict(counts.get("error") or {})
    errors = sum(int(n) for n in errors_by_reason.values())
    flags = dict(counts.get("flags") or {})
    repaired = repaired_rows(flags)
    return Night(
        run_date=str(record.get("run_date", "")),
        run_id=str(record.get("run_id", "")),
        started_at=str(record.get("started_at", "")),
        images=int(counts.get("images", 0)),
        rows=rows,
        ok=ok,
        errors=errors,
        error_share=_share(errors, rows),
        repaired=repaired,
        repaired_share=_share(repaired, rows),
        inconsistent_share=_share(int(counts.get("inconsistent", 0)), ok),
        deferred=int(counts.get("deferred", 0)),
        unaccounted=int(counts.get("unaccounted", 0)),
        images_per_s=(record.get("timings") or {}).get("images_per_s") if counts.get("images") else None,
        model=str(record.get("model") or ""),
        errors_by_reason=errors_by_reason,
        flags=flags,
    )


def nights(root: str) -> list[Night]:
    records = read_run_records(root)
    if not records:
        raise VSDError(
            f"no run records under {storage.join(root, *RUNS_DIR)}: is {root} an output of `vsd annotate`?"
        )
    return [night_of(r) for r in records]


def parse_threshold(expr: str) -> tuple[str, str, float]:
    match = _EXPR.match(expr)
    if not match:
        raise VSDError(f"--fail-if {expr!r}: expected METRIC OP NUMBER, e.g. 'error_share>0.05'")
    name, op, number = match.groups()
    if name not in METRICS:
        raise VSDError(f"--fail-if {expr!r}: unknown metric {name!r} (one of: {', '.join(METRICS)})")
    return name, op, float(number)


def crossed(night: Night, thresholds: list[tuple[str, str, float]]) -> list[str]:
    """One line per threshold the night crosses."""
    out = []
    for name, op, limit in thresholds:
        value = night.metric(name)
        if value is not None and OPERATORS[op](value, limit):
            out.append(
                f"vsd runs: threshold crossed: {name}={value:g} {op} {limit:g} "
                f"(run {night.run_id}, run_date {night.run_date})"
            )
    return out


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(items: list[Night]) -> str:
    header = (
        f"{'run_date':<10}  {'run_id':<28}  {'images':>6}  {'ok':>6}  {'error_share':>11}  "
        f"{'repaired_share':>14}  {'deferred':>8}  {'images/s':>8}  model"
    )
    lines = [header]
    for n in items:
        lines.append(
            f"{n.run_date:<10}  {n.run_id:<28}  {n.images:>6}  {n.ok:>6}  {_fmt(n.error_share):>11}  "
            f"{_fmt(n.repaired_share):>14}  {n.deferred:>8}  {_fmt(n.images_per_s, 2):>8}  {n.model}"
        )
    return "\n".join(lines)


def add_parser(subparsers) -> None:
    width = max(map(len, METRICS))
    metrics = "\n".join(f"  {k:<{width}}  {v}" for k, v in METRICS.items())
    p = subparsers.add_parser(
        "runs",
        help="one line per run of an output (images, ok, error and repaired share, speed); --fail-if gates",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Lists the run records of OUTPUT (local or s3://), oldest first, from the records\n"
        "alone (no data is read). --fail-if checks the latest run (the one a nightly job just made).",
        epilog=f"metrics for --fail-if:\n{metrics}\n\nexit status:\n  0  fine\n"
        f"  {EXIT_THRESHOLD}  a --fail-if threshold crossed (one line per crossed threshold on stderr)\n"
        "  2  a usage error: a bad expression, an unknown metric, an output without run records\n"
        "  1  storage unreachable",
    )
    p.add_argument("output", metavar="OUTPUT", help="output root of `vsd annotate` (path or s3://)")
    p.add_argument("--json", action="store_true", help="print the runs as a JSON list (one object per run)")
    p.add_argument("--last", type=int, metavar="N", help="print only the latest N runs (default: all)")
    p.add_argument(
        "--fail-if",
        action="append",
        default=[],
        metavar="EXPR",
        help="METRIC OP NUMBER with OP one of > >= < <= ==, e.g. 'error_share>0.05', checked on the "
        f"latest run; repeatable; exit {EXIT_THRESHOLD} when any holds",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    thresholds = [parse_threshold(e) for e in args.fail_if]  # a typo fails before any read
    if args.last is not None and args.last < 1:
        raise VSDError(f"--last {args.last}: must be at least 1")
    items = nights(args.output)
    listed = items[-args.last :] if args.last else items
    if args.json:
        print(json.dumps([asdict(n) for n in listed], indent=2))
    else:
        print(format_table(listed))
    lines = crossed(items[-1], thresholds)
    for line in lines:
        print(line, file=sys.stderr)
    return EXIT_THRESHOLD if lines else 0
