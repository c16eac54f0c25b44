"""The smallest difference each comparison could have detected (statistical power).

A reviewer reading "no significant difference" needs to know whether the audit could
have seen a difference at all. For each comparison this gives the smallest true
difference that a two-sided test at level alpha would detect with the given power
(80 % by default) at the group sizes of the audit:

- proportions (tpr, fpr, ppv, ...): the two-sample test on the arcsine scale that
  statsmodels' `NormalIndPower` and `proportion_effectsize` (Cohen's h) describe, solved
  for the effect and turned back into a difference in the metric's units at the
  reference group's rate. An increase and a decrease need different differences (the
  arcsine scale is not linear); both are given and `value` is the larger one, so "a
  difference of at least `value` either way would have been detected".
- every other metric (auroc, brier, ece, dice, hd95, ...): the normal approximation
  (z_{1-alpha/2} + z_power) x SE, with the standard error of the difference read off its
  bootstrap interval.

The closed form is a fast path (an audit has thousands of comparisons); the tests check it
against statsmodels' root-finding `solve_power`. The alpha is the per-comparison one,
before the multiple-comparison correction, so the real audit is if anything less sensitive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from scipy.stats import norm

from fairaudit.stats._metrics import PROPORTIONS

__all__ = [
    "DEFAULT_POWER",
    "attach_power",
    "detectable_from_se",
    "detectable_proportion_difference",
    "min_detectable_h",
]

DEFAULT_POWER = 0.8

_COUNT_KEYS = ("tp", "fp", "tn", "fn")


def min_detectable_h(n1: float, n2: float, alpha: float, power: float = DEFAULT_POWER) -> float:
    """Smallest Cohen's h a two-sided two-sample z-test detects with `power` (n1, n2 > 0).

    Same parametrisation as statsmodels' NormalIndPower(nobs1=n1, ratio=n2/n1); the far
    tail (below 1e-5 of power for any useful test) is ignored, which makes it closed form.
    """
    if n1 <= 0 or n2 <= 0:
        raise ValueError("group sizes must be positive")
    z = norm.ppf(1 - alpha / 2) + norm.ppf(power)
    return float(z * math.sqrt(1.0 / n1 + 1.0 / n2))


def detectable_proportion_difference(
    p_ref: float, n_group: int, n_ref: int, alpha: float, power: float = DEFAULT_POWER
) -> dict[str, Any]:
    """The smallest detectable increase and decrease from the reference rate `p_ref`.

    Returns {"value", "increase", "decrease"}; a direction is None when even the most
    extreme rate (0 or 1) would not be detected with `power`.
    """
    h = min_detectable_h(n_group, n_ref, alpha, power)
    phi = 2.0 * math.asin(math.sqrt(min(max(p_ref, 0.0), 1.0)))
    up = down = None
    if phi + h <= math.pi:
        up = math.sin((phi + h) / 2.0) ** 2 - p_ref
    if phi - h >= 0.0:
        down = p_ref - math.sin((phi - h) / 2.0) ** 2
    feasible = [d for d in (up, down) if d is not None]
    return {
        "value": max(feasible) if feasible else None,
        "increase": up,
        "decrease": down,
    }


def detectable_from_se(se: float, alpha: float, power: float = DEFAULT_POWER) -> float:
    """(z_{1-alpha/2} + z_power) x SE: the normal-approximation minimum detectable difference."""
    return float((norm.ppf(1 - alpha / 2) + norm.ppf(power)) * se)


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


def _from_interval(comparison: Mapping[str, Any], alpha: float, ci_level: float, power: float):
    diff = comparison.get("difference")
    ci = diff.get("ci") if isinstance(diff, Mapping) else None
    if not isinstance(ci, (list, tuple)) or len(ci) != 2 or ci[0] is None or ci[1] is None:
        return None
    se = (float(ci[1]) - float(ci[0])) / (2.0 * norm.ppf(0.5 + ci_level / 2.0))
    if not math.isfinite(se) or se <= 0:
        return None
    return {
        "value": detectable_from_se(se, alpha, power),
        "power": power,
        "alpha": alpha,
        "method": "normal approximation: (z(1-alpha/2) + z(power)) x SE, SE from the bootstrap "
        "interval of the difference",
    }


def min_detectable_difference(
    comparison: Mapping[str, Any],
    group: Mapping[str, Any] | None,
    reference: Mapping[str, Any] | None,
    alpha: float,
    ci_level: float,
    power: float = DEFAULT_POWER,
) -> dict[str, Any]:
    """The `min_detectable_difference` entry of one comparison of results.json."""
    metric = str(comparison.get("metric"))
    if metric in PROPORTIONS and group is not None and reference is not None:
        n_g, n_r = _denominator(group, metric), _denominator(reference, metric)
        p_ref = _value((reference.get("metrics") or {}).get(metric))
        if n_g and n_r and p_ref is not None:
            out = detectable_proportion_difference(p_ref, n_g, n_r, alpha, power)
            out.update(
                {
                    "power": power,
                    "alpha": alpha,
                    "n_group": n_g,
                    "n_reference": n_r,
                    "method": "two-sample test of proportions on the arcsine scale (Cohen's h, "
                    "statsmodels NormalIndPower), at the reference rate",
                }
            )
            if out["value"] is None:
                out["reason"] = "no difference is detectable with this power at these group sizes"
            return out
    from_ci = _from_interval(comparison, alpha, ci_level, power)
    if from_ci is not None:
        return from_ci
    return {
        "value": None,
        "power": power,
        "alpha": alpha,
        "method": "none",
        "reason": "no interval of the difference to derive a standard error from",
    }


def attach_power(results: dict[str, Any], power: float = DEFAULT_POWER) -> None:
    """Add `min_detectable_difference` to every comparison of a results dict, in place."""
    config = results.get("config") or {}
    ci_level = float(config.get("ci_level") or 0.95)
    alpha = round(1.0 - ci_level, 12)
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
            )
