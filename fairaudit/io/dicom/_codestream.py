"""Read the real size of encapsulated pixel data from its codestream headers, before decoding.

A decoder sizes its output from the codestream (JPEG SOF, JPEG-LS SOF55, JPEG 2000 SIZ),
not from the DICOM header's Rows and Columns: a 1 KB file whose header says 64 x 64 can
carry a JPEG-LS stream of 24000 x 24000 and make the decoder allocate gigabytes before
anything notices (issue 19, point 3). So every frame's codestream header is read here,
from the first bytes of its fragments only, and a file is refused when it disagrees with
the header (docs/dicom.md, "Limits"). RLE frames have no dimensions of their own: their
segment table is checked against the header's geometry instead.

Reasons quote numbers only, never header text (docs/dicom.md, "Privacy").
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

# Fragments (items) walked per file at most: 2**20 empty items are 8 MiB of item headers,
# about a second of walking; a legitimate file has a few per frame.
MAX_FRAGMENTS = 2**20
# How far into a frame's codestream its frame header may lie (APPn segments come first).
MAX_HEADER_SCAN = 2**20
_FIRST_READ = 4096

_ITEM = 0xFFFEE000
_SEQUENCE_END = 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_PIXEL_VRS = frozenset({b"OB", b"OW", b"UN"})

JPEG_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2.4.50",  # JPEG Baseline
        "1.2.840.10008.1.2.4.51",  # JPEG Extended
        "1.2.840.10008.1.2.4.57",  # JPEG Lossless
        "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    }
)
JPEG_LS_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"})
J2K_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
        "1.2.840.10008.1.2.4.91",  # JPEG 2000
        "1.2.840.10008.1.2.4.201",  # HTJ2K Lossless
        "1.2.840.10008.1.2.4.202",  # HTJ2K Lossless RPCL
        "1.2.840.10008.1.2.4.203",  # HTJ2K
    }
)
RLE_SYNTAX = "1.2.840.10008.1.2.5"

# JPEG start-of-frame markers (ITU T.81 B.1.1.3): C0-CF except DHT (C4), JPG (C8), DAC (CC);
# JPEG-LS adds SOF55 (F7, ITU T.87).
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7})
# Markers that stand alone (no length): TEM, RSTn, SOI, EOI.
_NO_LENGTH = frozenset({0x01, *range(0xD0, 0xD8), 0xD8, 0xD9})
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"


class CodestreamError(Exception):
    """A frame whose codestream cannot be used as the header describes it (the reason)."""


@dataclass(frozen=True)
class Dimensions:
    """What a codestream header says the decoder will produce."""

    rows: int
    columns: int
    components: int


@dataclass(frozen=True)
class _Fragment:
    at: int  # offset of the item's value in the source
    length: int
    offset: int  # offset of the item's tag from the first fragment's (Basic Offset Table units)


def check_pixel_data(
    src: BinaryIO,
    value_at: int,
    *,
    transfer_syntax: str,
    rows: int,
    columns: int,
    frames: int,
    samples: int,
    bits_allocated: int,
) -> None:
    """Raise CodestreamError unless every frame's codestream matches the header's geometry.

    `src` holds the encapsulated Pixel Data value (items, then maybe the sequence
    delimiter) from offset `value_at`. Transfer syntaxes other than JPEG, JPEG-LS,
    JPEG 2000 and RLE are left to the decoder."""
    ts = str(transfer_syntax)
    if ts in JPEG_SYNTAXES or ts in JPEG_LS_SYNTAXES:
        parse: Callable[[Callable[[int], bytes]], Dimensions] = jpeg_dimensions
    elif ts in J2K_SYNTAXES:
        parse = j2k_dimensions
    elif ts != RLE_SYNTAX:
        return
    offsets, fragments = _items(src, value_at)
    if not fragments:
        raise CodestreamError("the encapsulated pixel data holds no fragment")
    for number, (first, last) in enumerate(_frames(src, offsets, fragments, frames, ts), start=1):
        where = f"frame {number}: " if frames > 1 else ""
        reader = _FrameReader(src, fragments[first:last])
        if ts == RLE_SYNTAX:
            try:
                check_rle(reader.read(64), reader.length, rows, columns, samples, bits_allocated)
            except CodestreamError as exc:
                raise CodestreamError(where + str(exc)) from None
            continue
        try:
            dims = parse(reader.read)
        except CodestreamError as exc:
            raise CodestreamError(where + str(exc)) from None
        if (dims.rows, dims.columns) != (rows, columns):
            raise CodestreamError(
                f"{where}the codestream is {dims.rows} x {dims.columns} pixels "
                f"but the header says {rows} x {columns}"
            )
        if dims.components != samples:
            raise CodestreamError(
                f"{where}the codestream has {dims.components} component(s) "
                f"but the header says {samples} sample(s) per pixel"
            )


def check_file(path: Path, element_at: int | None, value_at: int | None, **geometry: int | str) -> None:
    """check_pixel_data on a file, given the offset of the pixel data element (its tag) or of
    its value."""
    with Path(path).open("rb") as fh:
        if value_at is None:
            if element_at is None:
                return
            value_at = _value_offset(fh, element_at)
        check_pixel_data(fh, value_at, **geometry)  # type: ignore[arg-type]


def check_bytes(value: bytes, **geometry: int | str) -> None:
    """check_pixel_data on a Pixel Data value already in memory (not copied)."""
    check_pixel_data(io.BytesIO(value), 0, **geometry)  # type: ignore[arg-type]


def _value_offset(fh: BinaryIO, element_at: int) -> int:
    fh.seek(element_at)
    raw = fh.read(12)
    return element_at + (12 if raw[4:6] in _PIXEL_VRS else 8)


# --------------------------------------------------------------------------- items


def _items(src: BinaryIO, value_at: int) -> tuple[list[int], list[_Fragment]]:
    """(Basic Offset Table, fragments) from item headers only; values are skipped."""
    src.seek(value_at)
    raw = src.read(8)
    if len(raw) < 8:
        raise CodestreamError("the encapsulated pixel data ends before its offset table")
    tag, length = _item_header(raw)
    if tag != _ITEM or length == _UNDEFINED:
        raise CodestreamError("the encapsulated pixel data does not start with an offset table item")
    table: list[int] = []
    if 0 < length and length % 4 == 0 and length <= 4 * MAX_FRAGMENTS:
        data = src.read(length)
        table = list(struct.unpack(f"<{len(data) // 4}I", data[: len(data) // 4 * 4]))
    else:
        src.seek(value_at + 8 + length)
    first = src.tell()
    fragments: list[_Fragment] = []
    while True:
        raw = src.read(8)
        if len(raw) < 8:
            break  # the file's end (a truncated file is refused elsewhere)
        tag, length = _item_header(raw)
        if tag == _SEQUENCE_END:
            break
        if tag != _ITEM or length == _UNDEFINED:
            raise CodestreamError("the encapsulated pixel data holds something other than items")
        if len(fragments) >= MAX_FRAGMENTS:
            raise CodestreamError(f"the encapsulated pixel data has more than {MAX_FRAGMENTS} fragments")
        at = src.tell()
        fragments.append(_Fragment(at, length, at - 8 - first))
        src.seek(at + length)
    return table, fragments


def _item_header(raw: bytes) -> tuple[int, int]:
    group, element, length = struct.unpack("<HHI", raw)
    return (group << 16) | element, length


def _frames(
    src: BinaryIO, table: list[int], fragments: list[_Fragment], frames: int, ts: str
) -> list[tuple[int, int]]:
    """(first, end) fragment index of each frame a decoder can be handed, as pydicom splits
    them: one frame takes every fragment; else the offset table; else one fragment a
    frame; else (JPEG family) each fragment that starts a codestream, at most `frames`."""
    n = len(fragments)
    if frames <= 1:
        return [(0, n)]
    if len(table) == frames and table[0] == 0 and table == sorted(table):
        index = {f.offset: i for i, f in enumerate(fragments)}
        starts = [index[o] for o in table if o in index]
        if len(starts) == frames:
            return list(zip(starts, [*starts[1:], n], strict=True))
    if n == frames or ts == RLE_SYNTAX:
        return [(i, i + 1) for i in range(min(n, frames))]
    starts = []
    for i, f in enumerate(fragments):
        src.seek(f.at)
        if _starts_codestream(src.read(min(f.length, 4))):
            starts.append(i)
            if len(starts) == frames:
                break
    if not starts:
        return [(0, n)]
    return list(zip(starts, [*starts[1:], n], strict=True))


def _starts_codestream(head: bytes) -> bool:
    """JPEG / JPEG-LS start of image, JPEG 2000 start of codestream, or a JP2 signature box."""
    return head[:2] in (b"\xff\xd8", b"\xff\x4f") or head == _JP2_SIGNATURE[:4]


class _FrameReader:
    """The first bytes of one frame's codestream, read across its fragments on demand."""

    def __init__(self, src: BinaryIO, fragments: list[_Fragment]) -> None:
        self.src = src
        self.fragments = fragments
        self.length = sum(f.length for f in fragments)
        self.data = b""

    def read(self, end: int) -> bytes:
        """The codestream's first `end` bytes (fewer when it is shorter, or past the scan limit)."""
        end = min(end, MAX_HEADER_SCAN)
        if len(self.data) >= end or len(self.data) >= self.length:
            return self.data[:end]
        want = max(end, min(2 * len(self.data), MAX_HEADER_SCAN), _FIRST_READ)
        parts, got = [], 0
        for f in self.fragments:
            if got >= want:
                break
            self.src.seek(f.at)
            size = min(f.length, want - got)
            part = self.src.read(size)
            parts.append(part)
            got += len(part)
            if len(part) < size:
                break  # the file ends early
        self.data = b"".join(parts)
        return self.data[:end]


# --------------------------------------------------------------------------- formats


def jpeg_dimensions(read: Callable[[int], bytes]) -> Dimensions:
    """Rows, columns and components from a JPEG (ITU T.81) or JPEG-LS (ITU T.87) frame header.

    `read(n)` returns the codestream's first n bytes. Markers are walked by their lengths
    up to the first SOFn; a height of 0 (set later by a DNL marker, or by a JPEG-LS LSE
    oversize segment) is refused: the decoder would learn the size only while decoding."""
    data = read(_FIRST_READ)
    if data[:2] != b"\xff\xd8":
        raise CodestreamError("the frame does not start with a JPEG start-of-image marker")
    pos = 2
    while True:
        data = read(pos + 10)
        while pos < len(data) and data[pos] == 0xFF and pos + 1 < len(data) and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes before a marker
        if pos + 4 > len(data):
            break
        if data[pos] != 0xFF:
            raise CodestreamError("the JPEG codestream is corrupt before its frame header")
        marker = data[pos + 1]
        if marker in _NO_LENGTH:
            pos += 2
            continue
        if marker == 0xDA or marker == 0xD9:  # start of scan / end of image before any SOF
            raise CodestreamError("the JPEG codestream has no frame header before its scan")
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _SOF:
            if len(data) < pos + 10:
                break
            rows, columns = struct.unpack(">HH", data[pos + 5 : pos + 9])
            components = data[pos + 9]
            if rows == 0 or columns == 0:
                raise CodestreamError(
                    "the JPEG codestream does not state its size in its frame header "
                    "(a size set while decoding is not accepted)"
                )
            return Dimensions(rows, columns, components)
        if length < 2:
            raise CodestreamError("the JPEG codestream is corrupt before its frame header")
        pos += 2 + length
        if pos >= MAX_HEADER_SCAN:
            break
    raise CodestreamError(f"no JPEG frame header within the first {MAX_HEADER_SCAN} bytes of the frame")


def j2k_dimensions(read: Callable[[int], bytes]) -> Dimensions:
    """Rows, columns and components from a JPEG 2000 SIZ segment (ITU T.800 A.5.1), in a raw
    codestream or in the `jp2c` box of a JP2 file (ITU T.800 I.5.4)."""
    data = read(_FIRST_READ)
    start = 0
    if data[:12] == _JP2_SIGNATURE:
        start = _jp2_codestream(read)
        data = read(start + 64)
    if data[start : start + 4] != b"\xff\x4f\xff\x51":
        raise CodestreamError("the frame does not start with a JPEG 2000 codestream (SOC, then SIZ)")
    siz = data[start + 4 : start + 4 + 38]
    if len(siz) < 38:
        raise CodestreamError("the JPEG 2000 codestream ends inside its SIZ segment")
    xsiz, ysiz, xosiz, yosiz = struct.unpack(">IIII", siz[4:20])
    (components,) = struct.unpack(">H", siz[36:38])
    if xosiz >= xsiz or yosiz >= ysiz:
        raise CodestreamError("the JPEG 2000 SIZ segment describes an empty image")
    return Dimensions(ysiz - yosiz, xsiz - xosiz, components)


def _jp2_codestream(read: Callable[[int], bytes]) -> int:
    """Offset of the codestream in the `jp2c` box of a JP2 file (boxes walked by length)."""
    pos = 0
    while pos < MAX_HEADER_SCAN:
        data = read(pos + 16)
        if len(data) < pos + 8:
            break
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if length == 1:
            if len(data) < pos + 16:
                break
            (length,) = struct.unpack(">Q", data[pos + 8 : pos + 16])
            header = 16
        if kind == b"jp2c":
            return pos + header
        if length < header:  # 0: the box runs to the end, and it is not the codestream
            break
        pos += length
    raise CodestreamError(
        f"no JPEG 2000 codestream box within the first {MAX_HEADER_SCAN} bytes of the frame"
    )


def check_rle(header: bytes, length: int, rows: int, columns: int, samples: int, bits_allocated: int) -> None:
    """An RLE frame's segment table (DICOM PS3.5 G.4 and G.5) against the header's geometry.

    There must be one segment per byte plane (SamplesPerPixel x BitsAllocated / 8), the
    first at offset 64, in increasing order inside the frame, none longer than two bytes
    per pixel (Rows x Columns bytes, each run costing at most one header byte per byte,
    plus a pad byte; encoders are not required to be optimal). A segment decodes to at
    most 64 bytes per byte it holds, so this bounds what any decoder can produce to a
    multiple of the header's image size."""
    if len(header) < 64:
        raise CodestreamError("the RLE frame ends inside its header")
    table = struct.unpack("<16I", header[:64])
    count, offsets = table[0], table[1 : 1 + min(table[0], 15)]
    planes = samples * max(1, (bits_allocated + 7) // 8)
    if count != planes:
        raise CodestreamError(
            f"the RLE header lists {count} segment(s) but the header's geometry needs {planes}"
        )
    if offsets[0] != 64:
        raise CodestreamError("the first RLE segment does not start right after the RLE header")
    ends = list(offsets[1:]) + [length]
    longest = 2 * rows * columns + 1
    for number, (begin, end) in enumerate(zip(offsets, ends, strict=True), start=1):
        if not begin < end <= length:
            raise CodestreamError(f"RLE segment {number} lies outside its frame or out of order")
        if end - begin > longest:
            raise CodestreamError(
                f"RLE segment {number} holds {end - begin} bytes, more than any encoding of "
                f"{rows} x {columns} pixels needs"
            )
