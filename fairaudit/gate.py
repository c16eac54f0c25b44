"""The CI gate: a TOML policy applied to the audit's intervals, giving pass, fail or inconclusive.

A check compares the whole interval with the bound, not just the point estimate: "pass"
when the interval lies inside the bound, "fail" when it lies wholly outside, else
"inconclusive". With decide = "no_evidence_of_harm" inconclusive checks do not fail the
gate; with "evidence_of_fairness" they do. Small groups are reported but never decide.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fairaudit.errors import InputError
from fairaudit.stats import METRICS, AuditResult, Estimate
from fairaudit.stats._segmentation import SEGMENTATION_METRICS

# Classification and segmentation metrics: a policy may name either kind.
_KNOWN_METRICS: tuple[str, ...] = METRICS + SEGMENTATION_METRICS

DECIDE_MODES = ("no_evidence_of_harm", "evidence_of_fairness")
_RULE_KEYS = ("max_abs_difference", "min_ratio", "max_disparity_increase")
_GATE_KEYS = {"metrics", "fail_on_significant", "decide", "overrides", *_RULE_KEYS}


@dataclass(frozen=True)
class GatePolicy:
    metrics: tuple[str, ...]
    max_abs_difference: float | None = None
    min_ratio: float | None = None
    fail_on_significant: bool = False
    decide: str = "no_evidence_of_harm"
    overrides: dict[str, dict[str, float]] = field(default_factory=dict)
    # With --baseline-predictions: a release must not widen a gap (|group - reference|) by more.
    max_disparity_increase: float | None = None

    def bound(self, rule: str, metric: str) -> float | None:
        return self.overrides.get(metric, {}).get(rule, getattr(self, rule))

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": list(self.metrics),
            "max_abs_difference": self.max_abs_difference,
            "min_ratio": self.min_ratio,
            "fail_on_significant": self.fail_on_significant,
            "decide": self.decide,
            "overrides": self.overrides,
            "max_disparity_increase": self.max_disparity_increase,
        }


def _number(value: Any, where: str, path: Path, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InputError(f"{where} must be a number in [{low}, {high}], got {value!r}.", file=str(path))
    return float(value)


def load_policy(path: Path | str) -> GatePolicy:
    """Parse and check a gate policy file; every mistake is an InputError naming the key."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("gate policy file not found.", file=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"is not valid TOML: {exc}.", file=str(path)) from None
    gate = data.get("gate")
    if not isinstance(gate, dict):
        raise InputError("has no [gate] table.", file=str(path), hint="See the sample policy in the docs.")
    unknown = set(gate) - _GATE_KEYS
    if unknown:
        raise InputError(
            f"unknown key(s) in [gate]: {', '.join(sorted(unknown))}. Known: {', '.join(sorted(_GATE_KEYS))}.",
            file=str(path),
        )
    metrics = gate.get("metrics")
    if not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) for m in metrics):
        raise InputError(
            '[gate] metrics must be a list of metric names, e.g. ["tpr", "fpr"].', file=str(path)
        )
    bad = [m for m in metrics if m not in _KNOWN_METRICS]
    if bad:
        raise InputError(
            f"[gate] metrics: unknown metric(s) {', '.join(bad)}; known: {', '.join(_KNOWN_METRICS)}.",
            file=str(path),
        )
    rules: dict[str, float | None] = {}
    for key, (lo, hi) in {
        "max_abs_difference": (0.0, float("inf")),
        "min_ratio": (0.0, 1.0),
        "max_disparity_increase": (0.0, float("inf")),
    }.items():
        rules[key] = _number(gate[key], f"[gate] {key}", path, lo, hi) if key in gate else None
    decide = gate.get("decide", "no_evidence_of_harm")
    if decide not in DECIDE_MODES:
        raise InputError(f"[gate] decide must be one of {', '.join(DECIDE_MODES)}.", file=str(path))
    fos = gate.get("fail_on_significant", False)
    if not isinstance(fos, bool):
        raise InputError("[gate] fail_on_significant must be true or false.", file=str(path))
    overrides: dict[str, dict[str, float]] = {}
    for metric, table in (gate.get("overrides") or {}).items():
        if metric not in _KNOWN_METRICS or not isinstance(table, dict):
            raise InputError(f"[gate.overrides.{metric}]: not a known metric.", file=str(path))
        extra = set(table) - set(_RULE_KEYS)
        if extra:
            raise InputError(
                f"[gate.overrides.{metric}]: unknown key(s) {', '.join(sorted(extra))}.",
                file=str(path),
            )
        overrides[metric] = {
            k: _number(
                v,
                f"[gate.overrides.{metric}] {k}",
                path,
                0.0,
                1.0 if k == "min_ratio" else float("inf"),
            )
            for k, v in table.items()
        }
    if all(v is None for v in rules.values()) and not overrides and not fos:
        raise InputError(
            "[gate] sets no rule: give max_abs_difference, min_ratio, max_disparity_increase or "
            "fail_on_significant.",
            file=str(path),
        )
    return GatePolicy(
        tuple(metrics),
        rules["max_abs_difference"],
        rules["min_ratio"],
        fos,
        decide,
        overrides,
        rules["max_disparity_increase"],
    )


def _status_abs(est: Estimate, bound: float) -> tuple[str, str | None]:
    if est.value is None:
        return "inconclusive", est.reason
    if est.ci is None:
        return "inconclusive", "no interval"
    lo, hi = est.ci
    if -bound <= lo and hi <= bound:
        return "pass", None
    if lo > bound or hi < -bound:
        return "fail", None
    return "inconclusive", "the interval straddles the bound"


def _status_ratio(est: Estimate, bound: float) -> tuple[str, str | None]:
    if est.value is None:
        return "inconclusive", est.reason
    if est.ci is None:
        return "inconclusive", "no interval"
    lo, hi = est.ci
    upper = 1.0 / bound if bound > 0 else float("inf")
    if lo >= bound and hi <= upper:
        return "pass", None
    if hi < bound or lo > upper:
        return "fail", None
    return "inconclusive", "the interval straddles the bound"


def _not_computed_reason(result: AuditResult, metric: str) -> str:
    if result.task == "segmentation" and metric not in SEGMENTATION_METRICS:
        return "metric not computed (a segmentation audit computes dice, iou, hd95, assd, volume_error)"
    if result.task == "classification" and metric in SEGMENTATION_METRICS:
        return "metric not computed (a segmentation metric in a classification audit)"
    return "metric not computed (no scores)"


def _not_computed(result: AuditResult, policy: GatePolicy) -> list[dict[str, Any]]:
    """An inconclusive check for each gated metric the audit could not compute.

    Without scores (0/1 predictions) there is no auroc; a policy that asks for it must
    not pass silently, so each such pair is reported (and fails "evidence_of_fairness").
    """
    out = []
    for attr in result.attributes:
        pairs = {(c.group, c.reference, c.small) for c in attr.comparisons}
        seen = {(c.group, c.metric) for c in attr.comparisons}
        for group, reference, small in sorted(pairs):
            for metric in policy.metrics:
                if (group, metric) in seen:
                    continue
                out.append(
                    {
                        "rule": "computed",
                        "metric": metric,
                        "attribute": attr.name,
                        "group": group,
                        "reference": reference,
                        "bound": None,
                        "observed": {
                            "value": None,
                            "ci": None,
                            "reason": _not_computed_reason(result, metric),
                        },
                        "status": "inconclusive",
                        "decides": not small,
                        "note": "the gate asks for a metric this audit could not compute",
                    }
                )
    return out


def _status_increase(observed: dict[str, Any], bound: float) -> tuple[str, str | None]:
    """A gap's growth since the baseline against its bound, from the paired interval."""
    if observed.get("value") is None:
        return "inconclusive", observed.get("reason") or "undefined"
    if observed.get("ci") is None:
        return "inconclusive", "no interval"
    lo, hi = observed["ci"]
    if hi <= bound:
        return "pass", None
    if lo > bound:
        return "fail", None
    return "inconclusive", "the interval straddles the bound"


def _baseline_checks(policy: GatePolicy, baseline: dict[str, Any] | None) -> list[dict[str, Any]]:
    """`max_disparity_increase`: for each gated metric and non-reference group, the paired
    interval of |gap now| - |gap with the baseline| against the bound."""
    wanted = {m: policy.bound("max_disparity_increase", m) for m in policy.metrics}
    wanted = {m: b for m, b in wanted.items() if b is not None}
    if not wanted:
        return []
    if baseline is None:
        return [
            {
                "rule": "max_disparity_increase",
                "metric": m,
                "attribute": "(release comparison)",
                "group": None,
                "reference": None,
                "bound": b,
                "observed": {"value": None, "ci": None, "reason": "no --baseline-predictions given"},
                "status": "inconclusive",
                "decides": True,
                "note": "the policy limits how much a release may widen a gap; give the previous "
                "model's predictions with --baseline-predictions",
            }
            for m, b in wanted.items()
        ]
    checks = []
    for attr in baseline["attributes"]:
        ref_small = next((g["small"] for g in attr["groups"] if g["group"] == attr["reference"]), False)
        for g in attr["groups"]:
            if g["group"] == attr["reference"]:
                continue
            for m, b in wanted.items():
                row = g["metrics"].get(m)
                if row is None:
                    observed = {"value": None, "ci": None, "reason": "not compared with the baseline"}
                else:
                    observed = row["disparity_increase"]
                status, note = _status_increase(observed, b)
                small = g["small"] or ref_small
                check = {
                    "rule": "max_disparity_increase",
                    "metric": m,
                    "attribute": attr["name"],
                    "group": g["group"],
                    "reference": attr["reference"],
                    "bound": b,
                    "observed": observed,
                    "status": status,
                    "decides": not small,
                }
                if small:
                    note = "group or reference smaller than min_group_size: reported, never decides the gate"
                if note:
                    check["note"] = note
                checks.append(check)
    return checks


def apply_gate(
    result: AuditResult, policy: GatePolicy, baseline: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Every check of the policy on every non-reference group; results.json's `gate`.

    `baseline` is results.json's `baseline` section (--baseline-predictions), read by the
    `max_disparity_increase` rule.
    """
    checks: list[dict[str, Any]] = []
    alpha = round(1.0 - float(result.config["ci_level"]), 12)
    for attr in result.attributes:
        for comp in attr.comparisons:
            if comp.metric not in policy.metrics:
                continue
            rows = []
            for rule, est, judge in (
                ("max_abs_difference", comp.difference, _status_abs),
                ("min_ratio", comp.ratio, _status_ratio),
            ):
                bound = policy.bound(rule, comp.metric)
                if bound is None:
                    continue
                status, note = judge(est, bound)
                rows.append((rule, bound, est.to_dict(), status, note))
            if policy.fail_on_significant:
                p = comp.p_adjusted
                if p is None:
                    status, note = "inconclusive", comp.reason or "no p-value"
                else:
                    status, note = ("fail" if p < alpha else "pass"), None
                rows.append(
                    (
                        "significance",
                        alpha,
                        {"value": p, "ci": None, **({} if p is not None else {"reason": note})},
                        status,
                        note,
                    )
                )
            for rule, bound, observed, status, note in rows:
                check = {
                    "rule": rule,
                    "metric": comp.metric,
                    "attribute": attr.name,
                    "group": comp.group,
                    "reference": comp.reference,
                    "bound": bound,
                    "observed": observed,
                    "status": status,
                    "decides": not comp.small,
                }
                if comp.small:
                    note = "group or reference smaller than min_group_size: reported, never decides the gate"
                if note:
                    check["note"] = note
                checks.append(check)
    checks += _not_computed(result, policy)
    checks += _baseline_checks(policy, baseline)
    deciding = [c for c in checks if c["decides"]]
    failed = any(c["status"] == "fail" for c in deciding)
    if policy.decide == "evidence_of_fairness":
        failed = failed or any(c["status"] == "inconclusive" for c in deciding)
    return {
        "passed": not failed,
        "decide": policy.decide,
        "policy": policy.to_dict(),
        "checks": checks,
    }
