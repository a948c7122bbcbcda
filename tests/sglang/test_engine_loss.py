"""No spurious engine losses (issue 28): five engine sessions of the annotate stage beside a CPU hog
end without the watch calling the engine lost, and a real SIGKILL of the scheduler still counts as
one loss. Cause of the spurious losses: the watch kept polling while SGLang shut the engine down
(its atexit ``shutdown`` and the stage's close SIGKILL the engine's children), saw the scheduler as
a zombie and ended the actor (`vsd.annotate.engine_watch`).

Why sessions, not five ``vsd annotate`` runs: the loss happened when an engine ended, not in its
batches, so what must be repeated is an engine's start, batch and end -- five Ray pipelines would
add ~5 x 20 s of cluster and stage start-up on 2 cores for nothing more. Each session runs in its
own process (tests/sglang/stage_sessions.py), as each generate actor does: a real
``GenerateStageUDF`` with the real engine, ended by the stage's teardown or by the interpreter's
exit, as an actor's; every watch polls every 20 ms, so the window that a 1 s poll hit now and then
is hit if it exists."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.fixtures.infra import REPO

SESSIONS = 5


def session(i: int, *flags: str) -> tuple[subprocess.CompletedProcess, dict]:
    """One session's process: its exit, its stderr and its JSON report."""
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "tests/sglang/stage_sessions.py"),
            str(REPO / "jobs/configs/annotate-tiny-sglang-cpu.yaml"),
            "--session",
            str(i),
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    reports = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc, (reports[0] if reports else {})


def test_five_stage_sessions_beside_a_cpu_hog_lose_no_engine_and_a_kill_counts_once():
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        runs = [session(i, "--end", "del" if i % 2 else "atexit") for i in range(1, SESSIONS + 1)]
        killed_proc, killed = session(0, "--kill")
    finally:
        hog.kill()
        hog.wait()
    for proc, report in runs:
        lost = proc.stderr.count("sglang engine lost")
        assert proc.returncode == 0 and lost == 0, (report, proc.returncode, proc.stderr[-3000:])
        assert report["answers"] == 9, report
    assert [r["session"] for _, r in runs] == list(range(1, SESSIONS + 1))
    # a real death still counts, once
    assert killed_proc.returncode == 0, killed_proc.stderr[-3000:]
    assert killed["answers"] == 9 and killed["losses_after_kill"] == 1, killed
