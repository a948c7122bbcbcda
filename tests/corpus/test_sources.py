"""What a corpus is made from: folder listings, manifests (relative URIs, pairs, bad rows), VSD JSON."""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vsd import storage
from vsd.corpus.sources import (
    detect_format,
    list_folder,
    open_source,
    read_manifest,
    read_vsd_source,
    resolve_uri,
)
from vsd.errors import VSDError


def rows_of(tables) -> list[dict]:
    return [r for t in tables for r in t.to_pylist()]


def test_folder_lists_every_visible_file_with_its_version(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.png").write_bytes(b"yy")
    (tmp_path / "notes.txt").write_bytes(b"not an image, still an input")
    (tmp_path / ".DS_Store").write_bytes(b"hidden")
    source = open_source(str(tmp_path))
    assert source.kind == "folder" and source.roots == [str(tmp_path)]
    rows = rows_of(list_folder(str(tmp_path)))
    assert [r["uri"] for r in rows] == sorted(str(tmp_path / n) for n in ("a.jpg", "notes.txt", "sub/b.png"))
    assert (
        rows[0]["size"] == 1
        and rows[0]["version"]
        and rows[0]["image_id"] is None
        and rows[0]["pairs"] is None
    )
    assert [r["uri"] for r in rows_of(list_folder(str(tmp_path), ["png"]))] == [
        str(tmp_path / "sub" / "b.png")
    ]


def test_a_missing_input_is_a_clear_error_and_an_empty_folder_lists_nothing(tmp_path):
    (tmp_path / "empty").mkdir()
    assert rows_of(list_folder(str(tmp_path / "empty"))) == []
    with pytest.raises(VSDError, match="not found"):
        open_source(str(tmp_path / "nope"))


def test_manifest_resolves_relative_uris_and_keeps_bad_rows_for_their_error_row(tmp_path):
    rows = [
        {
            "image": "img/1.jpg",
            "image_id": "one",
            "size": 10,
            "etag": "e1",
            "pairs": [
                {
                    "subject": "cup",
                    "object": "table",
                    "subject_box": [0.1, 0.1, 0.2, 0.2],
                    "object_box": [0, 0.5, 1, 1],
                },
                {"subject": "dog", "object": "sofa", "subject_box": "wide", "object_box": [0, 0, 1, 1]},
            ],
        },
        {"uri": "s3://bucket/2.jpg"},
        {"image": "../outside/x.png"},  # resolved lexically: the read stage refuses it
        {
            "bucket": "inv",
            "key": "/a/b.jpg",
            "size": "7",
            "last_modified": "2026-01-01",
        },  # S3 Inventory style; the key exactly as given ("/a/b.jpg" is not "a/b.jpg" on S3)
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    source = open_source(str(manifest))
    assert source.kind == "manifest" and source.roots == [str(tmp_path)]
    got = rows_of(read_manifest(str(manifest), source.roots[0]))
    assert [r["uri"] for r in got] == [
        str(tmp_path / "img/1.jpg"),
        "s3://bucket/2.jpg",
        str(tmp_path.parent / "outside/x.png"),
        "s3://inv//a/b.jpg",
    ]
    first = got[0]
    assert first["image_id"] == "one" and first["size"] == 10 and first["version"] == "e1"
    assert [p["subject"] for p in first["pairs"]] == ["cup", "dog"]
    assert all(math.isnan(v) for v in first["pairs"][1]["subject_box"])  # becomes a bad_box error row
    assert got[1]["pairs"] is None and got[3]["size"] == 7 and got[3]["version"] == "2026-01-01"

    table = pa.table({"image": ["a.png", None], "image_id": ["x", None], "path": [None, "b.png"]})
    pq.write_table(table, tmp_path / "m.parquet")
    assert [r["uri"] for r in rows_of(read_manifest(str(tmp_path / "m.parquet"), str(tmp_path)))] == [
        str(tmp_path / "a.png"),
        str(tmp_path / "b.png"),
    ]
    (tmp_path / "m.csv").write_text("uri,size\nc.png,3\n")
    assert rows_of(read_manifest(str(tmp_path / "m.csv"), str(tmp_path)))[0]["uri"] == str(tmp_path / "c.png")


def test_a_bad_manifest_line_is_reported_by_file_and_line_and_the_rest_is_read(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"image": "a.jpg"}\n{not json\n{"pairs": []}\n[1, 2]\n{"image": "b.jpg"}\n')
    problems: list[str] = []
    rows = rows_of(read_manifest(str(manifest), str(tmp_path), problems))
    assert [r["uri"] for r in rows] == [str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg")]
    assert len(problems) == 3 and problems[0].endswith(
        "m.jsonl: line 2: invalid JSON (Expecting property name enclosed in double quotes)"
    )
    assert "line 3: no image URI" in problems[1] and "line 4: expected an object" in problems[2]
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(VSDError, match=r"broken\.parquet: not a readable manifest"):
        rows_of(read_manifest(str(tmp_path / "broken.parquet"), str(tmp_path)))


def test_uris_resolve_lexically_so_a_root_check_sees_where_they_point():
    assert resolve_uri("a/../../b.png", "/data/corpus") == "/data/b.png"
    # On S3 a key is opaque: "x/../../other/k.jpg" is a key of bucket "bucket", read as written
    assert resolve_uri("s3://bucket/x/../../other/k.jpg", "/ignored") == "s3://bucket/x/../../other/k.jpg"
    assert resolve_uri("sub/../k.jpg", "s3://bucket/corpus/") == "s3://bucket/corpus/sub/../k.jpg"
    assert resolve_uri("file:///etc/passwd", "/data") == "/etc/passwd"


def test_vsd_json_ids_match_instruction_record_ids(tmp_path):
    from vsd.data.synthetic import generate
    from vsd.data.vsd_json import read_vsd

    synth = generate(6, str(tmp_path / "synth"), seed=3, size=48)
    assert detect_format(synth.vsd1) == "vsd_json"
    source = open_source(synth.vsd1, image_dir=synth.images)
    rows = rows_of(read_vsd_source(synth.vsd1, synth.images, "", source))
    row_ids = {f"{r['image_id']}-p{p['index']}" for r in rows for p in r["pairs"]}
    assert row_ids == {r.record_id for r in read_vsd(synth.vsd1, None, synth.images).records}
    assert all(storage.exists(r["uri"]) for r in rows)
    with pytest.raises(VSDError, match="image_dir"):
        open_source(synth.vsd1)
