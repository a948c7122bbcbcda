"""`vsd export` (merge a trained adapter into a plain model) and `vsd model tiny` (build a tiny one)."""

from __future__ import annotations

import argparse

from vsd.errors import VSDError


def add_parser(subparsers) -> None:
    exp = subparsers.add_parser(
        "export",
        help="merge a LoRA checkpoint into its base: a plain LLaVA directory (hf or SGLang layout)",
        description="URI may be a training run (its latest complete checkpoint is used), one checkpoint "
        "dir (with adapter/ and meta.json) or a bare PEFT adapter dir (then --base is required).",
    )
    exp.add_argument(
        "--checkpoint", required=True, help="run dir, checkpoint dir or adapter dir (local or s3://)"
    )
    exp.add_argument("--out", required=True, help="output directory (local or s3://)")
    exp.add_argument(
        "--base", help="base model (hub id, path, s3://, tiny:llava); default: meta.json's base_model"
    )
    exp.add_argument(
        "--dtype",
        default="checkpoint",
        choices=["checkpoint", "float32", "bfloat16", "float16"],
        help="dtype of the merged weights (default: as the base is stored)",
    )
    exp.add_argument(
        "--layout",
        default="hf",
        choices=["hf", "sglang"],
        help="hf: transformers' LLaVA layout (engine.kind=hf); sglang: the original LLaVA layout "
        "with its CLIP tower inside, the one SGLang serves (engine.kind=sglang)",
    )
    exp.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    exp.add_argument("--trust-remote-code", action="store_true", help="allow the base's own modelling code")
    exp.set_defaults(func=run_export)

    model = subparsers.add_parser("model", help="model utilities")
    model_sub = model.add_subparsers(dest="model_command", required=True)
    tiny = model_sub.add_parser(
        "tiny", help="write a tiny offline LLaVA (or text LM) checkpoint for tests, demos"
    )
    tiny.add_argument("--out", required=True, help="output directory")
    tiny.add_argument("--image-tokens", type=int, help="image tokens per image (a square number, e.g. 576)")
    tiny.add_argument("--patch-size", type=int, default=8, help="vision patch size in pixels")
    tiny.add_argument("--arch", default="llava", choices=["llava", "llava_next"], help="model architecture")
    tiny.add_argument("--text-lm", action="store_true", help="a text-only causal LM (refinement) instead")
    tiny.add_argument("--seed", type=int, default=0, help="weights seed")
    tiny.set_defaults(func=run_tiny)


def run_export(args: argparse.Namespace) -> int:
    from vsd.model.checkpoints import resolve_adapter
    from vsd.model.export import export_info, merge_and_export

    adapter, meta = resolve_adapter(args.checkpoint)
    base = args.base or meta.get("base_model")
    if not base:
        raise VSDError(
            f"export: no base model known for {args.checkpoint} (no meta.json base_model); pass --base"
        )
    merge_and_export(
        base,
        adapter,
        args.out,
        dtype=args.dtype,
        trust_remote_code=args.trust_remote_code,
        overwrite=args.overwrite,
        layout=args.layout,
    )
    step = f" step {meta['step']}" if "step" in meta else ""
    sha = export_info(args.out).get("adapter_sha256")
    print(f"exported {adapter}{step} onto {base} -> {args.out} ({args.layout} layout, adapter_sha256 {sha})")
    return 0


def run_tiny(args: argparse.Namespace) -> int:
    from vsd.model.tiny import build_tiny_llava, build_tiny_text_lm

    if args.text_lm:
        path = build_tiny_text_lm(args.out, seed=args.seed)
    else:
        path = build_tiny_llava(
            args.out,
            patch_size=args.patch_size,
            image_tokens=args.image_tokens,
            arch=args.arch,
            seed=args.seed,
        )
    print(path)
    return 0
