"""The hf engine on LLaVA-1.5-7B/13B-shaped random weights vs naive HF ``generate``, same run.

    python bench/gpu_annotate.py                       # on a CUDA GPU: 7b and 13b, bf16, SDPA
    python bench/gpu_annotate.py --tiny                # CPU smoke test of the same code path
    python bench/gpu_annotate.py --sizes 13b --images 96 --batch-size 48

Weights are random, built from configs (no download): speed depends on shapes, not values. Each
image gets the 3 task prompts. Naive = every (image, task) its own request through
``model.generate`` (batch 64, greedy, ``--max-new-tokens``), as a user of plain transformers
would; ours = `HFEngine` (one prefill of each image for its 3 prompts, task 1 scored as a choice,
tasks 2/3 decoded together). The compute floor counts what one image needs when its prefix is
shared: 2 · params · (image tokens + Σ over tasks of (prompt tokens + new tokens)) at 790 TFLOP/s
(the H100/H200 bf16 dense peak measured on these machines).

Prints one table row per size and ``RATIO gpu_annotate_<size> …`` (ours / naive, target 2.5) and
``RATIO gpu_annotate_floor_<size> …`` (fraction of the floor, target 0.5), the 13B (or largest)
speed-up last as ``RATIO gpu_annotate …``. Needs torch + transformers only (no ray).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import LLAVA_TEXT_SHAPES, jpeg_corpus, ratio_line  # noqa: E402 - bench/ is not a package; _common also puts the repo on sys.path

PEAK_FLOPS = 790e12
# LLaVA-1.5: Vicuna (Llama-2 shapes) + CLIP ViT-L/14 at 336 px (576 image tokens).
TEXT = LLAVA_TEXT_SHAPES
VISION = {
    "clip-l-336": dict(
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=4096,
        image_size=336,
        patch_size=14,
    ),
    "tiny": dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
    ),
}
TARGET_SPEEDUP, TARGET_FLOOR = 2.5, 0.5
# images per engine step: the prefix keys/values of a step stay on the GPU (7B ~0.3 GiB, 13B ~0.5 GiB
# per image) next to the weights, so 13B takes fewer on an 80 GB card
BATCH = {"7b": 64, "13b": 64, "tiny": 4}


def build_processor(image_size: int, patch_size: int):
    """LLaVA processor: our offline BPE tokenizer + a CLIP image processor (torchvision-backed when
    available, as on the GPU image; PIL otherwise)."""
    import transformers

    from vsd.model.tiny import IMAGE, LLAVA_CHAT_TEMPLATE, build_tokenizer

    tok = build_tokenizer()
    tok.padding_side = "left"  # for the naive batched generate
    try:
        import torchvision  # noqa: F401

        image_cls = transformers.CLIPImageProcessor
    except ImportError:
        image_cls = transformers.CLIPImageProcessorPil
    image_processor = image_cls(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    return transformers.LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        chat_template=LLAVA_CHAT_TEMPLATE,
        image_token=IMAGE,
        num_additional_image_tokens=1,
    )


def build_model(size: str, tok, *, tiny_vision: bool, dtype, device: str):
    import torch
    import transformers

    v = VISION["tiny" if tiny_vision else "clip-l-336"]
    text = transformers.LlamaConfig(
        **TEXT[size],
        num_key_value_heads=TEXT[size]["num_attention_heads"],
        vocab_size=max(32064 if size != "tiny" else 0, len(tok)),
        max_position_embeddings=4096,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    vision = transformers.CLIPVisionConfig(**v, projection_dim=768)
    n_tokens = (v["image_size"] // v["patch_size"]) ** 2
    config = transformers.LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        image_seq_length=n_tokens,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = transformers.LlavaForConditionalGeneration._from_config(
            config, dtype=dtype, attn_implementation="sdpa"
        )
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    return model.eval(), n_tokens


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def naive_generate(model, processor, reqs, *, batch: int, max_new_tokens: int, device: str) -> None:
    """Plain transformers: each (image, prompt) its own request, batched, greedy."""
    import torch

    from vsd.annotate.engines.base import pil_image
    from vsd.annotate.engines.prompting import chat_prompt

    flat = [(r.image, chat_prompt(p.text)) for r in reqs for p in r.prompts]
    for i in range(0, len(flat), batch):
        chunk = flat[i : i + batch]
        enc = processor(
            images=[pil_image(im) for im, _ in chunk],
            text=[t for _, t in chunk],
            padding=True,
            return_tensors="pt",
        ).to(device)
        enc["pixel_values"] = enc["pixel_values"].to(model.dtype)
        with torch.inference_mode():
            model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)


def run_size(size: str, args, processor, images) -> dict:
    import torch

    from vsd.annotate.engines import EngineConfig, make_engine
    from vsd.annotate.engines.base import ImageRequest
    from vsd.annotate.engines.hf import HFOptions
    from vsd.annotate.engines.prompting import chat_prompt, task_prompts

    device = args.device
    dtype = torch.float32 if args.tiny and not device.startswith("cuda") else torch.bfloat16
    model, n_img = build_model(size, processor.tokenizer, tiny_vision=args.tiny, dtype=dtype, device=device)
    params = sum(p.numel() for p in model.parameters())
    reqs = [ImageRequest(f"i{n}", img, task_prompts("cup", "table")) for n, img in enumerate(images)]
    # each prompt's tokens with its template (USER: ... ASSISTANT:), the image counted apart
    prompt_tokens = [
        len(processor.tokenizer(chat_prompt(p.text, image_token=""))["input_ids"]) for p in reqs[0].prompts
    ]
    tokens_per_image = n_img + sum(t + args.max_new_tokens for t in prompt_tokens)
    floor = PEAK_FLOPS / (2 * params * tokens_per_image)

    naive_generate(
        model, processor, reqs[:2], batch=args.naive_batch, max_new_tokens=args.max_new_tokens, device=device
    )  # warm-up
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    _sync(device)
    t0 = time.perf_counter()
    naive_generate(
        model, processor, reqs, batch=args.naive_batch, max_new_tokens=args.max_new_tokens, device=device
    )
    _sync(device)
    t_naive = time.perf_counter() - t0
    mem_naive = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else 0.0

    variants = {}
    for variant in args.variants.split(","):
        # auto: the engine as configured by default (CUDA graphs, fused prefix kernel where it runs);
        # matmul: prefix part by two matmuls; eager: no CUDA graphs
        # phase times in the JSON (timings adds a sync per phase)
        opts = HFOptions(
            cuda_graph=variant != "eager",
            prefix_attention="matmul" if variant == "matmul" else "auto",
            timings=True,
        )
        cfg = EngineConfig(
            kind="hf",
            device=device,
            dtype="bfloat16" if dtype == torch.bfloat16 else "float32",
            max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size or BATCH[size],
            hf=opts,
        )
        engine = make_engine(cfg, model=model, processor=processor)
        engine.generate(reqs[: min(len(reqs), cfg.batch_size)])  # warm-up: one full-size step
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        engine.timings.clear()
        _sync(device)
        t0 = time.perf_counter()
        results = engine.generate(reqs)
        _sync(device)
        t = time.perf_counter() - t0
        assert len(results) == len(reqs) and all(len(r.answers) == 3 for r in results)
        variants[variant] = dict(
            ips=len(reqs) / t,
            seconds=t,
            graph=engine.graph_used,
            flash=engine.flash_prefix,
            phases={k: round(v, 3) for k, v in engine.timings.items()},
            peak_gib=torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else 0.0,
        )
        engine.close()
        del engine
    first = variants[args.variants.split(",")[0]]
    t_ours, mem_ours = first["seconds"], first["peak_gib"]
    assert len(results) == len(reqs) and all(len(r.answers) == 3 for r in results)
    row = dict(
        size=size,
        params_b=params / 1e9,
        images=len(reqs),
        image_tokens=n_img,
        prompt_tokens=prompt_tokens,
        naive_ips=len(reqs) / t_naive,
        ours_ips=len(reqs) / t_ours,
        floor_ips=floor,
        speedup=t_naive / t_ours,
        floor_fraction=(len(reqs) / t_ours) / floor,
        peak_gib_naive=mem_naive,
        peak_gib_ours=mem_ours,
        batch_size=args.batch_size or BATCH[size],
        naive_batch=args.naive_batch,
        max_new_tokens=args.max_new_tokens,
        device=device,
        variants=variants,
    )
    del model
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="7b,13b", help="comma separated: 7b, 13b (tiny with --tiny)")
    ap.add_argument("--images", type=int, default=128, help="images per timed run (3 prompts each)")
    ap.add_argument("--batch-size", type=int, default=None, help=f"images per engine step (default {BATCH})")
    ap.add_argument("--naive-batch", type=int, default=64, help="requests per naive generate call")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument(
        "--variants",
        default="auto",
        help="engine variants to time, first one reported: "
        "auto (default engine), matmul (no fused prefix kernel), eager (no CUDA graphs)",
    )
    ap.add_argument("--tiny", action="store_true", help="tiny shapes on CPU: tests the script, not the speed")
    ap.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = ap.parse_args(argv)

    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.tiny:
        args.sizes = "tiny"
    elif not args.device.startswith("cuda"):
        print("gpu_annotate: no CUDA device; use --tiny for the CPU smoke test", file=sys.stderr)
        return 2
    v = VISION["tiny" if args.tiny else "clip-l-336"]
    processor = build_processor(v["image_size"], v["patch_size"])
    images = jpeg_corpus(args.images, 400 if not args.tiny else 48)
    print(
        f"device {torch.cuda.get_device_name() if args.device.startswith('cuda') else 'cpu'}, "
        f"torch {torch.__version__}, transformers {__import__('transformers').__version__}"
    )
    print(
        "| model | params | naive images/s | ours images/s | speed-up | floor images/s | of floor | peak GiB naive/ours |"
    )
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for size in args.sizes.split(","):
        row = run_size(size.strip(), args, processor, images)
        rows.append(row)
        print(
            f"| {row['size']} | {row['params_b']:.2f}B | {row['naive_ips']:.2f} | {row['ours_ips']:.2f} | "
            f"{row['speedup']:.2f}x | {row['floor_ips']:.1f} | {row['floor_fraction']:.0%} | "
            f"{row['peak_gib_naive']:.1f}/{row['peak_gib_ours']:.1f} |",
            flush=True,
        )
        print(
            f"  {row['size']}: prompt tokens {row['prompt_tokens']}, {row['image_tokens']} image tokens",
            flush=True,
        )
        for name, v in row["variants"].items():
            print(
                f"  {row['size']} ours[{name}]: {v['ips']:.2f} images/s, cuda graph {v['graph']}, "
                f"flash prefix {v['flash']}, phases (s) {v['phases']}, peak {v['peak_gib']:.1f} GiB",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    for row in rows:
        print(ratio_line(f"gpu_annotate_floor_{row['size']}", row["floor_fraction"], TARGET_FLOOR))
    for row in rows[:-1]:
        print(ratio_line(f"gpu_annotate_{row['size']}", row["speedup"], TARGET_SPEEDUP))
    print(ratio_line("gpu_annotate", rows[-1]["speedup"], TARGET_SPEEDUP))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
