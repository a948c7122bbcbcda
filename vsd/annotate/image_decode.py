"""Bytes -> an upright 8-bit RGB image, or `BadImage` naming why not: the guards every stage that
decodes an input image shares (preprocess for the model, propose for the detector, `vsd ask`).

Why its own module: the propose stage decodes before preprocess runs and must apply the same
guards (formats, pixel limit, truncation, EXIF orientation) without importing the preprocess stage.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from vsd.annotate.items import error_text
from vsd.data.images import FORMATS


class BadImage(Exception):
    def __init__(self, reason: str, detail: object):
        super().__init__(error_text(reason, detail))
        self.reason, self.detail = reason, detail


def decode(data: bytes | None, max_pixels: int, target: int) -> Image.Image:
    """Bytes -> upright 8-bit RGB image (reduced towards ``target`` while decoding where possible)."""
    if not data:
        raise BadImage("empty_file", "0 bytes")
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, not a grey half-image
    with warnings.catch_warnings():
        # Our max_pixels check below is the guard; PIL's own bomb warning would only be noise.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data), formats=FORMATS)
        except UnidentifiedImageError:
            raise BadImage("not_an_image", f"{_sniff(data)}") from None
        except Image.DecompressionBombError as exc:
            raise BadImage("too_many_pixels", exc) from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise BadImage("decode_error", exc) from None
        width, height = im.size
        if width < 1 or height < 1:
            raise BadImage("decode_error", f"declared size {width}x{height}")
        if width * height > max_pixels:
            raise BadImage(
                "too_many_pixels",
                f"{width}x{height} = {width * height} > stages.preprocess.max_pixels {max_pixels}",
            )
        try:
            im.verify()  # structure/CRC checks; the object is unusable afterwards, so reopen
            im = Image.open(io.BytesIO(data), formats=FORMATS)
            if getattr(im, "n_frames", 1) > 1:
                im.seek(0)
            if im.format == "JPEG" and im.mode in ("RGB", "L", "CMYK"):
                # DCT scaling: a 40 MP JPEG decodes at 1/8 size directly (speed and memory). PIL
                # never scales below the requested size, so the resize that follows still
                # downsamples (with antialiasing) from at least the target size.
                im.draft(im.mode, (target, target))
            im.load()
            im = ImageOps.exif_transpose(im)
            return to_rgb(im)
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
            raise BadImage("decode_error", exc) from None


def _sniff(data: bytes) -> str:
    """What kind of non-image it is -- never any of its bytes (the file may hold a secret)."""
    head = data[:64].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return "an HTML document"
    if head[:1] in (b"{", b"["):
        return "a JSON/text document"
    return f"not one of the image formats read here ({', '.join(FORMATS)})"


def _to_8bit(im: Image.Image) -> Image.Image:
    """16/32-bit integer or float grayscale -> 8-bit, in integer arithmetic a band of rows at a time
    (a float64 copy of an 8000x8000 scan is 512 MB; this peaks at the 8-bit result plus one band)."""
    arr = np.asarray(im)
    out = np.empty(arr.shape, dtype=np.uint8)
    if im.mode.startswith("I;16"):
        for y in range(0, arr.shape[0], 1024):
            out[y : y + 1024] = (arr[y : y + 1024].astype(np.uint16) >> 8).astype(np.uint8)
        return Image.fromarray(out, "L")
    top = float(arr.max()) if arr.size else 1.0
    top = 255.0 if top <= 255 else top
    for y in range(0, arr.shape[0], 1024):
        band = arr[y : y + 1024]
        if im.mode == "F":
            out[y : y + 1024] = np.clip(band * np.float32(255.0 / top), 0, 255).astype(np.uint8)
        else:
            out[y : y + 1024] = np.clip(band.astype(np.int64) * 255 // int(top), 0, 255).astype(np.uint8)
    return Image.fromarray(out, "L")


def to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB; transparency is composited on white (the usual page colour)."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        im = _to_8bit(im)
    if (im.mode == "P" and "transparency" in im.info) or im.mode in ("PA", "LA", "RGBA", "La", "RGBa"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB") if im.mode != "RGB" else im
