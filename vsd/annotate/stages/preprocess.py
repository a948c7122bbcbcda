"""Preprocess stage (CPU tasks): bytes -> the JPEG(s) the engine sees, or an error row with a reason.

Per image: size guard from the header (before any pixel is decoded, so a decompression bomb costs
nothing), decode + verify, first frame of animations, EXIF transpose, any mode (CMYK, 16-bit,
palette with transparency, grayscale, float) to 8-bit RGB, then per pair the visual prompt
(subject red, object green) on a copy reduced to the model's input size, padded to a square
(LLaVA-1.5's ``pad`` aspect mode: a centre crop could cut a box off) and re-encoded as JPEG.

Reasons written to ``error`` (``<reason>: <detail>``): ``empty_file``, ``not_an_image``,
``too_many_pixels``, ``decode_error``, ``bad_box``, ``bad_pair``. Nothing here raises: one broken
file must never stop the run.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
from PIL import Image

from vsd.annotate.image_decode import BadImage, decode
from vsd.annotate.items import SCENE, error_text, fail_item, fail_pair, from_table, ok_pairs, to_table
from vsd.annotate.stages.base import Resources, RunContext, enabled_always, map_stage, resources
from vsd.config import describe
from vsd.data.visual_prompt import draw_visual_prompt
from vsd.relations import box_is_valid

if TYPE_CHECKING:
    from vsd.annotate.config import AnnotateConfig

NAME = "preprocess"
HELP = "decode, guard, visual prompt, resize, JPEG (CPU tasks)"
enabled = enabled_always

Image.init()  # registers every plugin once, so the FORMATS names resolve (decoding still tries only them)

# LLaVA-1.5 pads with the CLIP mean colour, so padding looks like "nothing" to the vision tower.
PAD_COLOR = (122, 116, 104)
MAX_NAME_CHARS = 200


@dataclass
class PreprocessStageConfig:
    max_pixels: int = describe(
        "max_pixels",
        64_000_000,
        ge=1,
        help="images declaring more pixels (width*height, from the header) are error rows "
        "(too_many_pixels): a decompression-bomb guard; raise it for huge scans",
    )
    image_size: int = describe(
        "image_size",
        336,
        ge=8,
        le=4096,
        help="side of the square JPEG sent to the engine; match the model's vision input "
        "(336 for LLaVA-1.5; larger only costs bytes, the processor resizes anyway); "
        "unset: the exported model's recorded input size",
    )
    jpeg_quality: int = describe(
        "jpeg_quality", 90, ge=1, le=95, help="JPEG quality of the re-encoded image (1-95)"
    )
    max_pairs_per_image: int = describe(
        "max_pairs_per_image",
        64,
        ge=1,
        help="an image with more pairs is an error row (too_many_pairs): each pair is "
        "its own drawn JPEG, so 1,000 pairs would carry ~55 MB in one row",
    )
    visual_prompt: bool = describe(
        "visual_prompt",
        True,
        help="draw subject (red) and object (green) boxes, one image per pair as the "
        "model was trained; false: one plain image per image with all pairs "
        "asked in text (one prefill for all pairs, but not how LLaVA-VSD was trained)",
    )
    override: bool = describe(
        "override",
        False,
        help="apply image_size / visual_prompt even where they contradict the exported "
        "model's record (what it was trained on; a warning line says so); false: such a "
        "config is refused, and unset values come from the record (vsd/annotate/model_record.py)",
    )
    resources: Resources = resources(
        "CPU tasks (decode/resize is the CPU cost); batch_size default 16", num_cpus=0.5
    )


# ----------------------------------------------------------------------------------------------
# Views
# ----------------------------------------------------------------------------------------------


def check_pair(pair: dict) -> str | None:
    """Why a pair cannot be asked about (``bad_box: ...``/``bad_pair: ...``), or None."""
    if pair["pair_index"] == SCENE:
        return None
    for side in ("subject", "object"):
        name = pair[side]
        if name is None or not " ".join(str(name).split()):
            return error_text("bad_pair", f"empty {side} name")
        if len(name) > MAX_NAME_CHARS:
            return error_text("bad_pair", f"{side} name longer than {MAX_NAME_CHARS} characters")
        box = pair[f"{side}_box"]
        if not box_is_valid(box):
            return error_text(
                "bad_box",
                f"{side}_box {_show(box)} is not a box inside the image: boxes are "
                "[x0, y0, x1, y1] normalised to 0..1 (x0 < x1, y0 < y1)",
            )
    return None


def _show(box) -> str:
    if box is None:
        return "missing"
    return "[" + ", ".join("nan" if isinstance(v, float) and math.isnan(v) else f"{v:g}" for v in box) + "]"


def fit(im: Image.Image, size: int) -> Image.Image:
    """Reduce so the longer side is ``size`` (aspect kept): boxes stay valid in normalised coords."""
    scale = size / max(im.size)
    if scale < 1:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BICUBIC)
    return im


def square(im: Image.Image, size: int) -> Image.Image:
    """Pad to a square with the CLIP mean colour and resize to ``size`` x ``size``."""
    side = max(im.size)
    canvas = Image.new("RGB", (side, side), PAD_COLOR)
    canvas.paste(im, ((side - im.width) // 2, (side - im.height) // 2))
    return canvas if side == size else canvas.resize((size, size), Image.BICUBIC)


def jpeg(im: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    im.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def prepare(item: dict, cfg: PreprocessStageConfig) -> dict:
    """Fill ``width``/``height``/``views`` and each pair's ``view``; failures become error rows."""
    if item["status"] != "ok":
        return item
    if len(item["pairs"]) > cfg.max_pairs_per_image:
        return fail_item(
            item,
            "too_many_pairs",
            f"{len(item['pairs'])} pairs > stages.preprocess.max_pairs_per_image {cfg.max_pairs_per_image}",
        )
    try:
        image = decode(item["data"], cfg.max_pixels, cfg.image_size)
    except BadImage as exc:
        return fail_item(item, exc.reason, exc.detail)
    except Exception as exc:  # noqa: BLE001 - a decoder bug on one file must not stop the run
        return fail_item(item, "decode_error", f"{type(exc).__name__}: {exc}")
    item["width"], item["height"] = image.size
    item["data"] = None  # the original bytes are not needed downstream; don't ship them along
    base = fit(image, cfg.image_size)
    for pair in item["pairs"]:
        problem = check_pair(pair)
        if problem:
            fail_pair(pair, problem)
    pairs = list(ok_pairs(item))
    if not pairs:
        return item
    try:
        if cfg.visual_prompt:
            for pair in pairs:
                drawn = (
                    base
                    if pair["pair_index"] == SCENE
                    else draw_visual_prompt(base, pair["subject_box"], pair["object_box"])
                )
                pair["view"] = len(item["views"])
                item["views"].append(jpeg(square(drawn, cfg.image_size), cfg.jpeg_quality))
        else:
            item["views"] = [jpeg(square(base, cfg.image_size), cfg.jpeg_quality)]
            for pair in pairs:
                pair["view"] = 0
    except Exception as exc:  # noqa: BLE001
        return fail_item(item, "encode_error", f"{type(exc).__name__}: {exc}")
    return item


def preprocess_batch(batch: pa.Table, *, cfg: PreprocessStageConfig) -> pa.Table:
    """The Ray Data ``map_batches`` function of this stage."""
    return to_table([prepare(item, cfg) for item in from_table(batch)])


def add(ds, cfg: AnnotateConfig, ctx: RunContext):
    stage = cfg.stages.preprocess
    return map_stage(ds, preprocess_batch, stage.resources, default_batch=16, kwargs={"cfg": stage})


Config = PreprocessStageConfig
