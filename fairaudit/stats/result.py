"""The one result object of an audit: every report renders it, the gate reads it.

Like fairlearn's MetricFrame, it is built once by `run_audit` and every view (per group,
differences, ratios, tests, summaries) is derived from it. `to_dict` gives the results.json
structure (fairaudit/schema/results.schema.json, schema version 2; docs/statistics.md,
"Metrics"): undefined numbers are None with a reason, never NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Estimate:
    """A point value with its interval; value None means undefined, for `reason`.

    `method` names how the interval was computed (docs/statistics.md); `n` is the number
    of cases the value rests on (its denominator), where that is known. A ratio may be
    infinite (value or upper bound): JSON has no infinity, so it is written as null with
    the reason.
    """

    value: float | None
    ci: tuple[float, float] | None = None
    reason: str | None = None
    method: str | None = None
    n: int | None = None
    # Patient-level clustering: the variance over that of independent images (n / deff cases).
    design_effect: float | None = None

    @staticmethod
    def of(value: float, ci: tuple[float, float] | None, reason: str, method: str | None = None) -> Estimate:
        """Build from a float that may be NaN (then null with `reason`)."""
        if value is None or not math.isfinite(value):
            return Estimate(None, None, reason)
        return Estimate(float(value), ci, None, method)

    @property
    def unbounded(self) -> bool:
        """True when the value or a bound is infinite (written as null)."""
        vals = [self.value] if self.value is not None else []
        vals += list(self.ci) if self.ci is not None else []
        return any(math.isinf(v) for v in vals)

    def to_dict(self) -> dict[str, Any]:
        def num(v: float | None) -> float | None:
            return None if v is None or math.isinf(v) else v

        out: dict[str, Any] = {
            "value": num(self.value),
            "ci": [num(self.ci[0]), num(self.ci[1])] if self.ci is not None else None,
        }
        if self.method is not None and self.ci is not None:
            out["method"] = self.method
        if self.n is not None:
            out["n"] = self.n
        if self.design_effect is not None:
            out["design_effect"] = self.design_effect
        if out["value"] is None or (self.ci is None and self.reason) or self.unbounded:
            out["reason"] = self.reason or "undefined"
        return out


@dataclass
class GroupResult:
    group: str
    n: int
    n_positive: int
    small: bool
    metrics: dict[str, Estimate]

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "n": self.n,
            "n_positive": self.n_positive,
            "n_negative": self.n - self.n_positive,
            "small": self.small,
            "metrics": {k: v.to_dict() for k, v in self.metrics.items()},
        }


@dataclass
class Within:
    """A comparison again within each stratum of the `--within` columns, pooled: does the gap
    survive adjustment for a third variable (docs/statistics.md, "Confounders (`--within`)")?
    A sensitivity analysis: its p-value joins no multiplicity family."""

    strata: list[str]  # the --within columns
    n_strata: int  # strata holding records of the group or the reference
    n_strata_used: int  # of those, the strata where both have cases of the metric's denominator
    difference: Estimate  # pooled within-stratum difference (group minus reference)
    test: str
    p_value: float | None
    reason: str | None = None  # why p_value is None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "strata": list(self.strata),
            "n_strata": self.n_strata,
            "n_strata_used": self.n_strata_used,
            "difference": self.difference.to_dict(),
            "test": self.test,
            "p_value": self.p_value,
        }
        if self.p_value is None:
            out["reason"] = self.reason or "test undefined"
        return out


@dataclass
class Comparison:
    metric: str
    group: str
    reference: str
    difference: Estimate
    ratio: Estimate
    test: str
    p_value: float | None
    p_adjusted: float | None = None
    significant: bool | None = None
    reason: str | None = None
    small: bool = False
    family: str | None = None  # "primary" or "exploratory" (docs/statistics.md)
    tested_as: str | None = None  # fnr / tnr: the twin metric whose test this row shares
    # The difference interval at the family-adjusted level (simultaneous with p_adjusted).
    adjusted: Estimate | None = None
    level_alpha: float | None = None
    # The difference interval as a function of the normal quantile; not serialized.
    interval_at: Callable[[float], tuple[float, float]] | None = field(
        default=None, repr=False, compare=False
    )
    within: Within | None = None  # --within: the comparison within strata, pooled

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "metric": self.metric,
            "group": self.group,
            "reference": self.reference,
            "difference": self.difference.to_dict(),
            "ratio": self.ratio.to_dict(),
            "test": self.test,
            "p_value": self.p_value,
            "p_adjusted": self.p_adjusted,
            "significant": bool(self.significant) if self.significant is not None else False,
        }
        if self.adjusted is not None:
            out["difference_adjusted"] = self.adjusted.to_dict()
            out["adjusted_level"] = 1.0 - self.level_alpha
        if self.family is not None:
            out["family"] = self.family
        if self.tested_as is not None:
            out["tested_as"] = self.tested_as
        if self.p_value is None:
            out["reason"] = self.reason or "test undefined"
        if self.small:
            out["note"] = "the metric's denominator in the group or reference is below min_group_size"
        if self.within is not None:
            out["within"] = self.within.to_dict()
        return out


@dataclass
class Omnibus:
    metric: str
    test: str
    p_value: float | None
    statistic: float | None = None
    df: int | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"metric": self.metric, "test": self.test, "p_value": self.p_value}
        if self.statistic is not None:
            out["statistic"] = self.statistic
        if self.df is not None:
            out["df"] = self.df
        if self.p_value is None:
            out["reason"] = self.reason or "test undefined"
        return out


@dataclass
class MetricSummary:
    """An attribute's spread for one metric, and its headline.

    `max_difference` / `min_ratio` are the range and min/max ratio over groups of adequate
    size with simultaneous intervals; `worst` is the comparison with the most harmful signed
    difference to the reference, and `heterogeneity` the omnibus test across groups
    (docs/statistics.md, "The headline").
    """

    max_difference: Estimate
    min_ratio: Estimate
    worst_group: str | None
    worst: Comparison | None = None
    heterogeneity: Omnibus | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "max_difference": self.max_difference.to_dict(),
            "min_ratio": self.min_ratio.to_dict(),
            "worst_group": self.worst_group,
        }
        if self.worst is not None:
            out["worst_difference"] = {
                "group": self.worst.group,
                "reference": self.worst.reference,
                "difference": self.worst.difference.to_dict(),
                "p_value": self.worst.p_value,
                "p_adjusted": self.worst.p_adjusted,
                "small": self.worst.small,
            }
        if self.heterogeneity is not None:
            out["heterogeneity"] = {"test": self.heterogeneity.test, "p_value": self.heterogeneity.p_value}
        return out


@dataclass
class AttributeResult:
    name: str
    reference: str
    groups: list[GroupResult]
    comparisons: list[Comparison] = field(default_factory=list)
    omnibus: list[Omnibus] = field(default_factory=list)
    summary: dict[str, MetricSummary] = field(default_factory=dict)
    n_missing: int = 0  # records without a value of the attribute: in the audit, in no group

    def group(self, name: str) -> GroupResult:
        return next(g for g in self.groups if g.group == name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "reference": self.reference,
            "groups": [g.to_dict() for g in self.groups],
            "small_groups": [g.group for g in self.groups if g.small],
            "comparisons": [c.to_dict() for c in self.comparisons],
            "omnibus": [o.to_dict() for o in self.omnibus],
            "summary": {k: v.to_dict() for k, v in self.summary.items()},
            **({"n_missing": self.n_missing} if self.n_missing else {}),
        }


@dataclass
class AuditResult:
    """Everything `stats` computed; inputs, model and gate are attached by the caller."""

    task: str
    config: dict[str, Any]
    n: int
    overall: dict[str, Estimate]
    attributes: list[AttributeResult]

    def attribute(self, name: str) -> AttributeResult:
        return next(a for a in self.attributes if a.name == name)

    def comparisons(self) -> list[tuple[AttributeResult, Comparison]]:
        return [(a, c) for a in self.attributes for c in a.comparisons]

    def consistency(self) -> dict[str, Any]:
        """Do tests and intervals say the same thing? Every tested row, before and after correction.

        A row agrees when "p < alpha" equals "the interval excludes 0" (and likewise for the
        adjusted p-value and the adjusted interval). Inverted tests agree by construction; a
        permutation test beside a bootstrap interval can disagree near the threshold: those
        rows are listed with why (docs/statistics.md).
        """
        alpha = round(1.0 - float(self.config["ci_level"]), 12)
        rows = agree = agree_adj = 0
        listed: list[dict[str, Any]] = []
        for attr, c in self.comparisons():
            if c.p_value is None or c.tested_as is not None or c.difference.ci is None:
                continue
            rows += 1
            lo, hi = c.difference.ci
            same = (c.p_value < alpha) == (lo > 0 or hi < 0)
            agree += same
            same_adj = True
            if c.adjusted is not None and c.adjusted.ci is not None and c.significant is not None:
                alo, ahi = c.adjusted.ci
                same_adj = bool(c.significant) == (alo > 0 or ahi < 0)
            agree_adj += same_adj
            if not (same and same_adj):
                listed.append(
                    {
                        "attribute": attr.name,
                        "group": c.group,
                        "metric": c.metric,
                        "test": c.test,
                        "p_value": c.p_value,
                        "ci": [lo, hi],
                        "why": f"the {c.test} test and the {c.difference.method} interval are two "
                        "approximations that can fall on either side of the threshold",
                    }
                )
        return {"rows": rows, "agree": agree, "agree_adjusted": agree_adj, "disagreements": listed}

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "config": dict(self.config),
            "overall": {"n": self.n, "metrics": {k: v.to_dict() for k, v in self.overall.items()}},
            "attributes": [a.to_dict() for a in self.attributes],
            "consistency": self.consistency(),
        }
