"""Score-type intervals that keep their coverage at the boundaries, and the tests they invert.

Why not the bootstrap: a rate of 1.000 in a group (every positive found) has a bootstrap
interval of [1.000, 1.000], and a gate reading it passes on no evidence. These intervals are
never of zero width from finite data (docs/statistics.md has each method's reference and the
coverage measured by benchmarks/coverage.py):

- a proportion: Wilson's score interval with Brown, Cai & DasGupta's boundary modification
  (or Clopper-Pearson's exact one);
- a difference of independent estimates: the MOVER of Zou & Donner (2008) on the two
  estimates' own intervals, which with Wilson's is Newcombe's (1998) hybrid score interval;
- a ratio of two proportions: Koopman's (1984) score interval, unbounded where the data allow;
  a ratio of other estimates (AUROC): MOVER-R (Donner & Zou 2012);
- AUROC: the logit-transformed DeLong interval, and where DeLong's variance is zero (a perfect
  or null AUROC) Newcombe's (2006) score interval from the Hanley-McNeil variance.

`mover_p_value` turns a difference interval into the two-sided p-value of the test that
rejects exactly when that interval excludes 0 (the interval inverted), so that the test
beside an interval never disagrees with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import optimize
from scipy import stats as sps

Interval = tuple[float, float]


def z_of(level: float) -> float:
    """The two-sided normal quantile of a confidence level (1.96 for 0.95)."""
    return float(sps.norm.isf((1.0 - level) / 2.0))


def wilson(x: float, n: float, z: float) -> Interval:
    """Wilson's score interval for x successes of n (as statsmodels' method='wilson')."""
    if n <= 0:
        return (math.nan, math.nan)
    p = x / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # Exact at the boundaries (rounding would leave 1e-17 above 0 or below 1).
    lo = 0.0 if x <= 0 else max(0.0, centre - half)
    hi = 1.0 if x >= n else min(1.0, centre + half)
    return (lo, hi)


def modified_wilson(x: float, n: float, z: float) -> Interval:
    """Wilson's interval with Brown, Cai & DasGupta's (2001) one-sided Poisson bounds near 0 and n.

    Plain Wilson covers a rate of 0.99 only 90-92% of the time with 10-100 cases (its bound
    for x = n - 1 or n - 2 stops just short); for 1 <= x <= x* the lower bound becomes
    chi2(alpha; 2x) / 2n, and mirrored for n - x. x* = 3 up to 100 cases (Brown et al. use 2
    up to 50): with 2, a rate of 0.9 in 10 cases is still covered only 92.98% of the time.
    """
    lo, hi = wilson(x, n, z)
    if n <= 0:
        return lo, hi
    x_star = 3 if n <= 100 else 0
    alpha = 2 * float(sps.norm.sf(z))
    # The Poisson bound only ever widens Wilson's (min / max): at the usual levels it is the
    # wider one anyway, and at levels near 0 (z -> 0, where a p-value is found by inverting the
    # interval) it would otherwise cross the estimate and the intervals would stop being nested.
    if 1 <= x <= x_star:
        lo = min(lo, float(sps.chi2.ppf(alpha, 2 * x)) / (2 * n))
    if 1 <= n - x <= x_star:
        hi = max(hi, 1 - float(sps.chi2.ppf(alpha, 2 * (n - x))) / (2 * n))
    return (lo, hi)


def clopper_pearson(x: float, n: float, z: float) -> Interval:
    """Clopper-Pearson's exact interval (as statsmodels' method='beta')."""
    if n <= 0:
        return (math.nan, math.nan)
    a = 2 * sps.norm.sf(z)
    lo = 0.0 if x <= 0 else float(sps.beta.ppf(a / 2, x, n - x + 1))
    hi = 1.0 if x >= n else float(sps.beta.isf(a / 2, x + 1, n - x))
    return (lo, hi)


PROPORTION_INTERVALS: dict[str, Callable[[float, float, float], Interval]] = {
    "modified_wilson": modified_wilson,
    "clopper_pearson": clopper_pearson,
}


def mover_difference(e1: float, ci1: Interval, e2: float, ci2: Interval) -> Interval:
    """Interval of e1 - e2 from each estimate's own interval (MOVER; Newcombe with Wilson)."""
    lo = e1 - e2 - math.hypot(e1 - ci1[0], ci2[1] - e2)
    hi = e1 - e2 + math.hypot(ci1[1] - e1, e2 - ci2[0])
    return (lo, hi)


def mover_sum(parts: list[tuple[float, float, Interval]]) -> Interval:
    """Interval of sum(c * e) over (c, e, ci) from each estimate's interval (MOVER)."""
    est = sum(c * e for c, e, _ in parts)
    below = above = 0.0
    for c, e, (lo, hi) in parts:
        if c >= 0:
            below += (c * (e - lo)) ** 2
            above += (c * (hi - e)) ** 2
        else:
            below += (c * (hi - e)) ** 2
            above += (c * (e - lo)) ** 2
    return (est - math.sqrt(below), est + math.sqrt(above))


def mover_ratio(e1: float, ci1: Interval, e2: float, ci2: Interval) -> Interval:
    """Interval of e1 / e2 for non-negative estimates (MOVER-R, Donner & Zou 2012).

    The upper bound is infinite when e2's interval reaches 0.
    """
    (l1, u1), (l2, u2) = ci1, ci2
    if e2 <= 0:
        return (math.nan, math.nan)
    prod = e1 * e2
    den_lo = u2 * (2 * e2 - u2)
    den_hi = l2 * (2 * e2 - l2)
    disc_lo = prod * prod - l1 * u2 * (2 * e1 - l1) * (2 * e2 - u2)
    disc_hi = prod * prod - u1 * l2 * (2 * e1 - u1) * (2 * e2 - l2)
    lo = (prod - math.sqrt(max(disc_lo, 0.0))) / den_lo if den_lo > 0 else 0.0
    hi = (prod + math.sqrt(max(disc_hi, 0.0))) / den_hi if den_hi > 0 else math.inf
    return (max(lo, 0.0), hi)


def _koopman_statistic(theta: float, x1: float, n1: float, x2: float, n2: float) -> float:
    """Koopman's score statistic for H0: p1 / p2 = theta (restricted maximum likelihood)."""
    a = (n1 + n2) * theta
    b = -(n1 * theta + x1 + n2 + x2 * theta)
    c = x1 + x2
    disc = max(b * b - 4 * a * c, 0.0)
    p2 = (-b - math.sqrt(disc)) / (2 * a)
    p1 = min(max(theta * p2, 0.0), 1.0)
    p2 = min(max(p2, 0.0), 1.0)
    out = 0.0
    for x, n, p in ((x1, n1, p1), (x2, n2, p2)):
        num = (x - n * p) ** 2
        den = n * p * (1 - p)
        if num > 0:
            out += num / den if den > 0 else math.inf
    return out


def koopman_ratio(x1: float, n1: float, x2: float, n2: float, z: float) -> Interval:
    """Koopman's score interval for (x1/n1) / (x2/n2): {theta: statistic <= z^2}.

    Unbounded above when x2 = 0 (nothing in the reference to divide by), 0 below when
    x1 = 0; NaN when both are 0 (the ratio is 0/0). statsmodels' score ratio interval
    returns wrong or complex bounds at x = n, hence this root-finding form.
    """
    if n1 <= 0 or n2 <= 0 or (x1 <= 0 and x2 <= 0):
        return (math.nan, math.nan)
    crit = z * z

    def excess(log_theta: float) -> float:
        return _koopman_statistic(math.exp(log_theta), x1, n1, x2, n2) - crit

    if x1 > 0 and x2 > 0:
        centre = math.log((x1 / n1) / (x2 / n2))
    elif x1 <= 0:
        centre = math.log(0.5 / n1 / ((x2 + 0.5) / (n2 + 1)))
    else:
        centre = math.log(((x1 + 0.5) / (n1 + 1)) / (0.5 / n2))
    # The statistic is 0 at the estimate (or smallest near a zero count) and grows away from it.
    if excess(centre) > 0:
        grid = np.linspace(centre - 20, centre + 20, 4001)
        vals = np.array([excess(g) for g in grid])
        centre = float(grid[int(np.argmin(vals))])
    lo = 0.0
    if x1 > 0:
        step = 1.0
        while excess(centre - step) <= 0 and step < 60:
            step *= 2
        lo = math.exp(optimize.brentq(excess, centre - step, centre, xtol=1e-12))
    hi = math.inf
    if x2 > 0:
        step = 1.0
        while excess(centre + step) <= 0 and step < 60:
            step *= 2
        hi = math.exp(optimize.brentq(excess, centre, centre + step, xtol=1e-12))
    return (lo, hi)


def auroc_score(auc: float, n_pos: int, n_neg: int, z: float) -> Interval:
    """Newcombe's (2006) score interval for AUROC with the Hanley-McNeil variance.

    {theta: (auc - theta)^2 <= z^2 V(theta)}, V from Hanley & McNeil (1982) with both
    sample sizes replaced by N* = (n_pos + n_neg)/2 - 1 ("method 5"). Used where DeLong's
    variance is 0 (every positive above every negative): it is never of zero width.
    """
    if n_pos < 1 or n_neg < 1:
        return (math.nan, math.nan)
    m1 = (n_pos + n_neg) / 2.0 - 1.0
    mn = float(n_pos) * float(n_neg)
    z2 = z * z

    def shape(t: float) -> float:  # V(t) = t (1 - t) shape(t) / mn
        return 1 + m1 * (1 - t) / (2 - t) + m1 * t / (1 + t)

    def excess(t: float) -> float:
        return (auc - t) ** 2 - z2 * t * (1 - t) * shape(t) / mn

    # excess is positive at 0 and 1 and negative at an estimate inside (0, 1). At an estimate
    # of 1 (or 0) it vanishes there too: that root divided out, the other bound remains.
    if auc >= 1:
        lo = optimize.brentq(lambda t: (1 - t) - z2 * t * shape(t) / mn, 0.0, 1.0, xtol=1e-12)
        return (float(lo), 1.0)
    if auc <= 0:
        hi = optimize.brentq(lambda t: t - z2 * (1 - t) * shape(t) / mn, 0.0, 1.0, xtol=1e-12)
        return (0.0, float(hi))
    lo = optimize.brentq(excess, 0.0, auc, xtol=1e-12)
    hi = optimize.brentq(excess, auc, 1.0, xtol=1e-12)
    return (float(lo), float(hi))


def auroc_logit(auc: float, var: float, n_pos: int, n_neg: int, z: float) -> tuple[Interval, str]:
    """AUROC interval: logit DeLong where DeLong's variance is positive, else the score interval."""
    if 0 < auc < 1 and var > 0:
        se = math.sqrt(var) / (auc * (1 - auc))
        centre = math.log(auc / (1 - auc))
        return (_expit(centre - z * se), _expit(centre + z * se)), "logit_delong"
    return auroc_score(auc, n_pos, n_neg, z), "newcombe_auroc_score"


def _expit(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def mover_p_value(interval_at: Callable[[float], Interval], estimate: float) -> float:
    """Two-sided p-value of H0: difference = 0 that inverts a difference interval.

    `interval_at(z)` gives the interval at normal quantile z (level 1 - 2 sf(z)). The p-value
    is 2 sf(z*) for the z* at which the interval's nearer bound reaches 0, so p < alpha
    exactly when the interval at level 1 - alpha excludes 0.
    """
    if not math.isfinite(estimate):
        return math.nan
    if estimate == 0:
        return 1.0
    side = 0 if estimate > 0 else 1

    def bound(z: float) -> float:
        b = interval_at(z)[side]
        return b if side == 0 else -b

    first = bound(1e-9)
    if not math.isfinite(first):
        return math.nan  # the interval is undefined (the caller reports why)
    if first <= 0:
        return 1.0
    z_hi = 2.0
    while bound(z_hi) > 0:
        z_hi *= 2
        if z_hi > 64:
            return 0.0
    z_star = optimize.brentq(bound, 1e-9, z_hi, xtol=1e-10)
    return float(min(1.0, 2 * sps.norm.sf(z_star)))
