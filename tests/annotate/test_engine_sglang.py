"""The sglang engine's requests, checked on CPU against a recording stand-in of ``sglang.Engine``
(only the engine is replaced); a `gpu` test runs the real one where sglang and a GPU exist."""

from __future__ import annotations

import base64
import io
import re

import pytest

from vsd.annotate.engines import EngineConfig, make_engine
from vsd.annotate.engines.base import EngineError, ImageRequest, Prompt
from vsd.annotate.engines.prompting import chat_prompt, task_prompts
from vsd.annotate.engines.sglang import SGLangOptions
from vsd.relations import RELATIONS


class RecordingEngine:
    """Stands in for ``sglang.Engine``: records what it is built with and asked, and answers like
    it would — free text for plain prompts, a string the request's ``regex`` fully matches else."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.calls: list[dict] = []
        self.shut = False

    def generate(self, prompt, image_data, sampling_params):
        self.calls.append(dict(prompt=prompt, image_data=image_data, sampling_params=sampling_params))
        out = []
        for text, params in zip(prompt, sampling_params):
            if "regex" in params:
                # answer the alphabetically last choice the regex allows (a real engine asks the model)
                options = params["regex"].split("(", 1)[1].rstrip(")").split("|")
                answer = " " + max(re.sub(r"\\(.)", r"\1", o) for o in options)
                assert re.fullmatch(params["regex"], answer)
                out.append({"text": answer, "meta_info": {}})
            else:
                out.append({"text": f" described #{len(out)}", "meta_info": {}})
        return out

    def shutdown(self):
        self.shut = True


def _jpeg(color) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (24, 24), color).save(buf, format="JPEG")
    return buf.getvalue()


def _engine(**kw):
    made = []

    def factory(**kwargs):
        made.append(RecordingEngine(**kwargs))
        return made[-1]

    cfg = EngineConfig(kind="sglang", model="/models/llava-1.5-13b-merged", max_new_tokens=48,
                       sglang=SGLangOptions(engine_args={"tp_size": 1, "mem_fraction_static": 0.8}, **kw))
    engine = make_engine(cfg, engine_factory=factory)
    return engine, made[0]


def test_requests_carry_image_bytes_template_sampling_and_grouping(monkeypatch):
    monkeypatch.delenv("SGLANG_CPU_WORKERS", raising=False)
    engine, rec = _engine(cpu_workers=3)
    assert rec.kwargs == {"model_path": "/models/llava-1.5-13b-merged", "dtype": "auto", "tp_size": 1,
                          "mem_fraction_static": 0.8}
    import os

    assert os.environ["SGLANG_CPU_WORKERS"] == "3"
    a, b = _jpeg("red"), _jpeg("blue")
    reqs = [ImageRequest("a", a, task_prompts("cup", "table") + task_prompts("dog", "sofa")),
            ImageRequest("b", b, task_prompts("car", "tree", (2, 3)))]
    results = engine.generate(reqs)

    [call] = rec.calls  # one batched call
    # grouping: image a's 6 prompts first and adjacent, then b's 2; each with its own JPEG bytes
    assert [base64.b64decode(x) for x in call["image_data"]] == [a] * 6 + [b] * 2
    assert call["prompt"] == [chat_prompt(p.text) for r in reqs for p in r.prompts]
    assert call["prompt"][0].startswith("USER: <image>\nGiven the image") and call["prompt"][0].endswith(" ASSISTANT:")
    # task 1: regex over the 9 relations, greedy; tasks 2/3: the configured budget
    choice = call["sampling_params"][0]
    assert choice["temperature"] == 0.0 and "regex" in choice
    for rel in RELATIONS:
        assert re.fullmatch(choice["regex"], rel) and re.fullmatch(choice["regex"], " " + rel)
    assert not re.fullmatch(choice["regex"], "inside") and not re.fullmatch(choice["regex"], "on top of")
    assert call["sampling_params"][1] == {"temperature": 0.0, "max_new_tokens": 48}

    assert [r.key for r in results] == ["a", "b"]
    assert [x.text for x in results[0].answers[:3]] == ["under", "described #1", "described #2"]
    assert results[0].answers[0].text in RELATIONS and results[0].answers[0].scores is None
    engine.close()
    assert rec.shut


def test_cpu_workers_default_to_the_processes_cpus(monkeypatch):
    import os

    monkeypatch.delenv("SGLANG_CPU_WORKERS", raising=False)
    _engine()
    assert os.environ["SGLANG_CPU_WORKERS"] == str(len(os.sched_getaffinity(0)))


def test_lost_or_unconstrained_outputs_are_errors():
    engine, rec = _engine()
    rec.generate = lambda prompt, image_data, sampling_params: [{"text": "x"}] * (len(prompt) - 1)
    with pytest.raises(EngineError, match="outputs for"):
        engine.generate([ImageRequest("a", _jpeg("red"), task_prompts("cup", "table"))])
    rec.generate = lambda prompt, image_data, sampling_params: [{"text": "inside"}] * len(prompt)
    with pytest.raises(EngineError, match="not one of the choices"):
        engine.generate([ImageRequest("a", _jpeg("red"), task_prompts("cup", "table", (1,)))])


def test_adapter_is_refused_and_missing_sglang_is_a_clear_error(monkeypatch):
    from vsd.config import ConfigError, from_dict

    with pytest.raises(ConfigError, match="adapter"):
        from_dict(EngineConfig, {"kind": "sglang", "adapter": "/a"})
    import sys

    monkeypatch.setitem(sys.modules, "sglang", None)  # import fails like on a CPU node
    with pytest.raises(EngineError, match="not installed"):
        make_engine(EngineConfig(kind="sglang", model="/m"))


@pytest.mark.gpu
def test_real_sglang_engine(tmp_path):
    """Where sglang and a GPU exist: the real engine, a tiny LLaVA, one image, 3 tasks."""
    pytest.importorskip("sglang")
    from vsd.model.tiny import build_tiny_llava

    path = build_tiny_llava(str(tmp_path / "m"), image_tokens=576, patch_size=14, seed=0)
    cfg = EngineConfig(kind="sglang", model=path, max_new_tokens=8,
                       sglang=SGLangOptions(engine_args={"mem_fraction_static": 0.3, "disable_cuda_graph": True}))
    engine = make_engine(cfg)
    try:
        [res] = engine.generate([ImageRequest("a", _jpeg("red"), task_prompts("cup", "table"))])
        assert res.answers[0].text in RELATIONS and len(res.answers) == 3
    finally:
        engine.close()
