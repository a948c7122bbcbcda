"""The ``sglang`` refiner with the real engine on a tiny chat LM: the guardrail judges every answer
(a random tiny LM never writes a faithful rewrite, so every original is kept, with its reason)."""

from __future__ import annotations

from vsd.refine import STATUSES, RefineConfig, RefineItem, make_refiner

ITEMS = [
    RefineItem("cup", "table", "on", ["The cup is on the table.", "A cup is on top of the table."]),
    RefineItem("dog", "car", "to the left of", ["The dog is to the left of the car."]),
    RefineItem("", "", None, ["A lamp is behind a sofa."]),  # scene level
]


def test_real_engine_answers_go_through_the_guardrail(tiny_text_lm_dir):
    cfg = RefineConfig(
        mode="sglang",
        model=tiny_text_lm_dir,
        device="cpu",
        dtype="bfloat16",
        temperature=0.7,
        n_variants=2,
        max_new_tokens=12,
        batch_size=8,
    )
    with make_refiner(cfg) as refiner:
        raw = refiner._generate([refiner.prompts.render(r) for r in refiner_requests()], 2)
        outcomes = refiner.refine(ITEMS)
    assert [len(group) for group in raw] == [2] * 4 and all(isinstance(t, str) for g in raw for t in g)
    assert [o.sentences for o in outcomes] == [i.sentences for i in ITEMS]
    assert all(len(o.reasons) == len(i.sentences) for o, i in zip(outcomes, ITEMS))
    assert [o.status for o in outcomes] == ["kept_original"] * 3 and set(STATUSES) >= {
        o.status for o in outcomes
    }


def refiner_requests():
    from vsd.refine.base import RewriteRequest

    return [
        RewriteRequest(i, j, s, it.subject, it.object, it.relation)
        for i, it in enumerate(ITEMS)
        for j, s in enumerate(it.sentences)
    ]
