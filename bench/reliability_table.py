"""The reliability table: every fault and bad input tried, with rows in / out / duplicates / lost.

    python -m pytest tests/reliability tests/train/test_ray_train.py   # writes one JSON per case
    python bench/reliability_table.py [--dir .cache/reliability] [--run]

The cases record what the runs really wrote (``tests/fixtures/reliability.py: record_case``), in
``VSD_RELIABILITY_DIR`` (default ``.cache/reliability``); this script only renders them as the
Markdown table docs/reliability.md carries. ``--run`` runs the suite first (slow cases included). Exits
non-zero if any case lost or duplicated a row, or differs from the undisturbed run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ORDER = ["annotate", "annotate fault", "train fault", "bad input", "security"]


def load(folder: Path) -> list[dict]:
    cases = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    return sorted(
        cases, key=lambda c: (ORDER.index(c["group"]) if c["group"] in ORDER else len(ORDER), c["case"])
    )


def outcome(case: dict) -> str:
    outs = case.get("outcomes") or {}
    if case["group"] == "bad input" and len(outs) == 1:
        return next(iter(outs))
    return ", ".join(f"{k} {v}" for k, v in outs.items())


def render(cases: list[dict]) -> str:
    lines = [
        "| fault / bad input | group | rows in | rows out | duplicates | lost | same rows as undisturbed | outcome | note |",
        "|---|---|---:|---:|---:|---:|---|---|---|",
    ]
    for c in cases:
        same = {True: "yes", False: "**no**", None: "n/a"}[c.get("same_as_baseline")]
        name = (
            c["case"].removeprefix("input-").removeprefix("security-").replace("|", "\\|").replace("\n", " ")
        )
        note = (c.get("note") or "").replace("|", "\\|").replace("\n", " ")
        lines.append(
            f"| {name} | {c['group']} | {c['rows_in']} | {c['rows_out']} | {c['duplicates']} | "
            f"{c['lost']} | {same} | {outcome(c)} | {note} |"
        )
    return "\n".join(lines)


def failures(cases: list[dict]) -> list[str]:
    return [
        c["case"]
        for c in cases
        if c["duplicates"] or c["lost"] or c.get("unexpected") or c.get("same_as_baseline") is False
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--dir", default=os.environ.get("VSD_RELIABILITY_DIR") or str(REPO / ".cache" / "reliability")
    )
    ap.add_argument(
        "--run", action="store_true", help="run tests/reliability (all cases, slow included) first"
    )
    args = ap.parse_args(argv)
    folder = Path(args.dir)
    if args.run:
        for old in folder.glob("*.json"):
            old.unlink()  # only this run's cases in the table
        subprocess.run(
            [sys.executable, "-m", "pytest", "tests/reliability", "-q", "-p", "no:cacheprovider"],
            cwd=REPO,
            env={**os.environ, "VSD_RELIABILITY_DIR": str(folder)},
            check=False,
        )
    cases = load(folder) if folder.is_dir() else []
    if not cases:
        print(f"no case records in {folder}: run `python -m pytest tests/reliability` first", file=sys.stderr)
        return 2
    print(render(cases))
    bad = failures(cases)
    total_lost = sum(c["lost"] for c in cases)
    total_dup = sum(c["duplicates"] for c in cases)
    print(
        f"\n{len(cases)} cases: {total_lost} rows lost, {total_dup} duplicated; "
        f"{len(bad)} not as promised{': ' + '; '.join(bad) if bad else ''}"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
