"""Records that pile up one a night stay a bounded number of objects (loose, then packed)."""

from __future__ import annotations

import json

import pytest

from vsd import storage
from vsd.annotate.records import PACK, Records


@pytest.fixture(params=["local", "s3"])
def folder(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "runs")
    return f"{request.getfixturevalue('s3_bucket')}/out/__vsd/runs"


def test_a_year_of_records_is_a_pack_and_a_few_loose_ones_and_reads_the_same(folder):
    records = Records(folder, max_loose=8)
    for night in range(365):
        records.put(f"2026-{night:03d}", {"night": night})
        records.pack()
        assert len(storage.list_files(folder, recursive=False)) <= 8 + 1
    assert records.names() == [f"2026-{n:03d}" for n in range(365)]
    assert records.get("2026-000") == {"night": 0} and records.get("2026-364") == {"night": 364}
    assert records.has("2026-100") and not records.has("2027-000") and records.get("2027-000") is None
    assert [r["night"] for r in records.items().values()] == list(range(365))


def test_a_crash_between_pack_and_deletes_leaves_each_record_once_and_loose_wins(folder):
    records = Records(folder, max_loose=2)
    for n in range(3):
        records.put(f"r{n}", {"v": n})
    records.pack()
    records.put("r1", {"v": "rewritten"})  # a record written again after its pack (loose wins)
    storage.write_text(storage.join(folder, "r0.json"), json.dumps({"v": 0}))  # the crash: packed and loose
    assert records.items() == {"r0": {"v": 0}, "r1": {"v": "rewritten"}, "r2": {"v": 2}}
    assert records.get("r1") == {"v": "rewritten"} and storage.exists(storage.join(folder, PACK))
