"""Read one file: recognize DICOM by content, pick header fields, decode pixels to float32.

`read_file` never raises: every file becomes a `FileOutcome` whose status is "ok",
"skipped" (not DICOM, or DICOM without pixel data) or "failed" (with a short reason).
The policies (what counts as DICOM, multi-frame, colour, VOI LUT, padding, spacing) are
written down in docs/dicom.md; the comments here point at the rule each step follows.

Privacy: nothing here logs a header value. Logs and reasons name the file by its path
relative to the scanned root; pydicom's own warnings (which may quote element values)
are captured and counted, never shown.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fairaudit._util.privacy import dataset_text, scrub_reason, shown_path
from fairaudit.io.dicom._bounded import DEFAULT_MAX_FILE_SIZE
from fairaudit.io.images import sniff as sniff_image
from fairaudit.io.nifti import looks_like_start as looks_like_nifti

log = logging.getLogger(__name__)

FRAME_POLICIES = ("all", "middle", "first")

# Selected header fields, as plain Python types (str / int / float / list[float] / None).
# Never PatientName, PatientBirthDate or other identifying attributes besides PatientID,
# which the join needs (the caller hashes it; nothing here logs it).
_STR_FIELDS = (
    "SOPInstanceUID",
    "SOPClassUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "PatientID",
    "Modality",
    "Manufacturer",
    "ManufacturerModelName",
    "ViewPosition",
    "BodyPartExamined",
    "PhotometricInterpretation",
    "PatientSex",
    "PatientAge",
    "InstitutionName",
    "StationName",
)
_INT_FIELDS = (
    "Rows",
    "Columns",
    "NumberOfFrames",
    "SamplesPerPixel",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    "InstanceNumber",
)
_FLOAT_FIELDS = (
    "SliceThickness",
    "SpacingBetweenSlices",
    "SliceLocation",
    "KVP",
    "ExposureIndex",
    "RescaleSlope",
    "RescaleIntercept",
)
_LIST_FIELDS = ("PixelSpacing", "ImagerPixelSpacing", "ImagePositionPatient", "ImageOrientationPatient")
HEADER_FIELDS: tuple[str, ...] = (
    _STR_FIELDS + _INT_FIELDS + _FLOAT_FIELDS + _LIST_FIELDS + ("TransferSyntaxUID",)
)

_PIXEL_TAGS = {0x7FE00010: "PixelData", 0x7FE00008: "FloatPixelData", 0x7FE00009: "DoubleFloatPixelData"}
_PIXEL_VRS = frozenset({b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN"})
# Without the 128-byte preamble and "DICM", a file must start with an element of one of
# these groups (file meta, or identifying attributes) in either byte order.
_BARE_GROUPS = frozenset({0x0002, 0x0008})
# Files up to this size are read in one pass. In larger ones, element values longer than
# _DEFER_BYTES (the pixel data) are read only after the header checks passed, so a file
# refused on its header (max_pixels, truncation) is never read in full.
_ONE_PASS_BYTES = 16 * 2**20
_DEFER_BYTES = 64 * 1024
_UNDEFINED = 0xFFFFFFFF
# Decoding plugin tried first per transfer syntax, when installed (then all of them):
# CharLS (pyjpegls) decodes JPEG-LS about four times faster than libjpeg (pylibjpeg),
# with the same output (JPEG-LS decoding is exact).
_PREFERRED_PLUGINS = {
    "1.2.840.10008.1.2.4.80": "pyjpegls",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81": "pyjpegls",  # JPEG-LS Near-Lossless
}
_REASON_CHARS = 240


@dataclass(frozen=True)
class DecodeOptions:
    """How pixels become an image. See docs/dicom.md for each policy.

    voi_lut: apply the VOI LUT, or the first window centre/width, when the file has one.
    frames: multi-frame policy: "all" keeps every frame as (F, H, W); "middle" (frame
        F // 2) and "first" decode one frame only, as (H, W). Single-frame files are (H, W).
    max_pixels: refuse, before reading the pixel data, any file whose
        Rows * Columns * NumberOfFrames * SamplesPerPixel exceeds this.
    max_file_size: refuse, from its size, any DICOM file larger than this many bytes
        (the header parse is bounded too: fairaudit.io.dicom._bounded).
    extra_header: further header keywords to read (as text, multiple values joined by
        a backslash) beyond HEADER_FIELDS; callers vet them first (fairaudit.io.dicom_attributes
        refuses identifying ones).
    """

    voi_lut: bool = False
    frames: str = "all"
    max_pixels: int = 2**28
    extra_header: tuple[str, ...] = ()
    max_file_size: int = DEFAULT_MAX_FILE_SIZE

    def __post_init__(self) -> None:
        if self.frames not in FRAME_POLICIES:
            raise ValueError(f"frames must be one of {', '.join(FRAME_POLICIES)}, not {self.frames!r}.")
        if int(self.max_pixels) < 1:
            raise ValueError(f"max_pixels must be a positive number of pixels, not {self.max_pixels!r}.")
        if int(self.max_file_size) < 1:
            raise ValueError(f"max_file_size must be a positive number of bytes, not {self.max_file_size!r}.")


DEFAULT_OPTIONS = DecodeOptions()


def limited_options(
    max_pixels: int | None = None, max_file_size: int | None = None, **fields: Any
) -> DecodeOptions:
    """DecodeOptions(**fields) with the user's --max-pixels and --max-file-size (None: the
    defaults). One place for every reader of a DICOM folder (audit's scan and model run,
    normalize, augment-check, train), so the flags bound each the same way (docs/dicom.md);
    a value below 1 is bad input (exit 2) naming the argument, not a crash."""
    from fairaudit.errors import InputError, arg

    if max_pixels is not None:
        if int(max_pixels) < 1:
            raise InputError(
                f"{arg('max_pixels')} must be a positive number of pixels, not {max_pixels}.",
                argument="max_pixels",
            )
        fields["max_pixels"] = int(max_pixels)
    if max_file_size is not None:
        if int(max_file_size) < 1:
            raise InputError(
                f"{arg('max_file_size')} must be a positive number of bytes, not {max_file_size}.",
                argument="max_file_size",
            )
        fields["max_file_size"] = int(max_file_size)
    return DecodeOptions(**fields)


@dataclass
class FileOutcome:
    """What every scanned file becomes: small and picklable."""

    path: str  # relative to the scanned root (posix)
    status: str  # "ok" | "skipped" | "failed"
    reason: str  # "" when ok
    header: dict[str, Any] | None  # HEADER_FIELDS as plain Python types, when the header was read
    image: np.ndarray | None = None  # float32; None for header-only reads and failures
    spacing: tuple[float, ...] | None = None  # (row, col) mm; (frame, row, col) for (F, H, W)
    padding_mask: np.ndarray | None = None  # bool, True where PixelPaddingValue (or range) was
    # Set when a reader's `prepare` step (iter_outcomes) replaced `image` by a model's input:
    # the decoded image's shape, to restore a predicted mask onto.
    source_shape: tuple[int, ...] | None = None
    # What the file was read as: "dicom", "png", "jpeg" or "nifti" ("" when not recognized,
    # or a file with a DICM marker that failed before its header was read).
    file_format: str = ""
    # A NIfTI volume (docs/nifti.md): its canonical (RAS+) voxel -> mm affine and shape; the
    # image and spacing are then per canonical axis.
    affine: np.ndarray | None = None
    volume_shape: tuple[int, ...] | None = None


class _Stop(Exception):
    """A file that ends early with a known status and reason (not an error in our code)."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def read_file(
    path: Path, root: Path, *, header_only: bool, options: DecodeOptions = DEFAULT_OPTIONS
) -> FileOutcome:
    """Read one file into a FileOutcome. Never raises (except KeyboardInterrupt/SystemExit)."""
    rel = relative_path(Path(path), Path(root))
    state: dict[str, Any] = {"header": None}
    import pydicom.pixels  # noqa: F401 - its loggers exist before they are silenced

    try:
        with _quiet_pydicom() as caught:
            try:
                return _read(Path(path), rel, header_only, options, state)
            finally:
                if caught:
                    log.debug("%s: %d pydicom warning(s) suppressed", shown_path(rel), len(caught))
    except _Stop as stop:
        status, reason = stop.status, stop.reason
    except Exception as exc:  # every failure of one file is recorded, never fatal
        status, reason = "failed", short_reason(exc)
    # Folder and file names can be identifying (a patient's name): reasons never hold a
    # path, nor a header value (fairaudit._util.privacy.scrub_reason); logs a pseudonym.
    reason = reason.replace(str(path), "<file>").replace(str(root), "<folder>")
    for name in (rel, Path(path).name):  # not a plain word: "data" is also in "pixel data"
        if len(name) >= 5 and any(c in name for c in "./_-^ "):
            reason = reason.replace(name, "<file>")
    log.debug("%s: %s: %s", shown_path(rel), status, reason)
    return FileOutcome(rel, status, reason, state["header"], file_format=state.get("format", ""))


def relative_path(path: Path, root: Path) -> str:
    try:
        rel = path.relative_to(root).as_posix()
    except ValueError:
        return path.name
    return rel if rel != "." else path.name


def short_reason(exc: BaseException, context: str = "", values: Iterable[str] = ()) -> str:
    """Exception type and message on one line, shortened; never a traceback, never a value
    it quotes (pydicom's messages quote element values: scrubbed, with `values`, the
    file's header text, by fairaudit._util.privacy.scrub_reason)."""
    if isinstance(exc, OSError) and exc.strerror:  # not its file name: see read_file
        return f"{type(exc).__name__}: {exc.strerror}"
    lines = [line.strip() for line in scrub_reason(str(exc), values).splitlines() if line.strip()]
    if not lines:
        text = type(exc).__name__
    elif len(lines) > 1 and lines[0].endswith(":"):  # pydicom's "...all available plugins:" list
        text = f"{type(exc).__name__}: {lines[0]} {'; '.join(lines[1:])}"
    else:
        text = f"{type(exc).__name__}: {lines[0]}"
    if context:
        text = f"{context}: {text}"
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 3] + "..."


_QUIET_PREFIXES = ("pydicom", "pylibjpeg", "openjpeg", "libjpeg", "rle", "jpeg_ls")
_quiet_cache: tuple[int, list[logging.Logger]] = (-1, [])


def _decoder_loggers() -> list[logging.Logger]:
    """pydicom's loggers and its plugins' (a parent's `disabled` does not reach children)."""
    global _quiet_cache
    known = logging.root.manager.loggerDict
    if _quiet_cache[0] != len(known):
        names = [n for n in list(known) if n.split(".")[0] in _QUIET_PREFIXES]
        _quiet_cache = (len(known), [logging.getLogger(n) for n in names + ["pydicom"]])
    return _quiet_cache[1]


@contextmanager
def _quiet_pydicom() -> Iterator[list]:
    """pydicom warns and logs about odd values (sometimes quoting them) and logs decoder
    tracebacks: keep all of that private to this file's outcome."""
    loggers = _decoder_loggers()
    disabled = [lg.disabled for lg in loggers]
    for lg in loggers:
        lg.disabled = True
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield caught
    finally:
        for lg, was in zip(loggers, disabled, strict=True):
            lg.disabled = was


# --------------------------------------------------------------------------- reading


def _read(path: Path, rel: str, header_only: bool, options: DecodeOptions, state: dict) -> FileOutcome:
    size = path.stat().st_size
    ds, pixel = None, None
    with path.open("rb") as fh:
        head = fh.read(132)
        preamble = len(head) == 132 and head[128:132] == b"DICM"
        picture = None if preamble else sniff_image(head)
        if picture is not None:  # PNG or JPEG (docs/images.md)
            return _read_image(path, rel, picture, header_only, options, state)
        if not preamble and looks_like_nifti(head):
            from fairaudit.io.nifti import sniff as sniff_nifti

            if sniff_nifti(fh) is not None:  # NIfTI-1 or -2, plain or gzip (docs/nifti.md)
                return _read_volume(path, rel, header_only, options, state)
        if not preamble and not _bare_dataset_start(head):
            raise _Stop("skipped", "not a DICOM file")
        if size > options.max_file_size:  # from its size alone, before any parse (docs/dicom.md)
            raise _Stop(
                "failed",
                f"file too large: {size} bytes exceeds max_file_size {options.max_file_size} "
                "(raise it with --max-file-size)",
            )
        if preamble:
            _check_inflated_size(fh, min(options.max_file_size, MAX_INFLATED_BYTES))
        pixel_at = None  # where the pixel data element starts, when read past
        if header_only:
            fh.seek(0)
            ds = _dcmread(fh, preamble, stop_before_pixels=True)
            if not _is_deflated(ds):  # a deflated read stops inside the inflated stream
                pixel_at = fh.tell()
                pixel = _peek_pixel_element(fh, ds, size)
        elif size <= _ONE_PASS_BYTES:  # small enough to read in one pass from this handle
            fh.seek(0)
            ds = _dcmread(fh, preamble)
            pixel = _pixel_element(ds)
    if ds is None or pixel is None:  # a large file (or a deflated one): pixel data deferred
        ds = _dcmread(str(path), preamble, defer_size=_DEFER_BYTES)
        pixel = _pixel_element(ds)
    if not header_only:
        if pixel[0] is None and not _is_deflated(ds):
            # pydicom drops encapsulated pixel data that the file cuts short: look again.
            with path.open("rb") as fh:
                found = _peek_pixel_element(fh, _dcmread(fh, preamble, stop_before_pixels=True), size)
            if found[0] is not None:
                pixel = found
    pixel_tag, length, value_end = pixel
    if not _is_deflated(ds):
        _check_not_cut(ds, size, preamble)

    meta = getattr(ds, "file_meta", None)
    has_sop = (
        0x00080016 in ds
        or 0x00080018 in ds
        or (meta is not None and bool(meta.get("MediaStorageSOPClassUID")))
    )
    if not preamble and not has_sop:
        raise _Stop("skipped", "not a DICOM file (no preamble and no SOP Class/Instance UID)")
    tsyntax = _transfer_syntax(ds)
    state["format"] = "dicom"
    state["header"] = header = extract_header(ds, tsyntax, options.extra_header)

    if pixel_tag is None:
        if not has_sop and not getattr(ds, "file_meta", {}).get("TransferSyntaxUID"):
            raise _Stop("failed", "DICM marker, but no readable DICOM dataset (no file meta, no pixel data)")
        sop = _sop_class(ds)
        # An unknown UID's "name" is its own text, which a hostile file can fill with a name.
        name = sop.name if sop is not None and sop.name != str(sop) else "unknown SOP class"
        raise _Stop("skipped", f"DICOM file without pixel data ({name})")
    if tsyntax is None:
        raise _Stop("failed", "no Transfer Syntax UID (0002,0010) and the encoding cannot be inferred")
    if value_end > size and not _is_deflated(ds):
        if length == _UNDEFINED:
            raise _Stop("failed", "truncated file: the encapsulated pixel data ends before its delimiter")
        raise _Stop("failed", f"truncated file: the pixel data needs {value_end} bytes, the file has {size}")

    geometry = _geometry(ds)
    rows, cols, frames, samples = geometry
    n_pixels = rows * cols * frames * samples
    if n_pixels > options.max_pixels:
        raise _Stop(
            "failed",
            f"too large: {rows}x{cols} pixels x {frames} frame(s) x {samples} sample(s) = {n_pixels} "
            f"exceeds max_pixels {options.max_pixels}",
        )
    encapsulated = _is_encapsulated(tsyntax)
    if not encapsulated and length != _UNDEFINED:
        needed = _native_bytes(ds, pixel_tag, geometry)
        if length < needed:
            raise _Stop("failed", f"truncated pixel data: {length} bytes, {needed} needed")
    if encapsulated:
        _check_codestreams(path, ds, pixel_tag, pixel_at, tsyntax, geometry)

    out_frames = frames if (options.frames == "all" and frames > 1) else 1
    spacing = _spacing(ds, out_frames)
    if header_only:
        return FileOutcome(rel, "ok", "", header, spacing=spacing, file_format="dicom")

    _ensure_file_meta(ds, tsyntax)
    image, mask = decode_pixels(ds, tsyntax, geometry, options)
    return FileOutcome(
        rel, "ok", "", header, image=image, spacing=spacing, padding_mask=mask, file_format="dicom"
    )


def _read_image(
    path: Path, rel: str, kind: str, header_only: bool, options: DecodeOptions, state: dict
) -> FileOutcome:
    """A PNG or JPEG file (fairaudit.io.images, docs/images.md) under the same limits as a
    DICOM file (max_pixels, max_file_size). Its header holds Rows and Columns and no other
    field: a PNG or JPEG has no DICOM attributes. Its spacing is None."""
    from fairaudit.io.images import ImageError, image_info, read_image

    state["format"] = kind
    limits = {"max_pixels": options.max_pixels, "max_file_size": options.max_file_size}
    try:
        if header_only:
            image, info = None, image_info(path, **limits)
        else:
            image, info = read_image(path, **limits)
    except ImageError as exc:
        raise _Stop(exc.status, exc.reason) from None
    header: dict[str, Any] = dict.fromkeys((*HEADER_FIELDS, *options.extra_header))
    header["Rows"], header["Columns"] = info.rows, info.cols
    state["header"] = header
    return FileOutcome(rel, "ok", "", header, image=image, spacing=None, file_format=info.format)


def _read_volume(path: Path, rel: str, header_only: bool, options: DecodeOptions, state: dict) -> FileOutcome:
    """A NIfTI volume (fairaudit.io.nifti, docs/nifti.md) under the same limits as a DICOM
    file: max_pixels bounds its voxels, max_file_size its file and its declared (inflated)
    bytes. Its header holds Rows, Columns and NumberOfFrames (the canonical axes 0, 1, 2)
    and no other field; spacing and affine are per canonical axis."""
    from fairaudit.io.nifti import NiftiError, read_volume, volume_info

    state["format"] = "nifti"
    limits = {"max_voxels": options.max_pixels, "max_file_size": options.max_file_size}
    try:
        if header_only:
            image, info = None, volume_info(path, **limits)
        else:
            image, info = read_volume(path, **limits)
    except NiftiError as exc:
        raise _Stop(exc.status, exc.reason) from None
    header: dict[str, Any] = dict.fromkeys((*HEADER_FIELDS, *options.extra_header))
    header["Rows"], header["Columns"], header["NumberOfFrames"] = info.shape
    state["header"] = header
    return FileOutcome(
        rel, "ok", "", header, image=image, spacing=info.spacing, file_format="nifti",
        affine=info.affine, volume_shape=info.shape,
    )  # fmt: skip


#: The most a Deflated Explicit VR Little Endian dataset may inflate to: pydicom inflates
#: the whole dataset into memory before parsing it, so a few kilobytes of zlib could ask
#: for gigabytes (the deflate bomb). Deflate is used for small datasets (structured
#: reports); 256 MiB holds a 2-byte image of 128 million pixels. --max-file-size lowers it.
MAX_INFLATED_BYTES = 256 * 2**20
_DEFLATED_UID = b"1.2.840.10008.1.2.1.99"
_INFLATE_CHUNK = 1 << 20


def _check_inflated_size(fh, limit: int) -> None:
    """For a deflated file, inflate its dataset once without keeping it (1 MiB at a time)
    and refuse it when it grows past `limit` (docs/dicom.md, Limits). Other files: nothing.

    The file meta (group 2, never deflated) starts at byte 132 with its group length.
    """
    import struct
    import zlib

    fh.seek(132)
    head = fh.read(12)
    if len(head) < 12 or head[:6] != b"\x02\x00\x00\x00UL":
        return  # no group length: pydicom reads (or refuses) the meta its own way
    meta_len = struct.unpack("<I", head[8:12])[0]
    if meta_len > 1 << 20:
        return  # an implausible meta: left to pydicom's parse (bounded by _bounded)
    meta = fh.read(meta_len)
    at = meta.find(_DEFLATED_UID)
    end = at + len(_DEFLATED_UID)
    if at < 0 or meta[end : end + 1] in (b".", *(bytes([c]) for c in b"0123456789")):
        return  # not there, or only the start of a longer UID
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    while True:
        data = fh.read(_INFLATE_CHUNK)
        if not data:
            break
        while data:
            total += len(inflater.decompress(data, _INFLATE_CHUNK))
            data = inflater.unconsumed_tail
            if total > limit:
                raise _Stop(
                    "failed",
                    f"the deflated dataset inflates to more than {limit} bytes (a decompression "
                    "bomb, or a dataset too large to inflate; the limit is lowered by --max-file-size)",
                )
        if inflater.eof:
            break
    fh.seek(0)


def _dcmread(src, preamble: bool, **kwargs):
    """pydicom's parse of `src` (an open file, or a path kept open for deferred values),
    bounded in reads and bytes so that no file stalls a scan (docs/dicom.md, Limits)."""
    import pydicom

    from fairaudit.io.dicom._bounded import BoundedReader

    reader = BoundedReader(open(src, "rb"), owns=True) if isinstance(src, str) else BoundedReader(src)
    try:
        ds = pydicom.dcmread(reader, force=not preamble, **kwargs)
    except Exception as exc:
        reader.close()
        if reader.exceeded:
            raise _Stop("failed" if preamble else "skipped", reader.exceeded) from None
        if preamble:
            raise _Stop("failed", short_reason(exc, "unreadable DICOM")) from None
        raise _Stop("skipped", "not a DICOM file") from None
    if reader.exceeded:  # pydicom swallowed it (it does for some errors): still refused
        reader.close()
        raise _Stop("failed" if preamble else "skipped", reader.exceeded)
    reader.release()  # what is read later (deferred pixel data) is no longer the header
    return ds


def _check_codestreams(path: Path, ds, pixel_tag: int, element_at: int | None, tsyntax, geometry) -> None:
    """Every frame's codestream must say Rows x Columns before a decoder sizes its output
    from it: a small file can declare gigabytes there (docs/dicom.md, Limits)."""
    from fairaudit.io.dicom import _codestream

    rows, cols, frames, samples = geometry
    params: dict[str, Any] = {
        "transfer_syntax": str(tsyntax),
        "rows": rows,
        "columns": cols,
        "frames": frames,
        "samples": samples,
        "bits_allocated": _int_of(ds, "BitsAllocated", 8),
    }
    elem = ds.get_item(pixel_tag, keep_deferred=True) if pixel_tag in ds else None
    value = getattr(elem, "value", None)
    try:
        if isinstance(value, bytes | bytearray):
            _codestream.check_bytes(value, **params)
        else:
            _codestream.check_file(path, element_at, getattr(elem, "value_tell", None), **params)
    except _codestream.CodestreamError as exc:
        raise _Stop("failed", str(exc)) from None


def _bare_dataset_start(head: bytes) -> bool:
    """A preamble-less file may be DICOM if it starts with a group 0002 or 0008 element."""
    if len(head) < 8:
        return False
    little = int.from_bytes(head[0:2], "little")
    big = int.from_bytes(head[0:2], "big")
    return little in _BARE_GROUPS or big in _BARE_GROUPS


def _is_deflated(ds) -> bool:
    import pydicom

    ts = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
    return ts == pydicom.uid.DeflatedExplicitVRLittleEndian


def _is_encapsulated(tsyntax) -> bool:
    try:
        return bool(tsyntax.is_encapsulated)
    except ValueError:  # not a transfer syntax pydicom knows: let the decoder say so
        return True


def _syntax_name(tsyntax) -> str:
    """A transfer syntax's name, or "an unknown transfer syntax": never the UID's text
    from the file (an unknown UID's name is its text, which can hold anything)."""
    name = str(getattr(tsyntax, "name", "") or "")
    return name if name and name != str(tsyntax) else "an unknown transfer syntax"


def _sop_class(ds):
    from pydicom.uid import UID

    for value in (ds.get("SOPClassUID"), getattr(ds, "file_meta", {}).get("MediaStorageSOPClassUID")):
        if value:
            return UID(str(value))
    return None


def _transfer_syntax(ds):
    """From the file meta; otherwise inferred from how pydicom parsed the dataset."""
    from pydicom import uid

    ts = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
    if ts:
        return uid.UID(str(ts))
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if implicit is None or little is None:
        return None
    if implicit:
        return uid.ImplicitVRLittleEndian if little else None
    return uid.ExplicitVRLittleEndian if little else uid.ExplicitVRBigEndian


def _ensure_file_meta(ds, tsyntax) -> None:
    from pydicom.dataset import FileMetaDataset

    meta = getattr(ds, "file_meta", None)
    if meta is None:
        meta = ds.file_meta = FileMetaDataset()
    if not meta.get("TransferSyntaxUID"):
        meta.TransferSyntaxUID = tsyntax


def _peek_pixel_element(fh, ds, size: int) -> tuple[int | None, int, int]:
    """After a read that stopped before the pixel data: (tag, length, end offset) of it."""
    start = fh.tell()
    raw = fh.read(12)
    if len(raw) < 8:
        return None, 0, 0
    _, little = getattr(ds, "original_encoding", (None, True))
    order = "little" if little is not False else "big"
    tag = (int.from_bytes(raw[0:2], order) << 16) | int.from_bytes(raw[2:4], order)
    if tag not in _PIXEL_TAGS:
        return None, 0, 0
    # Explicit or implicit VR as found in the file (the file meta may say otherwise).
    if raw[4:6] in _PIXEL_VRS:
        if len(raw) < 12:
            return tag, 0, start + len(raw) + 1  # cut inside the element header: truncated
        length, header = int.from_bytes(raw[8:12], order), 12
    else:
        length, header = int.from_bytes(raw[4:8], order), 8
    if length == _UNDEFINED:
        fh.seek(start + header)
        return tag, length, _encapsulated_end(fh, size)
    return tag, length, start + header + length


def _encapsulated_end(fh, size: int) -> int:
    """End offset of encapsulated pixel data (items, then the sequence delimiter), read
    from its item headers only; past `size` when the file ends first (truncated)."""
    while True:
        raw = fh.read(8)
        if len(raw) < 8:
            return size + 1
        tag = (int.from_bytes(raw[0:2], "little") << 16) | int.from_bytes(raw[2:4], "little")
        length = int.from_bytes(raw[4:8], "little")
        if tag == 0xFFFEE0DD:  # sequence delimiter
            return fh.tell()
        if tag != 0xFFFEE000 or length == _UNDEFINED:
            return size + 1  # not an item: the stream is cut or corrupt
        end = fh.tell() + length
        if end > size:
            return end
        fh.seek(end)


def _check_not_cut(ds, size: int, preamble: bool) -> None:
    """pydicom reads a value cut short by the end of the file without a word: look at the
    last element read (a short read can only happen there)."""
    from pydicom.dataelem import RawDataElement

    group_length = getattr(ds, "file_meta", {}).get("FileMetaInformationGroupLength")
    if preamble and isinstance(group_length, int) and 132 + 12 + group_length > size:
        raise _Stop("failed", "truncated file: it ends inside the file meta information")
    tags = list(ds.keys())
    if not tags:
        return
    elem = ds.get_item(tags[-1], keep_deferred=True)
    if not isinstance(elem, RawDataElement) or elem.length == _UNDEFINED:
        return
    if elem.value is None:
        short = elem.value_tell + elem.length > size
    else:
        short = len(elem.value) < elem.length
    if short:
        raise _Stop("failed", f"truncated file: it ends inside element {elem.tag}")


def _pixel_element(ds) -> tuple[int | None, int, int]:
    """(tag, length, end offset of the value in the file) of the dataset's pixel data."""
    for tag in _PIXEL_TAGS:
        if tag not in ds:
            continue
        elem = ds.get_item(tag, keep_deferred=True)
        value = getattr(elem, "value", None)
        length = getattr(elem, "length", None)
        if length is None:  # already a DataElement: the value is in memory
            length = len(value) if value is not None else 0
            return tag, length, 0
        tell = getattr(elem, "value_tell", None) or 0
        if value is not None:
            return tag, (length if length == _UNDEFINED else len(value)), 0
        return tag, length, (tell + length if length != _UNDEFINED else 0)
    return None, 0, 0


def _int_of(ds, keyword: str, default: int | None = None) -> int:
    value = ds.get(keyword, default)
    if value is None or value == "":
        if default is None:
            raise _Stop("failed", f"missing required element {keyword}")
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _Stop("failed", f"invalid {keyword} value") from None


def _geometry(ds) -> tuple[int, int, int, int]:
    rows = _int_of(ds, "Rows")
    cols = _int_of(ds, "Columns")
    frames = _int_of(ds, "NumberOfFrames", 1)
    samples = _int_of(ds, "SamplesPerPixel", 1)
    if "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        _int_of(ds, "BitsAllocated")
    if min(rows, cols, frames, samples) < 1:
        raise _Stop("failed", f"empty image: {rows}x{cols}, {frames} frame(s), {samples} sample(s)")
    return rows, cols, frames, samples


def _native_bytes(ds, pixel_tag: int, geometry: tuple[int, int, int, int]) -> int:
    rows, cols, frames, samples = geometry
    keyword = _PIXEL_TAGS[pixel_tag]
    if keyword == "FloatPixelData":
        bits = 32
    elif keyword == "DoubleFloatPixelData":
        bits = 64
    else:
        bits = _int_of(ds, "BitsAllocated")
    if str(ds.get("PhotometricInterpretation", "")).strip() == "YBR_FULL_422" and samples == 3:
        values = rows * cols * frames * 2  # two samples per pixel after 4:2:2 subsampling
    else:
        values = rows * cols * frames * samples
    return (values * bits + 7) // 8


# --------------------------------------------------------------------------- header


def _plain_str(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        text = "\\".join(str(v) for v in value)
    else:
        text = str(value)
    text = text.strip().strip("\x00").strip()
    return text or None


def _plain_float(value) -> float | None:
    if value is None or value == "":
        return None
    if type(value).__name__ == "MultiValue" or isinstance(value, list | tuple):
        value = value[0] if len(value) else None
        if value is None:
            return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


def _plain_int(value) -> int | None:
    out = _plain_float(value)
    if out is None or out != int(out):
        return None
    return int(out)


def _plain_floats(value) -> list[float] | None:
    if value is None or value == "":
        return None
    items = (
        list(value) if (type(value).__name__ == "MultiValue" or isinstance(value, list | tuple)) else [value]
    )
    try:
        out = [float(v) for v in items]
    except (TypeError, ValueError):
        return None
    if not out or not all(np.isfinite(out)):
        return None
    return out


def _functional(ds, sequence: str, keyword: str, frame: int | None = None):
    """`keyword` from the enhanced multi-frame functional groups (per-frame, then shared)."""
    groups = []
    if frame is not None:
        per_frame = ds.get("PerFrameFunctionalGroupsSequence")
        if per_frame is not None and 0 <= frame < len(per_frame):
            groups.append(per_frame[frame])
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        groups.append(shared[0])
    for group in groups:
        seq = group.get(sequence)
        if seq:
            value = seq[0].get(keyword)
            if value is not None and value != "":
                return value
    return None


_FUNCTIONAL_HEADER = {
    "PixelSpacing": "PixelMeasuresSequence",
    "SliceThickness": "PixelMeasuresSequence",
    "SpacingBetweenSlices": "PixelMeasuresSequence",
    "ImageOrientationPatient": "PlaneOrientationSequence",
    "ImagePositionPatient": "PlanePositionSequence",
    "RescaleSlope": "PixelValueTransformationSequence",
    "RescaleIntercept": "PixelValueTransformationSequence",
}


_TAG_CACHE: dict[str, int] = {}


def _tag(keyword: str) -> int:
    tag = _TAG_CACHE.get(keyword)
    if tag is None:
        from pydicom.datadict import tag_for_keyword

        tag = _TAG_CACHE[keyword] = int(tag_for_keyword(keyword))
    return tag


def _is_enhanced(ds) -> bool:
    return 0x52009229 in ds or 0x52009230 in ds  # Shared / PerFrame FunctionalGroupsSequence


_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "IS", "LO", "SH", "TM", "UI"})
_VR_CACHE: dict[int, str] = {}


def _fast_value(ds, tag: int):
    """A not yet converted text or US element, read straight from its bytes (pydicom's
    conversion costs more than the rest of a header read); _NOT_FAST for anything else
    (other VRs, non-ASCII text, ISO 2022 escapes), which pydicom then converts."""
    from pydicom.dataelem import RawDataElement

    elem = ds.get_item(tag, keep_deferred=True)
    if not isinstance(elem, RawDataElement) or not isinstance(elem.value, bytes):
        return _NOT_FAST
    vr = elem.VR
    if vr is None:
        vr = _VR_CACHE.get(tag)
        if vr is None:
            from pydicom.datadict import dictionary_VR

            vr = _VR_CACHE[tag] = dictionary_VR(tag)
    raw = elem.value
    if vr == "US" and len(raw) == 2:
        return int.from_bytes(raw, "little" if elem.is_little_endian else "big")
    if vr in _TEXT_VRS and raw.isascii() and b"\x1b" not in raw:
        text = raw.decode("ascii").strip(" \x00")
        if "\\" in text:
            return [part.strip() for part in text.split("\\")]
        return text
    return _NOT_FAST


_NOT_FAST = object()


def _get(ds, keyword: str, enhanced: bool = False):
    """`keyword`'s value, or None when absent or unparsable; for enhanced multi-frame
    files, spacing, orientation, rescale and the first frame's position fall back to the
    functional groups."""
    tag = _tag(keyword)
    try:
        if tag in ds:
            value = _fast_value(ds, tag)
            if value is _NOT_FAST:
                value = ds[tag].value
        else:
            value = None
    except Exception:  # an unparsable value is a missing value here
        return None
    if enhanced and (value is None or value == "") and keyword in _FUNCTIONAL_HEADER:
        try:
            frame = 0 if keyword == "ImagePositionPatient" else None
            value = _functional(ds, _FUNCTIONAL_HEADER[keyword], keyword, frame)
        except Exception:
            return None
    return value


def extract_header(ds, tsyntax=None, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """HEADER_FIELDS of `ds` as plain Python values (None when absent or unparsable), and
    the `extra` keywords as text."""
    enhanced = _is_enhanced(ds)
    header: dict[str, Any] = {}
    for kw in _STR_FIELDS:
        header[kw] = _plain_str(_get(ds, kw, enhanced))
    for kw in _INT_FIELDS:
        header[kw] = _plain_int(_get(ds, kw, enhanced))
    for kw in _FLOAT_FIELDS:
        header[kw] = _plain_float(_get(ds, kw, enhanced))
    for kw in _LIST_FIELDS:
        header[kw] = _plain_floats(_get(ds, kw, enhanced))
    header["TransferSyntaxUID"] = str(tsyntax) if tsyntax else None
    for kw in extra:
        if kw not in header:
            header[kw] = _plain_str(_get(ds, kw, enhanced))
    return header


def _spacing(ds, out_frames: int) -> tuple[float, ...] | None:
    """(row, col) from PixelSpacing, else ImagerPixelSpacing, else the functional groups.

    For an (F, H, W) image the first axis is SpacingBetweenSlices when present, else NaN
    (frames may be time points rather than positions; see docs/dicom.md).
    """
    in_plane = None
    enhanced = _is_enhanced(ds)
    for kw in ("PixelSpacing", "ImagerPixelSpacing"):
        values = _plain_floats(_get(ds, kw, enhanced))
        if values is not None and len(values) == 2 and min(values) > 0:
            in_plane = (values[0], values[1])
            break
    if in_plane is None:
        return None
    if out_frames <= 1:
        return in_plane
    between = _plain_float(_get(ds, "SpacingBetweenSlices", enhanced))
    return ((between if between and between > 0 else float("nan")),) + in_plane


# --------------------------------------------------------------------------- pixels


def decode_pixels(
    ds, tsyntax, geometry: tuple[int, int, int, int], options: DecodeOptions
) -> tuple[np.ndarray, np.ndarray | None]:
    """(float32 image, padding mask or None) for a dataset whose header checks passed."""
    from pydicom.pixels import get_decoder
    from pydicom.pixels.utils import as_pixel_options

    _, _, frames, samples = geometry
    index = None
    if frames > 1 and options.frames != "all":
        index = 0 if options.frames == "first" else frames // 2
    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError:
        raise _Stop("failed", f"unsupported transfer syntax {_syntax_name(tsyntax)}") from None
    plugin = _PREFERRED_PLUGINS.get(str(tsyntax), "")
    if plugin not in decoder.available_plugins:
        plugin = ""
    try:
        try:
            arr, props = decoder.as_array(
                ds, index=index, validate=True, raw=False, decoding_plugin=plugin, **as_pixel_options(ds)
            )
        except Exception:
            if not plugin:
                raise
            # The preferred plugin could not: let pydicom try every available one.
            arr, props = decoder.as_array(ds, index=index, validate=True, raw=False, **as_pixel_options(ds))
    except Exception as exc:
        raise _Stop(
            "failed",
            short_reason(exc, f"cannot decode {_syntax_name(tsyntax)} pixel data", dataset_text(ds)),
        ) from None
    photometric = str(
        props.get("photometric_interpretation", ds.get("PhotometricInterpretation", ""))
    ).strip()
    if samples == 1 and photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        return _luma(apply_color_lut(arr, ds)[..., :3]), None
    if samples == 3:
        if photometric in ("YBR_FULL", "YBR_FULL_422"):
            from pydicom.pixels import convert_color_space

            arr = convert_color_space(arr, photometric, "RGB")
        elif photometric != "RGB":
            raise _Stop("failed", "unsupported PhotometricInterpretation for 3 samples per pixel")
        return _luma(arr), None
    if samples != 1:
        raise _Stop("failed", f"unsupported SamplesPerPixel {samples}")
    return _grayscale(arr, ds, photometric, index, options)


def _luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of RGB samples, on the stored scale (colour policy, docs/dicom.md)."""
    rgb = rgb.astype(np.float32, copy=False)
    out = rgb[..., 0] * np.float32(0.299)
    out += rgb[..., 1] * np.float32(0.587)
    out += rgb[..., 2] * np.float32(0.114)
    return out


# Attributes that the Modality LUT and VOI LUT steps read.
_VALUE_KEYWORDS = (
    "BitsStored",
    "PixelRepresentation",
    "PhotometricInterpretation",
    "ModalityLUTSequence",
    "RescaleSlope",
    "RescaleIntercept",
    "RescaleType",
    "VOILUTSequence",
    "WindowCenter",
    "WindowWidth",
    "VOILUTFunction",
)
_FUNCTIONAL_VALUES = {
    "PixelValueTransformationSequence": ("RescaleSlope", "RescaleIntercept", "RescaleType"),
    "FrameVOILUTSequence": ("WindowCenter", "WindowWidth", "VOILUTFunction"),
}


def _value_source(ds, frame: int):
    """The dataset whose Modality LUT and VOI attributes apply to `frame`.

    Classic files: the dataset itself. Enhanced multi-frame files: its top-level
    attributes overridden by the shared, then the per-frame functional groups.
    """
    if not _is_enhanced(ds):
        return ds
    from pydicom.dataset import Dataset

    src = Dataset()
    for kw in _VALUE_KEYWORDS:
        if kw in ds:
            setattr(src, kw, ds[kw].value)
    groups = []
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        groups.append(shared[0])
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and 0 <= frame < len(per_frame):
        groups.append(per_frame[frame])
    for group in groups:
        for seq_kw, keywords in _FUNCTIONAL_VALUES.items():
            seq = group.get(seq_kw)
            if not seq:
                continue
            for kw in keywords:
                if kw in seq[0]:
                    setattr(src, kw, seq[0][kw].value)
    return src


def _values(arr: np.ndarray, src, voi: bool) -> np.ndarray:
    """Stored values -> modality LUT (rescale) -> optional VOI LUT / windowing."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    out = apply_modality_lut(arr, src)
    if voi:
        out = apply_voi_lut(out, src, index=0, prefer_lut=True)
    return out


def _output_range(src, voi: bool, data: np.ndarray) -> tuple[float, float]:
    """Range of values the stored range can map to (MONOCHROME1 inversion axis)."""
    bits = src.get("BitsStored")
    if bits is None or data.dtype.kind == "f":
        return float(np.min(data)), float(np.max(data))
    bits = int(bits)
    signed = int(src.get("PixelRepresentation", 0) or 0) == 1
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    if bits <= 16:  # every possible stored value: exact for any LUT, monotonic or not
        stored = np.arange(lo, hi + 1, dtype=np.int64)
    else:
        stored = np.array([lo, hi], dtype=np.int64)
    mapped = np.asarray(_values(stored, src, voi), dtype=np.float64)
    return float(mapped.min()), float(mapped.max())


def _grayscale(
    arr: np.ndarray, ds, photometric: str, index: int | None, options: DecodeOptions
) -> tuple[np.ndarray, np.ndarray | None]:
    mask = _padding_mask(arr, ds) if photometric in ("MONOCHROME1", "MONOCHROME2") else None
    multi = arr.ndim == 3  # (F, H, W): every frame of a multi-frame file
    enhanced = _is_enhanced(ds)
    if multi and enhanced:
        frames = [
            _frame_values(arr[i], _value_source(ds, i), photometric, options) for i in range(arr.shape[0])
        ]
        image = np.stack(frames)
    else:
        src = _value_source(ds, index or 0) if enhanced else ds
        image = _frame_values(arr, src, photometric, options)
    if mask is not None and mask.any():
        keep = ~mask
        image[mask] = image[keep].min() if keep.any() else np.float32(0.0)
    if not (np.isfinite(image.min()) and np.isfinite(image.max())):  # NaN or inf anywhere
        bad = int((~np.isfinite(image)).sum())
        raise _Stop("failed", f"non-finite pixel values ({bad} pixels)")
    return image, mask


def _exact_rescale(arr: np.ndarray, src) -> np.ndarray | None:
    """The modality rescale in float32 when that is exact (integer stored values, integer
    slope and intercept, results below 2**24): the same numbers as pydicom's float64
    apply_modality_lut cast to float32, in one pass. None when it would not be exact."""
    if arr.dtype.kind not in "iu" or arr.dtype.itemsize > 2 or "ModalityLUTSequence" in src:
        return None
    slope, intercept = src.get("RescaleSlope"), src.get("RescaleIntercept")
    if slope is None or intercept is None:  # pydicom rescales only with both
        return arr.astype(np.float32)
    try:
        s, i = float(slope), float(intercept)
    except (TypeError, ValueError):
        return None
    if not (s.is_integer() and i.is_integer()) or 65536 * abs(s) + abs(i) >= 2**24:
        return None
    image = arr.astype(np.float32)
    if s != 1:
        image *= np.float32(s)
    if i != 0:
        image += np.float32(i)
    return image


def _frame_values(arr: np.ndarray, src, photometric: str, options: DecodeOptions) -> np.ndarray:
    image = None if options.voi_lut else _exact_rescale(arr, src)
    if image is None:
        values = _values(arr, src, options.voi_lut)
        image = np.asarray(values, dtype=np.float32)
        if image is values or np.shares_memory(image, arr):
            image = image.copy()
    if photometric == "MONOCHROME1":
        # Higher values are darker: mirror over the range the stored values can take
        # after the same transforms, so brighter is higher in every image.
        lo, hi = _output_range(src, options.voi_lut, arr)
        image = np.float32(lo + hi) - image
    return image


def _padding_mask(arr: np.ndarray, ds) -> np.ndarray | None:
    """True where the stored value is PixelPaddingValue, or within the range it opens with
    PixelPaddingRangeLimit; compared on stored values, before the modality LUT."""
    value = ds.get("PixelPaddingValue")
    if value is None or value == "":
        return None
    value = int(value)
    limit = ds.get("PixelPaddingRangeLimit")
    if limit is None or limit == "":
        return arr == value
    lo, hi = sorted((value, int(limit)))
    return (arr >= lo) & (arr <= hi)
