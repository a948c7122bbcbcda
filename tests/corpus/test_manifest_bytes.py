"""Manifests with hostile bytes: each line decoded on its own, so one bad byte costs one line."""

from __future__ import annotations

import json

from vsd.corpus.sources import read_manifest


def _uris(path, problems):
    return [r["uri"] for t in read_manifest(str(path), str(path.parent), problems) for r in t.to_pylist()]


def test_a_line_that_is_not_utf8_is_reported_with_its_number_and_the_rest_runs(tmp_path):
    manifest = tmp_path / "m.jsonl"
    lines = [
        json.dumps({"image": "a.png"}).encode(),
        b'{"image": "caf\xe9.png"}',  # latin-1: was "internal error: UnicodeDecodeError", nothing annotated
        b"not json at all",
        json.dumps({"image": "b.png", "image_id": "\udc80"}).encode(),  # a lone surrogate, spelt in JSON
        json.dumps({"image": "c.png"}).encode(),
    ]
    manifest.write_bytes(b"\n".join(lines) + b"\n")
    problems: list[str] = []
    assert _uris(manifest, problems) == [str(tmp_path / "a.png"), str(tmp_path / "c.png")]
    assert problems == [
        f"{manifest}: line 2: not UTF-8 (byte 0xe9 at column 15)",
        f"{manifest}: line 3: invalid JSON (Expecting value)",
        f"{manifest}: line 4: a lone surrogate (\\udXXX) in a text field",
    ]


def test_a_byte_order_mark_is_accepted_and_costs_no_row(tmp_path):
    manifest = tmp_path / "m.jsonl"
    rows = [{"image": "a.png", "image_id": "first"}, {"image": "b.png"}]
    manifest.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\r\n" for r in rows).encode())
    problems: list[str] = []
    assert _uris(manifest, problems) == [str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    assert problems == []


def test_a_csv_with_one_byte_that_is_not_utf8_loses_that_row_only(tmp_path):
    """Arrow reads such a column as binary: every row's URI once became "b'a.png'"."""
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(b"\xef\xbb\xbfuri,size\na.png,1\nb\xe9.png,2\nc.png,3\n")
    problems: list[str] = []
    assert _uris(manifest, problems) == [str(tmp_path / "a.png"), str(tmp_path / "c.png")]
    assert problems == [f"{manifest}: row 2: column uri: not UTF-8 (byte 0xe9)"]
