"""The run/checkpoint layout shared with `vsd train`, and `vsd export` / `vsd model tiny` end to end."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from vsd import storage
from vsd.cli import main
from vsd.errors import VSDError
from vsd.model.checkpoints import (
    ADAPTER_DIR,
    META_FILE,
    checkpoint_uri,
    latest_checkpoint,
    list_checkpoints,
    resolve_adapter,
)
from vsd.model.export import adapter_sha256, export_info


def _put_checkpoint(
    run: str, step: int, adapter_dir: str, base: str, *, meta: bool = True, name: str | None = None, **extra
) -> str:
    ckpt = storage.join(run, "checkpoints", name) if name else checkpoint_uri(run, step)
    for f in sorted(os.listdir(adapter_dir)):
        storage.write_bytes(storage.join(ckpt, ADAPTER_DIR, f), Path(adapter_dir, f).read_bytes())
    if meta:  # written last by the trainer: the completion marker
        storage.write_text(
            storage.join(ckpt, META_FILE), json.dumps({"base_model": base, "step": step, **extra})
        )
    return ckpt


def test_latest_checkpoint_picks_highest_complete_step(tiny_llava_dir, tiny_adapter_dir, tmp_path):
    run = str(tmp_path / "run")
    c2 = _put_checkpoint(run, 2, tiny_adapter_dir, tiny_llava_dir)
    c10 = _put_checkpoint(
        run, 10, tiny_adapter_dir, tiny_llava_dir, name="checkpoint_10"
    )  # unpadded also read
    _put_checkpoint(run, 12, tiny_adapter_dir, tiny_llava_dir, meta=False)  # crashed mid-write
    assert [s for s, _ in list_checkpoints(run)] == [2, 10]
    assert latest_checkpoint(run) == c10
    assert storage.basename(c2) == "checkpoint_00000002"
    adapter, meta = resolve_adapter(run)
    assert adapter == storage.join(c10, ADAPTER_DIR) and meta["step"] == 10
    assert resolve_adapter(c2) == (storage.join(c2, ADAPTER_DIR), {"base_model": tiny_llava_dir, "step": 2})
    assert resolve_adapter(tiny_adapter_dir) == (tiny_adapter_dir, {})


def test_no_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "run" / "checkpoints" / "checkpoint_00000001").mkdir(parents=True)
    with pytest.raises(VSDError, match="no complete checkpoint"):
        latest_checkpoint(str(tmp_path / "run"))
    with pytest.raises(VSDError, match="neither"):
        resolve_adapter(str(tmp_path / "empty"))


def test_vsd_export_from_s3_run_to_local(
    tiny_llava_dir, tiny_adapter_dir, s3_bucket, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("VSD_CACHE_DIR", str(tmp_path / "cache"))
    run = f"{s3_bucket}/runs/r1"
    _put_checkpoint(run, 1, tiny_adapter_dir, tiny_llava_dir)
    lengths = {"2": {"p99": 30}, "3": {"p99": 90}}
    _put_checkpoint(run, 3, tiny_adapter_dir, tiny_llava_dir, answer_tokens=lengths)
    assert latest_checkpoint(run) == f"{run}/checkpoints/checkpoint_00000003"
    out = tmp_path / "merged"
    assert main(["export", "--checkpoint", run, "--out", str(out)]) == 0
    assert "step 3" in capsys.readouterr().out
    info = export_info(str(out))
    assert info["adapter_sha256"] == adapter_sha256(tiny_adapter_dir)
    assert info["base_model"] == tiny_llava_dir
    assert info["answer_tokens"] == lengths  # the trained answer lengths travel with the export

    from transformers import LlavaForConditionalGeneration

    merged = LlavaForConditionalGeneration.from_pretrained(str(out))
    assert isinstance(merged, LlavaForConditionalGeneration)
    assert main(["export", "--checkpoint", run, "--out", str(out)]) == 2  # no silent clobber


def test_vsd_export_to_s3_and_bare_adapter_needs_base(
    tiny_llava_dir, tiny_adapter_dir, s3_bucket, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("VSD_CACHE_DIR", str(tmp_path / "cache"))
    out = f"{s3_bucket}/exports/m1"
    assert main(["export", "--checkpoint", tiny_adapter_dir, "--out", out]) == 2
    assert "pass --base" in capsys.readouterr().err
    assert main(["export", "--checkpoint", tiny_adapter_dir, "--base", tiny_llava_dir, "--out", out]) == 0
    names = {storage.basename(f) for f in storage.list_files(out)}
    assert {"config.json", "model.safetensors", "tokenizer.json", "vsd_export.json"} <= names
    from vsd.model.loader import load_model

    model, processor = load_model(out)  # the merged model loads straight from S3
    assert type(model).__name__ == "LlavaForConditionalGeneration" and processor.chat_template


def test_vsd_model_tiny_cli(tmp_path, capsys):
    assert main(["model", "tiny", "--out", str(tmp_path / "t"), "--image-tokens", "9"]) == 0
    cfg = json.loads((tmp_path / "t" / "config.json").read_text())
    assert cfg["image_seq_length"] == 9 and cfg["vision_config"]["image_size"] == 24
    assert main(["model", "tiny", "--out", str(tmp_path / "lm"), "--text-lm"]) == 0
    assert json.loads((tmp_path / "lm" / "config.json").read_text())["model_type"] == "llama"
    assert main(["model", "tiny", "--out", str(tmp_path / "bad"), "--image-tokens", "10"]) == 2
    assert "square" in capsys.readouterr().err
