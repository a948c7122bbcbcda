"""The propose stage (Grounding DINO-T + Depth Anything-S + pair selection) on real-size shapes.

    python bench/gpu_propose.py                  # on a CUDA GPU: bf16, 800-px detector inputs
    python bench/gpu_propose.py --no-depth       # the detector alone
    python bench/gpu_propose.py --tiny           # CPU smoke test of the same code path

Weights are random, built from configs (no download): speed depends on shapes, not values. The
detector has Grounding DINO-T's shapes (Swin-T, BERT-base text tower, 6+6 layers, 900 queries,
images resized to 800 px on the short side) and is prompted with the default 40-name vocabulary
(one prompt); depth has Depth Anything-S's (DINOv2-S at 518 px). Images are 640x480 JPEGs. The
timed call is exactly what the stage calls per batch: `Proposer.propose` (detect, depth per box,
pair selection), after one warm-up batch.

Why the target: each proposed image becomes up to K pairs x 3 prompts for the generate stage,
which reaches ~10 pairs/s for a 13B model on one GPU (docs/benchmarks.md, gpu_annotate), so at the default
K = 8 the generate stage consumes roughly 1-2 images/s per GPU; proposing at 40 ms per image
(25 images/s) keeps the propose stage under a tenth of the GPU time. Prints a table and
``RATIO gpu_propose <ms per image> target 40`` (lower is better). Needs torch + transformers only.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import jpeg_corpus, ratio_line, table  # noqa: E402 - bench/ is not a package; _common also puts the repo on sys.path

TARGET_MS = 40.0


def build(args, device: str, dtype):
    """(Proposer, config) with random real-size (or tiny) models on ``device``."""
    from vsd import config as vconfig
    from vsd.propose import ProposeConfig, Proposer
    from vsd.propose.config import DEFAULT_VOCABULARY
    from vsd.propose.depth import DepthEstimator
    from vsd.propose.tiny_models import depth_anything, grounding_dino
    from vsd.propose.zero_shot import GroundingDinoDetector

    cfg = vconfig.from_dict(
        ProposeConfig,
        {
            "model": "(random)",
            "vocabulary": DEFAULT_VOCABULARY,
            "batch_size": args.batch_size,
            "device": device,
            "score_threshold": 0.0 if args.tiny else 0.3,
            "depth": args.depth,
        },
    )
    model, processor = grounding_dino(DEFAULT_VOCABULARY, tiny=args.tiny)
    detector = GroundingDinoDetector(model.to(device=device, dtype=dtype), processor, cfg, device)
    depth = None
    if args.depth:
        d_model, d_processor = depth_anything(tiny=args.tiny)
        depth = DepthEstimator(d_model.to(device=device, dtype=dtype), d_processor, args.batch_size, device)
    return Proposer(cfg, detector=detector, depth=depth), cfg


def timed(fn, sync) -> tuple[float, object]:
    sync()
    t0 = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - t0, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=256, help="images per timed run")
    ap.add_argument("--batch-size", type=int, default=16, help="images per forward pass")
    ap.add_argument("--depth", action=argparse.BooleanOptionalAction, default=True, help="also run depth")
    ap.add_argument("--tiny", action="store_true", help="tiny shapes on CPU: tests the script, not the speed")
    ap.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    args = ap.parse_args(argv)

    import torch
    from PIL import Image

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if not args.tiny and not device.startswith("cuda"):
        print("gpu_propose: no CUDA device; use --tiny for the CPU smoke test", file=sys.stderr)
        return 2
    if args.tiny:
        args.images, args.batch_size = min(args.images, 8), min(args.batch_size, 4)
        torch.set_num_threads(1)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    size = (96, 72) if args.tiny else (640, 480)
    images = [
        Image.open(io.BytesIO(b)).convert("RGB").resize(size) for b in jpeg_corpus(args.images, max(size))
    ]
    proposer, cfg = build(args, device, dtype)
    print(
        f"device {torch.cuda.get_device_name() if device.startswith('cuda') else 'cpu'}, torch {torch.__version__}, "
        f"transformers {__import__('transformers').__version__}, {dtype}, {len(images)} images {size[0]}x{size[1]}, "
        f"batch {args.batch_size}, depth {'on' if args.depth else 'off'}, "
        f"{len(proposer.detector.prompts)} prompt(s) for {len(cfg.vocabulary)} names"
    )
    proposer.propose(images[: args.batch_size])  # warm-up: kernels, allocator
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t_det, dets = timed(lambda: proposer.detector.detect(images), sync)
    t_depth = 0.0
    if proposer.depth is not None:
        t_depth, _ = timed(lambda: proposer.depth.depth_maps(images), sync)
    t_all, proposals = timed(lambda: proposer.propose(images), sync)
    if len(proposals) != len(images) or len(dets) != len(images):
        print("gpu_propose: an image went missing", file=sys.stderr)
        return 1
    n = len(images)
    pairs = sum(len(p.pairs) for p in proposals)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else 0.0
    rows = [
        ("detect (Grounding DINO-T)", f"{1000 * t_det / n:.1f}", f"{n / t_det:.1f}"),
        (
            "depth (Depth Anything-S)",
            f"{1000 * t_depth / n:.1f}" if t_depth else "-",
            f"{n / t_depth:.1f}" if t_depth else "-",
        ),
        ("propose (all, as the stage)", f"{1000 * t_all / n:.1f}", f"{n / t_all:.1f}"),
    ]
    print(table(rows, ("part", "ms/image", "images/s")))
    print(f"pairs proposed: {pairs} ({pairs / n:.1f} per image), peak GPU memory {peak:.1f} GiB")
    print(ratio_line("gpu_propose", 1000 * t_all / n, TARGET_MS, higher_is_better=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
