"""vsd.schema: each column defined once; writers refuse rows that do not match; old partitions read."""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vsd import schema
from vsd.annotate.card import render_card
from vsd.annotate.items import new_item, new_pair, to_table
from vsd.schema import ANNOTATION_SCHEMA, ITEM_SCHEMA, PAIR_STRUCT, SchemaMismatch


def test_every_column_has_a_doc_and_the_card_table_has_no_blank_cell():
    for name, _tp, doc in schema.column_docs(ANNOTATION_SCHEMA) + schema.column_docs(
        schema.INSTRUCTION_SCHEMA
    ):
        assert doc.strip(), f"{name} has no doc"
    card = render_card({}, [], "m")
    rows = [line for line in card.splitlines() if line.startswith("| `")]
    assert len(rows) == len(ANNOTATION_SCHEMA)
    for line in rows:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip("|"))]
        assert len(cells) == 3 and all(cells), line


def test_item_type_is_derived_from_the_annotation_columns():
    pair_columns = [c.name for c in schema.annotation_columns(schema.PAIR)]
    assert PAIR_STRUCT.names == pair_columns + ["view"]
    image_columns = [c.name for c in schema.annotation_columns(schema.IMAGE)]
    assert set(image_columns) <= set(ITEM_SCHEMA.names)
    # every annotation column is filled from exactly one place: image, pair or run
    levels = [lvl for lvl, _ in schema.ANNOTATION_COLUMNS]
    assert set(levels) == {schema.IMAGE, schema.PAIR, schema.RUN}
    assert len(ANNOTATION_SCHEMA) == len(levels)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda it: it.update(extra=1), r"row 0: keys not in the schema: \['extra'\]"),
        (lambda it: it.pop("width"), r"row 0: keys missing: \['width'\]"),
        (
            lambda it: it["pairs"][0].update(relaton="on"),
            r"row 0.pairs\[0\]: keys not in the schema: \['relaton'\]",
        ),
        (lambda it: it["pairs"][0].pop("flags"), r"row 0.pairs\[0\]: keys missing: \['flags'\]"),
    ],
)
def test_writers_refuse_unknown_or_missing_keys_also_inside_structs(mutate, message):
    item = new_item("x.jpg", pairs=[new_pair(0, "cup", "table", [0, 0, 1, 1], [0, 0, 1, 1])])
    to_table([item])  # the untouched item is fine
    mutate(item)
    with pytest.raises(SchemaMismatch, match=message):
        to_table([item])


def test_annotation_rows_refuse_a_typo_too():
    row = schema.empty_row(ANNOTATION_SCHEMA)
    row["descripton"] = "typo"
    with pytest.raises(SchemaMismatch, match="descripton"):
        schema.to_table([row], ANNOTATION_SCHEMA)


def test_new_pair_refuses_an_unknown_column():
    assert new_pair(0, relation="on")["relation"] == "on"
    with pytest.raises(SchemaMismatch, match="relaton"):
        new_pair(0, relaton="on")


def test_an_older_partition_conforms_to_todays_schema(tmp_path):
    """A part written before a column existed (here: without `refine_status` and `flags`) reads
    with those columns null, in today's order and types."""
    row = schema.empty_row(ANNOTATION_SCHEMA)
    row.update(row_id="a-p0", image_id="a", status="ok", pair_index=0, relation="on")
    today = schema.to_table([row], ANNOTATION_SCHEMA)
    old = today.drop_columns(["refine_status", "flags"])
    pq.write_table(old, tmp_path / "part-old.parquet")
    read = schema.conform(pq.read_table(tmp_path / "part-old.parquet"))
    assert read.schema.names == ANNOTATION_SCHEMA.names
    assert read.column("refine_status").to_pylist() == [None] and read.column("relation").to_pylist() == [
        "on"
    ]
    assert read.schema.field("pair_index").type == pa.int32()
