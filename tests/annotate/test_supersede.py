"""One run's commits never take out rows an earlier commit of the same run added."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

import vsd
from vsd.annotate.output import table


def _part(root, name: str, rows: list[tuple[str, str, str]]) -> table.Part:
    """A data file of (row_id, source_uri, run_id) rows, the other columns null."""
    part = table.Part("2026-11-26", name, len(rows))
    data = pa.Table.from_pylist(
        [
            {"row_id": r, "image_id": r.split("-p")[0], "status": "ok", "source_uri": u, "run_id": run}
            for r, u, run in rows
        ],
        schema=table.FILE_SCHEMA,
    )
    (root / "run_date=2026-11-26").mkdir(parents=True, exist_ok=True)
    pq.write_table(data, root / part.path)
    return part


def test_a_redo_committed_in_two_commits_keeps_both_new_rows(tmp_path):
    """A file under two given ids is redone; its two new rows (same row ids as the old ones) land
    in two commits, each replacing every old row of the file: the second must not take the first's."""
    old = _part(
        tmp_path, "part-old.parquet", [("a-p-1", "u", "r1"), ("b-p-1", "u", "r1"), ("c-p0", "v", "r1")]
    )
    table.commit_parts(str(tmp_path), [old], {"run_id": "r1"})
    for name, row in (("part-new-a.parquet", "a-p-1"), ("part-new-b.parquet", "b-p-1")):
        new = _part(tmp_path, name, [(row, "u", "r2")])
        table.commit_parts(str(tmp_path), [new], {"run_id": "r2"}, replace={"a-p-1", "b-p-1"})
    current = sorted((r["row_id"], r["run_id"]) for r in vsd.read(str(tmp_path)).to_pylist())
    assert current == [("a-p-1", "r2"), ("b-p-1", "r2"), ("c-p0", "r1")]


def test_a_changed_file_under_two_given_ids_committed_apart_keeps_both_new_rows(tmp_path):
    old = _part(tmp_path, "part-old.parquet", [("a-p-1", "u", "r1"), ("b-p-1", "u", "r1")])
    table.commit_parts(str(tmp_path), [old], {"run_id": "r1"})
    for name, row in (("part-new-a.parquet", "a2-p-1"), ("part-new-b.parquet", "b2-p-1")):
        new = _part(tmp_path, name, [(row, "u", "r2")])
        table.commit_parts(str(tmp_path), [new], {"run_id": "r2"}, fresh={"u": {row.split("-p")[0]}})
    current = sorted((r["row_id"], r["run_id"]) for r in vsd.read(str(tmp_path)).to_pylist())
    assert current == [("a2-p-1", "r2"), ("b2-p-1", "r2")]
