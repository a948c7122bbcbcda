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


@pytest.mark.parametrize("train_projector", [False, True])
def test_merged_logits_match_base_plus_adapter(tiny_llava_dir, tmp_path, train_projector):
    adapter = save_random_adapter(tiny_llava_dir, str(tmp_path / "adapter"), seed=5, train_projector=train_projector)
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
    assert {"config.json", "model.safetensors", "tokenizer.json", "processor_config.json",
            "chat_template.jinja", "vsd_export.json"} <= names
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
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    diff = float(proc.stdout.split("DIFF")[-1])
    assert diff < 1e-4


def test_adapter_hash_is_stable_across_copies_and_sensitive_to_weights(tiny_llava_dir, tiny_adapter_dir, tmp_path):
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
