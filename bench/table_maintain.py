"""Table maintenance: what `vsd maintain` does to a year-old output's reads and its storage.

    python bench/table_maintain.py                       # 120 nights x 8 parts x 250 rows
    python bench/table_maintain.py --nights 365 --parts 8

Builds an output table the way nights build it -- each night commits ``--parts`` data files in
one commit (the write stage's parts), and every ``--churn``-th night a changed source supersedes
rows of an earlier night's part (a rewrite, as a delete or prune does) -- then times
``vsd.read(root)`` (median of 3) and counts the data files on storage, before and after
`vsd.annotate.output.maintain.maintain` (compact, vacuum with ``--keep-days 0``, checkpoint).
Rows are synthetic (no model): what is measured is the table, not annotation.

RATIO = read time after / before (target ≤ 0.5: a reader opens few large files instead of
hundreds of small ones); the rows read must be identical, and the files holding superseded rows
must be gone from storage.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

TARGET = 0.5


def night_part(root: str, night: int, part: int, rows: int, day: str):
    """One part of ``rows`` rows (source URIs unique per night and part), written like the write stage's."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vsd.annotate.output import table

    name = f"part-n{night:04d}p{part:02d}.parquet"
    p = table.Part(day, name, rows)
    data = pa.Table.from_pylist(
        [
            {
                "row_id": f"n{night}p{part}r{r}-p0",
                "image_id": f"n{night}p{part}r{r}",
                "status": "ok",
                "source_uri": f"/corpus/n{night}/p{part}/{r}.jpg",
                "run_id": f"night-{night}",
                "relation": "behind",
                "description": "the red cup is behind the green table",
            }
            for r in range(rows)
        ],
        schema=table.FILE_SCHEMA,
    )
    os.makedirs(os.path.join(root, f"run_date={day}"), exist_ok=True)
    pq.write_table(data, os.path.join(root, p.path), compression="zstd")
    return p


def data_files(root: str) -> int:
    return sum(
        1
        for folder, _, names in os.walk(root)
        if os.path.basename(folder).startswith("run_date=")
        for n in names
        if n.endswith(".parquet")
    )


def timed_read(root: str) -> tuple[float, list]:
    import vsd

    times, rows = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        got = vsd.read(root, columns=["row_id", "source_uri"])
        times.append(time.perf_counter() - t0)
        rows = sorted(got.column("row_id").to_pylist())
    return statistics.median(times), rows


def main(argv: list[str] | None = None) -> int:
    import datetime as dt

    from vsd.annotate.output import table
    from vsd.annotate.output.maintain import maintain

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nights", type=int, default=120)
    ap.add_argument("--parts", type=int, default=8, help="data files a night commits")
    ap.add_argument("--rows", type=int, default=250, help="rows per part")
    ap.add_argument(
        "--churn", type=int, default=5, help="every N-th night supersedes a row of an earlier night"
    )
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args(argv)

    print(_common.machine_note(), flush=True)
    with tempfile.TemporaryDirectory(prefix="vsd-bench-maintain-", dir=args.workdir) as tmp:
        root = os.path.join(tmp, "out")
        t0 = time.perf_counter()
        day0 = dt.date(2026, 1, 1)
        for night in range(args.nights):
            day = (day0 + dt.timedelta(days=night)).isoformat()
            parts = [night_part(root, night, p, args.rows, day) for p in range(args.parts)]
            fresh = {}
            if night and night % args.churn == 0:  # a changed source: its old row leaves the current table
                fresh = {f"/corpus/n{night - 1}/p0/0.jpg": {"new-version"}}
            table.commit_parts(root, parts, {"run_id": f"night-{night}", "run_date": day}, fresh=fresh)
        build_s = time.perf_counter() - t0
        files_before = data_files(root)
        read_before, rows_before = timed_read(root)
        t0 = time.perf_counter()
        done = maintain(root, keep_days=0)
        maintain_s = time.perf_counter() - t0
        files_after = data_files(root)
        read_after, rows_after = timed_read(root)
    assert rows_after == rows_before, "maintenance changed the current rows"
    print(
        f"{args.nights} nights x {args.parts} parts x {args.rows} rows built in {build_s:.1f}s; "
        f"{len(rows_before)} current rows; maintain {maintain_s:.1f}s "
        f"({done.compacted_away} files compacted, {done.vacuumed} vacuumed)"
    )
    print(
        _common.table(
            [
                ("before maintain", files_before, done.files_before, f"{read_before:.3f}"),
                ("after maintain", files_after, done.files_after, f"{read_after:.3f}"),
            ],
            ("table", "data files on storage", "current files", "vsd.read s (median of 3)"),
        )
    )
    print(_common.ratio_line("table_maintain", read_after / read_before, TARGET, higher_is_better=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
