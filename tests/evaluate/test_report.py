"""`evaluate` end to end: references against themselves score 1.0, shuffled predictions score near
the floor (synthetic and real VSD validation records), missing and error rows are counted, refined
texts are scored beside the raw ones, reports are written locally and to S3, bad input is one line."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.fixtures.evaluate import (
    annotation_rows,
    answers_by_task,
    shuffled,
    synthetic_references,
    write_annotations,
    write_instructions,
    write_jsonl,
)
from vsd import storage
from vsd.errors import VSDError
from vsd.evaluate.report import evaluate


@pytest.fixture(scope="module")
def real(tmp_path_factory, vsd_val_reference_rows, caption_scorer):
    """200 real VSD records: the references scored against themselves and against shuffled answers."""
    tmp = tmp_path_factory.mktemp("eval-real")
    ref = write_instructions(vsd_val_reference_rows, tmp / "ref.parquet")
    answers = answers_by_task(vsd_val_reference_rows)
    pred = write_jsonl({t: shuffled(a) for t, a in answers.items()}, tmp / "shuffled.jsonl")
    return {
        "self": evaluate(ref, ref, str(tmp / "self"), scorer=caption_scorer),
        "shuffled": evaluate(pred, ref, str(tmp / "shuffled"), scorer=caption_scorer),
        "out": tmp,
    }


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory, synthetic_reference_rows, caption_scorer):
    tmp = tmp_path_factory.mktemp("eval-syn")
    ref = write_instructions(synthetic_reference_rows, tmp / "ref.parquet")
    answers = answers_by_task(synthetic_reference_rows)
    pred = write_annotations(
        annotation_rows({t: shuffled(a) for t, a in answers.items()}), tmp / "shuffled.parquet"
    )
    return {
        "self": evaluate(ref, ref, None, scorer=caption_scorer),
        "shuffled": evaluate(pred, ref, None, scorer=caption_scorer),
    }


@pytest.mark.parametrize("data", ["real", "synthetic"])
def test_references_against_themselves_score_one(data, request):
    report = request.getfixturevalue(data)["self"]
    assert report["relation_accuracy"] == 1.0 and report["task1"]["macro_f1"] == 1.0
    for task in ("task2", "task3"):
        cap = report[task]["raw"]["captions"]
        for metric in ("Bleu_1", "Bleu_4", "ROUGE_L"):
            assert cap[metric] == pytest.approx(1.0, abs=1e-6), (task, metric)
        assert cap["METEOR"] > 0.99 and cap["CIDEr"] > 3.0
    # task 3: three sentences per record, each scored against all references of its record
    rows = request.getfixturevalue(
        {"real": "vsd_val_reference_rows", "synthetic": "synthetic_reference_rows"}[data]
    )
    assert report["task3"]["raw"]["sentences"] == sum(
        len(r["answer"].split("\n")) for r in rows if r["task"] == 3
    )
    assert all(c["missing"] == 0 for c in report["coverage"]["tasks"].values())


@pytest.mark.parametrize("data", ["real", "synthetic"])
def test_shuffled_predictions_score_near_the_floor(data, request):
    reports = request.getfixturevalue(data)
    own, shuf = reports["self"], reports["shuffled"]
    assert shuf["relation_accuracy"] < 0.25  # chance is 1/9
    for task in ("task2", "task3"):
        cap, ref_cap = shuf[task]["raw"]["captions"], own[task]["raw"]["captions"]
        assert cap["Bleu_4"] < 0.2 and cap["CIDEr"] < 0.15 * ref_cap["CIDEr"] and cap["METEOR"] < 0.2
        agree = shuf[task]["raw"]["relation_in_text"]["agree_share"]
        assert agree < 0.5 * own[task]["raw"]["relation_in_text"]["agree_share"]


def test_real_vsd_numbers_are_plausible(real):
    shuf = real["shuffled"]["task2"]["raw"]["captions"]
    assert shuf["Bleu_4"] < 0.1 and shuf["Bleu_1"] > 0.1  # common words still match
    # the VSD sentences mostly state their own triple's relation
    assert real["self"]["task2"]["raw"]["relation_in_text"]["agree_share"] > 0.8


def test_report_files(real):
    files = real["self"]["files"]
    saved = json.loads(storage.read_text(files["json"]))
    assert saved["relation_accuracy"] == 1.0 and saved["files"] == files
    md = storage.read_text(files["markdown"])
    assert "| on |" in md and "Bleu_4" in md and "SPICE" in md and "per sentence" in md
    assert storage.read_bytes(files["confusion"])[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_errors_and_refined_texts(tmp_path, caption_scorer):
    rows = synthetic_references(20, seed=3)
    answers = answers_by_task(rows)
    ids = sorted(answers[1])
    errors = {rid: "decode: truncated image" for rid in ids[:3]}
    for rid in ids[3:5]:  # two records answer task 1 only
        del answers[2][rid], answers[3][rid]
    refined = {2: {rid: text.upper() for rid, text in answers[2].items()}, 3: {}}
    table = annotation_rows(answers, refined=refined, errors=errors)
    table.append({**table[-1]})  # a duplicate row is counted, not scored twice
    pred = write_annotations(table, tmp_path / "pred.parquet")
    ref = write_instructions(rows, tmp_path / "ref.parquet")

    report = evaluate(pred, ref, str(tmp_path / "out"), scorer=caption_scorer)
    cov = report["coverage"]
    assert cov["error_rows"] == 3 and cov["duplicate_predictions"] == 1 and cov["reference_records"] == 20
    assert cov["tasks"]["1"] == {"references": 20, "predicted": 17, "missing": 3, "missing_error_rows": 3}
    assert cov["tasks"]["2"] == {"references": 20, "predicted": 15, "missing": 5, "missing_error_rows": 3}
    assert report["relation_accuracy"] == pytest.approx(17 / 20)  # missing answers count as wrong
    assert report["task1"]["accuracy_answered"] == 1.0
    raw, ref2 = report["task2"]["raw"], report["task2"]["refined"]
    assert raw["captions"]["n"] == ref2["captions"]["n"] == 15
    assert raw["captions"]["Bleu_4"] == pytest.approx(1.0, abs=1e-6)
    assert ref2["captions"]["Bleu_4"] == pytest.approx(1.0, abs=1e-6)  # PTB lower-cases
    assert set(report["task3"]) == {"raw", "refined"}
    md = storage.read_text(report["files"]["markdown"])
    assert "refined" in md and "| 2 single description | 20 | 15 | 5 | 3 |" in md


def test_s3_references_predictions_and_report(s3_bucket, tmp_path):
    rows = synthetic_references(9, seed=5)
    local = write_instructions(rows, tmp_path / "ref.parquet")
    storage.write_bytes(f"{s3_bucket}/instructions/val/part-0.parquet", open(local, "rb").read())
    jsonl = write_jsonl(answers_by_task(rows), tmp_path / "pred.jsonl")
    storage.write_bytes(f"{s3_bucket}/preds/run-1.jsonl", open(jsonl, "rb").read())

    report = evaluate(
        f"{s3_bucket}/preds/run-", f"{s3_bucket}/instructions/val", f"{s3_bucket}/eval", captions=False
    )
    assert report["relation_accuracy"] == 1.0
    assert report["coverage"]["prediction_format"] == "jsonl"
    assert report["task2"]["raw"]["relation_in_text"]["sentences"] == 9
    assert json.loads(storage.read_text(f"{s3_bucket}/eval/report.json"))["relation_accuracy"] == 1.0
    assert storage.exists(f"{s3_bucket}/eval/confusion.png")


def test_bad_input_is_one_line(tmp_path):
    ref = write_instructions(synthetic_references(3), tmp_path / "ref.parquet")
    with pytest.raises(VSDError, match="predictions not found: .*nope"):
        evaluate(str(tmp_path / "nope.parquet"), ref, captions=False)
    pq.write_table(pa.table({"record_id": ["a"], "task": [1]}), tmp_path / "bad.parquet")
    with pytest.raises(VSDError, match=r"references .*bad.parquet: missing column\(s\) answer, relation"):
        evaluate(ref, str(tmp_path / "bad.parquet"), captions=False)
    with pytest.raises(VSDError, match="neither an annotation table"):
        evaluate(str(tmp_path / "bad.parquet"), ref, captions=False)
    (tmp_path / "bad.jsonl").write_text('{"record_id": "x", "task": 1, "prediction": "on"}\n{"record_id": \n')
    with pytest.raises(VSDError, match=r"bad.jsonl:2: not a JSON object"):
        evaluate(str(tmp_path / "bad.jsonl"), ref, captions=False)
    (tmp_path / "task.jsonl").write_text('{"record_id": "x", "task": 7, "prediction": "on"}\n')
    with pytest.raises(VSDError, match=r"task.jsonl:1: task must be 1, 2 or 3"):
        evaluate(str(tmp_path / "task.jsonl"), ref, captions=False)
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(VSDError, match="junk.parquet: not a readable Parquet file"):
        evaluate(str(tmp_path / "junk.parquet"), ref, captions=False)
    rows = synthetic_references(2)
    rows[0]["relation"] = "inside of"
    with pytest.raises(VSDError, match="record 'syn00000-p0': relation 'inside of'"):
        evaluate(ref, write_instructions(rows, tmp_path / "badrel.parquet"), captions=False)


def test_truncation_repairs_and_three_sentence_share_raw_vs_refined(tmp_path):
    rows = synthetic_references(6, seed=5)
    answers = answers_by_task(rows)
    ids = sorted(answers[1])
    table = annotation_rows(answers)
    by_id = {r["row_id"]: r for r in table}
    # a cut task-2 sentence polished with a full stop: the refined text is still the cut sentence
    by_id[ids[0]].update(
        description="The cup is close to",
        refined_description="the cup is close to.",
        flags=["truncated:task2"],
    )
    # a cut task-2 sentence repaired into a complete one, and a short task-3 answer made three
    by_id[ids[1]].update(
        description="The cup is close to",
        refined_description="The cup is on the table.",
        descriptions=["The cup is on the table."],
        refined_descriptions=[
            "The cup is on the table.",
            "There is a cup on the table.",
            "A cup can be seen on the table.",
        ],
        flags=[
            "truncated:task2",
            "too_few_sentences:task3 (1 of 3)",
            "repaired:task2 (truncated)",
            "repaired:task3.1 (missing)",
            "repaired:task3.2 (missing)",
        ],
    )
    pred = write_annotations(table, tmp_path / "pred.parquet")
    report = evaluate(
        pred, write_instructions(rows, tmp_path / "ref.parquet"), str(tmp_path / "out"), captions=False
    )
    flags = report["description_flags"]
    assert flags["truncated:task2"] == 2 and flags["repaired:task2"] == 1 and flags["repaired:task3"] == 1
    assert flags["too_few_sentences:task3"] == 1 and flags["truncated_refined"] == 1
    n3 = report["task3"]["raw"]["records"]
    three_raw = sum(len(answers[3][rid].split("\n")) == 3 for rid in ids if rid != ids[1]) / n3
    assert report["task3"]["raw"]["three_sentence_share"] == pytest.approx(round(three_raw, 4))
    assert report["task3"]["refined"]["three_sentence_share"] == pytest.approx(round(three_raw + 1 / n3, 4))
    assert "rows flagged `truncated_refined`: 1" in storage.read_text(report["files"]["markdown"])


def test_provenance_shares_model_written_scores_and_true_sentences_overwritten(tmp_path):
    rows = synthetic_references(4, seed=7)
    answers = answers_by_task(rows)
    ids = sorted(answers[1])
    truth = {r["record_id"]: r for r in rows if r["task"] == 1}
    table = annotation_rows(answers)
    by_id = {r["row_id"]: r for r in table}
    # row 0: the model's three sentences published as written
    by_id[ids[0]].update(
        refined_descriptions=list(by_id[ids[0]]["descriptions"]), descriptions_source=["model"] * 3
    )
    # row 1: task 1 wrong; the model's true first sentence overwritten with task 1's label, the
    # other two filled in -- a true sentence made false, and nothing the model wrote is published
    t = truth[ids[1]]
    wrong = next(r for r in ("above", "under") if r != t["relation"])
    true_sentence = f"The {t['subject']} is {t['relation']} the {t['object']}."
    by_id[ids[1]].update(
        relation=wrong,
        descriptions=[true_sentence],
        refined_descriptions=[f"The {t['subject']} is {wrong} the {t['object']}."] * 3,
        descriptions_source=["template", "model_completed", "template"],
        flags=["repaired:task3.0 (disagrees)", "repaired:task3.1 (missing)", "repaired:task3.2 (missing)"],
    )
    (tmp_path / "pred").mkdir()  # a folder of Parquet (a single file is opened as a Delta table)
    pred = write_annotations(table, tmp_path / "pred" / "part-0.parquet").rsplit("/", 1)[0]
    report = evaluate(
        pred, write_instructions(rows, tmp_path / "ref.parquet"), str(tmp_path / "out"), captions=False
    )
    prov = report["provenance"]["task3"]
    # rows 2 and 3 have no refined text: their published text is the model's own
    n_model = 3 + sum(len(answers[3][rid].split("\n")) for rid in ids[2:])
    assert prov["counts"] == {"model": n_model, "model_completed": 1, "template": 2}
    assert prov["filled_share"] == pytest.approx(round(3 / (n_model + 3), 4))
    assert prov["overwritten_true"] == {"rows": 1, "sentences": 1}
    own = report["task3"]["model_written"]
    assert own["records"] == 3 and own["sentences"] == n_model  # the filled-in row is not scored
    assert report["task3"]["refined"]["relation_in_text"]["agree"] == n_model  # the 3 fills are false
    assert own["relation_in_text"]["agree_share"] == 1.0
    md = storage.read_text(report["files"]["markdown"])
    assert "## Who wrote the published descriptions" in md and "| 3 | " in md
