"""vsd.annotate.memory: freed pages go back to the system, at most once per interval."""

from __future__ import annotations

import pytest

from vsd.annotate.memory import Releaser, _libc, release_unused


def _rss() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


@pytest.mark.skipif(_libc() is None, reason="malloc_trim is glibc's")
def test_freed_heap_pages_pinned_by_survivors_go_back():
    # 80 MB of heap chunks, every 100th kept (and the last, pinning the top): free() alone keeps
    # the pages between the survivors; release_unused hands them back.
    chunks = [bytearray(4000) for _ in range(20_000)]
    for c in chunks:
        c[::512] = b"x" * len(c[::512])  # touch every page
    keep = chunks[::100] + [chunks[-1]]
    del chunks
    before = _rss()
    release_unused()
    assert before - _rss() > 30 * 2**20
    assert len(keep) == 201


def test_releaser_runs_at_most_once_per_interval():
    now = [100.0]
    release = Releaser(every_s=5.0, clock=lambda: now[0])
    assert release() is True
    now[0] += 4.9
    assert release() is False
    now[0] += 0.2
    assert release() is True
