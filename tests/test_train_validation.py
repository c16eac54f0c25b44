"""Segmentation validation metrics: Dice by hand count, bootstrap interval against scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from fairaudit.train.validation import bootstrap_mean_ci, dice_per_case, segmentation_validation


def test_dice_hand_count() -> None:
    pred = np.zeros((3, 6, 6), bool)
    truth = np.zeros((3, 6, 6), bool)
    pred[0, :2, :3] = True  # 6 px
    truth[0, :3, :2] = True  # 6 px, overlap 2x2 = 4
    truth[2, 0, 0] = True  # case 1 empty vs empty; case 2 empty pred vs 1 px
    np.testing.assert_allclose(dice_per_case(pred, truth), [2 * 4 / 12, 1.0, 0.0])


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
