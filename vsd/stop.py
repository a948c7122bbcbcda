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

A Python handler runs only when the main thread is back in Python: one blocked inside C code that
retries on EINTR (Arrow opening a FIFO, a hung NFS read) would never see it, and Kubernetes would
SIGKILL the pod after its grace period with no line at all. So the signal also wakes a watcher
thread (``signal.set_wakeup_fd``): if the main thread has not finished its clean stop within
`GRACE_S`, the watcher shuts Ray down itself (bounded), prints the line and exits 143.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

EXIT_SIGTERM = 128 + signal.SIGTERM
GRACE_S = 10.0  # for the main thread to stop cleanly; inside Kubernetes' default 30 s
_state = {"stopping": False, "hooked": False, "watching": False}
LINE = "vsd: stopped by SIGTERM"


class Stopped(BaseException):
    """The driver got SIGTERM: unwind, shut Ray down, exit `EXIT_SIGTERM`."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def _handler(signum, frame) -> None:
    if _state["stopping"]:  # asked twice: the clean stop is taking too long for the caller
        os.write(2, f"{LINE} (again: exiting now)\n".encode())
        os._exit(EXIT_SIGTERM)
    _state["stopping"] = True
    raise Stopped(signum)


def install() -> None:
    """Put our SIGTERM handler in place (main thread only; elsewhere signals cannot be handled),
    and the watcher thread behind it (once)."""
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGTERM, _handler)
    if not _state["watching"]:
        read, write = os.pipe()
        os.set_blocking(write, False)
        try:
            signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        except ValueError:  # not the main interpreter: the handler alone
            os.close(read), os.close(write)
            return
        _state["watching"] = True
        threading.Thread(target=_watch, args=(read,), name="vsd-sigterm-watch", daemon=True).start()


def _watch(fd: int) -> None:
    """Wait for SIGTERM's byte on the wakeup pipe; give the main thread `GRACE_S` to stop."""
    while signal.SIGTERM not in os.read(fd, 64):
        pass
    time.sleep(GRACE_S)  # the process is still alive: the main thread is stuck in C code
    done = threading.Event()
    threading.Thread(target=lambda: (clean_stop(), done.set()), daemon=True).start()
    done.wait(GRACE_S)
    if not _state.get("said"):  # else the main thread stopped and said so; the exit itself hangs
        os.write(2, f"{LINE} (the main thread did not answer within {GRACE_S:.0f} s)\n".encode())
    os._exit(EXIT_SIGTERM)


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
    """The `Stopped` that caused ``exc`` (itself, or in its ``__cause__``/``__context__`` chain).
    A ``SystemExit(15)`` counts too: Ray's own handler, if SIGTERM lands inside ``ray.init``
    before the post-init hook puts ours back, ends the driver with ``sys.exit(15)``."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, Stopped):
            return exc
        if isinstance(exc, SystemExit) and exc.code == signal.SIGTERM and "ray" in sys.modules:
            _state["stopping"] = True
            return Stopped(signal.SIGTERM)
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def finishing() -> None:
    """The command has returned: a SIGTERM now must not raise into the interpreter's exit (Ray's
    atexit shutdown printed "Exception ignored" and the exit code became 0). It is left to the
    watcher, which ends the exit quietly if it still hangs after `GRACE_S`."""
    _state["said"] = True
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _quiet)


def _quiet(signum, frame) -> None:
    """Nothing to unwind any more; the wakeup pipe has told the watcher."""


def said() -> None:
    """The main thread printed `LINE`: the watcher, if it must still end the process, stays quiet."""
    _state["said"] = True


def clean_stop() -> None:
    """Shut down the Ray this driver started or joined (its workers stop with it)."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        try:
            ray.shutdown()
        except Exception:  # noqa: BLE001 - stopping anyway; the exit line says what happened
            pass
