"""The CI gate: policy parsing, interval-vs-bound checks, small checks, decide modes, the three
outcomes, on_inconclusive, the task/metric usage error and exit codes (docs/ci.md)."""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from functools import partial
from pathlib import Path

import pytest

import fairaudit
from fairaudit.errors import InputError
from fairaudit.gate import GatePolicy, apply_gate, check_policy_task, gate_outcome, load_policy
from fairaudit.stats import AttributeResult, AuditResult, Comparison, Estimate, GroupResult

from _helpers import cli

EXAMPLE = Path(fairaudit.__file__).parent / "policies" / "example.toml"


# --- load_policy ----------------------------------------------------------------------


def test_example_policy_parses() -> None:
    policy = load_policy(EXAMPLE)
    assert policy.metrics == ("tpr", "fpr", "auroc", "brier")
    assert policy.max_abs_difference == 0.05
    assert policy.min_ratio is None
    assert policy.fail_on_significant is False
    assert policy.decide == "no_evidence_of_harm"
    assert policy.on_inconclusive == "fail"
    assert policy.to_dict()["on_inconclusive"] == "fail"
    assert policy.max_disparity_increase is None  # needs --baseline-predictions: commented out
    assert policy.overrides == {"tpr": {"min_ratio": 0.8}, "auroc": {"max_abs_difference": 0.03}}
    assert policy.bound("max_abs_difference", "auroc") == 0.03
    assert policy.bound("max_abs_difference", "tpr") == 0.05
    assert policy.bound("min_ratio", "tpr") == 0.8
    assert policy.bound("min_ratio", "fpr") is None  # the ratio rule is for tpr only
    assert policy.bound("max_disparity_increase", "auroc") is None


def test_policy_with_every_key(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        '[gate]\nmetrics = ["fpr"]\nmin_ratio = 1\nfail_on_significant = true\n'
        'decide = "evidence_of_fairness"\non_inconclusive = "pass"\n[gate.overrides.fpr]\nmin_ratio = 0.5\n'
    )
    policy = load_policy(path)
    assert policy.max_abs_difference is None
    assert policy.bound("max_abs_difference", "fpr") is None
    assert policy.bound("min_ratio", "fpr") == 0.5
    assert policy.fail_on_significant is True
    assert policy.decide == "evidence_of_fairness"
    assert policy.on_inconclusive == "pass"
    assert policy.to_dict()["on_inconclusive"] == "pass"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[gate]\nmetrics = ["tpr", "sensitivity"]\nmax_abs_difference = 0.05\n', "sensitivity"),
        ('[gate]\nmetrics = ["tpr"\nmax_abs_difference = 0.05\n', "not valid TOML"),
        ('[gate]\nmetrics = ["tpr"]\nmin_ratio = 1.5\n', "min_ratio"),
        ('[gate]\nmetrics = ["tpr"]\nmin_ratio = -0.1\n', "min_ratio"),
        ('[gate]\nmetrics = ["tpr"]\nmax_abs_difference = -0.1\n', "max_abs_difference"),
        ('[gate]\nmetrics = ["tpr"]\nmax_abs_difference = true\n', "max_abs_difference"),
        ('[gate]\nmetrics = ["tpr"]\nmax_abs_diference = 0.05\n', "max_abs_diference"),
        ('[gate]\nmetrics = ["tpr"]\nmax_abs_difference = 0.05\ndecide = "maybe"\n', "decide"),
        ('[gate]\nmetrics = ["tpr"]\nmax_abs_difference = 0.05\nfail_on_significant = 1\n', "fail_on_significant"),
        ('[gate]\nmetrics = ["tpr"]\n', "sets no rule"),
        ('[gate]\nmetrics = ["tpr"]\nmax_abs_difference = 0.05\non_inconclusive = "warn"\n', "on_inconclusive"),
        ('[gate]\nmetrics = ["tpr"]\nmax_abs_difference = 0.05\non_inconclusive = false\n', "on_inconclusive"),
        ("[gate]\nmetrics = []\nmax_abs_difference = 0.05\n", "metrics"),
        ('metrics = ["tpr"]\nmax_abs_difference = 0.05\n', "[gate]"),
        ('[gate]\nmetrics = ["tpr"]\nmax_abs_difference = 0.05\n[gate.overrides.dice_score]\nmin_ratio = 0.8\n', "dice_score"),
        ('[gate]\nmetrics = ["tpr"]\nmax_abs_difference = 0.05\n[gate.overrides.tpr]\nmin_ratio = 2\n', "min_ratio"),
        ('[gate]\nmetrics = ["tpr"]\nmax_abs_difference = 0.05\n[gate.overrides.tpr]\nbound = 2\n', "bound"),
    ],
)  # fmt: skip
def test_bad_policy_is_an_input_error(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_policy(path)
    assert needle in str(info.value)
    assert str(path) in str(info.value)


def test_missing_policy_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        load_policy(tmp_path / "nope.toml")


# --- apply_gate on a hand-built AuditResult -------------------------------------------


def comparison(
    metric: str = "tpr",
    group: str = "M",
    *,
    diff: tuple[float | None, tuple[float, float] | None] = (0.0, (-0.01, 0.01)),
    ratio: tuple[float | None, tuple[float, float] | None] = (1.0, (0.99, 1.01)),
    p_adjusted: float | None = 0.5,
    small: bool = False,
) -> Comparison:
    return Comparison(
        metric=metric,
        group=group,
        reference="F",
        difference=Estimate(diff[0], diff[1], None if diff[0] is not None else "undefined here"),
        ratio=Estimate(ratio[0], ratio[1], None if ratio[0] is not None else "reference value is 0"),
        test="fisher_exact",
        p_value=p_adjusted,
        p_adjusted=p_adjusted,
        significant=p_adjusted is not None and p_adjusted < 0.05,
        reason=None if p_adjusted is not None else "test undefined",
        small=small,
    )


def result_of(*comps: Comparison, ci_level: float = 0.95) -> AuditResult:
    groups = [GroupResult("F", 100, 50, False, {})]
    for c in comps:
        if c.group not in {g.group for g in groups}:
            groups.append(GroupResult(c.group, 10 if c.small else 100, 5, c.small, {}))
    attr = AttributeResult(name="sex", reference="F", groups=groups, comparisons=list(comps))
    return AuditResult(
        task="classification",
        config={"ci_level": ci_level, "bootstrap": 200, "seed": 0},
        n=sum(g.n for g in groups),
        overall={},
        attributes=[attr],
    )


ABS = GatePolicy(metrics=("tpr",), max_abs_difference=0.05)
RATIO = GatePolicy(metrics=("tpr",), min_ratio=0.8)
HARM, FAIR = "no_evidence_of_harm", "evidence_of_fairness"
INF = math.inf


def policy(decide: str = HARM, **rules: object) -> GatePolicy:
    return GatePolicy(metrics=("tpr",), decide=decide, **rules)  # type: ignore[arg-type]


# Hand-worked: bound 0.05. harm passes when not fail and (hi - lo) / 2 <= 0.05.
@pytest.mark.parametrize(
    ("ci", "harm", "fair"),
    [
        ((-0.03, 0.04), "pass", "pass"),
        ((-0.05, 0.05), "pass", "pass"),  # the bound itself is inside
        ((0.06, 0.20), "fail", "fail"),
        ((-0.30, -0.051), "fail", "fail"),
        ((0.01, 0.08), "pass", "inconclusive"),  # half-width 0.035: a breach would have shown
        ((0.0, 0.10), "pass", "inconclusive"),  # half-width 0.05 exactly (float noise allowed)
        ((0.01, 0.11), "inconclusive", "inconclusive"),  # precise, but the estimate 0.06 > 0.05
        ((-0.08, 0.0), "pass", "inconclusive"),  # half-width 0.04
        ((-0.10, 0.10), "inconclusive", "inconclusive"),  # half-width 0.10: too wide
        ((0.0, 0.12), "inconclusive", "inconclusive"),  # half-width 0.06
        ((-INF, INF), "inconclusive", "inconclusive"),
        ((0.06, INF), "fail", "fail"),  # wholly above the bound, however wide
        ((-INF, -0.06), "fail", "fail"),
        ((-INF, 0.0), "inconclusive", "inconclusive"),
    ],
)
def test_max_abs_difference(ci: tuple[float, float], harm: str, fair: str) -> None:
    value = 0.03 if math.isinf(ci[0]) or math.isinf(ci[1]) else (ci[0] + ci[1]) / 2
    for decide, status in ((HARM, harm), (FAIR, fair)):
        gate = apply_gate(result_of(comparison(diff=(value, ci))), policy(decide, max_abs_difference=0.05))
        (check,) = gate["checks"]
        assert check["rule"] == "max_abs_difference"
        assert (check["metric"], check["attribute"], check["group"]) == ("tpr", "sex", "M")
        assert check["bound"] == 0.05
        assert check["observed"]["value"] == value
        assert check["status"] == status, (decide, ci)
        assert check["decides"] is True
        assert gate["outcome"] == status
        assert gate["passed"] is (status == "pass")
        assert (gate["decided"], gate["undecided"]) == ((0, 1) if status == "inconclusive" else (1, 0))


def test_too_wide_note_gives_the_half_width() -> None:
    gate = apply_gate(result_of(comparison(diff=(0.0, (-0.10, 0.10)))), ABS)
    assert gate["checks"][0]["note"] == (
        "the interval is too wide to rule out a breach: half-width 0.1 > bound 0.05"
    )
    fair = apply_gate(result_of(comparison(diff=(0.0, (-0.10, 0.10)))), policy(FAIR, max_abs_difference=0.05))
    assert fair["checks"][0]["note"] == "the interval straddles the bound"


# Hand-worked: bound 0.8, so [0.8, 1.25] and, for harm, hi / lo <= 1 / 0.64 = 1.5625.
@pytest.mark.parametrize(
    ("ci", "harm", "fair"),
    [
        ((0.85, 1.20), "pass", "pass"),
        ((0.80, 1.25), "pass", "pass"),  # m <= r <= 1/m, both ends inclusive
        ((0.50, 0.79), "fail", "fail"),
        ((1.26, 1.60), "fail", "fail"),
        ((0.70, 0.90), "pass", "inconclusive"),  # 0.90 / 0.70 = 1.29 <= 1.5625
        ((1.10, 1.40), "pass", "inconclusive"),  # 1.27
        ((0.60, 0.95), "inconclusive", "inconclusive"),  # 1.58 > 1.5625
        ((0.50, 2.00), "inconclusive", "inconclusive"),
        ((0.0, 1.20), "inconclusive", "inconclusive"),  # zero lower bound: imprecise, not a fail
        ((0.90, INF), "inconclusive", "inconclusive"),  # undefined reference rate: imprecise
        ((0.0, INF), "inconclusive", "inconclusive"),
        ((0.0, 0.0), "fail", "fail"),  # hi < 0.8
        ((1.30, INF), "fail", "fail"),  # lo > 1.25
    ],
)
def test_min_ratio_is_two_sided(ci: tuple[float, float], harm: str, fair: str) -> None:
    value = 1.0 if math.isinf(ci[1]) else (ci[0] + ci[1]) / 2
    for decide, status in ((HARM, harm), (FAIR, fair)):
        gate = apply_gate(result_of(comparison(ratio=(value, ci))), policy(decide, min_ratio=0.8))
        (check,) = gate["checks"]
        assert check["rule"] == "min_ratio"
        assert check["bound"] == 0.8
        assert check["status"] == status, (decide, ci)
        assert gate["outcome"] == status
        assert gate["passed"] is (status == "pass")


def test_harm_mode_needs_the_estimate_within_the_bound() -> None:
    """A precise interval whose estimate is beyond the bound proves nothing either way:
    inconclusive, not a pass (hand-worked: bound 0.05 / 0.8)."""
    diff = apply_gate(result_of(comparison(diff=(0.07, (0.03, 0.11)))), policy(HARM, max_abs_difference=0.05))
    (check,) = diff["checks"]
    assert check["status"] == "inconclusive"
    assert "estimate 0.07 is beyond the bound 0.05" in check["note"]
    ratio = apply_gate(result_of(comparison(ratio=(0.75, (0.65, 0.95)))), policy(HARM, min_ratio=0.8))
    (check,) = ratio["checks"]
    assert check["status"] == "inconclusive"
    assert "estimate 0.75 is outside [0.8, 1.25]" in check["note"]


def test_ratio_notes_say_why() -> None:
    wide = apply_gate(result_of(comparison(ratio=(1.0, (0.5, 2.0)))), RATIO)["checks"][0]
    assert "upper/lower 4 > 1/bound² 1.56" in wide["note"]
    unbounded = apply_gate(result_of(comparison(ratio=(1.0, (0.9, INF)))), RATIO)["checks"][0]
    assert "unbounded" in unbounded["note"]


def test_min_ratio_zero_bound_never_fails() -> None:
    for ci in ((0.0, 0.1), (0.5, 9.0), (0.01, INF)):
        gate = apply_gate(result_of(comparison(ratio=(0.05, ci))), policy(min_ratio=0.0))
        assert gate["checks"][0]["status"] != "fail"


def test_undefined_estimate_is_inconclusive_with_reason() -> None:
    gate = apply_gate(result_of(comparison(ratio=(None, None))), RATIO)
    (check,) = gate["checks"]
    assert check["status"] == "inconclusive"
    assert check["note"] == "reference value is 0"
    assert check["observed"]["value"] is None
    assert gate["outcome"] == "inconclusive"
    assert gate["passed"] is False  # the default on_inconclusive = "fail"


def test_estimate_without_interval_is_inconclusive() -> None:
    gate = apply_gate(result_of(comparison(diff=(0.0, None))), ABS)
    assert gate["checks"][0]["status"] == "inconclusive"
    assert gate["checks"][0]["note"] == "no interval"
    assert gate["outcome"] == "inconclusive"


def test_only_policy_metrics_and_overrides() -> None:
    same = (0.0, (-0.04, 0.04))
    res = result_of(
        comparison("tpr", diff=same), comparison("auroc", diff=same), comparison("ppv", diff=same)
    )
    policy = GatePolicy(
        metrics=("tpr", "auroc"), max_abs_difference=0.05, overrides={"auroc": {"max_abs_difference": 0.03}}
    )
    gate = apply_gate(res, policy)
    by_metric = {c["metric"]: c for c in gate["checks"]}
    assert set(by_metric) == {"tpr", "auroc"}
    assert by_metric["tpr"]["status"] == "pass"
    assert by_metric["auroc"]["bound"] == 0.03
    assert by_metric["auroc"]["status"] == "inconclusive"  # half-width 0.04 > 0.03
    assert gate["policy"]["overrides"] == {"auroc": {"max_abs_difference": 0.03}}
    assert gate["outcome"] == "inconclusive"


def test_both_rules_give_two_checks_per_comparison() -> None:
    policy = GatePolicy(metrics=("tpr",), max_abs_difference=0.05, min_ratio=0.8)
    gate = apply_gate(result_of(comparison(diff=(0.2, (0.1, 0.3)), ratio=(1.0, (0.9, 1.1)))), policy)
    assert [(c["rule"], c["status"]) for c in gate["checks"]] == [
        ("max_abs_difference", "fail"),
        ("min_ratio", "pass"),
    ]
    assert gate["passed"] is False
    assert gate["outcome"] == "fail"


@pytest.mark.parametrize("decide", [HARM, FAIR])
def test_small_check_decides_only_when_it_fails(decide: str) -> None:
    """Too little data never passes a check, but a breach its (valid) interval proves counts."""
    policy = GatePolicy(metrics=("tpr",), max_abs_difference=0.05, decide=decide)
    res = result_of(
        comparison(group="tiny", diff=(0.0, (-0.01, 0.01)), small=True),  # would pass
        comparison(group="wide", diff=(0.0, (-0.2, 0.2)), small=True),  # would be inconclusive
        comparison(group="M", diff=(0.0, (-0.01, 0.01))),
    )
    gate = apply_gate(res, policy)
    by_group = {c["group"]: c for c in gate["checks"]}
    assert by_group["tiny"]["status"] == "pass"
    assert by_group["tiny"]["decides"] is False
    assert "min_group_size" in by_group["tiny"]["note"]
    assert by_group["wide"]["decides"] is False
    assert by_group["M"]["decides"] is True
    assert gate["outcome"] == "pass"
    assert gate["passed"] is True
    assert (gate["decided"], gate["undecided"]) == (1, 2)
    # The same small group with an interval wholly beyond the bound: a proven breach fails.
    res = result_of(
        comparison(group="tiny", diff=(0.5, (0.3, 0.7)), small=True),
        comparison(group="M", diff=(0.0, (-0.01, 0.01))),
    )
    gate = apply_gate(res, policy)
    tiny = next(c for c in gate["checks"] if c["group"] == "tiny")
    assert (tiny["status"], tiny["decides"]) == ("fail", True)
    assert "note" not in tiny
    assert gate["outcome"] == "fail" and gate["passed"] is False


@pytest.mark.parametrize("decide", [HARM, FAIR])
@pytest.mark.parametrize("on_inconclusive", ["fail", "pass"])
def test_all_small_is_inconclusive_never_a_pass(decide: str, on_inconclusive: str) -> None:
    """Every check on too little data: nothing decides, so the gate cannot pass (issue: "a gate
    that cannot pass on nothing"); only on_inconclusive = "pass" lets it through."""
    policy = GatePolicy(
        metrics=("tpr",), max_abs_difference=0.05, decide=decide, on_inconclusive=on_inconclusive
    )
    res = result_of(
        comparison(group="a", diff=(0.0, (-0.01, 0.01)), small=True),  # would pass
        comparison(group="b", diff=(0.0, (-0.01, 0.01)), small=True),
    )
    gate = apply_gate(res, policy)
    assert all(c["status"] == "pass" and c["decides"] is False for c in gate["checks"])
    assert gate["outcome"] == "inconclusive"
    assert (gate["decided"], gate["undecided"]) == (0, 2)
    assert gate["on_inconclusive"] == on_inconclusive
    assert gate["passed"] is (on_inconclusive == "pass")


def test_decide_mode_and_inconclusive() -> None:
    # Half-width 0.06 > 0.05: neither mode can pass it.
    res = result_of(comparison(diff=(0.03, (-0.03, 0.09))))
    harm = apply_gate(res, GatePolicy(metrics=("tpr",), max_abs_difference=0.05))
    fair = apply_gate(
        res, GatePolicy(metrics=("tpr",), max_abs_difference=0.05, decide="evidence_of_fairness")
    )
    assert harm["checks"][0]["status"] == fair["checks"][0]["status"] == "inconclusive"
    # Under the old semantics an inconclusive check did not fail a no_evidence_of_harm gate;
    # now the gate is inconclusive in both modes, and on_inconclusive = "fail" keeps it back.
    assert harm["outcome"] == fair["outcome"] == "inconclusive"
    assert harm["passed"] is False and fair["passed"] is False
    assert harm["decide"] == "no_evidence_of_harm"
    assert fair["decide"] == "evidence_of_fairness"
    let = apply_gate(res, GatePolicy(metrics=("tpr",), max_abs_difference=0.05, on_inconclusive="pass"))
    assert let["outcome"] == "inconclusive" and let["passed"] is True


def test_precise_interval_passes_harm_but_not_fairness() -> None:
    res = result_of(comparison(diff=(0.04, (0.01, 0.07))))  # half-width 0.03, straddles 0.05
    assert apply_gate(res, ABS)["outcome"] == "pass"
    assert apply_gate(res, policy(FAIR, max_abs_difference=0.05))["outcome"] == "inconclusive"


def test_fail_beats_inconclusive_and_pass() -> None:
    res = result_of(
        comparison(group="a", diff=(0.0, (-0.01, 0.01))),  # pass
        comparison(group="b", diff=(0.0, (-0.2, 0.2))),  # inconclusive
        comparison(group="c", diff=(0.2, (0.1, 0.3))),  # fail
    )
    gate = apply_gate(res, policy(max_abs_difference=0.05, on_inconclusive="pass"))
    assert gate["outcome"] == "fail" and gate["passed"] is False
    assert (gate["decided"], gate["undecided"]) == (2, 1)


@pytest.mark.parametrize(
    ("statuses", "outcome"),
    [
        ([], "inconclusive"),
        ([("pass", True)], "pass"),
        ([("pass", True), ("inconclusive", True)], "inconclusive"),
        ([("pass", True), ("inconclusive", False), ("fail", False)], "pass"),
        ([("pass", True), ("fail", True), ("inconclusive", True)], "fail"),
        ([("pass", False)], "inconclusive"),
    ],
)
def test_gate_outcome(statuses: list[tuple[str, bool]], outcome: str) -> None:
    checks = [{"status": s, "decides": d} for s, d in statuses]
    for on_inconclusive in ("fail", "pass"):
        got = gate_outcome(checks, on_inconclusive)
        assert got["outcome"] == outcome
        assert got["passed"] is (
            outcome == "pass" or (outcome == "inconclusive" and on_inconclusive == "pass")
        )
        decided = sum(d and s in ("pass", "fail") for s, d in statuses)
        assert (got["decided"], got["undecided"]) == (decided, len(statuses) - decided)


@pytest.mark.parametrize(
    ("p_adjusted", "ci_level", "status"),
    [
        (0.01, 0.95, "fail"),
        (0.049, 0.95, "fail"),
        pytest.param(
            0.05,
            0.95,
            "pass",  # significant means p_adjusted < alpha, strictly
        ),
        (0.20, 0.95, "pass"),
        (0.07, 0.90, "fail"),  # alpha = 1 - ci_level
        (None, 0.95, "inconclusive"),
    ],
)
def test_fail_on_significant(p_adjusted: float | None, ci_level: float, status: str) -> None:
    policy = GatePolicy(metrics=("tpr",), fail_on_significant=True)
    gate = apply_gate(result_of(comparison(p_adjusted=p_adjusted), ci_level=ci_level), policy)
    (check,) = gate["checks"]
    assert check["rule"] == "significance"
    assert check["bound"] == pytest.approx(1 - ci_level)
    assert check["observed"]["value"] == p_adjusted
    assert check["status"] == status
    assert gate["outcome"] == status
    assert gate["passed"] is (status == "pass")


def test_fail_on_significant_adds_to_interval_checks() -> None:
    policy = GatePolicy(metrics=("tpr",), max_abs_difference=0.05, fail_on_significant=True)
    gate = apply_gate(result_of(comparison(diff=(0.0, (-0.01, 0.01)), p_adjusted=0.001)), policy)
    assert [(c["rule"], c["status"]) for c in gate["checks"]] == [
        ("max_abs_difference", "pass"),
        ("significance", "fail"),
    ]
    assert gate["passed"] is False


def test_no_checks_is_inconclusive() -> None:
    gate = apply_gate(result_of(), ABS)
    assert gate == {
        "outcome": "inconclusive",
        "passed": False,
        "decided": 0,
        "undecided": 0,
        "on_inconclusive": "fail",
        "decide": "no_evidence_of_harm",
        "policy": ABS.to_dict(),
        "checks": [],
    }


def baseline_of(ci: list[float | None] | None, value: float | None = 0.0, small: bool = False) -> dict:
    row = {"disparity_increase": {"value": value, "ci": ci}}
    if value is None:
        row["disparity_increase"]["reason"] = "undefined here"
    return {
        "attributes": [
            {
                "name": "sex",
                "reference": "F",
                "groups": [
                    {"group": "F", "n": 100, "small": False, "metrics": {"tpr": row}},
                    {"group": "M", "n": 100, "small": small, "metrics": {"tpr": row}},
                ],
            }
        ]
    }


# Hand-worked, one-sided, bound 0.02: fail lo > 0.02; fair pass hi <= 0.02;
# harm pass: not fail and (hi <= 0.02 or (hi - lo) / 2 <= 0.02).
@pytest.mark.parametrize(
    ("ci", "harm", "fair"),
    [
        ([0.03, 0.10], "fail", "fail"),
        ([-0.50, 0.01], "pass", "pass"),  # wide but wholly below the bound
        ([0.0, 0.03], "pass", "inconclusive"),  # half-width 0.015
        ([-0.10, 0.10], "inconclusive", "inconclusive"),
        ([None, 0.01], "pass", "pass"),  # a null (infinite) lower bound
        ([0.0, None], "inconclusive", "inconclusive"),
        ([0.05, None], "fail", "fail"),
    ],
)
def test_max_disparity_increase(ci: list[float | None], harm: str, fair: str) -> None:
    for decide, status in ((HARM, harm), (FAIR, fair)):
        pol = GatePolicy(metrics=("tpr",), max_disparity_increase=0.02, decide=decide)
        gate = apply_gate(result_of(), pol, baseline=baseline_of(ci))
        (check,) = gate["checks"]
        assert check["rule"] == "max_disparity_increase"
        assert check["status"] == status, (decide, ci)
        assert gate["outcome"] == status


def test_max_disparity_increase_without_baseline_or_value() -> None:
    pol = GatePolicy(metrics=("tpr",), max_disparity_increase=0.02)
    gate = apply_gate(result_of(), pol)
    assert gate["checks"][0]["status"] == "inconclusive" and gate["outcome"] == "inconclusive"
    gate = apply_gate(result_of(), pol, baseline=baseline_of(None, value=None))
    assert gate["checks"][0]["status"] == "inconclusive"
    assert gate["checks"][0]["note"] == "undefined here"
    small = apply_gate(result_of(), pol, baseline=baseline_of([0.3, 0.4], value=0.35, small=True))
    assert small["checks"][0]["status"] == "fail" and small["checks"][0]["decides"] is True
    assert small["outcome"] == "fail"
    small = apply_gate(result_of(), pol, baseline=baseline_of([-0.1, 0.15], value=0.01, small=True))
    assert small["checks"][0]["status"] == "inconclusive" and small["checks"][0]["decides"] is False
    assert small["outcome"] == "inconclusive"


def test_metric_not_computed_makes_the_gate_inconclusive() -> None:
    # 0/1 predictions: no auroc comparison exists, the policy asks for one.
    res = result_of(comparison("tpr", diff=(0.0, (-0.01, 0.01))))
    gate = apply_gate(res, GatePolicy(metrics=("tpr", "auroc"), max_abs_difference=0.05))
    computed = [c for c in gate["checks"] if c["rule"] == "computed"]
    assert [(c["metric"], c["status"], c["decides"]) for c in computed] == [("auroc", "inconclusive", True)]
    assert "no scores" in computed[0]["observed"]["reason"]
    assert gate["outcome"] == "inconclusive" and gate["passed"] is False


# --- the task/metric check --------------------------------------------------------------


@pytest.mark.parametrize(
    ("metrics", "overrides", "task", "needle"),
    [
        (("tpr", "dice"), {}, "classification", "dice"),
        (("dice", "tpr"), {}, "segmentation", "tpr"),
        (("tpr",), {"hd95": {"max_abs_difference": 1.0}}, "classification", "gate.overrides.hd95"),
        (("dice",), {"auroc": {"max_abs_difference": 0.03}}, "segmentation", "gate.overrides.auroc"),
    ],
)
def test_policy_metric_the_task_lacks_is_a_usage_error(
    metrics: tuple[str, ...], overrides: dict, task: str, needle: str
) -> None:
    pol = GatePolicy(metrics=metrics, max_abs_difference=0.05, overrides=overrides)
    with pytest.raises(InputError) as info:
        check_policy_task(pol, task, "policy.toml")
    text = str(info.value)
    assert needle in text and f"{task} audit" in text and "policy.toml" in text


def test_policy_metrics_of_the_task_are_fine() -> None:
    check_policy_task(load_policy(EXAMPLE), "classification", EXAMPLE)
    check_policy_task(GatePolicy(metrics=("dice", "hd95"), max_abs_difference=0.05), "segmentation")


# --- through the CLI: exit codes 0 / 1 / 2 and junit.xml -------------------------------


def planted_csv(path: Path, *, disparity: bool, n: int = 60) -> Path:
    """Groups A and B of n cases each, half positive. A's model is perfect; B's misses every
    positive when `disparity` (tpr 1 vs 0), else B is an exact copy of A."""
    lines = ["patient_id,label,score,grp"]
    for grp in ("A", "B"):
        for i in range(n):
            label = i % 2
            miss = disparity and grp == "B"
            score = (0.1 if miss else 0.9) if label else 0.2
            lines.append(f"{grp}{i},{label},{score},{grp}")
    path.write_text("\n".join(lines) + "\n")
    return path


def policy_file(path: Path, body: str = "max_abs_difference = 0.05\nmin_ratio = 0.8") -> Path:
    path.write_text(f'[gate]\nmetrics = ["tpr", "fpr"]\n{body}\n')
    return path


run_cli = partial(cli.audit, bootstrap=100, quiet=True)


# Planted: B misses every positive (fail), or B copies A with 1,000 cases per group, enough
# for any valid interval of a 0-vs-0 or 1-vs-1 difference to be within 0.05 (pass).
@pytest.mark.parametrize(
    ("disparity", "n", "code", "outcome"), [(True, 60, 1, "fail"), (False, 2000, 0, "pass")]
)
def test_cli_exit_code_follows_gate(tmp_path: Path, disparity: bool, n: int, code: int, outcome: str) -> None:
    preds = planted_csv(tmp_path / "p.csv", disparity=disparity, n=n)
    out = tmp_path / "out"
    body = "max_abs_difference = 0.05\nmin_ratio = 0.8" if disparity else "max_abs_difference = 0.05"
    res = run_cli(
        "--predictions", str(preds), "--attribute", "grp", "--out", str(out),
        "--gate", str(policy_file(tmp_path / "g.toml", body)), "--format", "html,md,json,junit",
    )  # fmt: skip
    assert res.exit_code == code, res.output
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    gate = results["gate"]
    assert gate["outcome"] == outcome
    assert gate["passed"] is (code == 0)
    assert gate["on_inconclusive"] == "fail"
    tpr = [c for c in gate["checks"] if c["metric"] == "tpr" and c["rule"] == "max_abs_difference"]
    assert [c["status"] for c in tpr] == ["fail" if disparity else "pass"]

    suite = ET.parse(out / "junit.xml").getroot().find("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == len(gate["checks"]) == int(suite.get("tests"))
    blocking = [c for c in gate["checks"] if c["decides"] and c["status"] in ("fail", "inconclusive")]
    assert int(suite.get("failures")) == len(blocking) == sum(c.find("failure") is not None for c in cases)
    assert (len(blocking) > 0) is disparity
    names = {c.get("name") for c in cases}
    assert "grp:B:tpr:max_abs_difference" in names
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["gate.outcome"] == outcome and props["gate.exit_code"] == str(code)


@pytest.mark.parametrize("decide", ["no_evidence_of_harm", "evidence_of_fairness"])
def test_cli_inconclusive_gate_exit_code_follows_on_inconclusive(tmp_path: Path, decide: str) -> None:
    # B identical to A: the fpr ratio is 0/0 (undefined), so a deciding check is inconclusive and
    # the gate is inconclusive under both decide modes (before: exit 0 under no_evidence_of_harm).
    preds = planted_csv(tmp_path / "p.csv", disparity=False)
    for on_inconclusive, code in (("fail", 1), ("pass", 0)):
        gate = policy_file(
            tmp_path / f"{on_inconclusive}.toml",
            f'min_ratio = 0.8\ndecide = "{decide}"\non_inconclusive = "{on_inconclusive}"',
        )
        out = tmp_path / on_inconclusive
        res = run_cli(
            "--predictions", str(preds), "--attribute", "grp", "--out", str(out), "--gate", str(gate)
        )
        assert res.exit_code == code, res.output
        recorded = json.loads((out / "results.json").read_text(encoding="utf-8"))["gate"]
        assert recorded["outcome"] == "inconclusive"
        assert recorded["passed"] is (code == 0)
        assert recorded["on_inconclusive"] == on_inconclusive
        assert recorded["policy"]["on_inconclusive"] == on_inconclusive


def test_cli_bad_policy_exit_2(tmp_path: Path) -> None:
    preds = planted_csv(tmp_path / "p.csv", disparity=False)
    for name, body in (
        ("metric.toml", '[gate]\nmetrics = ["tpr", "bogus"]\nmax_abs_difference = 0.05\n'),
        ("syntax.toml", "[gate\nmetrics = 1\n"),
        ("ratio.toml", '[gate]\nmetrics = ["tpr"]\nmin_ratio = 1.25\n'),
        ("oninc.toml", '[gate]\nmetrics = ["tpr"]\nmax_abs_difference = 0.05\non_inconclusive = "maybe"\n'),
    ):
        path = tmp_path / name
        path.write_text(body)
        res = run_cli(
            "--predictions",
            str(preds),
            "--attribute",
            "grp",
            "--out",
            str(tmp_path / "o"),
            "--gate",
            str(path),
        )
        assert res.exit_code == 2, res.output
        assert name in re.sub(r"\s+", "", res.output)
    assert not (tmp_path / "o" / "results.json").exists()  # the policy is checked before any work


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ('[gate]\nmetrics = ["tpr", "dice"]\nmax_abs_difference = 0.05\n', "dice"),
        (
            '[gate]\nmetrics = ["tpr"]\nmax_abs_difference = 0.05\n[gate.overrides.hd95]\nmax_abs_difference = 2\n',
            "hd95",
        ),
    ],
)
def test_cli_segmentation_metric_in_classification_audit_exit_2(
    tmp_path: Path, body: str, needle: str
) -> None:
    preds = planted_csv(tmp_path / "p.csv", disparity=False)
    path = tmp_path / "seg.toml"
    path.write_text(body)
    out = tmp_path / "o"
    res = run_cli("--predictions", str(preds), "--attribute", "grp", "--out", str(out), "--gate", str(path))
    assert res.exit_code == 2, res.output
    text = re.sub(r"\s+", " ", res.output)
    assert needle in text and "classification audit" in text and "segmentation metric" in text
    assert not (out / "results.json").exists()  # before the statistics ran


def test_cli_every_check_small_is_inconclusive_not_a_pass(tmp_path: Path) -> None:
    lines = ["patient_id,label,score,grp"]
    for i in range(60):
        lines.append(f"A{i},{i % 2},{0.9 if i % 2 else 0.2},A")
    for i in range(6):  # C: n = 6, as good as A, but far too few to show it
        lines.append(f"C{i},{i % 2},{0.9 if i % 2 else 0.2},C")
    preds = tmp_path / "p.csv"
    preds.write_text("\n".join(lines) + "\n")
    for on_inconclusive, code in (("fail", 1), ("pass", 0)):
        out = tmp_path / on_inconclusive
        res = run_cli(
            "--predictions", str(preds), "--attribute", "grp", "--reference", "grp=C", "--out", str(out),
            "--gate", str(policy_file(tmp_path / "g.toml", f'max_abs_difference = 0.05\non_inconclusive = "{on_inconclusive}"')),
            "--format", "json,md,junit",
        )  # fmt: skip
        gate = json.loads((out / "results.json").read_text(encoding="utf-8"))["gate"]
        assert gate["checks"]
        assert all(c["decides"] is False for c in gate["checks"])
        assert gate["outcome"] == "inconclusive"
        assert (gate["decided"], gate["undecided"]) == (0, len(gate["checks"]))
        assert res.exit_code == code, res.output
        md = (out / "report.md").read_text(encoding="utf-8")
        assert "Gate inconclusive" in md and "No check could decide" in md
        suite = ET.parse(out / "junit.xml").getroot().find("testsuite")
        verdict = [c for c in suite.findall("testcase") if c.get("name") == "gate:verdict"]
        assert len(verdict) == 1
        assert (verdict[0].find("failure") is not None) is (code == 1)


# --- the reports' wording ---------------------------------------------------------------


def _v2_results(gate: dict) -> dict:
    from _helpers.results import make_results

    results = make_results()
    results["gate"] = gate
    return json.loads(json.dumps(results, allow_nan=False))


def _inconclusive_gate(on_inconclusive: str = "fail") -> dict:
    res = result_of(
        comparison(group="a", diff=(0.0, (-0.01, 0.01))),  # pass
        comparison(group="b", diff=(0.0, (-0.2, 0.2))),  # inconclusive, deciding
        comparison(group="c", diff=(0.0, (-0.01, 0.01)), small=True),  # small
    )
    return apply_gate(res, policy(max_abs_difference=0.05, on_inconclusive=on_inconclusive))


def test_reports_say_inconclusive_with_counts() -> None:
    from rich.console import Console

    from fairaudit.report import print_summary
    from fairaudit.report.html import render_html
    from fairaudit.report.markdown import render_markdown

    results = _v2_results(_inconclusive_gate())
    line = "3 checks, 1 decided (1 pass, 0 fail), 2 undecided; exit code 1 (on_inconclusive = fail)"
    md = render_markdown(results)
    verdict = next(x for x in md.splitlines()[1:] if x.strip())
    assert verdict.startswith("**⚠️ Gate inconclusive**: " + line)
    assert "Some checks lack the precision" in verdict and "not let through" in verdict
    assert "**Undecided checks**" in md and "half-width 0.2 \\> bound 0.05" in md  # > escaped
    html = render_html(results)
    assert "Gate inconclusive" in html and line in html
    assert 'class="verdict inconclusive"' in html
    console = Console(record=True, width=200)
    print_summary(results, console, verbose=True)  # the tables (-v)
    text = console.export_text()
    assert "Verdict: gate inconclusive: " + line in text
    assert "could not decide" in text

    let = _v2_results(_inconclusive_gate("pass"))
    md = render_markdown(let)
    assert "exit code 0 (on_inconclusive = pass)" in md and "lets an inconclusive gate pass" in md


def test_junit_inconclusive_follows_on_inconclusive() -> None:
    from fairaudit.report.junit import render_junit

    for on_inconclusive, kind in (("fail", "failure"), ("pass", "skipped")):
        root = ET.fromstring(render_junit(_v2_results(_inconclusive_gate(on_inconclusive))).encode())
        cases = {c.get("name"): c for c in root.iter("testcase")}
        assert set(cases) == {
            "sex:a:tpr:max_abs_difference",
            "sex:b:tpr:max_abs_difference",
            "sex:c:tpr:max_abs_difference",
        }
        assert cases["sex:a:tpr:max_abs_difference"].find("failure") is None
        wide = cases["sex:b:tpr:max_abs_difference"].find(kind)
        assert wide is not None and "too wide to rule out a breach" in wide.get("message")
        assert cases["sex:c:tpr:max_abs_difference"].find("skipped") is not None  # small
        suite = root.find("testsuite")
        assert suite.get("failures") == ("1" if on_inconclusive == "fail" else "0")
        props = {p.get("name"): p.get("value") for p in suite.find("properties")}
        assert props == {
            "gate.outcome": "inconclusive",
            "gate.decided": "1",
            "gate.undecided": "2",
            "gate.exit_code": "1" if on_inconclusive == "fail" else "0",
            "gate.on_inconclusive": on_inconclusive,
        }


def test_version_1_gate_still_renders() -> None:
    """A results.json written before "outcome": the verdict is read from "passed"."""
    from fairaudit.report.markdown import render_markdown

    gate = {"passed": True, "decide": "no_evidence_of_harm", "policy": {}, "checks": []}
    md = render_markdown(_v2_results(gate))
    assert "**✅ Gate passed**: 0 checks, 0 decided (0 pass, 0 fail), 0 undecided; exit code 0" in md
