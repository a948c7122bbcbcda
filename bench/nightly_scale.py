"""Nightly at corpus scale: what a night costs besides annotating its new images, at N and 10 N.

    python bench/nightly_scale.py                          # N = 100,000 and 1,000,000, 1 % new
    python bench/nightly_scale.py --sizes 20000 200000     # a quicker look

For each N the bench builds, with the project's own writers and no image bytes, an output that
has already annotated (1 - f) N images: a corpus of input shards (`vsd.corpus`), a completion
marker per shard, the output's id key set and totals (`vsd.annotate.index`). Then f N new images
arrive as real files listed in a manifest (what an ingestion job hands over), and the night runs
as a user runs it: ``vsd corpus sync --from new.jsonl --to CORPUS`` then ``vsd annotate --input
CORPUS`` in child processes, the annotate one sampled for memory (driver and every Ray process).

The cost of the night is everything except annotating the new images: the sync, the run's
planning (``plan_s``: two listings), its end (``finish_s``: markers, compaction, totals, card,
records) and what its read tasks pay to look the new images up in the id key set (measured on
the same key set in a child process: ``lookup_s`` and its peak RSS). Annotating the new images
(``pipeline_s``) grows with f N by definition and is shown but not counted.
Ends with ``RATIO nightly_scale <cost at the largest N / cost at the smallest> target 1.5`` and
the driver's peak RSS at the largest N (goal <= 1 GiB).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

TARGET = 1.5
DRIVER_GOAL = 1 << 30

LOOKUP = """
import resource, sys, time, numpy as np
from vsd.annotate.index import Output
from vsd.keyset import as_array
keys = [bytes(k) for k in np.load(sys.argv[2])]
t = time.perf_counter()
snap = Output(sys.argv[1]).ids().snapshot()
hits = snap.contains(keys)
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, sum(hits))
"""


def build_history(root: str, n_old: int, shard_rows: int) -> tuple[str, str]:
    """An output that has annotated ``n_old`` images of a corpus, written by the project's writers."""
    import numpy as np
    import pyarrow as pa

    from vsd.annotate.index import Output, image_key, listing_key
    from vsd.corpus import Corpus
    from vsd.corpus.shards import SHARD_SCHEMA, source_key
    from vsd.keyset import key_of

    corpus = Corpus.open_or_create(os.path.join(root, "corpus"))
    out = Output(os.path.join(root, "out"))
    writer = corpus.writer("history", shard_rows)
    chunk = 100_000
    corpus_keys, ids = [], []
    for start in range(0, n_old, chunk):
        uris = [f"{root}/images-old/{i:09d}.jpg" for i in range(start, min(n_old, start + chunk))]
        k = len(uris)
        writer.add(
            pa.table(
                [
                    pa.array([0] * k, pa.int64()),
                    pa.array(uris),
                    pa.array([1000] * k, pa.int64()),
                    pa.array(["1"] * k),
                    pa.nulls(k, pa.string()),
                    pa.nulls(k, SHARD_SCHEMA.field("pairs").type),
                ],
                schema=SHARD_SCHEMA,
            )
        )
        for u in uris:
            skey = source_key(u, 1000, "1")
            corpus_keys.append(key_of(skey))
            content = key_of("content:" + u).hex() * 2
            ids += [image_key(content, False), listing_key(skey)]
    shards = writer.close()
    corpus.keys().add(corpus_keys, generation="history")
    corpus.add_source("manifest", f"{root}/history.jsonl", [root])
    for shard in shards:
        out.write_marker(shard.name, {"shard": shard.uri, "rows": shard.rows, "run_id": "history"})
    out.ids().add(ids, generation="g-history")
    out.ids().compact()
    from vsd import storage

    storage.write_text(
        out.path("totals", "history.json"),
        json.dumps({"images": n_old, "rows": n_old, "ok": n_old, "relations": {"on": n_old}}) + "\n",
    )
    np.save(
        os.path.join(root, "lookup.npy"),
        np.frombuffer(
            b"".join(key_of(f"new-{i}") for i in range(max(1, n_old // 99))), dtype=np.uint8
        ).reshape(-1, 16),
    )
    return corpus.root, out.root


def child(cmd: list[str], sample: bool = False) -> tuple[float, str, _common.MemoryPeak | None]:
    env = dict(
        os.environ,
        RAY_AUTH_MODE="disabled",
        RAY_ADDRESS="local",
        PYTHONPATH=_common.REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=_common.REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    sampler = _common.TreeSampler(proc.pid, 5.0) if sample else None
    if sampler:
        sampler.__enter__()
    try:
        out, _ = proc.communicate(timeout=7200)
    finally:
        if sampler:
            sampler.__exit__(None, None, None)
    if proc.returncode != 0:
        sys.stderr.write(out[-4000:])
        raise RuntimeError(f"{' '.join(cmd[:4])} exited with {proc.returncode}")
    return time.perf_counter() - t0, out, sampler.peak if sampler else None


def night(n: int, fraction: float, shard_rows: int, workdir: str | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="vsd-bench-nightly-", dir=workdir) as root:
        n_new = max(1, round(n * fraction))
        t0 = time.perf_counter()
        corpus, out = build_history(root, n - n_new, shard_rows)
        built_s = time.perf_counter() - t0
        new = _common.write_corpus(os.path.join(root, "new"), n_new, (16, 16), seed=n)
        sync_s, sync_out, _ = child(
            [sys.executable, "-m", "vsd.cli", "corpus", "sync", "--from", new, "--to", corpus]
        )
        annotate = [
            sys.executable,
            "-m",
            "vsd.cli",
            "annotate",
            "--config",
            _common.TINY_CONFIG,
            "--input",
            corpus,
            "--output",
            out,
            "progress_bars=false",
            "tasks=[1]",
            "stages.refine.mode=off",
            "stages.preprocess.image_size=16",
            "engine.batch_size=16",
            "stages.write.resources.batch_size=512",
        ]
        wall_s, log, peak = child(annotate, sample=True)
        record = _common.latest_run_record(out)
        lookup = subprocess.run(
            [sys.executable, "-c", LOOKUP, out, os.path.join(root, "lookup.npy")],
            cwd=_common.REPO,
            env=dict(os.environ, PYTHONPATH=_common.REPO),
            capture_output=True,
            text=True,
            check=True,
        )
        lookup_s, lookup_rss, _ = lookup.stdout.split()
        t = record["timings"]
        finish_s = t["total_s"] - t["plan_s"] - t["pipeline_s"]
        if record["counts"]["images"] != n_new or record["counts"]["unaccounted"]:
            raise RuntimeError(
                f"the night wrote {record['counts']['images']} of {n_new} new images: {record['counts']}"
            )
        return {
            "n": n,
            "new": n_new,
            "shards": record["source"]["shards"],
            "built_s": built_s,
            "sync_s": sync_s,
            "plan_s": t["plan_s"],
            "finish_s": finish_s,
            "lookup_s": float(lookup_s),
            "lookup_rss": int(lookup_rss),
            "pipeline_s": t["pipeline_s"],
            "wall_s": wall_s,
            "driver_rss": peak.root_rss,
            "helper_rss": peak.helper_rss,
            "helper": peak.helper,
            "cost_s": sync_s + t["plan_s"] + finish_s + float(lookup_s),
        }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--new-fraction", type=float, default=0.01)
    ap.add_argument("--shard-rows", type=int, default=200_000)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args(argv)
    results = []
    for n in args.sizes:
        r = night(n, args.new_fraction, args.shard_rows, args.workdir)
        results.append(r)
        print(
            f"N={n}: {json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()})}",
            flush=True,
        )
    print()
    print(
        _common.table(
            [
                (
                    f"{r['n']:,}",
                    f"{r['new']:,}",
                    r["shards"],
                    f"{r['sync_s']:.1f}",
                    f"{r['plan_s']:.1f}",
                    f"{r['finish_s']:.1f}",
                    f"{r['lookup_s']:.2f}",
                    f"{r['cost_s']:.1f}",
                    f"{r['pipeline_s']:.1f}",
                    _common.mib(r["driver_rss"]),
                    _common.mib(r["helper_rss"]),
                    _common.mib(r["lookup_rss"]),
                )
                for r in results
            ],
            (
                "N",
                "new",
                "shards",
                "sync s",
                "plan s",
                "finish s",
                "lookup s",
                "COST s",
                "annotate s",
                "driver MiB",
                "max helper MiB",
                "lookup MiB",
            ),
        )
    )
    print(f"largest helper process: {results[-1]['helper']}; {_common.machine_note()}")
    big = results[-1]
    print(
        f"driver peak RSS at N={big['n']:,}: {_common.mib(big['driver_rss'])} MiB "
        f"({'within' if big['driver_rss'] <= DRIVER_GOAL else 'OVER'} the 1 GiB goal)"
    )
    print(
        _common.ratio_line(
            "nightly_scale", big["cost_s"] / results[0]["cost_s"], TARGET, higher_is_better=False
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
