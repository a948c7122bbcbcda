"""Source planning (folder, manifest, VSD JSON) and the ledger's claim rules."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vsd import storage
from vsd.annotate.index import IdLedger
from vsd.annotate.source import detect_format, plan_source
from vsd.errors import VSDError


def test_folder_lists_every_visible_file_with_a_change_key(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.png").write_bytes(b"yy")
    (tmp_path / "notes.txt").write_bytes(b"not an image, still an input")
    (tmp_path / ".DS_Store").write_bytes(b"hidden")
    plan = plan_source(str(tmp_path))
    assert plan.kind == "folder"
    uris = [i["source_uri"] for i in plan.items]
    assert uris == sorted(str(tmp_path / n) for n in ("a.jpg", "notes.txt", "sub/b.png"))
    item = plan.items[0]
    assert item["image_id"] is None and item["source_key"].startswith(f"{tmp_path}/a.jpg|1|")
    assert [p["pair_index"] for p in item["pairs"]] == [-1]  # no pairs: the scene-level task
    only_png = plan_source(str(tmp_path), extensions=["png"])
    assert [i["source_uri"] for i in only_png.items] == [str(tmp_path / "sub" / "b.png")]


def test_empty_folder_is_an_empty_plan_and_a_missing_path_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    assert len(plan_source(str(tmp_path / "empty"))) == 0
    with pytest.raises(VSDError, match="not found"):
        plan_source(str(tmp_path / "nope"))


def test_manifest_resolves_relative_uris_parses_pairs_and_reports_duplicate_ids(tmp_path):
    rows = [
        {"image": "img/1.jpg", "image_id": "one", "pairs": [
            {"subject": "cup", "object": "table", "subject_box": [0.1, 0.1, 0.2, 0.2], "object_box": [0, 0.5, 1, 1]},
            {"subject": "dog", "object": "sofa", "subject_box": None, "object_box": [0, 0, 1, 1]}]},
        {"uri": "s3://bucket/2.jpg"},
        {"image": "img/3.jpg", "image_id": "one"},  # duplicate id: dropped, reported
        {"image": "s3://bucket/2.jpg"},  # duplicate URI without id: dropped, reported
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    plan = plan_source(str(manifest))
    assert plan.kind == "manifest" and len(plan) == 2
    first, second = plan.items
    assert first["source_uri"] == str(tmp_path / "img" / "1.jpg") and first["image_id"] == "one"
    assert [p["pair_index"] for p in first["pairs"]] == [0, 1]
    assert first["pairs"][0]["status"] == "ok"
    assert first["pairs"][1]["status"] == "error" and first["pairs"][1]["error"].startswith("bad_box:")
    assert second["image_id"] is None and second["pairs"][0]["pair_index"] == -1
    assert len(plan.duplicates) == 2 and "image_id one" in plan.duplicates[0] and "row 3" in plan.duplicates[0]

    table = pa.Table.from_pylist([{"image": "a.png", "image_id": "x"}, {"image": "b.png", "image_id": "x"}])
    pq.write_table(table, tmp_path / "m.parquet")
    plan = plan_source(str(tmp_path / "m.parquet"))
    assert len(plan) == 1 and len(plan.duplicates) == 1


def test_bad_manifest_line_names_file_and_line(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"image": "a.jpg"}\n{not json\n')
    with pytest.raises(VSDError, match=r"m\.jsonl: line 2: invalid JSON"):
        plan_source(str(manifest))
    manifest.write_text('{"pairs": []}\n')
    with pytest.raises(VSDError, match="row 1: no image URI"):
        plan_source(str(manifest))


def test_vsd_json_ids_match_instruction_record_ids(tmp_path):
    from vsd.data.synthetic import generate
    from vsd.data.vsd_json import read_vsd

    synth = generate(6, str(tmp_path / "synth"), seed=3, size=48)
    plan = plan_source(synth.vsd1, image_dir=synth.images)
    assert plan.kind == "vsd_json" and detect_format(synth.vsd1) == "vsd_json"
    row_ids = {f"{i['image_id']}-p{p['pair_index']}" for i in plan.items for p in i["pairs"]}
    records = read_vsd(synth.vsd1, None, synth.images).records
    assert row_ids == {r.record_id for r in records}
    assert all(storage.exists(i["source_uri"]) for i in plan.items)
    with pytest.raises(VSDError, match="image_dir"):
        plan_source(synth.vsd1)


def test_ledger_claims_once_per_id_and_skips_what_is_written(tmp_path):
    ledger = IdLedger(str(tmp_path / "out"))  # nothing written yet
    assert ledger.claim([(None, "k|1|1", "a.jpg")]) == ["unknown"]
    assert ledger.claim([("h1", None, "a.jpg"), ("h1", None, "copy-of-a.jpg"), ("h1", None, "a.jpg")]) == [
        "new", "duplicate", "new"]  # the same URI again (a retried task) stays new
    report = ledger.report()
    assert report["skipped_duplicate"] == 1 and "copy-of-a.jpg" in report["duplicates"][0]
