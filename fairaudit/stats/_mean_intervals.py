"""Intervals of two mean metrics that hold their coverage in small groups (the score methods).

The percentile bootstrap covered auprc 0.85 and the squared calibration error 0.81 with 30
cases (benchmarks/coverage.py, "Mean metrics"): average precision is biased in small
samples, and the squared calibration error is a U-statistic whose percentile interval misses
near 0. So, with `--ci-method score` or `exact`:

- squared_calibration_error: estimate +- z * the bootstrap standard deviation (Wald);
- auprc: Boyd, Eng & Page's (2013) logit interval, logit(AP) +- z / sqrt(n_pos AP (1 - AP)),
  and at AP of 0 or 1 their binomial one (the modified Wilson interval of AP x n_pos of
  n_pos); differences by the MOVER of the two groups' intervals. Not with patient clusters
  (its variance is for independent cases): there the patient bootstrap's percentile interval.

Brier keeps the percentile bootstrap: a studentized (bootstrap-t) interval covered better
(0.936-0.964 against 0.918-0.950) but blew up to [-1, 0.003] where a small group's errors
were nearly all 0 (docs/statistics.md). Each interval is a function of the normal quantile z,
so that the family-adjusted interval (docs/statistics.md, "The family") comes from the same
method.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.stats import norm

from fairaudit.stats._intervals import MIN_DEFINED_SHARE
from fairaudit.stats._metrics import SQUARED_CE

Interval = tuple[float, float]
IntervalAt = Callable[[float], Interval]

METHODS: dict[str, str] = {SQUARED_CE: "bootstrap_wald", "auprc": "logit_boyd"}


def _defined(x: np.ndarray) -> np.ndarray | None:
    """The defined resamples, or None when too few are (as the percentile interval)."""
    ok = x[np.isfinite(x)]
    return ok if ok.size and ok.size >= MIN_DEFINED_SHARE * x.size else None


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


def group_interval_at(metric: str, point: dict, boot: dict, n_pos: int) -> IntervalAt | None:
    """One group's interval of `metric` (squared_calibration_error, auprc) as a function of z."""
    if metric == "auprc":
        return logit_ap_at(point["auprc"], n_pos)
    return wald_at(point[metric], boot[metric])


def difference_interval_at(
    metric: str, g: tuple[dict, dict, int], r: tuple[dict, dict, int]
) -> IntervalAt | None:
    """Interval of group - reference as a function of z (group: point, resamples, positives)."""
    (pg, bg, pos_g), (pr, br, pos_r) = g, r
    d = pg[metric] - pr[metric]
    if metric == "auprc":
        from fairaudit.stats._score import mover_difference

        ig, ir = logit_ap_at(pg[metric], pos_g), logit_ap_at(pr[metric], pos_r)
        if ig is None or ir is None:
            return None
        return lambda z: mover_difference(pg[metric], ig(z), pr[metric], ir(z))
    return wald_at(d, bg[metric] - br[metric])


def level_z(level: float) -> float:
    """The normal quantile of a two-sided level (1.96 for 0.95)."""
    return float(norm.isf((1.0 - level) / 2.0))
