"""What a run of `vsd annotate` shows on the driver's console: by default our one progress line
(`vsd.annotate.progress`) and the run's counts; Ray Data's own output only with ``--verbose``
(``progress_bars: true``).

Ray Data 2.60 prints, per dataset, its execution plan, a progress bar per operator (or, when
stdout is not a terminal, a block of ``logging_progress`` lines every few seconds) and INFO /
WARNING lines through its ``ray.data`` logger -- blocks per operator, which say nothing a person
can act on. Quiet, the bars and the execution-start lines are switched off in the driver's
`DataContext` (the switches Ray offers), and the ``ray.data`` logger's console handler shows
errors only; its file handler is left alone, so everything still lands in the session's
``logs/ray-data/ray-data.log``. Workers' own output (``log_to_driver``) still reaches the console:
an engine's warning or a stage's traceback is not Ray's chatter.
"""

from __future__ import annotations

import logging


def ray_data_console(verbose: bool) -> None:
    """Switch Ray Data's console output on (``verbose``) or down to errors, for this driver."""
    from ray.data import DataContext
    from ray.data._internal.logging import SessionFileHandler

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = verbose
    ctx.enable_operator_progress_bars = verbose
    ctx.print_on_execution_start = verbose
    for handler in logging.getLogger("ray.data").handlers:
        if not isinstance(handler, SessionFileHandler):  # the console one; the log file keeps all
            handler.setLevel(logging.INFO if verbose else logging.ERROR)
