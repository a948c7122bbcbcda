"""`vsd annotate` with jobs/configs/annotate-tiny-sglang-cpu.yaml and the real engine: a folder with
broken files gives Parquet with every file exactly once, and a rerun adds nothing; the engine's
scheduler process killed mid-batch ends its actor, and the new actor redoes the batch."""

from __future__ import annotations

import os
import signal
import tempfile
from collections import Counter
from pathlib import Path

from tests.fixtures.annotate import build_corpus, hard_files, read_rows
from tests.fixtures.infra import REPO
from vsd import storage
from vsd.cli import main

# hard files whose outcome does not depend on pairs (a folder is annotated at scene level)
HARD = {
    "truncated.jpg",
    "zero.jpg",
    "notes.png",
    "page.jpg",
    "bomb.png",
    "cmyk.jpg",
    "gray16.png",
    "animated.gif",
}


def test_folder_with_broken_files_once_and_rerun_adds_nothing(ray_local, tmp_path, capsys):
    corpus, out = tmp_path / "photos", str(tmp_path / "out")
    corpus.mkdir()
    expected = {}
    for i, uri in enumerate(sorted(build_corpus(str(tmp_path / "src"), 5, seed=3))):
        (corpus / f"scene{i}.png").write_bytes(storage.read_bytes(uri))
        expected[f"scene{i}.png"] = "ok"
    for name, data, _, want in hard_files():
        if name in HARD:
            (corpus / name).write_bytes(data)
            expected[name] = want
    args = [
        "annotate",
        "--config",
        str(REPO / "jobs/configs/annotate-tiny-sglang-cpu.yaml"),
        "--input",
        str(corpus),
        "--output",
        out,
        "run_date=2026-11-29",
        "progress_bars=false",
    ]
    assert main(args) == 0
    n_ok = sum(v == "ok" for v in expected.values())
    assert (
        f"images: {len(expected)}  rows: {len(expected)}  ok: {n_ok}  error: {len(expected) - n_ok}"
        in capsys.readouterr().out
    )

    rows = read_rows(out)
    by_file = Counter(r["source_uri"].rsplit("/", 1)[-1] for r in rows)
    assert by_file == Counter(set(expected))  # every file exactly once
    for row in rows:
        want = expected[row["source_uri"].rsplit("/", 1)[-1]]
        assert row["status"] == want.split(":")[0], (row["source_uri"], row["error"])
        if want == "ok":  # scene level: the open-ended task, answered by the real engine
            assert (
                row["pair_index"] == -1
                and row["descriptions"] is not None
                and row["model"] == "tiny:llava-sglang"
            )
        else:
            assert row["error"].startswith(want.split(":")[1])

    assert main(args) == 0  # rerun: nothing new, nothing written twice
    printed = capsys.readouterr().out
    assert "nothing new" in printed and "images: 0  rows: 0  ok: 0  error: 0" in printed
    assert len(read_rows(out)) == len(expected)


class KillSchedulerOnce:
    """Engine factory: the real SGLang engine, whose scheduler process this actor SIGKILLs just before
    handing it its ``on_call``-th batch -- once per ``marker``. Without the engine watch that call
    would wait forever for a scheduler that is gone."""

    def __init__(self, marker: str, on_call: int = 2):
        self.marker, self.on_call = marker, on_call

    def __call__(self, cfg):
        from vsd.annotate.engines import make_engine

        return _SchedulerKilling(make_engine(cfg), self.marker, self.on_call)


class _SchedulerKilling:
    name = "sglang"

    def __init__(self, inner, marker: str, on_call: int):
        self.inner, self.marker, self.on_call, self.calls = inner, marker, on_call, 0

    def generate(self, batch):
        import psutil

        self.calls += 1
        if self.calls >= self.on_call and not os.path.exists(self.marker):
            # SGLang titles it "sglang::scheduler..." (the name is cut to 15 characters, the command line is not)
            (scheduler,) = [
                p
                for p in psutil.Process().children(recursive=True)
                if "sglang::sched" in p.name() + " " + " ".join(p.cmdline())
            ]
            Path(self.marker).write_text(f"{scheduler.pid} {os.getpid()} {len(batch)}\n")
            os.kill(scheduler.pid, signal.SIGKILL)
        return self.inner.generate(batch)

    def close(self) -> None:
        self.inner.close()


def test_scheduler_killed_mid_run_ends_the_actor_and_the_batch_is_redone(ray_local, tmp_path):
    import psutil

    from vsd.annotate.config import load_config
    from vsd.annotate.pipeline import run_annotation

    expected = build_corpus(str(tmp_path / "corpus"), 6, seed=5)  # one pair each, boxes given
    out, marker = str(tmp_path / "out"), str(tmp_path / "killed")
    cfg = load_config(
        str(REPO / "jobs/configs/annotate-tiny-sglang-cpu.yaml"),
        [
            f"input.uri={tmp_path / 'corpus' / 'manifest.jsonl'}",
            f"output={out}",
            "engine.batch_size=2",
            "run_date=2026-11-29",
            "progress_bars=false",
        ],
    )
    result = run_annotation(cfg, engine_factory=KillSchedulerOnce(marker))
    scheduler, actor, batch = map(int, Path(marker).read_text().split())
    assert batch > 0 and not psutil.pid_exists(actor), "the actor whose engine died is gone"
    assert result.counts["unaccounted"] == 0 and result.counts.get("error", {}) == {}, result.counts
    # the real death counted once, for its batch alone (the ledger: one byte per loss, per batch)
    ledger = (
        Path(tempfile.gettempdir())
        / "vsd-engine-lost"
        / "".join(c for c in result.run_id if c.isalnum() or c in "-_")
    )
    assert [p.read_text() for p in ledger.iterdir()] == ["x"]
    rows = read_rows(out)
    assert sorted(r["source_uri"] for r in rows) == sorted(expected)  # each image once, none lost
    assert all(r["status"] == "ok" and r["relation"] for r in rows), [
        (r["source_uri"], r["error"]) for r in rows
    ]
