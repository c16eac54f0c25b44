"""PNG and JPEG images: recognized by content, read with Pillow into one float32 (H, W) image.

A folder of images is scanned by the DICOM reader's own walk and worker pool
(fairaudit.io.dicom): `read_file` looks at each file's first bytes and hands a PNG
(`\\x89PNG\\r\\n\\x1a\\n`) or a JPEG (`\\xff\\xd8\\xff`) to `read_image` here, so the
decoded array goes through the very same preprocessing as a DICOM pixel array. The
rules (docs/images.md):

- grayscale (Pillow modes L, I;16, I) as stored; 1-bit as 0/1; grey + alpha (LA): the grey;
- RGB and RGBA: ITU-R BT.601 luminance 0.299 R + 0.587 G + 0.114 B on the stored scale,
  alpha dropped (the rule of DICOM colour images, docs/dicom.md); palette (P, PA) and the
  other colour modes (CMYK, YCbCr JPEGs): converted to RGB by Pillow first;
- values as stored: no EXIF orientation, gamma or ICC profile is applied, and no
  MONOCHROME1-style inversion (a PNG or JPEG has none);
- no spacing (the formats carry no calibrated one): None, unless the command is given one;
- refused, never fatal: a file larger than `max_file_size`, an image of more than
  `max_pixels` values (from its header, before decoding), an animated or multi-frame
  image, a truncated or corrupt file.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from fairaudit.io._file_error import FileError, short_reason

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
#: The formats read here, by the name `sniff` gives them.
FORMATS = ("png", "jpeg")
#: The end of every complete PNG: its IEND chunk (length 0, type, CRC).
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
#: A JPEG's end-of-image marker must lie within its last bytes: entropy-coded data never
#: holds 0xFF 0xD9 (0xFF is stuffed as 0xFF 0x00), so a file cut in its scan has none there.
_JPEG_EOI = b"\xff\xd9"
_JPEG_TAIL = 4096
_PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG"}
# ITU-R BT.601 luma weights, as for DICOM colour images (fairaudit.io.dicom._decode._luma).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
_GREY_MODES = frozenset({"L", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


class ImageError(FileError):
    """A PNG or JPEG file that cannot be used: `status` ("failed") and a one-line `reason`."""


@dataclass(frozen=True)
class ImageInfo:
    """What the header of a PNG or JPEG file says, and how its pixels become one grey image."""

    format: str  # "png" | "jpeg"
    mode: str  # Pillow's mode as read: L, I;16, RGB, RGBA, P, 1, ...
    rows: int
    cols: int
    bits: int  # bits per sample as read (1, 8, 16)
    samples: int  # bands as read (1 grey, 2 grey + alpha, 3 RGB, 4 RGBA)
    conversion: str  # "grey" | "binary" | "luminance" | "palette" | "<mode> via RGB"


def sniff(head: bytes) -> str | None:
    """A file's format from its first bytes (its signature): "png", "jpeg" or None."""
    if head.startswith(PNG_MAGIC):
        return "png"
    if head.startswith(JPEG_MAGIC):
        return "jpeg"
    return None


@contextmanager
def _pillow_limits(max_pixels: int) -> Iterator[None]:
    """Pillow's own decompression-bomb limit at `max_pixels` (it refuses at twice that) and
    truncated images refused, for the length of one read; both are process-wide settings,
    restored after it."""
    from PIL import Image, ImageFile

    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    Image.MAX_IMAGE_PIXELS = int(max_pixels)
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            # Between max_pixels and twice it Pillow only warns: refused below, from the size.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = before


def _bits(im: Image.Image, kind: str) -> int:
    mode = im.mode
    if mode == "1":
        return 1
    if mode.startswith("I;16") or (mode == "I" and kind == "png"):
        return 16
    if mode in ("I", "F"):
        return 32
    return 8


def _conversion(mode: str) -> str:
    if mode == "1":
        return "binary"
    if mode in _GREY_MODES or mode == "LA":
        return "grey"
    if mode in ("RGB", "RGBA", "RGBX"):
        return "luminance"
    if mode in ("P", "PA"):
        return "palette"
    return f"{mode} via RGB"


def _check_tail(fh: BinaryIO, kind: str, size: int) -> None:
    """A file cut short is refused from its last bytes, in header-only reads too."""
    tail_len = len(_PNG_END) if kind == "png" else min(size, _JPEG_TAIL)
    fh.seek(max(0, size - tail_len))
    tail = fh.read(tail_len)
    if kind == "png" and tail != _PNG_END:
        raise ImageError("truncated or damaged PNG: it does not end with the IEND chunk")
    if kind == "jpeg" and _JPEG_EOI not in tail:
        raise ImageError(f"truncated or damaged JPEG: no end-of-image marker in its last {_JPEG_TAIL} bytes")
    fh.seek(0)


def _open(fh: BinaryIO, kind: str, max_pixels: int) -> Image.Image:
    """Pillow's image of `fh` with its header checked: size and frames, nothing decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        im = Image.open(fh, formats=[_PIL_FORMATS[kind]])
    except Image.DecompressionBombError:
        raise ImageError(
            f"too large: the image declares more than twice max_pixels {max_pixels} pixels"
        ) from None
    except UnidentifiedImageError:
        raise ImageError(f"cannot read the {kind.upper()} header (damaged file)") from None
    cols, rows = im.size
    frames = int(getattr(im, "n_frames", 1) or 1)
    samples = len(im.getbands())
    n_pixels = rows * cols * frames * samples
    if min(rows, cols) < 1:
        raise ImageError(f"empty image: {rows}x{cols}")
    if n_pixels > max_pixels:
        raise ImageError(
            f"too large: {rows}x{cols} pixels x {frames} frame(s) x {samples} sample(s) = {n_pixels} "
            f"exceeds max_pixels {max_pixels}"
        )
    if frames > 1 or getattr(im, "is_animated", False):
        raise ImageError(
            f"animated or multi-frame {kind.upper()} ({frames} frames): only single images are read"
        )
    return im


def _describe(im: Image.Image, kind: str) -> ImageInfo:
    cols, rows = im.size
    return ImageInfo(
        format=kind,
        mode=im.mode,
        rows=rows,
        cols=cols,
        bits=_bits(im, kind),
        samples=len(im.getbands()),
        conversion=_conversion(im.mode),
    )


def luminance(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of (..., 3+) samples in float32 (alpha, a 4th sample, ignored)."""
    rgb = np.asarray(rgb)
    out = rgb[..., 0].astype(np.float32) * np.float32(LUMA_WEIGHTS[0])
    out += rgb[..., 1].astype(np.float32) * np.float32(LUMA_WEIGHTS[1])
    out += rgb[..., 2].astype(np.float32) * np.float32(LUMA_WEIGHTS[2])
    return out


def _grey(im: Image.Image) -> np.ndarray:
    """The decoded image as float32 (H, W) by the module's conversion rule."""
    mode = im.mode
    if mode == "1":
        return np.asarray(im, dtype=bool).astype(np.float32)
    if mode in _GREY_MODES:
        return np.asarray(im).astype(np.float32)
    if mode == "LA":
        return np.asarray(im)[..., 0].astype(np.float32)
    if mode not in ("RGB", "RGBA", "RGBX"):  # P, PA, CMYK, YCbCr, LAB, HSV...: Pillow's RGB
        im = im.convert("RGB")
    return luminance(np.asarray(im))


def image_info(path: Path | str, *, max_pixels: int = 2**28, max_file_size: int | None = None) -> ImageInfo:
    """The header of a PNG or JPEG file, checked as `read_image` checks it, no pixel decoded.
    ImageError when it is refused."""
    return _read(Path(path), max_pixels, max_file_size, decode=False)[1]


def read_image(
    path: Path | str, *, max_pixels: int = 2**28, max_file_size: int | None = None
) -> tuple[np.ndarray, ImageInfo]:
    """(float32 (H, W) image, info) of a PNG or JPEG file by the module's rules. ImageError
    (never another exception for a bad file) when it is refused."""
    image, info = _read(Path(path), max_pixels, max_file_size, decode=True)
    assert image is not None
    return image, info


def _read(
    path: Path, max_pixels: int, max_file_size: int | None, *, decode: bool
) -> tuple[np.ndarray | None, ImageInfo]:
    try:
        size = os.stat(path).st_size
        with open(path, "rb") as fh:
            kind = sniff(fh.read(len(PNG_MAGIC)))
            if kind is None:
                raise ImageError("not a PNG or JPEG file", status="skipped")
            if max_file_size is not None and size > max_file_size:
                raise ImageError(
                    f"file too large: {size} bytes exceeds max_file_size {max_file_size} "
                    "(raise it with --max-file-size)"
                )
            _check_tail(fh, kind, size)
            with _pillow_limits(max_pixels):
                im = _open(fh, kind, max_pixels)
                info = _describe(im, kind)
                if not decode:
                    return None, info
                try:
                    im.load()
                    image = _grey(im)
                except ImageError:
                    raise
                except Exception as exc:  # Pillow's errors for damaged data vary by format
                    raise ImageError(short_reason(exc, f"cannot decode {kind.upper()}")) from None
    except ImageError:
        raise
    except MemoryError:
        raise ImageError("out of memory while decoding the image") from None
    except Exception as exc:  # every failure of one file is a reason, never a crash
        raise ImageError(short_reason(exc, "cannot read the image")) from None
    if image.ndim != 2:
        raise ImageError(f"not a 2-D image after conversion (shape {tuple(image.shape)})")
    return np.ascontiguousarray(image, dtype=np.float32), info
