"""SGLang efficiency: `vsd annotate` with the sglang engine vs SGLang's ``Engine.generate`` alone.

    .venv-sglang/bin/python bench/sglang_efficiency.py               # 48 images x 3 pairs, tiny model
    .venv-sglang/bin/python bench/sglang_efficiency.py --images 96

Run with the SGLang tier's venv (``make test-sglang`` builds .venv-sglang). Both sides get the same
JPEG corpus (3 object pairs per image, 3 tasks per pair, visual prompts off so one image carries
its 9 prompts), the same tiny export (``tiny:llava-sglang``, bf16, CPU), the same engine batch size
and ``max_new_tokens``:

* **pipeline**: the annotate pipeline (``run_annotation``: its own local Ray cluster; read ▸
  preprocess ▸ generate ▸ verify ▸ write to Parquet) with jobs/configs/annotate-tiny-sglang-cpu.yaml,
  in a child process; its engine is the real ``SGLangEngine``, wrapped only to append each batch's
  cache figures to a file (``vsd annotate`` itself has no way to hand them back);
* **bare**: a child process that starts ``sglang.Engine`` with the same arguments, builds every
  request the pipeline would send (same prompts, images, sampling parameters, batches) before the
  clock starts, then calls ``Engine.generate`` once per batch in a plain loop: no Ray, no Parquet,
  no reading or preprocessing in the timed part. It primes each image as the engine does
  (``SGLangEngine._prime``: one zero-token prefill before the batch), so both sides send the same
  requests and the ratio is our overhead alone; a second bare run without priming shows what the
  priming buys.

Timed *with start-up* (process launch to exit) and in *steady state* (images/s after the first
``--skip`` of the images; for the pipeline from the ``annotated_at`` stamp of each written part, so
the corpus must give at least ``MIN_PARTS`` parts: refused below that). RATIO = steady pipeline ÷
steady bare images/s (target ≥ 0.9). The cached share is what SGLang reports (``cached_tokens``):
of all prompt tokens, and the share of prompts whose whole image was cached (target ≥ 60 %).
Refinement and the repair pass are off (the bare loop has neither).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

TARGET = 0.9
CACHE_TARGET = 0.6
MIN_PARTS = 3
CONFIG = os.path.join(_common.REPO, "jobs", "configs", "annotate-tiny-sglang-cpu.yaml")
TASKS = [1, 2, 3]


def overrides(args, extra: list[str] = ()) -> list[str]:
    return [
        "progress_bars=false",
        "run_date=2026-01-01",
        f"engine.max_new_tokens={args.max_new_tokens}",
        f"engine.batch_size={args.batch_size}",
        "stages.preprocess.visual_prompt=false",  # one view per image: its 3 pairs x 3 tasks share it
        'stages.refine.mode="off"',
        "stages.generate.repair=false",
        *extra,
    ]


class CacheRecording:
    """Engine factory for the pipeline side: the real engine; each batch's cache figures appended
    to ``path`` (one JSON line per batch)."""

    def __init__(self, path: str):
        self.path = path

    def __call__(self, cfg):
        from vsd.annotate.engines import make_engine

        return _Recording(make_engine(cfg), self.path)


class _Recording:
    name = "sglang"

    def __init__(self, inner, path: str):
        self.inner, self.path = inner, path

    def generate(self, batch):
        before = dataclasses.replace(self.inner.cache)
        out = self.inner.generate(batch)
        after = self.inner.cache
        with open(self.path, "a") as f:
            f.write(json.dumps({k: getattr(after, k) - getattr(before, k) for k in vars(after)}) + "\n")
        return out

    def close(self):
        self.inner.close()


def pipeline_worker(manifest: str, output: str, cache_file: str, args) -> dict:
    from vsd.annotate.config import load_config
    from vsd.annotate.pipeline import run_annotation

    cfg = load_config(CONFIG, [f"input.uri={manifest}", f"output={output}", *overrides(args, args.extra)])
    result = run_annotation(cfg, engine_factory=CacheRecording(cache_file))
    return {"counts": result.counts}


def bare_worker(manifest: str, args) -> dict:
    """Every request built first, then ``Engine.generate`` per batch; cache figures from its output."""
    t_start = time.perf_counter()
    from vsd.annotate.budgets import token_budgets
    from vsd.annotate.config import load_config
    from vsd.annotate.engines import make_engine
    from vsd.annotate.engines.prompting import chat_prompt
    from vsd.annotate.engines.sglang import CacheShare, data_url
    from vsd.annotate.items import ok_pairs
    from vsd.annotate.stages.generate import prompts_for

    cfg = load_config(CONFIG, [f"input.uri={manifest}", "output=/unused", *overrides(args)])
    engine = make_engine(cfg.engine)  # our wrapper only starts sglang.Engine; generate is called raw
    raw, pre, budgets = engine.engine, cfg.stages.preprocess, token_budgets(cfg.engine)
    min_lines = cfg.stages.generate.min_lines
    rows = _common.read_manifest(manifest)
    calls = []
    for start in range(0, len(rows), args.batch_size):
        prompts, images, params, per_image = [], [], [], []
        for k, row in enumerate(rows[start : start + args.batch_size]):
            per_image.append(SimpleNamespace(prompts=[]))
            item = _common.prepared_item(row, f"bare{start}-{k}", pre)
            for pair in ok_pairs(item):
                url = data_url(item["views"][pair["view"]])
                for p in prompts_for(pair, TASKS):
                    per_image[-1].prompts.append(p.text)
                    prompts.append(chat_prompt(p.text))
                    images.append(url)
                    params.append(
                        engine.sampling_params(
                            p.choices, budgets.get(p.task), min_lines if p.task == 3 else 0
                        )
                    )
        calls.append((per_image, prompts, images, params))
    share = CacheShare()
    t_ready = time.perf_counter()
    mark, mark_done, done = None, 0, 0
    for per_image, prompts, images, params in calls:
        n = len(per_image)
        # --prime: what the engine sends too (SGLangEngine._prime), so the ratio is our overhead alone
        primed = engine._prime(per_image, prompts, images) if args.prime else []
        share.add(
            primed + list(raw.generate(prompt=prompts, image_data=images, sampling_params=params)),
            engine.image_tokens,
        )
        done += n
        if mark is None and done >= args.skip * len(rows):
            mark, mark_done = time.perf_counter(), done
    t_end = time.perf_counter()
    engine.close()
    return {
        "images": done,
        "startup_s": t_ready - t_start,
        "steady_rate": (done - mark_done) / (t_end - mark)
        if mark and t_end > mark and done > mark_done
        else None,
        "cache": dataclasses.asdict(share),
    }


def child(mode: str, *worker_args: str, args) -> tuple[float, dict]:
    cmd = [sys.executable, os.path.abspath(__file__), mode, *worker_args]
    cmd += ["--batch-size", str(args.batch_size), "--max-new-tokens", str(args.max_new_tokens)]
    cmd += ["--skip", str(args.skip), *[f"--set={e}" for e in args.extra]]
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_ADDRESS="local", RAY_USAGE_STATS_ENABLED="0")
    env["PYTHONPATH"] = _common.REPO + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=_common.REPO, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        sys.stderr.write(out.stderr[-4000:])
        raise RuntimeError(f"{mode} failed with exit {out.returncode}")
    return wall, json.loads(out.stdout.strip().splitlines()[-1])


def share_text(cache: dict) -> tuple[str, float]:
    tokens = cache["cached_tokens"] / cache["prompt_tokens"] if cache["prompt_tokens"] else 0.0
    images = cache["image_cached"] / cache["prompts"] if cache["prompts"] else 0.0
    return f"{tokens:.0%} of prompt tokens, image cached in {images:.0%} of prompts", images


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--pairs", type=int, default=3, help="object pairs per image (3 tasks each)")
    ap.add_argument("--batch-size", type=int, default=4, help="images per engine call (the config's)")
    ap.add_argument("--max-new-tokens", type=int, default=16, help="the config's")
    ap.add_argument(
        "--write-batch-size", type=int, default=4, help="images per Parquet part: the steady clock"
    )
    ap.add_argument("--skip", type=float, default=0.25, help="fraction of images counted as warm-up")
    ap.add_argument("--set", dest="extra", action="append", default=[], help="another config override")
    ap.add_argument("--workdir", default=None)
    ap.add_argument(
        "--pipeline-worker", nargs=3, metavar=("MANIFEST", "OUTPUT", "CACHE"), help=argparse.SUPPRESS
    )
    ap.add_argument("--bare-worker", metavar="MANIFEST", help=argparse.SUPPRESS)
    ap.add_argument("--prime", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.pipeline_worker:
        print(json.dumps(pipeline_worker(*args.pipeline_worker, args)))
        return 0
    if args.bare_worker:
        print(json.dumps(bare_worker(args.bare_worker, args)))
        return 0
    if args.images < MIN_PARTS * args.write_batch_size / (1 - args.skip):
        need = int(MIN_PARTS * args.write_batch_size / (1 - args.skip)) + 1
        print(
            f"--images {args.images}: the steady clock needs {MIN_PARTS} parts after warm-up; use --images >= {need}"
        )
        return 2
    args.extra = [*args.extra, f"stages.write.resources.batch_size={args.write_batch_size}"]

    with tempfile.TemporaryDirectory(prefix="vsd-bench-sglang-", dir=args.workdir) as root:
        t0 = time.perf_counter()
        manifest = _common.write_corpus(os.path.join(root, "corpus"), args.images, (64, 64), pairs=args.pairs)
        print(
            f"corpus: {args.images} JPEGs x {args.pairs} pairs in {time.perf_counter() - t0:.1f}s; {_common.machine_note()}",
            flush=True,
        )
        output, cache_file = os.path.join(root, "out"), os.path.join(root, "cache.jsonl")
        pipe_wall, pipe = child("--pipeline-worker", manifest, output, cache_file, args=args)
        steady = _common.steady_rate(output, args.skip)
        with open(cache_file) as f:
            batches = [json.loads(line) for line in f if line.strip()]
        pipe_cache = {k: sum(b[k] for b in batches) for k in batches[0]} if batches else {}
        bare_wall, bare = child("--bare-worker", manifest, "--prime", args=args)
        plain_wall, plain = child("--bare-worker", manifest, args=args)
    pipe_steady = steady[0] if steady else float("nan")
    bare_steady = bare["steady_rate"] or float("nan")
    plain_steady = plain["steady_rate"] or float("nan")
    pipe_share, pipe_images = share_text(pipe_cache) if pipe_cache else ("none recorded", 0.0)
    bare_share, bare_images = share_text(bare["cache"])
    print(f"pipeline: {pipe['counts']}; {len(batches)} engine batches; cached {pipe_share}")
    print(
        f"bare (primed as the engine does): {bare['images']} images, start-up {bare['startup_s']:.1f}s; cached {bare_share}"
    )
    print(
        f"bare, prompts alone (no priming): {plain_steady:.2f} images/s steady, cached {share_text(plain['cache'])[0]}; "
        f"priming buys {bare_steady / plain_steady:.2f}x"
    )
    print(
        _common.table(
            [
                (
                    "pipeline (Ray Data, Parquet)",
                    f"{pipe_wall:.1f}",
                    f"{args.images / pipe_wall:.2f}",
                    f"{pipe_steady:.2f}",
                ),
                (
                    "bare Engine.generate loop (primed)",
                    f"{bare_wall:.1f}",
                    f"{args.images / bare_wall:.2f}",
                    f"{bare_steady:.2f}",
                ),
                ("ratio", "", f"{bare_wall / pipe_wall:.3f}", f"{pipe_steady / bare_steady:.3f}"),
            ],
            ("side", "wall s", "images/s incl. start-up", "images/s steady"),
        )
    )
    print(
        f"cached share (image cached per prompt): pipeline {pipe_images:.0%}, bare {bare_images:.0%} (target >= {CACHE_TARGET:.0%})"
    )
    print(_common.ratio_line("sglang_efficiency", pipe_steady / bare_steady, TARGET))
    return 0


if __name__ == "__main__":
    sys.exit(main())
