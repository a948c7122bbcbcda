"""One-GPU LoRA training throughput of our step code on LLaVA-1.5-7B/13B-shaped random weights.

    python bench/gpu_train.py                       # the table on a GPU (7B b8, 13B b4/b8, 13B b16+ckpt)
    python bench/gpu_train.py --runs 13b:8 13b:16:ckpt
    python bench/gpu_train.py --tiny                # the same code path on CPU in seconds

No downloads: the models are built from configs (CLIP ViT-L/14-336 + Vicuna-7B/13B shapes) with
random weights. LoRA r=128 on every language-model projection, AdamW, SDPA, 649-token samples
(576 image tokens + 73 text tokens, the last 32 of them the answer). It runs the training step of
vsd/train/loop.py (`answer_loss` + `TorchStepper` + `run_step`) without Ray or DeepSpeed, which
the GPU machine does not have. Utilisation counts 4 x params x tokens/s against the H100's
measured bf16 matmul rate (798 TFLOP/s), as the reference numbers do.

Levers used (the frozen vision tower is never back-propagated, so only the LM's activations
matter): logits only at answer positions (`answer_loss`), LoRA kept in bf16 like DeepSpeed's bf16
module (fp32-free activations), fused AdamW, no gradient checkpointing unless a run asks for it.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import LLAVA_TEXT_SHAPES  # noqa: E402 - bench/ is not a package

from vsd.train.loop import TorchStepper, make_optimizer, run_step  # noqa: E402

PEAK_BF16 = 798e12
SEQ_TEXT, SEQ_ANSWER = 73, 32

SHAPES = LLAVA_TEXT_SHAPES
VISION = {
    "full": dict(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        image_size=336,
        patch_size=14,
        projection_dim=768,
    ),
    "tiny": dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
        projection_dim=32,
    ),
}


def build_model(size: str, device, dtype):
    """A LLaVA-1.5-shaped model with random weights, built directly on ``device``."""
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    vision = CLIPVisionConfig(**VISION["tiny" if size == "tiny" else "full"])
    text = LlamaConfig(vocab_size=32064, max_position_embeddings=4096, **SHAPES[size])
    cfg = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=32000,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built in bf16 directly: a 13B fp32 copy would not fit next to it
    try:
        with torch.device(device):
            model = LlavaForConditionalGeneration(cfg)
    finally:
        torch.set_default_dtype(default)
    model.requires_grad_(False)
    n_image = (vision.image_size // vision.patch_size) ** 2
    return model, n_image


def make_batch(batch: int, n_image: int, image_size: int, device, dtype) -> dict:
    """``batch`` samples of n_image + 73 tokens: BOS, prompt, image tokens, prompt, answer (labels)."""
    import torch

    g = torch.Generator().manual_seed(1)
    seq = n_image + SEQ_TEXT
    ids = torch.randint(2, 32000, (batch, seq), generator=g)
    ids[:, 0] = 1
    ids[:, 5 : 5 + n_image] = 32000
    labels = torch.full_like(ids, -100)
    labels[:, -SEQ_ANSWER:] = ids[:, -SEQ_ANSWER:]
    pixels = torch.randn(batch, 3, image_size, image_size, generator=g)
    return {
        "input_ids": ids.to(device),
        "attention_mask": torch.ones_like(ids).to(device),
        "labels": labels.to(device),
        "pixel_values": pixels.to(device, dtype),
    }


def attach(model, dtype):
    from vsd.model.lora import LoraSettings, attach_lora

    peft_model = attach_lora(model, LoraSettings(rank=128, alpha=256.0, dropout=0.0))
    for p in peft_model.parameters():
        if p.requires_grad:
            p.data = p.data.to(dtype)
    return peft_model


def measure(model, n_image, image_size, batch, ckpt, steps, warmup, device, dtype) -> dict:
    import torch

    model.train()
    if ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_disable()
    optimizer = make_optimizer(model, 2e-4, 0.0)
    stepper = TorchStepper(model, optimizer, None, grad_accum=1, max_grad_norm=1.0)
    data = make_batch(batch, n_image, image_size, device, dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(warmup):
        run_step(stepper, [data], sync=sync)
    start, tokens = time.perf_counter(), 0
    for _ in range(steps):
        tokens += run_step(stepper, [data], sync=sync).tokens
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0.0
    del optimizer, stepper
    for p in model.parameters():
        p.grad = None
    return {"tokens_per_s": tokens / seconds, "peak_gib": peak}


def main(argv: list[str] | None = None) -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--runs",
        nargs="*",
        default=["7b:8", "13b:4", "13b:8", "13b:16:ckpt"],
        help="size:batch[:ckpt] entries (size 7b or 13b)",
    )
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--tiny", action="store_true", help="tiny shapes on CPU (tests the code path)")
    args = ap.parse_args(argv)

    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}")
    runs = [r.split(":") for r in (["tiny:4", "tiny:4:ckpt"] if args.tiny else args.runs)]
    print(f"{'model':6} {'batch':>5} {'ckpt':>5} {'params':>8} {'tokens/s':>10} {'util':>6} {'peak GiB':>9}")
    current, model = None, None
    for run in runs:
        size, batch, ckpt = run[0], int(run[1]), len(run) > 2 and run[2] == "ckpt"
        if size != current:
            model = base = None
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
            base, n_image = build_model(size, device, dtype)
            params = sum(p.numel() for p in base.parameters())
            image_size = base.config.vision_config.image_size
            model = attach(base, dtype)
            current = size
        try:
            r = measure(model, n_image, image_size, batch, ckpt, args.steps, args.warmup, device, dtype)
            util = 4 * params * r["tokens_per_s"] / PEAK_BF16
            print(
                f"{size:6} {batch:>5} {str(ckpt):>5} {params / 1e9:>7.2f}B {r['tokens_per_s']:>10,.0f} "
                f"{util:>6.1%} {r['peak_gib']:>9.1f}",
                flush=True,
            )
        except torch.OutOfMemoryError:
            print(f"{size:6} {batch:>5} {str(ckpt):>5} {params / 1e9:>7.2f}B {'OOM':>10}", flush=True)
            for p in model.parameters():
                p.grad = None
            gc.collect()
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
