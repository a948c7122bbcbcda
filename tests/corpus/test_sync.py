"""Corpus sync: only what appeared since becomes new shards; big prefixes list in parallel tasks."""

from __future__ import annotations

import json
import os
import time

import pyarrow.parquet as pq

from vsd import storage
from vsd.corpus import Corpus, sync


def shard_rows(corpus: Corpus) -> list[dict]:
    return [
        r
        for s in corpus.shards()
        for r in pq.read_table(storage.resolve(s.uri)[1], filesystem=storage.resolve(s.uri)[0]).to_pylist()
    ]


def test_a_night_adds_shards_only_for_new_or_changed_files(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(25):
        (images / f"{i:03d}.png").write_bytes(bytes([i]) * (i + 1))
    corpus = Corpus.open_or_create(str(tmp_path / "corpus"))
    first = sync(corpus, str(images), shard_rows=10)
    assert (first.listed, first.new, [s.rows for s in first.shards]) == (25, 25, [10, 10, 5])
    assert [r["row"] for r in shard_rows(corpus)] == list(range(10)) * 2 + list(range(5))
    assert sync(corpus, str(images), shard_rows=10).new == 0  # nothing new: no shard written
    time.sleep(0.01)
    (images / "new.png").write_bytes(b"n")
    os.utime(images / "000.png")  # a changed file (new mtime) is a new row
    third = sync(corpus, str(images), shard_rows=10)
    assert third.new == 2 and [s.rows for s in third.shards] == [2] and len(corpus.shards()) == 4
    assert corpus.roots == [str(images)] and Corpus.is_corpus(corpus.root)


def test_a_row_listed_twice_is_sharded_once_and_reported(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        "".join(json.dumps(r) + "\n" for r in [{"image": "a.png"}, {"image": "b.png"}, {"image": "a.png"}])
    )
    corpus = Corpus.open_or_create(str(tmp_path / "corpus"))
    report = sync(corpus, str(manifest))
    assert (
        report.new == 2 and len(report.repeated) == 1 and "a.png: listed again as row 3" in report.repeated[0]
    )
    manifest.write_text(manifest.read_text() + json.dumps({"image": "c.png"}) + "\n")
    assert sync(corpus, str(manifest)).new == 1  # the grown manifest adds one row


def test_one_file_under_two_given_ids_is_two_entries(tmp_path):
    manifest = tmp_path / "m.jsonl"
    rows = [
        {"image": "a.png", "image_id": "a-left"},
        {"image": "a.png", "image_id": "a-right"},
        {"image": "a.png", "image_id": "a-left"},
    ]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    corpus = Corpus.open_or_create(str(tmp_path / "corpus"))
    report = sync(corpus, str(manifest))
    assert report.new == 2 and len(report.repeated) == 1 and "row 3" in report.repeated[0]
    assert sync(corpus, str(manifest)).new == 0


def test_an_s3_prefix_is_listed_in_parallel_ray_tasks(ray_local, s3_bucket):
    for d in ("a", "b", "c"):
        for i in range(4):
            storage.write_bytes(f"{s3_bucket}/images/{d}/{i}.jpg", f"{d}{i}".encode())
    storage.write_bytes(f"{s3_bucket}/images/top.jpg", b"t")
    corpus = Corpus.open_or_create(f"{s3_bucket}/corpus")
    report = sync(corpus, f"{s3_bucket}/images/", shard_rows=3, parallel=True)
    assert report.listed == 13 and report.new == 13
    assert len({s.name.rsplit("-", 2)[0] for s in report.shards}) == 4  # one stem per listing task
    uris = sorted(r["uri"] for r in shard_rows(corpus))
    assert uris == sorted(
        [f"{s3_bucket}/images/{d}/{i}.jpg" for d in "abc" for i in range(4)] + [f"{s3_bucket}/images/top.jpg"]
    )
    storage.write_bytes(f"{s3_bucket}/images/b/new.jpg", b"n")
    assert sync(corpus, f"{s3_bucket}/images/", parallel=True).new == 1
