"""`vsd maintain`: small files compacted with the same current rows, deleted rows gone from storage
after the kept days, killed runs finished first, never beside a running writer."""

from __future__ import annotations

import json
import os
import time

import pyarrow.parquet as pq
import pytest

import vsd
from tests.fixtures.annotate import build_corpus, make_color_engine
from vsd import storage
from vsd.annotate.index import Output
from vsd.annotate.output import table
from vsd.annotate.output.delete import delete_sources
from vsd.annotate.output.lease import Lease, OutputBusy
from vsd.annotate.output.maintain import RECORD, due, maintain
from vsd.annotate.pipeline import run_annotation
from vsd.cli import main
from vsd.errors import VSDError


def _files(root: str, under: str = "") -> dict[str, int]:
    """{path relative to root: size} of every file below ``root/under``."""
    found = {}
    for folder, _, names in os.walk(os.path.join(root, under)):
        for name in names:
            path = os.path.join(folder, name)
            found[os.path.relpath(path, root)] = os.path.getsize(path)
    return found


def _uris_on_disk(root: str) -> set[str]:
    """Every source URI any data file on storage still holds (current or not)."""
    uris = set()
    for rel in _files(root):
        if rel.startswith("run_date=") and rel.endswith(".parquet"):
            uris.update(pq.read_table(os.path.join(root, rel), columns=["source_uri"]).column(0).to_pylist())
    return uris


def _current(root: str) -> list[dict]:
    return sorted(vsd.read(root).to_pylist(), key=lambda r: r["row_id"])


def test_two_nights_and_a_takedown_compact_to_the_same_rows_and_the_taken_rows_leave_storage(
    ray_local, tmp_path, annotate_config, capsys
):
    corpus, out = str(tmp_path / "corpus"), str(tmp_path / "out")
    first = build_corpus(corpus, 8, seed=41)
    run_annotation(
        annotate_config(f"{corpus}/manifest.jsonl", out, "stages.write.resources.batch_size=2"),
        engine_factory=make_color_engine,
    )
    build_corpus(corpus, 6, seed=42, start=8)
    run_annotation(
        annotate_config(
            f"{corpus}/manifest.jsonl", out, "stages.write.resources.batch_size=2", "run_date=2026-12-05"
        ),
        engine_factory=make_color_engine,
    )
    gone = sorted(first)[0]
    delete_sources(out, [gone], "takedown")
    before, files_before = _current(out), len(table.active_paths(table.open_table(out)))
    own_before = _files(out, "__vsd")
    assert gone in _uris_on_disk(out) and files_before >= 7  # the taken row still on storage

    assert main(["maintain", out, "--keep-days", "0"]) == 0
    printed = capsys.readouterr().out
    assert f"{files_before} -> 2 data file(s)" in printed, printed  # one per night

    assert _current(out) == before  # same rows, every column
    assert gone not in _uris_on_disk(out)  # the takedown is off storage
    assert len(table.active_paths(table.open_table(out))) == 2
    own_after = _files(out, "__vsd")
    assert {k for k in own_before if not k.startswith("__vsd/lease/")} <= set(own_after)  # ours kept
    assert os.path.exists(os.path.join(out, "_README.md"))
    with pytest.raises(VSDError, match="as_of.*older than this output's kept history"):
        vsd.read(out, as_of="2026-11-26")  # that night's files and commits are gone, said so
    log = sorted(f for f in os.listdir(os.path.join(out, "_delta_log")) if f.endswith(".json"))
    checkpoint = json.loads(open(os.path.join(out, "_delta_log", "_last_checkpoint")).read())["version"]
    assert int(log[0][:-5]) == checkpoint  # the log expired up to the maintenance's checkpoint

    again = run_annotation(  # a later night goes on as before: nothing new, nothing twice
        annotate_config(f"{corpus}/manifest.jsonl", out, "run_date=2026-12-06"),
        engine_factory=make_color_engine,
    )
    assert again.counts["images"] == 0 and _current(out) == before


def test_kept_days_keep_earlier_nights_readable(tmp_path):
    """With the default kept days nothing recent is vacuumed: a superseded row is still there as of
    the version before, while the current rows sit in one compacted file."""
    from tests.annotate.test_supersede import _part

    root = tmp_path / "out"
    old = _part(root, "part-a.parquet", [("a-p0", "u1", "r1"), ("b-p0", "u2", "r1")])
    table.commit_parts(str(root), [old], {"run_id": "r1"})
    new = _part(root, "part-b.parquet", [("c-p0", "u3", "r2")])
    table.commit_parts(str(root), [new], {"run_id": "r2"}, fresh={"u1": {"x"}})  # u1 changed: superseded
    first_version = 1
    done = maintain(str(root))
    assert done.vacuumed == 0 and done.files_after == 1
    assert sorted(r["row_id"] for r in vsd.read(str(root)).to_pylist()) == ["b-p0", "c-p0"]
    assert sorted(r["row_id"] for r in vsd.read(str(root), as_of=first_version).to_pylist()) == [
        "a-p0",
        "b-p0",
    ]
    assert Output(str(root)).progress() == {}


def test_a_table_made_before_the_log_policy_gets_it_and_its_old_commits_expire(tmp_path):
    """Tables from before kept their log ten years with Delta's own cleanup on: maintenance sets
    the policy once (`table.LOG_PROPERTIES`) and expires what --keep-days no longer reaches."""
    from deltalake import DeltaTable

    from tests.annotate.test_supersede import _part

    root = tmp_path / "out"
    DeltaTable.create(
        table.table_uri(str(root)),
        schema=table.TABLE_SCHEMA,
        partition_by=[table.PARTITION],
        configuration={"delta.logRetentionDuration": "interval 3650 days"},
    )
    for i in range(3):
        part = _part(root, f"part-{i}.parquet", [(f"r{i}-p0", f"u{i}", f"r{i}")])
        table.commit_parts(str(root), [part], {"run_id": f"r{i}"})
    assert maintain(str(root), keep_days=0).vacuumed == 3  # the compacted-away files
    assert table.open_table(str(root)).metadata().configuration == table.LOG_PROPERTIES
    kept = sorted(int(f[:-5]) for f in os.listdir(root / "_delta_log") if f.endswith(".json"))
    assert kept[0] > 0 and sorted(r["row_id"] for r in vsd.read(str(root)).to_pylist()) == [
        "r0-p0",
        "r1-p0",
        "r2-p0",
    ]
    with pytest.raises(VSDError, match="older than this output's kept history"):
        vsd.read(str(root), as_of=1)
    assert len(vsd.read(str(root), as_of=kept[0]).to_pylist()) == 3


def test_maintenance_waits_for_no_one_a_running_writer_refuses_it(tmp_path):
    root = tmp_path / "out"
    from tests.annotate.test_supersede import _part

    table.commit_parts(str(root), [_part(root, "part-a.parquet", [("a-p0", "u1", "r1")])], {"run_id": "r1"})
    with Lease(Output(str(root)).vsd, "night-1"):
        with pytest.raises(OutputBusy, match="night-1"):
            maintain(str(root))
    with pytest.raises(VSDError, match="--keep-days"):
        maintain(str(root), keep_days=-1)
    with pytest.raises(VSDError, match="not an annotation output"):
        maintain(str(tmp_path / "nothing"))


def test_on_s3_a_taken_down_row_is_vacuumed_and_the_current_rows_stay(s3_bucket, tmp_path):
    """The same on S3 (moto on 127.0.0.1): compaction and vacuum through delta-rs's object store."""
    from tests.annotate.test_supersede import _part
    from vsd import storage

    root = f"{s3_bucket}/out"
    part = _part(tmp_path / "staging", "part-a.parquet", [("a-p0", "u1", "r1"), ("b-p0", "u2", "r1")])
    storage.write_bytes(storage.join(root, part.path), (tmp_path / "staging" / part.path).read_bytes())
    table.commit_parts(root, [part], {"run_id": "r1"})
    delete_sources(root, ["u1"], "takedown")
    assert _s3_uris(root) == {"u1", "u2"}  # the old file still holds the taken row
    done = maintain(root, keep_days=0)
    assert done.vacuumed == 1 and _s3_uris(root) == {"u2"}
    assert [r["row_id"] for r in vsd.read(root).to_pylist()] == ["b-p0"]


def _s3_uris(root: str) -> set[str]:
    """Every source URI the data files under an S3 root still hold."""
    from vsd import storage

    fs, _ = storage.resolve(root)
    uris = set()
    for uri in storage.list_files(root):
        if "/run_date=" in uri and uri.endswith(".parquet"):
            data = pq.read_table(storage.resolve(uri)[1], columns=["source_uri"], filesystem=fs)
            uris.update(data.column(0).to_pylist())
    return uris


def test_a_run_maintains_the_table_when_the_last_maintenance_is_every_days_old(
    ray_local, tmp_path, annotate_config
):
    corpus, out = str(tmp_path / "corpus"), str(tmp_path / "out")
    build_corpus(corpus, 6, seed=43)
    first = run_annotation(
        annotate_config(f"{corpus}/manifest.jsonl", out, "stages.write.resources.batch_size=2"),
        engine_factory=make_color_engine,
    )
    assert first.manifest["table"]["maintained"] is None  # the table is minutes old: not due
    assert not due(Output(out), 7) and due(Output(out), 7, now=time.time() + 7 * 86400)
    assert not due(Output(out), 0, now=time.time() + 999 * 86400)  # 0: never automatically
    storage.write_text(Output(out).path(RECORD), json.dumps({"at": time.time() - 8 * 86400}))
    build_corpus(corpus, 4, seed=44, start=6)
    second = run_annotation(
        annotate_config(
            f"{corpus}/manifest.jsonl", out, "stages.write.resources.batch_size=2", "run_date=2026-12-05"
        ),
        engine_factory=make_color_engine,
    )
    done = second.manifest["table"]["maintained"]
    assert done["files_before"] == 5 and done["files_after"] == 2 and done["vacuumed"] == 0, done
    assert len(vsd.read(out)) == 10 and len(table.active_paths(table.open_table(out))) == 2
    assert vsd.read(out, as_of="2026-11-26").num_rows == 6  # no vacuum by default: every night readable
    assert not due(Output(out), 7)  # maintained just now
