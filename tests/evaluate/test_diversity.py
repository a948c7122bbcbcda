"""Diversity figures move the right way: copies score as repetitive, varied answers as varied."""

from __future__ import annotations

import pytest

from vsd.evaluate.diversity import bleu, distinct_n, diversity, self_bleu

SAME = ["The cup is on the table."] * 3
VARIED = ["The cup is on the table.", "A red cup rests on top of a wooden table.", "Look: a cup, atop it."]


def test_bleu_is_one_for_a_copy_and_low_for_unrelated_words():
    assert bleu("The cup is on the table.", ["the cup is on the table"]) == pytest.approx(1.0)
    assert bleu("A dog runs far away.", ["The cup is on the table."]) < 0.1
    assert bleu("", ["x"]) == 0.0


def test_copies_are_repetitive_and_varied_answers_are_not():
    assert self_bleu([SAME]) == pytest.approx(1.0)
    assert self_bleu([VARIED]) < 0.3
    assert distinct_n(SAME) == round(5 / 15, 4)  # 5 distinct bigrams, 15 in all
    assert distinct_n(VARIED) > 0.8
    assert self_bleu([["only one sentence"]]) is None  # nothing to compare within the answer
    assert diversity([SAME, VARIED]) == {
        "distinct_2": distinct_n(SAME + VARIED),
        "self_bleu": round((1.0 + self_bleu([VARIED])) / 2, 4),
        "answers": 2,
    }
