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
from vsd.keyset import KEY_BYTES, _void, as_array

FILE = "released.keys"  # under the output's __vsd/ (`vsd.annotate.index.Output.released`)
PAIR = 2 * KEY_BYTES  # an image's content key and given key, side by side


def _pairs(uri: str) -> set[bytes]:
    try:
        data = storage.read_bytes(uri)
    except FileNotFoundError:
        return set()
    return {data[i : i + PAIR] for i in range(0, len(data), PAIR)}


def _save(uri: str, pairs: set[bytes]) -> None:
    if pairs:
        storage.write_bytes(uri, b"".join(sorted(pairs)))
    elif storage.exists(uri):
        storage.delete(uri)


def _keys(pairs: set[bytes]) -> frozenset[bytes]:
    return frozenset(p[i : i + KEY_BYTES] for p in pairs for i in (0, KEY_BYTES))


def load(uri: str) -> frozenset[bytes]:
    """The released keys, both spaces (empty when nothing was ever released)."""
    return _keys(_pairs(uri))


def release(uri: str, images: Iterable[tuple[bytes, bytes]]) -> int:
    """Add images, each as its (content key, given key): a table row does not say whether its id
    was given or hashed, and a key never written is never looked up as done. Returns how many."""
    new = {content + given for content, given in images}
    if new:
        _save(uri, _pairs(uri) | new)
    return len(new)


def spend(uri: str, keys: np.ndarray | Iterable[bytes]) -> None:
    """Take back out every image whose key (either space) is among ``keys``, the ``(n, 16)``
    uint8 rows (or bytes) a run wrote; the caller folds that run's entries under the lease. The
    run's keys are looked up in the (small) set, not gathered into one: a run may write millions."""
    pairs = _pairs(uri)
    arr = keys if isinstance(keys, np.ndarray) else as_array(keys)
    if not pairs or not len(arr):
        return
    table = _void(as_array(sorted(_keys(pairs))))
    written = _void(arr)
    at = np.minimum(np.searchsorted(table, written), len(table) - 1)
    spent = {bytes(k) for k in np.unique(table[at][table[at] == written])}
    left = {p for p in pairs if p[:KEY_BYTES] not in spent and p[KEY_BYTES:] not in spent}
    if len(left) != len(pairs):
        _save(uri, left)
