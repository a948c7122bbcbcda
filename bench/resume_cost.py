"""Resume cost: rerunning a finished `vsd annotate` over an unchanged corpus vs the first run.

    python bench/resume_cost.py                   # 1,000 images, tiny-cpu config as shipped
    python bench/resume_cost.py --images 100

Both runs are ``python -m vsd.cli annotate`` in a child process into the SAME output, timed from
launch to exit (what a nightly job pays, Ray start-up included); ``pipeline_s`` from each run's
run record is shown too. The rerun must write nothing: the bench checks that the set of Parquet
parts and the number of rows are unchanged and that the rerun read no input shard (every shard has
its completion marker; else it exits non-zero). Start-up is a fixed cost, so the ratio falls as
the corpus grows; ``--images`` says what it was measured on.
Ends with ``RATIO resume_cost <rerun wall / first wall> target 0.1 PASS|FAIL``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

TARGET = 0.1


def snapshot(output: str) -> tuple[set[str], int]:
    from vsd.annotate.index import Output

    data = Output(output).data_parts()
    rows = _common.written_rows(output, ["row_id"])
    return set(data), (rows.num_rows if rows is not None else 0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=4, help="engine.batch_size (tiny-cpu config: 4)")
    ap.add_argument(
        "--max-new-tokens", type=int, default=16, help="engine.max_new_tokens (tiny-cpu config: 16)"
    )
    ap.add_argument("--source-size", type=int, default=64, help="side of the corpus JPEGs")
    ap.add_argument(
        "--workdir", default=None, help="parent of the temp dir (corpus + output, removed at the end)"
    )
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="vsd-bench-resume-", dir=args.workdir) as root:
        manifest = _common.announced_corpus(root, args.images, args.source_size)
        output = os.path.join(root, "out")
        overrides = _common.annotate_overrides(args.max_new_tokens, args.batch_size)
        first = _common.run_annotate(manifest, output, overrides)
        parts_1, rows_1 = snapshot(output)
        print(
            f"first run: {first.manifest['counts'].get('images', 0)} images, {rows_1} rows, {len(parts_1)} parts "
            f"in {first.wall_s:.1f}s",
            flush=True,
        )
        again = _common.run_annotate(manifest, output, overrides)
        parts_2, rows_2 = snapshot(output)
        counts = again.manifest["counts"]
        read = again.manifest["source"]["shards_read"]
        print(
            f"rerun: {counts.get('images', 0)} images written, {len(read)} shards read, {rows_2 - rows_1} new rows, "
            f"{len(parts_2 - parts_1)} new parts in {again.wall_s:.1f}s",
            flush=True,
        )

    problems = []
    if first.manifest["counts"].get("images", 0) != args.images:
        problems.append(
            f"first run wrote {first.manifest['counts'].get('images', 0)} of {args.images} images"
        )
    if parts_2 != parts_1 or rows_2 != rows_1 or counts.get("images", 0) != 0:
        problems.append(
            f"rerun wrote {counts.get('images', 0)} images, {rows_2 - rows_1} rows, "
            f"{len(parts_2 ^ parts_1)} part files changed"
        )
    if read:
        problems.append(f"rerun read {len(read)} shard(s) of an unchanged corpus")

    print()
    print(
        _common.table(
            [
                (
                    "first run",
                    f"{first.wall_s:.1f}",
                    f"{first.manifest['timings']['pipeline_s']:.1f}",
                    first.manifest["counts"].get("images", 0),
                ),
                (
                    "rerun (unchanged corpus)",
                    f"{again.wall_s:.1f}",
                    f"{again.manifest['timings']['pipeline_s']:.1f}",
                    counts.get("images", 0),
                ),
                (
                    "ratio rerun/first",
                    f"{again.wall_s / first.wall_s:.3f}",
                    f"{again.manifest['timings']['pipeline_s'] / first.manifest['timings']['pipeline_s']:.3f}",
                    "",
                ),
            ],
            ("run", "wall s", "pipeline_s", "images written"),
        )
    )
    print(
        f"{args.images} images, engine batch {args.batch_size}, {args.max_new_tokens} new tokens; rerun new rows: "
        f"{rows_2 - rows_1}; {_common.machine_note()}"
    )
    if problems:
        print("rerun NOT exactly-once: " + "; ".join(problems), file=sys.stderr)
        return 1
    print(_common.ratio_line("resume_cost", again.wall_s / first.wall_s, TARGET, higher_is_better=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
