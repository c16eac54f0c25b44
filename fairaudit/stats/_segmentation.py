"""Per-case segmentation metrics (docs/segmentation.md): dice, iou, hd95, assd, volume_error
and the normalized surface dice `nsd` at a tolerance (`--nsd-tolerance-mm`, default 1 mm).

numpy and scipy only (no torch), so a segmentation audit of mask files starts fast.
Surfaces and distances follow MONAI's `compute_hausdorff_distance(percentile=95)`,
`compute_average_surface_distance(symmetric=True)` and `compute_surface_dice` (the tests
check all three, isotropic and anisotropic, 2-D and 3-D):

- the surface of a mask is its voxels that a binary erosion (face connectivity, outside
  the image counts as background) removes;
- the distance of a surface voxel of A to B is the Euclidean distance, in the units of
  `spacing` (mm when the pixel spacing is known, else pixels), to the nearest surface
  voxel of B;
- hd95 is the larger of the two directed 95th percentiles (linear interpolation, as
  torch.quantile and numpy.percentile); assd is the mean of both directions' distances
  pooled together.

Why surface points and a k-d tree, not a distance transform: a lung on a 1024 x 1024
radiograph fills most of the image, so a distance transform of even the cropped image
costs a pass over most of a million pixels per direction, while the surfaces hold a few
thousand points (benchmarks/segmentation_metrics.py). The nearest point comes from
scipy's cKDTree over the points scaled by the spacing (exact Euclidean nearest neighbour,
the voxel the exact distance transform finds), and its distance is then computed as
scipy's `distance_transform_edt(sampling=spacing)` computes it (integer offsets times
the spacing, squared, summed in axis order), so the values are those of the distance
transform this module used before, bit for bit where the nearest voxel is unique.

Empty masks: empty vs empty gives dice = iou = 1; empty vs non-empty gives 0. A distance
needs two surfaces, so hd95 and assd are undefined (NaN here, null with a reason in
results.json) when either mask is empty; volume_error = (pred - truth) / truth is
undefined when the truth is empty. NSD, as MONAI's compute_surface_dice: undefined (NaN)
when both masks are empty, 0 when only one is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

SEGMENTATION_METRICS: tuple[str, ...] = ("dice", "iou", "hd95", "assd", "volume_error", "nsd")

#: The NSD tolerance when none is given (`--nsd-tolerance-mm`): 1 mm, or 1 pixel when the
#: distances are in pixels (Metrics Reloaded asks for one chosen per structure).
DEFAULT_NSD_TOLERANCE = 1.0

# Which direction is worse, for "worst group" summaries (None: signed, no direction is worse).
SEGMENTATION_HIGHER_IS_BETTER: dict[str, bool | None] = {
    "dice": True,
    "iou": True,
    "hd95": False,
    "assd": False,
    "volume_error": None,
    "nsd": True,
}

# Metrics whose group/reference ratio means something (volume_error is signed).
RATIO_METRICS: frozenset[str] = frozenset({"dice", "iou", "hd95", "assd", "nsd"})

REASON_BOTH_EMPTY = "both masks empty: no surface to measure"
REASON_TRUTH_EMPTY = "empty ground-truth mask"
REASON_PRED_EMPTY = "empty predicted mask"


@dataclass(frozen=True)
class CaseMetrics:
    """One case's metrics (NaN where undefined) and, for those, why."""

    values: dict[str, float]
    reasons: dict[str, str] = field(default_factory=dict)
    truth_voxels: int = 0
    pred_voxels: int = 0


def _check(truth: np.ndarray, pred: np.ndarray, spacing: Sequence[float] | None) -> tuple[float, ...]:
    if truth.shape != pred.shape:
        raise ValueError(f"mask shapes differ: truth {truth.shape}, prediction {pred.shape}")
    if truth.ndim < 1:
        raise ValueError("a mask needs at least one dimension")
    if spacing is None:
        return (1.0,) * truth.ndim
    sp = tuple(float(s) for s in spacing)
    if len(sp) != truth.ndim or not all(np.isfinite(s) and s > 0 for s in sp):
        raise ValueError(
            f"spacing {sp} does not fit a mask of shape {truth.shape}: one positive value per axis"
        )
    return sp


def _box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The bounding box of the mask's voxels (None when empty), from one projection per
    axis: cheaper than the coordinates of every voxel of a large mask."""
    box = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(mask.any(axis=others) if others else mask)
        if hit.size == 0:
            return None
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def _surface_in(crop: np.ndarray) -> np.ndarray:
    """The surface of a mask cut to its bounding box: the voxels with a face neighbour
    outside the mask, where beyond the box (and the image) is background. Shifted slices
    of one padded copy: the same voxels as scipy's binary_erosion with border_value=0,
    in a few whole-array passes."""
    padded = np.pad(crop, 1)
    inner = crop.copy()
    for axis in range(crop.ndim):
        for start in (0, 2):
            index = [slice(1, -1)] * crop.ndim
            index[axis] = slice(start, start + crop.shape[axis])
            inner &= padded[tuple(index)]
    return crop & ~inner


def surface(mask: np.ndarray) -> np.ndarray:
    """The voxels of `mask` on its boundary: those a face-connected erosion removes."""
    mask = np.asarray(mask, dtype=bool)
    out = np.zeros(mask.shape, bool)
    box = _box(mask)
    if box is not None:
        out[box] = _surface_in(mask[box])
    return out


def surface_points(mask: np.ndarray) -> np.ndarray:
    """Coordinates (n, ndim) of the surface voxels of `mask`, in C order (as
    `np.argwhere(surface(mask))`), computed on the mask's bounding box only."""
    mask = np.asarray(mask, dtype=bool)
    box = _box(mask)
    if box is None:
        return np.empty((0, mask.ndim), dtype=np.intp)
    points = np.argwhere(_surface_in(mask[box]))
    points += np.array([b.start for b in box], dtype=points.dtype)
    return points


def directed_point_distances(
    from_points: np.ndarray, to_points: np.ndarray, spacing: Sequence[float]
) -> np.ndarray:
    """Distance of each point of `from_points` to the nearest point of `to_points` (both
    (n, ndim) voxel coordinates, `to_points` not empty), in the units of `spacing`.

    The nearest point is found in the scaled coordinates; the distance is then computed
    from the integer offsets as scipy's exact distance transform computes it, so that
    values do not depend on which of the two code paths produced them."""
    scale = np.asarray(spacing, dtype=np.float64)
    if len(from_points) == 0:
        return np.empty(0, dtype=np.float64)
    tree = cKDTree(to_points * scale, leafsize=32, balanced_tree=False)
    _, nearest = tree.query(from_points * scale, k=1)
    offsets = to_points[nearest] - from_points
    total = np.zeros(len(from_points), dtype=np.float64)
    for axis in range(offsets.shape[1]):
        step = offsets[:, axis].astype(np.float64) * scale[axis]
        total += step * step
    return np.sqrt(total)


def surface_distances(
    truth: np.ndarray, pred: np.ndarray, spacing: Sequence[float] | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """(pred -> truth, truth -> pred) surface distances, each in C order of its surface's
    voxels; None when either mask is empty."""
    truth = np.asarray(truth, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    sp = _check(truth, pred, spacing)
    st, sp_ = surface_points(truth), surface_points(pred)
    if len(st) == 0 or len(sp_) == 0:
        return None
    return directed_point_distances(sp_, st, sp), directed_point_distances(st, sp_, sp)


def _check_tolerance(tolerance: float) -> float:
    tol = float(tolerance)
    if not np.isfinite(tol) or tol < 0:
        raise ValueError(f"tolerance {tolerance!r}: NSD needs a finite tolerance >= 0")
    return tol


def _nsd(d_pt: np.ndarray, d_tp: np.ndarray, tol: float) -> float:
    """The share of both surfaces' distances within `tol` (both surfaces non-empty).

    Compared in single precision, as MONAI does: a distance equal to the tolerance in
    exact arithmetic (3-4-5 offsets at 0.2 mm for 1 mm) can come out one double-precision
    step above it, and would otherwise be counted as outside."""
    limit = np.float32(tol)
    within = np.count_nonzero(d_pt.astype(np.float32) <= limit) + np.count_nonzero(
        d_tp.astype(np.float32) <= limit
    )
    return float(within / (len(d_pt) + len(d_tp)))


def normalized_surface_dice(
    truth: np.ndarray, pred: np.ndarray, spacing: Sequence[float] | None, tolerance: float
) -> float:
    """Normalized surface dice (NSD; Nikolov et al. 2021, Metrics Reloaded): the share of
    both surfaces' voxels that lie within `tolerance` (units of `spacing`) of the other
    surface. As MONAI's `compute_surface_dice(class_thresholds=[tolerance])`: NaN when
    both masks are empty, 0 when one is. The audit's `nsd` (case_metrics)."""
    tol = _check_tolerance(tolerance)
    truth = np.asarray(truth, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    sp = _check(truth, pred, spacing)
    st, sp_ = surface_points(truth), surface_points(pred)
    if len(st) == 0 and len(sp_) == 0:
        return float("nan")
    if len(st) == 0 or len(sp_) == 0:
        return 0.0
    return _nsd(directed_point_distances(sp_, st, sp), directed_point_distances(st, sp_, sp), tol)


def _overlap(truth: np.ndarray, pred: np.ndarray) -> tuple[int, int, int]:
    """(truth voxels, predicted voxels, voxels in both) of two boolean masks."""
    return int(np.count_nonzero(truth)), int(np.count_nonzero(pred)), int(np.count_nonzero(truth & pred))


def _dice(nt: int, np_: int, inter: int) -> float:
    """2|T & P| / (|T| + |P|); 1 when both masks are empty (they agree everywhere)."""
    return 1.0 if nt + np_ == 0 else 2.0 * inter / (nt + np_)


def dice(truth: np.ndarray, pred: np.ndarray) -> float:
    """Dice of one case (the audit's `dice`): for augment-check and anything that needs only
    the overlap, without the surface distances of `case_metrics`."""
    truth = np.asarray(truth, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    _check(truth, pred, None)
    return _dice(*_overlap(truth, pred))


def dice_batch(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Dice of each case of (N, ...) boolean masks in one vectorised pass (training's
    validation set); the same values as `dice` case by case."""
    truth = np.asarray(truth, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    if truth.shape != pred.shape or truth.ndim < 1:
        raise ValueError(f"mask batches differ: truth {truth.shape}, prediction {pred.shape}")
    t, p = truth.reshape(len(truth), -1), pred.reshape(len(pred), -1)
    inter = (t & p).sum(axis=1)
    total = t.sum(axis=1) + p.sum(axis=1)
    return np.where(total == 0, 1.0, 2.0 * inter / np.maximum(total, 1)).astype(float)


def case_metrics(
    truth: np.ndarray,
    pred: np.ndarray,
    spacing: Sequence[float] | None = None,
    nsd_tolerance: float = DEFAULT_NSD_TOLERANCE,
) -> CaseMetrics:
    """Every segmentation metric of one case; `spacing` per axis (None: 1 per voxel), the
    NSD tolerance in the same unit. The surface distances are computed once for hd95,
    assd and nsd."""
    tol = _check_tolerance(nsd_tolerance)
    truth = np.asarray(truth, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    _check(truth, pred, spacing)
    nt, np_, inter = _overlap(truth, pred)
    union = nt + np_ - inter
    values: dict[str, float] = {
        "dice": _dice(nt, np_, inter),
        "iou": 1.0 if union == 0 else inter / union,
    }
    reasons: dict[str, str] = {}
    if nt == 0 and np_ == 0:
        why = REASON_BOTH_EMPTY
    elif nt == 0:
        why = REASON_TRUTH_EMPTY
    elif np_ == 0:
        why = REASON_PRED_EMPTY
    else:
        why = ""
    if why:
        values["hd95"] = values["assd"] = float("nan")
        reasons["hd95"] = reasons["assd"] = why
        # NSD: 0 when one surface is missing (none of the other's voxels is matched), as MONAI.
        values["nsd"] = float("nan") if nt == 0 and np_ == 0 else 0.0
        if nt == 0 and np_ == 0:
            reasons["nsd"] = why
    else:
        dists = surface_distances(truth, pred, spacing)
        assert dists is not None
        d_pt, d_tp = dists
        values["hd95"] = float(max(np.percentile(d_pt, 95), np.percentile(d_tp, 95)))
        values["assd"] = float(np.concatenate([d_pt, d_tp]).mean())
        values["nsd"] = _nsd(d_pt, d_tp, tol)
    if nt == 0:
        values["volume_error"] = float("nan")
        reasons["volume_error"] = REASON_TRUTH_EMPTY + ": relative volume error undefined"
    else:
        values["volume_error"] = (np_ - nt) / nt
    return CaseMetrics(values=values, reasons=reasons, truth_voxels=nt, pred_voxels=np_)
