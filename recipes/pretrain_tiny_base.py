#!/usr/bin/env python
"""Pretrain the tiny LLaVA base that `vsd demo` fine-tunes: grounded scene captions, from scratch.

Why: a tiny LLaVA trained from random weights on 2 CPU cores learns the VSD relations too slowly
for a 5-minute demo. LLaVA-VSD starts from a LLaVA that already grounds language in images and
only teaches the task formats with LoRA; this is that recipe in miniature. The base sees
synthetic scenes (``vsd.data.synthetic``) with the visual prompt drawn (subject box red, object box
green, ``vsd.data.visual_prompt``), under generic captioning prompts -- never the three VSD task
prompts -- and learns to write a caption of the pair (``The red circle is to the left of the blue
square.`` or one of the generator's VSDv1-style captions). Every weight trains (vision tower,
projector, language model): there is no pretrained CLIP to start from offline.

Plain PyTorch (no Ray, no DeepSpeed), so it runs wherever torch + transformers are::

    # one GPU, ~8 minutes (the committed checkpoint; see vsd/assets/tiny-vsd-base/RECIPE.md):
    python recipes/pretrain_tiny_base.py --device cuda --steps 30000 --batch 384 --lr 1.5e-3 \
        --scenes 200000 --workers 14 --eval-every 1000 --eval-scenes 450 --time-limit 6.5 --warmup 500
    # CPU works too (same flags without --device cuda) but takes hours on 2 cores: ~1.6 s per
    # batch-8 step unshared, and the recipe needs millions of samples.

The held-out estimate printed every ``--eval-every`` steps scores the 9 captions
``The {subject} is {relation} the {object}.`` of fresh scenes (another seed) by log-likelihood and
picks the best: caption-level relation accuracy, chance 1/9.

Only the tokenizer and the image statistics are read from the processor files, so the loop also runs
where transformers cannot load this repository's processor classes; where it can, the fast path is
checked token-for-token and pixel-for-pixel against ``vsd.train.collator.LlavaCollator`` first.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from vsd.relations import RELATIONS  # noqa: E402

DEFAULT_OUT = os.path.join(os.path.dirname(__file__), "..", "vsd", "assets", "tiny-vsd-base")
PROCESSOR_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
    "processor_config.json",
    "preprocessor_config.json",
    "generation_config.json",
)

# Generic captioning prompts (not the VSD task prompts): the base learns to describe, the demo's
# LoRA then teaches the three task formats.
NAMED_PROMPTS = (
    "Describe the {s} and the {o} in the image.",
    "Write a short caption about the {s} and the {o}.",
    "Caption the picture, mentioning the {s} and the {o}.",
)
OPEN_PROMPTS = ("Describe the two boxed objects.", "Write a caption for the marked objects.")
# Relation questions (only with --qa-share > 0, and then say so in RECIPE.md): paraphrases of the
# task-1 question, never its verbatim prompt, answered with the bare relation phrase. They bring the
# base one short step from task 1, so a very short LoRA fine-tune gets there.
QA_PROMPTS = (
    "Which preposition fits the blank: the {s} is [BLANK] the {o}? Answer with one of: {choices}.",
    "Complete the phrase 'the {s} is ___ the {o}' with one of: {choices}.",
    "How is the {s} placed relative to the {o}? Options: {choices}.",
)
EVAL_PROMPT = NAMED_PROMPTS[0]


def canonical_caption(s: str, rel: str, o: str) -> str:
    return f"The {s} is {rel} the {o}."


# ----------------------------------------------------------------------------- data


def scene_image(index: int, seed: int, size: int, relation: str | None = None):
    """(visual-prompt image as uint8 HxWx3, scene) of scene ``index``: rendered, boxes drawn and
    JPEG-encoded at quality 90 exactly as `vsd.data.instructions` writes the training images."""
    from PIL import Image

    from vsd.data.synthetic import make_scene, render
    from vsd.data.visual_prompt import draw_visual_prompt

    rel = relation or RELATIONS[index % len(RELATIONS)]
    sc = make_scene(index, rel, seed, size)
    w, h = sc.width, sc.height
    norm = lambda b: (b[0] / w, b[1] / h, b[2] / w, b[3] / h)  # noqa: E731
    drawn = draw_visual_prompt(render(sc), norm(sc.subject.box), norm(sc.object.box))
    buf = io.BytesIO()
    drawn.save(buf, format="JPEG", quality=90)
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    return arr, sc


def caption_sample(
    index: int, seed: int, size: int, qa_share: float = 0.0
) -> tuple[np.ndarray, str, str, int]:
    """One pretraining sample: (image, prompt, caption, relation index)."""
    from vsd.relations import parse_relation

    arr, sc = scene_image(index, seed, size)
    rng = random.Random(f"pretrain:{seed}:{index}")
    s, o, rel = sc.subject.name, sc.object.name, sc.relation
    if qa_share and rng.random() < qa_share:
        choices = list(RELATIONS)
        rng.shuffle(choices)  # the question never lists them in the task-1 prompt's order
        prompt = rng.choice(QA_PROMPTS).format(s=s, o=o, choices=", ".join(choices))
        return arr, prompt, rel, RELATIONS.index(rel)
    agreeing = [c for c in sc.captions + [sc.caption_v2] if parse_relation(c, s, o) == rel]
    if rng.random() < 0.8:
        prompt = rng.choice(NAMED_PROMPTS).format(s=s, o=o)
    else:
        prompt = rng.choice(OPEN_PROMPTS)
    caption = canonical_caption(s, rel, o) if (rng.random() < 0.5 or not agreeing) else rng.choice(agreeing)
    return arr, prompt, caption, RELATIONS.index(rel)


def _gen_chunk(args):
    start, stop, seed, size, qa_share = args
    return [caption_sample(i, seed, size, qa_share) for i in range(start, stop)]


def generate(n: int, seed: int, size: int, workers: int, qa_share: float = 0.0) -> list:
    chunks = [(a, min(n, a + 2000), seed, size, qa_share) for a in range(0, n, 2000)]
    if workers <= 1:
        return [s for c in chunks for s in _gen_chunk(c)]
    import multiprocessing as mp

    with mp.get_context("fork").Pool(workers) as pool:
        return [s for part in pool.map(_gen_chunk, chunks) for s in part]


class Encoder:
    """Prompt/answer -> token ids + labels (answer only) in the checkpoint's LLaVA-1.5 format."""

    def __init__(self, base_dir: str):
        from transformers import AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(base_dir)
        cfg = json.load(open(os.path.join(base_dir, "config.json")))
        self.n_image = cfg["image_seq_length"]
        pre = json.load(open(os.path.join(base_dir, "processor_config.json")))["image_processor"]
        self.mean = np.asarray(pre["image_mean"], dtype=np.float32)
        self.std = np.asarray(pre["image_std"], dtype=np.float32)
        self.scale = float(pre.get("rescale_factor", 1 / 255))
        self.size = int(pre["crop_size"]["height"])
        self.pad_id = self.tok.pad_token_id

    def texts(self, prompt: str, answer: str) -> tuple[str, str]:
        image = "<image>" * self.n_image
        head = f"USER: {image}\n{prompt} ASSISTANT:"
        return head, f"{head} {answer}{self.tok.eos_token}"

    def encode(self, prompt: str, answer: str) -> tuple[list[int], list[int]]:
        head, full = self.texts(prompt, answer)
        h = self.tok(head)["input_ids"]
        ids = self.tok(full)["input_ids"]
        assert ids[: len(h)] == h, "prompt is not a token prefix of the conversation"
        return ids, [-100] * len(h) + ids[len(h) :]

    def pixels(self, arr: np.ndarray) -> np.ndarray:
        if arr.shape[0] != self.size or arr.shape[1] != self.size:
            raise ValueError(f"scenes must be {self.size}px (the model's image size), got {arr.shape[:2]}")
        x = arr.astype(np.float32) * self.scale
        return ((x - self.mean) / self.std).transpose(2, 0, 1)

    def check_against_collator(self, base_dir: str, samples: list) -> bool:
        """The fast path must equal what training and serving send (LlavaCollator + processor)."""
        try:
            from PIL import Image

            from vsd.model.loader import load_processor
            from vsd.train.collator import LlavaCollator

            processor = load_processor(base_dir)
        except Exception as exc:  # noqa: BLE001 - another transformers version on a GPU box
            print(f"[check] processor not loadable here ({type(exc).__name__}); skipping the collator check")
            return False
        coll = LlavaCollator(processor, max_length=4096)
        for arr, prompt, caption, _ in samples:
            batch = coll([{"image": Image.fromarray(arr), "prompt": prompt, "answer": caption}])
            ids, labels = self.encode(prompt, caption)
            assert batch["input_ids"][0].tolist() == ids, "token ids differ from LlavaCollator"
            assert batch["labels"][0].tolist() == labels, "labels differ from LlavaCollator"
            diff = float(np.abs(batch["pixel_values"][0].numpy() - self.pixels(arr)).max())
            assert diff < 1e-4, f"pixel values differ from the processor by {diff}"
        print(f"[check] fast path == LlavaCollator on {len(samples)} samples")
        return True


def pad(rows: list[tuple[list[int], list[int]]], pad_id: int):
    import torch

    width = max(len(i) for i, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    att = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (i, lab) in enumerate(rows):
        ids[r, : len(i)] = torch.tensor(i)
        labels[r, : len(lab)] = torch.tensor(lab)
        att[r, : len(i)] = 1
    return ids, labels, att


# ----------------------------------------------------------------------------- evaluation


def sequence_logprobs(model, ids, labels, att, pixels):
    """Sum of the label tokens' log-probabilities per row."""
    import torch

    logits = model(input_ids=ids, attention_mask=att, pixel_values=pixels).logits.float()
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    tgt = labels[:, 1:]
    mask = tgt != -100
    picked = logp.gather(-1, tgt.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * mask).sum(-1)


def caption_accuracy(model, enc: Encoder, scenes: list, device: str, amp_dtype=None) -> tuple[float, dict]:
    """Held-out caption-level relation accuracy: argmax over the 9 canonical captions."""
    import torch

    model.eval()
    per = {r: [0, 0] for r in RELATIONS}
    with (
        torch.no_grad(),
        torch.autocast(device_type=device.split(":")[0], dtype=amp_dtype, enabled=amp_dtype is not None),
    ):
        for k in range(0, len(scenes), 8):
            chunk = scenes[k : k + 8]
            rows, pix = [], []
            for arr, sc in chunk:
                p = enc.pixels(arr)
                prompt = EVAL_PROMPT.format(s=sc.subject.name, o=sc.object.name)
                for rel in RELATIONS:
                    rows.append(enc.encode(prompt, canonical_caption(sc.subject.name, rel, sc.object.name)))
                    pix.append(p)
            ids, labels, att = pad(rows, enc.pad_id)
            pixels = torch.from_numpy(np.stack(pix)).to(device)
            scores = sequence_logprobs(model, ids.to(device), labels.to(device), att.to(device), pixels)
            scores = scores.view(len(chunk), len(RELATIONS)).argmax(-1).tolist()
            for (_, sc), pred in zip(chunk, scores):
                per[sc.relation][1] += 1
                per[sc.relation][0] += int(RELATIONS[pred] == sc.relation)
    model.train()
    total = sum(c for c, _ in per.values()) / max(1, sum(n for _, n in per.values()))
    return total, {r: c / n for r, (c, n) in per.items() if n}


def heldout_scenes(n: int, seed: int, size: int) -> list:
    return [scene_image(i, seed, size) for i in range(n)]


# ----------------------------------------------------------------------------- main


def build_init(args, work: str) -> str:
    from vsd.model.tiny import build_tiny_llava

    return build_tiny_llava(
        work,
        image_size=args.image_size,
        patch_size=args.patch,
        vision_hidden=args.vision_hidden,
        vision_layers=args.vision_layers,
        text_hidden=args.text_hidden,
        text_layers=args.text_layers,
        heads=args.heads,
        seed=args.seed,
    )


def save(model, init_dir: str, out: str, meta: dict) -> None:
    import torch

    os.makedirs(out, exist_ok=True)
    for name in os.listdir(out):
        if name.endswith(".safetensors") or name == "config.json":
            os.remove(os.path.join(out, name))
    half = {k: v.detach().to("cpu", torch.float16) for k, v in model.state_dict().items()}
    model.save_pretrained(out, state_dict=half, safe_serialization=True)
    cfg_path = os.path.join(out, "config.json")
    cfg = json.load(open(cfg_path))
    cfg["dtype"] = "float16"
    json.dump(cfg, open(cfg_path, "w"), indent=2)
    for name in PROCESSOR_FILES:  # tokenizer + processor exactly as vsd.model.tiny wrote them
        if os.path.exists(os.path.join(init_dir, name)):
            shutil.copy(os.path.join(init_dir, name), os.path.join(out, name))
    json.dump(meta, open(os.path.join(out, "pretrain_meta.json"), "w"), indent=1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help="where the checkpoint is written")
    ap.add_argument(
        "--init", default="", help="an existing build_tiny_llava dir to start from (default: build one)"
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--scenes", type=int, default=30000, help="pre-generated training scenes (seed --seed)")
    ap.add_argument("--workers", type=int, default=1, help="processes generating the scenes")
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--eval-scenes", type=int, default=180, help="held-out scenes (seed --seed + 1000)")
    ap.add_argument(
        "--qa-share",
        type=float,
        default=0.0,
        help="share of samples that ask a relation question (a task-1 paraphrase) instead of a "
        "caption; 0 = captions only (the committed base)",
    )
    ap.add_argument(
        "--time-limit", type=float, default=0, help="stop (and save) after this many minutes of training"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--patch", type=int, default=8)
    ap.add_argument("--vision-hidden", type=int, default=128)
    ap.add_argument("--vision-layers", type=int, default=4)
    ap.add_argument("--text-hidden", type=int, default=192)
    ap.add_argument("--text-layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    args = ap.parse_args(argv)

    import torch
    from transformers import LlavaForConditionalGeneration

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)
    t0 = time.time()
    work = tempfile.mkdtemp(prefix="tiny-base-init-")
    init_dir = args.init or build_init(args, work)
    enc = Encoder(init_dir)
    data = generate(args.scenes, args.seed, args.image_size, args.workers, args.qa_share)
    held = heldout_scenes(args.eval_scenes, args.seed + 1000, args.image_size)
    enc.check_against_collator(init_dir, data[:4])
    images = torch.from_numpy(np.stack([d[0] for d in data]))  # N x H x W x 3 uint8
    encoded = [enc.encode(p, c) for _, p, c, _ in data]
    print(
        f"[data] {len(data)} scenes + {len(held)} held-out in {time.time() - t0:.0f}s; "
        f"tokens/sample {np.mean([len(i) for i, _ in encoded]):.0f}",
        flush=True,
    )

    device = args.device
    model = LlavaForConditionalGeneration.from_pretrained(init_dir, dtype=torch.float32).to(device)
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"[model] {n_params / 1e6:.2f}M parameters", flush=True)
    amp = torch.bfloat16 if device.startswith("cuda") else None
    mean = torch.tensor(enc.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(enc.std, device=device).view(1, 3, 1, 1)
    images = images.to(device)
    all_ids, all_labels, all_att = (t.to(device) for t in pad(encoded, enc.pad_id))
    lengths = all_att.sum(-1)
    t_train = time.time()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    other = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": other, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.98),
    )
    budget = args.time_limit * 60

    def progress(s: int) -> float:
        # With --time-limit the cosine follows whichever ends first, steps or time, so a run cut
        # by the clock still ends at the low learning rate instead of mid-schedule.
        done = s / max(1, args.steps)
        if budget:
            done = max(done, (time.time() - t_train) / budget)
        return min(1.0, done)

    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: min(1.0, (s + 1) / args.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress(s)))),
    )
    gen = torch.Generator().manual_seed(args.seed)
    history, best = [], None
    ema = None
    step = 0
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, len(data), (args.batch,), generator=gen).to(device)
        width = int(lengths[idx].max())
        ids, labels, att = all_ids[idx, :width], all_labels[idx, :width], all_att[idx, :width]
        pix = (images[idx].permute(0, 3, 1, 2).float() * enc.scale - mean) / std
        with torch.autocast(device_type=device.split(":")[0], dtype=amp, enabled=amp is not None):
            loss = model(input_ids=ids, attention_mask=att, pixel_values=pix, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        elapsed = time.time() - t_train
        last = step == args.steps or (args.time_limit and elapsed > args.time_limit * 60)
        if step % 100 == 0:
            print(f"step {step} loss {ema:.3f} lr {sched.get_last_lr()[0]:.2e} {elapsed:.0f}s", flush=True)
        if step % args.eval_every == 0 or last:
            acc, per = caption_accuracy(model, enc, held, device, amp)
            history.append(
                {"step": step, "seconds": round(elapsed), "loss": round(ema, 4), "accuracy": round(acc, 4)}
            )
            print(
                f"[eval] step {step} held-out caption relation accuracy {acc:.3f} "
                + " ".join(f"{r}={a:.2f}" for r, a in per.items()),
                flush=True,
            )
            best = {"step": step, "accuracy": acc, "per_relation": per}
        if last:
            break
    meta = {
        "command": "python recipes/pretrain_tiny_base.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "steps": step,
        "batch": args.batch,
        "train_seconds": round(time.time() - t_train),
        "device": device,
        "device_name": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
        "threads": args.threads,
        "parameters": n_params,
        "train_scenes": args.scenes,
        "train_seed": args.seed,
        "qa_share": args.qa_share,
        "heldout_seed": args.seed + 1000,
        "heldout_scenes": args.eval_scenes,
        "final": best,
        "history": history,
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
    }
    save(model, init_dir, args.out, meta)
    shutil.rmtree(work, ignore_errors=True)
    print(
        f"[done] saved {args.out} ({sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out)) / 1e6:.2f} MB) "
        f"in {time.time() - t0:.0f}s total",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
