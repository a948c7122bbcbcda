"""Write: whole images per part, deterministic names, the index, counts, the dataset card."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from vsd.annotate.card import render_card
from vsd.annotate.index import IdLedger, load_done, part_uris
from vsd.annotate.items import fail_item, new_item, new_pair, to_table
from vsd.annotate.stages.write import RunMeta, scan_counts, write_parts
from vsd.schema import ANNOTATION_SCHEMA


def items():
    ok = new_item("/in/a.jpg", image_id="a", pairs=[new_pair(i, "cup", "table", [0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.9, 0.9])
                                                     for i in range(2)], source_key="/in/a.jpg|3|7")
    ok.update(width=10, height=8)
    for p, rel in zip(ok["pairs"], ["on", "under"]):
        p.update(relation=rel, description=f"The cup is {rel} the table.", descriptions=["x"], consistent=True)
    bad = fail_item(new_item("/in/b.jpg", image_id="b"), "decode_error", "truncated\nfile")
    return [ok, bad]


def meta(out):
    return RunMeta(output=str(out), run_date="2026-11-26", run_id="r1", model="tiny:llava", adapter_sha256=None,
                   prompt_version="v")


def test_part_holds_whole_images_under_a_content_name_and_is_indexed(tmp_path):
    summary = write_parts(to_table(items()), meta=meta(tmp_path))
    (name,) = summary.column("part").to_pylist()
    counts = json.loads(summary.column("counts")[0].as_py())
    assert counts["images"] == 2 and counts["rows"] == 3 and counts["ok"] == 2
    assert counts["error"] == {"decode_error": 1} and counts["relations"] == {"on": 1, "under": 1}
    table = pq.read_table(tmp_path / "run_date=2026-11-26" / name)
    assert table.schema.equals(ANNOTATION_SCHEMA, check_metadata=False)
    assert table.column("row_id").to_pylist() == ["a-p0", "a-p1", "b-p-1"]
    assert table.column("error").to_pylist()[2] == "decode_error: truncated file"
    # A retried task writes the same name (no second copy); the index knows both images.
    assert write_parts(to_table(items()), meta=meta(tmp_path)).column("part").to_pylist() == [name]
    ids, keys, n_parts = load_done(str(tmp_path))
    assert ids == {"a", "b"} and keys == {"/in/a.jpg|3|7": "a"} and n_parts == 1


def test_a_part_without_its_index_entry_still_counts_as_done(tmp_path):
    write_parts(to_table(items()), meta=meta(tmp_path))
    data, index = part_uris(str(tmp_path))
    for uri in index.values():  # the crash window: part written, index entry not yet
        (tmp_path / uri[len(str(tmp_path)) + 1:]).unlink()
    ledger = IdLedger(str(tmp_path))
    assert ledger.claim([("a", None, "/in/a.jpg"), ("c", None, "/in/c.jpg")]) == ["done", "new"]
    assert ledger.claim([(None, "/in/a.jpg|3|7", "/in/a.jpg")]) == ["unknown"]  # must re-hash, then "done"


def test_scan_counts_and_card(tmp_path):
    write_parts(to_table(items()), meta=meta(tmp_path))
    data, _ = part_uris(str(tmp_path))
    counts = scan_counts(list(data.values()))
    assert counts["rows"] == 3 and counts["error"]["decode_error"] == 1
    card = render_card(counts, ["2026-11-26"], "tiny:llava")
    assert card.startswith("---\nconfigs:") and 'path: "run_date=*/part-*.parquet"' in card
    assert "| on | 1 | 50.0% |" in card and "| `row_id` | `string` |" in card and "| decode_error | 1 |" in card
