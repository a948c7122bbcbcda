"""Task-1 metrics against a hand-computed confusion; answers outside the 9 relations; the PNG."""

from __future__ import annotations

import io

import pytest

from vsd.evaluate.relation_metrics import (
    MISSING,
    OTHER,
    PRED_COLUMNS,
    classification_metrics,
    confusion_png,
    normalise_answer,
    sentence_relation_agreement,
)
from vsd.relations import RELATIONS


def test_tiny_confusion_by_hand():
    truth = ["on", "on", "in", "under", "above"]
    pred = ["on", "in", "in", None, "the cup is on the table"]
    m = classification_metrics(truth, pred)
    assert m["n"] == 5 and m["answered"] == 4 and m["missing"] == 1 and m["other"] == 1
    assert m["accuracy"] == pytest.approx(2 / 5)  # a missing answer counts as wrong
    assert m["accuracy_answered"] == pytest.approx(2 / 4)
    on, in_, under = (m["per_relation"][r] for r in ("on", "in", "under"))
    assert (on["precision"], on["recall"], on["f1"]) == pytest.approx((1.0, 0.5, 2 / 3))
    assert (in_["precision"], in_["recall"], in_["f1"]) == pytest.approx((0.5, 1.0, 2 / 3))
    assert under["f1"] == 0.0 and under["support"] == 1 and under["predicted"] == 0
    # macro over the relations present in truth or predictions: on, in, under, above
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0 + 0) / 4)
    conf = m["confusion"]
    assert conf["rows"] == list(RELATIONS) and conf["columns"] == list(PRED_COLUMNS)
    cell = lambda t, p: conf["matrix"][RELATIONS.index(t)][PRED_COLUMNS.index(p)]  # noqa: E731
    assert cell("on", "on") == 1 and cell("on", "in") == 1 and cell("in", "in") == 1
    assert cell("under", MISSING) == 1 and cell("above", OTHER) == 1
    assert sum(map(sum, conf["matrix"])) == 5


def test_perfect_and_all_wrong():
    truth = list(RELATIONS) * 2
    assert classification_metrics(truth, truth)["accuracy"] == 1.0
    assert classification_metrics(truth, truth)["macro_f1"] == 1.0
    rotated = truth[1:] + truth[:1]
    m = classification_metrics(truth, rotated)
    assert m["accuracy"] == 0.0 and m["macro_f1"] == 0.0


def test_answer_normalisation():
    assert normalise_answer("In front of.") == "in front of"
    assert normalise_answer("to the left of") == "to the left of"
    assert normalise_answer("beneath") == "under"
    assert normalise_answer("") == OTHER
    assert normalise_answer("a cat") == OTHER
    assert normalise_answer(None) is None


def test_unknown_reference_relation_is_refused():
    with pytest.raises(ValueError, match="inside of"):
        classification_metrics(["inside of"], ["in"])


def test_sentence_agreement_counts_found_and_none():
    m = sentence_relation_agreement(
        [
            ("the cup is on the table.", "cup", "table", "on"),
            ("a dog sleeps under the chair", "dog", "chair", "under"),
            ("the cup is under the table", "cup", "table", "on"),
            ("a photo of a kitchen", "cup", "table", "on"),
        ]
    )
    assert m["sentences"] == 4 and m["agree"] == 2 and m["none_found"] == 1
    assert m["agree_share"] == pytest.approx(0.5) and m["none_share"] == pytest.approx(0.25)
    assert m["agree_share_of_found"] == pytest.approx(2 / 3)
    assert m["top_confusions"] == {"on -> under": 1}


def test_confusion_png_is_an_image():
    from PIL import Image

    m = classification_metrics(["on", "in", "under"], ["on", "on", None])
    png = confusion_png(m["confusion"])
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size[0] > 300 and image.size[1] > 300
