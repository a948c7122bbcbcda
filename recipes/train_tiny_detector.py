#!/usr/bin/env python
"""Train the demo's tiny detector (RT-DETR, `vsd.demo.tiny_detector`) on synthetic scenes, on CPU.

Why: `vsd demo` annotates held-out scenes given *without* boxes, so it needs a detector that finds
the generator's shapes and names them (``red circle``) the way the prompts do. No pretrained
detector exists offline; this trains one from a seeded random initialisation on one CPU thread.
Scenes are generated on the fly (`vsd.data.synthetic`, < 1 ms each), never repeated: step ``s``
uses scenes ``s*batch .. (s+1)*batch-1`` of ``--data-seed``, so a run is a function of its flags
(one thread, seeded init, a step-based schedule) and resumes exactly (``--resume``)::

    python recipes/train_tiny_detector.py --out /tmp/tiny-detector      # the committed recipe
    # vsd/assets/tiny-detector/RECIPE.md has its numbers; --device cuda runs it on a GPU.

The loss is dense, per anchor, with no set matching (DETR's Hungarian matching converges in
hundreds of epochs, and transformers' implementation needs scipy). RT-DETR's encoder scores every
cell of its 3-level pyramid (strides 4/8/16 px) and the decoder refines the ``num_queries`` best:

* **assignment** (`assign`): each object is positive on the pyramid levels its size suits
  (`LEVELS`), at the cells whose centre lies in its box within 1.5 cells of its centre (FCOS
  centre sampling), or at least the nearest cell; smaller objects claim first, so a shape inside
  a container keeps its cells;
* **encoder** (every anchor) and **decoder** (each query inherits the target of the anchor it was
  selected from): quality focal loss on the name, towards the IoU of the predicted box with the
  true one (so the best box scores highest and NMS keeps it), L1 + generalised IoU on the box.

Every ``--eval-every`` steps it prints recall/precision at IoU 0.5 (right names) on
``--eval-scenes`` validation scenes (``--val-seed``) through the library's closed-vocabulary
backend; at the end it picks the score threshold and NMS IoU with the best F1 on them and writes
them, the first steps' losses (the reproducibility check) and the history to ``detector_meta.json``.
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

from vsd.demo.synthetic_truth import VOCABULARY, labelled_scenes, scene_at, scene_objects  # noqa: E402

THRESHOLDS = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6)
NMS_IOUS = (0.4, 0.5, 0.6, 0.7)
#: Per pyramid level (strides 4/8/16 px at 64 px), the range of an object's longer side (fraction of
#: the image) it is positive for. Overlapping ranges: a mid-sized shape trains two levels.
LEVELS = ((0.0, 0.25), (0.15, 0.5), (0.3, 1.01))
RADIUS = 1.5  # centre sampling: positives within this many cells of the object's centre
FIRST_LOSSES = 5  # steps whose losses the meta records, so a rerun can be checked against them


def scene_size(index: int, data_seed: int, image_size: int = 64):
    """Mostly the detector's input size; every 4th scene another size (3/4 to 2x of it), resized by
    the processor, so the detector is not tied to one."""
    if index % 4:
        return image_size
    return random.Random(f"tiny-detector-size:{data_seed}:{index}").randint(
        3 * image_size // 4, 2 * image_size
    )


def anchor_cells(image_size: int, strides=None) -> list[tuple[int, float, float, float]]:
    """``(level, cx, cy, cell)`` of every anchor, in the order of the model's flattened pyramid
    (levels in turn, each row-major); ``cell`` is the level's cell side as a fraction of the image."""
    from vsd.demo.tiny_detector import STRIDES

    out = []
    for level, stride in enumerate(strides or STRIDES):
        n = image_size // stride
        out += [(level, (x + 0.5) / n, (y + 0.5) / n, 1.0 / n) for y in range(n) for x in range(n)]
    return out


def assign(objects, cells) -> dict[int, int]:
    """Anchor index -> object index for one image (see the module doc); every object gets >= 1."""
    claimed: dict[int, int] = {}
    order = sorted(
        range(len(objects)),
        key=lambda k: ((objects[k].box[2] - objects[k].box[0]) * (objects[k].box[3] - objects[k].box[1]), k),
    )
    for k in order:
        x0, y0, x1, y1 = objects[k].box
        cx, cy, side = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0)
        levels = [i for i, (lo, hi) in enumerate(LEVELS) if lo <= side < hi]
        chosen = [
            a
            for a, (level, ax, ay, cell) in enumerate(cells)
            if level in levels
            and a not in claimed
            and x0 <= ax <= x1
            and y0 <= ay <= y1
            and abs(ax - cx) <= RADIUS * cell
            and abs(ay - cy) <= RADIUS * cell
        ]
        if not chosen:  # a speck between cell centres, or its cells taken: the nearest free cell
            free = [a for a, c in enumerate(cells) if c[0] == levels[0] and a not in claimed]
            chosen = [min(free, key=lambda a: (math.hypot(cells[a][1] - cx, cells[a][2] - cy), a))]
        for a in chosen:
            claimed[a] = k
    return claimed


def training_batch(step: int, batch: int, data_seed: int, processor, cells, image_size: int = 64):
    """Pixel values and dense targets of one step: per anchor the class id (-1: background) and box."""
    import torch

    from vsd.data.synthetic import render

    images = []
    labels = torch.full((batch, len(cells)), -1, dtype=torch.long)
    boxes = torch.zeros(batch, len(cells), 4)
    for b, i in enumerate(range(step * batch, (step + 1) * batch)):
        scene = scene_at(i, data_seed, scene_size(i, data_seed, image_size))
        objects = scene_objects(scene)
        images.append(render(scene))
        for a, k in assign(objects, cells).items():
            labels[b, a] = VOCABULARY.index(objects[k].label)
            boxes[b, a] = torch.tensor(objects[k].box)
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    return pixels, labels, boxes


def xyxy(cxcywh):
    import torch

    cx, cy, w, h = cxcywh.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def iou_and_giou(a, b):
    """(IoU, generalised IoU) of matching rows of two xyxy tensors."""
    import torch

    area = lambda t: (t[:, 2] - t[:, 0]).clamp(min=0) * (t[:, 3] - t[:, 1]).clamp(min=0)  # noqa: E731
    lt, rb = torch.max(a[:, :2], b[:, :2]), torch.min(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    union = area(a) + area(b) - inter
    hull = (torch.max(a[:, 2:], b[:, 2:]) - torch.min(a[:, :2], b[:, :2])).clamp(min=0).prod(dim=1)
    iou = inter / union.clamp(min=1e-9)
    return iou, iou - (hull - union) / hull.clamp(min=1e-9)


def head_loss(logits, pred_cxcywh, labels, boxes, quality: bool = False, gamma: float = 2.0) -> tuple:
    """(class, L1, GIoU) summed over one head's predictions. Class: sigmoid focal loss (alpha 0.25)
    towards 1 at each positive's name and 0 elsewhere; with ``quality``, quality focal loss (GFL)
    towards the IoU of the positive's predicted box instead (scores then rank boxes by quality, but
    the names are learnt far slower: targets start near 0)."""
    import torch
    import torch.nn.functional as F

    pos = labels >= 0
    target = torch.zeros_like(logits)
    pred = xyxy(pred_cxcywh[pos])
    iou, giou = iou_and_giou(pred, boxes[pos])
    target[pos, labels[pos]] = iou.detach().clamp(min=0.01) if quality else 1.0
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p = logits.sigmoid()
    if quality:
        cls = (ce * (target - p).abs() ** gamma).sum()
    else:
        p_t = p * target + (1 - p) * (1 - target)
        cls = (ce * (1 - p_t) ** gamma * (0.25 * target + 0.75 * (1 - target))).sum()
    return cls, (pred - boxes[pos]).abs().sum(), (1 - giou).sum()


def dense_loss(outputs, labels, boxes, args) -> tuple:
    """(total, parts): the encoder's every anchor plus the decoder's queries, each query with the
    target of the anchor it was selected from; normalised by the positive anchors."""
    import torch

    ind = torch.topk(outputs.enc_outputs_class.max(-1).values, outputs.logits.shape[1], dim=1).indices
    q_labels, q_boxes = labels.gather(1, ind), boxes.gather(1, ind.unsqueeze(-1).expand(-1, -1, 4))
    n = max(1.0, float((labels >= 0).sum()))
    heads = [(outputs.enc_outputs_class, outputs.enc_outputs_coord_logits.sigmoid(), labels, boxes)]
    heads.append((outputs.logits, outputs.pred_boxes, q_labels, q_boxes))
    parts = {"cls": 0.0, "l1": 0.0, "giou": 0.0}
    total = 0.0
    for logits, pred, lab, box in heads:
        cls, l1, gi = head_loss(logits, pred, lab, box, quality=args.cls_target == "iou")
        total = total + (args.w_cls * cls + args.w_l1 * l1 + args.w_giou * gi) / n
        for k, v in (("cls", cls), ("l1", l1), ("giou", gi)):
            parts[k] += v.item() / n
    return total, parts


class FactorizedNames:
    """Training-time parametrisation of a label head: the weights of ``{colour} {shape}`` are a
    colour vector plus a shape vector (and a free bias per name).

    Why: the 72 names are 12 colours x 6 shapes, and a plain 72-way head learns each name from its
    own examples only (~1/72 of the objects), while shared vectors learn a colour from 6x and a
    shape from 12x as many — the sharing OWL-ViT's text queries had. `materialize` writes the sum
    back into a plain `nn.Linear`, so the saved model is an unmodified RT-DETR.
    """

    @staticmethod
    def module(linear):
        import torch
        from torch import nn

        from vsd.data.synthetic import COLORS, SHAPES

        colours, shapes = list(COLORS), list(SHAPES)
        index = [(colours.index(n.split()[0]), shapes.index(n.split()[1])) for n in VOCABULARY]

        class Factorized(nn.Module):
            def __init__(self):
                super().__init__()
                d = linear.in_features
                self.colour = nn.Parameter(torch.randn(len(colours), d) * 0.02)
                self.shape = nn.Parameter(torch.randn(len(shapes), d) * 0.02)
                self.bias = nn.Parameter(linear.bias.detach().clone())
                self.register_buffer("ci", torch.tensor([c for c, _ in index]), persistent=False)
                self.register_buffer("si", torch.tensor([k for _, k in index]), persistent=False)

            def weight(self):
                return self.colour[self.ci] + self.shape[self.si]

            def forward(self, hidden):
                return nn.functional.linear(hidden, self.weight(), self.bias)

        return Factorized()

    @staticmethod
    def apply(model) -> None:
        """Replace the encoder's and every decoder layer's label head (in place, seeded by the caller)."""
        inner = model.model
        inner.enc_score_head = FactorizedNames.module(inner.enc_score_head)
        heads = inner.decoder.class_embed
        for i in range(len(heads)):
            heads[i] = FactorizedNames.module(heads[i])

    @staticmethod
    def materialize(model) -> None:
        """Back to plain `nn.Linear` heads holding the summed weights (in place)."""
        import torch
        from torch import nn

        def linear(head):
            if isinstance(head, nn.Linear):
                return head
            out = nn.Linear(head.colour.shape[1], head.ci.shape[0]).to(head.bias.device)
            with torch.no_grad():
                out.weight.copy_(head.weight())
                out.bias.copy_(head.bias)
            return out

        inner = model.model
        inner.enc_score_head = linear(inner.enc_score_head)
        heads = inner.decoder.class_embed
        for i in range(len(heads)):
            heads[i] = linear(heads[i])


def lr_at(step: int, args) -> float:
    """Linear warm-up, then cosine down to 5 % of ``--lr`` at ``--steps`` (steps only, never the
    clock: a rerun follows the same schedule)."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    t = min(1.0, (step - args.warmup) / max(1, args.steps - args.warmup))
    return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


def evaluate(model, processor, args) -> dict[str, dict]:
    """Recall/precision on the validation scenes per (score threshold, NMS IoU), one forward pass
    through the library's closed-vocabulary backend (the path the demo runs)."""
    from vsd.propose.config import ProposeConfig
    from vsd.propose.detections import finalize
    from vsd.propose.detectors import ClosedVocabularyDetector
    from vsd.propose.metrics import evaluate_detections

    model.eval()
    cfg = ProposeConfig(
        backend="closed_vocabulary",
        model="(in memory)",
        vocabulary=list(VOCABULARY),
        score_threshold=min(THRESHOLDS),
        nms_iou=1.0,
        max_detections=50,
        batch_size=32,
    )
    scenes = list(labelled_scenes(args.eval_scenes, args.val_seed, size=args.image_size))
    raw = ClosedVocabularyDetector(model, processor, cfg, args.device).detect([s[0] for s in scenes])
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


def save(model, processor, out: str, meta: dict | None = None, half: bool = False) -> None:
    import copy

    import torch

    os.makedirs(out, exist_ok=True)
    to_save = copy.deepcopy(model)
    FactorizedNames.materialize(to_save)
    if half:
        to_save = to_save.to("cpu", torch.float16)
    to_save.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    if meta is not None:
        with open(os.path.join(out, "detector_meta.json"), "w") as f:
            json.dump(meta, f, indent=2)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--out", required=True, help="folder of the final checkpoint (and checkpoint/ while training)"
    )
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--clip", type=float, default=1.0, help="gradient-norm clipping")
    ap.add_argument("--w-cls", type=float, default=2.0)
    ap.add_argument(
        "--names",
        default="factorized",
        choices=["factorized", "free"],
        help="label head while training: colour + shape vectors (`FactorizedNames`) or 72 free rows",
    )
    ap.add_argument(
        "--cls-target",
        default="hard",
        choices=["hard", "iou"],
        help="name target at positives: 1 (focal loss) or the predicted box's IoU (quality focal loss)",
    )
    ap.add_argument("--w-l1", type=float, default=5.0)
    ap.add_argument("--w-giou", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=0, help="weight initialisation seed")
    ap.add_argument("--data-seed", type=int, default=777000, help="seed of the training scenes")
    ap.add_argument(
        "--val-seed", type=int, default=777001, help="seed of the validation scenes (threshold choice)"
    )
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--eval-scenes", type=int, default=90)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--device",
        default="cpu",
        help="cpu, or cuda where one is lent (same recipe, far more steps per minute)",
    )
    ap.add_argument(
        "--time-limit",
        type=float,
        default=0,
        help="stop after this many minutes (the schedule stays step-based; resume to finish)",
    )
    ap.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint")
    ap.add_argument(
        "--image-size", type=int, default=None, help="input side in px (default: tiny_detector.SIZES)"
    )
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    import torch

    from vsd.demo.tiny_detector import SIZES, build_tiny_detector

    torch.set_num_threads(args.threads)
    args.image_size = args.image_size or SIZES["image_size"]
    model, processor = build_tiny_detector(seed=args.seed, image_size=args.image_size)
    if args.names == "factorized":
        torch.manual_seed(args.seed)
        FactorizedNames.apply(model)
    cells = anchor_cells(args.image_size)
    model.to(args.device)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1 and "embed" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim > 1 and "embed" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": rest, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.98),
    )
    ckpt = os.path.join(args.out, "checkpoint")
    start, elapsed, history, first = 0, 0.0, [], []
    if args.resume and os.path.exists(os.path.join(ckpt, "state.pt")):
        state = torch.load(os.path.join(ckpt, "state.pt"), weights_only=False, map_location=args.device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, elapsed, history = state["step"], state["elapsed"], state["history"]
        first = state.get("first_losses", [])
        print(f"resumed at step {start} ({elapsed:.0f} s trained)", flush=True)
    print(
        f"tiny detector: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, "
        f"{len(VOCABULARY)} names, {len(cells)} anchors, {args.steps} steps of batch {args.batch}",
        flush=True,
    )

    def checkpoint(step: int, now: float) -> None:
        save(model, processor, ckpt)
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "step": step,
                "elapsed": now,
                "history": history,
                "first_losses": first,
            },
            os.path.join(ckpt, "state.pt"),
        )

    model.train()
    t_run, parts_sum, n_parts = time.perf_counter(), {}, 0
    step = start
    while step < args.steps:
        if args.time_limit and time.perf_counter() - t_run > args.time_limit * 60:
            print(f"time limit reached at step {step}: --resume continues", flush=True)
            checkpoint(step, elapsed + time.perf_counter() - t_run)
            return 0
        lr = lr_at(step, args)
        for group in opt.param_groups:
            group["lr"] = lr
        pixels, labels, boxes = training_batch(
            step, args.batch, args.data_seed, processor, cells, args.image_size
        )
        outputs = model(pixel_values=pixels.to(args.device))
        loss, parts = dense_loss(outputs, labels.to(args.device), boxes.to(args.device), args)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        if step < FIRST_LOSSES:
            first.append(round(loss.item(), 6))
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
            checkpoint(step, now)
    trained = elapsed + time.perf_counter() - t_run
    checkpoint(step, trained)  # a later ``--resume --steps N`` continues from here

    metrics = evaluate(model, processor, args)
    key = best_setting(metrics)
    threshold, nms = (float(v) for v in key.split("/"))
    meta = {
        "architecture": "RTDetrForObjectDetection (vsd.demo.tiny_detector)",
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
        "first_losses": first,
        "history": history,
        "args": {k: v for k, v in vars(args).items() if k not in ("out", "resume", "time_limit")},
        "torch": torch.__version__,
    }
    save(model, processor, args.out, meta, half=False)
    print(
        f"done: {step} steps in {trained:.0f} s; threshold {threshold} NMS {nms}: "
        f"R {metrics[key]['recall']:.3f} P {metrics[key]['precision']:.3f} -> {args.out}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
