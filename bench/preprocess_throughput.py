"""Preprocessing: images/s per core of our CPU stage vs the HF image processor on the same JPEGs.

    python bench/preprocess_throughput.py                      # 200 JPEGs of 640x480, 336 px output
    python bench/preprocess_throughput.py --images 50 --repeats 1 --profile

Ours is the pipeline's ``preprocess_batch`` exactly as Ray Data calls it (Arrow batch in and out):
decode + header guard + verify + EXIF transpose + RGB, the visual prompt (subject red, object
green), pad to a square, resize to ``--image-size`` and re-encode JPEG. The baseline is
``CLIPImageProcessorPil`` taken from the tiny model's processor with its size set to the same
``--image-size`` (LLaVA-1.5: 336): PIL decode + RGB, resize shortest edge, centre crop, rescale,
normalise to a float tensor. Both run in this one process on one thread (per core), in batches of
``--batch-size``, best of ``--repeats`` alternating passes (the machine is shared).
Ends with ``RATIO preprocess_throughput <ours / HF> target 1.5 PASS|FAIL``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

TARGET = 1.5


def corpus(
    n: int, width: int, height: int, pairs: int, seed: int = 0
) -> tuple[list[bytes], list[list[dict]]]:
    import numpy as np

    rng = np.random.default_rng(seed)
    images = [_common.synthetic_jpeg(rng, width, height) for _ in range(n)]
    return images, [[_common.random_pair(rng) for _ in range(pairs)] for _ in range(n)]


def our_batches(images: list[bytes], pairs: list[list[dict]], batch_size: int):
    """Arrow batches of pipeline items, as the read stage hands them to preprocess."""
    from vsd.annotate.items import new_item, new_pair, to_table

    batches = []
    for start in range(0, len(images), batch_size):
        items = []
        for i in range(start, min(start + batch_size, len(images))):
            ps = [
                new_pair(j, p["subject"], p["object"], p["subject_box"], p["object_box"])
                for j, p in enumerate(pairs[i])
            ]
            item = new_item(f"mem://{i}.jpg", image_id=f"id{i}", pairs=ps)
            item["data"] = images[i]
            items.append(item)
        batches.append(to_table(items))
    return batches


def run_ours(batches, cfg) -> int:
    from vsd.annotate.stages.preprocess import preprocess_batch

    views = 0
    for batch in batches:
        out = preprocess_batch(batch, cfg=cfg)
        views += sum(len(v) for v in out.column("views").to_pylist())
    return views


def hf_processor(image_size: int):
    """The tiny model's ``CLIPImageProcessorPil`` with its size set to ``image_size``."""
    from transformers import AutoProcessor

    from vsd.model.tiny import ensure_tiny

    base = AutoProcessor.from_pretrained(ensure_tiny("llava")).image_processor
    settings = {
        k: v for k, v in base.to_dict().items() if k not in ("image_processor_type", "processor_class")
    }
    settings.update(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
    return type(base)(**settings)


def run_hf(images: list[bytes], processor, batch_size: int) -> int:
    from PIL import Image

    done = 0
    for start in range(0, len(images), batch_size):
        pil = [Image.open(io.BytesIO(b)).convert("RGB") for b in images[start : start + batch_size]]
        out = processor(images=pil, return_tensors="pt")
        done += out["pixel_values"].shape[0]
    return done


def timed(fn, *args) -> tuple[float, int]:
    t0 = time.perf_counter()
    n = fn(*args)
    return time.perf_counter() - t0, n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=200, help="JPEGs per pass")
    ap.add_argument("--width", type=int, default=640, help="source JPEG width (COCO/VG-like default)")
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument(
        "--pairs", type=int, default=1, help="object pairs per image (ours draws one view per pair)"
    )
    ap.add_argument("--image-size", type=int, default=336, help="output side for both (LLaVA-1.5: 336)")
    ap.add_argument(
        "--batch-size", type=int, default=8, help="images per call (the tiny-cpu config's preprocess batch)"
    )
    ap.add_argument("--repeats", type=int, default=3, help="alternating passes; the best of each side counts")
    ap.add_argument(
        "--profile", action="store_true", help="cProfile one pass of ours and print where the time goes"
    )
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)  # per core: one thread on each side
    from vsd.annotate.stages.preprocess import PreprocessStageConfig

    cfg = PreprocessStageConfig(image_size=args.image_size)
    images, pairs = corpus(args.images, args.width, args.height, args.pairs)
    processor = hf_processor(args.image_size)
    batches = our_batches(images, pairs, args.batch_size)
    run_ours(batches[:1], cfg)  # warm-up: imports, PIL plugin registry, font
    run_hf(images[: args.batch_size], processor, args.batch_size)

    ours, hf = [], []
    for _ in range(args.repeats):
        ours.append(timed(run_ours, batches, cfg))
        hf.append(timed(run_hf, images, processor, args.batch_size))
    t_ours = min(t for t, _ in ours)
    t_hf = min(t for t, _ in hf)
    views = ours[0][1]
    if hf[0][1] != len(images) or views != len(images) * args.pairs:
        raise SystemExit(
            f"lost images: ours made {views} views, HF {hf[0][1]} tensors from {len(images)} JPEGs"
        )
    rate_ours, rate_hf = len(images) / t_ours, len(images) / t_hf
    mean_kb = sum(map(len, images)) / len(images) / 1024
    print(
        f"{len(images)} JPEGs {args.width}x{args.height} (~{mean_kb:.0f} KiB), {args.pairs} pair(s) each -> "
        f"{args.image_size} px; batch {args.batch_size}; 1 thread; best of {args.repeats}; {_common.machine_note()}"
    )
    print(
        _common.table(
            [
                (
                    "ours: preprocess_batch (decode+validate+prompt+pad+resize+JPEG)",
                    f"{rate_ours:.1f}",
                    f"{1000 * t_ours / len(images):.2f}",
                ),
                (
                    "HF CLIPImageProcessorPil (decode+resize+crop+normalise)",
                    f"{rate_hf:.1f}",
                    f"{1000 * t_hf / len(images):.2f}",
                ),
            ],
            ("side", "images/s/core", "ms/image"),
        )
    )
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        run_ours(batches, cfg)
        prof.disable()
        print("\ncProfile of one pass of ours (tottime, top 15):")
        stats = pstats.Stats(prof, stream=sys.stdout)
        stats.sort_stats("tottime").print_stats(15)
    print(_common.ratio_line("preprocess_throughput", rate_ours / rate_hf, TARGET))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
