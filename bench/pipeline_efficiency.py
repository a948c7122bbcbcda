"""Pipeline efficiency: `vsd annotate` on Ray Data vs a bare in-process loop over the same engine.

    python bench/pipeline_efficiency.py                    # 2,000 images, tiny model, hf engine
    python bench/pipeline_efficiency.py --images 200 --max-new-tokens 4

Both sides get the same JPEG corpus (one object pair each, 3 tasks per pair), the same tiny model
(``tiny:llava``, fp32, CPU), the same engine batch size and ``max_new_tokens``, on this machine:

* **pipeline**: ``python -m vsd.cli annotate --config jobs/configs/annotate-tiny-cpu.yaml`` in a
  child process (its own local Ray cluster over all CPUs; read ▸ preprocess ▸ generate ▸ verify
  ▸ refine ▸ write to Parquet), with the nightly config's block sizes for the CPU stages
  (`NIGHTLY_BLOCKS`; ``--set`` adds overrides);
* **bare**: a child process that reads each file, runs ``preprocess.prepare``, one
  ``engine.generate`` per batch with the stage's own prompts (``stage_prompts``: token budgets,
  task 3's floor of 3 lines) and ``verify.check`` per pair, in one loop, no Ray, no Parquet.

Each side is timed twice: *with start-up* (process launch to exit: imports, Ray start, model
load) and *steady state* (images/s after the first ``--skip`` fraction of the images is done;
for the pipeline from the ``annotated_at`` stamp of each written part, so a corpus too small for
``MIN_PARTS`` parts after the warm-up is refused up front). The RATIO is the steady-
state pipeline ÷ bare images/s (target ≥ 0.85; the bare loop runs before and after the
pipeline, the baseline is their mean); the with-start-up ratio is printed beside it.
Refinement is off by default (the bare loop has none); ``--refine rules`` adds it to the pipeline.
The description repair pass (a second decode of flawed sentences) is off on the pipeline side for
the same reason: both sides do the same engine work.
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

TARGET = 0.85
# The CPU stages' block sizes of the nightly config (jobs/configs/annotate-nightly-*.yaml), not the
# tiny config's (16/8/8: small blocks give the tests their granularity). Each block costs the driver
# and Ray a task and its bookkeeping whatever its size: with the tiny config's blocks the pipeline
# ran ~95 images/s here, with these ~136, against a bare loop at 120-175 (2026-12-04).
NIGHTLY_BLOCKS = (
    "stages.read.resources.batch_size=64",
    "stages.preprocess.resources.batch_size=32",
    "stages.verify.resources.batch_size=32",
)
MIN_PARTS = 3  # Parquet parts after the warm-up: fewer give no steady-state rate (nan)


# ----------------------------------------------------------------------------------------------
# The bare loop (runs in a child process: ``--bare-worker``)
# ----------------------------------------------------------------------------------------------


def bare_loop(
    manifest: str, batch_size: int, max_new_tokens: int, threads: int, image_size: int, skip: float
) -> dict:
    """Read + preprocess + generate + verify, batch after batch, in this process."""
    t_start = time.perf_counter()
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    from vsd.annotate.budgets import token_budgets
    from vsd.annotate.engines import EngineConfig, make_engine
    from vsd.annotate.engines.base import ImageRequest
    from vsd.annotate.items import ok_pairs
    from vsd.annotate.stages.generate import GenerateStageConfig, fill, stage_prompts
    from vsd.annotate.stages.preprocess import PreprocessStageConfig
    from vsd.annotate.stages.verify import check

    engine_cfg = EngineConfig(
        kind="hf",
        model="tiny:llava",
        device="cpu",
        dtype="float32",
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
    )
    engine = make_engine(engine_cfg)
    # the stage's prompts: its token budgets and task 3's line floor (EOS masked until 3 lines)
    budgets, min_lines = token_budgets(engine_cfg), GenerateStageConfig().min_lines
    cfg = PreprocessStageConfig(image_size=image_size)
    rows = _common.read_manifest(manifest)
    t_ready = time.perf_counter()
    mark, mark_done, done, ok = None, 0, 0, 0
    for start in range(0, len(rows), batch_size):
        items = []
        for row in rows[start : start + batch_size]:
            items.append(_common.prepared_item(row, f"bare{start}-{len(items)}", cfg))
        requests, members = [], []
        for item in items:
            for pair in ok_pairs(item):
                prompts = stage_prompts(pair, [1, 2, 3], budgets, min_lines)
                requests.append(
                    ImageRequest(f"{item['image_id']}#{pair['view']}", item["views"][pair["view"]], prompts)
                )
                members.append((pair, prompts))
        for (pair, prompts), result in zip(members, engine.generate(requests)):
            fill(pair, prompts, result.answers)
            check(pair)
            ok += 1
        done += len(items)
        if mark is None and done >= skip * len(rows):
            mark, mark_done = time.perf_counter(), done
    t_end = time.perf_counter()
    return {
        "images": done,
        "pairs_ok": ok,
        "threads": torch.get_num_threads(),
        "startup_s": t_ready - t_start,
        "loop_s": t_end - t_ready,
        "steady_rate": (done - mark_done) / (t_end - mark) if mark and t_end > mark else float("nan"),
    }


def run_bare(manifest: str, args) -> tuple[float, dict]:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--bare-worker",
        manifest,
        "--batch-size",
        str(args.batch_size),
        "--max-new-tokens",
        str(args.max_new_tokens),
        "--bare-threads",
        str(args.bare_threads),
        "--image-size",
        str(args.image_size),
        "--skip",
        str(args.skip),
    ]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=_common.REPO, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        sys.stderr.write(out.stderr[-4000:])
        raise RuntimeError("bare loop failed")
    return wall, json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------
# The comparison
# ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument(
        "--batch-size", type=int, default=4, help="images per engine step, both sides (tiny-cpu config: 4)"
    )
    ap.add_argument("--max-new-tokens", type=int, default=16, help="tiny-cpu config: 16")
    ap.add_argument(
        "--image-size", type=int, default=32, help="preprocess.image_size (the tiny model's input)"
    )
    ap.add_argument("--source-size", type=int, default=64, help="side of the corpus JPEGs")
    ap.add_argument(
        "--bare-threads",
        type=int,
        default=1,
        help="torch threads of the bare loop: 1 = what Ray gives the engine actor (generate_num_cpus=1 "
        "sets OMP_NUM_THREADS=1), so both run the same engine; 0 = torch's default (all cores)",
    )
    ap.add_argument("--refine", default="off", choices=["off", "rules"], help="pipeline refine.mode")
    ap.add_argument(
        "--write-batch-size",
        type=int,
        default=32,
        help="stages.write.resources.batch_size: images per Parquet part, the granularity of the steady-state clock",
    )
    ap.add_argument(
        "--skip", type=float, default=0.1, help="fraction of images counted as warm-up in steady state"
    )
    ap.add_argument(
        "--workdir", default=None, help="keep corpus and outputs here (default: a temp dir, removed)"
    )
    ap.add_argument(
        "--set", dest="extra", action="append", default=[], help="another pipeline config override"
    )
    ap.add_argument("--bare-worker", metavar="MANIFEST", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.bare_worker:
        print(
            json.dumps(
                bare_loop(
                    args.bare_worker,
                    args.batch_size,
                    args.max_new_tokens,
                    args.bare_threads,
                    args.image_size,
                    args.skip,
                )
            )
        )
        return 0

    # The steady clock reads the written parts' stamps: it needs MIN_PARTS of them after the warm-up.
    need = int(MIN_PARTS * args.write_batch_size / (1 - args.skip)) + 1
    if args.images < need:
        print(
            f"--images {args.images}: the steady-state clock needs {MIN_PARTS} Parquet parts after the "
            f"warm-up; use --images >= {need} or a smaller --write-batch-size"
        )
        return 2
    with tempfile.TemporaryDirectory(prefix="vsd-bench-pipe-", dir=args.workdir) as root:
        manifest = _common.announced_corpus(root, args.images, args.source_size)

        output = os.path.join(root, "out")
        overrides = _common.annotate_overrides(
            args.max_new_tokens,
            args.batch_size,
            [
                f'stages.refine.mode="{args.refine}"',
                f"stages.preprocess.image_size={args.image_size}",
                "stages.generate.repair=false",  # the bare loop has no repair pass
                f"stages.write.resources.batch_size={args.write_batch_size}",
                *NIGHTLY_BLOCKS,
                *args.extra,
            ],
        )
        # The bare loop runs before and after the pipeline and its mean is the baseline: this VM's
        # speed drifts by a quarter within minutes, and a bracket cancels a drift in one direction.
        bares = [run_bare(manifest, args)]
        pipe = _common.run_annotate(manifest, output, overrides)
        written = pipe.manifest["counts"].get("images", 0)
        pipe_steady, _ = _common.steady_rate(output, args.skip) or (float("nan"), 0.0)
        print(
            f"pipeline: {written} images in {pipe.wall_s:.1f}s wall "
            f"(pipeline_s {pipe.manifest['timings']['pipeline_s']}), steady {pipe_steady:.2f} images/s",
            flush=True,
        )
        bares.append(run_bare(manifest, args))
        for when, (wall, b) in zip(("before", "after"), bares):
            print(
                f"bare ({when}): {b['images']} images in {wall:.1f}s wall (start-up {b['startup_s']:.1f}s, "
                f"{b['threads']} torch threads), steady {b['steady_rate']:.2f} images/s",
                flush=True,
            )
        if written != args.images or any(b["images"] != args.images for _, b in bares):
            raise SystemExit(
                f"lost images: pipeline wrote {written}, bare did {[b['images'] for _, b in bares]} "
                f"of {args.images}"
            )
        bare_wall = sum(w for w, _ in bares) / 2
        bare = {"steady_rate": sum(b["steady_rate"] for _, b in bares) / 2}

    pipe_total, bare_total = args.images / pipe.wall_s, args.images / bare_wall
    print()
    print(
        _common.table(
            [
                (
                    "pipeline (vsd annotate, Ray Data)",
                    f"{pipe.wall_s:.1f}",
                    f"{pipe_total:.2f}",
                    f"{pipe_steady:.2f}",
                ),
                (
                    "bare loop (no Ray), mean of 2",
                    f"{bare_wall:.1f}",
                    f"{bare_total:.2f}",
                    f"{bare['steady_rate']:.2f}",
                ),
                (
                    "ratio pipeline/bare",
                    "",
                    f"{pipe_total / bare_total:.3f}",
                    f"{pipe_steady / bare['steady_rate']:.3f}",
                ),
            ],
            ("side", "wall s", "images/s incl. start-up", "images/s steady"),
        )
    )
    print(
        f"{args.images} images, batch {args.batch_size}, {args.max_new_tokens} new tokens, 3 tasks/pair, "
        f"refine {args.refine}; steady = after the first {args.skip:.0%} of images; {_common.machine_note()}"
    )
    print(_common.ratio_line("pipeline_efficiency", pipe_steady / bare["steady_rate"], TARGET))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
