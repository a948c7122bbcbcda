"""No spurious engine losses (issue 28): five engine sessions of the annotate stage beside a CPU hog
end without the watch calling the engine lost. That a real SIGKILL of the scheduler still counts,
once, is test_annotate's killed-scheduler run (its batch's loss ledger holds exactly one loss);
``stage_sessions.py --kill`` checks it here too, at the price of one more engine start. Cause of the spurious losses: the watch kept polling while SGLang shut the engine down
(its atexit ``shutdown`` and the stage's close SIGKILL the engine's children), saw the scheduler as
a zombie and ended the actor (`vsd.annotate.engine_watch`).

Why sessions, not five ``vsd annotate`` runs: the loss happened when an engine ended, not in its
batches, so what must be repeated is an engine's start, batch and end -- five Ray pipelines would
add ~5 x 20 s of cluster and stage start-up on 2 cores for nothing more. The sessions run in one
process (tests/sglang/stage_sessions.py), each a real ``GenerateStageUDF`` with the real engine,
four ended by the stage's teardown and the last by the interpreter's exit, as an actor's; every
watch polls every 20 ms, so the window that a 1 s poll hit now and then is hit if it exists."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.fixtures.infra import REPO

SESSIONS = 5


def test_five_stage_sessions_beside_a_cpu_hog_lose_no_engine():
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        proc = subprocess.run(
            [
                sys.executable,
                str(REPO / "tests/sglang/stage_sessions.py"),
                str(REPO / "jobs/configs/annotate-tiny-sglang-cpu.yaml"),
                "--sessions",
                str(SESSIONS),
            ],
            capture_output=True,
            text=True,
            timeout=1800,  # five engine starts: ~2 min on 2 quiet cores, far more on a loaded machine
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    finally:
        hog.kill()
        hog.wait()
    reports = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    spurious = proc.stderr.count("sglang engine lost")
    # on failure: the sessions done, and SGLang's own lines (its crash reports, sigquit) without warnings
    said = [line for line in proc.stderr.splitlines() if "arn" not in line and line.strip()]
    assert proc.returncode == 0 and spurious == 0, (proc.returncode, reports, said[-40:])
    assert [r["session"] for r in reports] == list(range(1, SESSIONS + 1))
    assert all(r["answers"] == 9 for r in reports), reports
