"""Minimum detectable differences checked against statsmodels and hand computations."""

from __future__ import annotations

import math

import pytest
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import power_proportions_2indep, proportion_effectsize

from fairaudit.stats._power import (
    attach_power,
    detectable_from_se,
    detectable_proportion_difference,
    min_detectable_h,
)


@pytest.mark.parametrize(("n1", "n2"), [(100, 100), (30, 250), (12, 400), (1000, 80)])
@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_h_matches_statsmodels_solve_power(n1, n2, alpha):
    expected = NormalIndPower().solve_power(
        effect_size=None, nobs1=n1, alpha=alpha, power=0.8, ratio=n2 / n1, alternative="two-sided"
    )
    assert min_detectable_h(n1, n2, alpha) == pytest.approx(expected, rel=1e-4)


def test_h_by_hand():
    # (z_0.975 + z_0.8) * sqrt(1/100 + 1/100) with the textbook quantiles.
    assert min_detectable_h(100, 100, 0.05) == pytest.approx(
        (1.959964 + 0.841621) * math.sqrt(0.02), rel=1e-6
    )


@pytest.mark.parametrize(("p_ref", "n_g", "n_r"), [(0.5, 100, 100), (0.8, 60, 300), (0.1, 200, 150)])
def test_difference_has_the_asked_power(p_ref, n_g, n_r):
    out = detectable_proportion_difference(p_ref, n_g, n_r, 0.05)
    for p_group in (p_ref + out["increase"], p_ref - out["decrease"]):
        h = proportion_effectsize(p_group, p_ref)
        # statsmodels' own power at that difference (arcsine scale) is 80 %...
        assert NormalIndPower().power(abs(h), n_g, 0.05, ratio=n_r / n_g) == pytest.approx(0.8, abs=1e-4)
        # ...and a different approximation (pooled z-test of the raw difference) agrees roughly;
        # the two differ most near 0 or 1 with unequal groups (0.73 at 0.8 -> 0.93, 60 vs 300).
        wald = power_proportions_2indep(p_group - p_ref, p_ref, n_g, ratio=n_r / n_g, alpha=0.05).power
        assert wald == pytest.approx(0.8, abs=0.08)
    assert out["value"] == max(out["increase"], out["decrease"])


def test_symmetric_at_one_half_and_infeasible_direction():
    half = detectable_proportion_difference(0.5, 100, 100, 0.05)
    assert half["increase"] == pytest.approx(half["decrease"])
    # At 98 % with 20 cases a group cannot rise enough to be detected; only a fall can.
    high = detectable_proportion_difference(0.98, 20, 20, 0.05)
    assert high["increase"] is None and high["decrease"] is not None
    assert high["value"] == high["decrease"]
    nothing = detectable_proportion_difference(0.5, 1, 1, 0.05)
    assert nothing["value"] is None


def test_from_se_by_hand():
    assert detectable_from_se(0.05, 0.05) == pytest.approx((1.959964 + 0.841621) * 0.05, rel=1e-6)
    assert detectable_from_se(0.05, 0.05, power=0.5) == pytest.approx(1.959964 * 0.05, rel=1e-6)


def _results():
    ref = {
        "group": "A",
        "n": 200,
        "n_positive": 50,
        "small": False,
        "confusion": {"tp": 40, "fn": 10, "fp": 30, "tn": 120},
        "metrics": {
            "tpr": {"value": 0.8, "ci": [0.7, 0.9]},
            "ppv": {"value": 40 / 70, "ci": [0.4, 0.7]},
            "auroc": {"value": 0.9, "ci": [0.85, 0.95]},
        },
    }
    grp = {
        "group": "B",
        "n": 60,
        "n_positive": 20,
        "small": False,
        "confusion": {"tp": 15, "fn": 5, "fp": 5, "tn": 35},
        "metrics": {"tpr": {"value": 0.75, "ci": [0.5, 0.9]}},
    }
    comps = [
        {"metric": "tpr", "group": "B", "reference": "A",
         "difference": {"value": -0.05, "ci": [-0.3, 0.15]}},
        {"metric": "ppv", "group": "B", "reference": "A",
         "difference": {"value": 0.2, "ci": [0.0, 0.4]}},
        {"metric": "auroc", "group": "B", "reference": "A",
         "difference": {"value": -0.02, "ci": [-0.1, 0.06]}},
        {"metric": "ece", "group": "B", "reference": "A", "difference": {"value": None, "ci": None}},
    ]  # fmt: skip
    return {"config": {"ci_level": 0.95}, "attributes": [{"groups": [ref, grp], "comparisons": comps}]}


def test_attach_power_uses_each_metric_denominator():
    results = _results()
    attach_power(results)
    tpr, ppv, auroc, ece = (c["min_detectable_difference"] for c in results["attributes"][0]["comparisons"])
    # tpr: 20 positives in the group vs 50 in the reference, at the reference rate 0.8.
    assert (tpr["n_group"], tpr["n_reference"]) == (20, 50)
    assert tpr == {**tpr, **detectable_proportion_difference(0.8, 20, 50, 0.05)}
    assert tpr["power"] == 0.8 and tpr["alpha"] == 0.05
    # ppv: predicted positives TP+FP = 20 vs 70.
    assert (ppv["n_group"], ppv["n_reference"]) == (20, 70)
    # auroc: 2.8 standard errors, SE = interval width / (2 * 1.96).
    assert auroc["value"] == pytest.approx((1.959964 + 0.841621) * 0.16 / (2 * 1.959964), rel=1e-5)
    assert ece["value"] is None and ece["reason"]


def test_attach_power_without_confusion_falls_back_to_counts():
    results = _results()
    for g in results["attributes"][0]["groups"]:
        del g["confusion"]
    attach_power(results)
    tpr = results["attributes"][0]["comparisons"][0]["min_detectable_difference"]
    assert (tpr["n_group"], tpr["n_reference"]) == (20, 50)
