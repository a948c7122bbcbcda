"""Token budgets come from the answer lengths the model was trained on; a number in the config wins."""

from __future__ import annotations

import json

from vsd.annotate.budgets import DEFAULTS, budget_from, token_budgets
from vsd.annotate.engines import EngineConfig
from vsd.train.answer_lengths import answer_tokens, length_stats, percentile


def test_percentiles_are_nearest_rank():
    values = list(range(1, 101))
    assert [percentile(values, q) for q in (50, 90, 99)] == [50, 90, 99]
    assert length_stats([3, 1, 2]) == {"n": 3, "mean": 2.0, "p50": 2, "p90": 3, "p99": 3, "max": 3}


def test_answer_tokens_per_task_with_a_real_tokenizer(tiny_llava_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llava_dir)
    one = "The cup is on the table."
    three = "\n".join([one, "There is a cup on the table.", "A cup can be seen on the table."])
    stats = answer_tokens([1, 2, 3, 2], ["on", one, three, one], tok)
    assert set(stats) == {"1", "2", "3"}
    assert (
        stats["2"]["n"] == 2 and stats["2"]["max"] == len(tok(one, add_special_tokens=False)["input_ids"]) + 1
    )
    assert stats["3"]["p99"] > 2 * stats["2"]["p99"] > 2 * stats["1"]["p99"]


def test_budgets_from_an_export_record_a_config_number_or_the_defaults(tmp_path):
    model = tmp_path / "export"
    model.mkdir()
    (model / "vsd_export.json").write_text(
        json.dumps({"answer_tokens": {"2": {"p99": 30, "max": 33}, "3": {"p99": 90, "max": 101}}})
    )
    assert token_budgets(EngineConfig(kind="hf", model=str(model))) == {2: 38, 3: 113}
    assert token_budgets(EngineConfig(kind="hf", model=str(model), max_new_tokens=24)) == {2: 24, 3: 24}
    assert token_budgets(EngineConfig(kind="hf", model="tiny:llava")) == DEFAULTS
    assert budget_from({"p99": 4}) == 12  # at least 8 tokens above p99
