"""A set of keys too large for one process: hash buckets of sorted, Bloom-filtered generation files.

Used for "have we seen this before?" at corpus scale -- the corpus's listing keys
(``uri|size|version``) and the annotation output's image ids -- without any process ever holding
every key (a Python set costs ~100 bytes a key: 10 GB at 100 M images). A key is the first 16
bytes of the SHA-256 of its text (collision odds ~n^2/2^129: none at 10^9 keys). Layout below
``root``::

    _meta.json                       {"buckets": B}  (fixed when the set is created)
    b=<bucket>/<generation>.keys     sorted 16-byte keys, concatenated
    b=<bucket>/<generation>.bloom    Bloom filter of that file (~10 bits/key, 1 % false positives)

    l0/<generation>.keys, .bloom     a small addition: one sorted run of every bucket's keys

Like an LSM tree: a night that adds few keys writes ONE level-0 run (two objects, not two per
bucket: 256 buckets x 2 objects a night would grow the set and its listing by ~500 objects a
night however little was new); a large addition (a backfill) is written per bucket. `compact`
merges the level-0 runs once there are more than ``max_runs`` (into one run while it stays small,
else spilled into the buckets) and a bucket's generations once there are more than
``max_generations``; so a lookup reads at most ``max_runs`` runs and ``max_generations`` files of
its bucket (bounded read amplification), and the object count stays bounded over years of nights.
All files are immutable (readers cache them freely). `Snapshot` is the list of
generation files, taken once by the driver and handed to tasks, so lookups inside tasks list
nothing and load only the buckets their keys fall in: the Bloom filter first, the sorted keys only
for its positives (binary search).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow.fs as pafs

from vsd import storage

KEY_BYTES = 16
BITS_PER_KEY = 10  # 1 % false positives with 7 hashes
HASHES = 7
DEFAULT_BUCKETS = 256
L0_DIR = "l0"
L0_MAX_KEYS = 1 << 18  # a run up to 4 MiB of keys; larger additions (and merged runs) go to buckets


def key_of(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()[:KEY_BYTES]


def as_array(keys: Iterable[bytes]) -> np.ndarray:
    """Keys -> (n, 16) uint8 rows (the form every operation here works on)."""
    blob = b"".join(keys)
    return np.frombuffer(blob, dtype=np.uint8).reshape(-1, KEY_BYTES)


def _void(arr: np.ndarray) -> np.ndarray:
    """(n, 16) uint8 -> n comparable scalars (byte order = sort order), for sort/searchsorted."""
    return np.ascontiguousarray(arr).view(f"V{KEY_BYTES}").ravel()


def goes_to_level0(n: int, level0: bool | None = None) -> bool:
    """Where `KeySet.add` writes ``n`` keys: one level-0 run (``level0``, else while small) or
    the buckets."""
    return level0 if level0 is not None else n <= L0_MAX_KEYS


def bucket_of(arr: np.ndarray, buckets: int) -> np.ndarray:
    return ((arr[:, 0].astype(np.uint32) << 8) | arr[:, 1]) % buckets


# ----------------------------------------------------------------------------------------------
# Bloom filter over uniformly random keys (the key bytes themselves are the hashes)
# ----------------------------------------------------------------------------------------------


def _positions(arr: np.ndarray, bits: int) -> np.ndarray:
    h = np.ascontiguousarray(arr).view(np.uint64)  # two 64-bit halves per key
    h1, h2 = h[:, 0], h[:, 1] | np.uint64(1)
    i = np.arange(HASHES, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return ((h1[:, None] + i[None, :] * h2[:, None]) % np.uint64(bits)).astype(np.int64)


BLOOM_CHUNK = 1 << 14  # keys per step of `bloom_build`: its temporaries are ~60 bytes a key


def bloom_build(arr: np.ndarray) -> bytes:
    """The filter of ``arr``, built in chunks: in one go its temporaries (7 positions a key, a few
    times over) were the peak of the driver's end-of-run compaction (~14 MiB at 60,000 keys)."""
    bits = max(64, int(len(arr) * BITS_PER_KEY + 63) // 64 * 64)
    table = np.zeros(bits // 8, dtype=np.uint8)
    for start in range(0, len(arr), BLOOM_CHUNK):
        pos = _positions(arr[start : start + BLOOM_CHUNK], bits).ravel()
        np.bitwise_or.at(table, pos >> 3, (1 << (pos & 7)).astype(np.uint8))
    return table.tobytes()


def bloom_may_contain(table: bytes, arr: np.ndarray) -> np.ndarray:
    bits = np.frombuffer(table, dtype=np.uint8)
    pos = _positions(arr, len(bits) * 8)
    hit = (bits[pos >> 3] >> (pos & 7)) & 1
    return hit.all(axis=1)


# ----------------------------------------------------------------------------------------------
# Reading (cached per process: generation files never change once written)
# ----------------------------------------------------------------------------------------------

_CACHE: OrderedDict[str, object] = OrderedDict()
_CACHE_BYTES = [0]
CACHE_LIMIT = 256 * 1024 * 1024  # a backfill sync loads every bucket: this bounds it


def _cached(uri: str, load) -> object:
    if uri in _CACHE:
        _CACHE.move_to_end(uri)
        return _CACHE[uri]
    value = load(uri)
    size = len(value) if isinstance(value, (bytes, bytearray)) else getattr(value, "nbytes", 0)
    _CACHE[uri] = value
    _CACHE_BYTES[0] += size
    while _CACHE_BYTES[0] > CACHE_LIMIT and len(_CACHE) > 1:
        _, old = _CACHE.popitem(last=False)
        _CACHE_BYTES[0] -= len(old) if isinstance(old, (bytes, bytearray)) else getattr(old, "nbytes", 0)
    return value


def _load_keys(uri: str) -> np.ndarray:
    return _void(np.frombuffer(storage.read_bytes(uri), dtype=np.uint8).reshape(-1, KEY_BYTES))


@dataclass
class Snapshot:
    """The generation files of a key set at one moment: ``{bucket: [generation, ...]}``. Small
    (buckets x generations names), so the driver takes it once and ships it to every task."""

    root: str
    buckets: int
    files: dict[int, list[str]] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)  # level-0 runs (every bucket's keys)

    def __len__(self) -> int:
        return sum(len(v) for v in self.files.values()) + len(self.runs)

    def contains(self, keys: Sequence[bytes]) -> list[bool]:
        """Membership of each key, exactly (a Bloom positive is confirmed in the sorted keys)."""
        if not keys:
            return []
        arr = as_array(keys)
        found = np.zeros(len(arr), dtype=bool)
        l0 = storage.join(self.root, L0_DIR)
        for run in reversed(self.runs):  # newest first
            _probe(f"{l0}/{run}", arr, np.nonzero(~found)[0], found)
        by_bucket = bucket_of(arr, self.buckets)
        for bucket in np.unique(by_bucket):
            gens = self.files.get(int(bucket))
            if not gens:
                continue
            rows = np.nonzero(by_bucket == bucket)[0]
            for gen in gens:
                todo = rows[~found[rows]]
                if not len(todo):
                    break
                _probe(f"{_bucket_dir(self.root, int(bucket))}/{gen}", arr, todo, found)
        return found.tolist()


def _probe(stem: str, arr: np.ndarray, todo: np.ndarray, found: np.ndarray) -> None:
    """Mark in ``found`` the rows ``todo`` of ``arr`` held by the file pair ``stem``.keys/.bloom:
    the Bloom filter first, the sorted keys only for its positives (binary search)."""
    if not len(todo):
        return
    bloom = _cached(f"{stem}.bloom", storage.read_bytes)
    maybe = todo[bloom_may_contain(bloom, arr[todo])]  # type: ignore[arg-type]
    if not len(maybe):
        return
    sorted_keys = _cached(f"{stem}.keys", _load_keys)
    probe = _void(arr[maybe])
    at = np.searchsorted(sorted_keys, probe)  # type: ignore[arg-type]
    at_ok = at < len(sorted_keys)  # type: ignore[arg-type]
    hit = np.zeros(len(maybe), dtype=bool)
    hit[at_ok] = sorted_keys[at[at_ok]] == probe[at_ok]  # type: ignore[index]
    found[maybe[hit]] = True


def _bucket_dir(root: str, bucket: int) -> str:
    return storage.join(root, f"b={bucket:04d}")


# ----------------------------------------------------------------------------------------------
# The set
# ----------------------------------------------------------------------------------------------


class KeySet:
    """A bucketed key set rooted at ``root`` (local or s3://); see the module docstring."""

    def __init__(self, root: str, buckets: int = DEFAULT_BUCKETS):
        self.root = root.rstrip("/")
        meta_uri = storage.join(self.root, "_meta.json")
        if storage.exists(meta_uri):
            self.buckets = int(json.loads(storage.read_text(meta_uri))["buckets"])
        else:
            self.buckets = buckets
            self._meta_uri = meta_uri
        self._meta_uri = meta_uri

    def snapshot(self) -> Snapshot:
        """One listing of the set's files (no file is read)."""
        snap = Snapshot(self.root, self.buckets)
        fs, base = storage.resolve(self.root)
        if fs.get_file_info(base).type != pafs.FileType.Directory:
            return snap
        for info in fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True)):
            name = posixpath.basename(info.path)
            parent = posixpath.basename(posixpath.dirname(info.path))
            if info.type != pafs.FileType.File or not name.endswith(".keys"):
                continue
            if parent.startswith("b="):
                snap.files.setdefault(int(parent[2:]), []).append(name[: -len(".keys")])
            elif parent == L0_DIR:
                snap.runs.append(name[: -len(".keys")])
        for gens in snap.files.values():
            gens.sort()
        snap.runs.sort()
        return snap

    def stored_keys(self) -> int:
        """Keys in the set's files, from their sizes (one listing, no file read): exact for a set
        each key is written to once (a ``_gone`` set), an upper bound where a crashed compaction
        left keys twice."""
        fs, base = storage.resolve(self.root)
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
        return (
            sum(i.size for i in infos if i.type == pafs.FileType.File and i.path.endswith(".keys"))
            // KEY_BYTES
        )

    def add(self, keys: Iterable[bytes] | np.ndarray, generation: str, level0: bool | None = None) -> int:
        """Write ``keys`` as generation ``generation`` of each bucket they fall in (idempotent:
        writing the same generation again rewrites the same files). ``level0``: one level-0 run
        (default: while small); False for the chunks of a large addition, which must not pile up
        as runs that a compaction would then load whole. Returns how many keys."""
        arr = keys if isinstance(keys, np.ndarray) else as_array(keys)
        if not len(arr):
            return 0
        if not storage.exists(self._meta_uri):
            storage.write_text(
                self._meta_uri, json.dumps({"buckets": self.buckets, "key_bytes": KEY_BYTES}) + "\n"
            )
        if goes_to_level0(len(arr), level0):
            self._write_at(storage.join(self.root, L0_DIR), generation, arr)
        else:
            self._spill(arr, generation)
        return len(arr)

    def by_bucket(self) -> Iterator[tuple[int, np.ndarray]]:
        """Every key, one bucket at a time, sorted and unique (as `_void` scalars): what a diff of
        two sets reads, in memory bounded by one bucket plus the (small) level-0 runs."""
        snap = self.snapshot()
        l0 = storage.join(self.root, L0_DIR)
        runs = [_load_keys(f"{l0}/{r}.keys").view(np.uint8).reshape(-1, KEY_BYTES) for r in snap.runs]
        run_keys = np.concatenate(runs) if runs else np.zeros((0, KEY_BYTES), np.uint8)
        run_buckets = bucket_of(run_keys, self.buckets)
        for bucket in range(self.buckets):
            parts = [run_keys[run_buckets == bucket]] + [
                _load_keys(f"{_bucket_dir(self.root, bucket)}/{g}.keys").view(np.uint8).reshape(-1, KEY_BYTES)
                for g in snap.files.get(bucket, [])
            ]
            yield bucket, np.unique(_void(np.concatenate(parts)))

    def _spill(self, arr: np.ndarray, generation: str) -> None:
        by_bucket = bucket_of(arr, self.buckets)
        jobs = [(int(b), arr[by_bucket == b]) for b in np.unique(by_bucket)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda job: self._write(job[0], generation, job[1]), jobs))

    def _write(self, bucket: int, generation: str, arr: np.ndarray) -> None:
        self._write_at(_bucket_dir(self.root, bucket), generation, arr)

    @staticmethod
    def _write_at(base: str, generation: str, arr: np.ndarray) -> None:
        keys = np.unique(_void(arr))  # sorted, no repeats
        raw = keys.view(np.uint8).reshape(-1, KEY_BYTES)
        # Bloom first: a reader that sees the .keys file (what snapshot lists) finds its filter.
        storage.write_bytes(f"{base}/{generation}.bloom", bloom_build(raw))
        storage.write_bytes(f"{base}/{generation}.keys", raw.tobytes())

    def compact(
        self,
        snapshot: Snapshot | None = None,
        max_generations: int = 8,
        generation: str = "c",
        max_runs: int = 4,
    ) -> int:
        """Merge the level-0 runs once there are more than ``max_runs`` (one run while small, else
        into the buckets), then the generations of every bucket that has more than
        ``max_generations`` (write the merged file, then delete the old ones: a crash in between
        only leaves keys twice). Returns how many runs and buckets were merged."""
        snap = snapshot or self.snapshot()
        merged_runs = 0
        if len(snap.runs) > max_runs:
            l0 = storage.join(self.root, L0_DIR)
            arr = np.concatenate(
                [_load_keys(f"{l0}/{r}.keys").view(np.uint8).reshape(-1, KEY_BYTES) for r in snap.runs]
            )
            name = f"{generation}-{snap.runs[-1]}"
            if len(arr) <= L0_MAX_KEYS:
                self._write_at(l0, name, arr)
            else:
                self._spill(arr, name)
            for run in snap.runs:
                if run != name:
                    storage.delete(f"{l0}/{run}.keys")
                    storage.delete(f"{l0}/{run}.bloom")
            merged_runs = len(snap.runs)
            snap = self.snapshot()
        todo = [(b, gens) for b, gens in snap.files.items() if len(gens) > max_generations]

        def merge(job: tuple[int, list[str]]) -> None:
            bucket, gens = job
            base = _bucket_dir(self.root, bucket)
            parts = [
                np.frombuffer(storage.read_bytes(f"{base}/{g}.keys"), dtype=np.uint8).reshape(-1, KEY_BYTES)
                for g in gens
            ]
            name = f"{generation}-{gens[-1]}"
            self._write(bucket, name, np.concatenate(parts))
            for g in gens:
                if g != name:
                    storage.delete(f"{base}/{g}.keys")
                    storage.delete(f"{base}/{g}.bloom")

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(merge, todo))
        return merged_runs + len(todo)
