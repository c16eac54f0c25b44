"""Intervals of two mean metrics that hold their coverage in small groups (the score methods).

The percentile bootstrap of brier covered 0.92 with 30 cases, and of the squared
calibration error 0.81 (benchmarks/coverage.py, "Mean metrics"): brier's per-case errors
are skewed, and the squared calibration error is a U-statistic whose percentile interval
misses near 0. So, with `--ci-method score` or `exact`:

- brier: the bootstrap-t (studentized) interval, Efron & Tibshirani (1993, ch. 12): each
  resample's (mean - estimate) / SE; SE = sd of the per-case errors / sqrt(n - 1), from the
  cell counts (the kernel's mean of squared errors and of their squares);
- squared_calibration_error: estimate +- z * the bootstrap standard deviation (Wald);
- auprc: Boyd, Eng & Page's (2013) logit interval, logit(AP) +- z / sqrt(n_pos AP (1 - AP)),
  and at AP of 0 or 1 their binomial one (the modified Wilson interval of AP x n_pos of
  n_pos); differences by the MOVER of the two groups' intervals. Not with patient clusters
  (its variance is for independent cases): there the patient bootstrap's percentile interval.

Differences to the reference use the same constructions on the two groups' resamples. Each
is returned as a function of the normal quantile z, so that the family-adjusted interval
(docs/statistics.md, "The family") comes from the same method.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.stats import norm

from fairaudit.stats._intervals import MIN_DEFINED_SHARE
from fairaudit.stats._metrics import BRIER_M2, SQUARED_CE

Interval = tuple[float, float]
IntervalAt = Callable[[float], Interval]

METHODS: dict[str, str] = {"brier": "bootstrap_t", SQUARED_CE: "bootstrap_wald", "auprc": "logit_boyd"}


def _se(mean: np.ndarray | float, m2: np.ndarray | float, n: int) -> np.ndarray:
    """Standard error of a mean of per-case squared errors, from their first two moments."""
    return np.sqrt(np.maximum(np.asarray(m2) - np.asarray(mean) ** 2, 0.0) / max(n - 1, 1))


def _defined(x: np.ndarray) -> np.ndarray | None:
    ok = x[np.isfinite(x)]
    return ok if ok.size and ok.size >= MIN_DEFINED_SHARE * x.size else None


def studentized_at(
    estimate: float, se: float, boot: np.ndarray, boot_se: np.ndarray, bounds: Interval
) -> IntervalAt | None:
    """Bootstrap-t interval of `estimate` as a function of z (None where it is undefined).

    Clipped to the quantity's range `bounds` and never excluding the estimate: with a
    handful of cases the studentized quantiles can be degenerate.
    """
    if not (math.isfinite(estimate) and math.isfinite(se)) or se <= 0:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        t = _defined((boot - estimate) / np.where(boot_se > 0, boot_se, np.nan))
    if t is None:
        return None

    def at(z: float) -> Interval:
        a = float(norm.sf(z))
        lo_q, hi_q = np.quantile(t, [a, 1.0 - a])
        lo = min(estimate, max(bounds[0], estimate - float(hi_q) * se))
        hi = max(estimate, min(bounds[1], estimate - float(lo_q) * se))
        return (lo, hi)

    return at


def wald_at(estimate: float, boot: np.ndarray) -> IntervalAt | None:
    """estimate +- z * sd of the bootstrap distribution, as a function of z."""
    ok = _defined(boot) if math.isfinite(estimate) else None
    if ok is None or ok.size < 2:
        return None
    sd = float(ok.std(ddof=1))
    return lambda z: (estimate - z * sd, estimate + z * sd)


def logit_ap_at(ap: float, n_pos: int) -> IntervalAt | None:
    """Boyd et al.'s (2013) logit interval of average precision (binomial at 0 and 1)."""
    from fairaudit.stats._score import modified_wilson

    if not math.isfinite(ap) or n_pos < 1:
        return None

    def at(z: float) -> Interval:
        if 0.0 < ap < 1.0:
            eta = math.log(ap / (1.0 - ap))
            tau = 1.0 / math.sqrt(n_pos * ap * (1.0 - ap))
            return (_expit(eta - z * tau), _expit(eta + z * tau))
        return modified_wilson(ap * n_pos, n_pos, z)

    return at


def _expit(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def group_interval_at(metric: str, point: dict, boot: dict, n: int, n_pos: int = 0) -> IntervalAt | None:
    """One group's interval of `metric` (brier, squared_calibration_error, auprc) as a function of z."""
    if metric == "auprc":
        return logit_ap_at(point["auprc"], n_pos)
    if metric == "brier":
        se = float(_se(point["brier"], point[BRIER_M2], n))
        boot_se = _se(boot["brier"], boot[BRIER_M2], n)
        return studentized_at(point["brier"], se, boot["brier"], boot_se, (0.0, 1.0))
    return wald_at(point[metric], boot[metric])


def difference_interval_at(
    metric: str, g: tuple[dict, dict, int, int], r: tuple[dict, dict, int, int]
) -> IntervalAt | None:
    """Interval of group - reference as a function of z (group: point, resamples, n, positives)."""
    (pg, bg, ng, pos_g), (pr, br, nr, pos_r) = g, r
    d = pg[metric] - pr[metric]
    if metric == "auprc":
        from fairaudit.stats._score import mover_difference

        ig, ir = logit_ap_at(pg[metric], pos_g), logit_ap_at(pr[metric], pos_r)
        if ig is None or ir is None:
            return None
        return lambda z: mover_difference(pg[metric], ig(z), pr[metric], ir(z))
    if metric != "brier":
        return wald_at(d, bg[metric] - br[metric])
    se = float(np.hypot(_se(pg["brier"], pg[BRIER_M2], ng), _se(pr["brier"], pr[BRIER_M2], nr)))
    boot_se = np.hypot(_se(bg["brier"], bg[BRIER_M2], ng), _se(br["brier"], br[BRIER_M2], nr))
    return studentized_at(d, se, bg["brier"] - br["brier"], boot_se, (-1.0, 1.0))


def level_z(level: float) -> float:
    """The normal quantile of a two-sided level (1.96 for 0.95)."""
    return float(norm.isf((1.0 - level) / 2.0))
