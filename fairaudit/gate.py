"""The CI gate: a TOML policy applied to the audit's intervals, giving pass, fail or inconclusive.

Why this shape (docs/ci.md, "How a check is judged"): a gate that passes whenever nothing
is *proven* harmful lets a small audit wave a harmful model through, since small data
give wide intervals that prove nothing. So a check passes only when its interval could
have shown a breach, and an audit with nothing that decides is inconclusive, never a pass.

Per check, interval [lo, hi] (bounds may be infinite) against bound b:

- ``max_abs_difference``: fail when [lo, hi] lies wholly outside [-b, b].
  ``evidence_of_fairness``: pass when it lies inside [-b, b], else inconclusive.
  ``no_evidence_of_harm`` (default): pass when it does not fail, |estimate| <= b and its
  half-width (hi - lo) / 2 is at most b (precise enough to have seen a breach), else
  inconclusive.
- ``min_ratio`` (four-fifths rule on min(r, 1/r)): fail when hi < b or lo > 1/b.
  ``evidence_of_fairness``: pass when b <= lo and hi <= 1/b. ``no_evidence_of_harm``: pass
  when it does not fail, the estimate is in [b, 1/b] and the interval is precise on the log
  scale, hi / lo <= 1 / b**2
  (lo > 0, hi finite). An infinite upper or zero lower bound is imprecise, never a fail alone.
- ``max_disparity_increase`` (one-sided): fail when lo > b; ``evidence_of_fairness``: pass
  when hi <= b; ``no_evidence_of_harm``: pass when hi <= b, or when it does not fail, the
  estimate is at most b and the half-width is at most b.
- ``significance`` (``fail_on_significant``): fail when the adjusted p is below alpha.

A check with no estimate or no interval is inconclusive. Under ``no_evidence_of_harm`` every
check that passes ``evidence_of_fairness`` passes too, and a pass under it also needs the
estimate itself within the bound (an estimate beyond it is inconclusive, not a pass). A
check is *small* (its metric's denominator below min_group_size, ``Comparison.small``) and
then decides only if it fails: a breach its interval proves is proven at any size.

The gate's outcome: "fail" when a deciding check fails; else "inconclusive" when no check
decides or a deciding check is inconclusive; else "pass". ``passed`` (the exit code) is
outcome == "pass", or an inconclusive outcome under ``on_inconclusive = "pass"``.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fairaudit._util.formatting import fmt_sig
from fairaudit.errors import InputError
from fairaudit.stats import METRICS, AuditResult, Estimate
from fairaudit.stats._segmentation import SEGMENTATION_METRICS

# Classification and segmentation metrics: a policy may name either kind (the task check
# comes once the task is known, `check_policy_task`).
# underdiagnosis_rate: the false-positive rate of the No Finding finding of a multi-label
# audit (docs/multilabel.md, "Underdiagnosis"), judged on its fpr comparisons.
UNDERDIAGNOSIS = "underdiagnosis_rate"
_KNOWN_METRICS: tuple[str, ...] = METRICS + (UNDERDIAGNOSIS,) + SEGMENTATION_METRICS
_TASK_METRICS: dict[str, tuple[str, ...]] = {
    "classification": METRICS + (UNDERDIAGNOSIS,),
    "segmentation": SEGMENTATION_METRICS,
}

DECIDE_MODES = ("no_evidence_of_harm", "evidence_of_fairness")
ON_INCONCLUSIVE = ("fail", "pass")
OUTCOMES = ("pass", "fail", "inconclusive")
_RULE_KEYS = ("max_abs_difference", "min_ratio", "max_disparity_increase")
_GATE_KEYS = {"metrics", "fail_on_significant", "decide", "on_inconclusive", "overrides", *_RULE_KEYS}
# Float slack for the precision comparisons only ((0.11 - 0.01) / 2 is not exactly 0.05).
_EPS = 1e-12
# A policy is a few lines; anything larger is the wrong file (and is not read whole).
POLICY_MAX_BYTES = 1 << 20
SMALL_NOTE = (
    "too little data (the metric's denominator is below min_group_size): reported, never decides the gate"
)


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
    # What an inconclusive gate does to the exit code: "fail" (1, the default) or "pass" (0).
    on_inconclusive: str = "fail"

    def bound(self, rule: str, metric: str) -> float | None:
        return self.overrides.get(metric, {}).get(rule, getattr(self, rule))

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": list(self.metrics),
            "max_abs_difference": self.max_abs_difference,
            "min_ratio": self.min_ratio,
            "fail_on_significant": self.fail_on_significant,
            "decide": self.decide,
            "on_inconclusive": self.on_inconclusive,
            "overrides": self.overrides,
            "max_disparity_increase": self.max_disparity_increase,
        }


def _number(value: Any, where: str, path: Path, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InputError(f"{where} must be a number in [{low}, {high}], got {value!r}.", file=str(path))
    return float(value)


def _toml_type(value: Any) -> str:
    """How TOML calls the type of `value` (for messages)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__}"


def load_policy(path: Path | str) -> GatePolicy:
    """Parse and check a gate policy file; every mistake is an InputError naming the key."""
    from fairaudit._util.regular import read_regular_bytes

    path = Path(path)
    # A regular file of bounded size, read without blocking: a FIFO or /dev/zero as --gate
    # must not hang the run (docs/threat-model.md).
    raw = read_regular_bytes(path, limit=POLICY_MAX_BYTES, what="a gate policy TOML file", argument="gate")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(
            f"is not UTF-8 text (byte {exc.start + 1}, line {line}: {exc.reason}).",
            file=str(path),
            hint="TOML files are UTF-8: save the policy as UTF-8.",
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"is not valid TOML: {exc}.", file=str(path)) from None
    except RecursionError:  # tomllib parses nested arrays and inline tables recursively
        raise InputError(
            "nests arrays or inline tables too deeply to be read.",
            file=str(path),
            hint="A gate policy needs no nesting beyond [gate.overrides.METRIC]; see fairaudit/policies/example.toml.",
        ) from None
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
    on_inconclusive = gate.get("on_inconclusive", "fail")
    if on_inconclusive not in ON_INCONCLUSIVE:
        raise InputError(
            f'[gate] on_inconclusive must be "fail" or "pass", got {on_inconclusive!r}.', file=str(path)
        )
    overrides: dict[str, dict[str, float]] = {}
    given = gate.get("overrides", {})
    if not isinstance(given, dict):
        raise InputError(
            f"[gate] overrides must be a table of tables, one per metric, got {_toml_type(given)}.",
            file=str(path),
            hint="Write [gate.overrides.tpr] with min_ratio = 0.8 (see fairaudit/policies/example.toml).",
        )
    for metric, table in given.items():
        if metric not in _KNOWN_METRICS:
            raise InputError(
                f"[gate.overrides.{metric}]: not a known metric; known: {', '.join(_KNOWN_METRICS)}.",
                file=str(path),
            )
        if not isinstance(table, dict):
            raise InputError(
                f"[gate] overrides.{metric} must be a table of bounds, got {_toml_type(table)}.",
                file=str(path),
                hint=f"Write [gate.overrides.{metric}] with max_abs_difference or min_ratio under it.",
            )
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
        metrics=tuple(metrics),
        max_abs_difference=rules["max_abs_difference"],
        min_ratio=rules["min_ratio"],
        fail_on_significant=fos,
        decide=decide,
        overrides=overrides,
        max_disparity_increase=rules["max_disparity_increase"],
        on_inconclusive=on_inconclusive,
    )


def check_policy_task(policy: GatePolicy, task: str, path: Path | str | None = None) -> None:
    """A policy naming a metric the audit's task does not compute is a usage error (exit 2).

    Called as soon as the task is known, before a model or the statistics run: a
    classification policy on a segmentation audit would otherwise give checks that can
    never decide.
    """
    allowed = _TASK_METRICS.get(task)
    if allowed is None:
        return
    other = "segmentation" if task == "classification" else "classification"
    places: list[tuple[str, Sequence[str]]] = [("[gate] metrics", policy.metrics)]
    places += [(f"[gate.overrides.{m}]", (m,)) for m in policy.overrides]
    for where, names in places:
        bad = [m for m in names if m not in allowed]
        if bad:
            raise InputError(
                f"{where}: {', '.join(bad)} {'is a' if len(bad) == 1 else 'are'} {other} "
                f"metric{'' if len(bad) == 1 else 's'}, but this is a {task} audit, which computes "
                f"{', '.join(allowed)}.",
                file=None if path is None else str(path),
                hint=f"Gate a {task} audit on its own metrics.",
            )


def primary_family(given: Sequence[str] | None, policy: GatePolicy | None) -> tuple[str, ...]:
    """The pre-specified primary family: `--primary-metrics` when given, else the metrics the
    gate decides on (what the release hangs on), else none (every row exploratory)."""
    names = given if given is not None else (policy.metrics if policy is not None else ())
    # Underdiagnosis is tested as No Finding's fpr: that metric is in the primary family.
    return tuple(dict.fromkeys("fpr" if m == UNDERDIAGNOSIS else m for m in names))


def _fmt(x: float) -> str:
    """Three significant digits for the gate's messages; an infinite bound reads "unbounded"."""
    return fmt_sig(x, 3, missing="unbounded")


def _bounds(ci: Sequence[float | None] | None, floor: float) -> tuple[float, float] | None:
    """An interval as two floats: a missing bound (JSON null) is `floor` below, +inf above."""
    if ci is None or len(ci) != 2:
        return None
    lo = floor if ci[0] is None else float(ci[0])
    hi = math.inf if ci[1] is None else float(ci[1])
    if math.isnan(lo) or math.isnan(hi):
        return None
    return lo, hi


def _judge_abs(value: float, lo: float, hi: float, b: float, decide: str) -> tuple[str, str | None]:
    """|difference| <= b, two-sided."""
    if lo > b or hi < -b:
        return "fail", None
    if -b <= lo and hi <= b:
        return "pass", None
    if decide == "evidence_of_fairness":
        return "inconclusive", "the interval straddles the bound"
    return _precise_enough(value, lo, hi, b, abs(value) <= b + _EPS)


def _precise_enough(value: float, lo: float, hi: float, b: float, within: bool) -> tuple[str, str | None]:
    """no_evidence_of_harm on a difference: pass when the estimate is within the bound and the
    interval's half-width is at most b (narrow enough to have seen a breach)."""
    half = (hi - lo) / 2
    if not within:
        return "inconclusive", (
            f"the estimate {_fmt(value)} is beyond the bound {b:g}, but the interval does not prove a breach"
        )
    if half <= b + _EPS:
        return "pass", None
    return "inconclusive", (
        f"the interval is too wide to rule out a breach: half-width {_fmt(half)} > bound {b:g}"
    )


def _judge_ratio(value: float, lo: float, hi: float, b: float, decide: str) -> tuple[str, str | None]:
    """b <= r <= 1/b (the four-fifths rule on min(r, 1/r)); precision on the log scale."""
    upper = 1.0 / b if b > 0 else math.inf
    if hi < b or lo > upper:
        return "fail", None
    if b <= lo and hi <= upper:
        return "pass", None
    if decide == "evidence_of_fairness":
        return "inconclusive", "the interval straddles the bound"
    if not b <= value <= upper:
        return "inconclusive", (
            f"the estimate {_fmt(value)} is outside [{b:g}, {_fmt(upper)}], but the interval does not "
            "prove a breach"
        )
    if lo > 0 and math.isfinite(hi):
        spread = hi / lo
        # b = 0 allows every finite positive interval (1 / b**2 is infinite).
        if b == 0 or spread <= 1.0 / b**2 * (1 + _EPS):
            return "pass", None
        return "inconclusive", (
            f"the ratio interval is too wide to rule out a breach: upper/lower {_fmt(spread)} "
            f"> 1/bound² {_fmt(1.0 / b**2)}"
        )
    return "inconclusive", ("the ratio interval is unbounded (a rate near 0), too wide to rule out a breach")


def _judge_increase(value: float, lo: float, hi: float, b: float, decide: str) -> tuple[str, str | None]:
    """Growth of a gap since the baseline <= b, one-sided."""
    if lo > b:
        return "fail", None
    if hi <= b:
        return "pass", None
    if decide == "evidence_of_fairness":
        return "inconclusive", "the interval straddles the bound"
    return _precise_enough(value, lo, hi, b, value <= b + _EPS)


_JUDGES = {
    "max_abs_difference": (_judge_abs, -math.inf),
    "min_ratio": (_judge_ratio, 0.0),
    "max_disparity_increase": (_judge_increase, -math.inf),
}


def check_status(
    rule: str, observed: Estimate | Mapping[str, Any], bound: float, decide: str
) -> tuple[str, str | None]:
    """One interval rule's status and note; `observed` is an Estimate or its dict form."""
    if isinstance(observed, Estimate):
        value, ci, reason = observed.value, observed.ci, observed.reason
    else:
        value, ci, reason = observed.get("value"), observed.get("ci"), observed.get("reason")
    if value is None:
        return "inconclusive", reason or "undefined"
    judge, floor = _JUDGES[rule]
    interval = _bounds(ci, floor)
    if interval is None:
        return "inconclusive", "no interval"
    return judge(float(value), interval[0], interval[1], float(bound), decide)


def _not_computed_reason(result: AuditResult, metric: str) -> str:
    if metric == UNDERDIAGNOSIS:
        return (
            "metric not computed (underdiagnosis needs a multi-label audit whose findings include "
            "a No Finding column)"
        )
    if result.task == "segmentation" and metric not in SEGMENTATION_METRICS:
        return "metric not computed (a segmentation audit computes dice, iou, hd95, assd, volume_error, nsd)"
    if result.task == "classification" and metric in SEGMENTATION_METRICS:
        return "metric not computed (a segmentation metric in a classification audit)"
    return "metric not computed (no scores)"


def _not_computed(result: AuditResult, policy: GatePolicy) -> list[dict[str, Any]]:
    """An inconclusive check for each gated metric the audit could not compute.

    Without scores (0/1 predictions) there is no auroc; a policy that asks for it must
    not pass silently, so each such pair is reported, and (unless the group or the
    reference is small) makes the gate inconclusive.
    """
    out = []
    for attr in result.attributes:
        seen = {(c.group, c.metric) for c in attr.comparisons}
        pairs = sorted({(c.group, c.reference) for c in attr.comparisons})
        sizes = {g.group: g.small for g in attr.groups}
        for group, reference in pairs:
            # No metric, no denominator: the pair's case counts decide whether it is small.
            small = bool(sizes.get(group, False) or sizes.get(reference, False))
            for metric in policy.metrics:
                if (group, metric) in seen:
                    continue
                check = {
                    "rule": "computed",
                    "metric": metric,
                    "attribute": attr.name,
                    "group": group,
                    "reference": reference,
                    "bound": None,
                    "observed": {"value": None, "ci": None, "reason": _not_computed_reason(result, metric)},
                    "status": "inconclusive",
                    "decides": not small,
                    "note": "the gate asks for a metric this audit could not compute",
                }
                if small:
                    check["note"] += f"; {SMALL_NOTE}"
                out.append(check)
    return out


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
                status, note = check_status("max_disparity_increase", observed, b, policy.decide)
                small = bool(g["small"] or ref_small)
                check = {
                    "rule": "max_disparity_increase",
                    "metric": m,
                    "attribute": attr["name"],
                    "group": g["group"],
                    "reference": attr["reference"],
                    "bound": b,
                    "observed": observed,
                    "status": status,
                    "decides": _decides(small, status),
                }
                if not check["decides"]:
                    note = SMALL_NOTE
                if note:
                    check["note"] = note
                checks.append(check)
    return checks


def _decides(small: bool, status: str) -> bool:
    """A small check decides only when it fails: its interval is valid at any size, so a
    breach it proves is proven; a pass or an inconclusive one from too little data is not."""
    return not small or status == "fail"


def gate_outcome(checks: Sequence[Mapping[str, Any]], on_inconclusive: str = "fail") -> dict[str, Any]:
    """The gate's outcome and counts from its checks (the keys results.json's `gate` adds).

    "fail" when a deciding check fails; "inconclusive" when none decides or a deciding one
    is inconclusive; else "pass". `passed` is what the exit code follows.
    """
    deciding = [c for c in checks if c.get("decides", True) is not False]
    n_fail = sum(c.get("status") == "fail" for c in deciding)
    n_pass = sum(c.get("status") == "pass" for c in deciding)
    if n_fail:
        outcome = "fail"
    elif not deciding or n_pass < len(deciding):
        outcome = "inconclusive"
    else:
        outcome = "pass"
    return {
        "outcome": outcome,
        "passed": outcome == "pass" or (outcome == "inconclusive" and on_inconclusive == "pass"),
        "decided": n_pass + n_fail,
        "undecided": len(checks) - n_pass - n_fail,
        "on_inconclusive": on_inconclusive,
    }


def apply_gate(result: Any, policy: GatePolicy, baseline: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every check of the policy on every non-reference group; results.json's `gate`.

    `result` is an AuditResult, or a multi-label audit's MultiLabelResult: then every
    finding's checks, each naming its `finding`, decide together (docs/multilabel.md).
    `baseline` is results.json's `baseline` section (--baseline-predictions), read by the
    `max_disparity_increase` rule.
    """
    findings = getattr(result, "findings", None)
    if findings is None:
        checks = _checks(result, policy)
    else:
        per_finding = replace(policy, metrics=tuple(m for m in policy.metrics if m != UNDERDIAGNOSIS))
        checks = [{"finding": f.name, **c} for f in findings for c in _checks(f.result, per_finding)]
        if UNDERDIAGNOSIS in policy.metrics:
            checks += _underdiagnosis_checks(result, policy)
    checks += _baseline_checks(policy, baseline)
    return {
        **gate_outcome(checks, policy.on_inconclusive),
        "decide": policy.decide,
        "policy": policy.to_dict(),
        "checks": checks,
    }


def _underdiagnosis_checks(result: Any, policy: GatePolicy) -> list[dict[str, Any]]:
    """`underdiagnosis_rate`: the policy's rules on the No Finding finding's fpr comparisons,
    under the bounds the policy sets for underdiagnosis_rate."""
    name = getattr(result, "no_finding", None)
    if name is None:
        return [
            {
                "rule": "computed",
                "metric": UNDERDIAGNOSIS,
                "attribute": "(all)",
                "group": None,
                "reference": None,
                "bound": None,
                "observed": {
                    "value": None,
                    "ci": None,
                    "reason": _not_computed_reason(result, UNDERDIAGNOSIS),
                },
                "status": "inconclusive",
                "decides": True,
                "note": "the gate asks for a metric this audit could not compute",
            }
        ]
    no_finding = result.finding(name).result
    bounds = {rule: policy.bound(rule, UNDERDIAGNOSIS) for rule in ("max_abs_difference", "min_ratio")}
    view = replace(
        policy,
        metrics=("fpr",),
        overrides={"fpr": {k: v for k, v in bounds.items() if v is not None}},
    )
    out = []
    for c in _checks(no_finding, view):
        out.append({"finding": name, **c, "metric": UNDERDIAGNOSIS})
    return out


def _checks(result: AuditResult, policy: GatePolicy) -> list[dict[str, Any]]:
    """The policy's interval, significance and computed checks on one audit's comparisons."""
    checks: list[dict[str, Any]] = []
    alpha = round(1.0 - float(result.config["ci_level"]), 12)
    for attr in result.attributes:
        for comp in attr.comparisons:
            if comp.metric not in policy.metrics:
                continue
            rows = []
            for rule, est in (("max_abs_difference", comp.difference), ("min_ratio", comp.ratio)):
                bound = policy.bound(rule, comp.metric)
                if bound is None:
                    continue
                status, note = check_status(rule, est, bound, policy.decide)
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
                    "decides": _decides(comp.small, status),
                }
                if not check["decides"]:
                    note = SMALL_NOTE
                if note:
                    check["note"] = note
                checks.append(check)
    checks += _not_computed(result, policy)
    return checks
