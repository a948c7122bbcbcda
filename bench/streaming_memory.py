"""Streaming memory: peak memory of a whole `vsd annotate` run for a small vs a 10x larger corpus.

    python bench/streaming_memory.py                          # 2,000 vs 20,000 images
    python bench/streaming_memory.py --n-small 2000 --n-large 10000

Each run is ``python -m vsd.cli annotate`` (tiny model, real hf engine, 48 px JPEGs, one pair
each) in a child process with its own local Ray cluster; a thread here samples the child's
process tree (driver, GCS, raylet, every Ray worker) at ``--hz`` from ``/proc``:

* ``tree RSS``: Σ (RSS − shared memory) over the tree + the largest shared-memory RSS of any one
  process, i.e. Ray's object store counted once (the RATIO uses this);
* ``Σ RSS``: the naive sum (object-store pages counted in every process that maps them);
* ``Σ PSS``: proportional set size, shared pages split between their users;
* ``object store``: the largest shared-memory RSS of one process (≈ plasma pages in use).

Every figure is the maximum over time of the sum over the tree. ``max_new_tokens`` is small by
default: memory does not depend on answer length, and 20,000 images must fit a short run.
Ends with ``RATIO streaming_memory <peak(large) / peak(small)> target 1.2 PASS|FAIL``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

TARGET = 1.2


def measure(root: str, n: int, args) -> tuple[_common.AnnotateRun, float]:
    t0 = time.perf_counter()
    manifest = _common.write_corpus(
        os.path.join(root, f"corpus-{n}"), n, (args.source_size, args.source_size), seed=n
    )
    corpus_s = time.perf_counter() - t0
    overrides = _common.annotate_overrides(args.max_new_tokens, args.batch_size)
    run = _common.run_annotate(
        manifest, os.path.join(root, f"out-{n}"), overrides, sample_memory=True, hz=args.hz
    )
    written = run.manifest["counts"].get("images", 0)
    if written != n:
        raise SystemExit(f"lost images: {written} of {n} written")
    m = run.memory
    end = m.timeline[-1][0] if m.timeline else 0.0
    quarters = [
        max((v for t, v in m.timeline if q * end / 4 < t <= (q + 1) * end / 4), default=0) for q in range(4)
    ]
    print(
        f"{n} images: corpus {corpus_s:.1f}s, run {run.wall_s:.1f}s ({n / run.wall_s:.1f} images/s incl. start-up), "
        f"peak tree RSS {_common.mib(m.private)} MiB; per quarter of the run "
        f"{' / '.join(_common.mib(v) for v in quarters)} MiB; {m.processes} processes, {m.samples} samples",
        flush=True,
    )
    return run, corpus_s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-small", type=int, default=2000)
    ap.add_argument("--n-large", type=int, default=20000)
    ap.add_argument("--batch-size", type=int, default=8, help="engine.batch_size")
    ap.add_argument(
        "--max-new-tokens", type=int, default=4, help="engine.max_new_tokens (memory does not depend on it)"
    )
    ap.add_argument("--source-size", type=int, default=48, help="side of the corpus JPEGs")
    ap.add_argument("--hz", type=float, default=5.0, help="memory samples per second")
    ap.add_argument(
        "--workdir", default=None, help="parent of the temp dir (corpus + outputs, removed at the end)"
    )
    args = ap.parse_args(argv)

    runs = {}
    with tempfile.TemporaryDirectory(prefix="vsd-bench-mem-", dir=args.workdir) as root:
        print(f"{_common.machine_note()}", flush=True)
        for n in (args.n_small, args.n_large):
            runs[n], _ = measure(root, n, args)

    small, large = runs[args.n_small].memory, runs[args.n_large].memory
    rows = []
    for label, key in (
        ("tree RSS (object store once)", "private"),
        ("Σ RSS (naive)", "rss"),
        ("Σ PSS", "pss"),
        ("object store (shared memory)", "shm"),
    ):
        a, b = getattr(small, key), getattr(large, key)
        rows.append((label, _common.mib(a), _common.mib(b), f"{b / a:.3f}" if a > 2**20 else "n/a"))
    print()
    print(_common.table(rows, ("peak, MiB", f"{args.n_small} images", f"{args.n_large} images", "ratio")))
    print(
        f"engine batch {args.batch_size}, {args.max_new_tokens} new tokens, {args.source_size}px JPEGs, "
        f"sampled at {args.hz:g} Hz; {_common.machine_note()}"
    )
    print(
        _common.ratio_line("streaming_memory", large.private / small.private, TARGET, higher_is_better=False)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
