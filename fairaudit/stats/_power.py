"""The smallest difference each comparison could have detected, for the test that was run.

A reviewer reading "no significant difference" needs to know whether the audit could have
seen a difference at all. For each comparison this gives the smallest true difference that
the audit's own test, at the level that actually decided the row, detects with 80 % power
at the audit's group sizes (docs/statistics.md, "Power"). Two things matter:

- the level: a row is significant when its family-adjusted p-value is below alpha, i.e. when
  the difference interval at the row's `adjusted_level` excludes 0, so the power is computed
  at alpha = 1 - adjusted_level (the config's alpha only for rows that are not tested);
- the test and its variance under the alternative, not under the null or at the reference.

Per comparison:

- rates tested by the inverted Newcombe hybrid score interval (`newcombe_score`, modified
  Wilson limits) or its Clopper-Pearson form (`mover_exact`): exact unconditional power,
  the probability over the two independent binomial distributions (group at p_ref +- d,
  reference at p_ref) that the interval at the decision level excludes 0, summed over every
  pair of outcomes within 8 SD of the reference's mean (`exact_binomial`). The difference d
  is solved for 80 % power in each direction within the rate's range [0, 1]; a direction
  that no rate in range detects with 80 % power is null, and `value` (the larger of the
  two) is null with a reason when neither is reachable. Very large denominators (over
  `MAX_EXACT_N`) use the normal approximation with the binomial variance at the
  alternative instead (`normal_alternative`).
- rates tested by Fisher's exact test (`--ci-method percentile/bca`): the normal
  approximation, pooled variance for the critical value and the alternative's variance for
  the spread (Fleiss); Fisher's test is somewhat more conservative at small n.
- AUROC: a normal approximation (`normal_alternative`) whose spread is the Hanley-McNeil
  (1982) variance at the alternative AUROC with each group's positives and negatives, and
  whose critical value is the half-width of the audit's own MOVER of the two Newcombe
  score intervals, at the decision level, evaluated at the alternative AUROCs. Hanley and
  McNeil's variance is exact for exponential score distributions; for binormal scores it
  overstates the variance at high AUROC (x1.6 at 0.9, x2.3 at 0.97), so there the stated
  difference is conservative (simulated power up to 0.95 rather than 0.8).
- balanced accuracy with closed-form intervals: the same approximation with the binomial
  variances of the two rates, each moved by the same share of its room towards 1 (or 0).
- metrics with bootstrap intervals and a permutation test (brier, auprc, ece, segmentation
  means): (z(1 - alpha/2) + z(power)) x SE, SE read off the reported interval of the
  difference, at the decision level (`normal_interval_se`).

benchmarks/power.py checks the stated power by simulating cohorts at the stated difference
and running the audit's tests (figures and method in docs/statistics.md, "Power");
tests/unit/stats/test_power_simulation.py runs a fast subset.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from scipy import optimize
from scipy import stats as sps

from fairaudit.stats import _score as S
from fairaudit.stats._metrics import PROPORTIONS
from fairaudit.stats._tests import hanley_mcneil_variance

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_POWER",
    "MAX_EXACT_N",
    "attach_power",
    "detectable_auroc_difference",
    "detectable_from_se",
    "detectable_rate_difference",
    "exact_rate_power",
    "min_detectable_difference",
    "newcombe_rejects",
]

DEFAULT_POWER = 0.8
# Above this many cases in the group or the reference, the exact sum gives way to the normal
# approximation at the alternative (its error there is far below the solver's tolerance).
MAX_EXACT_N = 5000
_SUPPORT_SD = 8.0
_GRID = 64

_COUNT_KEYS = ("tp", "fp", "tn", "fn")
# Tests that invert a MOVER interval of two proportions, and the proportion interval they use.
_RATE_INTERVALS = {"newcombe_score": "modified_wilson", "mover_exact": "clopper_pearson"}
_CI_METHOD_TEST = {"score": "newcombe_score", "exact": "mover_exact"}


# ----------------------------------------------------------------------------- rates, exactly


def _both_ways(up: float | None, down: float | None, method: str) -> dict[str, Any]:
    """An entry from the two directions: `value` is the larger feasible one (or None)."""
    feasible = [d for d in (up, down) if d is not None]
    return {"value": max(feasible) if feasible else None, "increase": up, "decrease": down, "method": method}


def _proportion_bounds(x: np.ndarray, n: int, z: float, interval: str) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised `_score.modified_wilson` / `_score.clopper_pearson` for every x of n."""
    x = np.asarray(x, dtype=np.float64)
    alpha = 2.0 * float(sps.norm.sf(z))
    if interval == "clopper_pearson":
        with np.errstate(invalid="ignore", divide="ignore"):
            lo = np.where(x <= 0, 0.0, sps.beta.ppf(alpha / 2, np.maximum(x, 1e-300), n - x + 1))
            hi = np.where(x >= n, 1.0, sps.beta.isf(alpha / 2, x + 1, np.maximum(n - x, 1e-300)))
        return lo, hi
    p = x / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z2 / (4.0 * n * n)) / (1 + z2 / n)
    lo = np.where(x <= 0, 0.0, np.maximum(0.0, centre - half))
    hi = np.where(x >= n, 1.0, np.minimum(1.0, centre + half))
    if interval == "modified_wilson" and n <= 100:  # Brown, Cai & DasGupta's x* = 3
        for k in (1, 2, 3):
            bound = float(sps.chi2.ppf(alpha, 2 * k)) / (2 * n)
            lo = np.where(x == k, bound, lo)
            hi = np.where(n - x == k, 1.0 - bound, hi)
    return lo, hi


def newcombe_rejects(
    x_group: np.ndarray,
    n_group: int,
    x_ref: np.ndarray,
    n_ref: int,
    alpha: float,
    interval: str = "modified_wilson",
) -> np.ndarray:
    """Boolean matrix [x_group, x_ref]: does the MOVER difference interval (group minus
    reference) at level 1 - alpha exclude 0? With modified Wilson limits this is the audit's
    `newcombe_score` test (p < alpha), with Clopper-Pearson limits `mover_exact`."""
    z = float(sps.norm.isf(alpha / 2.0))
    xg = np.asarray(x_group, dtype=np.float64)
    xr = np.asarray(x_ref, dtype=np.float64)
    lo_g, hi_g = _proportion_bounds(xg, n_group, z, interval)
    lo_r, hi_r = _proportion_bounds(xr, n_ref, z, interval)
    pg, pr = (xg / n_group)[:, None], (xr / n_ref)[None, :]
    d = pg - pr
    lower = d - np.hypot(pg - lo_g[:, None], hi_r[None, :] - pr)
    upper = d + np.hypot(hi_g[:, None] - pg, pr - lo_r[None, :])
    return (lower > 0) | (upper < 0)


def _support(n: int, p: float) -> np.ndarray:
    """Outcomes of Binomial(n, p) within 8 SD of its mean (all but ~1e-15 of the mass)."""
    sd = math.sqrt(n * p * (1 - p))
    lo = max(0, math.floor(n * p - _SUPPORT_SD * sd - 1))
    hi = min(n, math.ceil(n * p + _SUPPORT_SD * sd + 1))
    return np.arange(lo, hi + 1)


@functools.lru_cache(maxsize=4096)
def _rejection_given_group(n_group: int, n_ref: int, p_ref: float, alpha: float, interval: str) -> np.ndarray:
    """P(reject | x_group) for every x_group = 0..n_group, the reference ~ Binomial(n_ref, p_ref)."""
    xr = _support(n_ref, p_ref)
    weights = sps.binom.pmf(xr, n_ref, p_ref)
    reject = newcombe_rejects(np.arange(n_group + 1), n_group, xr, n_ref, alpha, interval)
    out = reject.astype(np.float64) @ weights
    out.setflags(write=False)
    return out


def exact_rate_power(
    p_group: float | np.ndarray,
    p_ref: float,
    n_group: int,
    n_ref: int,
    alpha: float,
    interval: str = "modified_wilson",
) -> np.ndarray | float:
    """Exact power of the inverted MOVER test at true rates p_group (scalar or array), p_ref."""
    given = _rejection_given_group(int(n_group), int(n_ref), float(p_ref), float(alpha), interval)
    pg = np.atleast_1d(np.asarray(p_group, dtype=np.float64))
    pmf = sps.binom.pmf(np.arange(n_group + 1)[None, :], n_group, pg[:, None])
    out = pmf @ given
    return float(out[0]) if np.ndim(p_group) == 0 else out


def _first_crossing(
    power_at: Callable[[np.ndarray], np.ndarray], d_max: float, target: float
) -> float | None:
    """Smallest d in (0, d_max] with power_at(d) >= target (grid, then Brent), or None."""
    if d_max <= 0:
        return None
    grid = np.linspace(0.0, d_max, _GRID + 1)[1:]
    values = np.asarray(power_at(grid), dtype=np.float64)
    hits = np.flatnonzero(values >= target)
    if hits.size == 0:
        return None
    i = int(hits[0])
    hi = float(grid[i])
    lo = float(grid[i - 1]) if i > 0 else 0.0
    f_lo = float(power_at(np.array([lo]))[0]) - target if lo > 0 else -1.0
    if f_lo >= 0:
        return lo
    return float(
        optimize.brentq(lambda d: float(power_at(np.array([d]))[0]) - target, lo, hi, xtol=1e-7, rtol=1e-10)
    )


def _normal_rate_power(
    p_group: np.ndarray, p_ref: float, n_group: int, n_ref: int, alpha: float, pooled: bool
) -> np.ndarray:
    """Normal-approximation power of a two-sided test of two rates, variance at the alternative.

    pooled=False: the critical value is also at the alternative (a Wald-type interval, which
    Newcombe's becomes at large n); pooled=True: the null's pooled variance (Fisher, Fleiss).
    """
    z = float(sps.norm.isf(alpha / 2.0))
    pg = np.asarray(p_group, dtype=np.float64)
    d = pg - p_ref
    s1 = np.sqrt(pg * (1 - pg) / n_group + p_ref * (1 - p_ref) / n_ref)
    if pooled:
        pbar = (n_group * pg + n_ref * p_ref) / (n_group + n_ref)
        s0 = np.sqrt(pbar * (1 - pbar) * (1.0 / n_group + 1.0 / n_ref))
    else:
        s0 = s1
    with np.errstate(divide="ignore", invalid="ignore"):
        out = sps.norm.sf((z * s0 - d) / s1) + sps.norm.cdf((-z * s0 - d) / s1)
    return np.where(s1 > 0, out, (np.abs(d) > 0).astype(np.float64))


@functools.lru_cache(maxsize=8192)
def _rate_cached(
    p_ref: float, n_group: int, n_ref: int, alpha: float, power: float, test: str
) -> tuple[float | None, float | None, str]:
    interval = _RATE_INTERVALS.get(test)
    if interval is not None and max(n_group, n_ref) <= MAX_EXACT_N:
        method = "exact_binomial"

        def at(pg: np.ndarray) -> np.ndarray:
            return np.asarray(exact_rate_power(np.clip(pg, 0.0, 1.0), p_ref, n_group, n_ref, alpha, interval))
    else:
        method = "normal_alternative"
        pooled = interval is None

        def at(pg: np.ndarray) -> np.ndarray:
            return _normal_rate_power(np.clip(pg, 0.0, 1.0), p_ref, n_group, n_ref, alpha, pooled)

    up = _first_crossing(lambda d: at(p_ref + d), 1.0 - p_ref, power)
    down = _first_crossing(lambda d: at(p_ref - d), p_ref, power)
    return up, down, method


def detectable_rate_difference(
    p_ref: float,
    n_group: int,
    n_ref: int,
    alpha: float,
    power: float = DEFAULT_POWER,
    test: str = "newcombe_score",
) -> dict[str, Any]:
    """Smallest increase and decrease from the reference rate that `test` at level alpha
    detects with `power`, the group at n_group cases and the reference at n_ref.

    Returns {"value", "increase", "decrease", "method"}; a direction is None when no rate in
    [0, 1] that way reaches the power, `value` the larger of the two (None if neither).
    """
    if n_group < 1 or n_ref < 1:
        raise ValueError("denominators must be positive")
    p = min(max(float(p_ref), 0.0), 1.0)
    up, down, method = _rate_cached(
        round(p, 12), int(n_group), int(n_ref), round(float(alpha), 12), power, test
    )
    return _both_ways(up, down, method)


# ----------------------------------------------------------------------------- normal approximations


def _normal_crossing(power_at: Callable[[float], float], d_max: float, target: float) -> float | None:
    """Smallest d in (0, d_max] where a smooth power curve reaches target (None if never)."""
    return _first_crossing(lambda ds: np.array([power_at(float(d)) for d in ds]), d_max, target)


def _auroc_power(
    d: float,
    sign: int,
    auc_ref: float,
    group: tuple[int, int],
    reference: tuple[int, int],
    z: float,
    score: bool,
    ref_interval: S.Interval,
) -> float:
    """Normal-approximation power of the AUROC comparison at group AUROC auc_ref + sign * d."""
    auc_g = min(max(auc_ref + sign * d, 0.0), 1.0)
    spread = math.sqrt(hanley_mcneil_variance(auc_g, *group) + hanley_mcneil_variance(auc_ref, *reference))
    if score:  # half-widths of the audit's MOVER of the two score intervals, at the alternative
        lo_g, hi_g = S.auroc_score(auc_g, group[0], group[1], z)
        lo_r, hi_r = ref_interval
        crit_up = math.hypot(auc_g - lo_g, hi_r - auc_ref)  # the group above the reference
        crit_down = math.hypot(hi_g - auc_g, auc_ref - lo_r)
    else:  # DeLong's z test, its variance approximated by Hanley-McNeil's
        crit_up = crit_down = z * spread
    diff = auc_g - auc_ref
    if spread <= 0:
        return float(diff > crit_up or -diff > crit_down)
    return float(sps.norm.sf((crit_up - diff) / spread) + sps.norm.cdf((-crit_down - diff) / spread))


def detectable_auroc_difference(
    auc_ref: float,
    group: tuple[int, int],
    reference: tuple[int, int],
    alpha: float,
    power: float = DEFAULT_POWER,
    test: str = "auroc_score_mover",
) -> dict[str, Any]:
    """Smallest AUROC increase and decrease detected with `power` at level alpha.

    `group` and `reference` are (positives, negatives). Normal approximation: Hanley-McNeil
    variance at the alternative AUROC; with `auroc_score_mover` the critical value is the
    half-width of the MOVER of the two Newcombe score intervals at the alternative.
    """
    up, down = _auroc_cached(
        round(float(auc_ref), 12), tuple(group), tuple(reference), round(float(alpha), 12), power, test
    )
    return _both_ways(up, down, "normal_alternative")


@functools.lru_cache(maxsize=4096)
def _auroc_cached(
    auc_ref: float,
    group: tuple[int, int],
    reference: tuple[int, int],
    alpha: float,
    power: float,
    test: str,
) -> tuple[float | None, float | None]:
    """(increase, decrease) of `detectable_auroc_difference`, cached per configuration."""
    z = float(sps.norm.isf(alpha / 2.0))
    score = test != "delong"
    ref_interval = S.auroc_score(auc_ref, reference[0], reference[1], z) if score else (math.nan, math.nan)

    def at(sign: int) -> Callable[[float], float]:
        return lambda d: _auroc_power(d, sign, auc_ref, group, reference, z, score, ref_interval)

    up = _normal_crossing(at(+1), 1.0 - auc_ref, power)
    down = _normal_crossing(at(-1), auc_ref, power)
    return up, down


@functools.lru_cache(maxsize=4096)
def _balanced_accuracy_detectable(
    tpr: float, tnr: float, group: tuple[int, int], reference: tuple[int, int], alpha: float, power: float
) -> dict[str, Any]:
    """Balanced accuracy: each rate moves by the same share of its room (Wald, alternative variance)."""
    z = float(sps.norm.isf(alpha / 2.0))
    ba = (tpr + tnr) / 2.0
    ref_var = (tpr * (1 - tpr) / reference[0] + tnr * (1 - tnr) / reference[1]) / 4.0

    def at(sign: int) -> Callable[[float], float]:
        def power_at(d: float) -> float:
            if sign > 0:
                share = d / (1.0 - ba)
                t, s = tpr + share * (1 - tpr), tnr + share * (1 - tnr)
            else:
                share = d / ba
                t, s = tpr * (1 - share), tnr * (1 - share)
            spread = math.sqrt(ref_var + (t * (1 - t) / group[0] + s * (1 - s) / group[1]) / 4.0)
            if spread <= 0:
                return float(d > 0)
            return float(sps.norm.sf(z - d / spread) + sps.norm.cdf(-z - d / spread))

        return power_at

    up = _normal_crossing(at(+1), 1.0 - ba, power) if ba < 1 else None
    down = _normal_crossing(at(-1), ba, power) if ba > 0 else None
    return _both_ways(up, down, "normal_alternative")


def detectable_from_se(se: float, alpha: float, power: float = DEFAULT_POWER) -> float:
    """(z_{1-alpha/2} + z_power) x SE: the normal-approximation minimum detectable difference."""
    return float((sps.norm.isf(alpha / 2.0) + sps.norm.ppf(power)) * se)


# ----------------------------------------------------------------------------- results.json


def _value(estimate: Any) -> float | None:
    if isinstance(estimate, Mapping):
        v = estimate.get("value")
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            return float(v)
    return None


def _denominator(group: Mapping[str, Any], metric: str) -> int | None:
    """How many cases the proportion `metric` of a group is computed over."""
    _, denominator = PROPORTIONS[metric]
    confusion = group.get("confusion")
    if isinstance(confusion, Mapping) and all(k in confusion for k in _COUNT_KEYS):
        return int(sum(int(confusion[k]) for k in denominator))
    n, n_pos = group.get("n"), group.get("n_positive")
    if n is None:
        return None
    if len(denominator) == 4:
        return int(n)
    if n_pos is None:
        return None
    if denominator == ("tp", "fn"):
        return int(n_pos)
    if denominator == ("tn", "fp"):
        return int(n) - int(n_pos)
    sel = _value((group.get("metrics") or {}).get("selection_rate"))
    if sel is None:
        return None
    predicted_positive = round(sel * int(n))
    return predicted_positive if denominator == ("tp", "fp") else int(n) - predicted_positive


def _design_effect(group: Mapping[str, Any] | None, metric: str) -> float:
    """The group estimate's design effect (patient-level clustering; 1 where records are the unit)."""
    estimate = ((group or {}).get("metrics") or {}).get(metric)
    deff = estimate.get("design_effect") if isinstance(estimate, Mapping) else None
    if isinstance(deff, (int, float)) and not isinstance(deff, bool) and math.isfinite(deff) and deff > 1:
        return float(deff)
    return 1.0


def _effective(n: int, deff: float) -> int:
    """Records as independent cases: n / deff, at least 1 (docs/statistics.md, patient-level)."""
    return max(1, round(n / deff)) if deff > 1 else n


def _classes(group: Mapping[str, Any]) -> tuple[int, int] | None:
    """(positives, negatives) of a group, when both are known and positive."""
    n, n_pos = group.get("n"), group.get("n_positive")
    if n is None or n_pos is None:
        return None
    n_neg = group.get("n_negative", int(n) - int(n_pos))
    if int(n_pos) < 1 or int(n_neg) < 1:
        return None
    return int(n_pos), int(n_neg)


def _from_interval(comparison: Mapping[str, Any], alpha: float, ci_level: float, power: float) -> dict | None:
    diff = comparison.get("difference")
    ci = diff.get("ci") if isinstance(diff, Mapping) else None
    if not isinstance(ci, (list, tuple)) or len(ci) != 2 or ci[0] is None or ci[1] is None:
        return None
    se = (float(ci[1]) - float(ci[0])) / (2.0 * float(sps.norm.isf((1.0 - ci_level) / 2.0)))
    if not math.isfinite(se) or se <= 0:
        return None
    return {"value": detectable_from_se(se, alpha, power), "method": "normal_interval_se"}


def decision_alpha(comparison: Mapping[str, Any], config_alpha: float) -> tuple[float, str]:
    """The two-sided level that decides the row, and where it came from."""
    level = comparison.get("adjusted_level")
    if isinstance(level, (int, float)) and not isinstance(level, bool) and 0 < level < 1:
        return round(1.0 - float(level), 12), "adjusted_level"
    if comparison.get("p_value") is None:
        return config_alpha, "config alpha (the row is not tested)"
    return config_alpha, "config alpha (no adjusted level)"


def min_detectable_difference(
    comparison: Mapping[str, Any],
    group: Mapping[str, Any] | None,
    reference: Mapping[str, Any] | None,
    config_alpha: float,
    ci_level: float,
    power: float = DEFAULT_POWER,
    ci_method: str = "score",
) -> dict[str, Any]:
    """The `min_detectable_difference` entry of one comparison of results.json."""
    metric = str(comparison.get("metric"))
    alpha, source = decision_alpha(comparison, config_alpha)
    test = str(comparison.get("test") or "none")
    if test == "none":  # untested rows (prevalence): the test the audit would run
        test = _CI_METHOD_TEST.get(ci_method, "fisher_exact")
    out: dict[str, Any] | None = None
    extra: dict[str, Any] = {}
    ref_metrics = (reference or {}).get("metrics") or {}
    if metric in PROPORTIONS and group is not None and reference is not None:
        n_g, n_r = _denominator(group, metric), _denominator(reference, metric)
        p_ref = _value(ref_metrics.get(metric))
        if n_g and n_r and p_ref is not None:
            n_g = _effective(n_g, _design_effect(group, metric))
            n_r = _effective(n_r, _design_effect(reference, metric))
            out = detectable_rate_difference(p_ref, n_g, n_r, alpha, power, test)
            extra = {"n_group": n_g, "n_reference": n_r}
    elif metric == "auroc" and group is not None and reference is not None and test != "permutation":
        cg, cr = _classes(group), _classes(reference)
        auc_ref = _value(ref_metrics.get("auroc"))
        if cg and cr and auc_ref is not None:
            cg = tuple(_effective(k, _design_effect(group, "auroc")) for k in cg)  # type: ignore[assignment]
            cr = tuple(_effective(k, _design_effect(reference, "auroc")) for k in cr)  # type: ignore[assignment]
            out = detectable_auroc_difference(auc_ref, cg, cr, alpha, power, test)
            extra = {"n_group": min(cg), "n_reference": min(cr)}
    elif (
        metric == "balanced_accuracy"
        and test in _RATE_INTERVALS
        and group is not None
        and reference is not None
    ):
        cg, cr = _classes(group), _classes(reference)
        tpr, tnr = _value(ref_metrics.get("tpr")), _value(ref_metrics.get("tnr"))
        if cg and cr and tpr is not None and tnr is not None:
            cg = (
                _effective(cg[0], _design_effect(group, "tpr")),
                _effective(cg[1], _design_effect(group, "tnr")),
            )
            cr = (
                _effective(cr[0], _design_effect(reference, "tpr")),
                _effective(cr[1], _design_effect(reference, "tnr")),
            )
            out = dict(
                _balanced_accuracy_detectable(round(tpr, 12), round(tnr, 12), cg, cr, round(alpha, 12), power)
            )
            extra = {"n_group": min(cg), "n_reference": min(cr)}
    if out is None:
        out = _from_interval(comparison, alpha, ci_level, power)
    if out is None:
        out = {
            "value": None,
            "method": "none",
            "reason": "no interval of the difference to derive a standard error from",
        }
    out.update(
        {"power": power, "alpha": alpha, "level": 1.0 - alpha, "level_source": source, "test": test, **extra}
    )
    if out["value"] is None and "reason" not in out:
        out["reason"] = (
            f"no difference within the metric's range is detected with {power:.0%} power by this test "
            f"at significance level {alpha:.2g} (after the correction) at these group sizes"
        )
    return out


def attach_power(results: dict[str, Any], power: float = DEFAULT_POWER) -> None:
    """Add `min_detectable_difference` to every comparison of a results dict, in place."""
    config = results.get("config") or {}
    ci_level = float(config.get("ci_level") or 0.95)
    ci_method = str(config.get("ci_method") or "score")
    alpha = round(1.0 - ci_level, 12)
    rows = 0
    for attribute in results.get("attributes") or []:
        groups = {str(g.get("group")): g for g in attribute.get("groups") or []}
        for comparison in attribute.get("comparisons") or []:
            comparison["min_detectable_difference"] = min_detectable_difference(
                comparison,
                groups.get(str(comparison.get("group"))),
                groups.get(str(comparison.get("reference"))),
                alpha,
                ci_level,
                power,
                ci_method,
            )
            rows += 1
    log.debug("power attached to %d comparisons", rows)
