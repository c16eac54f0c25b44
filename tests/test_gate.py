"""The CI gate: policy parsing, interval-vs-bound checks, small groups, decide modes, exit codes."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

import fairaudit
from fairaudit.errors import InputError
from fairaudit.gate import GatePolicy, apply_gate, load_policy
from fairaudit.stats import AttributeResult, AuditResult, Comparison, Estimate, GroupResult

EXAMPLE = Path(fairaudit.__file__).parent / "policies" / "example.toml"


# --- load_policy ----------------------------------------------------------------------


def test_example_policy_parses() -> None:
    policy = load_policy(EXAMPLE)
    assert policy.metrics == ("tpr", "fpr", "auroc", "brier")
    assert policy.max_abs_difference == 0.05
    assert policy.min_ratio is None
    assert policy.fail_on_significant is False
    assert policy.decide == "no_evidence_of_harm"
    assert policy.max_disparity_increase == 0.02
    assert policy.overrides == {"tpr": {"min_ratio": 0.8}, "auroc": {"max_abs_difference": 0.03}}
    assert policy.bound("max_abs_difference", "auroc") == 0.03
    assert policy.bound("max_abs_difference", "tpr") == 0.05
    assert policy.bound("min_ratio", "tpr") == 0.8
    assert policy.bound("min_ratio", "fpr") is None  # the ratio rule is for tpr only
    assert policy.bound("max_disparity_increase", "auroc") == 0.02


def test_policy_with_every_key(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        '[gate]\nmetrics = ["fpr"]\nmin_ratio = 1\nfail_on_significant = true\n'
        'decide = "evidence_of_fairness"\n[gate.overrides.fpr]\nmin_ratio = 0.5\n'
    )
    policy = load_policy(path)
    assert policy.max_abs_difference is None
    assert policy.bound("max_abs_difference", "fpr") is None
    assert policy.bound("min_ratio", "fpr") == 0.5
    assert policy.fail_on_significant is True
    assert policy.decide == "evidence_of_fairness"


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


@pytest.mark.parametrize(
    ("ci", "status"),
    [
        ((-0.03, 0.04), "pass"),
        ((-0.05, 0.05), "pass"),  # the bound itself is inside
        ((0.06, 0.20), "fail"),
        ((-0.30, -0.051), "fail"),
        ((0.01, 0.08), "inconclusive"),
        ((-0.08, 0.0), "inconclusive"),
        ((-0.10, 0.10), "inconclusive"),
    ],
)
def test_max_abs_difference(ci: tuple[float, float], status: str) -> None:
    value = (ci[0] + ci[1]) / 2
    gate = apply_gate(result_of(comparison(diff=(value, ci))), ABS)
    (check,) = gate["checks"]
    assert check["rule"] == "max_abs_difference"
    assert (check["metric"], check["attribute"], check["group"]) == ("tpr", "sex", "M")
    assert check["bound"] == 0.05
    assert check["observed"] == {"value": value, "ci": list(ci)}
    assert check["status"] == status
    assert check["decides"] is True
    assert gate["passed"] is (status != "fail")


@pytest.mark.parametrize(
    ("ci", "status"),
    [
        ((0.85, 1.20), "pass"),
        ((0.80, 1.25), "pass"),  # m <= r <= 1/m, both ends inclusive
        ((0.50, 0.79), "fail"),
        ((1.26, 1.60), "fail"),
        ((0.70, 0.90), "inconclusive"),
        ((1.10, 1.40), "inconclusive"),
        ((0.50, 2.00), "inconclusive"),
    ],
)
def test_min_ratio_is_two_sided(ci: tuple[float, float], status: str) -> None:
    value = (ci[0] + ci[1]) / 2
    gate = apply_gate(result_of(comparison(ratio=(value, ci))), RATIO)
    (check,) = gate["checks"]
    assert check["rule"] == "min_ratio"
    assert check["bound"] == 0.8
    assert check["status"] == status
    assert gate["passed"] is (status != "fail")


def test_undefined_estimate_is_inconclusive_with_reason() -> None:
    gate = apply_gate(result_of(comparison(ratio=(None, None))), RATIO)
    (check,) = gate["checks"]
    assert check["status"] == "inconclusive"
    assert check["note"] == "reference value is 0"
    assert check["observed"]["value"] is None
    assert gate["passed"] is True


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
    assert by_metric["auroc"]["status"] == "inconclusive"
    assert gate["policy"]["overrides"] == {"auroc": {"max_abs_difference": 0.03}}


def test_both_rules_give_two_checks_per_comparison() -> None:
    policy = GatePolicy(metrics=("tpr",), max_abs_difference=0.05, min_ratio=0.8)
    gate = apply_gate(result_of(comparison(diff=(0.2, (0.1, 0.3)), ratio=(1.0, (0.9, 1.1)))), policy)
    assert [(c["rule"], c["status"]) for c in gate["checks"]] == [
        ("max_abs_difference", "fail"),
        ("min_ratio", "pass"),
    ]
    assert gate["passed"] is False


@pytest.mark.parametrize("decide", ["no_evidence_of_harm", "evidence_of_fairness"])
def test_small_group_never_decides(decide: str) -> None:
    policy = GatePolicy(metrics=("tpr",), max_abs_difference=0.05, decide=decide)
    res = result_of(
        comparison(group="tiny", diff=(0.5, (0.3, 0.7)), small=True),  # would fail
        comparison(group="wide", diff=(0.0, (-0.2, 0.2)), small=True),  # would be inconclusive
        comparison(group="M", diff=(0.0, (-0.01, 0.01))),
    )
    gate = apply_gate(res, policy)
    by_group = {c["group"]: c for c in gate["checks"]}
    assert by_group["tiny"]["status"] == "fail"
    assert by_group["tiny"]["decides"] is False
    assert "min_group_size" in by_group["tiny"]["note"]
    assert by_group["wide"]["decides"] is False
    assert by_group["M"]["decides"] is True
    assert gate["passed"] is True


def test_decide_mode_and_inconclusive() -> None:
    res = result_of(comparison(diff=(0.03, (-0.01, 0.07))))
    harm = apply_gate(res, GatePolicy(metrics=("tpr",), max_abs_difference=0.05))
    fair = apply_gate(
        res, GatePolicy(metrics=("tpr",), max_abs_difference=0.05, decide="evidence_of_fairness")
    )
    assert harm["checks"][0]["status"] == fair["checks"][0]["status"] == "inconclusive"
    assert harm["passed"] is True
    assert harm["decide"] == "no_evidence_of_harm"
    assert fair["passed"] is False
    assert fair["decide"] == "evidence_of_fairness"


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
    assert gate["passed"] is (status != "fail")


def test_fail_on_significant_adds_to_interval_checks() -> None:
    policy = GatePolicy(metrics=("tpr",), max_abs_difference=0.05, fail_on_significant=True)
    gate = apply_gate(result_of(comparison(diff=(0.0, (-0.01, 0.01)), p_adjusted=0.001)), policy)
    assert [(c["rule"], c["status"]) for c in gate["checks"]] == [
        ("max_abs_difference", "pass"),
        ("significance", "fail"),
    ]
    assert gate["passed"] is False


def test_no_checks_passes() -> None:
    gate = apply_gate(result_of(), ABS)
    assert gate == {"passed": True, "decide": "no_evidence_of_harm", "policy": ABS.to_dict(), "checks": []}


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


def run_cli(*args: str):
    from fairaudit.cli.main import app

    return CliRunner().invoke(app, ["audit", *args, "--bootstrap", "100", "--quiet"], env={"COLUMNS": "200"})


@pytest.mark.parametrize(("disparity", "code"), [(True, 1), (False, 0)])
def test_cli_exit_code_follows_gate(tmp_path: Path, disparity: bool, code: int) -> None:
    preds = planted_csv(tmp_path / "p.csv", disparity=disparity)
    out = tmp_path / "out"
    res = run_cli(
        "--predictions", str(preds), "--attribute", "grp", "--out", str(out),
        "--gate", str(policy_file(tmp_path / "g.toml")), "--format", "html,md,json,junit",
    )  # fmt: skip
    assert res.exit_code == code, res.output
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    gate = results["gate"]
    assert gate["passed"] is (code == 0)
    tpr = [c for c in gate["checks"] if c["metric"] == "tpr" and c["rule"] == "max_abs_difference"]
    assert [c["status"] for c in tpr] == ["fail" if disparity else "pass"]

    suite = ET.parse(out / "junit.xml").getroot().find("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == len(gate["checks"]) == int(suite.get("tests"))
    failed = [c for c in gate["checks"] if c["decides"] and c["status"] == "fail"]
    assert int(suite.get("failures")) == len(failed) == sum(c.find("failure") is not None for c in cases)
    assert (len(failed) > 0) is disparity
    names = {c.get("name") for c in cases}
    assert "grp:B:tpr:max_abs_difference" in names


def test_cli_evidence_of_fairness_fails_on_inconclusive(tmp_path: Path) -> None:
    # B identical to A: tpr difference is exactly 0, but fpr ratio is 0/0 (undefined) -> inconclusive.
    preds = planted_csv(tmp_path / "p.csv", disparity=False)
    for decide, code in (("no_evidence_of_harm", 0), ("evidence_of_fairness", 1)):
        gate = policy_file(tmp_path / f"{decide}.toml", f'min_ratio = 0.8\ndecide = "{decide}"')
        res = run_cli(
            "--predictions",
            str(preds),
            "--attribute",
            "grp",
            "--out",
            str(tmp_path / decide),
            "--gate",
            str(gate),
        )
        assert res.exit_code == code, res.output


def test_cli_bad_policy_exit_2(tmp_path: Path) -> None:
    preds = planted_csv(tmp_path / "p.csv", disparity=False)
    for name, body in (
        ("metric.toml", '[gate]\nmetrics = ["tpr", "bogus"]\nmax_abs_difference = 0.05\n'),
        ("syntax.toml", "[gate\nmetrics = 1\n"),
        ("ratio.toml", '[gate]\nmetrics = ["tpr"]\nmin_ratio = 1.25\n'),
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


def test_cli_small_reference_group_does_not_decide(tmp_path: Path) -> None:
    lines = ["patient_id,label,score,grp"]
    for i in range(60):
        lines.append(f"A{i},{i % 2},{0.9 if i % 2 else 0.2},A")
    for i in range(6):  # C: n = 6, a model that misses every positive
        lines.append(f"C{i},{i % 2},{0.1 if i % 2 else 0.2},C")
    preds = tmp_path / "p.csv"
    preds.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    res = run_cli(
        "--predictions", str(preds), "--attribute", "grp", "--reference", "grp=C", "--out", str(out),
        "--gate", str(policy_file(tmp_path / "g.toml")),
    )  # fmt: skip
    gate = json.loads((out / "results.json").read_text(encoding="utf-8"))["gate"]
    assert gate["checks"]
    assert all(c["decides"] is False for c in gate["checks"])
    assert res.exit_code == 0
