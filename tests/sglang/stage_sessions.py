"""One engine session of the annotate stage in its own process, as a generate actor has it, for
test_engine_loss (run as a script: the scheduler is a spawned process that re-imports ``__main__``,
so the work sits under its guard).

The session is what a generate actor does: ``GenerateStageUDF`` starts the real engine under its
watch (`start_watched`), answers one image (3 tasks x 3 pairs) inside ``watch.batch``, and ends --
with ``--end del`` as the stage's teardown does (``__del__``: watch stopped, engine closed), with
``--end atexit`` as an actor's process does, in the interpreter's atexit handlers (where SGLang's
own shutdown kills its children). With ``--kill`` the session SIGKILLs its scheduler after its
batch: a real death, which the watch must report exactly once (recorded, not exited). The watch
polls every 20 ms instead of every second, so a shutdown it misreads is caught, not missed. A watch
that calls an engine lost ends the process with exit 75 (``EXIT_ENGINE_LOST``). Prints one JSON line.

One engine per process, because that is what an actor holds: several engines started and shut
down one after another in one process share SGLang's process-wide state (its atexit shutdowns, its
SIGQUIT handler, the tree its shutdown kills), which no actor has.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import time


def image(seed: int) -> bytes:
    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
        buf, "JPEG"
    )
    return buf.getvalue()


def session(cfg, i: int, kill: bool = False):
    """One stage session; returns the UDF (still running) and its report."""
    from vsd.annotate.engines.base import ImageRequest
    from vsd.annotate.engines.prompting import task_prompts
    from vsd.annotate.stages.generate import GenerateStageUDF

    t0 = time.monotonic()
    udf = GenerateStageUDF(cfg.engine, cfg.tasks, run_id=f"sessions-{os.getpid()}")
    started = time.monotonic() - t0
    pairs = [("cup", "table"), ("dog", "sofa"), ("lamp", "bed")]
    req = ImageRequest(f"s{i}", image(i), [p for s, o in pairs for p in task_prompts(s, o)])
    with udf.watch.batch([req.key]):
        (result,) = udf.engine.generate([req])
    report = {"session": i, "start_s": round(started, 1), "answers": len(result.answers)}
    if kill:
        losses: list[int] = []
        udf.watch._exit = losses.append  # record the loss instead of ending this process
        scheduler = [p for p in udf.watch.processes if "scheduler" in _title(p)]
        os.kill(scheduler[0], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not losses and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # a second report would come within this
        report["losses_after_kill"] = len(losses)
    return udf, report


def _title(pid: int) -> str:
    import psutil

    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return ""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--session", type=int, default=0)
    parser.add_argument("--end", choices=["del", "atexit"], default="atexit")
    parser.add_argument("--kill", action="store_true")
    args = parser.parse_args()

    from vsd.annotate import engine_watch
    from vsd.annotate.config import load_config

    engine_watch.EngineWatch.__init__.__kwdefaults__["interval_s"] = 0.02
    cfg = load_config(args.config, [])
    udf, report = session(cfg, args.session, kill=args.kill)
    print(json.dumps(report), flush=True)
    if args.end == "del" or args.kill:
        del udf  # the stage's teardown: GenerateStageUDF.__del__ (after a kill: its scheduler dead)
    # else the engine ends in the atexit handlers, as an actor's does


if __name__ == "__main__":
    main()
