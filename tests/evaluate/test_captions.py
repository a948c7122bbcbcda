"""Caption metrics: hand-computed BLEU / ROUGE-L, PTB tokenisation equal to pycocoevalcap's, SPICE
skipped with its reason, and Java processes that never outlive an error."""

from __future__ import annotations

import math

import pytest

from vsd.errors import VSDError
from vsd.evaluate.captions import CaptionMetricsError, CaptionScorer, ptb_tokenize, spice_unavailable_reason


@pytest.fixture(scope="module")
def hand_cases(caption_scorer):
    """Every small case scored once through the shared JVM."""
    s = caption_scorer
    return {
        "pair": s.score({"a": "The cat sat on the mat."}, {"a": ["the cat is on the mat"]}),
        "corpus": s.score({"a": "a b c", "b": "x y"}, {"a": ["a b c"], "b": ["p q r"]}),
        "rouge": s.score({"a": "a b c d"}, {"a": ["a c d e f"]}),
        "rouge_multi": s.score({"a": "a b c d"}, {"a": ["a b", "a b c d e f g h"]}),
        "empty": s.score(
            {"a": "the cup is on the table", "b": ""},
            {"a": ["the cup is on the table"], "b": ["a dog under a chair"]},
        ),
        "same": s.score(
            {"a": "the cup is on the table", "b": "a dog is under the chair"},
            {
                "a": ["the cup is on the table", "a cup on a table"],
                "b": ["a dog is under the chair", "the dog lies below a chair"],
            },
        ),
    }


def test_bleu_of_a_known_pair(hand_cases):
    # unigrams: the(2) cat on mat match 5 of 6; bigrams: "the cat", "on the", "the mat" = 3 of 5; equal lengths
    r = hand_cases["pair"]
    assert r["Bleu_1"] == pytest.approx(5 / 6, rel=1e-6)
    assert r["Bleu_2"] == pytest.approx(math.sqrt(5 / 6 * 3 / 5), rel=1e-6)


def test_bleu_is_corpus_level_with_brevity_penalty(hand_cases):
    # 3 of 5 hypothesis unigrams match; hypothesis length 5 vs reference length 6
    assert hand_cases["corpus"]["Bleu_1"] == pytest.approx(0.6 * math.exp(1 - 6 / 5), rel=1e-6)


def test_rouge_l_of_known_pairs(hand_cases):
    def f(p: float, r: float, beta: float = 1.2) -> float:
        return (1 + beta**2) * p * r / (r + beta**2 * p)

    assert hand_cases["rouge"]["ROUGE_L"] == pytest.approx(f(3 / 4, 3 / 5))  # LCS "a c d"
    # pycocoevalcap takes the best precision and the best recall over the references separately
    assert hand_cases["rouge_multi"]["ROUGE_L"] == pytest.approx(f(max(2 / 4, 4 / 4), max(2 / 2, 4 / 8)))


def test_identical_captions_score_one_and_empty_ones_zero(hand_cases):
    same = hand_cases["same"]
    for metric in ("Bleu_1", "Bleu_4", "ROUGE_L"):
        assert same[metric] == pytest.approx(1.0, abs=1e-6)
    assert same["METEOR"] > 0.99
    empty = hand_cases["empty"]
    assert empty["empty_predictions"] == 1 and empty["n"] == 2
    assert 0.0 < empty["METEOR"] < same["METEOR"] and empty["ROUGE_L"] == pytest.approx(0.5)


def test_spice_is_skipped_with_its_reason(hand_cases):
    reason = spice_unavailable_reason()
    r = hand_cases["pair"]
    if reason is None:  # a machine with the Stanford models installed runs it
        assert isinstance(r["SPICE"], float) or r["spice_skipped"].startswith("SPICE skipped: SPICE failed")
    else:
        assert r["SPICE"] is None and r["spice_skipped"] == f"SPICE skipped: {reason}"
        assert "stanford-corenlp-3.6.0" in reason
    assert CaptionScorer(spice=False).spice_skipped() == "SPICE skipped: disabled"


def test_ptb_tokenize_matches_pycocoevalcap_and_keeps_lines_aligned():
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    texts = [
        "The cup is ON the table.",
        "",
        'A man (left) -- riding; it\'s "nice"!',
        "...",
        "café near x",
        "a, b",
    ]
    ours = ptb_tokenize(texts)
    theirs = PTBTokenizer().tokenize({i: [{"caption": t}] for i, t in enumerate(texts)})
    assert ours == [theirs[i][0] for i in range(len(texts))]
    # pycocoevalcap shifts every later caption after a form feed or U+2028; ours stays aligned
    assert ptb_tokenize(["a\x0cb", "c\u2028d", "last one"]) == ["a b", "c d", "last one"]


def test_missing_java_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CaptionMetricsError, match="Java"):
        ptb_tokenize(["a cup"])
    assert spice_unavailable_reason() == "'java' is not on PATH"

    from tests.fixtures.evaluate import synthetic_references, write_instructions
    from vsd.evaluate.report import evaluate

    ref = write_instructions(synthetic_references(3), tmp_path / "ref.parquet")
    with pytest.raises(VSDError, match="--no-captions"):
        evaluate(ref, ref)
    assert evaluate(ref, ref, captions=False)["relation_accuracy"] == 1.0


def test_meteor_failure_closes_its_java(monkeypatch):
    """A METEOR process that dies is reaped and reported with Java's own message, and the scorer
    does not reuse it (pycocoevalcap's lock would stay held and the next call hang)."""
    from pycocoevalcap.meteor import meteor as meteor_module

    monkeypatch.setattr(meteor_module, "METEOR_JAR", "no-such-meteor.jar")
    scorer = CaptionScorer()
    with pytest.raises(CaptionMetricsError, match="METEOR.*no-such-meteor.jar"):
        scorer._meteor_score({"a": ["a cup"]}, {"a": ["a cup"]})
    assert scorer._meteor is None


def test_close_reaps_the_meteor_process():
    from vsd.evaluate.captions import _meteor_class

    meteor = _meteor_class()()
    proc = meteor.meteor_p
    meteor.close()
    assert proc.poll() is not None
    meteor.close()  # idempotent


def test_streamed_meteor_equals_pycocoevalcaps_round_trips(caption_scorer, vsd_val_reference_rows):
    """Our streamed METEOR sends the same lines as pycocoevalcap's one-at-a-time protocol: the same
    JVM gives the same corpus and per-caption scores both ways, on real VSD captions."""
    from pycocoevalcap.meteor.meteor import Meteor

    rows = [r for r in vsd_val_reference_rows if r["task"] == 2][:40]
    texts = [r["answer"] for r in rows]
    tokens = dict(zip(texts, caption_scorer.tokenize(texts)))
    gts = {r["record_id"]: caption_scorer.tokenize(r["references"]) for r in rows}
    res = {
        r["record_id"]: [tokens[texts[(i + 1) % len(texts)]]] for i, r in enumerate(rows)
    }  # shifted: not all 1.0
    caption_scorer._meteor_score(gts, res)  # starts the JVM if no test did yet
    meteor = caption_scorer._meteor
    ours = meteor.compute_score(gts, res)
    theirs = Meteor.compute_score(meteor, gts, res)
    assert ours == theirs and 0.0 < ours[0] < 0.5
