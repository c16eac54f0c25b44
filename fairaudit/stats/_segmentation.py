"""Per-case segmentation metrics (docs/segmentation.md): dice, iou, hd95, assd, volume_error.

numpy and scipy only (no torch), so a segmentation audit of mask files starts fast.
Surfaces and distances follow MONAI's `compute_hausdorff_distance(percentile=95)` and
`compute_average_surface_distance(symmetric=True)` (the tests check both, isotropic and
anisotropic):

- the surface of a mask is its voxels that a binary erosion (scipy, face connectivity,
  outside the image counts as background) removes;
- the distance of a surface voxel of A to B is the Euclidean distance, in the units of
  `spacing` (mm when the pixel spacing is known, else pixels), to the nearest surface
  voxel of B, from scipy's exact distance transform with `sampling=spacing`;
- hd95 is the larger of the two directed 95th percentiles (linear interpolation, as
  torch.quantile and numpy.percentile); assd is the mean of both directions' distances
  pooled together.

Empty masks: empty vs empty gives dice = iou = 1; empty vs non-empty gives 0. A distance
needs two surfaces, so hd95 and assd are undefined (NaN here, null with a reason in
results.json) when either mask is empty; volume_error = (pred - truth) / truth is
undefined when the truth is empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

SEGMENTATION_METRICS: tuple[str, ...] = ("dice", "iou", "hd95", "assd", "volume_error")

# Which direction is worse, for "worst group" summaries (None: signed, no direction is worse).
SEGMENTATION_HIGHER_IS_BETTER: dict[str, bool | None] = {
    "dice": True,
    "iou": True,
    "hd95": False,
    "assd": False,
    "volume_error": None,
}

# Metrics whose group/reference ratio means something (volume_error is signed).
RATIO_METRICS: frozenset[str] = frozenset({"dice", "iou", "hd95", "assd"})

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


def surface(mask: np.ndarray) -> np.ndarray:
    """The voxels of `mask` on its boundary: those a face-connected erosion removes."""
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def _crop(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cut to the bounding box of their union plus one voxel (same distances)."""
    union = a | b
    idx = np.nonzero(union)
    box = tuple(slice(max(int(i.min()) - 1, 0), int(i.max()) + 2) for i in idx)
    return a[box], b[box]


def directed_surface_distances(
    from_surface: np.ndarray, to_surface: np.ndarray, spacing: Sequence[float]
) -> np.ndarray:
    """Distance of each voxel of `from_surface` to the nearest voxel of `to_surface`."""
    dist = ndimage.distance_transform_edt(~to_surface, sampling=spacing)
    return dist[from_surface]


def surface_distances(
    truth: np.ndarray, pred: np.ndarray, spacing: Sequence[float] | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """(pred -> truth, truth -> pred) surface distances; None when either mask is empty."""
    truth = np.asarray(truth, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    sp = _check(truth, pred, spacing)
    if not truth.any() or not pred.any():
        return None
    t, p = _crop(truth, pred)
    st, sp_ = surface(t), surface(p)
    return directed_surface_distances(sp_, st, sp), directed_surface_distances(st, sp_, sp)


def _overlap(truth: np.ndarray, pred: np.ndarray) -> tuple[int, int, int]:
    """(truth voxels, predicted voxels, voxels in both) of two boolean masks."""
    return int(truth.sum()), int(pred.sum()), int(np.count_nonzero(truth & pred))


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


def case_metrics(truth: np.ndarray, pred: np.ndarray, spacing: Sequence[float] | None = None) -> CaseMetrics:
    """Every segmentation metric of one case; `spacing` per axis (None: 1 per voxel)."""
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
    else:
        dists = surface_distances(truth, pred, spacing)
        assert dists is not None
        d_pt, d_tp = dists
        values["hd95"] = float(max(np.percentile(d_pt, 95), np.percentile(d_tp, 95)))
        values["assd"] = float(np.concatenate([d_pt, d_tp]).mean())
    if nt == 0:
        values["volume_error"] = float("nan")
        reasons["volume_error"] = REASON_TRUTH_EMPTY + ": relative volume error undefined"
    else:
        values["volume_error"] = (np_ - nt) / nt
    return CaseMetrics(values=values, reasons=reasons, truth_voxels=nt, pred_voxels=np_)
