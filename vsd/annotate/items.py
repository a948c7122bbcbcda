"""The row that flows through the annotation pipeline: one image with all of its object pairs.

Why one row per *image* (not per pair) until the write stage: the engine wants every prompt about
an image in one request group (one prefill), and exactly-once is kept per image (a part file holds
whole images, so a crash never leaves half of an image's pairs written). The write stage expands
an item into annotation rows, one per pair (or one at scene level, ``pair_index`` -1).

The types are not defined here: ``ITEM_SCHEMA`` and ``PAIR_STRUCT`` are derived from the annotation
columns in `vsd.schema`, so a new column is declared once. Every stage reads and returns Arrow
tables in ``ITEM_SCHEMA`` exactly (`to_table` refuses unknown or missing keys): Ray Data then never
has to infer (and disagree about) the types of nested, sometimes-all-null columns between blocks.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

from vsd import schema
from vsd.schema import ITEM_SCHEMA, PAIR_STRUCT

SCENE = -1  # pair_index of the scene-level task (an image without given pairs)


def new_pair(
    pair_index: int,
    subject: str | None = None,
    object_: str | None = None,
    subject_box=None,
    object_box=None,
    **known,
) -> dict:
    """A pair with every ``PAIR_STRUCT`` field; ``known`` fills other pair columns by name."""
    pair = {name: None for name in PAIR_STRUCT.names}
    pair.update(
        pair_index=pair_index,
        subject=subject,
        object=object_,
        subject_box=subject_box,
        object_box=object_box,
        view=-1,
        flags=[],
        status="ok",
    )
    unknown = set(known) - set(pair)
    if unknown:
        raise schema.SchemaMismatch(f"pair: keys not in the schema: {sorted(unknown)}")
    pair.update(known)
    return pair


def new_item(
    source_uri: str,
    image_id: str | None = None,
    pairs: list[dict] | None = None,
    source_key: str | None = None,
) -> dict:
    item = {name: None for name in ITEM_SCHEMA.names}
    item.update(
        source_uri=source_uri,
        image_id=image_id,
        source_key=source_key,
        views=[],
        status="ok",
        pairs=pairs if pairs else [new_pair(SCENE)],
    )
    return item


def error_text(reason: str, detail: object) -> str:
    """``<reason>: <detail>`` on one line, short enough for a Parquet cell and a log line."""
    detail = " ".join(str(detail).split())
    return f"{reason}: {detail[:300]}" if detail else reason


def fail_item(item: dict, reason: str, detail: object) -> dict:
    """Mark the whole image (and so every one of its pairs) as an error row with its reason."""
    message = error_text(reason, detail)
    item.update(status="error", error=message, data=None, views=[])
    for pair in item["pairs"]:
        fail_pair(pair, message)
    return item


def fail_pair(pair: dict, message: str) -> dict:
    if pair.get("status") != "error":  # the first reason is the real one
        pair.update(status="error", error=message, view=-1)
    return pair


def ok_pairs(item: dict) -> Iterable[dict]:
    return (p for p in item["pairs"] if p["status"] == "ok")


def to_table(items: list[dict]) -> pa.Table:
    return schema.to_table(items, ITEM_SCHEMA)


def from_table(table: pa.Table) -> list[dict]:
    return table.to_pylist()
