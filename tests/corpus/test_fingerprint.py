"""Rows whose source gives no size or version are told apart by their content."""

from __future__ import annotations

import json
import os

import pyarrow.parquet as pq

from vsd.corpus import Corpus, sync


def test_a_file_replaced_with_the_same_size_and_old_mtime_is_a_new_row_of_a_bare_manifest(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.png", "b.png"):
        (images / name).write_bytes(b"x" * 10)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"image": f"images/{n}"}) + "\n" for n in ("a.png", "b.png")))
    manifest.write_text(manifest.read_text() + json.dumps({"image": "/etc/hostname"}) + "\n")
    corpus = Corpus.open_or_create(str(tmp_path / "corpus"))
    assert sync(corpus, str(manifest)).new == 3
    assert sync(corpus, str(manifest)).new == 0  # same bytes: same rows
    stat = os.stat(images / "a.png")
    (images / "a.png").write_bytes(b"y" * 10)  # same size, and the old mtime put back
    os.utime(images / "a.png", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = sync(corpus, str(manifest))
    assert again.new == 1
    [shard] = [s for s in corpus.shards() if s.name in {x.name for x in again.shards}]
    [row] = pq.read_table(shard.uri).to_pylist()
    assert row["uri"] == str(images / "a.png") and row["size"] == 10 and row["version"].startswith("sha256:")
    first = pq.read_table(corpus.shards()[0].uri).to_pylist()
    outside = [r for r in first if r["uri"] == "/etc/hostname"]
    assert outside and outside[0]["version"] is None  # outside the source's roots: never read
