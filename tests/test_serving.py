"""What annotate and refine share to start a model: localisation, device, CPUs, SGLang start."""

from __future__ import annotations

import os
import sys

import pytest

from vsd.errors import VSDError
from vsd.serving import actor_cpus, localize_model, resolve_device, start_sglang


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
    engine = start_sglang("x", {"model_path": "/m", "tp_size": 1}, cpu_workers=3,
                          factory=lambda **kw: made.append(kw) or "engine")
    assert engine == "engine" and made == [{"model_path": "/m", "tp_size": 1}]
    assert os.environ["SGLANG_CPU_WORKERS"] == "3"
    monkeypatch.setitem(sys.modules, "sglang", None)  # import fails like on a CPU node
    with pytest.raises(VSDError, match=r"^refine\.mode=sglang: sglang is not installed .*; use rules$"):
        start_sglang("refine.mode=sglang", {}, hint="use rules")
