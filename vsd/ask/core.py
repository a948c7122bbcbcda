"""One image, one pair, every task answered in-process: the annotation pipeline's own stages, no Ray.

A data team checking what a model says about *this* photo should not need a corpus, an output
table and a Ray cluster -- and must get the answer annotation would give, or the check proves
nothing. So `ask` runs the pipeline's stage functions themselves on a single item: ``preprocess``
(decode, visual prompt drawn red/green, resize, JPEG) -> the ``generate`` stage's UDF (the same
engine, prompts, token budgets and repair pass) -> ``verify`` (answers against each other and
against the boxes' geometry). The config is an annotation config, resolved against the model's
record exactly as `vsd annotate` resolves it (`vsd.annotate.model_record`).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from vsd import storage
from vsd.ask.boxes import Box, parse_box
from vsd.errors import VSDError
from vsd.relations import RELATIONS


@dataclasses.dataclass
class Question:
    image: str  # local path or s3:// URI
    subject: str
    subject_box: str  # as typed: "x0,y0,x1,y1", normalised or pixels
    object: str
    object_box: str
    tasks: list[int] = dataclasses.field(default_factory=lambda: [1, 2, 3])


def read_image(uri: str) -> bytes:
    try:
        if storage.is_s3(uri) or storage.exists(uri):
            if storage.is_dir(uri):
                raise VSDError(f"image: {uri} is a folder, not an image file")
            return storage.read_bytes(uri)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise VSDError(f"image: cannot read {uri}: {' '.join(str(exc).split())[:200]}") from None
    raise VSDError(f"image: file not found: {uri}")


def _name(value: str, field: str) -> str:
    from vsd.annotate.stages.preprocess import MAX_NAME_CHARS

    name = " ".join(str(value or "").split())
    if not name:
        raise VSDError(f"{field}: must name the object (e.g. --{field} 'red cup')")
    if len(name) > MAX_NAME_CHARS:
        raise VSDError(f"{field}: longer than {MAX_NAME_CHARS} characters")
    return name


def check_question(q: Question, data: bytes, max_pixels: int) -> tuple[int, int, Box, Box]:
    """The upright image's size and both boxes, normalised; VSDError naming the bad field."""
    from vsd.annotate.image_decode import BadImage, decode

    _name(q.subject, "subject")
    _name(q.object, "object")
    try:
        width, height = decode(data, max_pixels, 64).size
    except BadImage as exc:
        raise VSDError(f"image: {q.image}: {exc}") from None
    subject = parse_box(q.subject_box, "subject-box", width, height)
    object_ = parse_box(q.object_box, "object-box", width, height)
    return width, height, subject, object_


def answer(q: Question, cfg: Any, *, engine_factory=None) -> dict:
    """The answers to ``q`` with ``cfg`` (an AnnotateConfig, already resolved against the model),
    as one JSON-ready dict: the pair, every answer, the geometry check and what it took."""
    from vsd.annotate.items import from_table, new_item, new_pair, to_table
    from vsd.annotate.stages import verify
    from vsd.annotate.stages.generate import GenerateStageUDF
    from vsd.annotate.stages.preprocess import prepare

    started = time.monotonic()
    data = read_image(q.image)
    width, height, sbox, obox = check_question(q, data, cfg.stages.preprocess.max_pixels)
    pair = new_pair(
        0, _name(q.subject, "subject"), _name(q.object, "object"), list(sbox.xyxy), list(obox.xyxy)
    )
    item = new_item(q.image, image_id="ask", pairs=[pair])
    item["data"] = data
    item = prepare(item, cfg.stages.preprocess)
    pair = item["pairs"][0]
    if pair["status"] != "ok":  # what preprocess refused is the user's input (checked above, so rare)
        raise VSDError(f"image: {pair['error']}")
    prepared = time.monotonic()
    udf = GenerateStageUDF(
        cfg.engine,
        list(q.tasks),
        engine_factory=engine_factory,
        repair=cfg.stages.generate.repair,
        run_id="ask",
    )
    loaded = time.monotonic()
    try:
        item = from_table(udf(to_table([item])))[0]
    finally:
        udf.__del__()
    pair = item["pairs"][0]
    if pair["status"] != "ok":
        raise VSDError(f"engine: {pair['error']}")
    verify.check(pair)
    done = time.monotonic()
    return result(
        q,
        cfg,
        pair,
        width,
        height,
        sbox,
        obox,
        {"prepare": prepared - started, "load": loaded - prepared, "answer": done - loaded},
    )


def result(
    q: Question, cfg: Any, pair: dict, width: int, height: int, sbox: Box, obox: Box, seconds: dict
) -> dict:
    flags = list(pair["flags"] or [])
    asked_relation = 1 in q.tasks and pair["relation"] in RELATIONS
    scores = pair.get("relation_scores")
    return {
        "image": q.image,
        "width": width,
        "height": height,
        "subject": pair["subject"],
        "subject_box": list(sbox.xyxy),
        "object": pair["object"],
        "object_box": list(obox.xyxy),
        "box_units": {"subject": sbox.unit, "object": obox.unit},
        "tasks": sorted(q.tasks),
        "relation": pair["relation"],
        "relation_scores": dict(zip(RELATIONS, scores)) if scores and len(scores) == len(RELATIONS) else None,
        "description": pair["description"],
        "descriptions": pair["descriptions"],
        "refined_description": pair["refined_description"],
        "refined_descriptions": pair["refined_descriptions"],
        "geometry_relation": pair["geometry_relation"],
        # task 1 against what the boxes allow (verify's lenient check): None when task 1 was not asked
        "agrees_with_geometry": ("geometry_contradicts:task1" not in flags) if asked_relation else None,
        "consistent": pair["consistent"],
        "flags": flags,
        "model": cfg.engine.model,
        "adapter": cfg.engine.adapter,
        "engine": {"kind": cfg.engine.kind, "device": cfg.engine.device},
        "input": {
            "image_size": cfg.stages.preprocess.image_size,
            "visual_prompt": cfg.stages.preprocess.visual_prompt,
        },
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
    }
