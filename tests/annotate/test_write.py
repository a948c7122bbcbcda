"""Write: whole images per part, deterministic names, the progress entry first, counts, the card."""

from __future__ import annotations

import json
import os

import pyarrow.parquet as pq

from vsd.annotate.card import render_card
from vsd.annotate.index import Claim, IdLedger, Output, image_key, listing_key
from vsd.annotate.items import fail_item, new_item, new_pair, to_table
from vsd.annotate.output.table import FILE_SCHEMA
from vsd.annotate.run_meta import RunMeta
from vsd.annotate.stages.write import write_parts


def items():
    ok = new_item(
        "/in/a.jpg",
        image_id="a",
        pairs=[new_pair(i, "cup", "table", [0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.9, 0.9]) for i in range(2)],
        source_key="/in/a.jpg|3|7",
    )
    ok.update(width=10, height=8, shard="s1", shard_row=0, given_id=True)
    for p, rel in zip(ok["pairs"], ["on", "under"]):
        p.update(
            relation=rel, description=f"The cup is {rel} the table.", descriptions=["x"], consistent=True
        )
    ok["pairs"][0].update(
        refine_status="refined",
        flags=[
            "truncated:task3.0",
            "repaired:task3.0 (truncated)",
            "repaired:task3.1 (missing)",
            "refine:task2: kept: too long",
        ],
    )
    bad = fail_item(
        new_item("/in/b.jpg", image_id="b", source_key="/in/b.jpg|1|1"), "decode_error", "truncated\nfile"
    )
    bad.update(shard="s1", shard_row=1, given_id=False)
    return [ok, bad]


def meta(out):
    return RunMeta(
        output=str(out),
        run_date="2026-11-26",
        run_id="r1",
        model="tiny:llava",
        adapter_sha256=None,
        prompt_version="v",
    )


def test_part_holds_whole_images_under_a_content_name_after_its_progress_entry(tmp_path):
    summary = write_parts(to_table(items()), meta=meta(tmp_path))
    (name,) = summary.column("part").to_pylist()
    counts = json.loads(summary.column("counts")[0].as_py())
    assert counts["images"] == 2 and counts["rows"] == 3 and counts["ok"] == 2
    assert counts["error"] == {"decode_error": 1} and counts["relations"] == {"on": 1, "under": 1}
    assert json.loads(summary.column("shards")[0].as_py()) == {"s1": 2}
    table = pq.read_table(tmp_path / "run_date=2026-11-26" / name)
    assert table.schema.equals(FILE_SCHEMA, check_metadata=False)  # the stored form: boxes as plain lists
    assert table.column("row_id").to_pylist() == ["a-p0", "a-p1", "b-p-1"]
    assert table.column("error").to_pylist()[2] == "decode_error: truncated file"
    # A retried task writes the same name (no second copy); the progress entry names both images.
    assert write_parts(to_table(items()), meta=meta(tmp_path)).column("part").to_pylist() == [name]
    out = Output(str(tmp_path))
    assert list(out.data_parts()) == [f"run_date=2026-11-26/{name}"]
    [(_, entry_meta, entry)] = out.read_progress(out.progress()["r1"])
    assert entry_meta["vsd.part"] == name and entry.column("image_id").to_pylist() == ["a", "b"]
    assert entry.column("image_key").to_pylist() == [image_key("a", True), image_key("b", False)]


def test_an_entry_whose_part_never_arrived_is_dropped_and_its_images_redone(tmp_path):
    summary = write_parts(to_table(items()), meta=meta(tmp_path))
    name = summary.column("part")[0].as_py()
    (tmp_path / "run_date=2026-11-26" / name).unlink()  # the crash window: entry written, part not
    out = Output(str(tmp_path))
    ledger = IdLedger(str(tmp_path), "r2")
    assert ledger.claim(
        [Claim("s1#0", "s1", image_key("a", True), listing_key("/in/a.jpg|3|7"), False, "/in/a.jpg")]
    ) == ["new"]
    assert out.progress() == {}  # the orphan entry is gone


def test_an_earlier_runs_uncompacted_writes_are_done_and_this_runs_are_its_claims(tmp_path):
    write_parts(to_table(items()), meta=meta(tmp_path))
    later = IdLedger(str(tmp_path), "r2")  # a later run after r1 died before compacting
    assert later.claim(
        [
            Claim("x#5", "x", None, listing_key("/in/a.jpg|3|7"), False, "/in/a.jpg"),
            Claim("x#6", "x", image_key("b", False), None, False, "/in/b2.jpg"),
            Claim("x#7", "x", image_key("c", False), None, False, "/in/c.jpg"),
        ]
    ) == ["done", "done", "new"]
    same = IdLedger(str(tmp_path), "r1")  # r1's ledger restarted mid-run: its writes are its claims
    assert same.claim(
        [
            Claim("s1#0", "s1", image_key("a", True), None, False, "/in/a.jpg"),
            Claim("s9#0", "s9", image_key("a", True), None, False, "/in/copy.jpg"),
        ]
    ) == ["new", "duplicate"]
    assert same.commit("part-other.parquet", [image_key("a", True), image_key("z", False)]) == [False, True]


def test_claims_once_per_image_and_a_retried_claimant_stays_new(tmp_path):
    ledger = IdLedger(str(tmp_path / "out"), "r1")  # nothing written yet
    assert ledger.claim([Claim("s#0", "s", None, listing_key("k|1|1"), False, "a.jpg")]) == ["unknown"]
    h = image_key("h1", False)
    assert ledger.claim(
        [
            Claim("s#0", "s", h, None, False, "a.jpg"),
            Claim("s#1", "s", h, None, False, "copy-of-a.jpg"),
            Claim("s#0", "s", h, None, False, "a.jpg"),
        ]
    ) == ["new", "duplicate", "new"]
    assert ledger.claim([Claim("s#2", "s", image_key("z", False), None, True, "z.jpg")]) == ["done"]
    ledger.defer([("s#3", "s")])
    report = ledger.report()
    assert report["skipped_duplicate"] == 1 and "copy-of-a.jpg" in report["duplicates"][0]
    assert report["skipped_by_shard"] == {"s": {"duplicate": 1, "done": 1, "deferred": 1}}


def test_compaction_folds_entries_into_the_key_set_and_totals_idempotently(tmp_path):
    write_parts(to_table(items()), meta=meta(tmp_path))
    out = Output(str(tmp_path))
    assert out.compact() == {"r1": 1}
    assert out.progress() == {} and out.compact() == {}
    snap = out.ids().snapshot()
    assert snap.contains(
        [image_key("a", True), image_key("b", False), listing_key("/in/a.jpg|3|7"), image_key("a", False)]
    ) == [True, True, True, False]  # given and content ids apart
    totals = out.totals()
    assert totals["rows"] == 3 and totals["images"] == 2 and totals["error"] == {"decode_error": 1}
    card = render_card(totals, ["r1"], "tiny:llava")
    assert card.startswith("---\nconfigs:") and 'path: "run_date=*/part-*.parquet"' in card
    assert (
        "| on | 1 | 50.0% |" in card and "| `row_id` | `string` |" in card and "| decode_error | 1 |" in card
    )
    assert totals["flags"] == {
        "truncated:task3": 1,
        "repaired:task3": 1,
        "refine:task2": 1,
    }  # rows, not flags
    assert "| `refined` | 1 |" in card and "| `repaired:task3` | 1 |" in card


def test_a_crash_after_the_totals_does_not_count_a_run_twice(tmp_path):
    write_parts(to_table(items()), meta=meta(tmp_path))
    out = Output(str(tmp_path))
    entries = out.progress()["r1"]
    saved = {u: open(u, "rb").read() for u in entries}
    out.compact()
    for uri, data in saved.items():  # as if the deletes after the totals never happened
        os.makedirs(os.path.dirname(uri), exist_ok=True)
        open(uri, "wb").write(data)
    out.compact()
    assert out.totals()["rows"] == 3 and out.progress() == {}
