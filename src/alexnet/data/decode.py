"""One image file -> the stored uint8 image of §2: decoded by content, RGB, shorter side rescaled, centre crop.

ILSVRC-2012 has files that break loaders trusting the extension or the colour mode (docs/ilsvrc.md): a PNG
named `.JPEG`, CMYK JPEGs, grayscale JPEGs. Pillow identifies the format from the file's bytes, and every
image is converted to the mode the data set needs, so all of them arrive as the same HxWx3 uint8 array.
A 16-bit grey image (a PNG or TIFF, which Pillow opens as I;16 or I) is scaled to 8 bits first: Pillow's own
conversion clips every value above 255, which turns it black and white.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from alexnet.errors import DataError

# What a class folder's image files are called; decoding still goes by content (a PNG may be named .JPEG).
IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
# Pillow raises these for unreadable, truncated or malformed files (SyntaxError from some plugins).
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def decode(path: str | Path, mode: str = "RGB", draft_size: int | None = None) -> Image.Image:
    """The image in `path` in `mode` ("RGB" or "L"), whatever its format, extension or colour mode.

    With `draft_size`, JPEGs are decoded at the smallest power-of-two reduction (1/2, 1/4, 1/8: libjpeg's DCT
    scaling) that keeps both sides >= draft_size: a 2000x1500 photo is decoded at 500x375, about 10x faster,
    and then rescaled as usual. Raises DataError naming the file if it cannot be decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # a bomb is corrupt data, not an image
            with Image.open(path) as img:
                if draft_size is not None and img.format == "JPEG":
                    img.draft(None, (draft_size, draft_size))  # mode unchanged: convert() below does that
                img.load()  # raises on a truncated file (ImageFile.LOAD_TRUNCATED_IMAGES stays False)
                if img.mode == "P" and "transparency" in img.info:
                    img = img.convert("RGBA")  # palette transparency: go through RGBA, as Pillow advises
                if img.mode.startswith("I"):
                    img = eight_bit(img)
                return img.convert(mode)
    except (FileNotFoundError, IsADirectoryError) as e:
        raise DataError(f"{path}: no such image file") from e
    except (*DECODE_ERRORS, Image.DecompressionBombWarning) as e:
        raise DataError(f"{path}: cannot be decoded as an image ({type(e).__name__}: {e})") from e


def eight_bit(img: Image.Image) -> Image.Image:
    """A grey image of Pillow's integer modes as 8-bit L. I;16 is 16 bits: each value x of [0, 65535] becomes
    round(x / 257), so that v * 257 gives v back exactly. I (32-bit integers, as some Pillow versions open a 16-bit
    PNG) is read the same way where a value exceeds 255, and as 8-bit values where none does."""
    x = np.asarray(img, dtype=np.int64)
    if img.mode.startswith("I;16") or x.max(initial=0) > 255:
        x = (np.clip(x, 0, 65535) + 128) // 257
    return Image.fromarray(np.clip(x, 0, 255).astype(np.uint8), "L")


def resize_center_crop(img: Image.Image, size: int) -> Image.Image:
    """§2: rescale so the shorter side is `size`, then crop the central size x size patch."""
    w, h = img.size
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    if (new_w, new_h) != (w, h):
        # antialiased bilinear (Pillow widens the kernel when shrinking), as torchvision's Resize
        img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return img.crop((left, top, left + size, top + size))


def stored_array(path: str | Path, size: int, mode: str = "RGB") -> np.ndarray:
    """The file as the store keeps it and training reads it: uint8 CxSxS (C=3 for RGB, 1 for L)."""
    array = np.asarray(resize_center_crop(decode(path, mode, draft_size=size), size), dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def stored_image(path: str | Path, size: int, mode: str = "RGB") -> torch.Tensor:
    return torch.from_numpy(stored_array(path, size, mode))
