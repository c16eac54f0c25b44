"""Minimum detectable differences: independent checks, and how attach_power reads results.json."""

from __future__ import annotations

import pytest
from statsmodels.stats.proportion import power_proportions_2indep

from fairaudit.stats._power import (
    MAX_EXACT_N,
    attach_power,
    detectable_auroc_difference,
    detectable_from_se,
    detectable_rate_difference,
    exact_rate_power,
)


def test_from_se_by_hand():
    assert detectable_from_se(0.05, 0.05) == pytest.approx((1.959964 + 0.841621) * 0.05, rel=1e-6)
    assert detectable_from_se(0.05, 0.05, power=0.5) == pytest.approx(1.959964 * 0.05, rel=1e-6)
    assert detectable_from_se(0.05, 0.001) == pytest.approx((3.290527 + 0.841621) * 0.05, rel=1e-6)


@pytest.mark.parametrize(("p", "sign"), [(0.5, 1), (0.3, -1), (0.8, -1)])
def test_large_n_exact_power_agrees_with_statsmodels_normal_power(p, sign):
    # At 1500 cases a side the score test is close to the unpooled z test statsmodels describes.
    out = detectable_rate_difference(p, 1500, 1500, 0.01)
    d = out["increase"] if sign > 0 else out["decrease"]
    wald = power_proportions_2indep(
        sign * d, p, 1500, ratio=1.0, alpha=0.01, value=0, alternative="two-sided"
    )
    assert wald.power == pytest.approx(0.8, abs=0.02)


def test_normal_fallback_above_the_exact_limit_is_continuous():
    exact = detectable_rate_difference(0.7, MAX_EXACT_N, MAX_EXACT_N, 0.005)
    normal = detectable_rate_difference(0.7, MAX_EXACT_N + 1, MAX_EXACT_N + 1, 0.005)
    assert (exact["method"], normal["method"]) == ("exact_binomial", "normal_alternative")
    assert normal["value"] == pytest.approx(exact["value"], rel=0.02)


def test_a_stricter_level_or_fewer_cases_need_a_larger_difference():
    base = detectable_rate_difference(0.8, 60, 300, 0.05)["value"]
    assert detectable_rate_difference(0.8, 60, 300, 0.0005)["value"] > base
    assert detectable_rate_difference(0.8, 30, 300, 0.05)["value"] > base
    auc = detectable_auroc_difference(0.8, (40, 160), (100, 400), 0.05)["value"]
    assert detectable_auroc_difference(0.8, (40, 160), (100, 400), 0.0005)["value"] > auc


def test_symmetric_at_one_half_and_infeasible_direction():
    half = detectable_rate_difference(0.5, 100, 100, 0.05)
    assert half["increase"] == pytest.approx(half["decrease"], abs=1e-6)
    # At 98 % with 20 cases a group cannot rise enough to be detected; only a fall can.
    high = detectable_rate_difference(0.98, 20, 20, 0.05)
    assert high["increase"] is None and high["decrease"] is not None
    assert high["value"] == high["decrease"]
    # Even a rate of 1 in the group does not reach 80 % power: not a misleading number.
    assert exact_rate_power(1.0, 0.98, 20, 20, 0.05) < 0.8
    assert detectable_rate_difference(0.5, 1, 1, 0.05)["value"] is None


def _results():
    ref = {
        "group": "A",
        "n": 200,
        "n_positive": 50,
        "n_negative": 150,
        "small": False,
        "confusion": {"tp": 40, "fn": 10, "fp": 30, "tn": 120},
        "metrics": {
            "tpr": {"value": 0.8, "ci": [0.7, 0.9]},
            "fnr": {"value": 0.2, "ci": [0.1, 0.3]},
            "tnr": {"value": 0.8, "ci": [0.7, 0.9]},
            "ppv": {"value": 40 / 70, "ci": [0.4, 0.7]},
            "prevalence": {"value": 0.25, "ci": [0.2, 0.3]},
            "auroc": {"value": 0.9, "ci": [0.85, 0.95]},
        },
    }
    grp = {
        "group": "B",
        "n": 60,
        "n_positive": 20,
        "n_negative": 40,
        "small": False,
        "confusion": {"tp": 15, "fn": 5, "fp": 5, "tn": 35},
        "metrics": {"tpr": {"value": 0.75, "ci": [0.5, 0.9]}},
    }
    level = {"adjusted_level": 0.995, "p_value": 0.5, "family": "primary"}
    comps = [
        {"metric": "tpr", "group": "B", "reference": "A", "test": "newcombe_score", **level,
         "difference": {"value": -0.05, "ci": [-0.3, 0.15]}},
        {"metric": "fnr", "group": "B", "reference": "A", "test": "newcombe_score", "tested_as": "tpr", **level,
         "difference": {"value": 0.05, "ci": [-0.15, 0.3]}},
        {"metric": "ppv", "group": "B", "reference": "A", "test": "newcombe_score", "p_value": 0.1,
         "difference": {"value": 0.2, "ci": [0.0, 0.4]}},
        {"metric": "auroc", "group": "B", "reference": "A", "test": "auroc_score_mover", **level,
         "difference": {"value": -0.02, "ci": [-0.1, 0.06]}},
        {"metric": "ece", "group": "B", "reference": "A", "test": "permutation", **level,
         "difference": {"value": 0.01, "ci": [-0.05, 0.07]}},
        {"metric": "brier", "group": "B", "reference": "A", "test": "permutation", "p_value": None,
         "difference": {"value": None, "ci": None}},
        {"metric": "prevalence", "group": "B", "reference": "A", "test": "none", "p_value": None,
         "difference": {"value": 0.08, "ci": [-0.05, 0.2]}},
    ]  # fmt: skip
    return {
        "config": {"ci_level": 0.95, "ci_method": "score"},
        "attributes": [{"groups": [ref, grp], "comparisons": comps}],
    }


def test_attach_power_uses_each_metric_denominator_and_the_decision_level():
    results = _results()
    attach_power(results)
    rows = results["attributes"][0]["comparisons"]
    tpr, fnr, ppv, auroc, ece, brier, prevalence = (c["min_detectable_difference"] for c in rows)
    # tpr: 20 positives in the group vs 50 in the reference, at the reference rate 0.8, at the
    # row's adjusted level 0.995 (alpha 0.005), not the unadjusted 0.05.
    assert (tpr["n_group"], tpr["n_reference"]) == (20, 50)
    assert tpr["alpha"] == pytest.approx(0.005) and tpr["level_source"] == "adjusted_level"
    assert tpr["method"] == "exact_binomial" and tpr["test"] == "newcombe_score"
    assert tpr == {**tpr, **detectable_rate_difference(0.8, 20, 50, 0.005)}
    assert tpr["power"] == 0.8
    # fnr = 1 - tpr: the same test, mirrored.
    assert fnr["increase"] == pytest.approx(tpr["decrease"], abs=1e-6)
    assert fnr["value"] == pytest.approx(tpr["value"], abs=1e-6)
    # ppv: predicted positives TP+FP = 20 vs 70; no adjusted level recorded -> config alpha.
    assert (ppv["n_group"], ppv["n_reference"]) == (20, 70)
    assert ppv["alpha"] == 0.05 and ppv["level_source"].startswith("config")
    # auroc: Hanley-McNeil at the alternative with the groups' positives and negatives.
    assert auroc["method"] == "normal_alternative"
    assert auroc["value"] == detectable_auroc_difference(0.9, (20, 40), (50, 150), 0.005)["value"]
    # ece: SE from the 95 % interval, at the decision level: (z(0.9975) + z(0.8)) x SE.
    assert ece["method"] == "normal_interval_se"
    assert ece["value"] == pytest.approx((2.807034 + 0.841621) * 0.12 / (2 * 1.959964), rel=1e-5)
    assert brier["value"] is None and brier["reason"]
    # prevalence is not tested: the config's alpha, said so.
    assert prevalence["level_source"] == "config alpha (the row is not tested)"
    assert prevalence["method"] == "exact_binomial"


def test_attach_power_without_confusion_falls_back_to_counts():
    results = _results()
    for g in results["attributes"][0]["groups"]:
        del g["confusion"]
    attach_power(results)
    tpr = results["attributes"][0]["comparisons"][0]["min_detectable_difference"]
    assert (tpr["n_group"], tpr["n_reference"]) == (20, 50)


def test_unreachable_power_is_null_with_a_reason():
    results = _results()
    results["attributes"][0]["comparisons"][0]["adjusted_level"] = 1 - 1e-9
    attach_power(results)
    tpr = results["attributes"][0]["comparisons"][0]["min_detectable_difference"]
    # At alpha 1e-9 with 20 positives no true tpr in [0, 1] is detected 80 % of the time.
    assert tpr["value"] is None and "80%" in tpr["reason"]
