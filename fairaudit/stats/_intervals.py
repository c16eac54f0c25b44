"""Percentile and BCa intervals from a bootstrap distribution.

BCa follows Efron (1987) as scipy.stats.bootstrap implements it (bias correction from the
share of resamples below the estimate, acceleration from jackknife values). For a
statistic of several independently resampled groups (a difference or ratio of two
groups), the acceleration uses the stratified form of Davison & Hinkley (1997, eq. 5.24):
each group's jackknife influence values, scaled by that group's size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import ndtr, ndtri

# A statistic whose resamples are mostly undefined has no trustworthy interval.
MIN_DEFINED_SHARE = 0.5


def percentile_interval(boot: np.ndarray, level: float) -> tuple[float, float] | None:
    """The (1-level)/2 and (1+level)/2 quantiles of the defined resamples."""
    finite = boot[np.isfinite(boot)]
    if finite.size == 0 or finite.size < MIN_DEFINED_SHARE * boot.size:
        return None
    alpha = 1.0 - level
    lo, hi = np.quantile(finite, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def jackknife_influence(loo: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, float]:
    """Influence values (n-1)(mean - theta_-i) for one stratum, with its size n."""
    n = float(weights.sum())
    mean = float(np.sum(weights * loo) / n)
    return (n - 1.0) * (mean - loo), n


def acceleration(strata: Sequence[tuple[np.ndarray, np.ndarray]]) -> float:
    """BCa acceleration from each stratum's (leave-one-out values, multiplicities)."""
    num = 0.0
    den = 0.0
    for loo, w in strata:
        if loo.size == 0:
            continue
        if not np.all(np.isfinite(loo)):
            return float("nan")
        infl, n = jackknife_influence(loo, w)
        num += float(np.sum(w * infl**3)) / n**3
        den += float(np.sum(w * infl**2)) / n**2
    if den <= 0:
        return 0.0
    return num / (6.0 * den**1.5)


def bca_interval(boot: np.ndarray, estimate: float, accel: float, level: float) -> tuple[float, float] | None:
    """BCa interval; falls back to the percentile interval where BCa is degenerate.

    Degenerate means every resample on one side of the estimate (infinite bias
    correction) or an undefined acceleration: BCa cannot adjust, the percentile can.
    """
    finite = boot[np.isfinite(boot)]
    if finite.size == 0 or finite.size < MIN_DEFINED_SHARE * boot.size or not np.isfinite(estimate):
        return None
    # Ties count one half, as in scipy.stats.bootstrap: for a rate of a small group many
    # resamples equal the estimate, and counting them as "above" would bias z0.
    z0 = ndtri((np.sum(finite < estimate) + np.sum(finite <= estimate)) / (2.0 * finite.size))
    if not np.isfinite(z0) or not np.isfinite(accel):
        return percentile_interval(boot, level)
    alpha = 1.0 - level
    z = ndtri(np.array([alpha / 2, 1 - alpha / 2]))
    adj = ndtr(z0 + (z0 + z) / (1 - accel * (z0 + z)))
    if not np.all(np.isfinite(adj)):
        return percentile_interval(boot, level)
    lo, hi = np.quantile(finite, adj)
    return float(lo), float(hi)
