"""Read stage: only regular files under the allowed roots, at most max_file_bytes + 1 bytes, and
error texts that say what kind of failure it was -- never a byte of the file."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from tests.fixtures.infra import REPO
from vsd.annotate.image_decode import decode, to_rgb
from vsd.annotate.items import new_item, new_pair
from vsd.annotate.stages.preprocess import PreprocessStageConfig, prepare
from vsd.annotate.stages.read import ReadError, read_bytes, under_roots


def reason(uri: str, roots: list[str], limit: int = 1 << 20) -> str:
    try:
        read_bytes(uri, roots, limit, attempts=1)
    except ReadError as exc:
        assert str(exc).count(":") >= 1
        return exc.reason
    return "ok"


def test_only_uris_under_an_allowed_root_are_read(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.png").write_bytes(b"x")
    (tmp_path / "secret.txt").write_bytes(b"SECRETVALUE")
    os.symlink(tmp_path / "secret.txt", corpus / "link.png")  # a link inside pointing out
    roots = [str(corpus)]
    assert reason(str(corpus / "a.png"), roots) == "ok"
    for outside in (
        str(tmp_path / "secret.txt"),
        f"file://{tmp_path}/secret.txt",
        str(corpus / "link.png"),
        f"{corpus}/../secret.txt",
        "/proc/self/environ",
        "/dev/zero",
        "s3://other-bucket/x.png",
    ):
        assert reason(outside, roots) == "outside_root", outside
    assert under_roots("s3://corpus/images/a.png", ["s3://corpus/images"])
    assert not under_roots(
        "s3://corpus/images-private/a.png", ["s3://corpus/images"]
    )  # a prefix, not a folder
    assert not under_roots("s3://private/a.png", ["s3://corpus"])


def test_special_files_and_oversized_files_are_refused_without_reading_them(tmp_path):
    root = str(tmp_path)
    os.mkfifo(tmp_path / "fifo.png")  # opening it for a blocking read would hang the task
    assert reason(str(tmp_path / "fifo.png"), [root]) == "not_a_file"
    (tmp_path / "dir.png").mkdir()
    assert reason(str(tmp_path / "dir.png"), [root]) == "not_a_file"
    assert reason(str(tmp_path / "missing.png"), [root]) == "missing_file"
    (tmp_path / "big.png").write_bytes(b"\0" * 5000)
    assert reason(str(tmp_path / "big.png"), [root], limit=4096) == "file_too_large"
    assert reason("/dev/zero", ["/dev"]) == "not_a_file"  # even where a root allows it: not a regular file


def test_a_non_image_names_its_kind_but_none_of_its_bytes():
    with pytest.raises(Exception) as info:
        decode(b"SECRETVALUE=hunter2\n" * 4, 10_000, 64)
    assert info.value.reason == "not_an_image"
    assert "SECRET" not in str(info.value) and "534543" not in str(info.value)  # no text, no hex
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"  # Pillow would hand EPS to Ghostscript
    with pytest.raises(Exception) as info:
        decode(eps, 10_000, 64)
    assert info.value.reason == "not_an_image"


def test_16_bit_images_convert_in_integer_bands():
    arr = (np.arange(600 * 400, dtype=np.uint32).reshape(400, 600) % 65536).astype(np.uint16)
    rgb = to_rgb(Image.fromarray(arr))  # uint16 -> mode I;16
    assert rgb.mode == "RGB" and rgb.size == (600, 400)
    assert np.array_equal(np.asarray(rgb)[:, :, 0], (arr >> 8).astype(np.uint8))
    # In a fresh process, so the peak it reports is this conversion's (a float64 copy of a 16 MP
    # scan would add ~256 MiB; the banded integer path adds the 16 MiB result and one band).
    probe = textwrap.dedent("""
        import resource, numpy as np
        from PIL import Image
        from vsd.annotate.image_decode import to_rgb
        big = Image.fromarray(np.full((4000, 4000), 40000, dtype=np.uint16))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        to_rgb(big)
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
    """)
    grew_mib = float(
        subprocess.run(
            [sys.executable, "-c", probe],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        ).stdout
    )
    assert grew_mib < 100, f"16 MP 16-bit conversion grew the peak by {grew_mib:.0f} MiB"


def test_more_pairs_than_allowed_is_an_error_row():
    pairs = [new_pair(i, "cup", "table", [0.1, 0.1, 0.2, 0.2], [0.5, 0.5, 0.9, 0.9]) for i in range(5)]
    item = new_item("x.png", pairs=pairs)
    import io

    buf = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buf, format="PNG")
    item["data"] = buf.getvalue()
    out = prepare(item, PreprocessStageConfig(image_size=32, max_pairs_per_image=4))
    assert out["status"] == "error" and out["error"].startswith("too_many_pairs: 5 pairs > stages.preprocess")
    assert all(p["status"] == "error" for p in out["pairs"])
