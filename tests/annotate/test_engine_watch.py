"""The engine watch: an engine that dies inside a live actor ends the actor (vsd.annotate.engine_watch)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from vsd.annotate.engine_watch import (
    EXIT_ENGINE_LOST,
    MAX_LOSSES_PER_BATCH,
    EngineLost,
    EngineWatch,
    dead,
    is_device_error,
)


class Exits:
    """Stands in for ``os._exit``: records the code instead of ending the test process."""

    def __init__(self):
        self.codes: list[int] = []

    def __call__(self, code: int) -> None:
        self.codes.append(code)


def test_device_errors_are_told_from_other_failures():
    assert is_device_error(RuntimeError("CUDA error: an illegal memory access was encountered"))
    assert is_device_error(RuntimeError("CUDA error: device-side assert triggered"))
    assert is_device_error(RuntimeError("CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasGemmEx`"))
    assert not is_device_error(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not is_device_error(ValueError("prompt too long"))


def test_a_dead_engine_process_ends_the_actor_and_counts_the_batch(tmp_path):
    child = subprocess.Popen(["sleep", "60"])
    exits = Exits()
    watch = EngineWatch("test engine", [child.pid], interval_s=0.1, exit=exits, ledger=str(tmp_path))
    try:
        watch.start_batch(["img-1#0", "img-2#0"])
        time.sleep(0.5)
        assert exits.codes == []  # alive: nothing happens
        child.kill()  # reaped below only after the watch saw it: a zombie counts as dead too
        deadline = time.monotonic() + 10
        while not exits.codes and time.monotonic() < deadline:
            time.sleep(0.05)
        assert exits.codes == [EXIT_ENGINE_LOST]
        assert dead([child.pid]) == [child.pid]
        assert len(list(tmp_path.iterdir())) == 1  # this batch's loss, counted on the node
    finally:
        watch.stop()
        child.kill()
        child.wait()


def test_a_device_error_ends_the_actor_other_errors_do_not(tmp_path):
    exits = Exits()
    watch = EngineWatch("test engine", exit=exits, ledger=str(tmp_path))
    watch.failed(ValueError("a request the engine refused"))
    assert exits.codes == []
    watch.start_batch(["a#0"])
    watch.failed(RuntimeError("CUDA error: an illegal memory access was encountered"))
    assert exits.codes == [EXIT_ENGINE_LOST]


def test_a_batch_that_keeps_killing_the_engine_fails_loudly_instead_of_forever(tmp_path):
    exits = Exits()
    keys = ["poison#0", "neighbour#0"]
    for _ in range(MAX_LOSSES_PER_BATCH):  # each time a new actor (same node) gets the same batch
        watch = EngineWatch("test engine", exit=exits, ledger=str(tmp_path))
        watch.start_batch(keys)
        watch.failed(RuntimeError("CUDA error: device-side assert triggered"))
    assert exits.codes == [EXIT_ENGINE_LOST] * MAX_LOSSES_PER_BATCH
    with pytest.raises(EngineLost, match="'poison#0', 'neighbour#0'.*took the engine down 2 times"):
        EngineWatch("test engine", exit=exits, ledger=str(tmp_path)).start_batch(keys)
    EngineWatch("test engine", exit=exits, ledger=str(tmp_path)).start_batch(["other#0"])  # others go on


def test_ending_the_actor_takes_its_children_along(tmp_path):
    """A forked child holding the parent's sockets (as SGLang's process pool does) would keep Ray
    from seeing the actor die: `end_actor` kills the children, then exits with the code."""
    import psutil

    pid_file = tmp_path / "child"
    script = (
        f"import os, time\nfrom vsd.annotate.engine_watch import end_actor\npid = os.fork()\n"
        f"if pid == 0:\n    time.sleep(60)\n    os._exit(0)\nopen({str(pid_file)!r}, 'w').write(str(pid))\n"
        f"end_actor({EXIT_ENGINE_LOST})\n"
    )
    done = subprocess.run([sys.executable, "-c", script], timeout=60)
    assert done.returncode == EXIT_ENGINE_LOST
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while (
        psutil.pid_exists(child)
        and psutil.Process(child).status() != psutil.STATUS_ZOMBIE
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE


def test_losses_are_counted_per_run():
    """Ray numbers jobs alike on every cluster (01000000): counting per job mixed up earlier runs
    of the same images with this one; counting per run does not."""
    a, b = (
        EngineWatch("test engine", run_id="2026-11-29T20:10:00-ab12"),
        EngineWatch("test engine", run_id="other"),
    )
    assert a.ledger != b.ledger and a.ledger.endswith("/2026-11-29T201000-ab12")


def test_only_the_engines_own_processes_are_watched():
    """SGLang titles its processes sglang::...; a helper child that ends normally is not an engine."""
    from vsd.annotate.engine_watch import child_processes, engine_processes

    before = child_processes()
    helper = subprocess.Popen(["sleep", "30"])
    scheduler = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)", "sglang::scheduler_TP0"]
    )
    try:
        assert engine_processes(before) == [scheduler.pid]
        assert engine_processes(before + [scheduler.pid]) == []
    finally:
        for proc in (helper, scheduler):
            proc.kill()
            proc.wait()


# An "engine" as sglang.Engine starts one: a titled child process, and an atexit handler that kills it
# when the interpreter exits (SGLang's Engine.shutdown: kill_process_tree, then waits for it).
ENGINE_EXITING_AT_EXIT = """
import atexit, subprocess, sys, time
from vsd.annotate import engine_watch
engine_watch.EngineWatch.__init__.__kwdefaults__["interval_s"] = 0.005
engine_watch.ENGINE_TITLES = ("sleep 61",)

def start():
    child = subprocess.Popen(["sleep", "61"])
    def shutdown():
        child.kill()
        time.sleep(0.5)  # the child is a zombie until reaped: what a polling watch saw
        child.wait()
    atexit.register(shutdown)
    return child

engine, watch = engine_watch.start_watched("test engine", start)
assert watch.processes == [engine.pid]
time.sleep(0.05)
print("ran", flush=True)
"""


def test_an_engine_shut_down_at_interpreter_exit_is_not_a_loss():
    """Issue 28: the watch stands down before the engine's own atexit shutdown kills its children."""
    proc = subprocess.run(
        [sys.executable, "-c", ENGINE_EXITING_AT_EXIT], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and "lost" not in proc.stderr, (proc.returncode, proc.stderr)
    assert proc.stdout == "ran\n"


def test_after_stop_a_dying_engine_is_not_reported(tmp_path):
    """`stop` waits for the poll thread: the close that follows it cannot be caught mid-poll."""
    exits = Exits()
    for _ in range(20):
        child = subprocess.Popen(["sleep", "60"])
        watch = EngineWatch("test engine", [child.pid], interval_s=0.001, exit=exits, ledger=str(tmp_path))
        time.sleep(0.01)
        watch.stop()
        child.kill()  # the close: a zombie until reaped
        time.sleep(0.01)
        child.wait()
    assert exits.codes == []


def test_an_engine_found_dead_just_after_its_batch_raised_counts_for_that_batch(tmp_path):
    """The scheduler killed mid-batch: the engine call raises first, the watch sees the death
    after; the loss is still that batch's (two such and it is failed, not retried forever)."""
    exits: list[int] = []
    watch = EngineWatch("sglang engine", [], exit=exits.append, ledger=str(tmp_path))
    with pytest.raises(RuntimeError):
        with watch.batch(["img-1", "img-2"]):
            raise RuntimeError("the scheduler's socket closed")
    watch.lost("its process 123 died")
    assert exits == [EXIT_ENGINE_LOST] and [p.read_text() for p in tmp_path.iterdir()] == ["x"]
    watch = EngineWatch("sglang engine", [], exit=exits.append, ledger=str(tmp_path))  # a new actor
    watch.start_batch(["img-3"])  # a batch that ended cleanly
    watch.end_batch()
    watch.lost("its process 456 died")  # between batches, no batch failed: counted for none
    assert exits == [EXIT_ENGINE_LOST] * 2 and [p.read_text() for p in tmp_path.iterdir()] == ["x"]


def test_one_death_seen_by_the_poll_and_sigquit_at_once_is_counted_once(tmp_path):
    """CI, stop 32: the scheduler killed, the poll thread and SGLang's SIGQUIT (on the main thread)
    both reported it; two counts failed a batch that had taken the engine down once."""
    exits: list[int] = []
    watch = EngineWatch("sglang engine", [], exit=exits.append, ledger=str(tmp_path))
    watch.start_batch(["img-1", "img-2"])
    go = threading.Barrier(8)

    def report(i: int) -> None:
        go.wait()
        watch.lost(f"seen by reporter {i}")

    threads = [threading.Thread(target=report, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert exits == [EXIT_ENGINE_LOST] and [p.read_text() for p in tmp_path.iterdir()] == ["x"]
    new = EngineWatch("sglang engine", [], exit=exits.append, ledger=str(tmp_path))  # the new actor
    new.start_batch(["img-1", "img-2"])  # one loss so far: the batch is redone, not failed
