"""Engines by kind: the registry, ``engine.*`` with one section per kind, the shared prompt builder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vsd.annotate.engines import ENGINES, EngineConfig, engine_class, make_engine
from vsd.annotate.engines.hf import HFOptions
from vsd.annotate.engines.prompting import SCENE_PROMPT, clean_name, scene_prompts, task_prompts
from vsd.annotate.engines.sglang import SGLangOptions
from vsd.config import ConfigError, from_dict, help_text, to_dict
from vsd.relations import RELATIONS

REPO = Path(__file__).resolve().parents[2]


def test_registry_lists_each_kind_once_and_config_gets_one_section_per_kind():
    assert list(ENGINES) == ["hf", "sglang"]
    cfg = EngineConfig()
    assert isinstance(cfg.hf, HFOptions) and isinstance(cfg.sglang, SGLangOptions)
    assert cfg.options is cfg.hf
    assert engine_class("hf").__name__ == "HFEngine" and engine_class("sglang").__name__ == "SGLangEngine"
    with pytest.raises(ConfigError, match=r"^kind: must be one of \['hf', 'sglang'\], got 'vllm'$"):
        make_engine(EngineConfig(kind="vllm"))
    text = help_text(EngineConfig, "engine.")
    for line in (
        "engine.hf.share_prefix (bool, default True)",
        "engine.hf.timings (bool, default False)",
        "engine.hf.prefix_attention (str, default 'auto')",
        "engine.sglang.cpu_workers (int | None",
        "engine.sglang.engine_args (dict, default {})",
    ):
        assert line in text


def test_validating_a_config_imports_no_engine_runtime():
    """A CPU driver checks an sglang job's config without torch, transformers or sglang."""
    code = (
        "import sys; from vsd.config import from_dict; from vsd.annotate.engines import EngineConfig; "
        "from_dict(EngineConfig, {'kind': 'sglang', 'model': 's3://m/x', 'sglang': {'engine_args': {'tp_size': 2}}}); "
        "print([m for m in ('torch', 'transformers', 'sglang') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"device": "gpu"}, r"^device: must be auto, cpu, cuda or cuda:N, got 'gpu'$"),
        ({"device": "cuda:x"}, r"^device: must be auto, cpu, cuda or cuda:N"),
        (
            {"dtype": "fp8"},
            r"^dtype: must be one of \['auto', 'float32', 'bfloat16', 'float16'\], got 'fp8'$",
        ),
        ({"kind": "sglang", "adapter": "/a"}, r"^adapter: sglang does not serve LoRA on LLaVA"),
        (
            {"hf": {"prefix_attention": "flash"}},
            r"^hf\.prefix_attention: must be one of \['auto', 'matmul'\]",
        ),
        ({"sglang": {"cpu_workers": 0}}, r"^sglang\.cpu_workers: must be >= 1, got 0$"),
        ({"hf": {"shared": True}}, r"^hf\.shared: unknown field"),
    ],
)
def test_bad_fields_fail_in_one_line_naming_the_field(bad, message):
    with pytest.raises(ConfigError, match=message) as err:
        from_dict(EngineConfig, bad)
    assert "\n" not in str(err.value)


def test_rules_hold_for_configs_built_in_code_too():
    with pytest.raises(ConfigError, match="^device:"):
        EngineConfig(device="gpu").validate()
    with pytest.raises(ConfigError, match="^adapter: sglang"):
        EngineConfig(kind="sglang", adapter="/a").validate()
    with pytest.raises(ConfigError, match=r"^hf\.prefix_attention"):
        EngineConfig(hf=HFOptions(prefix_attention="x")).validate()
    EngineConfig(kind="hf", adapter="/a", device="cuda:1").validate()  # hf serves adapters


def test_device_is_checked_before_ray_starts_in_the_job_config():
    from vsd.annotate.config import load_config

    with pytest.raises(ConfigError, match=r"^engine\.device: must be auto, cpu, cuda or cuda:N, got 'gpu'$"):
        load_config(None, ["engine.device=gpu"])


def test_a_backend_option_lives_in_its_section_only():
    cfg = from_dict(
        EngineConfig, {"kind": "sglang", "sglang": {"cpu_workers": 3, "engine_args": {"tp_size": 2}}}
    )
    assert cfg.sglang == SGLangOptions(cpu_workers=3, engine_args={"tp_size": 2})
    with pytest.raises(ConfigError, match=r"^cpu_workers: unknown field \(known: "):
        from_dict(EngineConfig, {"kind": "sglang", "cpu_workers": 3})


def test_the_generate_stage_calls_hf_with_several_steps_and_sglang_with_one():
    """hf runs a call as steps of batch_size (Ray's per-call cost paid once per 4 steps); SGLang
    batches a call itself and gets batch_size images, as its bare benchmark sends; an explicit
    stages.generate.resources.batch_size wins."""
    from vsd.annotate.config import load_config
    from vsd.annotate.stages import generate
    from vsd.annotate.stages.base import RunContext

    assert EngineConfig(kind="hf", batch_size=4).images_per_call == 16
    assert EngineConfig(kind="sglang", batch_size=4).images_per_call == 4

    class Graph:
        def map_batches(self, fn, **options):
            self.options = options
            return self

    for overrides, want in (
        ([], 16),
        (["engine.kind=sglang"], 4),
        (["stages.generate.resources.batch_size=6"], 6),
    ):
        cfg = load_config(
            str(REPO / "jobs/configs/annotate-tiny-cpu.yaml"), ["engine.batch_size=4", *overrides]
        )
        assert generate.add(Graph(), cfg, RunContext(meta=None)).options["batch_size"] == want, overrides


def test_configs_pickle_by_reference_for_ray():
    import pickle

    cfg = from_dict(EngineConfig, {"kind": "sglang", "sglang": {"cpu_workers": 2}})
    data = pickle.dumps(cfg)
    assert b"vsd.annotate.engines" in data and pickle.loads(data) == cfg
    assert json.loads(json.dumps(to_dict(cfg)))["sglang"]["cpu_workers"] == 2


def test_task_prompts_are_the_papers_and_clean_the_names():
    p1, p2, p3 = task_prompts("red\ncup", "  big   table ")
    assert p1.task == 1 and p1.choices == tuple(RELATIONS)
    assert p1.text.startswith("Given the image, choose the most appropriate preposition")
    assert "'The red cup is [BLANK] the big table'" in p1.text and "\n" not in p1.text
    assert p2.choices is None and p2.text.endswith("two objects red cup and big table.")
    assert p3.task == 3 and "three detailed and diverse" in p3.text
    assert [p.task for p in task_prompts("a", "b", (2, 3))] == [2, 3]
    assert clean_name(" a\tb\n\nc ") == "a b c"
    [scene] = scene_prompts()
    assert scene.task == 3 and scene.text == SCENE_PROMPT and scene.choices is None
