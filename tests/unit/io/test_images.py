"""PNG and JPEG images (fairaudit.io.images; docs/images.md), read alone and as the DICOM
reader reads a folder: by content, in the same scan and worker pool.

The images are written here with Pillow from the pixel arrays of sample_data's DICOM files
(read with pydicom and rescaled); the expected grey image of each is computed here with
numpy from the array written (luminance with the BT.601 weights written out by hand, in
float64), never with the code under test.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image, ImageFile

from fairaudit.io.dicom import DecodeOptions, iter_outcomes, read_file
from fairaudit.io.images import ImageError, image_info, read_image, sniff

from _helpers.paths import SAMPLE


@pytest.fixture(scope="module")
def pixels() -> list[np.ndarray]:
    """Stored pixel arrays (uint16, 12 bits used) of the first three sample DICOM files."""
    files = sorted(p for p in (SAMPLE / "images").rglob("*") if p.is_file())[:3]
    return [pydicom.dcmread(p).pixel_array.astype(np.uint16) for p in files]


def _to8(a: np.ndarray) -> np.ndarray:
    return np.round(a.astype(np.float64) / max(1, int(a.max())) * 255).astype(np.uint8)


def _luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 by hand, in float64."""
    rgb = rgb.astype(np.float64)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def _read(path: Path, **kw) -> object:
    return read_file(path, path.parent, header_only=False, **kw)


# ----------------------------------------------------------------------------- conversion rule
def test_8_bit_grey(tmp_path: Path, pixels) -> None:
    grey = _to8(pixels[0])
    Image.fromarray(grey).save(tmp_path / "a.png")
    image, info = read_image(tmp_path / "a.png")
    assert (info.format, info.mode, info.bits, info.conversion) == ("png", "L", 8, "grey")
    assert image.dtype == np.float32 and image.shape == grey.shape
    np.testing.assert_array_equal(image, grey.astype(np.float64))


def test_16_bit_grey_exact(tmp_path: Path, pixels) -> None:
    stored = pixels[0] * 16 + 7  # the whole 16-bit range, odd values
    Image.fromarray(stored).save(tmp_path / "a.png")
    assert Image.open(tmp_path / "a.png").mode == "I;16"
    image, info = read_image(tmp_path / "a.png")
    assert (info.mode, info.bits, info.conversion) == ("I;16", 16, "grey")
    np.testing.assert_array_equal(image, stored.astype(np.float64))


def test_rgb_and_rgba_by_bt601_luminance(tmp_path: Path, pixels) -> None:
    rgb = np.stack([_to8(p) for p in pixels], axis=-1)
    assert len({p.tobytes() for p in rgb.transpose(2, 0, 1)}) == 3  # three different channels
    expected = _luma(rgb)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    alpha = (np.arange(rgb[..., 0].size).reshape(rgb.shape[:2]) % 256).astype(np.uint8)
    Image.fromarray(np.dstack([rgb, alpha])).save(tmp_path / "rgba.png")
    for name, mode in (("rgb.png", "RGB"), ("rgba.png", "RGBA")):
        image, info = read_image(tmp_path / name)
        assert (info.mode, info.conversion, info.samples) == (mode, "luminance", len(mode))
        np.testing.assert_allclose(image, expected, rtol=0, atol=2e-4)  # float32 rounding
    # alpha dropped, never blended: the same image with or without it
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png")[0], read_image(tmp_path / "rgb.png")[0])


def test_palette_via_rgb(tmp_path: Path, pixels) -> None:
    rgb = np.stack([_to8(p) for p in pixels], axis=-1)
    pal = Image.fromarray(rgb).quantize(colors=32)
    pal.save(tmp_path / "p.png")
    index = np.asarray(Image.open(tmp_path / "p.png"))
    table = np.array(pal.getpalette()[: 3 * 256], dtype=np.uint8).reshape(-1, 3)
    image, info = read_image(tmp_path / "p.png")
    assert (info.mode, info.conversion) == ("P", "palette")
    np.testing.assert_allclose(image, _luma(table[index]), rtol=0, atol=2e-4)


def test_one_bit_and_grey_alpha(tmp_path: Path, pixels) -> None:
    binary = pixels[0] > np.median(pixels[0])
    Image.fromarray(binary).save(tmp_path / "b.png")
    image, info = read_image(tmp_path / "b.png")
    assert (info.mode, info.bits, info.conversion) == ("1", 1, "binary")
    np.testing.assert_array_equal(image, binary.astype(np.float64))
    grey = _to8(pixels[1])
    Image.fromarray(np.dstack([grey, np.full_like(grey, 9)]), mode="LA").save(tmp_path / "la.png")
    image, info = read_image(tmp_path / "la.png")
    assert info.mode == "LA" and info.conversion == "grey"
    np.testing.assert_array_equal(image, grey.astype(np.float64))


def test_jpeg_grey_and_colour(tmp_path: Path, pixels) -> None:
    grey = _to8(pixels[0])
    Image.fromarray(grey).save(tmp_path / "g.jpg", quality=95)
    image, info = read_image(tmp_path / "g.jpg")
    assert (info.format, info.mode, info.bits) == ("jpeg", "L", 8)
    assert np.abs(image - grey).mean() < 2  # lossy, but close to what was written
    rgb = np.stack([_to8(p) for p in pixels], axis=-1)
    Image.fromarray(rgb).save(tmp_path / "c.jpg", quality=95)
    image, info = read_image(tmp_path / "c.jpg")
    decoded = np.asarray(Image.open(tmp_path / "c.jpg"))  # the JPEG decoder's own RGB
    assert info.conversion == "luminance"
    np.testing.assert_allclose(image, _luma(decoded), rtol=0, atol=2e-4)


def test_exif_orientation_is_not_applied(tmp_path: Path, pixels) -> None:
    grey = _to8(pixels[0][:, :100])
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(grey).save(tmp_path / "o.jpg", quality=100, exif=exif)
    image, _ = read_image(tmp_path / "o.jpg")
    assert image.shape == grey.shape  # as stored, not rotated


# ----------------------------------------------------------------------------- refusals
def _png(width: int, height: int, bit_depth: int = 8, color_type: int = 0, data: bytes = b"") -> bytes:
    """A PNG file written byte by byte: header, one IDAT (zlib of `data`), IEND."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(data))
        + chunk(b"IEND", b"")
    )


def test_oversized_header_refused_before_decoding(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(_png(100_000, 100_000))  # 10**10 pixels declared in 60 bytes
    before = Image.MAX_IMAGE_PIXELS
    for header_only in (True, False):
        o = read_file(big, tmp_path, header_only=header_only)
        assert o.status == "failed" and o.file_format == "png"
        assert "too large" in o.reason and "max_pixels" in o.reason, o.reason
    assert Image.MAX_IMAGE_PIXELS == before and ImageFile.LOAD_TRUNCATED_IMAGES is False  # restored
    # Below Pillow's own decompression-bomb limit, the image's size against --max-pixels.
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(tmp_path / "s.png")
    o = _read(tmp_path / "s.png", options=DecodeOptions(max_pixels=1999))
    assert (o.status, o.reason) == (
        "failed",
        "too large: 40x50 pixels x 1 frame(s) x 1 sample(s) = 2000 exceeds max_pixels 1999",
    )
    assert _read(tmp_path / "s.png", options=DecodeOptions(max_pixels=2000)).status == "ok"
    with pytest.raises(ImageError, match="too large"):
        image_info(big)


def test_file_size_limit(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(tmp_path / "s.png")
    size = (tmp_path / "s.png").stat().st_size
    o = _read(tmp_path / "s.png", options=DecodeOptions(max_file_size=size - 1))
    assert o.status == "failed" and o.reason.startswith(f"file too large: {size} bytes exceeds max_file_size")


def test_truncated_and_corrupt_files_fail_with_a_reason(tmp_path: Path, pixels) -> None:
    Image.fromarray(pixels[0]).save(tmp_path / "good.png")
    Image.fromarray(_to8(pixels[0])).save(tmp_path / "good.jpg", quality=90)
    png, jpg = (tmp_path / "good.png").read_bytes(), (tmp_path / "good.jpg").read_bytes()
    (tmp_path / "cut.png").write_bytes(png[: len(png) // 2])
    (tmp_path / "cut.jpg").write_bytes(jpg[: len(jpg) // 2])
    (tmp_path / "head.png").write_bytes(png[:20])
    # damaged compressed data, the file complete (IEND in place)
    at = png.index(b"IDAT") + 40
    (tmp_path / "bad.png").write_bytes(png[:at] + bytes(b ^ 0x5A for b in png[at : at + 64]) + png[at + 64 :])
    (tmp_path / "bad_header.png").write_bytes(_png(0, 0))
    reasons = {}
    for name in ("cut.png", "cut.jpg", "head.png", "bad.png", "bad_header.png"):
        o = _read(tmp_path / name)
        assert o.status == "failed" and o.image is None and o.reason, name
        assert "\n" not in o.reason and str(tmp_path) not in o.reason
        reasons[name] = o.reason
    assert reasons["cut.png"] == "truncated or damaged PNG: it does not end with the IEND chunk"
    assert reasons["cut.jpg"].startswith("truncated or damaged JPEG")
    assert reasons["bad.png"].startswith("cannot decode PNG")
    for name in ("cut.png", "cut.jpg"):  # a header-only read refuses them too
        assert read_file(tmp_path / name, tmp_path, header_only=True).status == "failed"


def test_animated_images_refused(tmp_path: Path, pixels) -> None:
    frames = [Image.fromarray(_to8(p)) for p in pixels]
    frames[0].save(tmp_path / "anim.png", save_all=True, append_images=frames[1:])
    for header_only in (True, False):
        o = read_file(tmp_path / "anim.png", tmp_path, header_only=header_only)
        assert o.status == "failed" and o.reason.startswith("animated or multi-frame PNG (3 frames)"), (
            o.reason
        )


# ----------------------------------------------------------------------------- by content, in the scan
def test_recognized_by_content_not_name(tmp_path: Path, pixels) -> None:
    Image.fromarray(pixels[0]).save(tmp_path / "scan.dcm", format="PNG")
    Image.fromarray(_to8(pixels[1])).save(tmp_path / "IM0001", format="JPEG")
    o = _read(tmp_path / "scan.dcm")
    assert (o.status, o.file_format, o.spacing) == ("ok", "png", None)
    assert (o.header["Rows"], o.header["Columns"]) == pixels[0].shape
    assert all(v is None for k, v in o.header.items() if k not in ("Rows", "Columns"))
    assert _read(tmp_path / "IM0001").file_format == "jpeg"
    assert sniff(b"\x89PNG\r\n\x1a\n....") == "png" and sniff(b"\xff\xd8\xff\xe0") == "jpeg"
    assert sniff(b"GIF89a") is None


def test_dicom_preamble_wins_over_an_image_signature(tmp_path: Path) -> None:
    """A DICOM preamble is free bytes; with DICM at 128 the file is DICOM whatever it holds."""
    src = sorted(p for p in (SAMPLE / "images").rglob("*.dcm"))[0]
    data = bytearray(src.read_bytes())
    assert data[128:132] == b"DICM"
    data[:8] = b"\x89PNG\r\n\x1a\n"
    (tmp_path / "x.dcm").write_bytes(bytes(data))
    o = _read(tmp_path / "x.dcm")
    assert (o.status, o.file_format) == ("ok", "dicom")


@pytest.mark.parametrize("workers", [1, 2])
def test_one_scan_of_a_mixed_folder(tmp_path: Path, pixels, workers: int) -> None:
    """DICOM, PNG and JPEG files and others in one folder, one outcome each, in path order;
    the PNG of a DICOM file's decoded values decodes to the very same array."""
    import shutil

    src = sorted(p for p in (SAMPLE / "images").rglob("*.dcm"))[0]
    shutil.copy(src, tmp_path / "a.dcm")
    decoded = _read(tmp_path / "a.dcm").image
    Image.fromarray(decoded.astype(np.uint16)).save(tmp_path / "b.png")
    Image.fromarray(_to8(pixels[1])).save(tmp_path / "c.jpg")
    (tmp_path / "d.png").write_bytes((tmp_path / "b.png").read_bytes()[:100])
    (tmp_path / "e.txt").write_text("notes\n")
    outcomes = list(
        iter_outcomes(tmp_path, header_only=False, workers=workers, progress=False, options=DecodeOptions())
    )
    got = [(o.path, o.status, o.file_format) for o in outcomes]
    assert got == [
        ("a.dcm", "ok", "dicom"),
        ("b.png", "ok", "png"),
        ("c.jpg", "ok", "jpeg"),
        ("d.png", "failed", "png"),
        ("e.txt", "skipped", ""),
    ]
    np.testing.assert_array_equal(outcomes[1].image, decoded)
    heads = list(iter_outcomes(tmp_path, header_only=True, workers=workers, progress=False))
    assert [(o.path, o.status) for o in heads] == [(p, s) for p, s, _ in got]
