"""`vsd evaluate --pred <annotation output root>` scores exactly the rows users read from it.

The output is made by the project's writers, in the state a crash leaves it: two run_date
partitions written by the write stage (one compacted into the key set and totals, one still with
its progress entries, which are Parquet), the dataset card, input shards under ``__vsd/corpus/``
and a partition written by an older release with fewer columns and wider box types. Predictions that match no reference end in one line, exit 2.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from tests.fixtures.evaluate import answers_by_task, synthetic_references, write_instructions
from vsd import storage
from vsd.annotate.card import render_card
from vsd.annotate.index import Output
from vsd.annotate.items import fail_item, new_item, new_pair, to_table
from vsd.annotate.run_meta import RunMeta
from vsd.annotate.stages.write import write_parts
from vsd.cli import main
from vsd.corpus import Corpus
from vsd.corpus.shards import rows_table
from vsd.errors import VSDError
from vsd.evaluate.inputs import load_predictions
from vsd.evaluate.report import evaluate

N_RECORDS = 12


def _items(rows: list[dict], ids: list[str]) -> list[dict]:
    """One image per record (its id given, pair 0), answering the references' own answers."""
    answers = answers_by_task(rows)
    items = []
    for n, rid in enumerate(ids):
        image_id = rid.rsplit("-p", 1)[0]
        pair = new_pair(
            0,
            "s",
            "o",
            [0.1, 0.1, 0.4, 0.4],
            [0.5, 0.5, 0.9, 0.9],
            relation=answers[1][rid],
            description=answers[2][rid],
            descriptions=answers[3][rid].split("\n"),
        )
        item = new_item(
            f"/in/{image_id}.png", image_id=image_id, pairs=[pair], source_key=f"/in/{image_id}.png|1|1"
        )
        item.update(width=64, height=48, shard="s1", shard_row=n, given_id=True)
        items.append(item)
    return items


def _old_release_part(root: str, rows: list[dict], rid: str) -> None:
    """A partition of an older release: fewer columns, float64 boxes, one column no longer written."""
    answers = answers_by_task(rows)
    table = pa.table(
        {
            "row_id": [rid],
            "image_id": [rid.rsplit("-p", 1)[0]],
            "pair_index": pa.array([0], pa.int64()),
            "subject_box": pa.array([[0.1, 0.1, 0.4, 0.4]], pa.list_(pa.float64())),
            "relation": [answers[1][rid]],
            "description": [answers[2][rid]],
            "descriptions": [answers[3][rid].split("\n")],
            "status": ["ok"],
            "error": [None],
            "caption_model": ["old"],
        }
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    storage.write_bytes(
        storage.join(root, "run_date=2025-06-01", "part-oldrelease.parquet"), sink.getvalue().to_pybytes()
    )


def build_output(root: str, rows: list[dict]) -> set[str]:
    """The output described in the module doc; returns the row_ids of its data rows."""
    ids = sorted({r["record_id"] for r in rows})
    first, second = _items(rows, ids[:5]), _items(rows, ids[5:10])
    fail_item(second[-1], "decode_error", "truncated file")

    def meta(run_date: str, run_id: str) -> RunMeta:
        return RunMeta(
            output=root,
            run_date=run_date,
            run_id=run_id,
            model="tiny:llava",
            adapter_sha256=None,
            prompt_version="v",
        )

    out = Output(root)
    write_parts(to_table(first), meta=meta("2026-11-26", "r1"))
    out.compact()  # r1 folded into __vsd/ids and __vsd/totals
    write_parts(to_table(second), meta=meta("2026-11-27", "r2"))  # r2's progress entries stay (a crash)
    assert out.progress(), "the second run's progress entries (Parquet under __vsd/) are present"
    storage.write_text(out.card, render_card(out.totals(), out.runs() + ["r2"], "tiny:llava"))
    corpus = Corpus.open_or_create(out.path("corpus"))
    writer = corpus.writer("t", shard_rows=100)
    writer.add(
        rows_table(
            [{"uri": f"/in/{i}.png", "size": 1, "version": "1", "image_id": i, "pairs": None} for i in ids]
        )
    )
    writer.close()
    _old_release_part(root, rows, ids[10])
    return set(ids[:11])


@pytest.fixture(params=["local", "s3"])
def output_root(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "annotations")
    return request.getfixturevalue("s3_bucket") + "/annotations"


def test_evaluate_reads_exactly_the_data_rows_of_an_output_root(output_root, tmp_path):
    rows = synthetic_references(N_RECORDS, seed=3)
    data_ids = build_output(output_root, rows)
    ref = write_instructions(rows, tmp_path / "ref.parquet")

    preds = load_predictions(output_root)
    assert preds.format == "annotation" and preds.rows == len(data_ids) == 11 and preds.duplicates == 0
    assert {rid for rid, _ in preds.raw} | set(preds.errors) == data_ids
    assert preds.errors == {sorted(data_ids)[9]: "decode_error: truncated file"}

    # The README's reader sees the same rows (and nothing from __vsd/ or _README.md).
    fs, path = storage.resolve(output_root)
    users = pads.dataset(path, filesystem=fs, format="parquet", partitioning="hive")
    assert sorted(users.to_table(columns=["row_id"]).column("row_id").to_pylist()) == sorted(data_ids)

    report = evaluate(output_root, ref, captions=False)
    cov = report["coverage"]
    assert (cov["prediction_rows"], cov["error_rows"], cov["unmatched_predictions"]) == (11, 1, 0)
    assert cov["tasks"]["1"] == {
        "references": N_RECORDS,
        "predicted": 10,
        "missing": 2,
        "missing_error_rows": 1,
    }
    assert report["task1"]["accuracy_answered"] == 1.0  # the older partition's answers are read, conformed


def test_predictions_matching_no_reference_are_one_line_exit_2(tmp_path, capsys):
    rows = synthetic_references(4, seed=5)
    out = str(tmp_path / "annotations")
    write_parts(
        to_table(_items(rows, sorted({r["record_id"] for r in rows}))),
        meta=RunMeta(
            output=out, run_date="2026-11-26", run_id="r1", model="m", adapter_sha256=None, prompt_version="v"
        ),
    )
    other_split = [dict(r, record_id="val-" + r["record_id"], id="val-" + r["id"]) for r in rows]
    ref = write_instructions(other_split, tmp_path / "ref.parquet")
    with pytest.raises(VSDError) as info:
        evaluate(out, ref, captions=False)
    assert str(info.value) == (
        "pred: none of the 4 prediction rows matches a reference record_id "
        "(predictions: syn00000-p0, syn00001-p0, syn00002-p0; "
        "references: val-syn00000-p0, val-syn00001-p0, val-syn00002-p0)"
    )
    assert (
        main(["evaluate", "--pred", out, "--ref", ref, "--out", str(tmp_path / "report"), "--no-captions"])
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("vsd: error: pred: none of the 4 prediction rows") and err.count("\n") == 1
    assert not (tmp_path / "report").exists()
