"""Issue 19, points 3 and 4: decompression bombs and files that stall the header scan.

Every hostile file is built here: valid codestreams are encoded with the installed
plugins (CharLS, OpenJPEG, Pillow, pydicom's RLE encoder) or taken from pydicom's test
files, then their SOF / SIZ / RLE header bytes are edited. The dimensions read by
fairaudit.io.dicom._codestream are checked against parsers and decoders we trust (the
plugins' own header readers and the decoded arrays' shapes); refusals are checked to come
before any decoding, with the reason, in both read modes, and end to end through the CLI
(exit code, manifest.csv row, time and peak memory).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

import fairaudit.io.dicom._decode as decode_module
from fairaudit._util.sizes import parse_size
from fairaudit.io.dicom import DecodeOptions, read_file
from fairaudit.io.dicom import _bounded as bounded
from fairaudit.io.dicom import _codestream as cs
from fairaudit.io.dicom._bounded import DEFAULT_MAX_FILE_SIZE, ZERO_RUN

from _helpers import cli
from _helpers.dicom import dicom_dataset, write_dicom
from _helpers.paths import SAMPLE

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
BOMB = "the codestream is 24000 x 24000 pixels but the header says 64 x 64"


def image(rows: int = 64, cols: int = 64, dtype=np.uint16) -> np.ndarray:
    top = 4095 if dtype == np.uint16 else 255
    return ((np.arange(rows * cols).reshape(rows, cols) * 7) % top).astype(dtype)


def encapsulated_dicom(
    path: Path,
    frames: list[bytes],
    syntax,
    rows: int = 64,
    cols: int = 64,
    *,
    samples: int = 1,
    bits: int = 16,
    bot: bool = False,
) -> Path:
    """A DICOM file whose header says rows x cols and whose pixel data is `frames`, one
    fragment each (identifying values planted, to check reasons never quote them)."""
    shape = (rows, cols) if samples == 1 else (rows, cols, samples)
    ds = dicom_dataset(
        np.zeros(shape, np.uint8 if bits == 8 else np.uint16), syntax=syntax, modality="DX",
        photometric="MONOCHROME2" if samples == 1 else "RGB", bits_stored=bits if bits == 8 else 12,
        PatientID="MRN4455667", PatientBirthDate=None, StudyInstanceUID=None, SeriesInstanceUID=None,
    )  # fmt: skip
    if len(frames) > 1:
        ds.NumberOfFrames = len(frames)
    ds.PixelData = encapsulate(frames, has_bot=bot)
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


def _sof(stream: bytes) -> int:
    """Offset of the first SOFn / SOF55 marker, walked by segment lengths (test's own walk)."""
    pos = 2
    while stream[pos + 1] not in cs._SOF:
        pos += 2 + struct.unpack(">H", stream[pos + 2 : pos + 4])[0]
    return pos


def forge_jpeg(stream: bytes, rows: int, cols: int, components: int | None = None) -> bytes:
    out = bytearray(stream)
    pos = _sof(out)
    struct.pack_into(">HH", out, pos + 5, rows, cols)
    if components is not None:
        out[pos + 9] = components
    return bytes(out)


def forge_j2k(stream: bytes, rows: int, cols: int) -> bytes:
    out = bytearray(stream)
    siz = out.index(b"\xff\x4f\xff\x51") + 4
    xo, yo = struct.unpack(">II", out[siz + 12 : siz + 20])
    struct.pack_into(">II", out, siz + 4, cols + xo, rows + yo)
    struct.pack_into(">II", out, siz + 20, cols + xo, rows + yo)  # one tile: a header openjpeg reads
    if out.startswith(b"\x00\x00\x00\x0cjP  "):  # JP2: its image header box says the same
        ihdr = out.index(b"ihdr") + 4
        struct.pack_into(">II", out, ihdr, rows, cols)
    return bytes(out)


def jpeg_ls(img: np.ndarray) -> bytes:
    jls = pytest.importorskip("jpeg_ls")
    return bytes(jls.encode(img))


def j2k(img: np.ndarray, jp2: bool = False) -> bytes:
    openjpeg = pytest.importorskip("openjpeg")
    return bytes(openjpeg.encode(img, bits_stored=12, codec_format=1 if jp2 else 0))


def baseline_jpeg(img8: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img8).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def pydicom_frame(name: str) -> bytes:
    ds = pydicom.dcmread(TEST_FILES / name)
    from pydicom.encaps import generate_frames

    return next(generate_frames(ds.PixelData, number_of_frames=1))


def rle_frame(img: np.ndarray) -> bytes:
    from pydicom.pixels.encoders import RLELosslessEncoder

    return RLELosslessEncoder.encode(
        img,
        rows=img.shape[0],
        columns=img.shape[1],
        samples_per_pixel=1,
        bits_allocated=16,
        bits_stored=12,
        pixel_representation=0,
        photometric_interpretation="MONOCHROME2",
        number_of_frames=1,
        encoding_plugin="pydicom",
    )


def _read(path: Path, header_only: bool, **options):
    return read_file(path, path.parent, header_only=header_only, options=DecodeOptions(**options))


@pytest.fixture
def no_decoding(monkeypatch):
    """Any call into the decoders fails the test: refusals must come before decoding."""

    def refuse(*args, **kwargs):
        raise AssertionError("pixels decoded although the codestream was refused")

    monkeypatch.setattr(decode_module, "decode_pixels", refuse)


# --------------------------------------------------------------------------- dimensions


def _trusted_jpeg(stream: bytes) -> tuple[int, int, int]:
    from pydicom.pixels.utils import _get_jpg_parameters

    p = _get_jpg_parameters(stream)
    return p["height"], p["width"], p["components"]


def _trusted_j2k(stream: bytes) -> tuple[int, int, int]:
    openjpeg = pytest.importorskip("openjpeg")
    p = openjpeg.get_parameters(stream)
    return p["rows"], p["columns"], p["samples_per_pixel"]


@pytest.mark.parametrize(
    "make, parse, trusted",
    [
        (lambda: jpeg_ls(image(48, 80)), cs.jpeg_dimensions, _trusted_jpeg),
        (lambda: baseline_jpeg(image(48, 80, np.uint8)), cs.jpeg_dimensions, _trusted_jpeg),
        (lambda: pydicom_frame("SC_rgb_jpeg_gdcm.dcm"), cs.jpeg_dimensions, _trusted_jpeg),  # SOF3, RGB
        (lambda: pydicom_frame("JPGExtended.dcm"), cs.jpeg_dimensions, _trusted_jpeg),  # SOF1
        (lambda: pydicom_frame("SC_rgb_jpeg_dcmtk.dcm"), cs.jpeg_dimensions, _trusted_jpeg),  # 3 components
        (lambda: j2k(image(48, 80)), cs.j2k_dimensions, _trusted_j2k),
        (lambda: j2k(image(48, 80), jp2=True), cs.j2k_dimensions, _trusted_j2k),
        (lambda: pydicom_frame("MR_small_jp2klossless.dcm"), cs.j2k_dimensions, _trusted_j2k),
    ],
)
def test_dimensions_agree_with_trusted_parsers(make, parse, trusted) -> None:
    stream = make()
    dims = parse(lambda n: stream[:n])
    assert (dims.rows, dims.columns, dims.components) == trusted(stream)
    forged = (
        forge_j2k(stream, 24000, 23000) if parse is cs.j2k_dimensions else forge_jpeg(stream, 24000, 23000)
    )
    dims = parse(lambda n: forged[:n])
    assert (dims.rows, dims.columns) == (24000, 23000) == trusted(forged)[:2]


def test_dimensions_of_valid_streams_are_the_decoded_shapes() -> None:
    jls = pytest.importorskip("jpeg_ls")
    openjpeg = pytest.importorskip("openjpeg")
    img = image(48, 80)
    streams = (
        (jpeg_ls(img), cs.jpeg_dimensions, lambda s: jls.decode(np.frombuffer(s, np.uint8))),
        (j2k(img), cs.j2k_dimensions, openjpeg.decode),
        (j2k(img, jp2=True), cs.j2k_dimensions, openjpeg.decode),
    )
    for stream, parse, decode in streams:
        dims = parse(lambda n, s=stream: s[:n])
        assert (dims.rows, dims.columns) == decode(stream).shape == img.shape


# --------------------------------------------------------------------------- bombs


BOMBS = {
    "jpeg-ls": (lambda: forge_jpeg(jpeg_ls(image()), 24000, 24000), JPEGLSLossless, 16),
    "jpeg-baseline": (
        lambda: forge_jpeg(baseline_jpeg(image(dtype=np.uint8)), 24000, 24000),
        JPEGBaseline8Bit,
        8,
    ),
    "jpeg-lossless": (
        lambda: forge_jpeg(pydicom_frame("SC_rgb_jpeg_gdcm.dcm"), 24000, 24000),
        JPEGLosslessSV1,
        8,
    ),
    "jpeg-extended": (
        lambda: forge_jpeg(pydicom_frame("JPGExtended.dcm"), 24000, 24000),
        JPEGExtended12Bit,
        16,
    ),
    "j2k": (lambda: forge_j2k(j2k(image()), 24000, 24000), JPEG2000Lossless, 16),
    "jp2": (lambda: forge_j2k(j2k(image(), jp2=True), 24000, 24000), JPEG2000Lossless, 16),
}


@pytest.mark.parametrize("kind", sorted(BOMBS))
@pytest.mark.parametrize("header_only", [False, True])
def test_bomb_is_refused_from_its_codestream_header(
    tmp_path: Path, kind: str, header_only: bool, no_decoding
) -> None:
    make, syntax, bits = BOMBS[kind]
    path = encapsulated_dicom(tmp_path / "bomb.dcm", [make()], syntax, bits=bits)
    assert path.stat().st_size < 20_000
    start = time.perf_counter()
    o = _read(path, header_only)
    assert time.perf_counter() - start < 2
    assert (o.status, o.reason) == ("failed", BOMB)
    assert o.image is None and o.header is not None and o.header["Rows"] == 64


def test_valid_streams_still_decode_to_the_encoded_image(tmp_path: Path) -> None:
    img = image()
    for name, stream, syntax in (
        ("jls.dcm", jpeg_ls(img), JPEGLSLossless),
        ("j2k.dcm", j2k(img), JPEG2000Lossless),
        ("rle.dcm", rle_frame(img), RLELossless),
    ):
        o = _read(encapsulated_dicom(tmp_path / name, [stream], syntax), header_only=False)
        assert o.status == "ok", (name, o.reason)
        np.testing.assert_array_equal(o.image, img.astype(np.float32))
        assert _read(tmp_path / name, header_only=True).status == "ok"


def test_smaller_codestream_and_component_mismatch_are_refused(tmp_path: Path, no_decoding) -> None:
    small = encapsulated_dicom(tmp_path / "small.dcm", [jpeg_ls(image(32, 64))], JPEGLSLossless)
    assert _read(small, False).reason == "the codestream is 32 x 64 pixels but the header says 64 x 64"
    rgb = forge_jpeg(jpeg_ls(image()), 64, 64, components=3)
    path = encapsulated_dicom(tmp_path / "rgb.dcm", [rgb], JPEGLSLossless)
    assert _read(path, True).reason == (
        "the codestream has 3 component(s) but the header says 1 sample(s) per pixel"
    )


def test_size_set_while_decoding_is_refused(tmp_path: Path, no_decoding) -> None:
    # Height 0 in the frame header: the size would come from a DNL marker (JPEG) or an LSE
    # segment (JPEG-LS), learnt only while decoding.
    path = encapsulated_dicom(tmp_path / "dnl.dcm", [forge_jpeg(jpeg_ls(image()), 0, 64)], JPEGLSLossless)
    o = _read(path, False)
    assert o.status == "failed" and "does not state its size" in o.reason


@pytest.mark.parametrize("bot", [True, False])
def test_a_bomb_in_a_later_frame_is_found(tmp_path: Path, bot: bool, no_decoding) -> None:
    good = jpeg_ls(image())
    frames = [good, forge_jpeg(good, 24000, 24000), good]
    path = encapsulated_dicom(tmp_path / "mf.dcm", frames, JPEGLSLossless, bot=bot)
    for header_only in (False, True):
        o = _read(path, header_only, frames="middle")
        assert (o.status, o.reason) == ("failed", f"frame 2: {BOMB}")


def test_multi_frame_valid_file_still_decodes(tmp_path: Path) -> None:
    frames = [image() + i for i in range(3)]
    path = encapsulated_dicom(tmp_path / "mf.dcm", [jpeg_ls(f) for f in frames], JPEGLSLossless, bot=True)
    o = _read(path, False)
    assert o.status == "ok", o.reason
    np.testing.assert_array_equal(o.image, np.stack(frames).astype(np.float32))


def _rle_with(frame: bytes, count: int | None = None, offsets: dict[int, int] | None = None) -> bytes:
    out = bytearray(frame)
    if count is not None:
        struct.pack_into("<I", out, 0, count)
    for index, value in (offsets or {}).items():
        struct.pack_into("<I", out, 4 * index, value)
    return bytes(out)


def test_rle_segment_table_is_checked_against_the_header(tmp_path: Path, no_decoding) -> None:
    frame = rle_frame(image())
    assert struct.unpack("<I", frame[:4])[0] == 2  # 16-bit: two byte planes (the encoder agrees)
    cases = {
        "count": (
            _rle_with(frame, count=6),
            "the RLE header lists 6 segment(s) but the header's geometry needs 2",
        ),
        "first": (_rle_with(frame, offsets={1: 80}), "the first RLE segment does not start right after"),
        "outside": (_rle_with(frame, offsets={2: 10**7}), "RLE segment 1 lies outside its frame"),
    }
    for name, (data, reason) in cases.items():
        path = encapsulated_dicom(tmp_path / f"{name}.dcm", [data], RLELossless)
        for header_only in (False, True):
            o = _read(path, header_only)
            assert o.status == "failed" and o.reason.startswith(reason), (name, o.reason)
    # A segment far longer than any encoding of 64 x 64 bytes (which could decode to 64 times
    # its size): 64 KiB of replicate runs for a 4 KiB plane.
    long = struct.pack("<16I", 1, 64, *([0] * 14)) + b"\x81\x00" * 32768
    path = encapsulated_dicom(tmp_path / "long.dcm", [long], RLELossless, bits=8)
    assert "RLE segment 1 holds 65536 bytes, more than any encoding of 64 x 64" in _read(path, False).reason


def test_too_many_fragments_are_refused_without_decoding(tmp_path: Path, monkeypatch, no_decoding) -> None:
    monkeypatch.setattr(cs, "MAX_FRAGMENTS", 50)
    stream = jpeg_ls(image())
    fragments = [stream[:2]] + [b""] * 60 + [stream[2:]]
    path = tmp_path / "frag.dcm"
    encapsulated_dicom(path, [stream], JPEGLSLossless)
    ds = pydicom.dcmread(path)
    items = b"".join(
        struct.pack("<HHI", 0xFFFE, 0xE000, len(f)) + f for f in [b"", *fragments]
    )  # offset table, then the fragments
    ds.PixelData = items + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    ds.save_as(path)
    o = _read(path, True)
    assert (o.status, o.reason) == ("failed", "the encapsulated pixel data has more than 50 fragments")


def test_reasons_never_quote_header_values(tmp_path: Path, no_decoding) -> None:
    path = encapsulated_dicom(tmp_path / "bomb.dcm", [BOMBS["jpeg-ls"][0]()], JPEGLSLossless)
    o = _read(path, False)
    assert "DOE" not in o.reason and "MRN" not in o.reason and "bomb" not in o.reason


# --------------------------------------------------------------------------- file size, header parse


def _header_then_zeros(path: Path, size: int) -> Path:
    """A valid preamble and header, then a hole of zeros up to `size` bytes (sparse: no disk)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.PatientID = "MRN4455667"
    ds.Modality = "DX"
    ds.save_as(path, enforce_file_format=True)
    if size > path.stat().st_size:
        with path.open("r+b") as fh:
            fh.truncate(size)
    return path


def test_a_huge_sparse_file_is_refused_from_its_size(tmp_path: Path) -> None:
    path = _header_then_zeros(tmp_path / "huge.dcm", 5 * 2**30)
    assert path.stat().st_size > DEFAULT_MAX_FILE_SIZE
    for header_only in (False, True):
        start = time.perf_counter()
        o = _read(path, header_only)
        assert time.perf_counter() - start < 1
        assert o.status == "failed"
        assert o.reason == (
            f"file too large: {5 * 2**30} bytes exceeds max_file_size {DEFAULT_MAX_FILE_SIZE} "
            "(raise it with --max-file-size)"
        )
    assert _read(path, True, max_file_size=6 * 2**30).reason != o.reason  # the flag moves the limit


@pytest.mark.parametrize("size", [8 * 2**20, 40 * 2**20])  # read in one pass / with deferred values
def test_a_zero_filled_file_under_the_size_limit_ends_its_header_parse(tmp_path: Path, size: int) -> None:
    # Unbounded, pydicom parses each 8 bytes of zeros as one empty element: 40 MiB took ~40 s.
    path = _header_then_zeros(tmp_path / "zeros.dcm", size)
    for header_only in (False, True):
        start = time.perf_counter()
        o = _read(path, header_only)
        elapsed = time.perf_counter() - start
        assert o.status == "failed"
        assert o.reason.startswith(f"the header runs into zeros ({ZERO_RUN} empty elements in a row)")
        assert elapsed < 2, elapsed


def test_a_header_of_endless_elements_ends_at_the_read_bound(tmp_path: Path, monkeypatch) -> None:
    # Not zeros: 300,000 empty private elements (8 bytes each, all non-zero) after a valid
    # header. The bound is lowered to keep the test short; the default (1,000,000 reads)
    # ends such a file after about 8 s.
    monkeypatch.setattr(bounded, "MAX_HEADER_READS", 100_000)
    path = _header_then_zeros(tmp_path / "filler.dcm", 0)
    path.write_bytes(path.read_bytes() + struct.pack("<HH2sH", 0x0009, 0x1010, b"LO", 0) * 300_000)
    for header_only in (False, True):
        start = time.perf_counter()
        o = _read(path, header_only)
        assert time.perf_counter() - start < 10
        assert (o.status, o.reason) == (
            "failed",
            "the header does not end within 100000 reads (far more elements than any image header has)",
        )


def test_a_long_real_header_is_within_the_bounds(tmp_path: Path) -> None:
    # 2,000 sequence items of 6 elements (a large enhanced multi-frame header) still read.
    ds = pydicom.dcmread(encapsulated_dicom(tmp_path / "long.dcm", [jpeg_ls(image())], JPEGLSLossless))
    items = []
    for i in range(2000):
        item = Dataset()
        item.InstanceNumber = i
        item.ImagePositionPatient = [0, 0, i]
        item.SliceLocation = i
        item.WindowCenter = 100
        item.WindowWidth = 200
        item.ImageComments = "x" * 20
        items.append(item)
    ds.ReferencedImageSequence = items
    ds.save_as(tmp_path / "long.dcm")
    for header_only in (False, True):
        assert _read(tmp_path / "long.dcm", header_only).status == "ok"


def test_parse_size() -> None:
    assert parse_size("2GB") == parse_size("2 GiB") == parse_size("2g") == 2**31
    assert parse_size("512MB") == 512 * 2**20 and parse_size("4096") == 4096 and parse_size("1.5K") == 1536
    for bad in ("", "abc", "12XB", "0", "-5MB"):
        with pytest.raises(ValueError):
            parse_size(bad)


# --------------------------------------------------------------------------- end to end


def _cli(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, float, int]:
    """Run the CLI in a child: its result, seconds and peak RSS (KiB)."""
    return cli.run_measured(args, cwd=cwd, env={"COLUMNS": "200"})


def _hostile_cohort(tmp_path: Path) -> Path:
    images = tmp_path / "images"
    shutil.copytree(SAMPLE / "images", images)
    encapsulated_dicom(images / "portable" / "bomb.dcm", [BOMBS["jpeg-ls"][0]()], JPEGLSLossless)
    _header_then_zeros(images / "portable" / "sparse.dcm", 5 * 2**30)
    return images


def _manifest_reasons(out: Path) -> list[str]:
    import csv

    with (out / "manifest.csv").open(newline="") as fh:
        return [r["reason"] for r in csv.DictReader(fh) if r["source"].startswith("DICOM files/")]


@pytest.mark.xdist_group("measured")  # bounds time or memory: never beside another such test
def test_cli_scan_excludes_the_bomb_and_the_sparse_file(tmp_path: Path) -> None:
    images = _hostile_cohort(tmp_path)
    out = tmp_path / "out"
    proc, elapsed, _ = _cli(
        [
            "audit", str(images), *cli.sample_predictions_args("sex"),
            "--bootstrap", "200", "--permutations", "200", "--out", str(out), "--quiet",
        ],
        tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert elapsed < 120
    reasons = _manifest_reasons(out)
    assert f"failed: {BOMB}" in reasons
    assert (
        f"failed: file too large: {5 * 2**30} bytes exceeds max_file_size {DEFAULT_MAX_FILE_SIZE} "
        "(raise it with --max-file-size)"
    ) in reasons
    assert "Traceback" not in proc.stderr


def test_cli_max_file_size_flag(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for name in sorted(os.listdir(SAMPLE / "images" / "portable"))[:40]:
        shutil.copy(SAMPLE / "images" / "portable" / name, images / name)
    out = tmp_path / "out"
    base = [
        "audit", str(images), *cli.sample_predictions_args("sex"),
        "--bootstrap", "50", "--permutations", "50", "--min-group-size", "1", "--quiet",
    ]  # fmt: skip
    proc, _, _ = _cli([*base, "--out", str(out), "--max-file-size", "lots"], tmp_path)
    assert proc.returncode == 2
    assert "--max-file-size" in proc.stderr and "not a size" in proc.stderr and "Traceback" not in proc.stderr
    assert not (out / "results.json").exists()
    # A limit below every file's size: every file excluded, each with its own size in the reason.
    proc, _, _ = _cli([*base, "--out", str(out), "--max-file-size", "1KB"], tmp_path)
    assert proc.returncode == 2 and "no readable DICOM file" in proc.stderr


# --------------------------------------------------------------------------- every command's limits

LIMIT_KB = 64


@pytest.fixture(scope="module")
def cohort_with_a_large_file(make_cohort) -> tuple[Path, Path]:
    """A small cohort (files of a few KB) and, among its images, one 128 KB DICOM file."""
    root = make_cohort(n=12, size=32, seed=3, name="limits")
    large = write_dicom(root / "images" / "zz_large.dcm", image(256, 256), modality="DX")
    others = [p for p in (root / "images").rglob("*") if p.is_file() and p != large]
    assert max(p.stat().st_size for p in others) < LIMIT_KB * 1024 < large.stat().st_size
    return root, large


def _command(name: str, root: Path) -> list[str]:
    """`name` on the cohort, as cheaply as it runs (in clear: --keep-ids)."""
    images, demo = str(root / "images"), str(root / "demographics.csv")
    return {
        "normalize": ["normalize", images, "--method", "zscore", "--bootstrap", "100", "--keep-ids"],
        "augment-check": ["augment-check", images, "--modality", "xray", "--demographics", demo,
                          "--attribute", "sex", "--n-augment", "1", "--bootstrap", "100", "--keep-ids"],
        "train": ["train", images, "--demographics", demo, "--attribute", "sex", "--labels",
                  str(root / "labels.csv"), "--epochs", "1", "--input-size", "32x32", "--width", "4",
                  "--device", "cpu", "--bootstrap", "20"],
    }[name]  # fmt: skip


@pytest.mark.parametrize(
    ("flag", "value", "reason"),
    [
        ("--max-file-size", f"{LIMIT_KB}KB",
         "file too large: {size} bytes exceeds max_file_size {limit} (raise it with --max-file-size)"),
        ("--max-pixels", "10000",
         "too large: 256x256 pixels x 1 frame(s) x 1 sample(s) = 65536 exceeds max_pixels 10000"),
    ],
    ids=["max-file-size", "max-pixels"],
)  # fmt: skip
@pytest.mark.parametrize("command", ["normalize", "augment-check", "train"])
def test_every_command_reading_dicom_takes_the_limits(
    cohort_with_a_large_file, tmp_path: Path, command: str, flag: str, value: str, reason: str
) -> None:
    """Issue 19 leftover: --max-file-size and --max-pixels reach the reader in normalize,
    augment-check and train as in audit: the file over the limit is excluded with its
    reason in the manifest, the others are used."""
    if command == "train":
        pytest.importorskip("torch")
    root, large = cohort_with_a_large_file
    out = tmp_path / "out"
    res = cli.invoke(
        [*_command(command, root), flag, value, "--workers", "1", "-q", "--out", str(out)], columns=300
    )
    assert res.exit_code == 0, res.output
    with (out / "manifest.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    expected = reason.format(size=large.stat().st_size, limit=LIMIT_KB * 1024)
    hits = [r for r in rows if r["reason"].removeprefix("failed: ") == expected]  # train: no prefix
    assert len(hits) == 1 and hits[0]["status"] == "excluded", rows
    assert hits[0]["source"] in ("DICOM files/zz_large.dcm", "dicom")  # train: the source kind only
    assert sum(r["status"] in ("included", "normalized", "checked") for r in rows) >= 12


@pytest.mark.parametrize("command", ["normalize", "augment-check", "train"])
def test_a_bad_max_file_size_is_refused_in_every_command(tmp_path: Path, command: str) -> None:
    """Parsed as audit parses it: exit 2 naming the flag, before anything is read or written."""
    res = cli.invoke(
        [*_command(command, SAMPLE), "--max-file-size", "lots", "-q", "--out", str(tmp_path / "o")]
    )
    assert res.exit_code == 2, res.output
    assert "error: --max-file-size: not a size" in cli.flat(res.output)
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
@pytest.mark.xdist_group("measured")  # bounds time or memory: never beside another such test
def test_model_run_with_a_bomb_stays_within_memory(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    images = _hostile_cohort(tmp_path)
    out = tmp_path / "out"
    proc, elapsed, rss_kib = _cli(
        [
            "audit", *cli.model_run_args(images=images), "--attribute", "sex", "--out", str(out), "--quiet",
        ],
        tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert rss_kib * 1024 < 1.2e9, rss_kib  # unbounded: 3.4 GB and 170 s for the bomb alone
    assert elapsed < 300
    reasons = _manifest_reasons(out)
    assert f"failed: {BOMB}" in reasons
    assert any(r.startswith("failed: file too large") for r in reasons)


def _deflated_dicom(path: Path, extra_zeros: int) -> None:
    """A Deflated Explicit VR Little Endian file: a 64 x 64 image, then (when extra_zeros)
    a private element of that many zero bytes, deflated as a stream (never held whole)."""
    import zlib

    ds = dicom_dataset(image(), sop_uid=generate_uid(entropy_srcs=["deflate", str(extra_zeros)]))
    ds.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    from pydicom.filebase import DicomBytesIO

    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    pydicom.filewriter.write_dataset(body, ds)  # explicit VR little endian, no meta
    meta = io.BytesIO()
    pydicom.filewriter.write_file_meta_info(meta, ds.file_meta, enforce_standard=True)
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    with path.open("wb") as fh:
        fh.write(b"\0" * 128 + b"DICM" + meta.getvalue())
        fh.write(packer.compress(body.getvalue()))
        if extra_zeros:  # (0x0009,0x0010) OB: a private element after the pixel data's tag order
            fh.write(packer.compress(struct.pack("<HH2sHI", 0xFFF1, 0x0010, b"OB", 0, extra_zeros)))
            zeros = bytes(1 << 20)
            for _ in range(extra_zeros >> 20):
                fh.write(packer.compress(zeros))
        fh.write(packer.flush())


def test_a_deflate_bomb_is_refused_before_pydicom_inflates_it(tmp_path: Path, monkeypatch) -> None:
    """Issue 19, point 3 (left at stop 28): pydicom inflates a deflated dataset whole, so a
    few kilobytes can ask for gigabytes; the inflated size is measured first, in 1 MiB
    pieces, and the file refused past the limit. A small deflated file still reads."""
    good, bomb = tmp_path / "good.dcm", tmp_path / "bomb.dcm"
    _deflated_dicom(good, 0)
    _deflated_dicom(bomb, 48 << 20)  # 48 MiB of zeros: about 50 KB on disk
    assert bomb.stat().st_size < 100_000
    ok = read_file(good, tmp_path, header_only=False)
    assert ok.status == "ok", ok.reason
    np.testing.assert_array_equal(ok.image, image().astype(np.float32))
    monkeypatch.setattr(decode_module, "MAX_INFLATED_BYTES", 32 << 20)
    called = []
    monkeypatch.setattr(pydicom, "dcmread", lambda *a, **k: called.append(1))  # must not be reached
    for header_only in (True, False):
        out = read_file(bomb, tmp_path, header_only=header_only)
        assert out.status == "failed" and "inflates to more than 33554432 bytes" in out.reason, out.reason
    assert not called
    # --max-file-size lowers the limit below the default
    small = DecodeOptions(max_file_size=1 << 20)
    monkeypatch.undo()
    assert read_file(bomb, tmp_path, header_only=True, options=small).reason.startswith(
        "the deflated dataset inflates to more than 1048576 bytes"
    )
