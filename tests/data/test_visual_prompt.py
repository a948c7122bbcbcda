"""The visual prompt: subject red, object green, on a copy, width scaled to the image."""

from __future__ import annotations

from PIL import Image

from vsd.data.visual_prompt import OBJECT_COLOR, SUBJECT_COLOR, draw_visual_prompt, line_width


def test_boxes_are_drawn_on_a_copy_in_red_and_green():
    src = Image.new("RGB", (200, 100), (128, 128, 128))
    out = draw_visual_prompt(src, (0.1, 0.2, 0.4, 0.8), (0.5, 0.1, 0.9, 0.9))
    assert src.getpixel((20, 50)) == (128, 128, 128)  # original untouched
    assert out is not src and out.size == src.size
    assert out.getpixel((20, 50)) == SUBJECT_COLOR  # left edge of the subject box (x0 = 20)
    assert out.getpixel((100, 50)) == OBJECT_COLOR  # left edge of the object box (x0 = 100)
    assert out.getpixel((50, 50)) == (128, 128, 128)  # inside the subject box: not filled


def test_subject_stays_visible_when_boxes_coincide_and_none_is_skipped():
    src = Image.new("L", (64, 64), 0)  # any mode in, RGB out
    out = draw_visual_prompt(src, (0.25, 0.25, 0.75, 0.75), (0.25, 0.25, 0.75, 0.75))
    assert out.mode == "RGB" and out.getpixel((16, 32)) == SUBJECT_COLOR
    only_object = draw_visual_prompt(src, None, (0.25, 0.25, 0.75, 0.75))
    assert only_object.getpixel((16, 32)) == OBJECT_COLOR


def test_line_width_scales_with_the_image():
    assert line_width(96, 96) == 2 and line_width(640, 480) == 4 and line_width(1600, 1200) == 10
    out = draw_visual_prompt(Image.new("RGB", (640, 480)), (0.1, 0.1, 0.5, 0.5), None)
    row = [out.getpixel((x, 200)) for x in range(60, 72)]
    assert row.count(SUBJECT_COLOR) == 4
    thick = draw_visual_prompt(Image.new("RGB", (640, 480)), (0.1, 0.1, 0.5, 0.5), None, width=7)
    assert [thick.getpixel((x, 200)) for x in range(60, 72)].count(SUBJECT_COLOR) == 7
