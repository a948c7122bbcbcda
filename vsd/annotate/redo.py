"""Re-doing rows already written: ``--reannotate changed-model`` and ``--retry-errors [KIND…]``.

A run normally skips every image whose id is in the output's key set. These two choices pick
current rows to do again instead:

* ``changed-model``: rows whose annotator differs from this run's -- another model, another
  adapter (``adapter_sha256``) or another prompt version: any of the three changes the answers,
  so each counts as another annotator;
* ``retry-errors``: error rows, all of them or those whose reason (``error`` up to its first
  ``:``, as the card counts them) is one of the given kinds.

The unit is the image: an image with one selected row is redone whole (a part holds whole images,
and a pair-level error is fixed by asking about the image again), and every current row of that
image is replaced. Replacement is by the old rows' identity (``row_id``), recorded here before
anything runs, never guessed from the new rows: a changed-model redo writes the same row ids
again, and an error row of an unreadable file has another id than the content it finally reads.

The selected images become one extra input shard, ``__vsd/redo/redo-<run_id>.parquet``: the
corpus rows they came from (the output row has the URI, the corpus shards have the rest: size,
version, given id, pairs) plus ``redo_of`` (the old image id: the read stage does not skip such a
row as already annotated) and ``redo_rows`` (the old row ids). The committer removes those rows in
the commit that adds their replacements; a killed run's parts are committed by the next run's
sweep with the same file, so the old and the new row are never both current. Not replaced: an
error row whose file now reads as an image already annotated under another URI (identical files):
it is skipped as a duplicate, and its error row stays.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from vsd import storage
from vsd.annotate.index import Output
from vsd.annotate.output import table
from vsd.config import ConfigError
from vsd.corpus import SHARD_SCHEMA, Corpus, Shard

CHANGED_MODEL = "changed-model"
REDO_PREFIX = "redo-"  # the redo shard's name: redo-<run_id>
REANNOTATE_CHOICES = (CHANGED_MODEL,)
REDO_SCHEMA = SHARD_SCHEMA.append(pa.field("redo_of", pa.string())).append(
    pa.field("redo_rows", pa.list_(pa.string()))
)
_COLUMNS = [
    "row_id",
    "image_id",
    "source_uri",
    "status",
    "error",
    "model",
    "adapter_sha256",
    "prompt_version",
]
_KIND = re.compile(r"^[a-z0-9_]+$")


@dataclass(frozen=True)
class Request:
    """What to redo: ``reannotate`` (``changed-model`` or empty) and ``retry_errors`` (None: no
    retry; an empty tuple: every error row; else the error kinds to retry)."""

    reannotate: str = ""
    retry_errors: tuple[str, ...] | None = None

    def __bool__(self) -> bool:
        return bool(self.reannotate) or self.retry_errors is not None

    def validate(self) -> None:
        if self.reannotate and self.reannotate not in REANNOTATE_CHOICES:
            raise ConfigError(
                f"--reannotate: one of {', '.join(REANNOTATE_CHOICES)}, got {self.reannotate!r}"
            )
        for kind in self.retry_errors or ():
            if not _KIND.match(kind):
                raise ConfigError(
                    f"--retry-errors: {kind!r} is not an error kind (lowercase reason such as decode_error, "
                    "outside_root, missing_file)"
                )


@dataclass
class Selection:
    """The current rows to redo: {(source URI, image id): their row ids}, and by why."""

    images: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    rows_changed_model: int = 0
    rows_error: int = 0

    @property
    def rows(self) -> int:
        return sum(len(r) for r in self.images.values())


def error_kind(error: str | None) -> str:
    return (error or "unknown").split(":", 1)[0].strip() or "unknown"


def select(root: str, request: Request, annotator: tuple[str, str | None, str]) -> Selection:
    """The current rows ``request`` selects; ``annotator`` is this run's (model, adapter, prompt)."""
    sel = Selection()
    if not request or not table.exists(root):
        return sel
    rows = table.read(root, columns=_COLUMNS).to_pydict()
    chosen: set[tuple[str, str]] = set()
    kinds = set(request.retry_errors or ())
    for i, status in enumerate(rows["status"]):
        key = (rows["source_uri"][i], rows["image_id"][i])
        made_by = (rows["model"][i], rows["adapter_sha256"][i], rows["prompt_version"][i])
        if request.reannotate == CHANGED_MODEL and made_by != annotator:
            sel.rows_changed_model += 1
            chosen.add(key)
        elif (
            request.retry_errors is not None
            and status == "error"
            and (not kinds or error_kind(rows["error"][i]) in kinds)
        ):
            sel.rows_error += 1
            chosen.add(key)
    for i, row_id in enumerate(rows["row_id"]):
        key = (rows["source_uri"][i], rows["image_id"][i])
        if key in chosen:
            sel.images.setdefault(key, []).append(row_id)
    return sel


def redo_uri(out: Output, run_id: str) -> str:
    return out.path("redo", f"{REDO_PREFIX}{run_id}.parquet")


def source_rows(corpus: Corpus, sel: Selection) -> pa.Table:
    """The corpus row of each selected image, as a shard (`REDO_SCHEMA`). The newest row of the
    URI whose given id (if any) is the row's image id: a file listed under two given ids is two
    images. Images with no corpus row (the corpus was rebuilt) are left out."""
    shards = corpus.shards()
    if not sel.images or not shards:
        return REDO_SCHEMA.empty_table()
    fs, _ = storage.resolve(shards[0].uri)
    paths = [storage.resolve(s.uri)[1] for s in shards]
    uris = sorted({u for u, _ in sel.images})
    data = pads.dataset(paths, format="parquet", filesystem=fs, schema=SHARD_SCHEMA)
    found = data.to_table(filter=pc.field("uri").isin(pa.array(uris, pa.string())))
    by_key: dict[tuple[str, str | None], dict] = {}
    for row in found.to_pylist():  # shards are read in name (creation) order: the last one wins
        by_key[(row["uri"], row["image_id"])] = row
    out = []
    for (uri, image_id), row_ids in sorted(sel.images.items()):
        row = by_key.get((uri, image_id)) or by_key.get((uri, None))
        if row is not None:
            out.append({**row, "row": len(out), "redo_of": image_id, "redo_rows": sorted(row_ids)})
    return pa.Table.from_pylist(out, schema=REDO_SCHEMA)


def prepare(out: Output, corpus: Corpus, run_id: str, sel: Selection) -> Shard | None:
    """Write the redo shard of ``sel`` for run ``run_id``; None when nothing is selected."""
    rows = source_rows(corpus, sel)
    if not rows.num_rows:
        return None
    uri = redo_uri(out, run_id)
    sink = pa.BufferOutputStream()
    pq.write_table(rows, sink, compression="zstd")
    storage.write_bytes(uri, sink.getvalue().to_pybytes())
    return Shard(posixpath.basename(uri)[: -len(".parquet")], uri, rows.num_rows)


def replaced(out: Output, run_id: str) -> dict[str, set[str]]:
    """{source URI: old row ids} that run ``run_id``'s new rows of that URI replace (empty for a
    run that redid nothing)."""
    uri = redo_uri(out, run_id)
    if not storage.exists(uri):
        return {}
    fs, path = storage.resolve(uri)
    data = pq.read_table(path, filesystem=fs, columns=["uri", "redo_rows"])
    found: dict[str, set[str]] = {}
    for source, row_ids in zip(data.column("uri").to_pylist(), data.column("redo_rows").to_pylist()):
        found.setdefault(source, set()).update(row_ids or ())
    return found


def replacements(
    out: Output, parts: list[table.Part], fresh: dict[str, set[str]], replace: dict[str, set[str]]
) -> tuple[dict[str, set[str]], set[str]]:
    """What the commit of ``parts`` takes out: (``fresh`` -- the changed-source supersede by URI
    -- without the redone URIs, the old row ids of the redone URIs the parts hold). A redone URI
    is replaced by row id only: superseding it by URI would also take the rows of another image
    of the same file (one file listed under two given ids)."""
    if not replace:
        return fresh, set()
    fresh = {u: ids for u, ids in fresh.items() if u not in replace}
    fs, base = storage.resolve(out.root)
    ids: set[str] = set()
    for part in parts:
        data = pq.read_table(posixpath.join(base, part.path), filesystem=fs, columns=["source_uri"])
        for source in set(data.column("source_uri").to_pylist()):
            ids |= replace.get(source, set())
    return fresh, ids


def describe(sel: Selection, request: Request) -> str:
    """One line for `vsd annotate` and its ``--plan``: how many rows would be redone, and why."""
    why = []
    if request.reannotate:
        why.append(f"{sel.rows_changed_model} made by another model/adapter/prompt")
    if request.retry_errors is not None:
        kinds = ", ".join(request.retry_errors) or "any kind"
        why.append(f"{sel.rows_error} error row(s) of {kinds}")
    return (
        f"redo: {sel.rows} current row(s) of {len(sel.images)} image(s) re-annotated and replaced "
        f"({'; '.join(why)})"
    )


def add_to_run(out: Output, corpus: Corpus, meta, request: Request, committer) -> tuple[list[Shard], str]:
    """Select for the run described by ``meta`` (a `RunMeta`), write its redo shard and tell the
    committer what the new rows replace; returns ([the redo shard] or [], a line to print)."""
    sel = select(out.root, request, (meta.model, meta.adapter_sha256, meta.prompt_version))
    shard = prepare(out, corpus, meta.run_id, sel)
    if shard is None:
        return [], describe(sel, request) + ("" if not sel.images else " -- none found in the corpus")
    committer.replace = replaced(out, meta.run_id)
    return [shard], describe(sel, request)
