"""Relation metrics: task 1 as a 9-way classification, tasks 2-3 by the relation their text states.

Task 1 is scored over *every* reference record: a missing answer is wrong (its own ``missing``
column), an answer outside the 9 relations is wrong (the ``other`` column), so a run that loses
rows never looks better. Macro-F1 follows scikit-learn's convention: the mean over the relations
that occur in the references or the predictions, precision 0 where a relation was never predicted.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterable, Sequence

from vsd.relations import RELATIONS, normalize_relation, parse_relation

OTHER = "other"
MISSING = "missing"
PRED_COLUMNS = (*RELATIONS, OTHER, MISSING)


def normalise_answer(answer: str | None) -> str | None:
    """A task-1 answer -> one of `RELATIONS`, `OTHER` (answered, but not a relation), or ``None``
    (no answer). Only relation phrases normalise (``"In front of."``, ``beneath``); a sentence
    is `OTHER`: task 1 asks for the preposition, and guessing it from prose would hide failures."""
    if answer is None:
        return None
    text = str(answer).strip()
    if not text:
        return OTHER
    if text in RELATIONS:
        return text
    return normalize_relation(text) or OTHER


def _ratio(num: float, den: float) -> float:
    return float(num) / den if den else 0.0


def classification_metrics(truth: Sequence[str], predicted: Sequence[str | None]) -> dict:
    """Accuracy, macro-F1, per-relation precision/recall/F1 and the confusion matrix.

    ``truth`` holds relations from `RELATIONS`; ``predicted`` holds raw answers (normalised here)
    or ``None`` for a missing one.
    """
    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} truths but {len(predicted)} predictions")
    unknown = sorted(set(truth) - set(RELATIONS))
    if unknown:
        raise ValueError(f"reference relations not in the 9 VSD relations: {unknown}")
    preds = [normalise_answer(p) or MISSING for p in predicted]
    pairs = Counter(zip(truth, preds))
    matrix = [[pairs[(t, p)] for p in PRED_COLUMNS] for t in RELATIONS]
    n = len(truth)
    correct = sum(pairs[(r, r)] for r in RELATIONS)
    answered = n - sum(1 for p in preds if p == MISSING)
    per_relation: dict[str, dict] = {}
    for r in RELATIONS:
        support = sum(1 for t in truth if t == r)
        n_pred = sum(1 for p in preds if p == r)
        tp = pairs[(r, r)]
        precision, recall = _ratio(tp, n_pred), _ratio(tp, support)
        f1 = _ratio(2 * precision * recall, precision + recall)
        per_relation[r] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": support,
            "predicted": n_pred,
        }
    present = [r for r in RELATIONS if per_relation[r]["support"] or per_relation[r]["predicted"]]
    return {
        "n": n,
        "answered": answered,
        "missing": n - answered,
        "other": sum(1 for p in preds if p == OTHER),
        "correct": correct,
        "accuracy": _ratio(correct, n) if n else None,
        "accuracy_answered": _ratio(correct, answered) if answered else None,
        "macro_f1": (sum(per_relation[r]["f1"] for r in present) / len(present)) if present else None,
        "per_relation": per_relation,
        "confusion": {"rows": list(RELATIONS), "columns": list(PRED_COLUMNS), "matrix": matrix},
    }


def sentence_relation_agreement(items: Iterable[tuple[str, str | None, str | None, str]]) -> dict:
    """For (sentence, subject, object, true relation) items: the share of sentences whose
    `parse_relation` is the true relation, the share where it finds none, and the confusions."""
    n = agree = none_found = 0
    wrong: Counter = Counter()
    for sentence, subject, obj, truth in items:
        n += 1
        found = parse_relation(sentence or "", subject, obj)
        if found is None:
            none_found += 1
        elif found == truth:
            agree += 1
        else:
            wrong[f"{truth} -> {found}"] += 1
    found = n - none_found
    return {
        "sentences": n,
        "agree": agree,
        "none_found": none_found,
        "agree_share": _ratio(agree, n) if n else None,
        "none_share": _ratio(none_found, n) if n else None,
        "agree_share_of_found": _ratio(agree, found) if found else None,
        "top_confusions": dict(wrong.most_common(10)),
    }


def confusion_png(confusion: dict, title: str = "Task 1: true relation vs predicted") -> bytes:
    """The confusion matrix as a PNG (counts in the cells, rows = truth). Uses the Agg canvas
    directly so the process-wide matplotlib backend is left alone."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    matrix = np.asarray(confusion["matrix"], dtype=float)
    rows, cols = confusion["rows"], confusion["columns"]
    fig = Figure(figsize=(1.0 + 0.75 * len(cols), 1.2 + 0.6 * len(rows)), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            if matrix[i, j]:
                ax.text(
                    j,
                    i,
                    f"{int(matrix[i, j])}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if shares[i, j] > 0.5 else "black",
                )
    ax.set_xticks(range(len(cols)), labels=cols, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), labels=rows, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
