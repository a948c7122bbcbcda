"""Preprocess: every hard file becomes a converted view or an error row with its reason."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from tests.fixtures.annotate import GOOD_PAIR, hard_files, png_header_only
from vsd.annotate.items import new_item, new_pair
from vsd.annotate.stages.preprocess import PreprocessStageConfig, prepare

CFG = PreprocessStageConfig(image_size=64, max_pixels=50_000_000)


def run(data: bytes, pair: dict | None = GOOD_PAIR, cfg: PreprocessStageConfig = CFG) -> dict:
    pairs = (
        [new_pair(0, pair["subject"], pair["object"], pair["subject_box"], pair["object_box"])]
        if pair
        else None
    )
    item = new_item("mem://x", image_id="x", pairs=pairs)
    item["data"] = data
    return prepare(item, cfg)


def outcome(item: dict) -> str:
    pair = item["pairs"][0]
    return "ok" if pair["status"] == "ok" else "error:" + pair["error"].split(":")[0]


@pytest.mark.parametrize("name,data,pair,expected", hard_files(), ids=[h[0] for h in hard_files()])
def test_hard_file(name, data, pair, expected):
    item = run(data, pair)
    assert outcome(item) == expected, item["pairs"][0]["error"]
    if expected == "ok":
        view = Image.open(io.BytesIO(item["views"][0]))
        assert view.format == "JPEG" and view.size == (64, 64) and view.mode == "RGB"
        assert item["data"] is None  # the original bytes are not shipped downstream
    else:
        assert item["pairs"][0]["error"].count("\n") == 0


def test_exif_rotation_is_applied_before_anything_else():
    item = run(dict((h[0], h[1]) for h in hard_files())["exif_rotated.jpg"])
    assert (item["width"], item["height"]) == (60, 80)  # stored 80x60, orientation 6 = rotated 90


def test_sixteen_bit_keeps_its_tones():
    item = run(dict((h[0], h[1]) for h in hard_files())["gray16.png"], pair=None)
    arr = np.asarray(Image.open(io.BytesIO(item["views"][0])).convert("L"), dtype=float)
    assert 60 < arr.mean() < 200 and arr.std() > 20  # a ramp, not a saturated white square


def test_visual_prompt_marks_subject_red_and_object_green():
    arr = np.asarray(
        Image.open(io.BytesIO(run(dict((h[0], h[1]) for h in hard_files())["cmyk.jpg"])["views"][0]))
    )
    red = (arr[..., 0] > 180) & (arr[..., 1] < 90) & (arr[..., 2] < 90)
    green = (arr[..., 1] > 180) & (arr[..., 0] < 90) & (arr[..., 2] < 90)
    ys, xs = np.nonzero(red)
    gy, gx = np.nonzero(green)
    assert xs.mean() < gx.mean() and ys.mean() < gy.mean()  # subject box top-left of the object's


def test_bomb_is_refused_from_the_header_without_decoding():
    start = time.perf_counter()
    item = run(png_header_only(200_000, 200_000))
    assert outcome(item) == "error:too_many_pixels" and time.perf_counter() - start < 1.0
    ok = run(png_header_only(100, 100), cfg=PreprocessStageConfig(image_size=64, max_pixels=20_000))
    assert outcome(ok) != "error:too_many_pixels"  # within the limit it gets as far as decoding


def test_one_bad_pair_does_not_fail_the_image():
    item = new_item(
        "mem://x",
        image_id="x",
        pairs=[
            new_pair(0, "cup", "table", [0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.9, 0.9]),
            new_pair(1, "cup", "table", [0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 1.2, 0.9]),
            new_pair(2, "", "table", [0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.9, 0.9]),
        ],
    )
    item["data"] = dict((h[0], h[1]) for h in hard_files())["gray.jpg"]
    prepare(item, CFG)
    assert [p["status"] for p in item["pairs"]] == ["ok", "error", "error"]
    assert item["pairs"][1]["error"].startswith("bad_box: object_box [0.5, 0.5, 1.2, 0.9]")
    assert item["pairs"][2]["error"].startswith("bad_pair: empty subject")
    assert len(item["views"]) == 1 and item["pairs"][0]["view"] == 0


def test_without_visual_prompts_all_pairs_share_one_view():
    item = new_item(
        "mem://x",
        image_id="x",
        pairs=[new_pair(i, "a", "b", [0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.9, 0.9]) for i in range(3)],
    )
    item["data"] = dict((h[0], h[1]) for h in hard_files())["gray.jpg"]
    prepare(item, PreprocessStageConfig(image_size=64, visual_prompt=False))
    assert len(item["views"]) == 1 and {p["view"] for p in item["pairs"]} == {0}
