"""What annotate and refine share to start a model: localisation, device, CPUs, SGLang start."""

from __future__ import annotations

import os
import sys

import pytest

from vsd.backends.sglang import start_sglang
from vsd.errors import VSDError
from vsd.serving import actor_cpus, localize_model, resolve_device


def test_localize_model_resolves_local_and_tiny_and_names_the_field(tmp_path, tiny_llava_dir):
    assert localize_model(str(tmp_path)) == str(tmp_path)
    assert localize_model(f"file://{tmp_path}") == str(tmp_path)
    assert localize_model("org/name") == "org/name"  # a hub id passes through
    assert os.path.isfile(os.path.join(localize_model("tiny:llava"), "config.json"))
    with pytest.raises(VSDError, match=r"^refine\.model: /nope/x does not exist"):
        localize_model("/nope/x", "refine.model")


def test_device_and_cpus():
    import torch

    assert resolve_device("cpu") == "cpu" and resolve_device("cuda:1") == "cuda:1"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert actor_cpus() == len(os.sched_getaffinity(0))


def test_start_sglang_sets_the_cpu_workers_and_explains_a_missing_package(monkeypatch):
    made = []
    monkeypatch.delenv("SGLANG_CPU_WORKERS", raising=False)
    engine = start_sglang(
        "x",
        {"model_path": "/m", "tp_size": 1},
        cpu_workers=3,
        factory=lambda **kw: made.append(kw) or "engine",
    )
    assert engine == "engine" and made == [{"model_path": "/m", "tp_size": 1}]
    assert os.environ["SGLANG_CPU_WORKERS"] == "3"
    monkeypatch.setitem(sys.modules, "sglang", None)  # import fails like on a CPU node
    with pytest.raises(VSDError, match=r"^refine\.mode=sglang: sglang is not installed .*; use rules$"):
        start_sglang("refine.mode=sglang", {}, hint="use rules")


def test_s3_keys_that_leave_their_prefix_are_refused(s3_bucket, tmp_path, monkeypatch):
    import boto3

    monkeypatch.setenv("VSD_CACHE_DIR", str(tmp_path / "cache"))
    bucket = s3_bucket[len("s3://") :]
    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    s3.put_object(Bucket=bucket, Key="models/m/config.json", Body=b"{}")
    s3.put_object(Bucket=bucket, Key="models/m/../../escape.txt", Body=b"x")
    with pytest.raises(VSDError, match=r"^model: .* holds an object key that leaves its prefix"):
        localize_model(f"{s3_bucket}/models/m", "model")
    assert not any(p.name == "escape.txt" for p in tmp_path.rglob("*"))


def test_model_dir_policy(tiny_text_lm_dir, tmp_path):
    import json
    import shutil

    from vsd.config import ConfigError
    from vsd.serving import check_engine_args, check_model_dir, local_model

    assert local_model(tiny_text_lm_dir) == tiny_text_lm_dir
    sharded = tmp_path / "sharded"
    shutil.copytree(tiny_text_lm_dir, sharded)
    os.rename(sharded / "model.safetensors", sharded / "model-00001-of-00001.safetensors")
    index = {"weight_map": {"lm_head.weight": "model-00001-of-00001.safetensors"}}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    check_model_dir(str(sharded))  # every shard a safetensors file inside: fine
    for shard, why in (
        ("pytorch_model-00002.bin", "only .safetensors"),
        ("../elsewhere.safetensors", "only .safetensors"),
        ("model-00002-of-00002.safetensors", "which is missing"),
    ):
        (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": shard}}))
        with pytest.raises(VSDError, match=why):
            check_model_dir(str(sharded), "refine.model")
    remote = tmp_path / "remote"
    shutil.copytree(tiny_text_lm_dir, remote)
    config = json.loads((remote / "config.json").read_text())
    (remote / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoModel": "m.M"}}))
    with pytest.raises(VSDError, match="remote code is not run"):
        local_model(str(remote), "refine.model")
    check_model_dir(str(remote), remote_code=True)
    check_engine_args({"tp_size": 2, "mem_fraction_static": 0.5, "chunked_prefill_size": 8192})
    with pytest.raises(ConfigError, match=r"^engine_args\.revision: changes what the engine loads or runs"):
        check_engine_args({"revision": "main"})
    check_engine_args({"revision": "main"}, allowed=["revision"])
