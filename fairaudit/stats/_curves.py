"""Per-group ROC points, calibration bins and confusion counts, small enough for results.json.

The reports draw ROC and calibration curves from results.json alone, so that
`fairaudit report` can re-render an archived audit without its data. A group's ROC curve
is thinned to at most `MAX_ROC_POINTS` of its exact points (always keeping (0, 0) and
(1, 1)); calibration uses the same 10 equal-width bins as `ece` (docs/statistics.md, "Metrics"), so the ECE
of a group can be recomputed from its bins.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "CALIBRATION_BINS",
    "MAX_ROC_POINTS",
    "attach_curves",
    "calibration_bins",
    "confusion_counts",
    "roc_points",
]

MAX_ROC_POINTS = 101
CALIBRATION_BINS = 10
_DIGITS = 5


def roc_points(
    labels: np.ndarray, scores: np.ndarray, max_points: int = MAX_ROC_POINTS
) -> dict[str, Any] | None:
    """Exact ROC points (positive when score >= threshold), thinned to `max_points`.

    None when the group lacks positives or negatives (the curve is undefined).
    """
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    # The last index of each run of equal scores: a threshold between distinct scores.
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), s_sorted.size - 1]
    tps = np.cumsum(y_sorted)[last]
    fps = (last + 1) - tps
    tpr = np.r_[0.0, tps / n_pos]
    fpr = np.r_[0.0, fps / n_neg]
    thresholds = np.r_[np.inf, s_sorted[last]]
    if tpr.size > max_points:
        keep = np.unique(np.round(np.linspace(0, tpr.size - 1, max_points)).astype(int))
        tpr, fpr, thresholds = tpr[keep], fpr[keep], thresholds[keep]
    return {
        "fpr": [round(float(v), _DIGITS) for v in fpr],
        "tpr": [round(float(v), _DIGITS) for v in tpr],
        # The first point (nothing predicted positive) has no finite threshold.
        "thresholds": [None] + [round(float(v), _DIGITS) for v in thresholds[1:]],
    }


def calibration_bins(
    labels: np.ndarray, scores: np.ndarray, n_bins: int = CALIBRATION_BINS
) -> dict[str, Any]:
    """Per equal-width bin [k/n, (k+1)/n) (the last closed at 1): count, mean score, mean label."""
    y = np.asarray(labels, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    index = np.clip(np.floor(s * n_bins).astype(np.int64), 0, n_bins - 1)
    counts = np.bincount(index, minlength=n_bins)
    sum_s = np.bincount(index, weights=s, minlength=n_bins)
    sum_y = np.bincount(index, weights=y, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_s, mean_y = sum_s / counts, sum_y / counts
    return {
        "edges": [round(k / n_bins, 10) for k in range(n_bins + 1)],
        "count": [int(c) for c in counts],
        "mean_score": [round(float(v), _DIGITS) if c else None for v, c in zip(mean_s, counts, strict=True)],
        "mean_label": [round(float(v), _DIGITS) if c else None for v, c in zip(mean_y, counts, strict=True)],
    }


def confusion_counts(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, int]:
    """TP, FP, TN, FN with prediction = score >= threshold."""
    y = np.asarray(labels).astype(bool)
    pred = np.asarray(scores, dtype=np.float64) >= threshold
    return {
        "tp": int(np.sum(pred & y)),
        "fp": int(np.sum(pred & ~y)),
        "tn": int(np.sum(~pred & ~y)),
        "fn": int(np.sum(~pred & y)),
    }


def attach_curves(
    results: dict[str, Any],
    labels: np.ndarray,
    scores: np.ndarray,
    attributes: Mapping[str, np.ndarray],
    threshold: float,
    has_scores: bool,
) -> None:
    """Add `confusion` and, with scores, `curves` {roc, calibration} to every group, in place."""
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    for attribute in results.get("attributes") or []:
        values = attributes.get(attribute.get("name"))
        if values is None:
            continue
        values = np.asarray(values).astype(str)
        for group in attribute.get("groups") or []:
            mask = values == str(group.get("group"))
            y, s = labels[mask], scores[mask]
            group["confusion"] = confusion_counts(y, s, threshold)
            if has_scores:
                group["curves"] = {"roc": roc_points(y, s), "calibration": calibration_bins(y, s)}
