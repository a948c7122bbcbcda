"""Read what `vsd evaluate` compares: reference rows and predictions, local or ``s3://``.

References are instruction rows (`schema.INSTRUCTION_SCHEMA`): one per (record_id, task).
Predictions come in three shapes, all keyed by (record_id, task):

* annotation Parquet (`schema.ANNOTATION_SCHEMA`): one row per pair, ``row_id`` = record_id,
  ``relation`` / ``description`` / ``descriptions`` answer tasks 1 / 2 / 3, ``refined_*`` the
  refined texts; ``status = error`` rows are kept as errors (counted, never scored);
* JSONL lines ``{"record_id", "task", "prediction"}`` (task 3: a list or newline-joined text);
* instruction Parquet (``record_id``, ``task``, ``answer``): the references' own answers, which
  is how the references are evaluated against themselves.

A path may be one file, a directory, or a prefix of files. Bad input is a one-line `VSDError`
naming the file (and line or record).
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.dataset as pads

from vsd import storage
from vsd.errors import VSDError
from vsd.relations import RELATIONS
from vsd.schema import conform

Key = tuple[str, int]
Prediction = str | list[str]

REFERENCE_COLUMNS = ("record_id", "task", "answer", "relation", "references", "subject", "object")
_JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
IGNORED_PREFIXES = (".", "_")


@dataclass(frozen=True)
class Reference:
    record_id: str
    task: int
    answer: str
    relation: str
    references: tuple[str, ...]
    subject: str | None
    object: str | None


@dataclass
class Predictions:
    uri: str
    format: str  # annotation | jsonl | instruction
    raw: dict[Key, Prediction] = field(default_factory=dict)
    refined: dict[Key, Prediction] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # record_id -> error of its status=error row
    flags: dict[str, list[str]] = field(default_factory=dict)  # record_id -> its row's flags (annotation)
    # (record_id, task) -> who wrote each refined sentence (annotation: description(s)_source), as a list
    sources: dict[Key, list[str | None]] = field(default_factory=dict)
    rows: int = 0
    duplicates: int = 0


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def _visible(relative: str) -> bool:
    """pyarrow.dataset's discovery rule (also pandas', Ray Data's, duckdb globs'): a path part
    starting with ``_`` or ``.`` is not data -- an output's ``__vsd/`` bookkeeping, its
    ``_README.md`` card, ``_SUCCESS``, hidden files."""
    return not any(part.startswith(IGNORED_PREFIXES) for part in relative.split("/") if part)


def _files(uri: str, what: str) -> tuple[str, list[str]]:
    """(base, data files) behind ``uri``: the file itself, the files under a directory, or the
    files whose names start with a prefix, as a dataset reader finds them (`_visible`); ``base``
    is where hive partitions (``run_date=…/``) start."""
    uri = (
        str(uri).rstrip("/") if storage.is_s3(uri) else storage.resolve(uri)[1]
    )  # listings give absolute paths
    try:
        if storage.exists(uri):
            base, files = uri, storage.list_files(uri)
            if files == [uri]:
                return posixpath.dirname(uri), files
        else:
            base = posixpath.dirname(uri)
            files = [f for f in storage.list_files(base, recursive=True) if f.startswith(uri)] if base else []
    except OSError as exc:  # S3 permissions, unreachable endpoint
        raise VSDError(f"{what} {uri}: cannot list ({str(exc).splitlines()[0]})") from exc
    files = [f for f in files if _visible(f[len(base) :])]
    data = [f for f in files if f.endswith(".parquet")] or [f for f in files if f.endswith(_JSONL_SUFFIXES)]
    if not data:
        raise VSDError(f"{what} not found: {uri} (no .parquet or .jsonl file there)")
    return base, data


def _read_parquet(uri: str, what: str) -> pa.Table:
    """The rows of every Parquet file behind ``uri``, read with pyarrow.dataset (hive
    partitioning), the reader the README gives users, so `vsd evaluate` scores exactly the rows
    they see. Each file is read in its own schema: annotation parts written by an older release
    are brought to today's columns with `schema.conform` before they are joined."""
    base, files = _files(uri, what)
    fs, base_path = storage.resolve(base)
    paths = {storage.resolve(f)[1]: f for f in files}

    def unreadable(exc: Exception) -> VSDError:
        bad = next((f for path, f in paths.items() if path in str(exc)), uri)
        return VSDError(f"{what} {bad}: not a readable Parquet file ({str(exc).splitlines()[0]})")

    try:
        dataset = pads.dataset(
            list(paths), filesystem=fs, format="parquet", partitioning="hive", partition_base_dir=base_path
        )
        tables = [fragment.to_table(schema=fragment.physical_schema) for fragment in dataset.get_fragments()]
    except (pa.ArrowInvalid, OSError) as exc:
        raise unreadable(exc) from exc
    if tables and all("row_id" in t.column_names for t in tables):
        tables = [conform(t) for t in tables]
    try:
        return pa.concat_tables(tables, promote_options="default")
    except pa.ArrowInvalid as exc:
        raise VSDError(f"{what} {uri}: files have incompatible columns ({str(exc).splitlines()[0]})") from exc


def _require(table: pa.Table, columns: tuple[str, ...], uri: str, what: str) -> None:
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise VSDError(
            f"{what} {uri}: missing column(s) {', '.join(missing)} (has {', '.join(table.column_names)})"
        )


def _task(value, where: str) -> int:
    try:
        task = int(value)
    except (TypeError, ValueError):
        task = 0
    if task not in (1, 2, 3):
        raise VSDError(f"{where}: task must be 1, 2 or 3, got {value!r}")
    return task


# --------------------------------------------------------------------------------------------
# References
# --------------------------------------------------------------------------------------------


def load_references(uri: str) -> dict[Key, Reference]:
    """Instruction rows -> {(record_id, task): Reference}. A record without a ``references`` list
    falls back to its own answer (task 3: its lines)."""
    table = _read_parquet(uri, "references")
    _require(table, REFERENCE_COLUMNS, uri, "references")
    out: dict[Key, Reference] = {}
    for row in table.select(list(REFERENCE_COLUMNS)).to_pylist():
        rid = row["record_id"]
        where = f"references {uri}: record {rid!r}"
        task = _task(row["task"], where)
        if row["relation"] not in RELATIONS:
            raise VSDError(f"{where}: relation {row['relation']!r} is not one of the 9 VSD relations")
        if (rid, task) in out:
            raise VSDError(f"{where}: task {task} appears twice")
        answer = row["answer"] or ""
        refs = tuple(r for r in (row["references"] or []) if r and r.strip())
        if not refs:
            refs = tuple(line for line in answer.split("\n") if line.strip())
        out[(rid, task)] = Reference(rid, task, answer, row["relation"], refs, row["subject"], row["object"])
    return out


# --------------------------------------------------------------------------------------------
# Predictions
# --------------------------------------------------------------------------------------------


def _as_task3(value) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [line.strip() for line in value.split("\n") if line.strip()]
    return [str(v).strip() if v is not None else "" for v in value]


def _from_annotation(table: pa.Table, uri: str) -> Predictions:
    _require(table, ("row_id", "status"), uri, "predictions")
    preds = Predictions(uri, "annotation", rows=table.num_rows)
    columns = [
        c
        for c in (
            "row_id",
            "status",
            "error",
            "relation",
            "description",
            "descriptions",
            "refined_description",
            "refined_descriptions",
            "description_source",
            "descriptions_source",
            "flags",
        )
        if c in table.column_names
    ]
    done: set[str] = set()
    for row in table.select(columns).to_pylist():
        rid = row["row_id"]
        if rid in done:
            preds.duplicates += 1
            continue
        if row["status"] != "ok":
            preds.errors.setdefault(rid, row.get("error") or f"status {row['status']!r}")
            continue
        done.add(rid)
        preds.errors.pop(rid, None)  # a retried pair: its later ok row wins
        preds.flags[rid] = list(row.get("flags") or [])
        for task, value in (
            (1, row.get("relation")),
            (2, row.get("description")),
            (3, _as_task3(row.get("descriptions"))),
        ):
            if value is not None:
                preds.raw[(rid, task)] = value
        for task, value in (
            (2, row.get("refined_description")),
            (3, _as_task3(row.get("refined_descriptions"))),
        ):
            if value is not None:
                preds.refined[(rid, task)] = value
        for task, value in (
            (2, [row["description_source"]] if row.get("description_source") else None),
            (3, row.get("descriptions_source")),
        ):
            if value is not None and (rid, task) in preds.refined:
                preds.sources[(rid, task)] = list(value)
    return preds


def _from_instructions(table: pa.Table, uri: str) -> Predictions:
    preds = Predictions(uri, "instruction", rows=table.num_rows)
    for row in table.select(["record_id", "task", "answer"]).to_pylist():
        key = (row["record_id"], _task(row["task"], f"predictions {uri}: record {row['record_id']!r}"))
        if key in preds.raw:
            preds.duplicates += 1
        elif row["answer"] is not None:
            preds.raw[key] = _as_task3(row["answer"]) if key[1] == 3 else row["answer"]
    return preds


def _from_jsonl(files: list[str], uri: str) -> Predictions:
    preds = Predictions(uri, "jsonl")
    for f in files:
        try:
            text = storage.read_text(f)
        except (OSError, UnicodeDecodeError) as exc:
            raise VSDError(
                f"predictions {f}: cannot read as UTF-8 text ({str(exc).splitlines()[0]})"
            ) from exc
        for lineno, line in enumerate(
            text.split("\n"), start=1
        ):  # not splitlines: U+2028 may sit in a string
            if not line.strip():
                continue
            where = f"predictions {f}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise VSDError(f"{where}: not a JSON object ({exc.msg})") from exc
            if not isinstance(obj, dict) or "record_id" not in obj or "task" not in obj:
                raise VSDError(f"{where}: needs keys record_id, task, prediction")
            preds.rows += 1
            key = (str(obj["record_id"]), _task(obj["task"], where))
            value = obj.get("prediction")
            if key in preds.raw:
                preds.duplicates += 1
            elif obj.get("status", "ok") != "ok" or value is None:
                preds.errors.setdefault(key[0], obj.get("error") or "no prediction")
            elif key[1] == 3:
                preds.raw[key] = _as_task3(value)
            elif not isinstance(value, str):
                raise VSDError(f"{where}: prediction of task {key[1]} must be a string")
            else:
                preds.raw[key] = value
    return preds


def load_predictions(uri: str) -> Predictions:
    """Predictions in any of the three shapes (see the module doc), detected from the files."""
    from vsd.annotate.output import table as output_table

    if output_table.exists(uri):  # an annotation output: its current rows, as `vsd.read` gives them
        return _from_annotation(conform(output_table.read(uri)), uri)
    _, files = _files(uri, "predictions")
    if all(f.endswith(_JSONL_SUFFIXES) for f in files):
        return _from_jsonl(files, uri)
    table = _read_parquet(uri, "predictions")
    if "row_id" in table.column_names:
        return _from_annotation(table, uri)
    if {"record_id", "task", "answer"} <= set(table.column_names):
        return _from_instructions(table, uri)
    raise VSDError(
        f"predictions {uri}: neither an annotation table (row_id, status, relation, description, descriptions) "
        f"nor an instruction table (record_id, task, answer); has {', '.join(table.column_names)}"
    )


def require_overlap(preds: Predictions, refs: dict[Key, Reference]) -> None:
    """Refuse predictions that answer none of the references (another split, another id
    scheme): scoring them would report ``0/N predicted`` and exit 0, which looks like a model
    that answered nothing rather than a wrong ``--pred``."""
    pred_ids = {rid for rid, _ in preds.raw} | set(preds.errors)
    ref_ids = {rid for rid, _ in refs}
    if pred_ids & ref_ids:
        return
    if not preds.rows:
        raise VSDError(f"pred: {preds.uri}: no prediction rows")
    raise VSDError(
        f"pred: none of the {preds.rows} prediction rows matches a reference record_id "
        f"(predictions: {', '.join(sorted(pred_ids)[:3]) or 'none'}; "
        f"references: {', '.join(sorted(ref_ids)[:3])})"
    )
