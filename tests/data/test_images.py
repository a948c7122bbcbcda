"""Image headers read through pyarrow files, whatever Pillow plugins are registered."""

from __future__ import annotations

import subprocess
import sys

from PIL import Image

from tests.fixtures.infra import REPO
from vsd.data.images import read_size

FRESH = """
import sys
from PIL import Image
Image.init()  # before any open: every plugin registered, in name order (IM before JPEG)
from vsd.data.images import ImageFolder, read_size
folder = ImageFolder(sys.argv[1])
print(read_size(sys.argv[1] + "/a.jpg"), read_size(sys.argv[1] + "/b.png"), folder.size(folder.find("a")))
"""


def test_header_size_is_read_after_every_pillow_plugin_is_registered(tmp_path):
    """`Image.init()` as a process's first Pillow call (the annotate stages' import does it) makes
    Pillow try every plugin, IM first, which calls ``readline`` on the pyarrow file and fails: every
    image then read as unreadable (the data build wrote no images in the full test run). The
    formats we decode are named, so that cannot happen. A fresh process: this one's Pillow is set."""
    Image.new("RGB", (64, 80), "red").save(tmp_path / "a.jpg")
    Image.new("RGB", (5, 7), "red").save(tmp_path / "b.png")
    run = subprocess.run(
        [sys.executable, "-c", FRESH, str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[0] == "(64, 80) (5, 7) (64, 80)"


def test_a_file_that_is_no_image_we_read_has_no_size(tmp_path):
    (tmp_path / "notes.jpg").write_text("%!PS-Adobe-3.0 EPSF-3.0\n")
    Image.new("RGB", (4, 4)).save(tmp_path / "x.im", format="IM")  # a real image in a format we do not read
    assert read_size(str(tmp_path / "notes.jpg")) is None and read_size(str(tmp_path / "x.im")) is None
