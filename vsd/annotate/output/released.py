"""Released images: ones whose every row a prune took out, so that a file with their content is
annotated again.

The output's key set says which images were ever written, and a new file whose content hash is in
it is skipped as already annotated: right for a copy of an image that has its row, wrong after a
*move* (a rename, a folder reorganised), which the corpus sees as a deletion plus a new file. The
prune takes the old path's row out; without this set the new path was skipped too and the image
had no current row at all. The prune adds the image keys of the rows it removes (before its commit:
a crash in between leaves an image released that still has its row, which costs one re-annotation,
never a row); the read stage does not count a released key as done; a finish folding a run's
progress entries takes the keys that run wrote back out, so a second copy is skipped again. A
takedown (`vsd delete`) releases nothing: its image stays out.

    __vsd/released.keys    per image its two keys (`vsd.annotate.index.image_key`: content, given),
                           32 bytes, sorted; rewritten whole

Only images deleted from the source and not seen again stay in it (32 bytes each).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from vsd import storage
from vsd.annotate.index import Output, image_key
from vsd.keyset import KEY_BYTES, _void, as_array

FILE = "released.keys"
PAIR = 2 * KEY_BYTES  # an image's content key and given key, side by side


def _pairs(out: Output) -> set[bytes]:
    try:
        data = storage.read_bytes(out.path(FILE))
    except FileNotFoundError:
        return set()
    return {data[i : i + PAIR] for i in range(0, len(data), PAIR)}


def _save(out: Output, pairs: set[bytes]) -> None:
    if pairs:
        storage.write_bytes(out.path(FILE), b"".join(sorted(pairs)))
    elif storage.exists(out.path(FILE)):
        storage.delete(out.path(FILE))


def load(out: Output) -> frozenset[bytes]:
    """The released keys, both spaces (empty when nothing was ever released)."""
    return frozenset(p[i : i + KEY_BYTES] for p in _pairs(out) for i in (0, KEY_BYTES))


def release(out: Output, image_ids: Iterable[str]) -> int:
    """Add ``image_ids``, each under both key spaces (a table row does not say whether its id was
    given or hashed; a key never written is never looked up as done); returns how many."""
    new = {image_key(i, False) + image_key(i, True) for i in image_ids if i}
    if new:
        _save(out, _pairs(out) | new)
    return len(new)


def spend(out: Output, keys: np.ndarray | Iterable[bytes]) -> None:
    """Take back out every image whose key (either space) is among ``keys``, the ``(n, 16)``
    uint8 rows (or bytes) a run wrote; the caller folds that run's entries under the lease. The
    run's keys are looked up in the (small) set, not gathered into one: a run may write millions."""
    pairs = _pairs(out)
    arr = keys if isinstance(keys, np.ndarray) else as_array(keys)
    if not pairs or not len(arr):
        return
    table = _void(as_array(sorted(load(out))))
    written = _void(arr)
    at = np.minimum(np.searchsorted(table, written), len(table) - 1)
    spent = {bytes(k) for k in np.unique(table[at][table[at] == written])}
    left = {p for p in pairs if p[:KEY_BYTES] not in spent and p[KEY_BYTES:] not in spent}
    if len(left) != len(pairs):
        _save(out, left)
