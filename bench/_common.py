"""Shared pieces of the CPU benchmarks: synthetic corpora, process-tree memory sampling, running
`vsd annotate` in a child process, reading a run's rows back, and the closing ``RATIO`` line.

Every bench imports this module by path (``bench/`` is not a package), so it also puts the repo
root on ``sys.path``: ``python bench/<name>.py`` works from a fresh checkout without installing.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

TINY_CONFIG = os.path.join(REPO, "jobs", "configs", "annotate-tiny-cpu.yaml")

# Language-model shapes of LLaVA-1.5 (Vicuna / Llama-2) for the GPU benches' random-weight models.
LLAVA_TEXT_SHAPES = {
    "7b": dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, intermediate_size=11008),
    "13b": dict(hidden_size=5120, num_hidden_layers=40, num_attention_heads=40, intermediate_size=13824),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128),
}


# ----------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------


def ratio_line(name: str, value: float, target: float, higher_is_better: bool = True) -> str:
    """``RATIO <name> <value> target <target> PASS|FAIL``: the one line every bench ends with."""
    ok = value >= target if higher_is_better else value <= target
    return f"RATIO {name} {value:.3f} target {target:g} {'PASS' if ok else 'FAIL'}"


def table(rows: list[tuple], header: tuple) -> str:
    """A small fixed-width table (numbers formatted by the caller)."""
    cells = [tuple(str(c) for c in header)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def machine_note() -> str:
    """CPU count and load: the machine is shared, so every table says how busy it was."""
    load = os.getloadavg()
    return f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"


# ----------------------------------------------------------------------------------------------
# Corpora
# ----------------------------------------------------------------------------------------------


def synthetic_jpeg(rng, width: int, height: int, quality: int = 90) -> bytes:
    """A photo-like JPEG (smooth colour fields + grain), distinct per ``rng`` draw: pure noise would
    make JPEG decode/encode unrealistically slow and the files unrealistically large."""
    import numpy as np
    from PIL import Image

    coarse = rng.integers(0, 256, (max(2, height // 16), max(2, width // 16), 3), dtype=np.uint8)
    im = Image.fromarray(coarse, "RGB").resize((width, height), Image.BILINEAR)
    arr = np.asarray(im, dtype=np.int16) + rng.integers(-12, 13, (height, width, 3), dtype=np.int16)
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def announced_corpus(root: str, n: int, size: int) -> str:
    """``write_corpus`` under ``root/corpus`` with a line saying what was made, how fast, on what."""
    t0 = time.perf_counter()
    manifest = write_corpus(os.path.join(root, "corpus"), n, (size, size))
    print(f"corpus: {n} JPEGs {size}px in {time.perf_counter() - t0:.1f}s; {machine_note()}", flush=True)
    return manifest


def jpeg_corpus(n: int, size: int, seed: int = 0) -> list[bytes]:
    """``n`` distinct square JPEGs of ``size`` px (seeded), for engine benchmarks."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return [synthetic_jpeg(rng, size, size) for _ in range(n)]


def random_pair(rng) -> dict:
    """One object pair with valid normalised boxes (subject left/top of object, as often as not)."""

    def box():
        x0, y0 = rng.uniform(0.0, 0.6, 2)
        w, h = rng.uniform(0.1, 0.4, 2)
        return [float(x0), float(y0), float(min(1.0, x0 + w)), float(min(1.0, y0 + h))]

    names = ["cup", "table", "dog", "chair", "lamp", "bed", "car", "tree", "book", "shelf", "cat"]
    s, o = rng.choice(len(names), 2, replace=False)
    return {"subject": names[s], "object": names[o], "subject_box": box(), "object_box": box()}


def write_corpus(root: str, n: int, size: tuple[int, int] = (48, 48), seed: int = 0, pairs: int = 1) -> str:
    """``n`` distinct JPEGs under ``root/images`` and ``root/manifest.jsonl`` (``pairs`` pairs each).

    Returns the manifest path. Tiny images (48 px) make a 20,000-image corpus in seconds."""
    import numpy as np

    rng = np.random.default_rng(seed)
    images = os.path.join(root, "images")
    os.makedirs(images, exist_ok=True)
    lines = []
    for i in range(n):
        path = os.path.join(images, f"img-{seed}-{i:06d}.jpg")
        with open(path, "wb") as f:
            f.write(synthetic_jpeg(rng, *size))
        lines.append(json.dumps({"image": path, "pairs": [random_pair(rng) for _ in range(pairs)]}))
    manifest = os.path.join(root, "manifest.jsonl")
    with open(manifest, "w") as f:
        f.write("\n".join(lines) + "\n")
    return manifest


def prepared_item(row: dict, image_id: str, preprocess) -> dict:
    """One manifest row (image path, pairs) read and preprocessed as the read and preprocess
    stages would: what the benches' bare loops hand the engine."""
    from vsd.annotate.items import new_item, new_pair
    from vsd.annotate.stages.preprocess import prepare

    pairs = [
        new_pair(j, p["subject"], p["object"], p["subject_box"], p["object_box"])
        for j, p in enumerate(row["pairs"])
    ]
    item = new_item(row["image"], image_id=image_id, pairs=pairs)
    with open(row["image"], "rb") as f:
        item["data"] = f.read()
    return prepare(item, preprocess)


def read_manifest(manifest: str) -> list[dict]:
    with open(manifest) as f:
        return [json.loads(line) for line in f if line.strip()]


# ----------------------------------------------------------------------------------------------
# Memory of a process tree
# ----------------------------------------------------------------------------------------------


def _proc_memory(pid: int) -> tuple[int, int, int] | None:
    """(RSS, PSS, shared-memory RSS) in bytes from ``/proc/<pid>/smaps_rollup`` (cheap: the kernel
    sums it; full ``smaps`` of a torch process is thousands of lines)."""
    values = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("Rss", "Pss"):
                    values[key] = int(rest.split()[0]) * 1024
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssShmem:"):
                    values["Shmem"] = int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
        return None
    return values.get("Rss", 0), values.get("Pss", 0), values.get("Shmem", 0)


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:80]
    except OSError:
        return "?"


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (Ray's GCS, raylet and workers are all children of the
    driver when it starts the local cluster), from ``/proc/<pid>/task/*/children``."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return out


@dataclass
class MemoryPeak:
    """Peaks over the run, each the maximum over time of a sum over the process tree.

    ``rss``: Σ RSS (shared pages counted once per process, the naive figure); ``private``: Σ (RSS −
    shared memory) + the largest shared-memory RSS (Ray's object store counted once); ``pss``: Σ PSS;
    ``shm``: the largest shared-memory RSS of any one process (≈ the object store in use)."""

    rss: int = 0
    private: int = 0
    pss: int = 0
    shm: int = 0
    processes: int = 0
    samples: int = 0
    timeline: list[tuple[float, int]] = field(default_factory=list)  # (seconds, private) per sample
    root_rss: int = 0  # the process the sampler was started on (the driver)
    helper_rss: int = 0  # the largest RSS any other single process reached
    helper: str = ""  # which process that was (its command line, shortened)


class TreeSampler:
    """Samples the memory of a process tree at ``hz`` in a thread; use as a context manager."""

    def __init__(self, pid: int, hz: float = 5.0):
        self.pid, self.period = pid, 1.0 / hz
        self.peak = MemoryPeak()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._t0 = time.monotonic()

    def sample(self) -> None:
        rss = pss = shm_sum = shm_max = 0
        pids = _descendants(self.pid)
        for pid in pids:
            mem = _proc_memory(pid)
            if mem is None:
                continue
            if pid == self.pid:
                self.peak.root_rss = max(self.peak.root_rss, mem[0])
            elif mem[0] > self.peak.helper_rss:
                self.peak.helper_rss, self.peak.helper = mem[0], _cmdline(pid)
            rss += mem[0]
            pss += mem[1]
            shm_sum += mem[2]
            shm_max = max(shm_max, mem[2])
        private = rss - shm_sum + shm_max
        p = self.peak
        p.rss, p.pss, p.shm = max(p.rss, rss), max(p.pss, pss), max(p.shm, shm_max)
        p.private = max(p.private, private)
        p.processes = max(p.processes, len(pids))
        p.samples += 1
        p.timeline.append((round(time.monotonic() - self._t0, 2), private))

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.period)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def mib(n: int) -> str:
    return f"{n / 2**20:.0f}"


# ----------------------------------------------------------------------------------------------
# Running `vsd annotate`
# ----------------------------------------------------------------------------------------------

# Ray gives its raylet a fixed 30 s to register (ray/_private/node.py); on a 2-core machine
# shared with other jobs that can pass before anything of ours ran. Such a run is started again.
RAY_STARTUP_TIMEOUT = "timed out during startup"
STARTUP_RETRIES = 2


@dataclass
class AnnotateRun:
    wall_s: float
    returncode: int
    stdout: str
    manifest: dict
    memory: MemoryPeak | None = None


def annotate_overrides(
    max_new_tokens: int, batch_size: int, extra: list[str] | tuple[str, ...] = ()
) -> list[str]:
    """The dotted overrides every bench uses on top of ``annotate-tiny-cpu.yaml``."""
    return [
        "progress_bars=false",
        "run_date=2026-01-01",
        f"engine.max_new_tokens={max_new_tokens}",
        f"engine.batch_size={batch_size}",
        *extra,
    ]


def run_annotate(
    manifest: str,
    output: str,
    overrides: list[str],
    *,
    sample_memory: bool = False,
    hz: float = 5.0,
    timeout_s: float = 3600,
) -> AnnotateRun:
    """`vsd annotate` in a child process, as a user runs it (its own local Ray cluster, stopped when
    it exits); wall time from launch to exit, and the run's record (``__vsd/runs/<run_id>.json``)."""
    # RAY_ADDRESS=local: a fresh cluster owned by the child even if another `ray start` cluster runs
    # on this machine (ray.init() would join it), so the process tree holds the whole run.
    env = dict(
        os.environ,
        RAY_AUTH_MODE="disabled",
        RAY_ADDRESS="local",
        PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    env.setdefault("RAY_DEDUP_LOGS", "0")
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    cmd = [
        sys.executable,
        "-m",
        "vsd.cli",
        "annotate",
        "--config",
        TINY_CONFIG,
        "--input",
        manifest,
        "--output",
        output,
        *overrides,
    ]
    for attempt in range(1 + STARTUP_RETRIES):
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        sampler = TreeSampler(proc.pid, hz) if sample_memory else None
        if sampler:
            sampler.__enter__()
        try:
            out, _ = proc.communicate(timeout=timeout_s)
        finally:
            if sampler:
                sampler.__exit__(None, None, None)
            if proc.poll() is None:
                proc.kill()
        wall = time.perf_counter() - t0
        if proc.returncode == 0:
            break
        if RAY_STARTUP_TIMEOUT in out and attempt < STARTUP_RETRIES:
            print(
                f"(Ray start-up timed out on the loaded machine after {wall:.0f}s; starting the run again)",
                flush=True,
            )
            continue
        sys.stderr.write(out[-4000:])
        raise RuntimeError(f"vsd annotate exited with {proc.returncode}")
    run_manifest = latest_run_record(output)
    return AnnotateRun(wall, proc.returncode, out, run_manifest, sampler.peak if sampler else None)


def latest_run_record(output: str) -> dict:
    """The record of the run that finished last in ``output``."""
    from vsd.annotate.index import Output

    out = Output(output)
    records = [out.run_record(r) for r in out.runs()]
    return max(records, key=lambda r: r["finished_at"])


def written_rows(output: str, columns: list[str] | None = None):
    """Every annotation row below ``output`` as one Arrow table."""
    import pyarrow.dataset as pads

    from vsd.annotate.index import Output

    data = Output(output).data_parts()
    if not data:
        return None
    return pads.dataset(sorted(data.values()), format="parquet").to_table(columns=columns)


def steady_rate(output: str, skip_fraction: float = 0.1) -> tuple[float, float] | None:
    """(images/s between the part that completes ``skip_fraction`` of the images and the last part,
    seconds from the first to the last part) from the ``annotated_at`` stamp of each written part:
    the pipeline's steady state, model loading and Ray start-up excluded."""
    rows = written_rows(output, ["image_id", "annotated_at"])
    if rows is None:
        return None
    per_part: dict = {}
    for image_id, at in zip(rows.column("image_id").to_pylist(), rows.column("annotated_at").to_pylist()):
        per_part.setdefault(at, set()).add(image_id)
    stamps = sorted(per_part)
    if len(stamps) < 3:
        return None
    counts = [len(per_part[s]) for s in stamps]
    total = sum(counts)
    done, start = 0, 0
    for i, c in enumerate(counts):
        done += c
        if done >= skip_fraction * total:
            start = i
            break
    start = min(start, len(stamps) - 2)
    images = sum(counts[start + 1 :])
    seconds = (stamps[-1] - stamps[start]).total_seconds()
    return (images / seconds if seconds > 0 else float("nan")), (stamps[-1] - stamps[0]).total_seconds()
