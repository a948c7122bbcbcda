"""Typed boxes: fractions or whole pixels, decided per box; anything else is one line naming the field."""

from __future__ import annotations

import pytest

from vsd.ask.boxes import parse_box
from vsd.errors import VSDError


def test_fractions_are_normalised_boxes():
    box = parse_box("0.1,0.2, 0.5,0.75", "subject-box", 640, 480)
    assert box.xyxy == (0.1, 0.2, 0.5, 0.75) and box.unit == "normalised"


def test_whole_numbers_are_pixels_of_the_image():
    box = parse_box("64,48,320,480", "object-box", 640, 480)
    assert box.xyxy == (0.1, 0.1, 0.5, 1.0) and box.unit == "pixels"
    assert parse_box("0 0 640 480", "object-box", 640, 480).xyxy == (0.0, 0.0, 1.0, 1.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0.1,0.2,0.5", "subject-box: expected x0,y0,x1,y1 (four numbers), got '0.1,0.2,0.5'"),
        ("a,b,c,d", "subject-box: expected x0,y0,x1,y1 (four numbers)"),
        ("0.1,0.2,1.5,0.9", "subject-box: 0.1,0.2,1.5,0.9 is neither a normalised box"),
        ("-0.1,0.2,0.5,0.9", "subject-box: -0.1,0.2,0.5,0.9 is neither a normalised box"),
        ("0.6,0.2,0.5,0.9", "subject-box: x0 0.6 must be less than x1 0.5"),
        ("0.1,0.2,0.5,0.2", "subject-box: y0 0.2 must be less than y1 0.2"),
        ("10,10,700,100", "subject-box: pixel box 10,10,700,100 lies outside the 640x480 image"),
        ("nan,0,1,1", "subject-box: values must be finite numbers"),
    ],
)
def test_bad_boxes_are_one_line_naming_the_field(text, message):
    with pytest.raises(VSDError) as err:
        parse_box(text, "subject-box", 640, 480)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
