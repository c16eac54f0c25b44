"""Segmentation validation metrics: bootstrap interval against scipy (Dice itself: tests/unit/stats/test_segmentation.py)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from fairaudit.train.validation import bootstrap_mean_ci, segmentation_validation


def test_bootstrap_interval_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    values = rng.beta(8, 2, size=60)
    ours = bootstrap_mean_ci(values, n_resamples=20000, seed=1)
    ref = stats.bootstrap(
        (values,), np.mean, n_resamples=20000, method="percentile", rng=np.random.default_rng(2)
    )
    assert ours[0] == pytest.approx(ref.confidence_interval.low, abs=0.004)
    assert ours[1] == pytest.approx(ref.confidence_interval.high, abs=0.004)
    assert bootstrap_mean_ci(values, n_resamples=500, seed=5) == bootstrap_mean_ci(
        values, n_resamples=500, seed=5
    )


def test_per_group_means() -> None:
    dice = np.array([0.9, 0.8, 0.5, 0.7])
    out = segmentation_validation(dice, {"race": np.array(["A", "A", "C", "C"])}, n_resamples=200)
    groups = {g["group"]: g for g in out["attributes"][0]["groups"]}
    assert groups["A"]["metrics"]["dice"]["value"] == pytest.approx(0.85)
    assert groups["C"]["metrics"]["dice"]["value"] == pytest.approx(0.6)
    lo, hi = groups["C"]["metrics"]["dice"]["ci"]
    assert 0.5 <= lo <= 0.6 <= hi <= 0.7
    assert out["overall"]["metrics"]["dice"]["value"] == pytest.approx(0.725)
