"""SIGTERM as a first-class stop for the `vsd` driver: one ``vsd: stopped by SIGTERM`` line, Ray
shut down cleanly, exit 143 (128 + 15, what Kubernetes and shells expect).

Why this needs care: ``ray.init`` replaces the process's SIGTERM handler twice -- a Python one
(``sys.exit(15)``) and, in the core worker, a C++ failure handler that prints ``*** SIGTERM
received`` with a stack dump and aborts (exit -6, no ``vsd:`` line). A handler installed before
``ray.init`` is lost; so `install` is also run by Ray's post-init hook, right after every
``ray.init`` in this process, which puts the Python handler back in front of both.

The handler raises `Stopped` (a BaseException: no ``except Exception`` swallows it) in the main
thread. Inside Ray's Cython code it may come out wrapped in a ``SystemError``; `stopped_by`
finds it in the exception chain. Everything written before the stop stays and the next run
writes the rest exactly once (the same guarantee as a kill); a second SIGTERM during the clean
stop exits at once.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

EXIT_SIGTERM = 128 + signal.SIGTERM
_state = {"stopping": False, "hooked": False}


class Stopped(BaseException):
    """The driver got SIGTERM: unwind, shut Ray down, exit `EXIT_SIGTERM`."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def _handler(signum, frame) -> None:
    if _state["stopping"]:  # asked twice: the clean stop is taking too long for the caller
        os.write(2, b"vsd: stopped by SIGTERM (again: exiting now)\n")
        os._exit(EXIT_SIGTERM)
    _state["stopping"] = True
    raise Stopped(signum)


def install() -> None:
    """Put our SIGTERM handler in place (main thread only; elsewhere signals cannot be handled)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _handler)


def install_after_ray_init() -> None:
    """`install` now and after every later ``ray.init`` in this process (Ray's post-init hook)."""
    install()
    if _state["hooked"]:
        return
    try:
        from ray._private import worker
    except ImportError:  # no Ray in this process: nothing will replace the handler
        return
    hooks = getattr(worker, "_post_init_hooks", None)
    if isinstance(hooks, list):
        hooks.append(install)
        _state["hooked"] = True


def stopped_by(exc: BaseException | None) -> Stopped | None:
    """The `Stopped` that caused ``exc`` (itself, or in its ``__cause__``/``__context__`` chain)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, Stopped):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def clean_stop() -> None:
    """Shut down the Ray this driver started or joined (its workers stop with it)."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        try:
            ray.shutdown()
        except Exception:  # noqa: BLE001 - stopping anyway; the exit line says what happened
            pass
