"""Exactly-once bookkeeping: which images are already written, and who claimed what in this run.

Why our own index and not Ray Data's checkpointing (``ray.data.checkpoint.CheckpointConfig``):

* Ray's checkpoint filters the *source* on an id column at read time. Our id is usually the
  sha256 of the image bytes, known only after a read task has read them.
* Ray's checkpoint is per job and deleted on success; we need "annotated in *any* earlier run"
  so that a nightly run over a grown corpus annotates only the new images, across ``run_date``
  partitions.
* With a separate checkpoint, data and checkpoint can disagree after a crash between the two
  writes. Here **the data part is the commit**: a part file holds whole images, is named by a
  hash of its sorted ``row_id``s (a retried task rewrites the same name) and lands atomically
  (S3 PUT; local temp file + rename), so after a crash each part is complete or absent.
* Identical files within one corpus hash to one id; the ledger lets exactly one of them through
  and reports the copies, which a per-row checkpoint cannot do.

Layout below the output URI::

    run_date=YYYY-MM-DD/part-<sha20>.parquet      the data (ANNOTATION_SCHEMA), the source of truth
    _index/run_date=YYYY-MM-DD/part-<sha20>.parquet  (image_id, source_key) of that part, written after it

`load_done` reads the small index files, plus the ``image_id`` column of any data part whose index
file is missing (the crash window between the two writes), so the index is only ever an
accelerator: the source_key (``uri|size|mtime``) lets a rerun skip a known file without reading
it; losing ``_index/`` costs a re-hash, never a duplicate.

The `IdLedger` actor holds the done set (not the driver: its memory stays flat as the corpus
grows; ~100 bytes per image, so ~1 GB per 10 M images in that actor) and hands out claims: an
id claimed by one URI is "duplicate" for any other URI, and "new" again for the same URI, so a
retried read task never loses its images.

One run per output at a time (the nightly CronJob uses ``concurrencyPolicy: Forbid``): a second
concurrent run would not see the first one's claims and could write an image twice.
"""

from __future__ import annotations

import posixpath
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from vsd import storage

INDEX_DIR = "_index"
PART_PREFIX = "part-"
INDEX_SCHEMA = pa.schema([pa.field("image_id", pa.string()), pa.field("source_key", pa.string())])
MAX_REPORTED = 1000  # duplicates listed by name in the manifest; the count is always exact


def partition(run_date: str) -> str:
    return f"run_date={run_date}"


def part_uris(output: str) -> tuple[dict[str, str], dict[str, str]]:
    """({'<date>/<name>': data part URI}, {'<date>/<name>': index file URI}) below ``output``."""
    fs, root = storage.resolve(output)
    data, index = {}, {}
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        return data, index
    prefix = "s3://" if storage.is_s3(output) else ""
    for info in fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True)):
        rel = posixpath.relpath(info.path, root)
        parts = rel.split("/")
        name = parts[-1]
        if info.type != pafs.FileType.File or not (name.startswith(PART_PREFIX) and name.endswith(".parquet")):
            continue
        if len(parts) == 2 and parts[0].startswith("run_date="):
            data[f"{parts[0]}/{name}"] = prefix + info.path
        elif len(parts) == 3 and parts[0] == INDEX_DIR and parts[1].startswith("run_date="):
            index[f"{parts[1]}/{name}"] = prefix + info.path
    return data, index


def _read_columns(uris: list[str], columns: list[str]) -> pa.Table:
    if not uris:
        return pa.table({c: pa.array([], pa.string()) for c in columns})
    fs, _ = storage.resolve(uris[0])
    paths = [storage.resolve(u)[1] for u in uris]
    return pads.dataset(paths, filesystem=fs, format="parquet").to_table(columns=columns)


def load_done(output: str) -> tuple[set[str], dict[str, str], int]:
    """(image ids written below ``output``, {source_key: image_id}, number of data parts)."""
    data, index = part_uris(output)
    indexed = [index[k] for k in data if k in index]
    orphans = [data[k] for k in data if k not in index]  # crashed between part and index write
    ids: set[str] = set()
    keys: dict[str, str] = {}
    table = _read_columns(indexed, ["image_id", "source_key"])
    for image_id, key in zip(table.column("image_id").to_pylist(), table.column("source_key").to_pylist()):
        ids.add(image_id)
        if key:
            keys[key] = image_id
    ids.update(_read_columns(orphans, ["image_id"]).column("image_id").to_pylist())
    return ids, keys, len(data)


def index_uri(output: str, run_date: str, part_name: str) -> str:
    return storage.join(output, INDEX_DIR, partition(run_date), part_name)


def write_index_entry(output: str, run_date: str, part_name: str, image_ids: list[str],
                      source_keys: list[str | None]) -> None:
    import pyarrow.parquet as pq

    table = pa.table({"image_id": image_ids, "source_key": source_keys}, schema=INDEX_SCHEMA)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    storage.write_bytes(index_uri(output, run_date, part_name), sink.getvalue().to_pybytes())


class IdLedger:
    """The run's claim desk (a Ray actor: ``ray.remote(IdLedger)``); see the module docstring.

    ``claim`` answers per entry ``(image_id | None, source_key | None, source_uri)``:
    ``done`` (written by an earlier run), ``duplicate`` (another URI claimed this id in this run),
    ``new`` (go ahead; repeated claims by the same URI stay ``new``), or ``unknown`` (no id yet:
    read and hash it, then claim again by id).
    """

    def __init__(self, output: str):
        self._done, self._keys, self.parts_before = load_done(output)
        self._claimed: dict[str, str] = {}
        # Sets, not counters: a retried read task claims again and must not be counted twice.
        # Keyed by (uri, id): one file listed under several given ids is several images.
        self._skipped: set[tuple[str, str]] = set()
        self._duplicates: dict[tuple[str, str], str] = {}

    def claim(self, entries: list[tuple[str | None, str | None, str]]) -> list[str]:
        return [self._claim_one(*e) for e in entries]

    def _claim_one(self, image_id: str | None, source_key: str | None, uri: str) -> str:
        if image_id is None and source_key is not None and source_key in self._keys:
            image_id = self._keys[source_key]
        if image_id is None:
            return "unknown"
        if image_id in self._done:
            self._skipped.add((uri, image_id))  # two copies of one done image are two skips
            return "done"
        owner = self._claimed.setdefault(image_id, uri)
        if owner != uri:
            self._duplicates[(uri, image_id)] = f"{uri}: same content as {owner} (image_id {image_id})"
            return "duplicate"
        return "new"

    def report(self) -> dict:
        return {"skipped_done": len(self._skipped),
                "skipped_duplicate": len(self._duplicates),
                "duplicates": list(self._duplicates.values())[:MAX_REPORTED],
                "images_done_before": len(self._done),
                "parts_before": self.parts_before}
