"""Find a VSD record's image in a folder (local or ``s3://``) and read its size from the header.

VSD files name images by ``img_id`` only: Visual Genome ids are bare numbers (``2670`` ->
``2670.jpg``), SpatialSense ids are file names (``nyu_12.png``). The folder is listed once and ids
are looked up in memory, so a 3,000-record file costs one listing, not 3,000 existence checks on S3.
Sizes come from the image header only (PIL opens lazily), so no pixel data is decoded for it.
"""

from __future__ import annotations

import io
import posixpath

from PIL import Image

from vsd import storage
from vsd.errors import VSDError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
# The formats we decode (Pillow tries only these): no EPS/PostScript (which would run Ghostscript),
# no exotic plugins -- an image file is untrusted input. Naming them also keeps the result
# independent of which plugins happen to be registered: once any module calls `Image.init()`,
# Pillow would otherwise try every plugin in turn, and some (IM) call ``readline``, which a
# pyarrow file does not support -- every header read then failed as "unreadable".
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")


class ImageFolder:
    """The images below one folder, indexed by file name and by name without extension."""

    def __init__(self, uri: str):
        self.uri = str(uri)
        if not storage.exists(self.uri):
            raise VSDError(f"{self.uri}: images folder not found")
        self._by_name: dict[str, str] = {}
        self._by_stem: dict[str, str] = {}
        for path in storage.list_files(self.uri):
            name = posixpath.basename(path)
            stem, ext = posixpath.splitext(name)
            if ext.lower() not in IMAGE_EXTENSIONS:
                continue
            self._by_name.setdefault(name, path)
            self._by_stem.setdefault(stem, path)
        self._sizes: dict[str, tuple[int, int] | None] = {}

    def __len__(self) -> int:
        return len(self._by_name)

    def find(self, img_id: str) -> str | None:
        """The image URI for a VSD ``img_id`` (exact file name first, then a bare id's stem)."""
        img_id = str(img_id)
        return self._by_name.get(posixpath.basename(img_id)) or self._by_stem.get(img_id)

    def size(self, uri: str) -> tuple[int, int] | None:
        """(width, height) from the header, cached; ``None`` when the file is not a readable image."""
        if uri not in self._sizes:
            self._sizes[uri] = read_size(uri)
        return self._sizes[uri]


def read_size(uri: str) -> tuple[int, int] | None:
    """Image (width, height) read from the header only; ``None`` if it is not a readable image."""
    fs, path = storage.resolve(uri)
    try:
        with fs.open_input_file(path) as f, Image.open(f, formats=FORMATS) as im:
            return int(im.width), int(im.height)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def load_image(uri: str) -> Image.Image:
    """Decode a whole image as RGB; raises ``OSError``/``ValueError`` for broken files."""
    data = storage.read_bytes(uri)
    with Image.open(io.BytesIO(data), formats=FORMATS) as im:
        im.load()
        return im.convert("RGB")
