"""Merge a LoRA adapter into its base and write a plain LLaVA directory; hash adapters stably.

SGLang does not serve LoRA on LLaVA models, so what goes to the annotation engines is a plain
checkpoint: merged safetensors, a config with no PEFT trace, the processor, tokenizer and chat
template, in one of two layouts: ``hf`` (transformers' ``LlavaForConditionalGeneration``, for the
``hf`` engine) or ``sglang`` (the original LLaVA layout with its CLIP tower inside the export, the
only one SGLang 0.5.23 serves; ``vsd/model/sglang_layout.py``). ``vsd_export.json`` next to it
records where it came from (base, adapter, adapter hash, layout), which is what the annotation rows
cite as ``adapter_sha256``, and what the model expects as input (``input``: image size, visual
prompt; ``answer_tokens``: the trained answer lengths), which annotation takes as its defaults.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from datetime import datetime, timezone

from vsd import storage
from vsd.errors import VSDError

EXPORT_META = "vsd_export.json"
LAYOUTS = ("hf", "sglang")
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# Fields of adapter_config.json that say where/when it was made, not what it computes.
_PROVENANCE_KEYS = {"base_model_name_or_path", "revision", "peft_version", "auto_mapping"}


def adapter_sha256(adapter_dir: str) -> str:
    """sha256 over the adapter's semantics: its config (minus provenance fields such as the base
    model's local path) and every tensor's name, dtype, shape and bytes, in name order. The same
    trained adapter hashes the same wherever it was saved or copied to."""
    import torch
    from safetensors import safe_open

    from vsd.model.loader import check_safetensors, localize

    path = localize(adapter_dir)
    config_path = os.path.join(path, "adapter_config.json")
    if not os.path.isfile(config_path):
        raise VSDError(f"adapter: {adapter_dir} has no adapter_config.json")
    check_safetensors(path, "adapter")
    with open(config_path, encoding="utf-8") as f:
        config = {k: v for k, v in json.load(f).items() if k not in _PROVENANCE_KEYS}
    digest = hashlib.sha256()
    digest.update(json.dumps(config, sort_keys=True, separators=(",", ":"), default=str).encode())
    weights = sorted(n for n in os.listdir(path) if n.endswith(".safetensors"))
    for name in weights:
        with safe_open(os.path.join(path, name), framework="pt") as st:
            for key in sorted(st.keys()):
                tensor = st.get_tensor(key).contiguous()
                digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
                digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _strip_peft_traces(model) -> None:
    """``merge_and_unload`` returns the base model, but transformers' PEFT integration may leave
    flags on it; none of them may reach the exported config."""
    for attr in ("peft_config", "_hf_peft_config_loaded", "active_adapter"):
        if attr in vars(model):
            delattr(model, attr)
    for key in list(vars(model.config)):
        if "peft" in key.lower() or "lora" in key.lower():
            delattr(model.config, key)


def _publish(local_dir: str, out_dir: str, overwrite: bool) -> None:
    """Move a finished export to ``out_dir`` (local rename or S3 upload); never half a directory."""
    if storage.is_s3(out_dir):
        if storage.list_files(out_dir) and not overwrite:
            raise VSDError(f"export: {out_dir} is not empty (pass --overwrite to replace it)")
        for root, _, files in os.walk(local_dir):
            for name in sorted(files):
                full = os.path.join(root, name)
                with open(full, "rb") as f:
                    storage.write_bytes(storage.join(out_dir, os.path.relpath(full, local_dir)), f.read())
        return
    out = os.path.abspath(os.path.expanduser(out_dir))
    if os.path.exists(out):
        if os.path.isdir(out) and not os.listdir(out):
            os.rmdir(out)
        elif overwrite:
            shutil.rmtree(out)
        else:
            raise VSDError(f"export: {out_dir} exists and is not empty (pass --overwrite to replace it)")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    shutil.move(local_dir, out)


def merge_and_export(
    base: str,
    adapter_dir: str,
    out_dir: str,
    *,
    dtype: str = "checkpoint",
    trust_remote_code: bool = False,
    overwrite: bool = False,
    layout: str = "hf",
) -> str:
    """Load ``base`` + ``adapter_dir``, merge the LoRA weights, write a plain model to ``out_dir``
    (local dir or ``s3://`` prefix) in ``layout`` (``hf`` or ``sglang``) and return ``out_dir``.
    ``dtype="checkpoint"`` keeps the base's stored dtype (bf16 for the 13B models), so the merged
    model is served as trained."""
    from vsd.model.checkpoints import resolve_adapter
    from vsd.model.loader import load_adapter, load_model
    from vsd.model.sglang_layout import write_original_layout

    if layout not in LAYOUTS:
        raise VSDError(f"export: layout must be one of {list(LAYOUTS)}, got {layout!r}")
    sha = adapter_sha256(adapter_dir)
    checkpoint_meta = resolve_adapter(adapter_dir)[1]
    model, processor = load_model(base, dtype=dtype, trust_remote_code=trust_remote_code)
    merged = load_adapter(model, adapter_dir).merge_and_unload()
    _strip_peft_traces(merged)
    parent = None if storage.is_s3(out_dir) else os.path.dirname(os.path.abspath(os.path.expanduser(out_dir)))
    if parent:
        os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".vsd-export-", dir=parent)
    try:
        if layout == "sglang":
            write_original_layout(merged, processor, tmp)
        else:
            merged.save_pretrained(tmp, safe_serialization=True)
            processor.save_pretrained(tmp)
        meta = {
            "base_model": str(base),
            "adapter": str(adapter_dir),
            "adapter_sha256": sha,
            "model_type": merged.config.model_type,
            "layout": layout,
            # the trained answer lengths (from the adapter's checkpoint): annotation's token budgets
            "answer_tokens": checkpoint_meta.get("answer_tokens") or {},
            # what the model was trained to see: annotation preprocesses to this by default
            "input": model_input(merged.config, checkpoint_meta),
            "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        with open(os.path.join(tmp, EXPORT_META), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2)
        _publish(tmp, out_dir, overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def model_input(config, checkpoint_meta: dict) -> dict:
    """The ``input`` section of ``vsd_export.json``: the image side the vision tower takes and the
    visual prompt the training images carried. Recorded so annotation preprocesses the way the
    model was trained by default, instead of trusting a config written for another model
    (`vsd.annotate.model_record`). A checkpoint that recorded its own ``input`` (training) wins."""
    vision = getattr(config, "vision_config", None)
    derived = {
        "image_size": int(vision.image_size) if getattr(vision, "image_size", None) else None,
        # `vsd data build` draws the subject red and the object green on every training image
        "visual_prompt": True,
    }
    recorded = checkpoint_meta.get("input") or {}
    return {**derived, **{k: v for k, v in recorded.items() if v is not None}}


def export_info(model_dir: str) -> dict:
    """The provenance written by ``merge_and_export`` (``{}`` for a model that is not an export),
    e.g. for the annotation rows' ``adapter_sha256``."""
    uri = storage.join(model_dir, EXPORT_META)
    if not storage.exists(uri):
        return {}
    return json.loads(storage.read_text(uri))
