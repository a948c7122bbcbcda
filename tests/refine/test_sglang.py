"""The sglang refiner: requests checked against a recording stand-in of ``sglang.Engine`` on CPU;
the real engine runs in the ``gpu`` test where sglang and CUDA exist."""

from __future__ import annotations

import pytest

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


class RecordingEngine:
    """Stands in for ``sglang.Engine``: same constructor/generate/shutdown surface, records all."""

    instances: list["RecordingEngine"] = []

    def __init__(self, answer, **kwargs):
        self.answer = answer
        self.kwargs = kwargs
        self.calls: list[dict] = []
        self.shut = False
        RecordingEngine.instances.append(self)

    def generate(self, prompt=None, sampling_params=None, **kwargs):
        assert isinstance(prompt, list), "batched prompts are sent as one list"
        self.calls.append({"prompt": list(prompt), "sampling_params": dict(sampling_params), **kwargs})
        # Every copy of a prompt is its own sample: number them so tests see the order survive.
        seen: dict[str, int] = {}
        out = []
        for p in prompt:
            k = seen[p] = seen.get(p, -1) + 1
            out.append({"text": self.answer(p, k), "meta_info": {"id": len(out)}})
        return out

    def shutdown(self):
        self.shut = True


def make(cfg, answer):
    return SGLangRefiner(cfg, engine_factory=lambda **kw: RecordingEngine(answer, **kw))


def config(model_dir, **kw):
    base = dict(mode="sglang", model=model_dir, n_variants=3, temperature=0.9, top_p=0.8, max_new_tokens=40,
                batch_size=2, engine_args={"tp_size": 1, "mem_fraction_static": 0.5})
    return RefineConfig(**{**base, **kw})


def test_requests_prompts_sampling_and_batching(tiny_text_lm_dir, scripted_llm):
    llm = scripted_llm(["junk", "bad", "good"])  # only the third sample of each prompt is faithful
    refiner = make(config(tiny_text_lm_dir), llm.answer)
    engine = refiner.engine
    outcomes = refiner.refine(ITEMS)
    refiner.close()

    assert engine.kwargs == {"model_path": tiny_text_lm_dir, "tp_size": 1, "mem_fraction_static": 0.5}
    assert engine.shut
    # 4 sentences in batches of 2 prompts, each prompt sent n_variants=3 times in a row.
    assert len(engine.calls) == 2
    builder = PromptBuilder(config(tiny_text_lm_dir), load_tokenizer(tiny_text_lm_dir))
    requests = [RewriteRequest(i, j, s, it.subject, it.object, it.relation)
                for i, it in enumerate(ITEMS) for j, s in enumerate(it.sentences)]
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
    assert outcomes[1].reasons == ["sentence 1: rewrite says 'to the right of', the original 'to the left of'"]


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
    cfg = config(tiny_text_lm_dir, max_new_tokens=16, engine_args={
        "attention_backend": "triton", "mem_fraction_static": 0.3, "disable_cuda_graph": True})
    with make_refiner(cfg) as refiner:
        outcomes = refiner.refine(ITEMS)
    assert [o.sentences for o in outcomes] == [i.sentences for i in ITEMS]
    assert all(len(o.reasons) == len(i.sentences) for o, i in zip(outcomes, ITEMS))
