"""load_model: class from config, safetensors only, no remote code by default, s3:// prefixes."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from vsd import storage
from vsd.errors import VSDError
from vsd.model.loader import load_model
from vsd.model.tiny import build_tiny_llava


def _upload_dir(local: str, uri: str) -> None:
    for root, _, files in os.walk(local):
        for name in files:
            full = os.path.join(root, name)
            storage.write_bytes(storage.join(uri, os.path.relpath(full, local)), Path(full).read_bytes())


def test_local_llava_loads_in_eval_mode(tiny_llava_dir):
    model, processor = load_model(tiny_llava_dir)
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    assert type(processor).__name__ == "LlavaProcessor" and processor.chat_template
    assert not model.training and next(model.parameters()).dtype == torch.float32


def test_class_comes_from_config_llava_next(tmp_path):
    path = build_tiny_llava(str(tmp_path / "next"), arch="llava_next")
    model, processor = load_model(path, dtype="bfloat16")
    assert type(model).__name__ == "LlavaNextForConditionalGeneration"
    assert type(processor).__name__ == "LlavaNextProcessor"
    assert next(model.parameters()).dtype == torch.bfloat16


def test_text_lm_loads_with_its_tokenizer(tiny_text_lm_dir):
    model, tok = load_model(tiny_text_lm_dir)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert (
        tok.apply_chat_template(
            [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
        )
        == "USER: hi ASSISTANT:"
    )


def test_pickle_weights_are_refused(tiny_llava_dir, tmp_path):
    bad = tmp_path / "pickled"
    shutil.copytree(tiny_llava_dir, bad)
    os.remove(bad / "model.safetensors")
    torch.save({"x": torch.zeros(1)}, bad / "pytorch_model.bin")
    with pytest.raises(VSDError, match=r"only pickle weights \(pytorch_model.bin\).*safetensors"):
        load_model(str(bad))


def test_remote_code_is_not_run_by_default(tiny_llava_dir, tmp_path):
    """A checkpoint asking for its own modelling code: refused, and the code never ran."""
    evil = tmp_path / "remote"
    shutil.copytree(tiny_llava_dir, evil)
    marker = tmp_path / "code-ran"
    (evil / "configuration_evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('x')\n"
        "from transformers import PretrainedConfig\n"
        "class EvilConfig(PretrainedConfig):\n    model_type = 'evil'\n"
    )
    cfg = json.loads((evil / "config.json").read_text())
    cfg.update(model_type="evil", auto_map={"AutoConfig": "configuration_evil.EvilConfig"})
    (evil / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(VSDError, match="trust_remote_code"):
        load_model(str(evil))
    assert not marker.exists()


def test_missing_path_and_bad_dtype_are_one_line_errors(tiny_llava_dir, tmp_path):
    with pytest.raises(VSDError, match="does not exist"):
        load_model(str(tmp_path / "nope"))
    with pytest.raises(VSDError, match="dtype"):
        load_model(tiny_llava_dir, dtype="float8")


def test_s3_prefix_is_downloaded_and_loaded(tiny_llava_dir, s3_bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("VSD_CACHE_DIR", str(tmp_path / "cache"))
    uri = f"{s3_bucket}/models/tiny-llava"
    _upload_dir(tiny_llava_dir, uri)
    model, processor = load_model(uri)
    reference, _ = load_model(tiny_llava_dir)
    for (name, a), (_, b) in zip(model.state_dict().items(), reference.state_dict().items()):
        assert torch.equal(a, b), name
    assert processor.tokenizer.convert_tokens_to_ids("<image>") == model.config.image_token_id
    cached = list((tmp_path / "cache" / "s3").iterdir())
    load_model(uri)  # second load hits the cache
    assert list((tmp_path / "cache" / "s3").iterdir()) == cached


def test_tiny_name_builds_once(tmp_path, monkeypatch):
    monkeypatch.setenv("VSD_CACHE_DIR", str(tmp_path / "cache"))
    model, _ = load_model("tiny:llava?image_tokens=4")
    assert model.config.image_seq_length == 4
    with pytest.raises(VSDError, match="unknown kind"):
        load_model("tiny:gpt")


def test_missing_chat_template_falls_back_to_vicuna(tiny_llava_dir, tmp_path):
    from vsd.model.tiny import LLAVA_CHAT_TEMPLATE

    bare = tmp_path / "no-template"
    shutil.copytree(tiny_llava_dir, bare)
    os.remove(bare / "chat_template.jinja")
    _, processor = load_model(str(bare))
    assert processor.chat_template == LLAVA_CHAT_TEMPLATE


def test_adapter_from_s3(tiny_llava_dir, tiny_adapter_dir, s3_bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("VSD_CACHE_DIR", str(tmp_path / "cache"))
    uri = f"{s3_bucket}/adapters/a1"
    _upload_dir(tiny_adapter_dir, uri)
    remote, processor = load_model(tiny_llava_dir, adapter=uri)
    local, _ = load_model(tiny_llava_dir, adapter=tiny_adapter_dir)
    assert type(remote).__name__ == "PeftModel"
    enc = processor(
        text="USER: <image>\nhi ASSISTANT:", images=Image.new("RGB", (32, 32)), return_tensors="pt"
    )
    with torch.no_grad():
        assert torch.equal(remote(**enc).logits, local(**enc).logits)
    with pytest.raises(VSDError, match="no adapter_config.json"):
        load_model(tiny_llava_dir, adapter=tiny_llava_dir)
