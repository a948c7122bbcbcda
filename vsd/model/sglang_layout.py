"""The original LLaVA layout, which SGLang 0.5.23 serves (``vsd export --layout sglang``).

SGLang cannot build transformers' LLaVA layout (``LlavaForConditionalGeneration`` + CLIP: its
registry has no ``CLIPVisionModel``; the build fails with ``'Conv2d' object has no attribute
'num_embeddings'``). Its ``llava.py`` serves the layout of the original LLaVA repository, as the
``liuhaotian/llava-v1.5-*`` checkpoints are written:

* ``config.json``: ``architectures: [LlavaLlamaForCausalLM]``, the Llama fields at the top level,
  ``mm_hidden_size``, ``mm_projector_type: mlp2x_gelu``, ``mm_vision_select_layer``,
  ``mm_vision_select_feature``, ``mm_patch_merge_type``, ``image_aspect_ratio``,
  ``image_token_index`` and ``mm_vision_tower``;
* weights: the Llama model as ``model.*`` + ``lm_head.weight``, the projector as
  ``model.mm_projector.0/2.*``;
* the CLIP tower as its own directory (``clip_vision_tower/``: weights, config and the image
  processor's config), which SGLang loads with ``CLIPVisionModel.from_pretrained(mm_vision_tower)``.
  It must stay inside the export so an offline node loads nothing from a hub. SGLang takes
  ``mm_vision_tower`` as a path as written (relative to the process's working directory) and
  picks the tower class by the substring ``clip`` in it, so the export records the directory's
  name and the engine points SGLang at the absolute path when it starts (``tower_override``).

LLaVA-NeXT (AnyRes) maps onto the same class with ``mm_patch_merge_type: spatial_unpad``,
``image_aspect_ratio: anyres``, ``image_grid_pinpoints`` and ``model.image_newline``.
``image_aspect_ratio`` for LLaVA-1.5 is ``square`` (resize + centre crop, what transformers'
processor did while the model was trained), not the original ``pad``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from vsd.errors import VSDError

SGLANG_ARCH = "LlavaLlamaForCausalLM"
TOWER_DIR = "clip_vision_tower"
# What SGLang 0.5.23 serves as LLaVA, by the ``architectures`` of config.json.
SERVABLE = {SGLANG_ARCH}


def _projector_act(config) -> None:
    act = getattr(config, "projector_hidden_act", "gelu")
    if act != "gelu":
        raise VSDError(f"export: the projector uses {act!r}; SGLang's LLaVA (mlp2x_gelu) needs gelu")


def original_config(config) -> dict[str, Any]:
    """config.json of the original layout for a transformers ``LlavaConfig``/``LlavaNextConfig``."""
    layer = config.vision_feature_layer
    if not isinstance(layer, int):
        raise VSDError(f"export: vision_feature_layer {layer!r} (several layers) has no original-LLaVA form")
    _projector_act(config)
    strategy = {"default": "patch", "full": "full"}[config.vision_feature_select_strategy]
    text = config.text_config.to_dict()
    for key in (
        "architectures",
        "model_type",
        "transformers_version",
        "_name_or_path",
        "dtype",
        "torch_dtype",
    ):
        text.pop(key, None)
    out = dict(text)
    out.update(
        {
            "architectures": [SGLANG_ARCH],
            "model_type": "llava",
            "image_token_index": config.image_token_id,
            "mm_hidden_size": config.vision_config.hidden_size,
            "mm_projector_type": "mlp2x_gelu",
            "projector_hidden_act": "gelu",
            "multimodal_projector_bias": bool(getattr(config, "multimodal_projector_bias", True)),
            "mm_vision_select_layer": layer,
            "mm_vision_select_feature": strategy,
            "mm_vision_tower": TOWER_DIR,
            "mm_use_im_start_end": False,
            "mm_use_im_patch_token": False,
            "tie_word_embeddings": bool(getattr(config, "tie_word_embeddings", False)),
            "use_mm_proj": True,
        }
    )
    if config.model_type == "llava_next":
        out.update(
            {
                "mm_patch_merge_type": "spatial_unpad",
                "image_aspect_ratio": "anyres",
                "image_grid_pinpoints": [list(p) for p in config.image_grid_pinpoints],
            }
        )
    else:
        out.update({"mm_patch_merge_type": "flat", "image_aspect_ratio": "square"})
    return out


def original_state_dict(model) -> dict[str, Any]:
    """The language model, head and projector under the original names (the tower is saved apart)."""
    vlm = model.model
    out: dict[str, Any] = {}
    for name, tensor in vlm.language_model.state_dict().items():
        out[f"model.{name}"] = tensor
    for name, tensor in model.lm_head.state_dict().items():
        out[f"lm_head.{name}"] = tensor
    proj = vlm.multi_modal_projector
    for src, dst in (("linear_1", "0"), ("linear_2", "2")):
        for name, tensor in getattr(proj, src).state_dict().items():
            out[f"model.mm_projector.{dst}.{name}"] = tensor
    newline = getattr(vlm, "image_newline", None)
    if newline is not None:
        out["model.image_newline"] = newline.data
    return {k: v.detach().contiguous() for k, v in out.items()}


def write_original_layout(model, processor, out_dir: str) -> None:
    """Write ``model`` (a merged transformers LLaVA / LLaVA-NeXT) and its processor to ``out_dir``
    in the original layout, the CLIP tower in ``out_dir/clip_vision_tower``."""
    from safetensors.torch import save_file

    model_type = model.config.model_type
    if model_type not in ("llava", "llava_next"):
        raise VSDError(f"export: --layout sglang needs a LLaVA model, got model_type {model_type!r}")
    config = original_config(model.config)
    tower = model.model.vision_tower
    if type(tower).__name__ != "CLIPVisionModel":
        raise VSDError(f"export: SGLang's LLaVA loads a CLIP tower; this model has {type(tower).__name__}")
    os.makedirs(out_dir, exist_ok=True)
    save_file(
        original_state_dict(model), os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"}
    )
    config["dtype"] = str(next(model.parameters()).dtype).replace("torch.", "")
    with open(os.path.join(out_dir, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    model.generation_config.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)  # tokenizer (with <image>), chat template, image processor
    tower_dir = os.path.join(out_dir, TOWER_DIR)
    tower.save_pretrained(tower_dir, safe_serialization=True)
    processor.image_processor.save_pretrained(tower_dir)


def read_config(model_dir: str) -> dict:
    path = os.path.join(model_dir, "config.json")
    if not os.path.isfile(path):
        raise VSDError(f"model: {model_dir} has no config.json")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def check_servable(model_dir: str, what: str = "engine.model") -> dict:
    """The config of a LLaVA export SGLang can serve, or one line saying how to make one."""
    config = read_config(model_dir)
    archs = config.get("architectures") or []
    if not SERVABLE & set(archs):
        raise VSDError(
            f"{what}: {model_dir} is {'/'.join(archs) or 'no known architecture'}, which SGLang "
            f"0.5.23 cannot serve as LLaVA; write the original layout with "
            f"`vsd export --layout sglang` (or use engine.kind=hf)"
        )
    tower = config.get("mm_vision_tower", "")
    if os.path.isabs(tower) or ".." in tower.split("/") or not os.path.isdir(os.path.join(model_dir, tower)):
        raise VSDError(
            f"{what}: {model_dir}: mm_vision_tower {tower!r} is not a directory inside the export; "
            f"write it with `vsd export --layout sglang`"
        )
    return config


def tower_override(model_dir: str, config: dict) -> dict[str, Any]:
    """``json_model_override_args`` content pointing SGLang at the export's own CLIP tower."""
    return {"mm_vision_tower": os.path.abspath(os.path.join(model_dir, config["mm_vision_tower"]))}
