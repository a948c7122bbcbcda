"""The visual prompt of LLaVA-VSD: the subject's box in red and the object's in green.

Training (instruction images) and annotation (preprocess stage) draw it with this one function, so
the model sees exactly the same marks at both times.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw

SUBJECT_COLOR = (255, 0, 0)
OBJECT_COLOR = (0, 255, 0)


def line_width(width: int, height: int) -> int:
    """About 0.6% of the longer side (4 px at 640), at least 2 px so small images still show it."""
    return max(2, round(max(width, height) / 160))


def _to_pixels(box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = (float(v) for v in box)
    clamp = lambda v, hi: min(max(v, 0.0), float(hi))  # noqa: E731
    px = (
        round(clamp(x0, 1) * width),
        round(clamp(y0, 1) * height),
        round(clamp(x1, 1) * width) - 1,
        round(clamp(y1, 1) * height) - 1,
    )
    return px[0], px[1], max(px[0], px[2]), max(px[1], px[3])


def draw_visual_prompt(
    image: Image.Image,
    subject_box: Sequence[float] | None,
    object_box: Sequence[float] | None,
    width: int | None = None,
) -> Image.Image:
    """A copy of ``image`` (RGB) with the boxes drawn; boxes are normalised ``[x0, y0, x1, y1]``.

    The object is drawn first so the subject's red box stays visible when the boxes overlap
    (``in``: the subject sits inside the object). A ``None`` box is not drawn.
    """
    out = image.convert("RGB") if image.mode != "RGB" else image.copy()
    w, h = out.size
    stroke = width if width is not None else line_width(w, h)
    draw = ImageDraw.Draw(out)
    for box, color in ((object_box, OBJECT_COLOR), (subject_box, SUBJECT_COLOR)):
        if box is not None:
            draw.rectangle(_to_pixels(box, w, h), outline=color, width=stroke)
    return out
