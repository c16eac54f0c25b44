"""Assemble the files of one CT or MR series into a volume ordered along the slice normal.

Slices are ordered by their position along the normal of the image plane, the dot
product of ImagePositionPatient with ImageOrientationPatient's row x column cross
product, never by InstanceNumber (which scanners and anonymizers renumber). The slice
spacing is the median distance between neighbouring positions. A series whose files
do not describe one regular stack is recorded with the reason and no volume: missing or
inconsistent orientation, image size or pixel spacing, two slices at one position
(several echoes, phases or acquisitions in one series), non-uniform spacing (a gap or an
overlap) and slices offset in-plane (gantry tilt or shear). See docs/dicom.md.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from fairaudit.io.dicom._decode import FileOutcome

SERIES_MODALITIES = ("CT", "MR")
# Tolerances: direction cosines, positions (mm), relative spacing.
_COSINE_TOL = 1e-4
_DUPLICATE_MM = 1e-3
_SPACING_REL = 0.01
_SPACING_ABS_MM = 0.01


@dataclass
class SeriesVolume:
    """One series: its files in slice order and, when every slice was decoded, the volume."""

    series_uid: str
    status: str  # "ok" | "failed"
    reason: str  # "" when ok
    paths: list[str]  # files of the series: slice order when ok, path order when failed
    header: dict | None  # the first slice's header
    volume: np.ndarray | None = None  # (slices, rows, cols) float32, when every slice has an image
    spacing: tuple[float, float, float] | None = None  # (slice, row, col) mm
    padding_mask: np.ndarray | None = None  # (slices, rows, cols) bool, when any slice has one
    positions: np.ndarray | None = None  # each slice's position along the normal (mm), ascending
    normal: tuple[float, float, float] | None = None  # unit normal of the image plane

    @property
    def n_slices(self) -> int:
        return len(self.paths)


class _SeriesProblem(Exception):
    pass


def assemble_series(
    outcomes: list[FileOutcome], *, modalities: tuple[str, ...] = SERIES_MODALITIES
) -> list[SeriesVolume]:
    """Group the readable files of `modalities` by SeriesInstanceUID into volumes.

    Only outcomes with status "ok" take part (the others are already accounted for per
    file). Works on header-only outcomes too: then the order, positions and spacing are
    set and `volume` is None. Series come back in the order of their first file's path.
    """
    groups: dict[str, list[FileOutcome]] = defaultdict(list)
    lone: list[SeriesVolume] = []
    for o in outcomes:
        if o.status != "ok" or o.header is None:
            continue
        if (o.header.get("Modality") or "").upper() not in modalities:
            continue
        uid = o.header.get("SeriesInstanceUID")
        if not uid:
            lone.append(SeriesVolume("", "failed", "no SeriesInstanceUID", [o.path], o.header))
            continue
        groups[uid].append(o)
    series = [_assemble(uid, sorted(files, key=lambda o: o.path)) for uid, files in groups.items()]
    series.extend(lone)
    series.sort(key=lambda s: (min(s.paths), s.series_uid))
    return series


def _assemble(uid: str, files: list[FileOutcome]) -> SeriesVolume:
    try:
        return _stack(uid, files)
    except _SeriesProblem as problem:
        return SeriesVolume(uid, "failed", str(problem), [o.path for o in files], files[0].header)


def _floats(header: dict, key: str, n: int) -> np.ndarray | None:
    value = header.get(key)
    if value is None or len(value) != n:
        return None
    return np.asarray(value, dtype=np.float64)


def _stack(uid: str, files: list[FileOutcome]) -> SeriesVolume:
    first = files[0]
    if any((o.header.get("NumberOfFrames") or 1) > 1 for o in files):
        if len(files) == 1:  # one multi-frame file is its own volume
            return _multi_frame(uid, first)
        raise _SeriesProblem("multi-frame files together with other files in one series")

    orientations = [_floats(o.header, "ImageOrientationPatient", 6) for o in files]
    if any(v is None for v in orientations):
        raise _SeriesProblem("missing ImageOrientationPatient")
    reference = orientations[0]
    if any(not np.allclose(v, reference, atol=_COSINE_TOL, rtol=0) for v in orientations):
        raise _SeriesProblem("inconsistent ImageOrientationPatient within the series")
    row_dir, col_dir = reference[:3], reference[3:]
    normal = np.cross(row_dir, col_dir)
    length = float(np.linalg.norm(normal))
    if length < 1e-6:
        raise _SeriesProblem("invalid ImageOrientationPatient (row and column directions are parallel)")
    normal /= length

    positions = [_floats(o.header, "ImagePositionPatient", 3) for o in files]
    if any(p is None for p in positions):
        raise _SeriesProblem("missing ImagePositionPatient")
    sizes = {(o.header.get("Rows"), o.header.get("Columns")) for o in files}
    if len(sizes) > 1:
        raise _SeriesProblem(f"inconsistent image size within the series: {sorted(sizes)}")
    in_plane = _in_plane_spacing(files)

    pos = np.asarray(positions)
    along = pos @ normal
    order = np.argsort(along, kind="stable")
    along = along[order]
    pos = pos[order]
    files = [files[i] for i in order]
    gaps = np.diff(along)
    if gaps.size and gaps.min() < _DUPLICATE_MM:
        n = int((gaps < _DUPLICATE_MM).sum())
        raise _SeriesProblem(
            f"{n} slice(s) share a position with another slice "
            "(several echoes, phases or acquisitions in one series?)"
        )
    if gaps.size:
        slice_spacing = float(np.median(gaps))
        tolerance = max(_SPACING_REL * slice_spacing, _SPACING_ABS_MM)
        if np.abs(gaps - slice_spacing).max() > tolerance:
            raise _SeriesProblem(
                f"non-uniform slice spacing: {gaps.min():.4g} to {gaps.max():.4g} mm (a gap or overlap)"
            )
        # In-plane offsets of each slice from the first: a tilted or sheared stack.
        offsets = pos - pos[0]
        drift = np.abs(np.stack([offsets @ row_dir, offsets @ col_dir], axis=1)).max()
        limit = 0.5 * min(in_plane) if in_plane else _SPACING_ABS_MM
        if drift > limit:
            raise _SeriesProblem(
                f"slices are offset in-plane by up to {drift:.3g} mm (gantry tilt or shear); not a regular stack"
            )
    else:
        slice_spacing = _single_slice_spacing(first.header)

    spacing = (slice_spacing, *in_plane) if in_plane else None
    volume, mask = _volume(files)
    return SeriesVolume(
        uid,
        "ok",
        "",
        [o.path for o in files],
        files[0].header,
        volume=volume,
        spacing=spacing,  # type: ignore[arg-type]
        padding_mask=mask,
        positions=along,
        normal=(float(normal[0]), float(normal[1]), float(normal[2])),
    )


def _in_plane_spacing(files: list[FileOutcome]) -> tuple[float, float] | None:
    values = []
    for o in files:
        sp = o.spacing
        if sp is None:
            for key in ("PixelSpacing", "ImagerPixelSpacing"):
                v = o.header.get(key)
                if v is not None and len(v) == 2:
                    sp = tuple(v)
                    break
        values.append(None if sp is None else (float(sp[-2]), float(sp[-1])))
    if all(v is None for v in values):
        return None
    if any(v is None for v in values):
        raise _SeriesProblem("PixelSpacing missing on some slices")
    ref = values[0]
    if any(not np.allclose(v, ref, rtol=1e-4, atol=1e-6) for v in values):
        raise _SeriesProblem("inconsistent PixelSpacing within the series")
    return ref  # type: ignore[return-value]


def _single_slice_spacing(header: dict) -> float:
    for key in ("SpacingBetweenSlices", "SliceThickness"):
        value = header.get(key)
        if value is not None and value > 0:
            return float(value)
    return float("nan")


def _volume(files: list[FileOutcome]) -> tuple[np.ndarray | None, np.ndarray | None]:
    images = [o.image for o in files]
    if any(im is None or im.ndim != 2 for im in images):
        return None, None
    if len({im.shape for im in images}) > 1:
        raise _SeriesProblem("decoded slices differ in shape")
    volume = np.stack(images).astype(np.float32, copy=False)
    masks = [o.padding_mask for o in files]
    if all(m is None for m in masks):
        return volume, None
    mask = np.stack(
        [np.zeros(im.shape, bool) if m is None else m for im, m in zip(images, masks, strict=True)]
    )
    return volume, mask


def _multi_frame(uid: str, o: FileOutcome) -> SeriesVolume:
    image = o.image
    volume = image if image is not None and image.ndim == 3 else None
    spacing = o.spacing if o.spacing is not None and len(o.spacing) == 3 else None
    mask = o.padding_mask if volume is not None else None
    return SeriesVolume(uid, "ok", "", [o.path], o.header, volume=volume, spacing=spacing, padding_mask=mask)  # type: ignore[arg-type]


def series_affine(series: SeriesVolume) -> np.ndarray | None:
    """The voxel -> world (RAS+, mm) affine of a series' (slices, rows, cols) array, as a
    NIfTI file converted from it states it (docs/nifti.md, "DICOM series and NIfTI masks"),
    or None when the series has no usable geometry.

    Voxel (s, r, c) lies at ImagePositionPatient of the first slice + s x slice spacing along
    the normal + r x the row spacing along the column direction + c x the column spacing
    along the row direction (ImageOrientationPatient's first three values are the direction
    of increasing column index); DICOM's LPS is RAS with x and y negated."""
    header = series.header or {}
    if series.status != "ok" or series.spacing is None or series.normal is None:
        return None
    iop = _floats(header, "ImageOrientationPatient", 6)
    ipp = _floats(header, "ImagePositionPatient", 3)
    spacing = np.asarray(series.spacing, dtype=np.float64)
    if iop is None or ipp is None or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        return None
    lps = np.eye(4)
    lps[:3, 0] = np.asarray(series.normal) * spacing[0]
    lps[:3, 1] = iop[3:] * spacing[1]
    lps[:3, 2] = iop[:3] * spacing[2]
    lps[:3, 3] = ipp
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
