"""Backfill memory: the peak RSS of a corpus sync over a manifest of N new rows, at N and 10 N.

    python bench/sync_memory.py                          # N = 1,000,000 and 10,000,000
    python bench/sync_memory.py --sizes 100000 1000000   # a quicker look

A first night of a large corpus is one sync of every row. Each size runs `vsd.corpus.sync` in
a fresh child process over a Parquet manifest (uri, size, mtime: what an S3 Inventory gives, so
no file is read) and reports the child's peak RSS and time; then a second sync of the same
manifest (nothing new: every row looked up in the key set). Ends with
``RATIO sync_memory <peak at the largest N / peak at the smallest> `` and the growth per row
between them, against the goals: peak <= 1 GiB at 10 M rows, growth <= 1 KiB a row.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

PEAK_GOAL = 1 << 30
PER_ROW_GOAL = 1024
ROW_GROUP = 1_000_000

CHILD = """
import resource, sys, time
from vsd.corpus import Corpus, sync
t = time.perf_counter()
report = sync(Corpus.open_or_create(sys.argv[1]), sys.argv[2], shard_rows=int(sys.argv[3]))
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, report.new)
"""


def write_manifest(path: str, n: int) -> None:
    """N rows of distinct URIs, written a row group at a time (this process stays small too)."""
    schema = pa.schema([("uri", pa.string()), ("size", pa.int64()), ("mtime", pa.string())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, n, ROW_GROUP):
            idx = pa.array(np.arange(start, min(n, start + ROW_GROUP)))
            names = pc.binary_join_element_wise(
                "s3://bucket/images/part-", pc.cast(idx, pa.string()), ".jpg", ""
            )
            sizes = pa.array(np.full(len(idx), 50_000, dtype=np.int64))
            writer.write_table(pa.table([names, sizes, pc.cast(idx, pa.string())], schema=schema))


def measure(workdir: str, n: int, shard_rows: int) -> dict:
    manifest = os.path.join(workdir, f"manifest-{n}.parquet")
    write_manifest(manifest, n)
    corpus = os.path.join(workdir, f"corpus-{n}")
    result = {"rows": n}
    for tag in ("first", "again"):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, corpus, manifest, str(shard_rows)],
            capture_output=True,
            text=True,
            check=True,
            cwd=workdir,  # `-c` puts the working folder first on sys.path: never a checkout's vsd
        )
        seconds, peak, new = out.stdout.split()[-3:]
        result[f"{tag}_s"], result[f"{tag}_peak"], result[f"{tag}_new"] = float(seconds), int(peak), int(new)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--shard-rows", type=int, default=200_000)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args(argv)
    print(_common.machine_note())
    rows = []
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="vsd-bench-sync-") as workdir:
        for n in sorted(args.sizes):
            started = time.time()
            r = measure(workdir, n, args.shard_rows)
            assert r["first_new"] == n and r["again_new"] == 0, r
            rows.append(r)
            print(f"  {n} rows: {time.time() - started:.0f} s, load {os.getloadavg()[0]:.1f}", flush=True)
    print(
        _common.table(
            [
                (
                    r["rows"],
                    f"{r['first_s']:.1f}",
                    _common.mib(r["first_peak"]),
                    f"{r['again_s']:.1f}",
                    _common.mib(r["again_peak"]),
                )
                for r in rows
            ],
            ("rows", "sync s", "peak", "resync s", "resync peak"),
        )
    )
    small, large = rows[0], rows[-1]
    per_row = (large["first_peak"] - small["first_peak"]) / max(1, large["rows"] - small["rows"])
    print(
        f"growth per row {per_row:.1f} B (goal <= {PER_ROW_GOAL} B); peak at {large['rows']}: "
        f"{_common.mib(large['first_peak'])} (goal <= {_common.mib(PEAK_GOAL)})"
    )
    print(
        _common.ratio_line(
            "sync_memory", large["first_peak"] / small["first_peak"], 10.0, higher_is_better=False
        )
    )
    ok = large["first_peak"] <= PEAK_GOAL and per_row <= PER_ROW_GOAL
    print(f"GOAL sync_memory {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
