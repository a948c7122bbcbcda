"""Build the LLaVA-VSD instruction dataset: three rows (tasks 1-3) per valid triple.

Writes, under ``out_dir`` (local or ``s3://``):

* ``instructions.json``   LLaVA conversation data: ``{id, image, conversations: [human, gpt]}``
* ``instructions.parquet`` the same rows in ``schema.INSTRUCTION_SCHEMA`` (plus references)
* ``images/<record_id>.jpg`` the visual-prompt image (subject red, object green) of each triple
  whose source image exists
* ``stats.json``          rows per task and relation, answer sources, skipped records with reasons

A record without a source image keeps its rows (text and references are still useful for
evaluation), but its LLaVA entry has no ``image`` key and no ``<image>`` token: that is LLaVA's
text-only sample, rather than a path to a file that does not exist. Output is deterministic for a
given seed: rows follow record order and answers are seeded per record.
"""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from collections.abc import Iterable

import pyarrow.parquet as pq

from vsd import storage
from vsd.data.images import ImageFolder, load_image
from vsd.data.prompts import TASK_NAMES, answer, task_prompt
from vsd.data.records import VSDRecord
from vsd.data.visual_prompt import draw_visual_prompt
from vsd.data.vsd_json import Problem
from vsd.errors import VSDError
from vsd.schema import INSTRUCTION_SCHEMA, PROMPT_VERSION, to_table

IMAGE_TOKEN = "<image>"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def image_name(record_id: str) -> str:
    """The visual-prompt image path of a record, relative to the output folder."""
    return f"images/{_UNSAFE.sub('_', record_id)}.jpg"


def _encode_jpeg(image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


class _SourceImages:
    """Decodes each source image once even when several triples share it (they are adjacent)."""

    def __init__(self) -> None:
        self._uri: str | None = None
        self._image = None

    def get(self, uri: str):
        if uri != self._uri:
            self._uri, self._image = uri, load_image(uri)
        return self._image


def _with_folder_image(record: VSDRecord, folder: ImageFolder | None) -> VSDRecord:
    if record.image is not None or folder is None:
        return record
    uri = folder.find(record.img_id)
    size = folder.size(uri) if uri else None
    return record.with_image(uri if size else None, size)


def _rows_for(
    record: VSDRecord, image: str | None, seed: int, split: str
) -> tuple[list[dict], list[dict], dict]:
    """The Parquet rows, LLaVA entries and answer sources of one record's three tasks."""
    rows, entries, sources = [], [], {}
    references = list(record.references)
    for task in (1, 2, 3):
        prompt = task_prompt(task, record.subject, record.object)
        ans = answer(task, record, seed)
        sources[task] = ans.sources
        row_id = f"{record.record_id}-t{task}"
        rows.append(
            {
                "id": row_id,
                "record_id": record.record_id,
                "dataset": record.dataset,
                "img_id": record.img_id,
                "image": image,
                "source_image": record.image,
                "width": record.width,
                "height": record.height,
                "task": task,
                "task_name": TASK_NAMES[task],
                "prompt": prompt,
                "answer": ans.text,
                "subject": record.subject,
                "object": record.object,
                "relation": record.relation,
                "subject_box": list(record.subject_box) if record.subject_box else None,
                "object_box": list(record.object_box) if record.object_box else None,
                "references": references,
                "split": split,
                "prompt_version": PROMPT_VERSION,
            }
        )
        entry = {"id": row_id}
        if image is not None:
            entry["image"] = image
        human = f"{IMAGE_TOKEN}\n{prompt}" if image is not None else prompt
        entry["conversations"] = [{"from": "human", "value": human}, {"from": "gpt", "value": ans.text}]
        entries.append(entry)
    return rows, entries, sources


def build(
    records: Iterable[VSDRecord],
    out_dir: str,
    images_dir: str | None = None,
    seed: int = 0,
    split: str = "train",
    *,
    problems: Iterable[Problem] = (),
) -> dict:
    """Write the instruction dataset of ``records`` to ``out_dir``; returns the stats it wrote.

    ``images_dir`` finds images for records that do not carry one already (records read with an
    images folder do). ``problems`` are the reader's skipped records, carried into the stats.
    """
    out_dir = str(out_dir).rstrip("/")
    folder = ImageFolder(images_dir) if images_dir else None
    skipped = list(problems)
    sources_img = _SourceImages()
    rows: list[dict] = []
    entries: list[dict] = []
    task2 = Counter()
    task3 = Counter()
    images_written = 0
    seen: set[str] = set()
    for record in records:
        if record.record_id in seen:
            skipped.append(
                Problem(record.dataset, record.record_index, "duplicate record_id", record.record_id)
            )
            continue
        seen.add(record.record_id)
        record = _with_folder_image(record, folder)
        image = None
        if record.image is not None:
            try:
                drawn = _visual_prompt_image(sources_img, record)
            except (OSError, ValueError) as exc:
                detail = " ".join(str(exc).split())[:200]
                skipped.append(
                    Problem(
                        record.image, record.record_index, "unreadable image", detail, record.triple_index
                    )
                )
                continue
            image = image_name(record.record_id)
            _put(storage.join(out_dir, image), _encode_jpeg(drawn))
            images_written += 1
        r, e, src = _rows_for(record, image, seed, split)
        rows.extend(r)
        entries.extend(e)
        task2.update(src[2])
        task3.update(src[3])

    stats = _stats(rows, skipped, task2, task3, images_written, seed, split)
    _write(out_dir, rows, entries, stats)
    return stats


def _visual_prompt_image(sources: _SourceImages, record: VSDRecord):
    source = sources.get(record.image)
    if source.size != (record.width, record.height):
        raise ValueError(
            f"decoded size {source.size} differs from the header's {record.width}x{record.height}"
        )
    return draw_visual_prompt(source, record.subject_box, record.object_box)


def _put(uri: str, data: bytes) -> None:
    try:
        storage.write_bytes(uri, data)
    except OSError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise VSDError(f"{uri}: cannot write: {first}") from None


def _stats(
    rows: list[dict],
    skipped: list[Problem],
    task2: Counter,
    task3: Counter,
    images_written: int,
    seed: int,
    split: str,
) -> dict:
    per_task = Counter(str(r["task"]) for r in rows)
    per_relation = Counter(r["relation"] for r in rows)
    return {
        "split": split,
        "seed": seed,
        "prompt_version": PROMPT_VERSION,
        "datasets": sorted({r["dataset"] for r in rows}),
        "records": len(rows) // 3,
        "rows": len(rows),
        "rows_per_task": dict(sorted(per_task.items())),
        "rows_per_relation": dict(sorted(per_relation.items())),
        "answer_sources": {
            "task2": dict(sorted(task2.items())),
            "task3_sentences": dict(sorted(task3.items())),
        },
        "images": {
            "written": images_written,
            "rows_without_image": sum(1 for r in rows if r["image"] is None),
        },
        "skipped": {
            "total": len(skipped),
            "by_reason": dict(sorted(Counter(p.reason for p in skipped).items())),
            "problems": [str(p) for p in skipped[:200]],
        },
    }


def _write(out_dir: str, rows: list[dict], entries: list[dict], stats: dict) -> None:
    _put(storage.join(out_dir, "instructions.json"), json.dumps(entries, ensure_ascii=False).encode())
    buf = io.BytesIO()
    pq.write_table(to_table(rows, INSTRUCTION_SCHEMA), buf)
    _put(storage.join(out_dir, "instructions.parquet"), buf.getvalue())
    _put(storage.join(out_dir, "stats.json"), json.dumps(stats, indent=1).encode())
