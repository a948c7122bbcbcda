"""`vsd show` on a real two-night output: every row once, text escaped, filters, placeholders."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
from PIL import Image

from tests.fixtures.annotate import hard_files
from tests.fixtures.history import BROKEN, HOSTILE_PAIR, NIGHTS
from vsd import storage
from vsd.cli import main
from vsd.show.thumbs import thumbnail, thumbnails

FIGURE = '<figure class="row'


def _show(out: str, page_dir, *args: str) -> str:
    assert main(["show", out, "--out", str(page_dir), *args]) == 0
    return (page_dir / "index.html").read_text(encoding="utf-8")


def test_the_page_has_every_row_escaped_with_placeholders_and_the_trend(two_nights, tmp_path, capsys):
    page = _show(two_nights.output, tmp_path / "all")
    printed = capsys.readouterr().out
    assert f"{two_nights.rows} of {two_nights.rows} rows matching no filter" in printed
    assert f"{len(BROKEN)} image(s) could not be shown" in printed
    assert page.count(FIGURE) == two_nights.rows
    assert page.count('<img src="data:image/jpeg;base64,') == two_nights.rows - len(BROKEN)
    # Newest first: the second night's rows come before the first's.
    runs = re.findall(r"· run ([^<]+)</p>", page)
    assert runs == sorted(runs, reverse=True) and len(set(runs)) == 2
    # The hostile names are text: escaped, never markup, and the one script is ours (with its nonce).
    for name in (HOSTILE_PAIR["subject"], HOSTILE_PAIR["object"]):
        assert (
            name not in page
            and name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
            in page
        )
    assert page.count("<script") == 1 and re.search(r"<script nonce=\"[\w-]{16,}\">", page)
    assert "script-src &#x27;nonce-" in page and "default-src &#x27;none&#x27;" in page
    # Each broken file: a placeholder that says why, and the row's error reason.
    assert page.count('class="thumb missing"') == len(BROKEN)
    assert "image not shown: empty file" in page and "image not shown: cannot decode:" in page
    assert page.count("image not shown: not an image format Pillow reads") == 2  # notes.png, page.jpg
    for reason in ("decode_error", "empty_file", "not_an_image"):
        assert f'<span class="label">error:</span> {reason}:' in page
    # The image without pairs: one scene-level row, described, without boxes or a geometry line.
    [scene] = [f for f in page.split(FIGURE)[1:] if two_nights.scene_uri in f]
    assert (
        '<span class="rel">scene</span>' in scene and 'class="box' not in scene and "geometry:" not in scene
    )
    assert '<span class="label">raw:</span>' in scene
    # The header: one trend line per run record, the latest run's totals.
    assert page.count("<tr><td>") == 2 and all(f"<tr><td>{d}</td>" in page for d in NIGHTS)
    assert (
        f"<b>latest run {NIGHTS[1]}</b>" in page
        and "errors 4 (decode_error 1, empty_file 1, not_an_image 2)" in page
    )


def test_where_and_limit_select_rows(two_nights, tmp_path, capsys):
    out = two_nights.output
    errors = _show(out, tmp_path / "errors", "--where", "status=error")
    assert errors.count(FIGURE) == len(BROKEN) and 'data-status="ok"' not in errors
    two = _show(out, tmp_path / "two", "--where", "error=not_an_image", "--where", "error=empty_file")
    assert two.count(FIGURE) == 3
    night1 = _show(
        out, tmp_path / "night1", "--where", f"run_date={NIGHTS[0]}", "--where", "status=ok", "--limit", "2"
    )
    assert night1.count(FIGURE) == 2 and "2 of 4 rows matching run_date=2026-11-26 and status=ok" in night1
    # flag=<kind> keeps rows with a flag of that kind (the tiny model's cut-off answers are repaired).
    flagged = _show(out, tmp_path / "flagged", "--where", "flag=truncated")
    n = flagged.count(FIGURE)
    assert 0 < n <= two_nights.rows - len(BROKEN) and flagged.count("<li>truncated:") >= n
    capsys.readouterr()
    assert main(["show", out, "--out", str(tmp_path / "x"), "--where", "colour=red"]) == 2
    assert main(["show", out, "--out", str(tmp_path / "x"), "--where", "status"]) == 2
    assert main(["show", out, "--out", str(tmp_path / "x"), "--limit", "0"]) == 2
    assert main(["show", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 2
    assert main(["show", out, "--out", f"{out}/site"]) == 2  # a page in the output: a bogus data file
    err = capsys.readouterr().err
    assert err.count("vsd: error:") == 5 and "is inside the output" in err


def _decoded(thumb) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(thumb.data_url.split(",", 1)[1])))


def test_thumbnails_of_hard_files_rotate_downscale_or_say_why(tmp_path, s3_bucket):
    files = {name: (data, want) for name, data, _, want in hard_files()}
    local = {}
    for name, (data, _) in files.items():
        local[name] = str(tmp_path / name)
        storage.write_bytes(local[name], data)
    made = thumbnails([local[n] for n in files] + [str(tmp_path / "gone.png"), None])
    assert made[str(tmp_path / "gone.png")].problem.startswith("not found")
    assert made[None].problem == "the row has no source_uri"
    for name, (_, want) in files.items():
        thumb = made[local[name]]
        if want in ("ok", "error:bad_box"):  # decodable files: a JPEG at most 320 px a side
            assert thumb.data_url and max(thumb.width, thumb.height) <= 320, (name, thumb.problem)
            assert _decoded(thumb).size == (thumb.width, thumb.height)
        else:
            assert thumb.data_url is None and thumb.problem, name
    assert made[local["exif_rotated.jpg"]].height > made[local["exif_rotated.jpg"]].width  # 80x60 turned
    assert made[local["large.jpg"]].width == 320
    assert (
        "too many pixels" in made[local["bomb.png"]].problem
        and "9000x9000" in made[local["over_limit.png"]].problem
    )
    gray16 = np.asarray(_decoded(made[local["gray16.png"]]).convert("L"))
    assert gray16.min() < 40 and gray16.max() > 200  # scaled, not clipped to white
    # Through vsd.storage from S3 (moto): the same bytes give the same thumbnail.
    storage.write_bytes(f"{s3_bucket}/img/cmyk.jpg", files["cmyk.jpg"][0])
    assert thumbnail(f"{s3_bucket}/img/cmyk.jpg") == made[local["cmyk.jpg"]]
    assert thumbnail(f"{s3_bucket}/img/missing.jpg").problem.startswith("not found")


def test_header_values_are_escaped_once():
    """Header text (reasons, flags, model) from a record: escaped exactly once, never twice."""
    from vsd.runs import night_of
    from vsd.show.page import render

    record = {
        "run_id": "r<1>",
        "run_date": "2026-11-27",
        "model": "s3://b/m&<x>",
        "counts": {"images": 1, "rows": 1, "error": {"a&b": 1}, "flags": {"repaired:task2": 1}},
    }
    page = render([], {}, [night_of(record)], source="o", summary="s", generated_at="now")
    assert "errors 1 (a&amp;b 1)" in page and "model s3://b/m&amp;&lt;x&gt;" in page
    assert "repaired:task2 1" in page and "r&lt;1&gt;" in page and "&amp;amp;" not in page
