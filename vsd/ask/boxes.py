"""``--subject-box x0,y0,x1,y1``: a box typed by a person, read once, refused with one line if wrong.

Inside the system boxes are ``[x0, y0, x1, y1]`` normalised to 0..1 (`vsd.relations`). A person
checking one image usually reads pixels off an image viewer, so both are taken, decided per box:

* all four values within 0..1 -> normalised (``0.42,0.31,0.55,0.48``);
* otherwise all four whole numbers -> pixels of the upright image (after EXIF rotation, as shown
  by a viewer), converted with the image's width and height (``270,150,350,230``);
* anything else (a fraction above 1, a negative value) is an error: guessing a unit would answer
  a question about a different box.

The one ambiguous case, a pixel box with every value 0 or 1, is read as normalised: a one-pixel box
is not a question anyone asks. What was understood is printed with the answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vsd.errors import VSDError


@dataclass(frozen=True)
class Box:
    xyxy: tuple[float, float, float, float]  # normalised 0..1
    unit: str  # "normalised" or "pixels": how it was typed


def parse_numbers(text: str, field: str) -> tuple[float, float, float, float]:
    parts = [p.strip() for p in str(text).replace(" ", ",").split(",") if p.strip()]
    if len(parts) != 4:
        raise VSDError(f"{field}: expected x0,y0,x1,y1 (four numbers), got {text!r}")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise VSDError(f"{field}: expected x0,y0,x1,y1 (four numbers), got {text!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise VSDError(f"{field}: values must be finite numbers, got {text!r}")
    return values  # type: ignore[return-value]


def parse_box(text: str, field: str, width: int, height: int) -> Box:
    """``text`` as a normalised box in an image of ``width`` x ``height``; VSDError naming ``field``."""
    x0, y0, x1, y1 = parse_numbers(text, field)
    values = (x0, y0, x1, y1)
    if all(0.0 <= v <= 1.0 for v in values):
        unit, box = "normalised", values
    elif all(v >= 0 and v == int(v) for v in values):
        if x1 > width or y1 > height or x0 > width or y0 > height:
            raise VSDError(
                f"{field}: pixel box {_show(values)} lies outside the {width}x{height} image "
                "(x0,y0,x1,y1 in pixels, or fractions 0..1)"
            )
        unit, box = "pixels", (x0 / width, y0 / height, x1 / width, y1 / height)
    else:
        raise VSDError(
            f"{field}: {_show(values)} is neither a normalised box (four values in 0..1) nor a pixel "
            "box (four whole numbers >= 0)"
        )
    if not box[0] < box[2]:
        raise VSDError(f"{field}: x0 {_num(x0)} must be less than x1 {_num(x1)}")
    if not box[1] < box[3]:
        raise VSDError(f"{field}: y0 {_num(y0)} must be less than y1 {_num(y1)}")
    return Box(xyxy=tuple(round(v, 6) for v in box), unit=unit)  # type: ignore[arg-type]


def _num(v: float) -> str:
    return f"{v:g}"


def _show(values) -> str:
    return ",".join(_num(v) for v in values)
