"""NIfTI-1 and NIfTI-2 volumes (`.nii`, `.nii.gz`): recognized by content, headers by nibabel.

Why a module of its own: image folders (fairaudit.io.dicom._decode) and mask folders
(fairaudit.io.masks) both read NIfTI files, and both must put a volume in the same
orientation, take the same spacing and refuse the same hostile files (docs/nifti.md):

- recognized by content: the header's size field (348 or 540) and its magic (`n+1`,
  `n+2`), inside a gzip stream for `.nii.gz`; the suffix alone is not enough;
- reoriented to the closest canonical orientation (RAS+: array axes 0, 1, 2 increase
  towards the patient's right, anterior and superior, as `nibabel.as_closest_canonical`
  puts them), so a mask stored with a flipped or permuted affine lines up with its image;
- spacing in mm: the header's zooms (pixdim), permuted as the axes were;
- refused, never fatal (a reason in manifest.csv): a file larger than `max_file_size`, a
  volume declaring more than `max_voxels` values or more bytes than `max_file_size` (a
  gzip bomb cannot grow past what the header declares: the voxels are read here, exactly
  the declared bytes, with nibabel's orientation and scaling rules), header extensions past
  `MAX_HEADER_BYTES`, an uncompressed file shorter than its header says, a cut or damaged
  gzip stream, 4-D series, `.hdr`/`.img` pairs.

nibabel is imported only when a NIfTI file is read (a predictions-only audit never
imports it).
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import numpy as np

from fairaudit.io._file_error import FileError, short_reason

#: Suffixes of NIfTI files, longest first (`case.nii.gz` -> id `case`).
NIFTI_SUFFIXES = (".nii.gz", ".nii")
GZIP_MAGIC = b"\x1f\x8b"
#: Header extensions (between the header and the voxels) above this are refused: in a
#: `.nii.gz` each of their bytes is inflated to reach the voxels.
MAX_HEADER_BYTES = 16 * 2**20
#: Two affines (canonical orientation) are the same geometry when no entry differs by more
#: than this (mm for the origin, mm per voxel for the rest): float32 round-off in headers
#: written by different tools is ~1e-5 mm.
AFFINE_TOLERANCE_MM = 1e-3
_NIFTI1 = (348, (b"n+1\x00", b"ni1\x00"), 344)
_NIFTI2 = (540, (b"n+2\x00", b"ni2\x00"), 4)
#: Compressed bytes read per zlib call when inflating a `.nii.gz`'s voxels.
_INFLATE_PIECE = 4 * 2**20


class NiftiError(FileError):
    """A NIfTI file that cannot be used: `status` ("failed" or "skipped") and a `reason`."""


@dataclass(frozen=True)
class VolumeInfo:
    """A NIfTI volume's geometry after reorientation to the closest canonical (RAS+) axes."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]  # mm, per canonical axis (the header's zooms, permuted)
    affine: np.ndarray  # 4 x 4, canonical voxel -> world (mm)
    orientation: str  # the stored axis codes before reorientation, e.g. "LPS"
    dtype: str  # the stored data type
    version: int  # 1 or 2


def strip_suffix(name: str) -> str | None:
    """`name` without `.nii.gz` or `.nii` (any case), or None when it has neither."""
    low = name.lower()
    for suffix in NIFTI_SUFFIXES:
        if low.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def looks_like_start(head: bytes) -> bool:
    """Whether a file's first bytes may start a NIfTI file (cheap: no inflate, no parse)."""
    if head.startswith(GZIP_MAGIC):
        return True
    if len(head) < 4:
        return False
    return any(struct.unpack(f"{e}i", head[:4])[0] in (348, 540) for e in "<>")


def _header_bytes(fh: BinaryIO, gz: bool) -> bytes:
    fh.seek(0)
    if not gz:
        return fh.read(_NIFTI2[0])
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = b""
    while len(out) < _NIFTI2[0]:
        chunk = fh.read(4096)
        if not chunk:
            break
        try:
            out += inflater.decompress(chunk, _NIFTI2[0] - len(out))
        except zlib.error:
            return b""
        if inflater.eof:
            break
    return out


def sniff(fh: BinaryIO) -> str | None:
    """ "nifti" for a NIfTI-1 or NIfTI-2 single file (plain or gzip), "pair" for the header
    of a `.hdr`/`.img` pair, None otherwise. Reads at most a few kilobytes."""
    fh.seek(0)
    gz = fh.read(2) == GZIP_MAGIC
    head = _header_bytes(fh, gz)
    fh.seek(0)
    return _kind(head)


def _kind(head: bytes) -> str | None:
    """sniff's answer from a file's first (inflated) bytes."""
    for size, magics, at in (_NIFTI1, _NIFTI2):
        if len(head) < size:
            continue
        if not any(struct.unpack(f"{e}i", head[:4])[0] == size for e in "<>"):
            continue
        magic = head[at : at + 4]
        if magic == magics[0]:
            return "nifti"
        if magic == magics[1]:
            return "pair"
    return None


def is_nifti_file(path: Path | str) -> bool:
    """Whether `path` is a NIfTI single file by content (False for any unreadable file)."""
    try:
        with open(path, "rb") as fh:
            return sniff(fh) == "nifti"
    except OSError:
        return False


class _Volume:
    """An open NIfTI file: header checked, voxels not read yet (they are read here, not by a
    nibabel image: the header is parsed once, and no more bytes than it declares are inflated)."""

    def __init__(
        self, fh: BinaryIO, gz: bool, header: Any, info: VolumeInfo, ornt: np.ndarray, layout: tuple
    ) -> None:
        self.fh = fh
        self.gz = gz
        self.header = header
        self.info = info
        self.ornt = ornt
        self.stored, self.offset, self.n_bytes, self.dtype = layout

    def array(self, raw: bool) -> np.ndarray:
        """The voxels in canonical orientation: as stored (`raw`, masks) or float32; the
        header's scaling (scl_slope, scl_inter) applied when it sets one, as nibabel does."""
        from nibabel.orientations import apply_orientation

        buf = self._voxel_bytes()
        if len(buf) < self.n_bytes:
            raise NiftiError(
                f"truncated or damaged NIfTI data: the file ends after {len(buf)} of the "
                f"{self.n_bytes} voxel bytes its header declares"
            )
        data = np.frombuffer(buf, dtype=self.dtype).reshape(self.stored, order="F")
        slope, inter = self.header.get_slope_inter()
        scaled = (slope is not None and slope != 1) or (inter is not None and inter != 0)
        if scaled:
            kind = np.float64 if raw else np.float32
            data = data.astype(kind) * kind(1.0 if slope is None else slope) + kind(inter or 0.0)
        target = data.dtype.newbyteorder("=") if raw or scaled else np.dtype(np.float32)
        oriented = apply_orientation(data, self.ornt)
        # Labels (raw) in C order for the surface metrics; images as stored (docs/nifti.md).
        return _c_order(oriented, target) if raw else _in_memory_order(oriented, target)

    def _voxel_bytes(self) -> bytes | memoryview:
        """Exactly the declared voxel bytes (fewer when the file is cut short).

        A `.nii.gz` is inflated by zlib in 4 MiB pieces of the file, never past the size the
        header declares (a gzip bomb inflates no further), not through gzip.GzipFile, whose
        8 KiB reads and CRC made a 128 x 128 x 64 volume take 8.4 ms against 5.5 ms
        (benchmarks/README.md, nifti_read.py). Concatenated gzip members are followed.
        """
        end = self.offset + self.n_bytes
        if not self.gz:
            self.fh.seek(self.offset)
            return self.fh.read(self.n_bytes)
        self.fh.seek(0)
        parts: list[bytes] = []
        have = 0
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        pending = b""
        while have < end:
            if not pending:
                pending = self.fh.read(_INFLATE_PIECE)
                if not pending:
                    break  # cut short: the caller reports the missing bytes
            if inflater.eof:  # the next gzip member
                inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            part = inflater.decompress(pending, end - have)
            parts.append(part)
            have += len(part)
            pending = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        return memoryview(data)[self.offset : end]


#: Slices per block of the C-order copy (_c_order): a block of a 512 x 512 volume stays
#: within a few MiB of cache.
_BLOCK = 8


def _c_order(data: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """`data` as a C-contiguous array of `dtype`, copied a few slices of the last axis at a time (one
    transposing copy of the whole volume was about twice as slow). For label masks: the
    surface metrics ran 40% slower on a Fortran-ordered 256 x 256 x 128 mask (0.12 against
    0.09 s), far more than this copy costs."""
    if data.flags.c_contiguous and data.dtype == dtype:
        return data if data.flags.writeable else data.copy()
    out = np.empty(data.shape, dtype=dtype)
    for k in range(0, data.shape[-1], _BLOCK):
        out[..., k : k + _BLOCK] = data[..., k : k + _BLOCK]
    return out


def _in_memory_order(data: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """`data` as a contiguous array of `dtype` in the order its voxels lie in the file.

    NIfTI stores the first axis fastest, so a volume comes back Fortran-ordered (its
    shape and indexing are the canonical axes all the same): a C-order copy of a
    128 x 128 x 64 volume is a transpose that took 6.1 ms against 1.4 ms for this one
    (benchmarks/README.md, nifti_read.py). A permuted reorientation that leaves neither
    order is copied to Fortran order.
    """
    out = np.array(data, dtype=dtype, order="K")
    if not (out.flags.c_contiguous or out.flags.f_contiguous):
        out = np.asfortranarray(out)
    return out


def _open(fh: BinaryIO, size: int, max_voxels: int, max_file_size: int | None) -> _Volume:
    import nibabel as nib
    from nibabel.orientations import inv_ornt_aff, io_orientation, ornt2axcodes

    gz = fh.read(2) == GZIP_MAGIC
    head = _header_bytes(fh, gz)
    kind = _kind(head)
    if kind is None and gz and len(head) < _NIFTI1[0]:
        raise NiftiError("truncated or damaged NIfTI file: its gzip stream ends before a complete header")
    if kind is None:
        raise NiftiError("not a NIfTI file", status="skipped")
    if kind == "pair":
        raise NiftiError("a NIfTI .hdr/.img pair: convert it to a single .nii or .nii.gz file")
    if max_file_size is not None and size > max_file_size:
        raise NiftiError(
            f"file too large: {size} bytes exceeds max_file_size {max_file_size} (raise it with --max-file-size)"
        )
    version = 1 if any(struct.unpack(f"{e}i", head[:4])[0] == 348 for e in "<>") else 2
    header_class = nib.Nifti1Header if version == 1 else nib.Nifti2Header
    try:  # nibabel's own checks would "fix" a hostile header silently: ours are below
        header = header_class(binaryblock=head[: header_class.sizeof_hdr], check=False)
        shape = tuple(int(d) for d in header.get_data_shape())
        dtype = header.get_data_dtype()
        affine = np.asarray(header.get_best_affine(), dtype=np.float64)
        zooms = [float(z) for z in (tuple(header.get_zooms()) + (1.0, 1.0))[:3]]
    except Exception as exc:
        raise NiftiError(short_reason(exc, "damaged NIfTI header")) from None
    # A single file's voxels start after the header and its 4-byte extension flag at least.
    offset = max(int(header.get_data_offset()), header_class.sizeof_hdr + 4)
    if offset > MAX_HEADER_BYTES:
        raise NiftiError(
            f"header extensions of {offset} bytes exceed {MAX_HEADER_BYTES} (damaged or hostile file)"
        )
    if not shape or min(shape) < 1:
        raise NiftiError(f"empty volume: dimensions {shape}")
    extra = shape[3:]
    if any(d != 1 for d in extra):
        raise NiftiError(
            f"a {len(shape)}-D NIfTI ({' x '.join(map(str, shape))}: a time series or several channels): "
            "only single 3-D volumes are read; split it into one file per volume"
        )
    if dtype.kind not in "biuf" or dtype.fields is not None:
        raise NiftiError(f"voxels of type {dtype} (colour or complex) are not read: one grey value per voxel")
    n_voxels = int(np.prod(shape, dtype=np.int64))
    if n_voxels > max_voxels:
        raise NiftiError(
            f"too large: {' x '.join(map(str, shape))} voxels = {n_voxels} exceeds max_pixels {max_voxels}"
        )
    n_bytes = n_voxels * dtype.itemsize
    limit = max_file_size if max_file_size is not None else 2**31
    if n_bytes > limit:
        raise NiftiError(f"too large: the volume declares {n_bytes} bytes, more than max_file_size {limit}")
    if not gz and offset + n_bytes > size:
        raise NiftiError(f"truncated file: the header declares {offset + n_bytes} bytes, the file has {size}")
    shape3 = (shape + (1, 1))[:3]
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise NiftiError("the header's affine (qform/sform) is degenerate: no orientation can be read")
    ornt = io_orientation(affine)
    canon_affine = affine @ inv_ornt_aff(ornt, shape3)
    canon_shape = [0, 0, 0]
    canon_zooms = [0.0, 0.0, 0.0]
    for axis in range(3):
        to = int(ornt[axis, 0])
        canon_shape[to] = shape3[axis]
        canon_zooms[to] = abs(zooms[axis])
    if not all(np.isfinite(z) and z > 0 for z in canon_zooms):
        raise NiftiError(f"the header's voxel sizes (pixdim) {tuple(zooms)} are not positive numbers")
    info = VolumeInfo(
        shape=tuple(canon_shape),  # type: ignore[arg-type]
        spacing=tuple(canon_zooms),  # type: ignore[arg-type]
        affine=canon_affine,
        orientation="".join(c or "?" for c in ornt2axcodes(ornt)),
        dtype=str(dtype),
        version=version,
    )
    return _Volume(fh, gz, header, info, ornt, (shape3, offset, n_bytes, dtype))


def _read(path: Path, max_voxels: int, max_file_size: int | None, decode: bool, raw: bool):
    try:
        size = os.stat(path).st_size
        with open(path, "rb") as fh:
            volume = _open(fh, size, max_voxels, max_file_size)
            if not decode:
                return None, volume.info
            try:
                data = volume.array(raw)
            except NiftiError:
                raise
            except MemoryError:
                raise NiftiError("out of memory while reading the volume") from None
            except Exception as exc:  # a cut gzip stream (EOFError), damaged data
                raise NiftiError(short_reason(exc, "truncated or damaged NIfTI data")) from None
    except NiftiError:
        raise
    except Exception as exc:  # every failure of one file is a reason, never a crash
        raise NiftiError(short_reason(exc, "cannot read the NIfTI file")) from None
    return data, volume.info


def volume_info(path: Path | str, *, max_voxels: int = 2**28, max_file_size: int | None = None) -> VolumeInfo:
    """The checked header of a NIfTI file (canonical geometry), no voxel read. NiftiError
    when it is refused."""
    return _read(Path(path), max_voxels, max_file_size, decode=False, raw=False)[1]


def read_volume(
    path: Path | str, *, max_voxels: int = 2**28, max_file_size: int | None = None, raw: bool = False
) -> tuple[np.ndarray, VolumeInfo]:
    """(voxels in canonical orientation, info): float32 in the file's memory order (Fortran),
    or as stored with `raw` (labels), in C order. NiftiError (never another exception for a
    bad file) when it is refused."""
    return _read(Path(path), max_voxels, max_file_size, decode=True, raw=raw)


class Grid(NamedTuple):
    """A voxel grid: canonical shape and affine (what two volumes must share)."""

    shape: tuple[int, ...]
    affine: np.ndarray


def canonical_grid(
    shape: tuple[int, int, int], affine: np.ndarray
) -> tuple[Grid, tuple[float, float, float]]:
    """The grid of a (shape, affine) volume once reoriented to RAS+, and its voxel sizes per
    canonical axis (the affine's column lengths): for volumes that are not NIfTI files, such
    as a DICOM series (fairaudit.io.dicom._series.series_affine)."""
    from nibabel.orientations import inv_ornt_aff, io_orientation

    ornt = io_orientation(affine)
    canon = affine @ inv_ornt_aff(ornt, shape)
    canon_shape = [0, 0, 0]
    for axis in range(3):
        canon_shape[int(ornt[axis, 0])] = int(shape[axis])
    zooms = tuple(float(z) for z in np.sqrt((canon[:3, :3] ** 2).sum(axis=0)))
    return Grid(tuple(canon_shape), canon), zooms  # type: ignore[return-value]


def same_geometry(a: Grid | VolumeInfo, b: Grid | VolumeInfo) -> str:
    """ "" when two volumes share shape and affine (within AFFINE_TOLERANCE_MM), else why not."""
    if a.shape != b.shape:
        return f"shapes differ: {' x '.join(map(str, a.shape))} and {' x '.join(map(str, b.shape))}"
    diff = float(np.max(np.abs(a.affine - b.affine)))
    if diff > AFFINE_TOLERANCE_MM:
        return (
            f"affines differ by up to {diff:.3g} mm (tolerance {AFFINE_TOLERANCE_MM} mm): "
            "the volumes are not on the same voxel grid"
        )
    return ""
