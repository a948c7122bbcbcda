"""A row's source image as a small JPEG data URL, or the reason it cannot be shown.

The page must open from disk or a static bucket with nothing beside it, so images are embedded;
downscaled, because a night's page holds hundreds. The boxes are drawn by the page (CSS, in percent
of the thumbnail), not into the pixels: several pairs of one image share one thumbnail. The images
are untrusted files (that is often why a row is an error), so size and pixel count are checked
before decoding and any decoder failure becomes the placeholder's reason, never a crash.
"""

from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow.fs as pafs

from vsd import storage

MAX_SIDE = 320  # px, the thumbnail's longer side
MAX_BYTES = 64 * 1024 * 1024  # a larger file is not fetched for a preview
MAX_PIXELS = 64_000_000  # the preprocess stage's default guard against decompression bombs
READERS = 8  # parallel reads: S3 latency, not CPU, is what a page of images waits on


@dataclass(frozen=True)
class Thumb:
    """A thumbnail (``data_url`` with its pixel size) or ``problem``: why there is none."""

    data_url: str | None = None
    width: int = 0
    height: int = 0
    problem: str | None = None


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


def _to_rgb(im):
    """Any mode -> RGB: transparency over white, 16/32-bit grey scaled to 8 bits (``convert``
    would clip those to white)."""
    from PIL import Image

    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        import numpy as np

        arr = np.asarray(im, dtype=np.float64)
        top = float(arr.max()) or 1.0
        return Image.fromarray((arr * (255.0 / top)).clip(0, 255).astype(np.uint8), "L").convert("RGB")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        im = im.convert("RGBA")
        back = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(back, im).convert("RGB")
    return im.convert("RGB")


def encode(data: bytes, max_side: int = MAX_SIDE) -> Thumb:
    """Image bytes -> thumbnail (EXIF-rotated, as the boxes are: the pipeline rotates first)."""
    from PIL import Image, ImageOps

    if not data:
        return Thumb(problem="empty file")
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            if width * height > MAX_PIXELS:
                return Thumb(problem=f"{width}x{height} pixels: too many to decode for a preview")
            im.draft("RGB", (max_side, max_side))  # JPEG: decode at a reduced scale, much faster
            im = _to_rgb(ImageOps.exif_transpose(im))
            im.thumbnail((max_side, max_side))
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=80)
    except Image.UnidentifiedImageError:
        return Thumb(problem="not an image format Pillow reads")
    except Image.DecompressionBombError as exc:  # Pillow's own guard, at open: the header's size
        return Thumb(problem=f"too many pixels to decode for a preview ({exc})")
    except Exception as exc:  # noqa: BLE001 - an untrusted file: whatever fails is the reason shown
        return Thumb(problem=f"cannot decode: {_short(exc)}")
    url = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    return Thumb(data_url=url, width=im.width, height=im.height)


def thumbnail(uri: str | None, max_side: int = MAX_SIDE) -> Thumb:
    """Read ``uri`` (local or s3://, through `vsd.storage`) and make its thumbnail."""
    if not uri:
        return Thumb(problem="the row has no source_uri")
    try:
        fs, path = storage.resolve(uri)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            return Thumb(problem="not found (moved or deleted since the run)")
        if info.type != pafs.FileType.File:
            return Thumb(problem="not a file")
        if info.size is not None and info.size > MAX_BYTES:
            return Thumb(problem=f"{info.size} bytes: too large to fetch for a preview")
        data = storage.read_bytes(uri)
    except Exception as exc:  # noqa: BLE001 - storage errors vary by backend; the page says which
        return Thumb(problem=f"cannot read: {_short(exc)}")
    return encode(data, max_side)


def thumbnails(uris: list[str | None], max_side: int = MAX_SIDE) -> dict[str | None, Thumb]:
    """One thumbnail per distinct URI, read in parallel."""
    distinct = list(dict.fromkeys(uris))
    with ThreadPoolExecutor(max_workers=READERS) as pool:
        made = list(pool.map(lambda u: thumbnail(u, max_side), distinct))
    return dict(zip(distinct, made))
