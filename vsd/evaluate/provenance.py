"""Who wrote the published descriptions, and the figures that count only what the model wrote.

Repair fills a missing or disagreeing sentence with a forced opening that states task 1's label
(``model_completed``, or ``template`` when the model's ending was dropped). Scored together with the
model's own sentences, such fills lift the caption metrics (they share the references' frames) and
make the published true-relation share equal task-1 accuracy, whatever the model wrote. So the
evaluation reports, per task: the share of published sentences by writer, the published sentences
scored again with only the model-written ones (``model`` and ``refined``) kept, and how many
true sentences of the model a repair overwrote with task 1's wrong label -- figures that filling
in cannot raise.
"""

from __future__ import annotations

from collections import Counter

from vsd.annotate.repair import FILLED, MODEL, MODEL_WRITTEN, SOURCES
from vsd.evaluate.inputs import Key, Prediction, Predictions, Reference
from vsd.relations import parse_relation

UNKNOWN = "unknown"  # refined text from an output written before provenance was recorded


def _sentences(task: int, prediction: Prediction) -> list[str]:
    if task == 3:
        return (
            list(prediction) if not isinstance(prediction, str) else [s for s in prediction.split("\n") if s]
        )
    return [prediction if isinstance(prediction, str) else " ".join(prediction)]


def published_sources(preds: Predictions, key: Key) -> list[str]:
    """Who wrote each published sentence of ``key``: the recorded sources of its refined text; the
    model where no refined text exists (the published text is then the model's own)."""
    if key in preds.refined:
        n = len(_sentences(key[1], preds.refined[key]))
        given = preds.sources.get(key)
        if given is None or len(given) != n:
            return [UNKNOWN] * n
        return [s or UNKNOWN for s in given]
    return [MODEL] * len(_sentences(key[1], preds.raw[key])) if key in preds.raw else []


def model_written(preds: Predictions, task: int) -> dict[Key, Prediction]:
    """The published sentences the model wrote (``model`` / ``refined``), per key; keys without any
    are left out, so a row the repair wholly filled in is not scored as if the model had answered."""
    published = {**preds.raw, **preds.refined}
    out: dict[Key, Prediction] = {}
    for key, value in published.items():
        if key[1] != task:
            continue
        own = [
            s
            for s, src in zip(_sentences(task, value), published_sources(preds, key))
            if src in MODEL_WRITTEN
        ]
        if own:
            out[key] = own if task == 3 else own[0]
    return out


def source_shares(preds: Predictions, refs: dict[Key, Reference], task: int) -> dict:
    """Published sentences of ``task`` (on referenced records) by writer: counts and shares."""
    counts: Counter = Counter()
    for key in refs:
        if key[1] == task:
            counts.update(published_sources(preds, key))
    n = sum(counts.values())
    order = [*SOURCES, UNKNOWN]
    return {
        "sentences": n,
        "counts": {s: counts[s] for s in order if counts[s]},
        "shares": {s: round(counts[s] / n, 4) for s in order if counts[s]} if n else {},
        "filled_share": round(sum(counts[s] for s in FILLED) / n, 4) if n else None,
    }


def overwritten_true(preds: Predictions, refs: dict[Key, Reference], task: int) -> dict:
    """Model sentences that stated the true relation and that repair replaced with task 1's label
    when that label was wrong (a true sentence made false: the target is 0). Read from the
    ``repaired:task<N>[.<i>]`` flags and the model's own text, which the output keeps."""
    rows = sentences = 0
    for (rid, t), ref in refs.items():
        if t != task or (rid, 1) not in preds.raw or preds.raw[(rid, 1)] == ref.relation:
            continue
        raw = _sentences(task, preds.raw.get((rid, task)) or ([] if task == 3 else ""))
        hit = 0
        for flag in preds.flags.get(rid, []):
            slot = _repaired_slot(flag, task)
            if (
                slot is not None
                and slot < len(raw)
                and parse_relation(raw[slot], ref.subject, ref.object) == ref.relation
            ):
                hit += 1
        rows += bool(hit)
        sentences += hit
    return {"rows": rows, "sentences": sentences}


def _repaired_slot(flag: str, task: int) -> int | None:
    head = f"repaired:task{task}"
    if not flag.startswith(head):
        return None
    rest = flag[len(head) :].split(" ", 1)[0]
    if task == 2:
        return 0 if rest == "" else None
    return int(rest[1:]) if rest.startswith(".") and rest[1:].isdigit() else None
