"""`SpillingKeys`: a sync's own keys in bounded memory, spilled to a `vsd.keyset.KeySet` as they grow.

A sync must know which rows it already took (a row listed twice is sharded once) and, at the
end, record every new key. Held in a Python set that is ~100 bytes a key: 10 GB for a backfill
of 100 M rows. Here at most ``limit`` keys (and a shard's rows) are in memory; older ones are written as generations
of the key set (named ``<stem>-k<n>``) and looked up there -- the same Bloom filter + sorted file
lookup as every other key-set read, against this sync's generations only.

Crash safety is the caller's: `flush(n)` writes only the first ``n`` pending keys, so the corpus
sync records a row's key only once the shard holding the row is written (a crash between the two
leaves rows that the next sync shards again, never a key without its row).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vsd.keyset import KeySet, Snapshot, as_array, bucket_of, goes_to_level0

SPILL_KEYS = 1 << 20  # keys held before a spill: ~100 MiB as a Python set, 16 MiB written


class SpillingKeys:
    """Keys added by one writer (``stem``) to ``keyset``; `contains` answers for all of them."""

    def __init__(self, keyset: KeySet, stem: str, limit: int | None = None):
        self.keyset, self.stem = keyset, stem
        self.limit = max(1, SPILL_KEYS if limit is None else limit)
        self._pending: list[bytes] = []  # in arrival order: `flush(n)` writes a prefix
        self._pending_set: set[bytes] = set()
        self._written = Snapshot(keyset.root, keyset.buckets)
        self._spills = 0
        self.count = 0  # keys added (each once)

    def contains(self, keys: Sequence[bytes]) -> list[bool]:
        found = [k in self._pending_set for k in keys]
        if len(self._written):
            todo = [i for i, hit in enumerate(found) if not hit]
            for i, hit in zip(todo, self._written.contains([keys[i] for i in todo])):
                found[i] = hit
        return found

    def add(self, key: bytes) -> None:
        """Add a key not `contains`-ed yet (the caller checked)."""
        self._pending.append(key)
        self._pending_set.add(key)
        self.count += 1

    def pending_has(self, key: bytes) -> bool:
        return key in self._pending_set

    @property
    def spilled(self) -> int:
        """How many generations were written so far."""
        return self._spills

    @property
    def pending(self) -> int:
        return len(self._pending)

    def over_limit(self) -> bool:
        return len(self._pending) >= self.limit

    def flush(self, n: int | None = None, level0: bool | None = None) -> int:
        """Write the first ``n`` pending keys (all by default) as one new generation (``level0``:
        as `KeySet.add`; the spills of a large sync go to the buckets)."""
        n = len(self._pending) if n is None else min(n, len(self._pending))
        if n <= 0:
            return 0
        head = as_array(self._pending[:n])
        generation = f"{self.stem}-k{self._spills:05d}"
        self.keyset.add(head, generation=generation, level0=level0)
        self._spills += 1
        self._pending_set.difference_update(self._pending[:n])
        del self._pending[:n]
        # what was just written, as the snapshot a listing would give (no listing: the set may be big)
        if goes_to_level0(n, level0):
            self._written.runs.append(generation)
        else:
            for bucket in np.unique(bucket_of(head, self.keyset.buckets)):
                self._written.files.setdefault(int(bucket), []).append(generation)
        return n
