"""The output root reads as a dataset (the README's readers), and the previous layout is imported."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from tests.fixtures.annotate import build_corpus, make_color_engine, read_rows
from vsd import storage
from vsd.annotate.index import Output, image_key
from vsd.annotate.pipeline import run_annotation
from vsd.corpus import Corpus, sync


@pytest.fixture(scope="module")
def annotated(ray_local, tmp_path_factory):
    """A finished output with rows in two partitions (two nights)."""
    from tests.fixtures.infra import REPO
    from vsd.annotate.config import load_config

    root = tmp_path_factory.mktemp("layout")
    corpus, out = str(root / "corpus"), str(root / "out")

    def config(date: str):
        return load_config(
            str(REPO / "jobs/configs/annotate-tiny-cpu.yaml"),
            [
                f"input.uri={corpus}/manifest.jsonl",
                f"output={out}",
                "progress_bars=false",
                f"run_date={date}",
                "stages.write.resources.batch_size=4",
            ],
        )

    build_corpus(corpus, 6, seed=11)
    run_annotation(config("2026-11-26"), engine_factory=make_color_engine)
    build_corpus(corpus, 5, seed=12, start=6)
    run_annotation(config("2026-11-27"), engine_factory=make_color_engine)
    return out, {r["row_id"] for r in read_rows(out)}


def test_pandas_pyarrow_duckdb_and_datasets_read_exactly_the_data_rows(annotated):
    import duckdb
    import pandas as pd
    import pyarrow.dataset as pads

    out, row_ids = annotated
    assert len(row_ids) == 11
    frame = pd.read_parquet(out)
    assert set(frame["row_id"]) == row_ids and len(frame) == 11
    assert sorted(set(frame["run_date"])) == ["2026-11-26", "2026-11-27"]  # the hive partition column
    table = pads.dataset(out, partitioning="hive").to_table()
    assert set(table.column("row_id").to_pylist()) == row_ids and table.num_rows == 11
    got = duckdb.sql(f"select row_id from read_parquet('{out}/run_date=*/*.parquet')").fetchall()
    assert {r for (r,) in got} == row_ids and len(got) == 11
    import datasets

    ds = datasets.load_dataset(out, split="train")
    assert set(ds["row_id"]) == row_ids and len(ds) == 11


def test_ray_data_reads_exactly_the_data_rows(annotated):
    import ray.data

    out, row_ids = annotated
    rows = ray.data.read_parquet(out).select_columns(["row_id"]).take_all()
    assert {r["row_id"] for r in rows} == row_ids and len(rows) == 11


def test_the_card_and_the_records_come_from_stored_totals(annotated):
    out, _ = annotated
    card = storage.read_text(f"{out}/_README.md")
    assert "| total | 11 |" in card and not storage.exists(f"{out}/README.md")
    output = Output(out)
    assert len(output.runs()) == 2 and output.totals()["rows"] == 11
    assert [r["run_id"] for r in output.partition_record("2026-11-27")["runs"]] == [output.runs()[1]]
    assert output.progress() == {}  # everything compacted


def test_an_output_of_the_previous_release_is_continued_without_redoing_it(
    ray_local, tmp_path, annotate_config
):
    """Old layout: ``_index/run_date=*/part-*.parquet`` (image_id, source_key) beside the data and a
    ``README.md`` card. Its images are imported into the key set and not annotated again."""
    import pyarrow as pa

    corpus, out = str(tmp_path / "corpus"), str(tmp_path / "out")
    expected = build_corpus(corpus, 8, seed=13)
    run_annotation(annotate_config(f"{corpus}/manifest.jsonl", out), engine_factory=make_color_engine)
    rows = read_rows(out)
    old = Output(out)
    # Rewrite the output into the old layout: its index beside the data, its card, no __vsd/.
    index = pa.table({"image_id": [r["image_id"] for r in rows], "source_key": [None] * len(rows)})
    storage.makedirs(f"{out}/_index/run_date=2026-11-26")
    pq.write_table(index, f"{out}/_index/run_date=2026-11-26/part-old.parquet")
    storage.write_text(f"{out}/README.md", "---\n---\n# Visual spatial descriptions (llava-vsd)\n")
    storage.delete(old.vsd)
    storage.delete(f"{out}/_README.md")

    again = run_annotation(
        annotate_config(f"{corpus}/manifest.jsonl", out, "run_date=2026-11-27"),
        engine_factory=make_color_engine,
    )
    assert again.counts["images"] == 0 and again.counts["skipped"]["already_annotated"] == len(expected)
    assert len(read_rows(out)) == len(rows) and not storage.exists(f"{out}/_index")
    assert not storage.exists(f"{out}/README.md") and storage.exists(f"{out}/_README.md")
    assert Output(out).ids().snapshot().contains([image_key(rows[0]["image_id"], False)]) == [True]


def test_a_corpus_input_is_read_directly_and_grows_by_new_shards(ray_local, tmp_path, annotate_config):
    corpus_src, out = str(tmp_path / "src"), str(tmp_path / "out")
    build_corpus(corpus_src, 5, seed=14)
    corpus = Corpus.open_or_create(str(tmp_path / "corpus"))
    sync(corpus, f"{corpus_src}/manifest.jsonl")
    first = run_annotation(annotate_config(corpus.root, out), engine_factory=make_color_engine)
    assert first.counts["images"] == 5 and first.manifest["source"]["kind"] == "corpus"
    assert not storage.exists(f"{out}/__vsd/corpus")  # an explicit corpus is not copied
    build_corpus(corpus_src, 3, seed=15, start=5)
    sync(corpus, f"{corpus_src}/manifest.jsonl")
    night = run_annotation(
        annotate_config(corpus.root, out, "run_date=2026-11-27"), engine_factory=make_color_engine
    )
    assert night.counts["images"] == 3 and len(night.manifest["source"]["shards_read"]) == 1
    assert (
        json.loads(
            storage.read_text(f"{out}/__vsd/shards/{night.manifest['source']['shards_read'][0]}.json")
        )["written"]
        == 3
    )
