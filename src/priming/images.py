"""The one image decoder, shared by the encoders, the data readers and the corpus.

Every image becomes an 8-bit RGB ``PIL.Image``: EXIF orientation applied, palette,
grey, alpha (composited on white), CMYK, 16-bit and float modes converted, and images
over a pixel limit refused before they are decoded (decompression bombs).
"""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np

from priming._optional import require
from priming.errors import DataError

__all__ = ["load_image", "to_rgb", "DEFAULT_MAX_PIXELS"]

# Pillow's own default limit (about 89.5 megapixels, a 1024 MiB RGBA image).
DEFAULT_MAX_PIXELS = 89_478_485


def _pil():
    Image = require("PIL.Image", "clip", package="pillow")
    ImageOps = require("PIL.ImageOps", "clip", package="pillow")
    return Image, ImageOps


def to_rgb(img) -> Any:
    """Convert a PIL image of any mode to 8-bit RGB (alpha composited on white)."""
    Image, _ = _pil()
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        hi = float(a.max()) if a.size else 0.0
        if mode == "F" and hi <= 1.0:
            a = a * 255.0
        elif hi > 255.0:
            a = a / (65535.0 / 255.0) if hi <= 65535.0 else a * (255.0 / hi)
        grey = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), mode="L")
        return grey.convert("RGB")
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return img.convert("RGB")


def load_image(source: Any, max_pixels: int | None = DEFAULT_MAX_PIXELS, name: str | None = None):
    """Decode ``source`` (a path, bytes, a binary file object or a PIL image) to RGB.

    Raises
    ------
    DataError
        If the file is missing, not an image, truncated or corrupt, or has more than
        ``max_pixels`` pixels; the message names the file and the reason.
    """
    Image, ImageOps = _pil()
    if isinstance(source, Image.Image):
        return to_rgb(ImageOps.exif_transpose(source) or source)
    label = name or (os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<bytes>")
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            fh = io.BytesIO(source)
        elif isinstance(source, (str, os.PathLike)):
            fh = open(source, "rb")  # noqa: SIM115 - closed below
        else:
            fh = source
        try:
            with Image.open(fh) as img:
                w, h = img.size
                if max_pixels is not None and w * h > max_pixels:
                    raise DataError(
                        f"{label}: image of {w}x{h} = {w * h} pixels exceeds the limit of "
                        f"{max_pixels} pixels (decompression-bomb guard)"
                    )
                img.load()
                img = ImageOps.exif_transpose(img) or img
                out = to_rgb(img)
                out.load()
                return out.copy() if out is img else out
        finally:
            if fh is not source:
                fh.close()
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{label}: file not found") from None
    except Image.UnidentifiedImageError:
        raise DataError(f"{label}: not an image (unrecognised format)") from None
    except Image.DecompressionBombError as exc:
        raise DataError(f"{label}: {exc} (decompression-bomb guard)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        reason = str(exc) or type(exc).__name__
        raise DataError(f"{label}: cannot decode image: {reason}") from None
