"""Nightly at corpus scale: what a night costs besides annotating its new images, at N and 10 N.

    python bench/nightly_scale.py                          # N = 100,000 and 1,000,000, 1 % new
    python bench/nightly_scale.py --sizes 20000 200000     # a quicker look
    python bench/nightly_scale.py --sizes 100000 --nights 60   # a year in small: night N vs night 1

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

With ``--nights K`` (one N) the same output lives K nights, f N new images each: per night the
cost, the bookkeeping objects (corpus key set and shards, ``__vsd/``, the table's ``_delta_log/``)
and the bookkeeping bytes written per byte of new data. Every ``--maintain-every`` nights (7: the
weekly ``maintain.every_days``) ``vsd maintain --keep-days 0`` runs, as a team's maintenance with
a kept window would: nights here are minutes apart, so keeping 0 days keeps what the nights since
the last maintenance wrote (30 kept days in real time keep 30 nights). Prints the
objects after night K / after night 1 (target 3; also ours alone) and the cost of night K / night
1, raw, then ends with ``RATIO nightly_scale <median cost of the last nights / of nights 2..>
target 1.2``, each night's cost divided by a probe run right after it (``vsd corpus sync`` of the
same f N rows into a corpus that has them: the same process start and per-row work every night,
so what the machine's speed does to the nights divides out).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

TARGET = 1.5
NIGHTS_TARGET = 1.2
OBJECTS_TARGET = 3.0
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
    writer = corpus.writer("20000101T000000000000-history", shard_rows)  # sorts before any sync's
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
        return {"built_s": built_s, **one_night(root, corpus, out, n, n_new, seed=n, tag="new")}


def bookkeeping(root: str, since: float) -> tuple[dict[str, int], int]:
    """({kind: objects}, bytes written since ``since``) of the bookkeeping: everything but the data
    parts and the new images. Kinds: ``ours`` (key sets, listings, ``__vsd/`` records), ``shards``
    (the corpus's input shards: a night's new rows, merged a few per level by the syncs) and
    ``delta_log`` (the table's commits and checkpoints: what `vsd maintain` keeps)."""
    objects = {"ours": 0, "shards": 0, "delta_log": 0}
    written = 0
    for top in ("corpus", "out"):
        for folder, _, files in os.walk(os.path.join(root, top)):
            rel = os.path.relpath(folder, os.path.join(root, top))
            if top == "out" and rel.startswith("run_date="):
                continue  # the data itself
            kind = "delta_log" if rel.startswith("_delta_log") else "shards" if rel == "shards" else "ours"
            for name in files:
                st = os.stat(os.path.join(folder, name))
                objects[kind] += 1
                written += st.st_size if st.st_mtime >= since else 0
    return objects, written


def data_bytes(out: str, since: float) -> int:
    total = 0
    for folder, _, files in os.walk(out):
        if os.path.basename(folder).startswith("run_date="):
            total += sum(
                os.stat(p).st_size
                for p in (os.path.join(folder, f) for f in files)
                if os.stat(p).st_mtime >= since
            )
    return total


def one_night(root: str, corpus: str, out: str, n: int, n_new: int, seed: int, tag: str) -> dict:
    """f N new images arrive, then ``vsd corpus sync`` + ``vsd annotate`` as a user runs them."""
    new = _common.write_corpus(os.path.join(root, tag), n_new, (16, 16), seed=seed)
    started = time.time()
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
    objects, written = bookkeeping(root, started)
    return {
        "n": n,
        "new": n_new,
        "shards": record["source"]["shards"],
        "objects": sum(objects.values()),
        "ours": objects["ours"],
        "by_kind": objects,
        "bookkeeping_per_data_byte": written / max(1, data_bytes(out, started)),
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
    ap.add_argument("--nights", type=int, default=1, help="K > 1: one N lives K nights (see the doc)")
    ap.add_argument(
        "--maintain-every",
        type=int,
        default=7,
        help="with --nights: `vsd maintain --keep-days 0` after every this many nights (0: never)",
    )
    args = ap.parse_args(argv)
    if args.nights > 1:
        return nights(
            args.sizes[0], args.nights, args.new_fraction, args.shard_rows, args.workdir, args.maintain_every
        )
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


def nights(n: int, k: int, fraction: float, shard_rows: int, workdir: str | None, maintain_every: int) -> int:
    """One output, ``k`` nights: the cost and the bookkeeping of night k against night 1."""
    with tempfile.TemporaryDirectory(prefix="vsd-bench-nights-", dir=workdir) as root:
        n_new = max(1, round(n * fraction))
        corpus, out = build_history(root, n - n_new * k, shard_rows)
        probe = [sys.executable, "-m", "vsd.cli", "corpus", "sync", "--to", os.path.join(root, "probe")]
        probe += ["--from", _common.write_corpus(os.path.join(root, "probe-images"), n_new, (16, 16), seed=1)]
        child(probe)  # the probe corpus holds its n_new rows from now on: each probe finds nothing new
        rows = []
        for i in range(1, k + 1):
            r = one_night(root, corpus, out, n, n_new, seed=n + i, tag=f"new-{i:04d}")
            r["probe_s"] = child(probe)[0]
            if maintain_every and i % maintain_every == 0:
                # the weekly maintenance (`maintain.every_days`) with its kept window: nights here are
                # minutes apart, so --keep-days 0 keeps what the nights since the last one wrote
                r["maintain_s"] = child(
                    [sys.executable, "-m", "vsd.cli", "maintain", out, "--keep-days", "0"]
                )[0]
                r["by_kind"], _ = bookkeeping(root, time.time())
                r["objects"], r["ours"] = sum(r["by_kind"].values()), r["by_kind"]["ours"]
            rows.append(r)
            print(
                f"night {i}: cost {r['cost_s']:.2f} s (sync {r['sync_s']:.2f}, plan {r['plan_s']:.2f}, "
                f"finish {r['finish_s']:.2f}, lookup {r['lookup_s']:.2f}), {r['objects']} bookkeeping "
                f"objects ({', '.join(f'{k} {v}' for k, v in r['by_kind'].items())}), {r['bookkeeping_per_data_byte']:.2f} bookkeeping bytes per new data byte"
                + (f"; maintained in {r['maintain_s']:.1f} s" if "maintain_s" in r else ""),
                flush=True,
            )
    first, last = rows[0], rows[-1]
    window = max(1, min(10, k // 3))
    early = statistics.median(r["cost_s"] for r in rows[1 : 1 + window] or rows[:1])
    late = statistics.median(r["cost_s"] for r in rows[-window:])
    early_n = statistics.median(r["cost_s"] / r["probe_s"] for r in rows[1 : 1 + window] or rows[:1])
    late_n = statistics.median(r["cost_s"] / r["probe_s"] for r in rows[-window:])
    probes = [
        round(statistics.median(r["probe_s"] for r in rows[j : j + window]), 2) for j in range(0, k, window)
    ]
    print(f"N={n:,}, {n_new:,} new a night, {k} nights; {_common.machine_note()}")
    print(
        f"night 1 cost {first['cost_s']:.2f} s, night {k} {last['cost_s']:.2f} s; median of nights "
        f"2-{1 + window} {early:.2f} s, of the last {window} {late:.2f} s; maintenance every "
        f"{maintain_every or 'no'} night(s), median "
        f"{statistics.median([r['maintain_s'] for r in rows if 'maintain_s' in r] or [0]):.1f} s"
    )
    print(f"probe (the same sync finding nothing new), median by {window} nights: {probes} s")
    for name, value, target in (
        ("night K / night 1", last["cost_s"] / first["cost_s"], NIGHTS_TARGET),
        (f"median of the last {window} nights / of nights 2-{1 + window}, raw", late / early, NIGHTS_TARGET),
        (
            "bookkeeping objects after night K / after night 1",
            last["objects"] / first["objects"],
            OBJECTS_TARGET,
        ),
        ("ours alone (no input shards, no Delta log)", last["ours"] / first["ours"], OBJECTS_TARGET),
    ):
        print(f"{name}: {value:.3f} (target {target:g}: {'PASS' if value <= target else 'FAIL'})")
    # the headline: the cost, each night divided by its probe (the machine's speed divided out)
    print(_common.ratio_line("nightly_scale", late_n / early_n, NIGHTS_TARGET, higher_is_better=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
