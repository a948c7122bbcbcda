"""An engine that dies inside a live actor ends the actor, so Ray replaces it and redoes the batch.

Ray restarts an engine actor whose *process* dies (Ray Data's actor pools: unbounded restarts) and
re-runs the batch it held. An engine that dies *inside* a live actor is invisible to Ray: SGLang's
scheduler process killed (the OOM killer, a segfault) leaves `Engine.generate` waiting forever for
an answer, and a CUDA error leaves the device context unusable, so every later batch fails -- the
run hangs, or fails whole, or turns the rest of the corpus into final ``engine_error`` rows.

`EngineWatch` turns both into a process death: a thread polls the processes the engine depends on
(SGLang's scheduler and detokenizer, started by the engine and known by their titles) and the
stage reports each exception to `failed`, which recognises device errors. Either way the actor
exits with `EXIT_ENGINE_LOST` after one log line; Ray starts a fresh actor (a fresh engine) and the
batch is redone, and the write stage keeps it exactly once.

A batch that takes the engine down every time would do so forever: each batch's deaths are counted
in a file on the node (per run), and from the `MAX_LOSSES_PER_BATCH`-th on the batch fails loudly
instead (`EngineLost`), naming its first requests.

A normal end is not a death: ``sglang.Engine`` registers its own ``atexit`` shutdown, which SIGKILLs
its children (``kill_process_tree``) while the actor exits, and the stage's close does the same. A
watch still polling then saw the scheduler as a zombie and "lost" the engine at every actor exit it
happened to catch (issue 28: the scheduler, detokenizer and resource tracker all exiting at once, the
actor's main thread in its atexit handlers). So `stop` waits for the poll thread, a poll never
reports after `stop`, and `start_watched` registers ``stop`` with ``atexit`` after the engine
started -- atexit runs last-registered first, so the watch stands down before SGLang's shutdown.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from vsd.backends import process_titles
from vsd.errors import VSDError

log = logging.getLogger(__name__)
T = TypeVar("T")

EXIT_ENGINE_LOST = 75  # EX_TEMPFAIL: try again (in a new actor)
MAX_LOSSES_PER_BATCH = 2
# Errors after which a CUDA/ROCm context (or its communicator) cannot be used again.
DEVICE_ERRORS = (
    "CUDA error",
    "device-side assert",
    "CUBLAS_STATUS_",
    "CUDNN_STATUS_",
    "illegal memory access",
    "NCCL error",
    "HIP error",
    "unspecified launch failure",
)


class EngineLost(VSDError):
    """The same batch took the engine down `MAX_LOSSES_PER_BATCH` times."""


def is_device_error(exc: BaseException) -> bool:
    """A device error that leaves the engine's device unusable (an out-of-memory is not one)."""
    text = f"{type(exc).__name__}: {exc}"
    return any(marker in text for marker in DEVICE_ERRORS)


# How engines title the processes they start, declared by each backend (vsd/backends).
ENGINE_TITLES = process_titles()


def child_processes() -> list[int]:
    """This process's children, now (taken before an engine starts, for `engine_processes`)."""
    import psutil  # a dependency of ray

    return [p.pid for p in psutil.Process().children(recursive=True)]


def engine_processes(before: Sequence[int]) -> list[int]:
    """The engine processes started since ``before`` (`child_processes`), known by their titles --
    not any child: a helper that ends normally (a compiler, a probe) must not look like a death."""
    import psutil

    found = []
    for proc in psutil.Process().children(recursive=True):
        if proc.pid in before:
            continue
        try:
            title = proc.name() + " " + " ".join(proc.cmdline())
        except psutil.Error:
            continue
        if any(t in title for t in ENGINE_TITLES):
            found.append(proc.pid)
    return found


def titles(pids: Sequence[int]) -> dict[int, str]:
    """Each pid's title and parent, taken when the watch starts: a loss names what died."""
    import psutil

    out = {}
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            out[pid] = f"{pid} {proc.name()}, child of {proc.ppid()}"
        except psutil.Error:
            out[pid] = str(pid)
    return out


def start_watched(what: str, start: Callable[[], T], run_id: str = "") -> tuple[T, EngineWatch]:
    """``start()`` (an engine, an LLM refiner) and the watch over the processes it started."""
    before = child_processes()
    engine = start()
    watch = EngineWatch(what, engine_processes(before), run_id=run_id)
    atexit.register(watch.stop)  # before the engine's own atexit shutdown (see the module docstring)
    if watch.processes and threading.current_thread() is threading.main_thread():
        _take_sigquit(watch)
    return engine, watch


def _take_sigquit(watch: EngineWatch) -> None:
    """SGLang's children send SIGQUIT to the engine's process when one of them fails, and SGLang's
    handler kills the whole process tree -- this actor included, before the watch could count the
    loss for its batch (so a batch that keeps killing the engine would be retried forever). The
    watch handles it instead: the loss is counted, the children killed, the actor exits (75). After
    `stop` (a shutdown) the engine's own handler runs as before."""
    previous = signal.getsignal(signal.SIGQUIT)

    def handler(signum, frame) -> None:
        if not watch.stopped:
            watch.lost("a child process sent SIGQUIT (it failed)")
        elif not watch.ending and callable(previous):  # a shutdown, not the death being handled
            previous(signum, frame)

    signal.signal(signal.SIGQUIT, handler)


def end_actor(code: int) -> None:
    """Kill this process's children, then exit with ``code``. The children first: a forked child
    (SGLang's tokenizer keeps a process pool) inherits the worker's socket to its raylet, and while
    it holds it Ray does not notice the actor died, so it would never start a new one."""
    import psutil

    for child in psutil.Process().children(recursive=True):
        try:
            child.kill()
        except psutil.Error:
            pass
    os._exit(code)


def dead(pids: Sequence[int]) -> list[int]:
    """The ones among ``pids`` that are gone or zombies."""
    import psutil

    gone = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                gone.append(pid)
        except psutil.NoSuchProcess:
            gone.append(pid)
    return gone


class EngineWatch:
    """Watches one engine for the actor that holds it; see the module docstring.

    ``processes``: the pids the engine needs alive; ``run_id``: the run whose batch losses are
    counted together (a rerun starts afresh; another run with the same images is not confused with
    this one); ``exit``: how the actor ends (tests pass their own); ``ledger``: the folder where
    batch losses are counted (default: the run's, under the node's temp dir)."""

    def __init__(
        self,
        what: str,
        processes: Sequence[int] = (),
        *,
        run_id: str = "",
        interval_s: float = 1.0,
        exit: Callable[[int], None] = end_actor,
        ledger: str | None = None,
    ):
        self.what, self.processes, self.interval_s, self._exit = what, list(processes), interval_s, exit
        scope = "".join(c for c in run_id if c.isalnum() or c in "-_") or f"pid-{os.getpid()}"
        self.ledger = ledger or os.path.join(tempfile.gettempdir(), "vsd-engine-lost", scope)
        self._batch: str | None = None
        self._failed: str | None = None  # the last batch whose engine call raised (until the next)
        self._stop = threading.Event()
        self._ending = threading.Lock()  # held by the one `lost` that ends the actor
        self._thread = None
        self.titles = titles(self.processes)
        if self.processes:
            self._thread = threading.Thread(target=self._poll, name="vsd-engine-watch", daemon=True)
            self._thread.start()

    def start_batch(self, keys: Sequence[str]) -> None:
        """Called before a batch goes to the engine; raises `EngineLost` for a batch that already
        took the engine down `MAX_LOSSES_PER_BATCH` times on this node."""
        self._batch = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:24]
        self._failed = None
        losses = self._losses(self._batch)
        if losses >= MAX_LOSSES_PER_BATCH:
            shown = ", ".join(repr(k) for k in list(keys)[:3]) + (" ..." if len(keys) > 3 else "")
            raise EngineLost(
                f"{self.what}: the batch of {shown} took the engine down {losses} times; "
                "failing it instead of restarting the engine again"
            )

    def end_batch(self) -> None:
        self._batch = None

    @contextmanager
    def batch(self, keys: Sequence[str]) -> Iterator[None]:
        """One batch's work with the engine: `start_batch` first, an exception goes to `failed`
        (a device error ends the actor there) and on to the caller, `end_batch` last."""
        self.start_batch(keys)
        try:
            yield
        except Exception as exc:
            self.failed(exc)
            raise
        finally:
            self.end_batch()

    def failed(self, exc: BaseException) -> None:
        """An exception from the engine: a device error ends the actor (never returns); any other
        is the caller's to handle. The batch is remembered: an engine found dead just after its
        call raised (the scheduler killed mid-batch) was taken down by that batch."""
        self._failed = self._batch
        if is_device_error(exc):
            self.lost(f"device error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")

    def lost(self, reason: str) -> None:
        """End the actor for one engine death, counted once: the poll, SGLang's SIGQUIT and the
        failed call can all see the same death at once (a second count would fail a batch that
        took the engine down once -- the tier's CI failure of stop 32); the later ones return."""
        if not self._ending.acquire(blocking=False):
            return
        if self._batch or self._failed:
            self._count(self._batch or self._failed)
        log.error(
            "%s lost (%s): exiting this actor so Ray starts a new engine and redoes its batch",
            self.what,
            reason,
        )
        print(
            f"vsd: {self.what} lost ({reason}); the actor exits and Ray replaces it",
            file=sys.stderr,
            flush=True,
        )
        self._stop.set()
        self._exit(EXIT_ENGINE_LOST)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @property
    def ending(self) -> bool:
        """A `lost` is ending the actor (a death seen again is the same one)."""
        return self._ending.locked()

    def stop(self) -> None:
        """Stand down before the engine is shut down: after this returns, nothing is reported."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5 * self.interval_s + 5)

    def _poll(self) -> None:
        while not self._stop.wait(self.interval_s):
            gone = dead(self.processes)
            if gone and not self._stop.is_set():  # stopped meanwhile: a shutdown, not a death
                self.lost(
                    f"its process{'es' if len(gone) > 1 else ''} {'; '.join(self.titles.get(p, str(p)) for p in gone)} died"
                )
                return

    def _losses(self, batch: str) -> int:
        try:
            with open(os.path.join(self.ledger, batch)) as f:
                return len(f.read())
        except OSError:
            return 0

    def _count(self, batch: str) -> None:
        try:
            os.makedirs(self.ledger, exist_ok=True)
            with open(os.path.join(self.ledger, batch), "a") as f:  # one byte per loss
                f.write("x")
        except OSError as exc:  # a full or read-only temp dir must not keep the actor alive
            log.warning("%s: could not count the engine loss: %s", self.what, exc)
