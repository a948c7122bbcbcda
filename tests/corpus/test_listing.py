"""Deleted source files: a sync compares its listing with the previous one of the same source."""

from __future__ import annotations

import json
import os

from vsd import storage
from vsd.corpus import Corpus, sync
from vsd.corpus.listing import gone_keys, gone_syncs, uri_key


def folder_of(tmp_path, n: int):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(n):
        (images / f"{i:03d}.png").write_bytes(bytes([i]) * (i + 1))
    return images


def test_a_folder_sync_records_the_files_the_last_listing_had_and_this_one_lacks(tmp_path):
    images = folder_of(tmp_path, 6)
    corpus = Corpus.open_or_create(str(tmp_path / "corpus"))
    first = sync(corpus, str(images))
    assert first.listing is not None and first.listing.gone is None  # nothing to compare with yet
    assert sync(corpus, str(images)).listing.gone == 0 and gone_syncs(corpus.root) == []
    os.remove(images / "001.png")
    os.remove(images / "004.png")
    (images / "new.png").write_bytes(b"n")
    third = sync(corpus, str(images))
    assert third.listing.gone == 2 and third.new == 1
    [when] = gone_syncs(corpus.root)
    uris = [str(images / f"{i:03d}.png") for i in range(6)] + [str(images / "new.png")]
    hits = gone_keys(corpus.root, when).snapshot().contains([uri_key(u) for u in uris])
    assert [u for u, h in zip(uris, hits) if h] == [str(images / "001.png"), str(images / "004.png")]
    assert sync(corpus, str(images)).listing.gone == 0  # the new listing is the reference now
    listings = storage.list_files(storage.join(corpus.root, "_listings"))
    assert len({f.split("/_listings/")[1].split("/")[1] for f in listings if "latest" not in f}) == 1


def test_a_partial_or_empty_listing_takes_nothing_as_deleted(tmp_path):
    images = folder_of(tmp_path, 4)
    corpus = Corpus.open_or_create(str(tmp_path / "corpus"))
    sync(corpus, str(images))
    moved = tmp_path / "elsewhere"
    os.rename(images, moved)
    images.mkdir()  # an unmounted disk: the folder is there, empty
    empty = sync(corpus, str(images))
    assert empty.listing.gone is None and "listed nothing" in empty.listing.note
    os.rmdir(images)
    os.rename(moved, images)
    (images / "sub").mkdir()
    os.symlink(images / "sub", images / "link")  # a link to a directory: a problem, not entered
    os.remove(images / "000.png")
    partial = sync(corpus, str(images))
    assert partial.problems and partial.listing.gone is None and "partial" in partial.listing.note
    os.remove(images / "link")
    assert sync(corpus, str(images)).listing.gone == 1  # compared with the last complete listing
    assert len(gone_syncs(corpus.root)) == 1


def test_a_manifest_is_append_only_unless_prune_is_on(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"image": f"{i}.png"}) + "\n" for i in range(4)))
    corpus = Corpus.open_or_create(str(tmp_path / "corpus"))
    assert sync(corpus, str(manifest)).listing is None  # auto: a manifest may list only new rows
    manifest.write_text(json.dumps({"image": "9.png"}) + "\n")
    assert sync(corpus, str(manifest)).listing is None and gone_syncs(corpus.root) == []
    other = Corpus.open_or_create(str(tmp_path / "other"))
    sync(other, str(manifest), prune="on")
    manifest.write_text(json.dumps({"image": "8.png"}) + "\n")
    assert sync(other, str(manifest), prune="on").listing.gone == 1


def test_an_s3_prefix_listed_in_parallel_tasks_records_its_deleted_keys(ray_local, s3_bucket):
    for d in ("a", "b"):
        for i in range(3):
            storage.write_bytes(f"{s3_bucket}/images/{d}/{i}.jpg", f"{d}{i}".encode())
    corpus = Corpus.open_or_create(f"{s3_bucket}/corpus")
    assert sync(corpus, f"{s3_bucket}/images/", parallel=True).listing.gone is None
    storage.delete(f"{s3_bucket}/images/b/1.jpg")
    again = sync(corpus, f"{s3_bucket}/images/", parallel=True)
    assert again.listed == 5 and again.listing.gone == 1
    [when] = gone_syncs(corpus.root)
    assert gone_keys(corpus.root, when).snapshot().contains([uri_key(f"{s3_bucket}/images/b/1.jpg")]) == [
        True
    ]
