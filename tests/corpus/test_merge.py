"""Small shards merged as an LSM merges its runs: a year of nights stays a few shards, every row
once, newest last; an output that finished the constituents carries the merged shard over."""

from __future__ import annotations

import os
import time

import pyarrow.parquet as pq
import pytest

from tests.corpus.test_sync import shard_rows
from tests.fixtures.annotate import build_corpus, make_color_engine, read_rows
from vsd import storage
from vsd.annotate.index import Output
from vsd.annotate.pipeline import run_annotation
from vsd.annotate.stages.read import _read_shards
from vsd.corpus import Corpus, sync
from vsd.corpus import merge as merging


def _night(images, corpus: Corpus, night: int, n: int = 3, shard_rows: int = 200):
    for i in range(n):
        (images / f"n{night:03d}-{i}.png").write_bytes(bytes([night, i]) * (night + 1))
    return sync(corpus, str(images), shard_rows=shard_rows)


def test_sixty_nights_stay_a_few_shards_with_every_row_once_in_night_order(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    corpus = Corpus.open_or_create(str(tmp_path / "corpus"))
    counts, merged = [], 0
    for night in range(60):
        report = _night(images, corpus, night)
        merged += len(report.merged)
        counts.append(len(corpus.shards()))
    # 3 rows a night, at most 200 a shard: merges of 4 at 3, 12 and 48 rows (the levels), a night
    # later than the shard's own sync; at most 3 shards a level, plus the night's own
    assert merged == 14 + 3, merged
    assert max(counts) <= 3 * 3 + 1 and counts[-1] == 3 + 2 + 3 + 1, counts  # 48s, 12s, 3s, tonight
    rows = shard_rows(corpus)
    uris = [os.path.basename(r["uri"]) for r in rows]
    assert sorted(uris) == sorted(f"n{n:03d}-{i}.png" for n in range(60) for i in range(3))  # once each
    assert uris == sorted(uris)  # name order is still night order
    for shard in corpus.shards():  # rows numbered within each shard, as the read stage expects
        data = pq.read_table(storage.resolve(shard.uri)[1], columns=["row"])
        assert data.column(0).to_pylist() == list(range(shard.rows))


def test_nights_of_sizes_that_never_line_up_stay_bounded_too(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    corpus = Corpus.open_or_create(str(tmp_path / "corpus"))
    counts = []
    for night in range(40):  # 3 and 20 rows: levels 0 and 2, never four of one level in a row
        _night(images, corpus, night, n=3 if night % 2 else 20)
        counts.append(len(corpus.shards()))
    small = len([s for s in corpus.shards() if s.rows <= 50])
    rows = shard_rows(corpus)
    assert len(rows) == len({r["uri"] for r in rows}) == 20 * 3 + 20 * 20
    # small ones: fan_in a level (3 levels up to 50 rows) and tonight's; the rest >= 50 rows each
    assert small <= 4 * 3 + 1 and max(counts) <= 4 * 3 + 1 + len(rows) // 50, counts


def test_a_changed_file_keeps_its_newest_version_last_through_merges(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    corpus = Corpus.open_or_create(str(tmp_path / "corpus"))
    _night(images, corpus, 0)
    for night in range(1, 9):
        time.sleep(0.01)
        (images / "n000-0.png").write_bytes(b"v" * (night + 10))  # changed every night: a new row
        _night(images, corpus, night)
    versions = [r["size"] for r in shard_rows(corpus) if r["uri"].endswith("n000-0.png")]
    assert versions == [2] + [n + 10 for n in range(1, 9)]  # every version once, the newest last


def test_an_output_that_finished_every_constituent_carries_the_merge_over(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    corpus = Corpus.open_or_create(str(tmp_path / "corpus"))
    out = Output(str(tmp_path / "out"))
    for night in range(4):
        _night(images, corpus, night)
        for shard in corpus.shards():
            out.write_marker(shard.name, {"rows": shard.rows})
    late = Output(str(tmp_path / "late"))  # annotated nights 0-2 only
    for shard in corpus.shards()[:3]:
        late.write_marker(shard.name, {"rows": shard.rows})
    report = _night(images, corpus, 4)  # merges nights 0-3, never night 4's own shard
    (merged,) = report.merged
    assert [s.name for s in corpus.shards()] == [merged.name, report.shards[0].name]
    todo, carried = merging.unfinished(corpus.shards(), out.finished_shards())
    assert [s.name for s in carried] == [merged.name] and [s.name for s in todo] == [report.shards[0].name]
    todo, carried = merging.unfinished(corpus.shards(), late.finished_shards())
    assert carried == [] and [s.name for s in todo] == [merged.name, report.shards[0].name]


def test_a_merge_killed_before_its_deletes_is_finished_by_the_next_sync(tmp_path, monkeypatch):
    images = tmp_path / "images"
    images.mkdir()
    corpus = Corpus.open_or_create(str(tmp_path / "corpus"))
    for night in range(4):
        _night(images, corpus, night)
    real_delete = storage.delete

    def killed(uri: str) -> None:
        if "/shards/" in uri:
            raise KeyboardInterrupt("killed after the merged shard's PUT")
        real_delete(uri)

    monkeypatch.setattr(merging.storage, "delete", killed)
    with pytest.raises(KeyboardInterrupt):
        _night(images, corpus, 4)
    assert len(corpus.shards()) == 6  # the merged shard beside its four constituents, and night 4
    monkeypatch.setattr(merging.storage, "delete", real_delete)
    _night(images, corpus, 5)
    assert len(corpus.shards()) == 3  # the constituents gone; nights 4 and 5 not merged yet
    uris = [r["uri"] for r in shard_rows(corpus)]
    assert len(uris) == len(set(uris)) == 18


def test_a_shard_merged_away_during_a_run_reads_as_nothing(tmp_path):
    import pyarrow as pa

    gone = str(tmp_path / "corpus" / "shards" / "shard-x-r3.parquet")
    got = _read_shards(pa.table({"path": [gone]}))
    assert got.num_rows == 0 and "path" in got.column_names


def test_nightly_runs_over_merged_shards_annotate_each_image_once_and_read_no_shard_twice(
    ray_local, tmp_path, annotate_config
):
    corpus, out = str(tmp_path / "corpus"), str(tmp_path / "out")
    runs = []
    for night in range(6):
        build_corpus(corpus, 2, seed=70 + night, start=2 * night)
        cfg = annotate_config(
            f"{corpus}/manifest.jsonl", out, "input.shard_rows=16", f"run_date=2026-12-{night + 1:02d}"
        )
        runs.append(run_annotation(cfg, engine_factory=make_color_engine))
    assert [r.counts["images"] for r in runs] == [2] * 6  # each night only its new images
    implicit = Corpus.open(Output(out).path("corpus"))
    names = [s.name for s in implicit.shards()]
    assert len(names) == 3 and merging.is_merged(implicit.shards()[0]), names  # nights 1-4 merged
    rows = read_rows(out)
    assert len(rows) == 12 and len({r["source_uri"] for r in rows}) == 12
    assert set(Output(out).finished_shards()) >= set(names)  # the merged shard carried over
