"""Merged export == base + adapter, reloads with plain transformers (no peft), hashes are stable."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.fixtures.models import save_random_adapter
from vsd.errors import VSDError
from vsd.model.export import adapter_sha256, export_info, merge_and_export
from vsd.model.loader import load_model

REPO = Path(__file__).resolve().parents[2]
TEXT = "USER: <image>\nBased on the image, where is the cup? ASSISTANT: The cup is on the table.</s>"


def _inputs(processor):
    image = Image.new("RGB", (40, 30), (30, 160, 90))
    return processor(text=TEXT, images=image, return_tensors="pt")


def _logits(model, inputs):
    with torch.no_grad():
        return model(**inputs).logits


@pytest.mark.parametrize("train_projector,lm_head", [(False, False), (True, False), (False, True)])
def test_merged_logits_match_base_plus_adapter(tiny_llava_dir, tmp_path, train_projector, lm_head):
    adapter = save_random_adapter(
        tiny_llava_dir, str(tmp_path / "adapter"), seed=5, train_projector=train_projector, lm_head=lm_head
    )
    peft_model, processor = load_model(tiny_llava_dir, dtype="float32", adapter=adapter)
    base_model, _ = load_model(tiny_llava_dir, dtype="float32")
    inputs = _inputs(processor)
    expected = _logits(peft_model, inputs)
    assert (expected - _logits(base_model, inputs)).abs().max() > 1e-3, "the adapter must change the output"

    out = merge_and_export(tiny_llava_dir, adapter, str(tmp_path / "merged"))
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    merged = LlavaForConditionalGeneration.from_pretrained(out).eval()
    assert (_logits(merged, _inputs(AutoProcessor.from_pretrained(out))) - expected).abs().max() < 1e-4
    names = set(os.listdir(out))
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "processor_config.json",
        "chat_template.jinja",
        "vsd_export.json",
    } <= names
    assert not [n for n in names if "adapter" in n or n.endswith(".bin")]
    config_text = Path(out, "config.json").read_text().lower()
    assert "peft" not in config_text and "lora" not in config_text
    assert "modules_to_save" not in json.dumps(list(merged.state_dict()))
    assert export_info(out)["adapter_sha256"] == adapter_sha256(adapter)


def test_merged_dir_reloads_without_peft(tiny_llava_dir, tiny_adapter_dir, tmp_path):
    out = merge_and_export(tiny_llava_dir, tiny_adapter_dir, str(tmp_path / "merged"))
    peft_model, processor = load_model(tiny_llava_dir, adapter=tiny_adapter_dir)
    torch.save(dict(_inputs(processor)), tmp_path / "inputs.pt")
    torch.save(_logits(peft_model, _inputs(processor)), tmp_path / "expected.pt")
    script = f"""
import sys
sys.modules["peft"] = None  # any attempt to import peft fails
import torch
from transformers import AutoProcessor, LlavaForConditionalGeneration
model = LlavaForConditionalGeneration.from_pretrained({out!r}).eval()
AutoProcessor.from_pretrained({out!r})
inputs = torch.load({str(tmp_path / "inputs.pt")!r})
with torch.no_grad():
    diff = (model(**inputs).logits - torch.load({str(tmp_path / "expected.pt")!r})).abs().max().item()
print("DIFF", diff)
"""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    diff = float(proc.stdout.split("DIFF")[-1])
    assert diff < 1e-4


def test_adapter_hash_is_stable_across_copies_and_sensitive_to_weights(
    tiny_llava_dir, tiny_adapter_dir, tmp_path
):
    copy = tmp_path / "elsewhere"
    shutil.copytree(tiny_adapter_dir, copy)
    cfg = json.loads((copy / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "/some/other/machine/tiny-llava"
    (copy / "adapter_config.json").write_text(json.dumps(cfg, indent=4))
    assert adapter_sha256(str(copy)) == adapter_sha256(tiny_adapter_dir)
    other = save_random_adapter(tiny_llava_dir, str(tmp_path / "other"), seed=99)
    assert adapter_sha256(other) != adapter_sha256(tiny_adapter_dir)
    cfg["lora_alpha"] = cfg["lora_alpha"] * 2  # same tensors, different computation
    (copy / "adapter_config.json").write_text(json.dumps(cfg))
    assert adapter_sha256(str(copy)) != adapter_sha256(tiny_adapter_dir)


def test_export_refuses_to_clobber_and_pickled_adapters(tiny_llava_dir, tiny_adapter_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(VSDError, match="not empty"):
        merge_and_export(tiny_llava_dir, tiny_adapter_dir, str(out))
    assert (out / "keep.txt").read_text() == "mine"
    bad = tmp_path / "pickled-adapter"
    shutil.copytree(tiny_adapter_dir, bad)
    os.remove(bad / "adapter_model.safetensors")
    torch.save({}, bad / "adapter_model.bin")
    with pytest.raises(VSDError, match="only pickle weights"):
        merge_and_export(tiny_llava_dir, str(bad), str(tmp_path / "o2"))


def _from_original_layout(out: str, like):
    """Rebuild transformers' LLaVA from the original layout by the inverse names: if every tensor
    went where SGLang reads it, this model computes exactly what the merged one does."""
    from safetensors.torch import load_file
    from transformers import CLIPVisionModel

    names = {
        "model.mm_projector.0.": "model.multi_modal_projector.linear_1.",
        "model.mm_projector.2.": "model.multi_modal_projector.linear_2.",
        "model.image_newline": "model.image_newline",
        "model.": "model.language_model.",
        "lm_head.": "lm_head.",
    }
    state = {}
    for key, tensor in load_file(os.path.join(out, "model.safetensors")).items():
        src = next(k for k in names if key.startswith(k))
        state[names[src] + key[len(src) :]] = tensor
    tower = CLIPVisionModel.from_pretrained(os.path.join(out, "clip_vision_tower"))
    state.update({f"model.vision_tower.{k}": v for k, v in tower.state_dict().items()})
    model = type(like)(like.config).eval()
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    return model


def test_sglang_layout_is_the_original_llava_with_its_tower_inside(
    tiny_llava_dir, tiny_adapter_dir, tmp_path
):
    from vsd.model.sglang_layout import TOWER_DIR, check_servable, tower_override

    out = merge_and_export(tiny_llava_dir, tiny_adapter_dir, str(tmp_path / "sgl"), layout="sglang")
    hf_out = merge_and_export(tiny_llava_dir, tiny_adapter_dir, str(tmp_path / "hf"))
    config = json.loads(Path(out, "config.json").read_text())
    assert config["architectures"] == ["LlavaLlamaForCausalLM"] and config["model_type"] == "llava"
    assert {
        k: config[k]
        for k in (
            "mm_projector_type",
            "mm_vision_select_layer",
            "mm_vision_select_feature",
            "mm_patch_merge_type",
            "image_aspect_ratio",
            "mm_vision_tower",
        )
    } == {
        "mm_projector_type": "mlp2x_gelu",
        "mm_vision_select_layer": -2,
        "mm_vision_select_feature": "patch",
        "mm_patch_merge_type": "flat",
        "image_aspect_ratio": "square",
        "mm_vision_tower": TOWER_DIR,
    }
    assert config["hidden_size"] == 64 and config["mm_hidden_size"] == 32 and config["image_token_index"] == 4
    assert set(os.listdir(Path(out, TOWER_DIR))) == {
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    }
    assert {"tokenizer.json", "processor_config.json", "chat_template.jinja"} <= set(os.listdir(out))
    assert export_info(out)["layout"] == "sglang" and export_info(hf_out)["layout"] == "hf"
    assert export_info(out)["adapter_sha256"] == export_info(hf_out)["adapter_sha256"]

    merged, processor = load_model(hf_out, dtype="float32")
    rebuilt = _from_original_layout(out, merged)
    assert (_logits(rebuilt, _inputs(processor)) - _logits(merged, _inputs(processor))).abs().max() < 1e-6

    assert check_servable(out)["architectures"] == ["LlavaLlamaForCausalLM"]
    assert tower_override(out, config) == {"mm_vision_tower": os.path.join(out, TOWER_DIR)}
    with pytest.raises(
        VSDError,
        match=r"^engine\.model: .* is LlavaForConditionalGeneration, which SGLang "
        r"0\.5\.23 cannot serve as LLaVA; write the original layout with "
        r"`vsd export --layout sglang`",
    ):
        check_servable(hf_out)


def test_export_cli_writes_the_layout_asked_for(tiny_llava_dir, tiny_adapter_dir, tmp_path):
    out = tmp_path / "sgl"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vsd.cli",
            "export",
            "--checkpoint",
            tiny_adapter_dir,
            "--base",
            tiny_llava_dir,
            "--out",
            str(out),
            "--layout",
            "sglang",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "(sglang layout, adapter_sha256 " in proc.stdout
    assert json.loads((out / "config.json").read_text())["architectures"] == ["LlavaLlamaForCausalLM"]


def test_sglang_layout_of_llava_next_is_anyres_with_its_newline(tmp_path):
    """LLaVA-NeXT maps onto the same SGLang class: AnyRes grid, unpadded features, image_newline."""
    from vsd.model.sglang_layout import write_original_layout

    model, processor = load_model("tiny:llava_next", dtype="float32")
    out = str(tmp_path / "next")
    write_original_layout(model, processor, out)
    config = json.loads(Path(out, "config.json").read_text())
    assert config["architectures"] == ["LlavaLlamaForCausalLM"]
    assert config["mm_patch_merge_type"] == "spatial_unpad" and config["image_aspect_ratio"] == "anyres"
    assert config["image_grid_pinpoints"] == [list(p) for p in model.config.image_grid_pinpoints]
    rebuilt = _from_original_layout(out, model)
    assert torch.equal(rebuilt.model.image_newline, model.model.image_newline)
    for (name, a), (_, b) in zip(rebuilt.state_dict().items(), model.state_dict().items()):
        assert torch.equal(a, b), name


def test_sglang_layout_refuses_what_it_cannot_express(tmp_path):
    from vsd.model.sglang_layout import write_original_layout

    model, processor = load_model("tiny:llava", dtype="float32")
    model.config.vision_feature_layer = [-2, -1]
    with pytest.raises(VSDError, match="several layers"):
        write_original_layout(model, processor, str(tmp_path / "a"))
    model.config.vision_feature_layer = -2
    model.config.projector_hidden_act = "relu"
    with pytest.raises(VSDError, match="needs gelu"):
        write_original_layout(model, processor, str(tmp_path / "b"))
    text, _ = load_model("tiny:text-lm", dtype="float32")
    with pytest.raises(VSDError, match="needs a LLaVA model"):
        write_original_layout(text, processor, str(tmp_path / "c"))
