"""The sglang refiner: requests checked against a recording stand-in of ``sglang.Engine`` on CPU
(tests/fixtures/sglang.py); the real engine runs in tests/sglang/ (CPU kit) and in the ``gpu`` test."""

from __future__ import annotations

import pytest

from tests.fixtures.sglang import RecordingSGLang
from vsd.config import ConfigError
from vsd.errors import VSDError
from vsd.refine import RefineConfig, RefineItem, make_refiner
from vsd.refine.base import RewriteRequest
from vsd.refine.chat import PromptBuilder, load_tokenizer
from vsd.refine.sglang import SGLangRefiner

ITEMS = [
    RefineItem("cup", "table", "on", ["The cup is on the table.", "A cup is on top of the table."]),
    RefineItem("dog", "car", "to the left of", ["The dog is to the left of the car."]),
    RefineItem("", "", None, ["A lamp is behind a sofa."]),  # scene level
]


def make(cfg, answer):
    """The refiner over the shared recording stand-in; ``answer(prompt, k)``: the k-th copy's text."""
    return SGLangRefiner(
        cfg,
        engine_factory=lambda **kw: RecordingSGLang(
            lambda prompt, params, position, copy: answer(prompt, copy), **kw
        ),
    )


def config(model_dir, **kw):
    base = dict(
        mode="sglang",
        model=model_dir,
        n_variants=3,
        temperature=0.9,
        top_p=0.8,
        max_new_tokens=40,
        batch_size=2,
        engine_args={"tp_size": 1, "mem_fraction_static": 0.5},
    )
    return RefineConfig(**{**base, **kw})


def test_requests_prompts_sampling_and_batching(tiny_text_lm_dir, scripted_llm):
    llm = scripted_llm(["junk", "bad", "good"])  # only the third sample of each prompt is faithful
    refiner = make(config(tiny_text_lm_dir), llm.answer)
    engine = refiner.engine
    outcomes = refiner.refine(ITEMS)
    refiner.close()

    assert engine.kwargs == {
        "model_path": tiny_text_lm_dir,
        "dtype": "auto",
        "load_format": "safetensors",
        "tp_size": 1,
        "mem_fraction_static": 0.5,
    }
    assert engine.shut
    # 4 sentences in batches of 2 prompts, each prompt sent n_variants=3 times in a row.
    assert len(engine.calls) == 2
    builder = PromptBuilder(config(tiny_text_lm_dir), load_tokenizer(tiny_text_lm_dir))
    requests = [
        RewriteRequest(i, j, s, it.subject, it.object, it.relation)
        for i, it in enumerate(ITEMS)
        for j, s in enumerate(it.sentences)
    ]
    expected = [builder.render(r) for r in requests]
    sent = [p for call in engine.calls for p in call["prompt"]]
    assert sent == [p for p in expected for _ in range(3)]
    assert sent[0].endswith("Sentence: The cup is on the table. ASSISTANT:")
    assert "Keep every object it names and how they are placed" in expected[3]
    for call in engine.calls:
        assert call["sampling_params"] == {"max_new_tokens": 40, "temperature": 0.9, "top_p": 0.8}

    assert [o.status for o in outcomes] == ["refined"] * 3
    assert outcomes[0].sentences == ["The cup sits on the table.", "A cup sits on top of the table."]
    assert outcomes[2].sentences == ["A lamp sits behind a sofa."]


def test_greedy_sends_each_prompt_once(tiny_text_lm_dir, scripted_llm):
    llm = scripted_llm(["bad"])
    refiner = make(config(tiny_text_lm_dir, temperature=0.0, batch_size=8), llm.answer)
    outcomes = refiner.refine(ITEMS)
    [call] = refiner.engine.calls
    assert len(call["prompt"]) == 4
    assert call["sampling_params"] == {"max_new_tokens": 40, "temperature": 0.0}
    assert [o.sentences for o in outcomes] == [i.sentences for i in ITEMS]
    assert outcomes[1].reasons == [
        "sentence 1: rewrite says 'to the right of', the original 'to the left of'"
    ]


def test_without_sglang_installed_the_error_is_one_line(tiny_text_lm_dir):
    try:
        import sglang  # noqa: F401
    except ImportError:
        with pytest.raises(VSDError, match="sglang is not installed"):
            make_refiner(config(tiny_text_lm_dir))
    else:
        pytest.skip("sglang is installed here")


@pytest.mark.gpu
def test_real_sglang_engine_keeps_originals_of_a_random_model(tiny_text_lm_dir):
    pytest.importorskip("sglang")
    cfg = config(
        tiny_text_lm_dir,
        max_new_tokens=16,
        engine_args={"attention_backend": "triton", "mem_fraction_static": 0.3, "disable_cuda_graph": True},
    )
    with make_refiner(cfg) as refiner:
        outcomes = refiner.refine(ITEMS)
    assert [o.sentences for o in outcomes] == [i.sentences for i in ITEMS]
    assert all(len(o.reasons) == len(i.sentences) for o, i in zip(outcomes, ITEMS))


def test_the_refine_model_goes_through_the_loading_policy(
    tiny_text_lm_dir, tmp_path, scripted_llm, monkeypatch
):
    import os
    import shutil

    monkeypatch.setenv("SGLANG_USE_CPU_ENGINE", "0")  # restored after the test

    made: list = []
    factory = lambda **kw: made.append(kw)  # noqa: E731 - must never be reached
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_text_lm_dir, pickled)
    os.rename(pickled / "model.safetensors", pickled / "pytorch_model.bin")
    with pytest.raises(VSDError, match=r"^refine\.model: .* has only pickle weights"):
        SGLangRefiner(config(str(pickled)), engine_factory=factory)
    with pytest.raises(VSDError, match=r"^refine\.model: /nope/x does not exist"):
        SGLangRefiner(config("/nope/x"), engine_factory=factory)
    with pytest.raises(
        ConfigError,
        match=r"^refine\.engine_args\.trust_remote_code: changes what the engine "
        r"loads or runs; refused unless allow_engine_args lists it$",
    ):
        SGLangRefiner(
            config(tiny_text_lm_dir, engine_args={"trust_remote_code": True}), engine_factory=factory
        )
    from vsd.config import from_dict

    with pytest.raises(ConfigError, match=r"^engine_args\.load_format: changes"):
        from_dict(RefineConfig, {"mode": "sglang", "engine_args": {"load_format": "pt"}})
    assert from_dict(
        RefineConfig,
        {
            "mode": "sglang",
            "engine_args": {"load_format": "safetensors"},
            "allow_engine_args": ["load_format"],
        },
    ).engine_args == {"load_format": "safetensors"}
    assert made == []
    refiner = make(config(tiny_text_lm_dir, device="cpu"), scripted_llm(["good"]).answer)
    assert refiner.engine.kwargs["device"] == "cpu" and os.environ["SGLANG_USE_CPU_ENGINE"] == "1"


def test_an_s3_refine_model_is_localised_before_the_engine_starts(
    tiny_text_lm_dir, s3_bucket, tmp_path, monkeypatch, scripted_llm
):
    from tests.model.test_loader import _upload_dir

    monkeypatch.setenv("VSD_CACHE_DIR", str(tmp_path / "cache"))
    _upload_dir(tiny_text_lm_dir, f"{s3_bucket}/lm")
    refiner = make(config(f"{s3_bucket}/lm"), scripted_llm(["good"]).answer)
    assert refiner.engine.kwargs["model_path"].startswith(str(tmp_path / "cache"))
    assert refiner.refine(ITEMS[:1])[0].status == "refined"
