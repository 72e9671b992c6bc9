"""Images: the single source of truth for decoding and preprocessing, in training, verification
and serving. numpy + Pillow only, never TensorFlow or Keras."""

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Larger images are refused before decoding: a 40-megapixel photo is plausible, a 1-gigapixel
# PNG of 100 KB is a decompression bomb.
MAX_PIXELS = 40_000_000
# The formats the function means to accept; Pillow's other decoders (PGM, SGI, JPEG 2000, PSD, ...)
# and TIFF (libtiff) are attack surface nobody needs for a photo. JPEG covers MPO, the multi-picture
# JPEG of phones.
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")


class ImageError(ValueError):
    """The bytes are not an image we can read. status is the HTTP status the function answers."""

    status = 422


class NotAnImage(ImageError):
    status = 415


class ImageTooLarge(ImageError):
    status = 413


def open_image(source: "str | Path | bytes", max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open a path or bytes lazily; refuse non-images, other formats and oversized ones before decoding."""
    fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    try:
        img = Image.open(fp, formats=FORMATS)
    except UnidentifiedImageError:
        raise NotAnImage(f"not an image (unrecognised format; accepted: {', '.join(FORMATS)})") from None
    except Image.DecompressionBombError as e:
        raise ImageTooLarge(f"image too large: {e}") from None
    except Exception as e:  # hostile bytes make Pillow's parsers raise nearly anything (ValueError, struct.error, ...)
        raise ImageError(f"cannot read image: {type(e).__name__}: {e}") from None
    w, h = img.size
    if w * h > max_pixels:
        raise ImageTooLarge(f"image too large: {w}x{h} pixels (limit {max_pixels:,})")
    return img


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB: transparency onto white, 16-bit scaled, CMYK converted."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        if arr.max(initial=0) > 255:
            arr = arr / 257.0
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def load_image(source: "str | Path | bytes", size: int) -> np.ndarray:
    """Decode, EXIF-orient, convert to RGB and resize to size x size. Returns uint8 HxWx3."""
    img = open_image(source)
    try:
        # draft() lets the JPEG decoder skip detail it would throw away; result stays >= size.
        img.draft("RGB", (size, size))
        img = ImageOps.exif_transpose(img)
        img = to_rgb(img)
        img = img.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(img, dtype=np.uint8)
    except Image.DecompressionBombError as e:
        raise ImageTooLarge(f"image too large: {e}") from None
    except Exception as e:  # as in open_image: any decoder failure on the client's bytes is the client's 4xx
        raise ImageError(f"cannot decode image: {e}") from None


def scale(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels to the Xception input range [-1, 1]."""
    return pixels.astype(np.float32) / 127.5 - 1.0


def preprocess(source: "str | Path | bytes", size: int) -> np.ndarray:
    """The one preprocessing function: image file or bytes to a float32 (1, size, size, 3) batch."""
    return scale(load_image(source, size))[None]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)
