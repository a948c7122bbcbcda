"""The hf refiner: real prompts through the tiny model's chat template, real guardrail.

The tiny model is random, so its output is garbage: every original must survive, with a reason per
sentence. The acceptance path runs with a scripted generator injected in place of the weights.
"""

from __future__ import annotations

import pytest

from vsd.config import ConfigError, from_dict
from vsd.errors import VSDError
from vsd.refine import RefineConfig, RefineItem, make_refiner
from vsd.refine.chat import parse_rewrite
from vsd.refine.llm import HFRefiner

ITEMS = [
    RefineItem(
        "cup",
        "table",
        "on",
        ["The cup is on the table.", "A cup is on top of the table.", "The cup is atop the wooden table."],
    ),
    RefineItem("dog", "car", "to the left of", ["The dog is to the left of the car."]),
    RefineItem("lamp", "bed", "next to", ["The lamp is next to the bed.", "The lamp is beside the bed."]),
]


def hf_config(model_dir: str, **kw) -> RefineConfig:
    base = dict(
        mode="hf",
        model=model_dir,
        device="cpu",
        max_new_tokens=12,
        n_variants=2,
        temperature=0.8,
        batch_size=4,
    )
    return RefineConfig(**{**base, **kw})


def test_tiny_random_model_keeps_every_original_sentence_and_says_why(tiny_text_lm_dir):
    with make_refiner(hf_config(tiny_text_lm_dir)) as refiner:
        assert isinstance(refiner, HFRefiner)
        outcomes = refiner.refine(ITEMS)
    assert len(outcomes) == len(ITEMS)
    for item, out in zip(ITEMS, outcomes):
        assert out.sentences == item.sentences
        assert out.status == "kept_original"
        assert len(out.reasons) == len(item.sentences)
        for k, reason in enumerate(out.reasons, 1):
            assert reason.startswith(f"sentence {k}: rewrite "), reason


def test_greedy_decoding_is_batched_and_also_keeps_originals(tiny_text_lm_dir):
    refiner = HFRefiner(hf_config(tiny_text_lm_dir, temperature=0.0, batch_size=2))
    raw = refiner._generate([refiner.prompts.render(r) for r in _requests(ITEMS[:1])], 1)
    assert len(raw) == 3 and all(len(group) == 1 for group in raw)
    outcomes = refiner.refine(ITEMS)
    refiner.close()
    assert [o.sentences for o in outcomes] == [i.sentences for i in ITEMS]


def _requests(items):
    from vsd.refine.base import RewriteRequest

    return [
        RewriteRequest(i, j, s, it.subject, it.object, it.relation)
        for i, it in enumerate(items)
        for j, s in enumerate(it.sentences)
    ]


def test_faithful_rewrites_are_accepted_and_prompts_use_the_chat_template(tiny_text_lm_dir, scripted_llm):
    llm = scripted_llm(["bad", "good"])  # first variant flips the relation, the second is faithful
    refiner = HFRefiner(hf_config(tiny_text_lm_dir, n_variants=3, batch_size=4), generate_fn=llm)
    outcomes = refiner.refine(ITEMS)

    assert [o.status for o in outcomes] == ["refined"] * 3
    assert outcomes[0].sentences == [
        "The cup sits on the table.",
        "A cup sits on top of the table.",
        "The cup sits atop the wooden table.",
    ]
    assert outcomes[1].sentences == ["The dog sits to the left of the car."]
    assert all(o.reasons == [] for o in outcomes)
    # 6 sentences in batches of 4, 3 variants each; prompts are the tiny model's chat format.
    assert [(len(prompts), n) for prompts, n in llm.calls] == [(4, 3), (2, 3)]
    first = llm.calls[0][0][0]
    assert first.startswith("You edit short descriptions of images.")
    assert "USER: Rewrite the sentence below" in first and first.endswith(
        "Sentence: The cup is on the table. ASSISTANT:"
    )
    assert "Keep the cup, the table and their spatial relation (on)" in first


def test_mixed_outcomes_report_the_first_rejection(tiny_text_lm_dir, scripted_llm):
    llm = scripted_llm(["bad", "junk"])
    outcomes = HFRefiner(hf_config(tiny_text_lm_dir), generate_fn=llm).refine(ITEMS[1:2])
    assert outcomes[0].sentences == ITEMS[1].sentences
    assert outcomes[0].status == "kept_original"
    assert outcomes[0].reasons == [
        "sentence 1: rewrite says 'to the right of', the original 'to the left of' (2 variants rejected)"
    ]


def test_partial_when_only_some_sentences_pass(tiny_text_lm_dir):
    def generate(prompts, n):  # faithful for the lamp/bed pair only
        from tests.fixtures.refine import paraphrase, sentence_in

        return [
            [
                paraphrase(sentence_in(p))
                if sentence_in(p).startswith("The lamp")
                else "Some nonsense words here."
            ]
            * n
            for p in prompts
        ]

    item = RefineItem("lamp", "bed", "next to", ["The lamp is next to the bed.", "The bed has a lamp."])
    [out] = HFRefiner(hf_config(tiny_text_lm_dir), generate_fn=generate).refine([item])
    assert out.status == "partial"
    assert out.sentences == ["The lamp sits next to the bed.", "The bed has a lamp."]
    assert len(out.reasons) == 1 and out.reasons[0].startswith("sentence 2: rewrite drops the subject 'lamp'")


def test_a_rewrite_repeating_an_earlier_sentence_is_not_taken(tiny_text_lm_dir):
    def generate(prompts, n):
        return [["The lamp sits next to the bed."] * n for _ in prompts]

    item = RefineItem(
        "lamp", "bed", "next to", ["The lamp is next to the bed.", "The lamp is beside the bed."]
    )
    [out] = HFRefiner(hf_config(tiny_text_lm_dir), generate_fn=generate).refine([item])
    assert out.sentences == ["The lamp sits next to the bed.", "The lamp is beside the bed."]
    assert out.reasons == ["sentence 2: rewrite repeats sentence 1 (2 variants rejected)"]


@pytest.mark.parametrize(
    "raw, parsed",
    [
        ('Rewritten sentence: "The cup rests on the table."', "The cup rests on the table."),
        ("  \u201cThe cup rests on the table.\u201d ", "The cup rests on the table."),
        (
            "The cup rests on the table.\nNote: kept the relation.",
            "The cup rests on the table.\nNote: kept the relation.",
        ),
    ],
)
def test_parse_rewrite(raw, parsed):
    assert parse_rewrite(raw) == parsed


def test_missing_model_is_one_line_error():
    with pytest.raises(VSDError, match=r"^refine.model: cannot load a tokenizer from '/nonexistent/model'"):
        make_refiner(RefineConfig(mode="hf", model="/nonexistent/model"))


@pytest.mark.parametrize(
    "data, message",
    [
        ({"mode": "vllm"}, "mode: must be one of ['rules', 'hf', 'sglang', 'off'], got 'vllm'"),
        ({"n_variants": 0}, "n_variants: must be >= 1, got 0"),
        ({"top_p": 1.5}, "top_p: must be in (0, 1], got 1.5"),
        ({"device": "tpu"}, "device: must be auto, cpu, cuda or cuda:N, got 'tpu'"),
        ({"prompt": "Rewrite: {text}"}, "prompt: unknown placeholder {text}"),
        ({"prompt": "Rewrite it."}, "prompt: must contain the {sentence} placeholder"),
    ],
)
def test_bad_configs_name_the_field(data, message):
    with pytest.raises(ConfigError) as err:
        from_dict(RefineConfig, data)
    assert str(err.value).startswith(message)


def test_greedy_asks_for_one_variant():
    assert RefineConfig(temperature=0.0, n_variants=4).variants_per_sentence == 1
    assert RefineConfig(temperature=0.7, n_variants=4).variants_per_sentence == 4
