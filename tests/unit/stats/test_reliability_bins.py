"""The reliability diagram's equal-count bins and their Wilson intervals (issue 23, point 6).

Checked against a hand sort and split and against scipy's Wilson interval (the code uses
statsmodels'), and the distribution histogram against numpy over the data's own range.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from fairaudit.stats._curves import attach_curves, reliability_bin_count, reliability_bins
from fairaudit.stats._segmentation_audit import distribution


@pytest.mark.parametrize(
    ("n", "bins"),
    [(0, 0), (3, 1), (9, 1), (10, 2), (24, 4), (25, 5), (99, 5), (100, 5), (120, 6), (200, 10), (5000, 10)],
)
def test_bin_count(n: int, bins: int) -> None:
    """About 20 cases a bin, 5 to 10 bins, never a bin under 5 cases."""
    assert reliability_bin_count(n) == bins


def test_equal_count_bins_by_hand() -> None:
    rng = np.random.default_rng(4)
    scores = rng.beta(0.4, 0.4, 157)  # most scores near 0 and 1, as a confident model's
    labels = (rng.random(157) < scores).astype(int)
    out = reliability_bins(labels, scores, 0.9)
    assert out is not None and out["binning"] == "equal_count"
    k = len(out["count"])
    assert k == 7 and sum(out["count"]) == 157
    assert max(out["count"]) - min(out["count"]) <= 1 and min(out["count"]) >= 5
    order = np.argsort(scores, kind="mergesort")
    start = 0
    for i, size in enumerate(out["count"]):
        idx = order[start : start + size]
        start += size
        positives = int(labels[idx].sum())
        assert out["n_positive"][i] == positives
        assert out["mean_score"][i] == pytest.approx(scores[idx].mean(), abs=1e-5)
        assert out["score_min"][i] == pytest.approx(scores[idx].min(), abs=1e-5)
        assert out["observed"][i] == pytest.approx(positives / size, abs=1e-5)
        wilson = binomtest(positives, size).proportion_ci(confidence_level=0.9, method="wilson")
        assert out["ci"][i] == pytest.approx([wilson.low, wilson.high], abs=1e-5)
    # Bins follow the scores upward.
    assert out["mean_score"] == sorted(out["mean_score"])


def test_attach_curves_uses_the_audit_level() -> None:
    rng = np.random.default_rng(0)
    scores = rng.random(60)
    labels = (rng.random(60) < scores).astype(int)
    groups = np.array(["a", "b"] * 30)
    results = {
        "config": {"ci_level": 0.8},
        "attributes": [{"name": "g", "groups": [{"group": "a"}, {"group": "b"}]}],
    }
    attach_curves(results, labels, scores, {"g": groups}, 0.5, True)
    rel = results["attributes"][0]["groups"][0]["curves"]["reliability"]
    assert rel["ci_level"] == 0.8 and len(rel["count"]) == 5 and sum(rel["count"]) == 30


def test_distribution_bins_follow_the_data() -> None:
    """Dice values between 0.90 and 0.97 get 20 bins over [0.90, 0.97], not one bar of [0, 1]."""
    values = np.array([0.90, 0.91, 0.93, 0.95, 0.97, np.nan])
    out = distribution(values)
    counts, edges = np.histogram(values[:-1], bins=20, range=(0.90, 0.97))
    assert out["counts"] == counts.tolist()
    assert out["edges"] == pytest.approx(edges.tolist())
    same = distribution(np.array([0.8, 0.8]))
    assert same["edges"][0] == pytest.approx(0.775) and same["edges"][-1] == pytest.approx(0.825)
    assert sum(same["counts"]) == 2
