"""The one result object of an audit: every report renders it, the gate reads it.

Like fairlearn's MetricFrame, it is built once by `run_audit` and every view (per group,
differences, ratios, tests, summaries) is derived from it. `to_dict` gives the results.json
structure of DESIGN.md (schema version 1): undefined numbers are None with a reason,
never NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Estimate:
    """A point value with its interval; value None means undefined, for `reason`."""

    value: float | None
    ci: tuple[float, float] | None = None
    reason: str | None = None

    @staticmethod
    def of(value: float, ci: tuple[float, float] | None, reason: str) -> Estimate:
        """Build from a float that may be NaN (then null with `reason`)."""
        if value is None or not math.isfinite(value):
            return Estimate(None, None, reason)
        return Estimate(float(value), ci, None)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "value": self.value,
            "ci": [self.ci[0], self.ci[1]] if self.ci is not None else None,
        }
        if self.value is None:
            out["reason"] = self.reason or "undefined"
        elif self.ci is None and self.reason:
            out["reason"] = self.reason
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
        if self.p_value is None:
            out["reason"] = self.reason or "test undefined"
        if self.small:
            out["note"] = "group or reference smaller than min_group_size"
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
    max_difference: Estimate
    min_ratio: Estimate
    worst_group: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_difference": self.max_difference.to_dict(),
            "min_ratio": self.min_ratio.to_dict(),
            "worst_group": self.worst_group,
        }


@dataclass
class AttributeResult:
    name: str
    reference: str
    groups: list[GroupResult]
    comparisons: list[Comparison] = field(default_factory=list)
    omnibus: list[Omnibus] = field(default_factory=list)
    summary: dict[str, MetricSummary] = field(default_factory=dict)

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

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "config": dict(self.config),
            "overall": {"n": self.n, "metrics": {k: v.to_dict() for k, v in self.overall.items()}},
            "attributes": [a.to_dict() for a in self.attributes],
        }
