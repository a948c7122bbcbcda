"""Read stage (CPU tasks): claim each planned image, read its bytes, give it a stable id.

``image_id`` is the sha256 of the bytes unless the source gives one (manifest ``image_id``, VSD
``img_id``, so ``row_id`` == the instruction ``record_id`` of the same pair). Each item is claimed
from the run's `IdLedger` (``vsd.annotate.index``) before its bytes are read (by given id or by
``uri|size|mtime``) and again after hashing: images written by an earlier run are skipped, and
identical files within a corpus become one image (the copies are reported).

A file that cannot be read becomes an error row (``missing_file``, ``read_error``,
``file_too_large``) instead of failing the task, so one bad object never stops the run.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.fs as pafs

from vsd import storage
from vsd.annotate.items import fail_item, from_table, to_table
from vsd.annotate.stages.base import RunContext, Resources, enabled_always, map_stage, resources
from vsd.config import ConfigError, describe

if TYPE_CHECKING:
    from vsd.annotate.config import AnnotateConfig

NAME = "read"
HELP = "claim, read and hash the planned images (CPU tasks)"
enabled = enabled_always


@dataclass
class ReadStageConfig:
    max_file_bytes: int = describe("max_file_bytes", 100 * 1024 * 1024,
                                   help="files larger than this are error rows (file_too_large) without being read")
    resources: Resources = resources("CPU tasks; batch_size = images per task call (default 32)", num_cpus=0.25)

    def validate(self) -> None:
        if self.max_file_bytes < 1:
            raise ConfigError(f"max_file_bytes: must be >= 1, got {self.max_file_bytes}")


Config = ReadStageConfig


def add(ds, cfg: AnnotateConfig, ctx: RunContext):
    stage = cfg.stages.read
    return map_stage(ds, read_images, stage.resources, default_batch=32, keeps_rows=False,
                     kwargs={"ledger": ctx.ledger, "max_file_bytes": stage.max_file_bytes})


def _claim(ledger, items: list[dict], by_key: bool) -> list[str]:
    import ray

    entries = [(it["image_id"], it["source_key"] if by_key else None, it["source_uri"]) for it in items]
    return ray.get(ledger.claim.remote(entries))


def read_images(batch: pa.Table, *, ledger, max_file_bytes: int) -> pa.Table:
    """Claim, read and hash one batch of planned items; drops items already done or duplicated."""
    items = from_table(batch)
    verdicts = _claim(ledger, items, by_key=True)
    todo = [it for it, v in zip(items, verdicts) if v in ("new", "unknown")]
    for item in todo:
        if item["status"] != "ok":
            continue
        try:
            data = read_bytes(item["source_uri"], max_file_bytes)
        except ReadError as exc:
            fail_item(item, exc.reason, exc.detail)
            data = None
        item["data"] = data
        if item["image_id"] is None:
            # An unreadable file has no content to hash: its URI names it (stable across runs).
            content = data if data is not None else ("unreadable:" + item["source_uri"]).encode()
            item["image_id"] = hashlib.sha256(content).hexdigest()
    unknown = [it for it, v in zip(items, verdicts) if v == "unknown"]
    if unknown:
        second = dict(zip(map(id, unknown), _claim(ledger, unknown, by_key=False)))
        todo = [it for it in todo if second.get(id(it), "new") == "new"]
    return to_table(todo)


class ReadError(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def read_bytes(uri: str, max_file_bytes: int, attempts: int = 4) -> bytes:
    """The object's bytes; storage hiccups are retried with backoff (on top of the S3 client's own
    retries) because an error row is final: a rerun would not try the image again."""
    for attempt in range(attempts):
        try:
            return _read_once(uri, max_file_bytes)
        except ReadError as exc:
            if exc.reason != "read_error" or attempt == attempts - 1:
                raise
            time.sleep(0.5 * 2 ** attempt)
    raise AssertionError("unreachable")


def _read_once(uri: str, max_file_bytes: int) -> bytes:
    try:
        fs, path = storage.resolve(uri)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise ReadError("missing_file", uri)
        if info.size is not None and info.size > max_file_bytes:
            raise ReadError("file_too_large", f"{info.size} bytes > stages.read.max_file_bytes {max_file_bytes}")
        with fs.open_input_stream(path) as f:
            return f.read()
    except ReadError:
        raise
    except (OSError, ValueError) as exc:
        raise ReadError("read_error", f"{uri}: {exc}") from None
