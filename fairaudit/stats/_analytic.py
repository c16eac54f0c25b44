"""Which interval and which test each metric gets, per group and per comparison.

With `ci_method` "score" (the default) or "exact", metrics that are proportions get score
(or exact) intervals, AUROC Newcombe's score interval, balanced accuracy the MOVER of its two
rates; comparisons get MOVER differences, score or MOVER-R ratios, and a p-value from
inverting the difference interval, so the test and the interval beside it always agree.
Per-case means (brier) and metrics without a closed form (auprc, ece) keep the bootstrap.
With "percentile" or "bca" every interval is the bootstrap's. docs/statistics.md has the
methods and their references; benchmarks/coverage.py measures them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from fairaudit.stats import _score as S
from fairaudit.stats._cells import Cells
from fairaudit.stats._metrics import PROPORTIONS
from fairaudit.stats._tests import TestResult
from fairaudit.stats.result import Estimate

ANALYTIC_METHODS = ("score", "exact")

# Ratios are reported for these only: a ratio of two error magnitudes near 0 (brier, ece)
# or of an average precision means little (docs/statistics.md, "Ratios only where they
# mean something").
RATIO_METRICS: frozenset[str] = frozenset((*PROPORTIONS, "balanced_accuracy", "auroc"))
NO_RATIO_REASON = "no ratio for this metric: ratios are reported for rates and AUROC only"

# Name of the test that inverts each comparison's difference interval.
UNBOUNDED_REASON = "the reference has no event: the ratio and its upper bound are unbounded (null)"

_INVERTED_TEST = {"score": "newcombe_score", "exact": "mover_exact"}
_AUROC_TEST = "auroc_score_mover"


@dataclass(frozen=True)
class Counts:
    """A group's confusion counts and class sizes at the audit's threshold."""

    tp: int
    fp: int
    tn: int
    fn: int
    # Per metric, the design effect of patient-level clustering (fairaudit/stats/_clusters.py):
    # a closed-form interval counts n / deff cases. Empty: images are independent.
    deff: Mapping[str, float] = field(default_factory=dict, compare=False)

    @property
    def n_pos(self) -> int:
        return self.tp + self.fn

    @property
    def n_neg(self) -> int:
        return self.tn + self.fp

    def proportion(self, metric: str) -> tuple[int, int]:
        """(numerator, denominator) of one of PROPORTIONS."""
        num, den = PROPORTIONS[metric]
        return sum(getattr(self, k) for k in num), sum(getattr(self, k) for k in den)

    def effective(self, metric: str) -> tuple[float, float]:
        """(numerator, denominator) of a proportion in effective cases: both over the design effect."""
        x, n = self.proportion(metric)
        d = self.design_effect(metric)
        return (x / d, n / d) if d != 1.0 else (x, n)

    def design_effect(self, metric: str) -> float:
        return float(self.deff.get(metric, 1.0))


def denominator(metric: str, c: Counts) -> int:
    """The number of cases a metric rests on: its size for min_group_size (docs/statistics.md,
    "Small groups")."""
    if metric in PROPORTIONS:
        return c.proportion(metric)[1]
    if metric in ("balanced_accuracy", "auroc"):
        return min(c.n_pos, c.n_neg)
    if metric == "auprc":
        return c.n_pos
    return c.n_pos + c.n_neg


class Analytic:
    """Closed-form intervals for one audit's settings (level and score/exact)."""

    def __init__(self, method: str, level: float) -> None:
        self.method = method
        self.level = level
        self.z = S.z_of(level)
        self.prop_name = "modified_wilson" if method == "score" else "clopper_pearson"
        self.prop = S.PROPORTION_INTERVALS[self.prop_name]

    # ---------------------------------------------------------------- one group

    def _interval(self, metric: str, c: Counts, cells: Cells, value: float, z: float) -> S.Interval:
        if metric in PROPORTIONS:
            return self.prop(*c.effective(metric), z)
        if metric == "balanced_accuracy":
            return S.mover_sum(self._balanced_parts(c, z, 1.0))
        if metric == "auroc":
            d = c.design_effect("auroc")
            if d == 1.0:
                return S.auroc_score(value, cells.n_pos, cells.n_neg, z)
            # Never fewer than one effective case of a class (the design effect is the larger
            # class's bound, fairaudit/stats/_clusters.py).
            return S.auroc_score(value, max(1.0, cells.n_pos / d), max(1.0, cells.n_neg / d), z)
        raise KeyError(metric)

    def _balanced_parts(self, c: Counts, z: float, sign: float) -> list[tuple[float, float, S.Interval]]:
        """Balanced accuracy's two halves (tpr, tnr) for a MOVER sum, each with its interval."""
        parts = []
        for rate in ("tpr", "tnr"):
            x, n = c.proportion(rate)
            parts.append((0.5 * sign, x / n, self.prop(*c.effective(rate), z)))
        return parts

    def method_name(self, metric: str) -> str:
        if metric in PROPORTIONS:
            return self.prop_name
        if metric == "balanced_accuracy":
            return f"mover_{self.prop_name}"
        return "newcombe_auroc_score"

    def group(self, metric: str, c: Counts, cells: Cells, value: float, reason: str) -> Estimate:
        """A group's estimate with its closed-form interval (null with `reason` if undefined)."""
        n = denominator(metric, c)
        if not math.isfinite(value):
            return Estimate(None, None, reason, n=n)
        ci = self._interval(metric, c, cells, value, self.z)
        return Estimate(
            float(value),
            (float(ci[0]), float(ci[1])),
            method=self.method_name(metric),
            n=n,
            design_effect=_design_effect(metric, c),
        )

    # ---------------------------------------------------------------- group vs reference

    def compare(
        self,
        metric: str,
        g: tuple[Counts, Cells, float],
        r: tuple[Counts, Cells, float],
        why: str,
    ) -> tuple[Estimate, Estimate, TestResult, Callable[[float], S.Interval] | None]:
        """Difference and ratio (group over reference), the test that inverts the difference,
        and the difference interval as a function of the normal quantile (for adjusted levels)."""
        (cg, cells_g, vg), (cr, cells_r, vr) = g, r
        test = _AUROC_TEST if metric == "auroc" else _INVERTED_TEST[self.method]
        if not (math.isfinite(vg) and math.isfinite(vr)):
            none = Estimate(None, None, why)
            return none, none, TestResult(test, None, reason=why), None

        def diff_at(z: float) -> S.Interval:
            if metric == "balanced_accuracy":
                return S.mover_sum(self._balanced_parts(cg, z, 1.0) + self._balanced_parts(cr, z, -1.0))
            ig = self._interval(metric, cg, cells_g, vg, z)
            ir = self._interval(metric, cr, cells_r, vr, z)
            return S.mover_difference(vg, ig, vr, ir)

        d = vg - vr
        dci = diff_at(self.z)
        method = "newcombe_hybrid_score" if (metric in PROPORTIONS and self.method == "score") else "mover"
        difference = Estimate(float(d), (float(dci[0]), float(dci[1])), method=method)
        p = S.mover_p_value(diff_at, d)
        result = TestResult(test, p if math.isfinite(p) else None, reason=None if math.isfinite(p) else why)
        return difference, self._ratio(metric, g, r), result, diff_at

    def _ratio(self, metric: str, g: tuple[Counts, Cells, float], r: tuple[Counts, Cells, float]) -> Estimate:
        (cg, cells_g, vg), (cr, cells_r, vr) = g, r
        if metric in PROPORTIONS:
            xg, ng = cg.proportion(metric)
            xr, nr = cr.proportion(metric)
            if xg == 0 and xr == 0:
                return Estimate(None, None, "0 / 0: neither the group nor the reference has an event")
            lo, hi = S.koopman_ratio(*cg.effective(metric), *cr.effective(metric), self.z)
            value = math.inf if xr == 0 else vg / vr
            return _ratio_estimate(value, lo, hi, "koopman_score")
        if vr <= 0:
            return Estimate(None, None, "reference value is 0")
        ig = self._interval(metric, cg, cells_g, vg, self.z)
        ir = self._interval(metric, cr, cells_r, vr, self.z)
        lo, hi = S.mover_ratio(vg, ig, vr, ir)
        return _ratio_estimate(vg / vr, lo, hi, "mover_r")


def _ratio_estimate(value: float, lo: float, hi: float, method: str) -> Estimate:
    """A ratio whose value or upper bound may be infinite (JSON null with the reason)."""
    if not math.isfinite(value):
        return Estimate(math.inf, (float(lo), math.inf), UNBOUNDED_REASON, method=method)
    return Estimate(float(value), (float(lo), float(hi)), method=method)


def _design_effect(metric: str, c: Counts) -> float | None:
    """The design effect an estimate records: None where images are the unit."""
    if not c.deff or not (metric in PROPORTIONS or metric == "auroc"):
        return None
    return c.design_effect(metric)


def variance_free(metric: str) -> bool:
    """Metrics that this module gives a closed-form interval."""
    return metric in PROPORTIONS or metric in ("balanced_accuracy", "auroc")


__all__ = [
    "ANALYTIC_METHODS",
    "NO_RATIO_REASON",
    "RATIO_METRICS",
    "Analytic",
    "Counts",
    "denominator",
    "variance_free",
]
