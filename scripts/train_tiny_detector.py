#!/usr/bin/env python
"""Train the demo's tiny detector (OWL-ViT, `vsd.propose.tiny_detector`) on synthetic scenes, on CPU.

Why: `vsd demo` annotates held-out scenes given *without* boxes, so it needs a detector that finds
the generator's shapes and names them (``red circle``) the way the prompts do. No pretrained
detector exists offline; this trains one from a seeded random initialisation on one CPU thread.
Scenes are generated on the fly (`vsd.data.synthetic`, < 1 ms each), never repeated: step ``s``
uses scenes ``s*batch .. (s+1)*batch-1`` of ``--data-seed``, so a run is reproducible from its
flags and resumes exactly (``--resume``).

::

    python scripts/train_tiny_detector.py --out /tmp/tiny-detector                 # stage 1
    python scripts/train_tiny_detector.py --out /tmp/tiny-detector-2 --init /tmp/tiny-detector \
        --assign inside --data-seed 777002 --lr 1e-3 --warmup 50                     # stage 2
    # vsd/assets/tiny-detector/RECIPE.md has the exact commands of the committed checkpoint and its
    # numbers; --device cuda runs the same recipe on a GPU.

The loss is dense, per patch (OWL-ViT predicts one box per patch, anchored at it): each object
claims the few unclaimed patches nearest its centre (smaller objects first, so a shape inside a
container keeps its own patches), those patches learn its name (sigmoid focal loss over the 72
queries, every other patch learns "nothing") and its box (L1 + generalised IoU). No set
matching (an RT-DETR of the same size had found nothing after 200 steps). ``--assign inside``
makes every patch inside a box a positive, weighted by centre-ness (quality focal loss): the
edge patches see the outline, which is what tells the shapes apart.

Every ``--eval-every`` steps it prints recall/precision at IoU 0.5 (correct labels) on
``--eval-scenes`` validation scenes (``--val-seed``); at the end it picks the score threshold and
NMS IoU with the best F1 on them and writes them to ``detector_meta.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from vsd.propose.synthetic_truth import VOCABULARY, labelled_scenes, scene_at, scene_objects  # noqa: E402

THRESHOLDS = (0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6)
NMS_IOUS = (0.4, 0.5, 0.6, 0.7)
POSITIVES = 5  # patches per object at most
RADIUS = 0.3  # of the object's shorter side: how far from the centre a positive may lie


def scene_size(index: int, data_seed: int, image_size: int = 64):
    """Mostly the detector's input size; every 4th scene another size (3/4 to 2x of it), so the
    detector is not tied to one."""
    if index % 4:
        return image_size
    return random.Random(f"tiny-detector-size:{data_seed}:{index}").randint(
        3 * image_size // 4, 2 * image_size
    )


def _anchors(grid: int) -> list[tuple[float, float]]:
    """Where OWL anchors each patch's box: ``((col + 1) / grid, (row + 1) / grid)`` (the box bias of
    `OwlViTForObjectDetection`)."""
    return [((p % grid + 1) / grid, (p // grid + 1) / grid) for p in range(grid * grid)]


def _centerness(box, x: float, y: float) -> float:
    """FCOS centre-ness of a point inside ``box``: 1 at the centre, towards 0 at the edges."""
    left, r, t, b = x - box[0], box[2] - x, y - box[1], box[3] - y
    return math.sqrt(max(0.0, min(left, r) / max(left, r, 1e-9)) * max(0.0, min(t, b) / max(t, b, 1e-9)))


def assign(objects, grid: int, mode: str = "center") -> list[tuple[int, int, float]]:
    """(patch index, object index, weight) positives of one image on a ``grid`` x ``grid`` layout.

    Smaller objects claim first, so a shape inside a container keeps its own patches. ``center``:
    the (at most `POSITIVES`) free patches whose anchor lies in the box within `RADIUS` of its
    centre, weight 1. ``inside``: every free patch anchored inside the box, weighted by
    centre-ness (floor 0.1) — edge patches see the shape's outline (a corner, a curve, a slant),
    which is where the shape can be told apart; the weight keeps the centre patches' boxes ahead
    at inference. An object no anchor falls in takes the nearest free patch, weight 1.
    """
    anchors = _anchors(grid)
    claimed: dict[int, tuple[int, float]] = {}
    order = sorted(
        range(len(objects)),
        key=lambda k: ((objects[k].box[2] - objects[k].box[0]) * (objects[k].box[3] - objects[k].box[1]), k),
    )
    for k in order:
        box = objects[k].box
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        radius = max(1.5 / grid, RADIUS * min(box[2] - box[0], box[3] - box[1]))
        dist = sorted(
            (math.hypot(ax - cx, ay - cy), p, box[0] <= ax <= box[2] and box[1] <= ay <= box[3])
            for p, (ax, ay) in enumerate(anchors)
        )
        free = [(d, p) for d, p, inside in dist if inside and p not in claimed]
        if mode == "center":
            chosen = [(p, 1.0) for d, p in free if d <= radius][:POSITIVES]
        else:
            chosen = [(p, max(0.1, _centerness(box, *anchors[p]))) for _, p in free]
        if not chosen:  # a speck between anchors, or its centre taken: the nearest free patch
            chosen = [(next(p for _, p, _ in dist if p not in claimed), 1.0)]
        for p, w in chosen:
            claimed[p] = (k, w)
    return [(p, k, w) for p, (k, w) in sorted(claimed.items())]


def training_batch(
    step: int,
    batch: int,
    data_seed: int,
    processor,
    tokens,
    grid: int,
    mode: str = "center",
    image_size: int = 64,
):
    """Model inputs and dense targets of one step: class targets (the positive's weight at its
    name), boxes and weights per patch."""
    import torch

    from vsd.data.synthetic import render

    images, cls_t, box_t, weight = (
        [],
        torch.zeros(batch, grid * grid, len(VOCABULARY)),
        torch.zeros(batch, grid * grid, 4),
        torch.zeros(batch, grid * grid),
    )
    for b, i in enumerate(range(step * batch, (step + 1) * batch)):
        scene = scene_at(i, data_seed, scene_size(i, data_seed, image_size))
        objects = scene_objects(scene)
        images.append(render(scene))
        for p, k, w in assign(objects, grid, mode):
            cls_t[b, p, VOCABULARY.index(objects[k].label)] = w
            box_t[b, p] = torch.tensor(objects[k].box)
            weight[b, p] = w
    pixels = processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
    inputs = {
        "pixel_values": pixels,
        "input_ids": tokens["input_ids"].repeat(batch, 1),
        "attention_mask": tokens["attention_mask"].repeat(batch, 1),
    }
    return inputs, cls_t, box_t, weight


def focal(logits, targets, alpha: float = 0.25, gamma: float = 2.0):
    import torch.nn.functional as F

    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    return (ce * (1 - p_t) ** gamma * (alpha * targets + (1 - alpha) * (1 - targets))).sum()


def quality_focal(logits, targets, gamma: float = 2.0):
    """Quality focal loss (GFL): BCE towards soft targets, scaled by ``|target - p| ** gamma``."""
    import torch.nn.functional as F

    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return (ce * (targets - logits.sigmoid()).abs() ** gamma).sum()


def giou(a, b):
    """Generalised IoU of matching rows of two xyxy tensors."""
    import torch

    area = lambda t: (t[:, 2] - t[:, 0]).clamp(min=0) * (t[:, 3] - t[:, 1]).clamp(min=0)  # noqa: E731
    lt, rb = torch.max(a[:, :2], b[:, :2]), torch.min(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    union = area(a) + area(b) - inter
    hull = (torch.max(a[:, 2:], b[:, 2:]) - torch.min(a[:, :2], b[:, :2])).clamp(min=0).prod(dim=1)
    return inter / union.clamp(min=1e-9) - (hull - union) / hull.clamp(min=1e-9)


def dense_loss(outputs, cls_t, box_t, weight, args) -> tuple:
    """(total, parts) of the per-patch loss, normalised by the positives' total weight; class loss:
    focal for binary (``center``) targets, quality focal for centre-ness-weighted (``inside``) ones."""
    import torch

    pos = weight > 0
    n = max(1.0, float(weight.sum()))
    cls = (focal if args.assign == "center" else quality_focal)(outputs.logits, cls_t) / n
    cx, cy, w, h = outputs.pred_boxes[pos].unbind(-1)
    pred = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)
    wp = weight[pos]
    l1 = ((pred - box_t[pos]).abs().sum(dim=-1) * wp).sum() / n
    gi = ((1 - giou(pred, box_t[pos])) * wp).sum() / n
    total = args.w_cls * cls + args.w_l1 * l1 + args.w_giou * gi
    return total, {"cls": cls.item(), "l1": l1.item(), "giou": gi.item()}


def lr_at(step: int, args, seconds: float = 0.0) -> float:
    """Linear warm-up, then cosine down to 5 % of ``--lr`` following whichever of ``--steps`` or
    ``--time-limit`` comes first (on a shared machine the clock, not the step count, is the budget)."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    t = min(1.0, (step - args.warmup) / max(1, args.steps - args.warmup))
    if args.time_limit:
        t = max(t, min(1.0, seconds / (args.time_limit * 60)))
    return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


def evaluate(model, processor, args) -> dict[str, dict]:
    """Recall/precision on the validation scenes per (score threshold, NMS IoU), one forward pass
    through the library's open-vocabulary backend (the path the demo runs)."""
    from vsd.propose.config import ProposeConfig
    from vsd.propose.detections import finalize
    from vsd.propose.metrics import evaluate_detections
    from vsd.propose.zero_shot import OwlDetector

    model.eval()
    cfg = ProposeConfig(
        backend="open_vocabulary",
        model="(in memory)",
        vocabulary=list(VOCABULARY),
        score_threshold=min(THRESHOLDS),
        nms_iou=1.0,
        max_detections=50,
        batch_size=32,
    )
    scenes = list(labelled_scenes(args.eval_scenes, args.val_seed, size=args.image_size))
    raw = OwlDetector(model, processor, cfg, args.device).detect([s[0] for s in scenes])
    model.train()
    out = {}
    for t in THRESHOLDS:
        for nms in NMS_IOUS:
            per_image = [
                (
                    finalize(
                        [d.box for d in dets],
                        [d.score for d in dets],
                        [d.label for d in dets],
                        score_threshold=t,
                        nms_iou=nms,
                        class_agnostic=True,
                        min_box_size=0.02,
                        max_detections=10,
                    ),
                    s[2],
                )
                for dets, s in zip(raw, scenes)
            ]
            out[f"{t}/{nms}"] = evaluate_detections(per_image).to_dict()
    return out


def f1(m: dict) -> float:
    p, r = m["precision"], m["recall"]
    return 2 * p * r / (p + r) if p + r else 0.0


def best_setting(metrics: dict[str, dict]) -> str:
    """The (threshold/NMS) key with the best F1; ties to the higher threshold, then the lower NMS IoU."""
    return max(
        metrics, key=lambda k: (round(f1(metrics[k]), 4), float(k.split("/")[0]), -float(k.split("/")[1]))
    )


PATCH_KEY = "owlvit.vision_model.embeddings.patch_embedding.weight"


def widen_patches(state: dict, target: dict) -> dict:
    """``--init`` from a checkpoint with smaller patches on the same grid (e.g. 64 px / 4-px patches
    into 128 px / 8-px patches): each patch kernel is upsampled (nearest) and scaled by the area
    ratio, so the new model starts as the old one on a downsampled image and only has to learn
    what the finer pixels add (the shapes' outlines). Everything else has the same shapes."""
    import torch.nn.functional as F

    old, new = state.get(PATCH_KEY), target.get(PATCH_KEY)
    if old is None or new is None or old.shape == new.shape:
        return state
    factor = new.shape[-1] // old.shape[-1]
    if factor * old.shape[-1] != new.shape[-1] or old.shape[:2] != new.shape[:2]:
        raise SystemExit(f"--init: patch kernels {tuple(old.shape)} cannot widen to {tuple(new.shape)}")
    return {**state, PATCH_KEY: F.interpolate(old, scale_factor=factor, mode="nearest") / factor**2}


def save(model, processor, out: str, meta: dict | None = None, half: bool = False) -> None:
    import copy

    import torch

    os.makedirs(out, exist_ok=True)
    to_save = copy.deepcopy(model).to("cpu", torch.float16) if half else model
    to_save.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    if meta is not None:
        with open(os.path.join(out, "detector_meta.json"), "w") as f:
            json.dump(meta, f, indent=2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--out", required=True, help="folder of the final checkpoint (and checkpoint/ while training)"
    )
    ap.add_argument("--steps", type=int, default=2500)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--clip", type=float, default=1.0, help="gradient-norm clipping")
    ap.add_argument("--w-cls", type=float, default=2.0)
    ap.add_argument("--w-l1", type=float, default=5.0)
    ap.add_argument("--w-giou", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=0, help="weight initialisation seed")
    ap.add_argument("--data-seed", type=int, default=777000, help="seed of the training scenes")
    ap.add_argument(
        "--val-seed", type=int, default=777001, help="seed of the validation scenes (threshold choice)"
    )
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--eval-scenes", type=int, default=90)
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--device",
        default="cpu",
        help="cpu, or cuda where one is lent (same recipe, far more steps per minute)",
    )
    ap.add_argument(
        "--time-limit", type=float, default=0, help="stop early (and finish normally) after this many minutes"
    )
    ap.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint")
    ap.add_argument(
        "--init", default="", help="start from these weights (a checkpoint folder), fresh optimizer"
    )
    ap.add_argument(
        "--patch-size", type=int, default=None, help="ViT patch size (default: tiny_detector.SIZES)"
    )
    ap.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="input side in px (default: tiny_detector.SIZES); scenes are generated at this size",
    )
    ap.add_argument(
        "--assign",
        default="center",
        choices=["center", "inside"],
        help="positive patches: near each centre, or every patch inside the box (see `assign`)",
    )
    args = ap.parse_args(argv)

    import torch

    from vsd.propose.tiny_detector import SIZES, build_tiny_detector

    torch.set_num_threads(args.threads)
    args.patch_size = args.patch_size or SIZES["patch_size"]
    args.image_size = args.image_size or SIZES["image_size"]
    model, processor = build_tiny_detector(
        seed=args.seed, patch_size=args.patch_size, image_size=args.image_size
    )
    if args.init:
        from safetensors.torch import load_file

        state = {k: v.float() for k, v in load_file(os.path.join(args.init, "model.safetensors")).items()}
        state = widen_patches(state, model.state_dict())
        result = model.load_state_dict(state, strict=False)  # the box bias is a buffer, not saved
        if result.unexpected_keys or [k for k in result.missing_keys if k != "box_bias"]:
            raise SystemExit(f"--init {args.init}: weights do not fit this model: {result}")
        print(f"weights from {args.init}", flush=True)
    grid = args.image_size // args.patch_size
    # Padded to the longest name, not to 16 like the processor: a causal text tower pools at EOS, so
    # the embeddings are the same and the text side costs a third.
    tokens = processor.tokenizer(list(VOCABULARY), padding=True, return_tensors="pt")
    model.to(args.device)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim > 1 and "embedding" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": rest, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.98),
    )
    ckpt = os.path.join(args.out, "checkpoint")
    start, elapsed, history = 0, 0.0, []
    if args.resume and os.path.exists(os.path.join(ckpt, "state.pt")):
        state = torch.load(os.path.join(ckpt, "state.pt"), weights_only=False, map_location=args.device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, elapsed, history = state["step"], state["elapsed"], state["history"]
        print(f"resumed at step {start} ({elapsed:.0f} s trained)", flush=True)
    print(
        f"tiny detector: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, "
        f"{len(VOCABULARY)} names, {args.steps} steps of batch {args.batch}",
        flush=True,
    )

    model.train()
    t_run, parts_sum, n_parts = time.perf_counter(), {}, 0
    step = start
    while step < args.steps:
        if args.time_limit and elapsed + time.perf_counter() - t_run > args.time_limit * 60:
            print(f"time limit reached at step {step}", flush=True)
            break
        lr = lr_at(step, args, elapsed + time.perf_counter() - t_run)
        for group in opt.param_groups:
            group["lr"] = lr
        inputs, cls_t, box_t, weight = training_batch(
            step, args.batch, args.data_seed, processor, tokens, grid, args.assign, args.image_size
        )
        inputs = {k: v.to(args.device) for k, v in inputs.items()}
        cls_t, box_t, weight = cls_t.to(args.device), box_t.to(args.device), weight.to(args.device)
        loss, parts = dense_loss(model(**inputs), cls_t, box_t, weight, args)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        for k, v in parts.items():
            parts_sum[k] = parts_sum.get(k, 0.0) + v
        n_parts += 1
        step += 1
        if step % args.log_every == 0:
            now = elapsed + time.perf_counter() - t_run
            print(
                f"step {step} "
                + " ".join(f"{k} {v / n_parts:.3f}" for k, v in parts_sum.items())
                + f" lr {lr:.2e} {now:.0f} s",
                flush=True,
            )
            parts_sum, n_parts = {}, 0
        if step % args.eval_every == 0 and step < args.steps:
            metrics = evaluate(model, processor, args)
            now = elapsed + time.perf_counter() - t_run
            key = best_setting(metrics)
            history.append({"step": step, "seconds": round(now), "best": key, **metrics[key]})
            print(
                f"eval step {step}: best {key}: R {metrics[key]['recall']:.3f} P {metrics[key]['precision']:.3f} "
                f"(box R {metrics[key]['box_recall']:.3f} P {metrics[key]['box_precision']:.3f})",
                flush=True,
            )
            save(model, processor, ckpt)
            torch.save(
                {
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "step": step,
                    "elapsed": now,
                    "history": history,
                },
                os.path.join(ckpt, "state.pt"),
            )
    trained = elapsed + time.perf_counter() - t_run

    metrics = evaluate(model, processor, args)
    key = best_setting(metrics)
    threshold, nms = (float(v) for v in key.split("/"))
    meta = {
        "architecture": "OwlViTForObjectDetection (vsd.propose.tiny_detector)",
        "score_threshold": threshold,
        "nms_iou": nms,
        "validation": {
            "seed": args.val_seed,
            "scenes": args.eval_scenes,
            "size": args.image_size,
            "best": key,
            "metrics": metrics[key],
            "f1": round(f1(metrics[key]), 4),
        },
        "steps": step,
        "train_seconds": round(trained),
        "history": history,
        "args": {k: v for k, v in vars(args).items() if k not in ("out", "resume")},
        "torch": torch.__version__,
    }
    save(model, processor, args.out, meta, half=True)
    print(
        f"done: {step} steps in {trained:.0f} s; threshold {threshold} NMS {nms}: "
        f"R {metrics[key]['recall']:.3f} P {metrics[key]['precision']:.3f} -> {args.out}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
