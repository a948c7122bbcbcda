"""vsd.keyset: exact membership at any size, and a bounded number of files over years of nights."""

from __future__ import annotations

import os

import numpy as np

from vsd import storage
from vsd.keyset import L0_DIR, KeySet, key_of


def _keys(prefix: str, n: int) -> list[bytes]:
    return [key_of(f"{prefix}{i}") for i in range(n)]


def _objects(root: str) -> int:
    return len(storage.list_files(root))


def test_small_additions_are_one_run_large_ones_go_to_buckets_and_lookups_are_exact(tmp_path, monkeypatch):
    import vsd.keyset as keyset

    monkeypatch.setattr(keyset, "L0_MAX_KEYS", 1000)
    ks = KeySet(str(tmp_path / "ks"), buckets=16)
    ks.add(_keys("night1-", 300), generation="g-1")
    assert os.listdir(tmp_path / "ks" / L0_DIR) and _objects(str(tmp_path / "ks")) == 3  # meta + run
    ks.add(_keys("backfill-", 5000), generation="g-2")  # too large for a run: per bucket
    snap = ks.snapshot()
    assert snap.runs == ["g-1"] and sum(len(g) for g in snap.files.values()) == 16
    assert ks.stored_keys() == 5300  # from the key files' sizes: a run and every bucket counted
    assert KeySet(str(tmp_path / "none")).stored_keys() == 0
    probe = _keys("night1-", 300) + _keys("backfill-", 5000) + _keys("never-", 2000)
    assert snap.contains(probe) == [True] * 5300 + [False] * 2000


def test_a_year_of_small_nights_keeps_the_files_bounded_and_every_key_found(tmp_path):
    ks = KeySet(str(tmp_path / "ks"), buckets=256)
    ks.add(_keys("backfill-", 300_000), generation="g-0000")  # night 1: a backfill, per bucket
    after_first = _objects(str(tmp_path / "ks"))
    for night in range(1, 61):  # 60 nights of 1,000 new keys, compacted as each run ends
        ks.add(_keys(f"n{night}-", 1000), generation=f"g-{night:04d}")
        ks.compact()
    assert _objects(str(tmp_path / "ks")) <= 3 * after_first
    snap = ks.snapshot()
    assert len(snap.runs) <= 5 and max(len(g) for g in snap.files.values()) <= 8  # bounded reads
    rng = np.random.default_rng(0)
    nights = rng.integers(1, 61, 200)
    held = [key_of(f"n{n}-{i}") for n, i in zip(nights, rng.integers(0, 1000, 200))]
    held += [key_of(f"backfill-{i}") for i in rng.integers(0, 300_000, 200)]
    assert snap.contains(held) == [True] * 400
    assert snap.contains(_keys("never-", 500)) == [False] * 500


def test_a_bloom_filter_built_in_chunks_is_the_filter_built_at_once(monkeypatch):
    """Chunking bounds the build's memory (the end-of-run compaction's peak) without changing a
    bit of the filter, so files written before read the same."""
    import vsd.keyset as keyset

    arr = keyset.as_array(_keys("k-", 5000))
    monkeypatch.setattr(keyset, "BLOOM_CHUNK", 1 << 30)
    whole = keyset.bloom_build(arr)
    monkeypatch.setattr(keyset, "BLOOM_CHUNK", 333)
    chunked = keyset.bloom_build(arr)
    assert chunked == whole
    assert keyset.bloom_may_contain(chunked, arr).all()
    absent = keyset.as_array(_keys("other-", 5000))
    assert keyset.bloom_may_contain(chunked, absent).mean() < 0.05  # still ~1 % false positives
