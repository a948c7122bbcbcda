"""A sync's own keys in bounded memory: spilled to the key set as generations, never ahead of the
shards that hold their rows."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from vsd import storage
from vsd.corpus import Corpus, sync
from vsd.corpus import spill as spill_module
from vsd.corpus.shards import source_key
from vsd.corpus.sources import read_manifest
from vsd.corpus.sync import write_new
from vsd.keyset import key_of


def manifest(path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def shard_uris(corpus: Corpus) -> list[str]:
    return [
        u
        for s in corpus.shards()
        for u in pq.read_table(storage.resolve(s.uri)[1], filesystem=storage.resolve(s.uri)[0])
        .column("uri")
        .to_pylist()
    ]


ROWS = [{"image": f"img{i % 40:03d}.png"} for i in range(50)]  # rows 41-50 repeat 1-10
IDS = [{"image": f"x{i}.png", "image_id": f"id{i % 12}"} for i in range(20)]  # ids repeat after 12


@pytest.mark.parametrize("limit", [3, 7, 1_000_000])
def test_a_spilling_sync_takes_the_same_rows_and_says_the_same_as_one_in_memory(tmp_path, monkeypatch, limit):
    monkeypatch.setattr(spill_module, "SPILL_KEYS", limit)
    monkeypatch.setattr("vsd.corpus.sources.BATCH", 6)  # several batches: spills between them
    corpus = Corpus.open_or_create(str(tmp_path / "corpus"))
    report = sync(corpus, manifest(tmp_path / "m.jsonl", ROWS), shard_rows=5)
    assert (report.listed, report.new, report.repeats) == (50, 40, 10)
    assert len(report.repeated) == 10 and "img000.png: listed again as row 41" in report.repeated[0]
    assert sorted(shard_uris(corpus)) == sorted({str(tmp_path / r["image"]) for r in ROWS})
    gens = {g for gs in corpus.keys().snapshot().files.values() for g in gs} | set(
        corpus.keys().snapshot().runs
    )
    assert (len(gens) > 1) == (limit < 40)  # spilled as several generations only when over the limit
    ids = sync(corpus, manifest(tmp_path / "ids.jsonl", IDS), shard_rows=5)
    assert (ids.new, ids.repeats) == (12, 8) and "image_id id0: row 13 repeats" in ids.repeated[0]
    assert sync(corpus, str(tmp_path / "m.jsonl"), shard_rows=5).new == 0  # every key was recorded


def test_a_sync_killed_midway_records_no_key_ahead_of_its_shard(tmp_path, monkeypatch):
    """Keys spill only for rows in written shards: whatever a crash leaves, the next sync shards
    every row that has no shard, and none twice."""
    monkeypatch.setattr(spill_module, "SPILL_KEYS", 4)
    corpus = Corpus.open_or_create(str(tmp_path / "corpus"))
    rows = [{"image": f"img{i:03d}.png"} for i in range(60)]
    uri = manifest(tmp_path / "m.jsonl", rows)

    def dying(after: int):
        batches = [b.slice(i, 7) for b in read_manifest(uri, str(tmp_path)) for i in range(0, b.num_rows, 7)]
        yield from batches[:after]  # small batches: several spills before the kill
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_new(corpus, dying(6), corpus.keys().snapshot(), "s1", shard_rows=10)
    sharded = set(shard_uris(corpus))
    recorded = (
        corpus.keys()
        .snapshot()
        .contains([key_of(source_key(str(tmp_path / r["image"]), None, None)) for r in rows])
    )
    keyed = {str(tmp_path / r["image"]) for r, hit in zip(rows, recorded) if hit}
    assert keyed and keyed <= sharded  # no key without its row
    report = sync(corpus, uri, shard_rows=10)
    assert set(shard_uris(corpus)) == {str(tmp_path / r["image"]) for r in rows}
    assert report.new == 60 - len(keyed)
