"""Per-group ROC points, calibration bins and confusion counts against scikit-learn and by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, roc_curve

from fairaudit.stats._curves import attach_curves, calibration_bins, confusion_counts, roc_points


def test_roc_points_equal_sklearn_when_few_scores():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    s = np.round(rng.random(60), 1)  # many ties
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    out = roc_points(y, s)
    np.testing.assert_allclose(out["fpr"], fpr, atol=1e-5)
    np.testing.assert_allclose(out["tpr"], tpr, atol=1e-5)
    assert out["thresholds"][0] is None
    np.testing.assert_allclose(out["thresholds"][1:], thr[1:], atol=1e-5)


def test_roc_points_thinned_lie_on_sklearn_curve():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 5000)
    s = np.clip(rng.normal(0.4 + 0.2 * y, 0.2), 0, 1)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    out = roc_points(y, s)
    assert len(out["fpr"]) <= 101
    assert (out["fpr"][0], out["tpr"][0]) == (0.0, 0.0)
    assert (out["fpr"][-1], out["tpr"][-1]) == (1.0, 1.0)
    exact = set(zip(np.round(fpr, 5).tolist(), np.round(tpr, 5).tolist(), strict=True))
    assert all((f, t) in exact for f, t in zip(out["fpr"], out["tpr"], strict=True))
    assert np.all(np.diff(out["fpr"]) >= 0) and np.all(np.diff(out["tpr"]) >= 0)
    # The thinned curve's area stays close to the exact AUROC.
    assert np.trapezoid(out["tpr"], out["fpr"]) == pytest.approx(np.trapezoid(tpr, fpr), abs=0.005)


def test_roc_undefined_with_one_class():
    assert roc_points(np.ones(5), np.linspace(0, 1, 5)) is None


def test_calibration_bins_by_hand():
    s = np.array([0.05, 0.15, 0.12, 0.95, 1.0, 0.1, 0.999])
    y = np.array([0, 1, 0, 1, 1, 0, 0])
    out = calibration_bins(y, s)
    assert out["edges"][0] == 0.0 and out["edges"][-1] == 1.0 and len(out["edges"]) == 11
    # [0, .1): 0.05; [.1, .2): 0.15, 0.12, 0.1; [.9, 1.0]: 0.95, 1.0 (last bin closed), 0.999.
    assert out["count"] == [1, 3, 0, 0, 0, 0, 0, 0, 0, 3]
    assert out["mean_score"][1] == pytest.approx((0.15 + 0.12 + 0.1) / 3, abs=1e-5)
    assert out["mean_label"][1] == pytest.approx(1 / 3, abs=1e-5)
    assert out["mean_score"][9] == pytest.approx((0.95 + 1.0 + 0.999) / 3, abs=1e-5)
    assert out["mean_label"][9] == pytest.approx(2 / 3, abs=1e-5)
    assert out["mean_score"][2] is None and out["mean_label"][2] is None
    # ECE from the bins, by hand: sum of |mean score - mean label| weighted by share.
    ece = sum(
        c / len(s) * abs(ms - ml)
        for c, ms, ml in zip(out["count"], out["mean_score"], out["mean_label"], strict=True)
        if c
    )
    by_hand = (1 * 0.05 + 3 * abs(0.37 / 3 - 1 / 3) + 3 * abs(2.949 / 3 - 2 / 3)) / 7
    assert ece == pytest.approx(by_hand, abs=1e-4)


def test_confusion_counts_match_sklearn():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 200)
    s = rng.random(200)
    tn, fp, fn, tp = confusion_matrix(y, s >= 0.3, labels=[0, 1]).ravel()
    assert confusion_counts(y, s, 0.3) == {"tp": tp, "fp": fp, "tn": tn, "fn": fn}
    # score == threshold counts as positive
    assert confusion_counts(np.array([1]), np.array([0.5]), 0.5)["tp"] == 1


def test_attach_curves_per_group():
    y = np.array([0, 1, 0, 1, 1, 0])
    s = np.array([0.2, 0.8, 0.6, 0.4, 0.9, 0.1])
    attr = np.array(["a", "a", "a", "b", "b", "b"])
    results = {"attributes": [{"name": "x", "groups": [{"group": "a"}, {"group": "b"}]}]}
    attach_curves(results, y, s, {"x": attr}, 0.5, True)
    a, b = results["attributes"][0]["groups"]
    assert a["confusion"] == {"tp": 1, "fp": 1, "tn": 1, "fn": 0}
    assert b["confusion"] == {"tp": 1, "fp": 0, "tn": 1, "fn": 1}
    assert sum(a["curves"]["calibration"]["count"]) == 3
    assert a["curves"]["roc"]["fpr"][-1] == 1.0
    results = {"attributes": [{"name": "x", "groups": [{"group": "a"}]}]}
    attach_curves(results, y, (s >= 0.5).astype(float), {"x": attr}, 0.5, False)
    assert "curves" not in results["attributes"][0]["groups"][0]


def test_schema_accepts_the_additions_and_rejects_bad_ones():
    import copy

    from fairaudit.schema import validate_results

    from _helpers.results import make_results

    results = make_results()
    y = np.array([0, 1, 0, 1, 1, 0])
    s = np.array([0.2, 0.8, 0.6, 0.4, 0.9, 0.1])
    groups = results["attributes"][1]["groups"]
    attr = np.array([groups[0]["group"]] * 3 + [groups[1]["group"]] * 3)
    attach_curves(results, y, s, {"race": attr}, 0.5, True)
    results["attributes"][1]["comparisons"][0]["min_detectable_difference"] = {
        "value": 0.2, "increase": 0.2, "decrease": 0.18, "power": 0.8, "alpha": 0.05, "method": "x",
    }  # fmt: skip
    results["provenance"] = {"manifest_sha256": "ab" * 32, "libraries": {"numpy": "2"}, "input_files": {}}
    validate_results(results)
    bad = copy.deepcopy(results)
    bad["attributes"][1]["groups"][0]["curves"]["roc"]["tpr"][1] = 1.5
    with pytest.raises(ValueError, match="curves"):
        validate_results(bad)
    bad = copy.deepcopy(results)
    del bad["attributes"][1]["comparisons"][0]["min_detectable_difference"]["power"]
    with pytest.raises(ValueError, match="min_detectable_difference"):
        validate_results(bad)
    bad = copy.deepcopy(results)
    bad["attributes"][1]["groups"][0]["confusion"]["tp"] = -1
    with pytest.raises(ValueError, match="confusion"):
        validate_results(bad)
