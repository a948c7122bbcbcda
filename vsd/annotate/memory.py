"""Give the driver's freed memory back to the system, so its RSS follows what it holds.

The driver's big transient work -- the sync's manifest parse, each commit's replay of the table's
log (delta-rs, Arrow), the end-of-run compaction -- is freed when it ends, but glibc's malloc and
Arrow's memory pool keep the freed pages for reuse, and fragmentation keeps them from being reused
fully: measured with `bench/driver_memory.py`, the driver's RSS then grew ~4 KiB per new row. A
run of 100M rows must not need a head node sized for that, so the driver hands free pages back
at those points (a few milliseconds each, rate-limited by `Releaser`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from functools import lru_cache


@lru_cache(maxsize=1)
def _libc():
    """glibc, for ``malloc_trim`` (None elsewhere: musl, macOS -- nothing to trim there)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def release_unused() -> None:
    """Return Arrow's pooled free memory and glibc's free heap pages to the system."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


class Releaser:
    """`release_unused` at most once per ``every_s``: cheap enough to call per commit."""

    def __init__(self, every_s: float = 5.0, clock=time.monotonic):
        self.every_s, self.clock = every_s, clock
        self.last: float | None = None

    def __call__(self) -> bool:
        now = self.clock()
        if self.last is not None and now - self.last < self.every_s:
            return False
        release_unused()
        self.last = now
        return True
