"""The sglang engine's requests, checked on CPU against a recording stand-in of ``sglang.Engine``
(only the engine is replaced; it answers and fails as sglang 0.5.23 does, see
tests/fixtures/sglang.py); tests/sglang/ runs the real engine where the kit exists, and a `gpu`
test runs it where sglang and a GPU exist."""

from __future__ import annotations

import io
import json
import os
import re
import shutil

import pytest

from tests.fixtures.sglang import RecordingSGLang
from vsd.annotate.engines import EngineConfig, make_engine
from vsd.annotate.engines.base import EngineError, ImageRequest
from vsd.annotate.engines.prompting import chat_prompt, task_prompts
from vsd.annotate.engines.sglang import MODELS_PACKAGE, SGLangOptions, data_url
from vsd.config import ConfigError, from_dict
from vsd.relations import RELATIONS


def _jpeg(color) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (24, 24), color).save(buf, format="JPEG")
    return buf.getvalue()


def _engine(model, made=None, max_new_tokens=48, device="auto", **kw):
    made = [] if made is None else made

    def factory(**kwargs):
        made.append(RecordingSGLang(**kwargs))
        return made[-1]

    cfg = EngineConfig(
        kind="sglang",
        model=model,
        max_new_tokens=max_new_tokens,
        device=device,
        sglang=SGLangOptions(engine_args={"tp_size": 1, "mem_fraction_static": 0.8}, **kw),
    )
    engine = make_engine(cfg, engine_factory=factory)
    return engine, made[0]


def test_requests_carry_image_bytes_template_sampling_and_grouping(monkeypatch, tiny_sglang_dir):
    monkeypatch.delenv("SGLANG_CPU_WORKERS", raising=False)
    engine, rec = _engine(tiny_sglang_dir, cpu_workers=3)
    tower = os.path.join(tiny_sglang_dir, "clip_vision_tower")
    assert rec.kwargs == {
        "model_path": tiny_sglang_dir,
        "dtype": "auto",
        "load_format": "safetensors",
        "tp_size": 1,
        "mem_fraction_static": 0.8,
        "json_model_override_args": json.dumps({"mm_vision_tower": tower}),
    }
    assert os.environ["SGLANG_CPU_WORKERS"] == "3"
    assert os.environ["SGLANG_EXTERNAL_MODEL_PACKAGE"] == MODELS_PACKAGE
    a, b = _jpeg("red"), _jpeg("blue")
    reqs = [
        ImageRequest("a", a, task_prompts("cup", "table") + task_prompts("dog", "sofa")),
        ImageRequest("b", b, task_prompts("car", "tree", (2, 3))),
    ]
    results = engine.generate(reqs)

    prime, call = rec.calls  # each image prefilled once (no tokens decoded), then one batched call
    assert prime["image_data"] == [data_url(a), data_url(b)]
    assert prime["prompt"] == [chat_prompt(reqs[0].prompts[0].text), chat_prompt(reqs[1].prompts[0].text)]
    assert prime["sampling_params"] == [{"max_new_tokens": 0}] * 2
    # grouping: image a's 6 prompts first and adjacent, then b's 2; each its own JPEG as a data URL
    assert call["image_data"] == [data_url(a)] * 6 + [data_url(b)] * 2
    assert call["image_data"][0].startswith("data:image/jpeg;base64,/9j/")
    assert call["prompt"] == [chat_prompt(p.text) for r in reqs for p in r.prompts]
    assert call["prompt"][0].startswith("USER: <image>\nGiven the image") and call["prompt"][0].endswith(
        " ASSISTANT:"
    )
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
    assert not any(x.truncated for r in results for x in r.answers)
    engine.close()
    assert rec.shut


def test_cpu_workers_default_to_the_processes_cpus_and_cpu_selects_sglangs_cpu_engine(
    monkeypatch, tiny_sglang_dir
):
    monkeypatch.delenv("SGLANG_CPU_WORKERS", raising=False)
    monkeypatch.setenv("SGLANG_USE_CPU_ENGINE", "")  # restored after the test
    monkeypatch.delenv("SGLANG_USE_CPU_ENGINE")
    _engine(tiny_sglang_dir)
    assert os.environ["SGLANG_CPU_WORKERS"] == str(len(os.sched_getaffinity(0)))
    assert "SGLANG_USE_CPU_ENGINE" not in os.environ
    _, rec = _engine(tiny_sglang_dir, device="cpu")
    assert rec.kwargs["device"] == "cpu" and os.environ["SGLANG_USE_CPU_ENGINE"] == "1"
    assert rec.kwargs["attention_backend"] == "torch_native" and rec.kwargs["disable_cuda_graph"] is True
    assert rec.kwargs["mem_fraction_static"] == 0.8  # engine_args win over the CPU defaults


def test_lost_or_unconstrained_outputs_are_errors(tiny_sglang_dir):
    engine, rec = _engine(tiny_sglang_dir)
    rec.generate = lambda prompt, image_data, sampling_params: [{"text": "x"}] * (len(prompt) - 1)
    with pytest.raises(EngineError, match="outputs for"):
        engine.generate([ImageRequest("a", _jpeg("red"), task_prompts("cup", "table"))])
    rec.generate = lambda prompt, image_data, sampling_params: [{"text": "inside"}] * len(prompt)
    with pytest.raises(EngineError, match="not one of the choices"):
        engine.generate([ImageRequest("a", _jpeg("red"), task_prompts("cup", "table", (1,)))])


def test_adapter_is_refused_and_missing_sglang_is_a_clear_error(monkeypatch, tiny_sglang_dir):
    with pytest.raises(ConfigError, match="adapter"):
        from_dict(EngineConfig, {"kind": "sglang", "adapter": "/a"})
    import sys

    monkeypatch.setitem(sys.modules, "sglang", None)  # import fails like on a CPU node
    with pytest.raises(EngineError, match="not installed"):
        make_engine(EngineConfig(kind="sglang", model=tiny_sglang_dir))


def test_answers_hitting_max_new_tokens_are_truncated(tiny_sglang_dir):
    engine, rec = _engine(tiny_sglang_dir, max_new_tokens=2)
    [res] = engine.generate([ImageRequest("a", _jpeg("red"), task_prompts("cup", "table"))])
    assert [x.truncated for x in res.answers] == [False, True, True]
    assert res.answers[0].text in RELATIONS
    assert all(
        o["meta_info"]["finish_reason"]["type"] == "length"
        for o in rec.generate(prompt=["x"], sampling_params=[{"max_new_tokens": 1}])
    )


def test_an_aborted_request_fails_its_batch_and_alone_only_itself(tiny_sglang_dir):
    """SGLang raises ValueError for the whole call; the generate stage then retries each request
    alone (as for the hf engine), so only the broken one becomes an error row."""
    engine, rec = _engine(tiny_sglang_dir)
    good = [
        ImageRequest(k, _jpeg(c), task_prompts("cup", "table", (1, 2)))
        for k, c in (("g1", "red"), ("g2", "blue"))
    ]
    bad = ImageRequest("bad", b"\xff\xd8 not a jpeg", task_prompts("cup", "table", (1, 2)))
    with pytest.raises(
        EngineError,
        match=r"^sglang aborted a request of 'g1', 'bad', 'g2': Error while processing "
        r"image: Could not decode image",
    ):
        engine.generate([good[0], bad, good[1]])
    assert [len(engine.generate([g])[0].answers) for g in good] == [2, 2]
    with pytest.raises(EngineError, match="'bad'"):
        engine.generate([bad])
    long = ImageRequest("long", _jpeg("red"), task_prompts("cup " * 3000, "table", (2,)))
    with pytest.raises(EngineError, match=r"longer than the model's context length"):
        engine.generate([long])


def test_models_are_localised_and_checked_before_the_engine_starts(
    tiny_sglang_dir, tiny_llava_dir, tmp_path, s3_bucket, monkeypatch
):
    from tests.model.test_loader import _upload_dir

    made: list = []
    with pytest.raises(
        EngineError,
        match=r"^engine\.model: .* is LlavaForConditionalGeneration, which SGLang "
        r"0\.5\.23 cannot serve as LLaVA; write the original layout with "
        r"`vsd export --layout sglang`",
    ):
        _engine(tiny_llava_dir, made)
    # a pickle-only model: refused before the engine starts (the pickle is never opened)
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_sglang_dir, pickled)
    os.rename(pickled / "model.safetensors", pickled / "pytorch_model.bin")
    with pytest.raises(
        EngineError, match=r"^engine\.model: .* has only pickle weights \(pytorch_model\.bin\)"
    ):
        _engine(str(pickled), made)
    # an index that points at a pickle shard; a tower with pickle weights; remote code
    indexed = tmp_path / "indexed"
    shutil.copytree(tiny_sglang_dir, indexed)
    (indexed / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"lm_head.weight": "x.bin"}})
    )
    with pytest.raises(EngineError, match=r"names shard 'x\.bin'; only \.safetensors"):
        _engine(str(indexed), made)
    tower = tmp_path / "tower"
    shutil.copytree(tiny_sglang_dir, tower)
    os.rename(
        tower / "clip_vision_tower" / "model.safetensors", tower / "clip_vision_tower" / "pytorch_model.bin"
    )
    with pytest.raises(EngineError, match=r"^engine\.model \(CLIP tower\): .* has only pickle weights"):
        _engine(str(tower), made)
    remote = tmp_path / "remote"
    shutil.copytree(tiny_sglang_dir, remote)
    config = json.loads((remote / "config.json").read_text())
    (remote / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoConfig": "x.Config"}}))
    with pytest.raises(
        EngineError, match=r"needs its own Python code \(config auto_map\); remote code is not run"
    ):
        _engine(str(remote), made)
    assert made == []  # no engine was ever started

    monkeypatch.setenv("VSD_CACHE_DIR", str(tmp_path / "cache"))
    uri = f"{s3_bucket}/models/tiny-sglang"
    _upload_dir(tiny_sglang_dir, uri)
    _, rec = _engine(uri, made)
    local = rec.kwargs["model_path"]
    assert local.startswith(str(tmp_path / "cache")) and os.path.isfile(os.path.join(local, "config.json"))
    assert json.loads(rec.kwargs["json_model_override_args"]) == {
        "mm_vision_tower": os.path.join(local, "clip_vision_tower")
    }


def test_engine_args_that_change_loading_or_trust_need_allowing(tiny_sglang_dir):
    for key in (
        "trust_remote_code",
        "load_format",
        "revision",
        "model_loader_extra_config",
        "json_model_override_args",
        "download_dir",
        "remote_instance_weight_loader_backend",
    ):
        with pytest.raises(
            ConfigError,
            match=rf"^sglang\.engine_args\.{key}: changes what the engine "
            r"loads or runs; refused unless allow_engine_args lists it$",
        ):
            _config_with({key: "x"})
    with pytest.raises(ConfigError, match=r"engine_args\.model_path: the model is the config's model field"):
        _config_with({"model_path": "/elsewhere"}, allow=["model_path"])
    cfg = _config_with({"load_format": "safetensors", "tp_size": 2}, allow=["load_format"])
    assert cfg.sglang.engine_args["load_format"] == "safetensors"
    made: list = []
    with pytest.raises(ConfigError, match="trust_remote_code"):  # also for configs built in code
        make_engine(
            EngineConfig(
                kind="sglang",
                model=tiny_sglang_dir,
                sglang=SGLangOptions(engine_args={"trust_remote_code": True}),
            ),
            engine_factory=lambda **kw: made.append(kw),
        )
    assert made == []


def _config_with(engine_args, allow=()):
    return from_dict(
        EngineConfig,
        {"kind": "sglang", "sglang": {"engine_args": engine_args, "allow_engine_args": list(allow)}},
    )


@pytest.mark.gpu
def test_real_sglang_engine(tiny_sglang_dir):
    """Where sglang and a GPU exist: the real engine, the tiny export, one image, 3 tasks."""
    pytest.importorskip("sglang")
    cfg = EngineConfig(
        kind="sglang",
        model=tiny_sglang_dir,
        max_new_tokens=8,
        sglang=SGLangOptions(engine_args={"mem_fraction_static": 0.3, "disable_cuda_graph": True}),
    )
    engine = make_engine(cfg)
    try:
        [res] = engine.generate([ImageRequest("a", _jpeg("red"), task_prompts("cup", "table"))])
        assert res.answers[0].text in RELATIONS and len(res.answers) == 3
    finally:
        engine.close()


def test_a_line_floor_is_a_regex_that_ends_only_after_that_many_lines(tiny_sglang_dir):
    engine, _ = _engine(tiny_sglang_dir)
    assert "regex" not in engine.sampling_params(None, 64)
    rx = engine.sampling_params(None, 64, min_lines=3)["regex"]
    assert re.fullmatch(rx, "The cup is on it.\nA cup on a table.\nThere it is.")
    assert re.fullmatch(rx, "One.\nTwo.\nThree.\nFour.")  # more is the model's choice
    assert not re.fullmatch(rx, "The cup is on it.") and not re.fullmatch(rx, "One.\nTwo.")
    assert not re.fullmatch(rx, "One.\nTwo.\n")  # a broken line must get words before the end
    engine.close()
