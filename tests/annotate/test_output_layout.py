"""The output root reads as a dataset (the README's readers), and the previous layout is imported."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from tests.fixtures.annotate import build_corpus, make_color_engine, read_rows
from vsd import storage
from vsd.annotate.index import Output
from vsd.annotate.pipeline import run_annotation
from vsd.corpus import Corpus, sync
from vsd.errors import VSDError


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


def test_vsd_read_and_every_readme_reader_return_exactly_the_current_rows(annotated):
    import datasets
    import duckdb
    import polars as pl
    from deltalake import DeltaTable

    import vsd

    out, row_ids = annotated
    assert len(row_ids) == 11
    current = vsd.read(out)
    assert sorted(current.column("row_id").to_pylist()) == sorted(row_ids)
    assert sorted(set(current.column("run_date").to_pylist())) == ["2026-11-26", "2026-11-27"]
    assert current.schema.field("subject_box").type == pa.list_(pa.float32(), 4)  # the schema's own types
    frame = DeltaTable(out).to_pandas()  # pandas
    assert sorted(frame["row_id"]) == sorted(row_ids)
    assert sorted(pl.read_delta(out)["row_id"].to_list()) == sorted(row_ids)  # polars
    con = duckdb.connect()  # duckdb, over the table's own file list
    con.register("annotations", DeltaTable(out).to_pyarrow_dataset())
    got = con.sql("select row_id from annotations").fetchall()
    assert sorted(r for (r,) in got) == sorted(row_ids)
    ds = datasets.Dataset(vsd.read(out, columns=["row_id", "relation"]))  # Hugging Face datasets
    assert sorted(ds["row_id"]) == sorted(row_ids)


def test_a_plain_folder_glob_matches_the_table_while_nothing_is_superseded(annotated):
    import pandas as pd

    out, row_ids = annotated
    frame = pd.read_parquet(out)  # skips _delta_log/, __vsd/ and _README.md
    assert set(frame["row_id"]) == row_ids and len(frame) == 11


def test_ray_data_reads_exactly_the_current_rows(annotated):
    import ray.data

    out, row_ids = annotated
    rows = ray.data.read_delta(out).select_columns(["row_id"]).take_all()
    assert sorted(r["row_id"] for r in rows) == sorted(row_ids)


def test_any_earlier_night_reads_back_and_every_commit_names_its_run(annotated):
    import vsd
    from vsd.annotate.output import table

    out, _ = annotated
    first = vsd.read(out, as_of="2026-11-26")
    assert first.num_rows == 6 and set(first.column("run_date").to_pylist()) == {"2026-11-26"}
    assert vsd.read(out, as_of="2026-11-25").num_rows == 0  # before the first night
    assert vsd.read(out, as_of="2026-11-27").num_rows == 11
    commits = [c for c in table.history(out) if c.get("operation") == "annotate"]
    assert {c["run_date"] for c in commits} == {"2026-11-26", "2026-11-27"}
    for c in commits:  # provenance inside the commit: who wrote these rows, with what
        assert c["model"] == "tiny:llava" and c["prompt_version"] and len(c["config_sha256"]) == 16
    night1 = [c for c in commits if c["run_date"] == "2026-11-26"]
    assert vsd.read(out, as_of=night1[-1]["run_id"]).num_rows == 6
    assert vsd.read(out, as_of=night1[-1]["version"]).num_rows == 6
    run_ids = set(vsd.read(out).column("run_id").to_pylist())
    assert run_ids == {c["run_id"] for c in commits}
    with pytest.raises(VSDError, match="as_of"):
        vsd.read(out, as_of="last tuesday")


def test_the_card_and_the_records_come_from_stored_totals(annotated):
    out, _ = annotated
    card = storage.read_text(f"{out}/_README.md")
    assert "| total | 11 |" in card and not storage.exists(f"{out}/README.md")
    output = Output(out)
    assert len(output.runs()) == 2 and output.totals()["rows"] == 11
    assert [r["run_id"] for r in output.partition_record("2026-11-27")["runs"]] == [output.runs()[1]]
    assert output.progress() == {}  # everything compacted


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
