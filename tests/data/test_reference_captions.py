"""The demo's held-out references: phrasings the writers of the system never produce, each stating
the pair's relation, written into a built instruction set without touching its answers."""

from __future__ import annotations

import re

import pyarrow.parquet as pq

from vsd.data import reference_captions as rc
from vsd.data.prompts import template_sentence
from vsd.relations import RELATIONS, parse_relation


def test_writer_frames_catch_the_templates_and_no_reference_frame():
    for variant in range(3):  # the patterns would catch every template repair fills in ...
        text = template_sentence("cup", "on", "plate", variant).lower()
        assert any(re.search(rx, text) for rx in rc.writer_frames()), text
    assert rc.reference_frames_are_apart()  # ... and no reference frame


def test_every_reference_states_the_pair_relation_in_distinct_frames():
    for relation in RELATIONS:
        refs = rc.reference_captions("img-p0", "red circle", relation, "blue square")
        assert len(refs) == rc.PER_RECORD == len({r.split(" red circle")[0] for r in refs})
        assert all(parse_relation(r, "red circle", "blue square") == relation for r in refs), refs
    assert rc.reference_captions("a", "x", "on", "y") == rc.reference_captions("a", "x", "on", "y")


def test_rewrite_references_keeps_the_answers(tmp_path):
    from vsd.data.instructions import build
    from vsd.data.synthetic import generate
    from vsd.data.vsd_json import read_vsd

    scenes = generate(6, str(tmp_path / "scenes"), seed=3, size=64)
    read = read_vsd(scenes.vsd1, scenes.vsd2, scenes.images)
    build(read.records, str(tmp_path / "built"), seed=3, split="heldout")
    before = pq.read_table(tmp_path / "built" / "instructions.parquet").to_pylist()
    assert rc.rewrite_references(tmp_path / "built", 3) == len(before)
    after = pq.read_table(tmp_path / "built" / "instructions.parquet").to_pylist()
    assert [r["answer"] for r in after] == [r["answer"] for r in before]
    for row in after:
        assert row["references"] == rc.reference_captions(
            row["record_id"], row["subject"], row["relation"], row["object"], 3
        )
        assert not set(row["references"]) & set(before[0]["references"])
