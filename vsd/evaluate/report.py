"""`evaluate`: join predictions to references, compute every VSD metric, write the report.

Scoring choices (documented in report.md too):

* captions (tasks 2-3): as the VSD authors, each generated sentence is scored against *all*
  reference captions of its record. A task-3 answer holds three sentences; each one is scored
  that way (keys ``<record_id>#<i>``) rather than joined into one long hypothesis, so BLEU's
  brevity penalty and n-gram counts stay comparable with task 2 and with the VSD papers;
* missing predictions are counted per task (and how many of them are ``status = error`` rows);
  caption metrics average over the sentences that exist, task-1 accuracy counts a missing
  answer as wrong (``accuracy_answered`` leaves them out);
* annotation Parquet with ``refined_*`` texts is scored twice: ``raw`` and ``refined`` (a row
  whose refinement is null keeps its raw text, as the published annotation does); with the
  per-sentence writer recorded (``description(s)_source``) a third time, ``model_written``: the
  published sentences less those repair filled in, and ``provenance`` says who wrote what
  (`vsd.evaluate.provenance`) -- so a gain that filling in buys is visible as such.
"""

from __future__ import annotations

import json
import time

from vsd import storage
from vsd.annotate.repair import truncated_slots
from vsd.errors import VSDError
from vsd.evaluate.captions import METRICS, CaptionMetricsError, CaptionScorer
from vsd.evaluate.diversity import diversity
from vsd.evaluate.inputs import (
    Key,
    Prediction,
    Predictions,
    Reference,
    load_predictions,
    load_references,
    require_overlap,
)
from vsd.evaluate.provenance import model_written, overwritten_true, source_shares
from vsd.evaluate.relation_metrics import (
    classification_metrics,
    confusion_png,
    sentence_relation_agreement,
)

TASK_NAMES = {1: "classification", 2: "single description", 3: "open-ended description"}


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------


def _coverage(refs: dict[Key, Reference], preds: Predictions, variant: dict[Key, Prediction]) -> dict:
    ref_ids = {rid for rid, _ in refs}
    out: dict = {
        "prediction_format": preds.format,
        "reference_records": len(ref_ids),
        "prediction_rows": preds.rows,
        "duplicate_predictions": preds.duplicates,
        "error_rows": len(preds.errors),
        "unmatched_predictions": len({rid for rid, _ in variant} - ref_ids),
        "tasks": {},
    }
    for task in (1, 2, 3):
        keys = [k for k in refs if k[1] == task]
        missing = [k for k in keys if k not in variant]
        out["tasks"][str(task)] = {
            "references": len(keys),
            "predicted": len(keys) - len(missing),
            "missing": len(missing),
            "missing_error_rows": sum(1 for rid, _ in missing if rid in preds.errors),
        }
    return out


def _sentences(task: int, prediction: Prediction) -> list[str]:
    if task == 3:
        return (
            list(prediction)
            if not isinstance(prediction, str)
            else [s for s in prediction.split("\n") if s.strip()]
        )
    return [prediction if isinstance(prediction, str) else " ".join(prediction)]


def _score_descriptions(
    task: int, refs: dict[Key, Reference], variant: dict[Key, Prediction], scorer: CaptionScorer | None
) -> dict:
    hyps: dict[str, str] = {}
    gts: dict[str, tuple[str, ...]] = {}
    items = []
    for key in sorted(k for k in refs if k[1] == task and k in variant):
        ref = refs[key]
        for i, sentence in enumerate(_sentences(task, variant[key])):
            cid = key[0] if task == 2 else f"{key[0]}#{i}"
            hyps[cid], gts[cid] = sentence, ref.references
            items.append((sentence, ref.subject, ref.object, ref.relation))
    out: dict = {"records": len({k for k in variant if k[1] == task and k in refs}), "sentences": len(hyps)}
    if task == 3:  # the prompt asks for three: how often that is what came back
        counts = [len(_sentences(3, variant[k])) for k in refs if k[1] == 3 and k in variant]
        out["three_sentence_share"] = round(sum(c == 3 for c in counts) / len(counts), 4) if counts else None
        out["diversity"] = diversity([_sentences(3, variant[k]) for k in refs if k[1] == 3 and k in variant])
    out["relation_in_text"] = sentence_relation_agreement(items)
    if scorer is not None:
        out["captions"] = scorer.score(hyps, gts)
    return out


FLAG_KINDS = (
    "truncated:task2",
    "truncated:task3",
    "too_few_sentences:task3",
    "repaired:task2",
    "repaired:task3",
    "not_repaired",
)


def _bare(sentence: str) -> str:
    return " ".join(sentence.split()).rstrip(".!?;, ").lower()


def _cut_sentences(preds: Predictions, rid: str, row_flags: list[str]) -> list[str]:
    """The raw sentences of a row that the generate stage flagged as cut off."""
    task2 = preds.raw.get((rid, 2))
    cut = [task2] if isinstance(task2, str) and truncated_slots(row_flags, 2) else []
    slots = truncated_slots(row_flags, 3)
    sentences = _sentences(3, preds.raw.get((rid, 3)) or []) if slots else []
    return cut + [sentences[i] for i in sorted(slots) if i < len(sentences)]


def description_flags(preds: Predictions, records: set[str]) -> dict[str, int]:
    """How many scored rows carry each description flag of the generate stage (cut off, short,
    repaired, left alone because task 1 and the boxes disagree) -- what raw vs refined owes to
    repair -- and ``truncated_refined``: rows whose published (refined) text still holds a cut-off
    sentence, punctuation aside (the target is 0)."""
    counts = dict.fromkeys(FLAG_KINDS, 0)
    counts["truncated_refined"] = 0
    for rid, row_flags in preds.flags.items():
        if rid not in records:
            continue
        for kind in FLAG_KINDS:
            counts[kind] += any(f.startswith(kind) for f in row_flags)
        cut = {_bare(s) for s in _cut_sentences(preds, rid, row_flags)}
        refined = [
            _bare(s)
            for task in (2, 3)
            if (rid, task) in preds.refined
            for s in _sentences(task, preds.refined[(rid, task)])
        ]
        counts["truncated_refined"] += bool(cut & set(refined))
    return counts


def score(preds: Predictions, refs: dict[Key, Reference], *, scorer: CaptionScorer | None) -> dict:
    """The report dict (no files). ``scorer=None`` skips the caption metrics."""
    variants = {"raw": preds.raw}
    if preds.refined:
        variants["refined"] = {**preds.raw, **preds.refined}
    report: dict = {
        "predictions": preds.uri,
        "coverage": _coverage(refs, preds, preds.raw),
        "relation_accuracy": None,
        "task1": None,
        "task2": {},
        "task3": {},
    }
    task1 = sorted(k for k in refs if k[1] == 1)
    if task1:
        m = classification_metrics([refs[k].relation for k in task1], [preds.raw.get(k) for k in task1])
        report["task1"], report["relation_accuracy"] = m, m["accuracy"]
    for task in (2, 3):
        if not any(k[1] == task for k in refs):
            continue
        for name, variant in variants.items():
            report[f"task{task}"][name] = _score_descriptions(task, refs, variant, scorer)
        if preds.sources:
            own = model_written(preds, task)
            report[f"task{task}"]["model_written"] = _score_descriptions(task, refs, own, scorer)
            report.setdefault("provenance", {})[f"task{task}"] = {
                **source_shares(preds, refs, task),
                "overwritten_true": overwritten_true(preds, refs, task),
            }
    if preds.refined:
        report["coverage"]["refined_texts"] = len(preds.refined)
    if preds.flags:
        report["description_flags"] = description_flags(preds, {rid for rid, _ in refs})
    report["spice"] = scorer.spice_skipped() if scorer is not None else "SPICE skipped: caption metrics off"
    return report


def evaluate(
    pred_uri: str,
    ref_uri: str,
    out_dir: str | None = None,
    *,
    captions: bool = True,
    scorer: CaptionScorer | None = None,
    spice: bool | None = None,
) -> dict:
    """Evaluate predictions against references; write report.json, report.md and confusion.png
    under ``out_dir`` when given. Pass a `CaptionScorer` to reuse its Java across calls."""
    start = time.perf_counter()
    refs = load_references(ref_uri)
    preds = load_predictions(pred_uri)
    require_overlap(preds, refs)
    own = captions and scorer is None
    if own:
        scorer = CaptionScorer(spice=spice)
    try:
        report = score(preds, refs, scorer=scorer if captions else None)
    except CaptionMetricsError as exc:
        raise VSDError(f"{exc}; rerun with --no-captions to skip the caption metrics") from exc
    finally:
        if own:
            scorer.close()
    report["references"] = ref_uri
    report["seconds"] = round(time.perf_counter() - start, 3)
    if out_dir is not None:
        report["files"] = write_report(report, out_dir)
    return report


# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return lines + [""]


def description_rows(report: dict) -> list[tuple[int, str, dict]]:
    """(task, variant, block) for every scored description set, in report order."""
    return [(t, name, block) for t in (2, 3) for name, block in (report.get(f"task{t}") or {}).items()]


def to_markdown(report: dict) -> str:
    cov = report["coverage"]
    lines = [
        "# VSD evaluation",
        "",
        f"- predictions: `{report['predictions']}` ({cov['prediction_format']}, {cov['prediction_rows']} rows)",
        f"- references: `{report.get('references')}` ({cov['reference_records']} records)",
        f"- unmatched predictions: {cov['unmatched_predictions']}, duplicates: {cov['duplicate_predictions']}, "
        f"error rows: {cov['error_rows']}",
        "",
        "## Coverage",
        "",
    ]
    lines += _table(
        ["task", "references", "predicted", "missing", "missing (error rows)"],
        [
            [
                f"{t} {TASK_NAMES[int(t)]}",
                c["references"],
                c["predicted"],
                c["missing"],
                c["missing_error_rows"],
            ]
            for t, c in cov["tasks"].items()
        ],
    )
    t1 = report.get("task1")
    if t1:
        lines += [
            "## Task 1: classification",
            "",
            f"accuracy **{_fmt(t1['accuracy'])}** (missing answers count as wrong; over answered: "
            f"{_fmt(t1['accuracy_answered'])}), macro-F1 **{_fmt(t1['macro_f1'])}**, "
            f"answers outside the 9 relations: {t1['other']}",
            "",
        ]
        lines += _table(
            ["relation", "precision", "recall", "F1", "support", "predicted"],
            [
                [r, m["precision"], m["recall"], m["f1"], m["support"], m["predicted"]]
                for r, m in t1["per_relation"].items()
            ],
        )
        conf = t1["confusion"]
        lines += ["Confusion (rows: true, columns: predicted; `confusion.png`):", ""]
        lines += _table(
            ["true \\ pred", *conf["columns"]], [[r, *row] for r, row in zip(conf["rows"], conf["matrix"])]
        )
    rows = description_rows(report)
    if rows and any("captions" in b for _, _, b in rows):
        lines += ["## Tasks 2–3: caption metrics (pycocoevalcap, each sentence against all references)", ""]
        lines += _table(
            ["task", "variant", "sentences", "empty", *METRICS, "SPICE"],
            [
                [
                    t,
                    v,
                    b["captions"]["n"],
                    b["captions"]["empty_predictions"],
                    *[b["captions"][m] for m in METRICS],
                    b["captions"]["SPICE"],
                ]
                for t, v, b in rows
                if "captions" in b
            ],
        )
    if report.get("spice"):
        lines += [report["spice"], ""]
    if rows:
        lines += ["## Tasks 2–3: relation stated in the text (`parse_relation` with subject and object)", ""]
        lines += _table(
            ["task", "variant", "sentences", "true relation", "none found", "true of found"],
            [
                [
                    t,
                    v,
                    b["relation_in_text"]["sentences"],
                    b["relation_in_text"]["agree_share"],
                    b["relation_in_text"]["none_share"],
                    b["relation_in_text"]["agree_share_of_found"],
                ]
                for t, v, b in rows
            ],
        )
    prov = report.get("provenance") or {}
    if prov:
        kinds = sorted({k for p in prov.values() for k in p["counts"]}, key=_source_order)
        lines += [
            "## Who wrote the published descriptions",
            "",
            "`model`/`refined`: the model's own sentences (as written / polished by the refiner); "
            "`model_completed`/`template`: filled in by repair (task 1's label in a forced opening, "
            "ended by the model / alone). `model_written` rows above score only the model's own.",
            "",
        ]
        lines += _table(
            ["task", "sentences", *kinds, "filled in", "true sentences overwritten (rows)"],
            [
                [
                    t[-1],
                    p["sentences"],
                    *[p["shares"].get(k, 0.0) for k in kinds],
                    p["filled_share"],
                    f"{p['overwritten_true']['sentences']} ({p['overwritten_true']['rows']})",
                ]
                for t, p in sorted(prov.items())
            ],
        )
    shares = [(v, b["three_sentence_share"]) for t, v, b in rows if t == 3 and "three_sentence_share" in b]
    if shares or report.get("description_flags"):
        lines += ["## Descriptions as training data", ""]
        lines += [
            f"- task-3 answers with exactly three sentences ({v}): {_fmt(share)}" for v, share in shares
        ]
        lines += [
            f"- task-3 diversity ({v}): distinct-2 {_fmt(b['diversity']['distinct_2'])}, "
            f"self-BLEU-4 within an answer {_fmt(b['diversity']['self_bleu'])} (lower: more varied)"
            for t, v, b in rows
            if t == 3 and "diversity" in b
        ]
        lines += [
            f"- rows flagged `{k}`: {n}" for k, n in (report.get("description_flags") or {}).items()
        ] + [""]
    lines += [
        "Task-3 answers are scored per sentence (`<record>#<i>`), each against all references of its record.",
        "",
    ]
    return "\n".join(lines)


def _source_order(kind: str) -> int:
    from vsd.annotate.repair import SOURCES

    return SOURCES.index(kind) if kind in SOURCES else len(SOURCES)


def write_report(report: dict, out_dir: str) -> dict[str, str]:
    """report.json, report.md and (with task-1 rows) confusion.png under ``out_dir``."""
    files = {"json": storage.join(out_dir, "report.json"), "markdown": storage.join(out_dir, "report.md")}
    if report.get("task1"):
        files["confusion"] = storage.join(out_dir, "confusion.png")
        storage.write_bytes(files["confusion"], confusion_png(report["task1"]["confusion"]))
    storage.write_text(files["markdown"], to_markdown(report))
    storage.write_text(files["json"], json.dumps({**report, "files": files}, indent=2) + "\n")
    return files
