"""What a complete listing held, so the next one can say which files were deleted from the source.

A corpus only ever grows (its shards are immutable); a file deleted from the source is found by
comparing two listings of that source, one bucket at a time (`vsd.keyset.KeySet.by_bucket`), in
memory bounded by a bucket. Layout below the corpus root::

    _listings/<source id>/<sync id>/    a `KeySet` of `uri_key`s: every row that sync listed
    _listings/<source id>/latest.json   {"sync": <sync id>, "source": ..., "rows": n}
    _gone/<sync id>/                    a `KeySet` of the `uri_key`s that sync found deleted

An output applies each ``_gone`` set once (`vsd.annotate.output.prune`). A listing that was not
complete -- the source reported problems (an unreadable folder) or listed nothing where the last
one listed files (an unmounted disk) -- records nothing gone and keeps the previous listing as the
reference: a half listing must never delete half a dataset.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from vsd import storage
from vsd.keyset import KEY_BYTES, L0_MAX_KEYS, KeySet, as_array, key_of

LISTINGS_DIR = "_listings"
GONE_DIR = "_gone"
CHUNK_KEYS = 1 << 22  # 64 MiB of keys in memory before a listing spills to its buckets


def prunes(kind: str, setting: str) -> bool:
    """Whether deleted source files leave the output: ``auto`` for folders and prefixes (their
    listing is the whole source), not for manifests or VSD JSON (often a night's new rows only)."""
    return setting == "on" or (setting == "auto" and kind == "folder")


def uri_key(source_uri: str) -> bytes:
    """The key of a source URI: some version of this file was listed (or annotated)."""
    return key_of("u:" + source_uri)


def source_id(kind: str, uri: str) -> str:
    return key_of(f"{kind}|{uri}").hex()[:16]


@dataclass
class ListingResult:
    rows: int
    gone: int | None  # None: no previous listing to compare with, or this one was incomplete
    note: str = ""


class Listing:
    """Records the URIs one sync lists (`add`), then compares them with the previous sync's
    listing of the same source (`finish`)."""

    def __init__(self, corpus_root: str, kind: str, uri: str, stem: str, part: str = ""):
        self.corpus_root, self.stem, self.part = corpus_root.rstrip("/"), stem, part
        self.base = storage.join(self.corpus_root, LISTINGS_DIR, source_id(kind, uri))
        self.source = uri
        self.keys = KeySet(storage.join(self.base, stem))
        self._chunks: list[np.ndarray] = []
        self._held = 0
        self._spills = 0
        self.rows = 0

    def add(self, uris: Iterable[str]) -> None:
        arr = as_array(uri_key(u) for u in uris)
        self.rows += len(arr)
        self._chunks.append(arr)
        self._held += len(arr)
        if self._held >= CHUNK_KEYS:
            self._spill(level0=False)

    def _spill(self, level0: bool | None) -> None:
        if self._held:
            self.keys.add(np.concatenate(self._chunks), f"{self.part}k{self._spills:05d}", level0=level0)
            self._spills += 1
        self._chunks, self._held = [], 0

    def previous(self) -> dict | None:
        try:
            return json.loads(storage.read_text(storage.join(self.base, "latest.json")))
        except FileNotFoundError:
            return None

    def close(self) -> int:
        """Write what is held (a listing task's part of the listing); returns the rows listed."""
        self._spill(level0=None if self._spills == 0 and self._held <= L0_MAX_KEYS else False)
        return self.rows

    def finish(self, problems: list[str]) -> ListingResult:
        """Compare with the previous listing, record what is gone, make this one the reference."""
        self.close()
        prev = self.previous()
        note = ""
        if problems:
            note = (
                f"{len(problems)} source problem(s): the listing may be partial, nothing is taken as deleted"
            )
        elif prev and prev.get("rows") and not self.rows:
            note = f"the source listed nothing (the last sync listed {prev['rows']}): nothing is taken as deleted"
        if note:
            storage.delete(self.keys.root)
            return ListingResult(self.rows, None, note)
        gone = None
        if prev:
            gone = _diff(KeySet(storage.join(self.base, prev["sync"])), self.keys, self._gone_set())
        storage.write_text(
            storage.join(self.base, "latest.json"),
            json.dumps({"sync": self.stem, "source": self.source, "rows": self.rows}) + "\n",
        )
        if prev and prev["sync"] != self.stem:
            storage.delete(storage.join(self.base, prev["sync"]))
        return ListingResult(self.rows, gone)

    def _gone_set(self) -> KeySet:
        return KeySet(storage.join(self.corpus_root, GONE_DIR, self.stem))


def _diff(before: KeySet, after: KeySet, gone: KeySet) -> int:
    """Write to ``gone`` the keys of ``before`` that ``after`` lacks; returns how many."""
    held: list[np.ndarray] = []
    n = spills = 0
    for (_, old), (_, new) in zip(before.by_bucket(), after.by_bucket()):
        if not len(old):
            continue
        at = np.searchsorted(new, old)
        present = np.zeros(len(old), dtype=bool)
        ok = at < len(new)
        present[ok] = new[at[ok]] == old[ok]
        lost = old[~present]
        if len(lost):
            held.append(lost.view(np.uint8).reshape(-1, KEY_BYTES))
            n += len(lost)
            if sum(len(h) for h in held) >= CHUNK_KEYS:
                gone.add(np.concatenate(held), f"g{spills:05d}", level0=False)
                held, spills = [], spills + 1
    if held:
        gone.add(np.concatenate(held), f"g{spills:05d}", level0=None if not spills else False)
    return n


def gone_syncs(corpus_root: str) -> list[str]:
    """The syncs that found deleted files, oldest first: the folder names below ``_gone/`` (one
    listing of that level, not of every key file of every set)."""
    return storage.list_dirs(storage.join(corpus_root, GONE_DIR))


def gone_keys(corpus_root: str, sync_id: str) -> KeySet:
    return KeySet(storage.join(corpus_root, GONE_DIR, sync_id))
