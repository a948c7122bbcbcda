"""What `vsd train` shows while it runs: a step table, not Ray's raw ``TrainingReport(...)`` lines.

Ray Train logs every ``ray.train.report`` of every worker as a ``TrainingReport(checkpoint=...,
metrics={...})`` line at INFO, and the libraries under the loop repeat the same FutureWarnings from
every worker; the one number a person watches (is the loss going down, when will it finish) was
buried. So:

* `StepTable` formats one line per reported step (step/total, loss, tokens/s, elapsed, ETA) from
  the rows the driver's `MetricsWriter` combines (every worker's report, the same row that goes to
  ``metrics.jsonl``), delivered to the driver through a queue (`vsd.train.driver`);
* Ray Train's own console logging is raised to WARNING (`RAY_TRAIN_LOG_LEVEL`); its log files under
  the session folder still keep everything;
* `quiet_known_noise` filters the FutureWarnings *we know* our stack emits on every run (listed in
  `KNOWN_NOISE`, each with the reason it is harmless) -- only those, by message, so a new warning
  still shows.
"""

from __future__ import annotations

import sys
import time
import warnings
from typing import TextIO

RAY_TRAIN_LOG_LEVEL = "WARNING"

# (message regex, category, why it is noise for us). Matched at the start of the warning's text.
KNOWN_NOISE: tuple[tuple[str, type[Warning], str], ...] = (
    (
        r"`is_gradient_checkpointing` is deprecated",
        FutureWarning,
        "transformers 5 renamed it; PEFT/DeepSpeed call the old name on every model load",
    ),
    (
        r"`torch\.distributed\.all_gather_into_tensor` is deprecated",
        FutureWarning,
        "DeepSpeed ZeRO calls it on every step; torch still ships it",
    ),
    (
        r"`torch\.distributed\.reduce_scatter_tensor` is deprecated",
        FutureWarning,
        "DeepSpeed ZeRO calls it on every step; torch still ships it",
    ),
)


def quiet_known_noise() -> None:
    """Ignore exactly the `KNOWN_NOISE` warnings in this process (driver or worker), and the
    transformers weight-loading progress bar every worker would draw."""
    for message, category, _why in KNOWN_NOISE:
        warnings.filterwarnings("ignore", message=message, category=category)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass


def quiet_ray_train_reports() -> None:
    """Keep this worker's ``Reporting training result N: TrainingReport(...)`` lines off the console.

    Ray Train 2.60 logs them through a logger named by its *file path* (``getLogger(__file__)`` in
    ``execution/context.py``), so they reach the root logger and escape ``LoggingConfig``'s level,
    which only filters ``ray.train.*`` names. Raising that one logger is what is left; Ray's log
    files under the session folder still get everything else."""
    import logging

    try:
        from ray.train.v2._internal.execution import context
    except ImportError:  # another Ray layout: its lines show, nothing breaks
        return
    logging.getLogger(context.__file__).setLevel(logging.WARNING)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class StepTable:
    """Prints a header once, then one aligned line per step row (`MetricsWriter.combine`'s dict).

    The ETA is the remaining steps times the mean wall time per step since the first row this
    table saw (not from the start: starting the cluster and loading the model are not steps; a
    resumed run's rate is measured afresh), so the first line has none yet."""

    HEADER = f"{'step':>11}  {'loss':>8}  {'tokens/s':>9}  {'elapsed':>8}  {'ETA':>8}"

    def __init__(self, out: TextIO | None = None, clock=time.time):
        self.out = out or sys.stdout
        self.clock = clock
        self.started = clock()
        self.first: tuple[int, float] | None = None  # (step, time) of the first row seen
        self.printed_header = False
        self.last_step = 0

    def line(self, row: dict) -> str:
        step, total = int(row["step"]), int(row.get("total_steps") or 0)
        now = float(row.get("time") or self.clock())
        if self.first is None:  # the rate is measured from here: cluster start-up is not a step
            self.first = (step, now)
        done, since = step - self.first[0], now - self.first[1]
        eta = (total - step) * since / done if total and done > 0 else (0.0 if step == total else None)
        loss = f"{row['loss']:.4f}" if row.get("loss") is not None else "-"
        tokens = f"{row['tokens_per_s']:.0f}" if row.get("tokens_per_s") is not None else "-"
        where = f"{step}/{total}" if total else str(step)
        mark = "  checkpoint" if row.get("checkpoint") else ""
        return f"{where:>11}  {loss:>8}  {tokens:>9}  {_duration(now - self.started):>8}  {_duration(eta):>8}{mark}"

    def __call__(self, row: dict) -> None:
        """Print ``row`` (a step already printed, e.g. redone after a restore, prints again)."""
        if not self.printed_header:
            print(self.HEADER, file=self.out, flush=True)
            self.printed_header = True
        print(self.line(row), file=self.out, flush=True)
        self.last_step = int(row["step"])
