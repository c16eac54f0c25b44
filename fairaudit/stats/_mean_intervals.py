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

- brier: Waudby-Smith & Ramdas's (2024) betting interval for the mean of values in [0, 1]
  (the hedged capital process with the predictable plug-in bets, the cases in a seeded random
  order): valid at any sample size for any distribution of the per-case errors. The percentile
  bootstrap covered brier 0.92-0.95 for ordinary models but only 0.30-0.94 for a model with
  AUROC near 1, whose mean error is carried by a few rare large errors that a small group's
  resamples rarely hold (benchmarks/README.md, "Mean metrics"). Differences of brier keep the
  percentile bootstrap: the MOVER of two betting intervals is valid but so conservative that
  it disagreed with the permutation test beside it in up to 89% of cohorts
  (docs/statistics.md). With patient clusters it bets on each patient's summed errors
  (the cases of a patient are not independent; the patients are).

Each interval is a function of the normal quantile z, so that the family-adjusted interval
(docs/statistics.md, "The family") comes from the same method.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.stats import norm

from fairaudit.stats._cells import Cells
from fairaudit.stats._clusters import ClusterCells
from fairaudit.stats._intervals import MIN_DEFINED_SHARE
from fairaudit.stats._metrics import SQUARED_CE
from fairaudit.stats._tests import per_case_brier

Interval = tuple[float, float]
IntervalAt = Callable[[float], Interval]

METHODS: dict[str, str] = {SQUARED_CE: "bootstrap_wald", "auprc": "logit_boyd", "brier": "betting_hedged"}
# The metrics whose differences also come from here (brier's stay with the bootstrap).
DIFFERENCE_METHODS: tuple[str, ...] = (SQUARED_CE, "auprc")
# Truncation of the bets (Waudby-Smith & Ramdas 2024, section 5: c = 1/2 or 3/4).
_BET_CAP = 0.75
_BISECTIONS = 32


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


def betting_at(
    values: np.ndarray, rng: np.random.Generator, sizes: np.ndarray | None = None
) -> IntervalAt | None:
    """The hedged betting interval of the mean of `values` (in [0, 1]) as a function of z.

    Waudby-Smith & Ramdas (2024), the hedged capital process with the fixed-sample
    predictable plug-in bets: a candidate mean m is rejected when the capital of betting
    half the wealth that the mean is above m and half that it is below ever reaches
    1 / alpha (the sum of the two halves, a nonnegative martingale never below their
    max); by Ville's inequality a true m is rejected with probability at most alpha,
    whatever the distribution. The units are bet on in a random order from `rng` (the bound
    needs exchangeable units; the cohort's own order is sorted by score).

    With `sizes` (patients as the unit), `values` are each patient's summed errors T_j over
    k_j cases, and the mean is the ratio sum T / sum k. For a candidate m the bets are on
    X_j = (T_j - m k_j) / K + m, in [0, 1] with K the largest k_j, whose mean is m exactly
    when m is the ratio; with one case per patient X_j is the case's error
    (docs/statistics.md, "Brier's betting interval").
    """
    t_sum = np.asarray(values, dtype=float)
    if t_sum.size == 0:
        return None
    k = np.ones_like(t_sum) if sizes is None else np.asarray(sizes, dtype=float)
    if np.any(k <= 0):
        return None
    order = rng.permutation(t_sum.size)
    t_sum, k = np.minimum(np.maximum(t_sum[order], 0.0), k[order]), k[order]
    n = t_sum.size
    big_k = float(k.max())
    steps = np.arange(1.0, n + 1.0)
    mean = float(t_sum.sum() / k.sum())
    cache: dict[float, Interval] = {}

    def rejected(m: float, alpha: float) -> bool:
        x = np.clip((t_sum - m * k) / big_k + m, 0.0, 1.0)
        mu = (0.5 + np.cumsum(x)) / (steps + 1.0)
        var = (0.25 + np.cumsum((x - mu) ** 2)) / (steps + 1.0)
        var_before = np.concatenate([[0.25], var[:-1]])  # predictable: known before unit t
        scale = np.sqrt(2.0 * math.log(2.0 / alpha) / (n * var_before))
        lam_up = np.minimum(scale, _BET_CAP / m) if m > 0 else scale
        lam_down = np.minimum(scale, _BET_CAP / (1.0 - m)) if m < 1 else scale
        up = np.cumsum(np.log1p(lam_up * (x - m)))
        down = np.cumsum(np.log1p(-lam_down * (x - m)))
        return bool(np.max(np.logaddexp(up, down)) - math.log(2.0) >= math.log(1.0 / alpha))

    def bound(inside: float, outside: float, alpha: float) -> float:
        if not rejected(outside, alpha):
            return outside
        for _ in range(_BISECTIONS):
            mid = 0.5 * (inside + outside)
            if rejected(mid, alpha):
                outside = mid
            else:
                inside = mid
        return inside

    def at(z: float) -> Interval:
        if z not in cache:
            alpha = 2.0 * float(norm.sf(z))
            cache[z] = (bound(mean, 0.0, alpha), bound(mean, 1.0, alpha))
        return cache[z]

    return at


def group_interval_at(
    metric: str,
    point: dict,
    boot: dict,
    cells: Cells,
    rng: np.random.Generator,
    clusters: ClusterCells | None = None,
) -> IntervalAt | None:
    """One group's interval of `metric` (brier, squared_calibration_error, auprc) as a function
    of z; `rng` orders brier's units, patients when `clusters` is given (docs/statistics.md)."""
    if metric == "auprc":
        return logit_ap_at(point["auprc"], cells.n_pos)
    if metric == "brier":
        if not math.isfinite(point["brier"]):
            return None
        if clusters is None:
            return betting_at(per_case_brier(cells), rng)
        errors = np.empty(2 * clusters.k)
        errors[0::2], errors[1::2] = clusters.u**2, (clusters.u - 1.0) ** 2  # column 2k + label
        return betting_at(clusters.matrix @ errors, rng, clusters.sizes)
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
