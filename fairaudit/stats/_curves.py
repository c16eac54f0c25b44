"""Per-group ROC points, calibration bins and confusion counts, small enough for results.json.

The reports draw ROC and calibration curves from results.json alone, so that
`fairaudit report` can re-render an archived audit without its data. A group's ROC curve
is thinned to at most `MAX_ROC_POINTS` of its exact points (always keeping (0, 0) and
(1, 1)); calibration uses the same 10 equal-width bins as `ece` (docs/statistics.md, "Metrics"), so the ECE
of a group can be recomputed from its bins. The reports draw the reliability diagram from
`reliability` instead: equal-count bins (at least 5 when the group has 25 cases or more), each
with a Wilson interval for its observed rate, because equal-width bins put most cases of a
confident model in two bins and the curve became a straight line (docs/reports.md, "Plots").
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
    "reliability_bin_count",
    "reliability_bins",
    "roc_points",
]

MAX_ROC_POINTS = 101
CALIBRATION_BINS = 10
#: Reliability diagram: at most this many equal-count bins, at least this many when the group
#: has RELIABILITY_MIN_BINS x RELIABILITY_MIN_COUNT cases, and no bin under RELIABILITY_MIN_COUNT.
RELIABILITY_MAX_BINS = 10
RELIABILITY_MIN_BINS = 5
RELIABILITY_MIN_COUNT = 5
#: Cases per bin aimed at between the minimum and the maximum number of bins.
_RELIABILITY_TARGET_COUNT = 20
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


def reliability_bin_count(n: int) -> int:
    """How many equal-count bins a group of n cases gets (0 for none): about 20 cases a bin,
    between 5 and 10 bins, never a bin under 5 cases (so 24 cases give 4 bins)."""
    if n <= 0:
        return 0
    wanted = min(RELIABILITY_MAX_BINS, max(RELIABILITY_MIN_BINS, n // _RELIABILITY_TARGET_COUNT))
    return max(1, min(wanted, n // RELIABILITY_MIN_COUNT))


def reliability_bins(labels: np.ndarray, scores: np.ndarray, ci_level: float = 0.95) -> dict[str, Any] | None:
    """Equal-count score bins for the reliability diagram, with Wilson intervals.

    Cases are sorted by score (ties kept in input order) and split into bins whose sizes
    differ by at most one (numpy.array_split), so every bin has enough cases for its observed
    rate to mean something. Per bin: count, positives, mean score, observed positive rate and
    its Wilson score interval at `ci_level` (statsmodels' proportion_confint). None without cases.
    """
    from statsmodels.stats.proportion import proportion_confint

    y = np.asarray(labels, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    k = reliability_bin_count(int(s.size))
    if k == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    parts = np.array_split(order, k)
    count = np.array([p.size for p in parts])
    positive = np.array([int(y[p].sum()) for p in parts])
    low, high = proportion_confint(positive, count, alpha=1.0 - ci_level, method="wilson")
    return {
        "binning": "equal_count",
        "ci_level": float(ci_level),
        "count": [int(c) for c in count],
        "n_positive": [int(c) for c in positive],
        "score_min": [round(float(s[p].min()), _DIGITS) for p in parts],
        "score_max": [round(float(s[p].max()), _DIGITS) for p in parts],
        "mean_score": [round(float(s[p].mean()), _DIGITS) for p in parts],
        "observed": [round(float(c / n), _DIGITS) for c, n in zip(positive, count, strict=True)],
        "ci": [
            [round(float(lo), _DIGITS), round(float(hi), _DIGITS)]
            for lo, hi in zip(np.atleast_1d(low), np.atleast_1d(high), strict=True)
        ],
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
    """Add `confusion` and, with scores, `curves` {roc, calibration, reliability} to every group,
    in place (the reliability intervals at the audit's ci_level, 0.95 when `results` has none)."""
    ci_level = float((results.get("config") or {}).get("ci_level") or 0.95)
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
                group["curves"] = {
                    "roc": roc_points(y, s),
                    "calibration": calibration_bins(y, s),
                    "reliability": reliability_bins(y, s, ci_level),
                }
