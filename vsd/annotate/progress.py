"""One progress line for `vsd annotate`: images done of planned, images/s, ETA, errors so far.

Ray Data's progress bars count *blocks* per operator, which says nothing a person can act on (how
many images, how long still, is it failing). The driver already receives one summary per written
part (its counts: ``images``, ``rows``, ``ok``, ``error: {reason: n}``); `Progress` folds them into
one line. On a terminal the line is rewritten in place (at most every `TTY_EVERY_S`); in a log (a
Ray job, CI, ``| tee``) a line is printed for the first part and then once per `LOG_EVERY_S`, so
a night's log stays short and still shows the rate. ``close`` prints the final line.

"Planned" is the rows of the unfinished shards the run reads; images already annotated there are
skipped at read and never reach a part, so a resumed run may end below 100 % -- the final counts
(`format_counts`) say how many were skipped.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

TTY_EVERY_S = 0.5
LOG_EVERY_S = 60.0


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _errors(counts: dict) -> int:
    errors = counts.get("error") or {}
    return sum(errors.values()) if isinstance(errors, dict) else int(errors)


class Progress:
    """Fold per-part counts into one status line; see the module docstring."""

    def __init__(
        self,
        total: int,
        *,
        out: TextIO | None = None,
        in_place: bool | None = None,
        log_every_s: float = LOG_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.total = max(0, int(total))
        self.out = out or sys.stderr
        self.in_place = self._is_tty() if in_place is None else in_place
        self.log_every_s = log_every_s
        self.clock = clock
        self.started = clock()
        self.images = 0
        self.errors = 0  # error rows (pairs) so far
        self.parts = 0
        self._last_shown: float | None = None
        self._width = 0

    def _is_tty(self) -> bool:
        isatty = getattr(self.out, "isatty", None)
        return bool(isatty and isatty())

    def line(self) -> str:
        elapsed = self.clock() - self.started
        rate = self.images / elapsed if elapsed > 0 else 0.0
        share = f" ({100 * self.images / self.total:.0f}%)" if self.total else ""
        left = max(0, self.total - self.images)
        eta = _duration(left / rate) if rate > 0 and self.total else "-"
        return (
            f"annotate: {self.images:,}/{self.total:,} images{share}  {rate:.2f} images/s  "
            f"ETA {eta}  errors {self.errors:,}  elapsed {_duration(elapsed)}"
        )

    def update(self, part_counts: dict) -> None:
        """One written part's counts (the write stage's summary); shows the line when it is due."""
        self.images += int(part_counts.get("images", 0))
        self.errors += _errors(part_counts)
        self.parts += 1
        now = self.clock()
        every = TTY_EVERY_S if self.in_place else self.log_every_s
        if self._last_shown is None or now - self._last_shown >= every:
            self._show(self.line())
            self._last_shown = now

    def close(self) -> None:
        """The final line (ends the in-place line with a newline)."""
        self._show(self.line())
        if self.in_place:
            self.out.write("\n")
            self.out.flush()

    def _show(self, text: str) -> None:
        if self.in_place:
            pad = " " * max(0, self._width - len(text))  # a shorter line must wipe the longer one
            self.out.write(f"\r{text}{pad}")
            self._width = len(text)
        else:
            self.out.write(text + "\n")
        self.out.flush()
