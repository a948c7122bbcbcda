"""`vsd.read`: the current rows of an output, the one reader for users, tools and tests."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from vsd import storage
from vsd.annotate.index import Output
from vsd.schema import ANNOTATION_SCHEMA


def read(root: str, columns: list[str] | None = None) -> pa.Table:
    """The output's current rows (``ANNOTATION_SCHEMA`` + ``run_date``)."""
    tables = []
    for rel, uri in sorted(Output(root).data_parts().items()):
        fs, path = storage.resolve(uri)
        table = pq.read_table(path, filesystem=fs, schema=ANNOTATION_SCHEMA)
        run_date = rel.split("/")[0].split("=", 1)[1]
        tables.append(table.append_column("run_date", pa.array([run_date] * table.num_rows, pa.string())))
    if not tables:
        schema = ANNOTATION_SCHEMA.append(pa.field("run_date", pa.string()))
        return schema.empty_table() if columns is None else schema.empty_table().select(columns)
    out = pa.concat_tables(tables)
    return out if columns is None else out.select(columns)
