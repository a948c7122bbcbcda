"""`vsd.stop`: a SIGTERM stop is recognised however Ray's code hands it back (the end-to-end run
is tests/reliability/test_sigterm.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from tests.fixtures.infra import REPO
from vsd.stop import Stopped, stopped_by


def test_a_stop_wrapped_by_cython_or_exited_by_rays_own_handler_is_still_a_stop():
    import ray  # noqa: F401 - Ray's handler is only in play once Ray is imported

    try:
        try:
            raise Stopped()
        except Stopped as inner:  # what Ray's check_signals leaves: a SystemError caused by it
            raise SystemError("returned a result with an exception set") from inner
    except SystemError as exc:
        assert isinstance(stopped_by(exc), Stopped)
    assert isinstance(stopped_by(SystemExit(signal.SIGTERM)), Stopped)  # ray.init's sys.exit(15)
    assert stopped_by(SystemExit(0)) is None and stopped_by(ValueError("x")) is None


def test_sigterm_outside_ray_is_the_same_clean_stop(tmp_path):
    """`vsd corpus sync` blocked on a manifest that is a FIFO nobody writes -- stuck in C code, where
    no Python handler runs: SIGTERM still ends it with the line and 143 (after the grace period)."""
    manifest = tmp_path / "m.jsonl"
    os.mkfifo(manifest)
    corpus = tmp_path / "corpus"
    proc = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "vsd"), "corpus", "sync", "--from", str(manifest), "--to", str(corpus)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 60
        while not (corpus / "_corpus.json").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # now waiting in open() for a writer
        assert proc.poll() is None
        os.kill(proc.pid, signal.SIGTERM)
        err = proc.communicate(timeout=30)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # The main thread waits inside Arrow's open(), which retries on EINTR: the watcher ends it.
    [line] = err.strip().splitlines()
    assert proc.returncode == 143 and line.startswith("vsd: stopped by SIGTERM (the main thread did not"), err
