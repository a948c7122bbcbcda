"""Driver memory per new manifest row: how much the `vsd annotate` driver grows with a run's size.

    python bench/driver_memory.py                        # 2,000 vs 20,000 missing-file rows
    python bench/driver_memory.py --images               # also real 48 px JPEGs (slower: the model runs)
    python bench/driver_memory.py --trace                # + what the driver's Python heap holds
    python bench/driver_memory.py --blocks nightly       # the nightly config's block sizes, tiny model

A first night of 100M images must not need a 100 GB head node, so what the driver keeps per row
must stay small. Each run is ``python -m vsd.cli annotate`` (tiny CPU config) in a child process
with its own local Ray cluster, over a manifest whose every row points to a file that does not
exist: each becomes a ``missing_file`` error row, the cheapest way to push many rows through the
driver (sync, plan, the stream of part summaries, markers, compaction, card, records) without a
model's cost. A thread here reads the driver's ``VmHWM`` (the kernel's peak RSS of that one
process, not its Ray workers) from ``/proc`` at ``--hz``; the last reading before exit is its peak.

Per-row growth = (peak at the large N − peak at the small N) / (large − small). One line per
run (with the load average: the machine is shared), then
``RATIO driver_memory <bytes per row / 1024> target 1 PASS|FAIL`` (lower is better).

``--trace`` runs the driver under ``tracemalloc`` and prints, per run, the largest allocation
sites alive when the stream ends and when the run's record is written: what grows with N there is
what the driver holds per row (RSS also counts Arrow's and Ray's C++ memory, which it does not see).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

TARGET_BYTES = 1024  # per new manifest row
NIGHTLY_CONFIG = os.path.join(_common.REPO, "jobs", "configs", "annotate-nightly-llava15-13b-sglang.yaml")

# The child: `vsd.cli main` with the driver's RSS printed before and after each phase of the run
# (PHASE lines); under --trace also tracemalloc's heap and its largest sites at the end of the stream.
CHILD = """
import sys, tracemalloc
if int(sys.argv[1]):
    tracemalloc.start(int(sys.argv[1]))
import pyarrow as pa
from vsd.annotate import pipeline
from vsd.annotate.index import Output

def status(key):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) // 1024 for l in f if l.startswith(key + ":"))

def phase(label, snapshot=False):
    line = f"PHASE {label}: RSS {status('VmRSS')} MiB, peak {status('VmHWM')} MiB"
    if not tracemalloc.is_tracing():
        print(line, flush=True)
        return
    now, peak = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    print(
        f"{line}, Python heap {now / 2**20:.1f} MiB (peak since the last line {peak / 2**20:.1f}), "
        f"Arrow {pa.total_allocated_bytes() / 2**20:.1f} MiB",
        flush=True,
    )
    if not snapshot:
        return
    snap = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap*>")]
    )
    for s in snap.statistics("lineno")[: int(sys.argv[2])]:
        f = s.traceback[0]
        print(f"TRACE   {s.size / 2**10:9.0f} KiB {s.count:8d} blocks  {f.filename}:{f.lineno}", flush=True)

def wrap(owner, name, snapshot=False):
    fn = getattr(owner, name)
    def wrapped(*a, **k):
        phase(f"before {name}")
        out = fn(*a, **k)
        phase(f"after {name}", snapshot)
        return out
    setattr(owner, name, wrapped)

for name in ("plan_input", "mark_finished", "sweep", "finish"):
    wrap(pipeline, name)
wrap(pipeline, "_stream", snapshot=True)
for name in ("compact", "totals"):
    wrap(Output, name)
from vsd.cli import main
sys.exit(main(sys.argv[3:]))
"""


def missing_manifest(path: str, n: int) -> str:
    """``n`` rows, one pair each, every ``uri`` a file that does not exist (distinct per row)."""
    missing = os.path.join(os.path.dirname(path), "no-such-folder")
    pair = {"subject": "cup", "object": "table", "subject_box": [0.1, 0.1, 0.4, 0.4]}
    pair["object_box"] = [0.5, 0.5, 0.9, 0.9]
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"uri": f"{missing}/img-{i:08d}.jpg", "pairs": [pair]}) + "\n")
    return path


def _hwm(pid: int) -> int:
    """The process's peak RSS so far (``VmHWM``), in bytes; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, ValueError):
        pass
    return 0


def _sample(pid: int, peak: list[int], stop: threading.Event, hz: float) -> None:
    """Keep ``peak[0]`` at the child's latest ``VmHWM`` until ``stop``."""
    while not stop.is_set():
        peak[0] = max(peak[0], _hwm(pid))
        stop.wait(1.0 / hz)


def run_driver(manifest: str, output: str, args, trace: bool) -> tuple[int, float, str]:
    """(driver peak RSS in bytes, wall seconds, output) of one `vsd annotate` in a child process."""
    env = dict(
        os.environ,
        RAY_AUTH_MODE="disabled",
        RAY_ADDRESS="local",
        RAY_USAGE_STATS_ENABLED="0",
        PYTHONPATH=_common.REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    argv = ["annotate", "--config", _common.TINY_CONFIG, "--input", manifest, "--output", output]
    argv += _common.annotate_overrides(args.max_new_tokens, args.batch_size, block_overrides(args.blocks))
    head = ["-c", CHILD, str(args.frames if trace else 0), str(args.top)]
    for attempt in range(1 + _common.STARTUP_RETRIES):
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, *head, *argv],
            cwd=_common.REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        peak, stop = [0], threading.Event()
        sampler = threading.Thread(target=_sample, args=(proc.pid, peak, stop, args.hz), daemon=True)
        sampler.start()
        try:
            out, _ = proc.communicate(timeout=args.timeout_s)
        finally:
            stop.set()
            sampler.join()
            if proc.poll() is None:
                proc.kill()
        wall = time.perf_counter() - t0
        if proc.returncode == 0:
            return peak[0], wall, out
        if _common.RAY_STARTUP_TIMEOUT in out and attempt < _common.STARTUP_RETRIES:
            print("(Ray start-up timed out on the loaded machine; starting the run again)", flush=True)
            continue
        sys.stderr.write(out[-4000:])
        raise SystemExit(f"vsd annotate exited with {proc.returncode}")
    raise SystemExit("vsd annotate did not start")


def block_overrides(blocks: str) -> list[str]:
    """``tiny``: the tiny config's own block sizes (16-row reads, 32-row parts); ``nightly``: the
    images per call of every CPU stage as the nightly config sets them (64-row reads, 1,024-row
    parts), read from that YAML -- the blocks a production driver keeps track of, with the tiny
    model (whose 8 images a step x 4 steps a call make the nightly config's 32 a call)."""
    if blocks == "tiny":
        return []
    import yaml

    with open(NIGHTLY_CONFIG) as f:
        stages = yaml.safe_load(f)["stages"]
    return [
        f"stages.{name}.resources.batch_size={stages[name]['resources']['batch_size']}"
        for name in ("read", "preprocess", "verify", "refine", "write")
    ]


def measure(root: str, n: int, kind: str, args) -> int:
    """One run over ``n`` rows of ``kind`` (``missing`` or ``images``); prints its line."""
    if kind == "missing":
        manifest = missing_manifest(os.path.join(root, f"missing-{n}.jsonl"), n)
    else:
        manifest = _common.write_corpus(os.path.join(root, f"images-{n}"), n, (48, 48), seed=n)
    output = os.path.join(root, f"out-{kind}-{n}")
    peak, wall, out = run_driver(manifest, output, args, args.trace)
    counts = _common.latest_run_record(output)["counts"]
    expected = {"missing": counts.get("error", {}).get("missing_file", 0), "images": counts.get("images", 0)}
    if counts.get("images") != n or expected[kind] != n:
        raise SystemExit(f"{kind} {n}: the run's counts are not {n} rows: {counts}")
    if args.verbose or args.trace:
        print("\n".join(line for line in out.splitlines() if line.startswith(("PHASE", "TRACE"))))
    rss = dict(re.findall(r"^PHASE after (\w+): RSS (\d+) MiB", out, re.M))
    print(
        f"{kind} rows {n}: driver peak RSS {peak / 2**20:.1f} MiB (RSS after the sync {rss.get('plan_input')} MiB, "
        f"after the stream {rss.get('_stream')} MiB, at the end {rss.get('finish')} MiB), run {wall:.1f}s; "
        f"{_common.machine_note()}",
        flush=True,
    )
    return peak


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-small", type=int, default=2000)
    ap.add_argument("--n-large", type=int, default=20000)
    ap.add_argument("--images", action="store_true", help="also a manifest of real 48 px JPEGs")
    ap.add_argument("--trace", action="store_true", help="tracemalloc's largest sites in the driver")
    ap.add_argument("--verbose", action="store_true", help="the driver's RSS before and after each phase")
    ap.add_argument("--frames", type=int, default=1, help="traceback depth under --trace")
    ap.add_argument("--top", type=int, default=15, help="allocation sites shown under --trace")
    ap.add_argument(
        "--blocks",
        choices=("tiny", "nightly"),
        default="tiny",
        help="the CPU stages' images per call: the tiny config's, or the nightly config's (see block_overrides)",
    )
    ap.add_argument("--batch-size", type=int, default=8, help="engine.batch_size")
    ap.add_argument("--max-new-tokens", type=int, default=4, help="engine.max_new_tokens")
    ap.add_argument("--hz", type=float, default=20.0, help="peak-RSS readings per second")
    ap.add_argument("--timeout-s", type=float, default=3600)
    ap.add_argument("--workdir", default=None, help="parent of the temp dir (removed at the end)")
    args = ap.parse_args(argv)
    if args.n_large <= args.n_small:
        raise SystemExit("--n-large must be above --n-small")

    kinds = ["missing"] + (["images"] if args.images else [])
    growth = {}
    with tempfile.TemporaryDirectory(prefix="vsd-bench-driver-", dir=args.workdir) as root:
        for kind in kinds:
            small, large = (measure(root, n, kind, args) for n in (args.n_small, args.n_large))
            growth[kind] = (large - small) / (args.n_large - args.n_small)
            print(
                f"{kind}: driver growth {growth[kind]:.0f} B per new row "
                f"({args.n_small} -> {args.n_large} rows: {small / 2**20:.1f} -> {large / 2**20:.1f} MiB); "
                f"target {TARGET_BYTES} B",
                flush=True,
            )
    print(_common.ratio_line("driver_memory", growth["missing"] / TARGET_BYTES, 1.0, higher_is_better=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
