"""`Progress`: per-part counts (as the write stage reports them) -> one line, in place on a
terminal, once per interval in a log."""

from __future__ import annotations

import io

from vsd.annotate.progress import Progress


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _part(images: int, errors: dict | None = None) -> dict:
    """A part's counts as `vsd.annotate.stages.write` returns them (rows are pairs)."""
    return {
        "images": images,
        "rows": images * 2,
        "ok": images * 2 - sum((errors or {}).values()),
        "error": errors or {},
    }


def test_a_log_gets_the_first_part_then_a_line_per_interval():
    clock, out = Clock(), io.StringIO()
    progress = Progress(1000, out=out, clock=clock, log_every_s=60)
    clock.now += 10
    progress.update(_part(50, {"decode_error": 2}))  # first part: shown
    clock.now += 30
    progress.update(_part(50))  # 30 s later: not yet
    clock.now += 40
    progress.update(_part(100, {"bad_box": 1, "engine_error": 1}))  # 70 s after the last line
    clock.now += 1
    progress.close()
    lines = out.getvalue().splitlines()
    assert lines == [
        "annotate: 50/1,000 images (5%)  5.00 images/s  ETA 3:10  errors 2  elapsed 0:10",
        "annotate: 200/1,000 images (20%)  2.50 images/s  ETA 5:20  errors 4  elapsed 1:20",
        "annotate: 200/1,000 images (20%)  2.47 images/s  ETA 5:24  errors 4  elapsed 1:21",
    ]
    assert "\r" not in out.getvalue()


def test_a_terminal_gets_one_line_rewritten_in_place():
    clock, out = Clock(), Terminal()
    progress = Progress(20, out=out, clock=clock)
    assert progress.in_place  # detected from the stream
    for _ in range(4):
        clock.now += 1
        progress.update(_part(5))
    progress.close()
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")  # one line, ended once
    shown = [chunk.rstrip() for chunk in text.strip().split("\r") if chunk]
    assert shown[0] == "annotate: 5/20 images (25%)  5.00 images/s  ETA 0:03  errors 0  elapsed 0:01"
    assert shown[-1] == "annotate: 20/20 images (100%)  5.00 images/s  ETA 0:00  errors 0  elapsed 0:04"
    assert len(shown) == 5  # every update (>= 0.5 s apart) and the close


def test_a_shorter_line_wipes_the_longer_one():
    clock, out = Clock(), Terminal()
    progress = Progress(0, out=out, clock=clock)  # nothing planned: no share, no ETA
    clock.now += 1
    progress.update(_part(3, {"x": 12345}))
    first = len(out.getvalue())
    progress.errors = 0
    clock.now += 1
    progress.update(_part(0))
    second = out.getvalue()[first:]
    assert second.startswith("\rannotate: 3/0 images  1.50 images/s  ETA -  errors 0")
    assert len(second) == first  # padded to the previous width
