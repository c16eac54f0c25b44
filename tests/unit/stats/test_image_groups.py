"""Group disparity statistics checked against numpy, scipy.stats and statsmodels."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats as sps

from fairaudit.preprocess._imagestats import entropy_bits, image_statistics, noise_sigma
from fairaudit.stats.image_groups import Groups, change, describe, draws


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = ["A"] * 60 + ["B"] * 40 + ["C"] * 25
    values = np.concatenate([rng.normal(10, 2, 60), rng.normal(12, 2, 40), rng.normal(9, 3, 25)])
    return values, Groups.of(labels)


def test_point_estimates_and_kruskal_match_scipy() -> None:
    v, g = _data()
    d = describe(v, g, draws(g, 500, 0, (0,)), 0.95)
    means = [v[i].mean() for i in g.index]
    for name, m in zip(g.names, means, strict=True):
        assert d.group_means[name].value == pytest.approx(m)
    assert d.disparity["range"].value == pytest.approx(max(means) - min(means))
    assert d.disparity["cv"].value == pytest.approx(np.std(means) / abs(np.mean(means)))
    assert d.disparity["standardized_range"].value == pytest.approx((max(means) - min(means)) / v.std())
    kw = sps.kruskal(*[v[i] for i in g.index])
    assert d.test["p_value"] == pytest.approx(kw.pvalue) and d.test["statistic"] == pytest.approx(
        kw.statistic
    )


def test_group_mean_interval_agrees_with_scipy_bootstrap() -> None:
    v, g = _data(1)
    d = describe(v, g, draws(g, 4000, 3, (0,)), 0.95)
    for name, idx in zip(g.names, g.index, strict=True):
        ref = sps.bootstrap(
            (v[idx],), np.mean, n_resamples=4000, method="percentile", rng=np.random.default_rng(9)
        )
        lo, hi = d.group_means[name].ci
        width = ref.confidence_interval.high - ref.confidence_interval.low
        assert lo == pytest.approx(ref.confidence_interval.low, abs=0.1 * width)
        assert hi == pytest.approx(ref.confidence_interval.high, abs=0.1 * width)


def test_resampling_is_stratified_and_seeded() -> None:
    _, g = _data()
    a, b = draws(g, 50, 7, (1,)), draws(g, 50, 7, (1,))
    for x, y, idx in zip(a, b, g.index, strict=True):
        np.testing.assert_array_equal(x, y)
        assert x.shape == (50, idx.size) and np.isin(x, idx).all()
    c = draws(g, 50, 8, (1,))
    assert not np.array_equal(a[0], c[0])


def test_change_verdicts() -> None:
    v, g = _data(2)
    dr = draws(g, 400, 0, (0,))
    before = describe(v, g, dr, 0.95)
    same = change(before, describe(v.copy(), g, dr, 0.95), 0.95)
    assert same["value"] == 0 and same["verdict"] == "no clear change"
    flat = describe(np.zeros_like(v) + 1e-17 * np.arange(v.size), g, dr, 0.95)  # rounding noise only
    assert flat.test["p_value"] is None and flat.disparity["standardized_range"].value == 0
    assert change(before, flat, 0.95)["verdict"] == "narrowed"
    wider = v + np.where(np.arange(v.size) >= 100, 10.0, 0.0)  # push group C away
    assert change(before, describe(wider, g, dr, 0.95), 0.95)["verdict"] == "widened"


def test_image_statistics_by_hand() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(100, 5, (128, 128))
    st = image_statistics(x)
    assert st["mean"] == pytest.approx(x.mean()) and st["std"] == pytest.approx(x.std())
    assert (st["p1"], st["p99"]) == pytest.approx(tuple(np.percentile(x, [1, 99])))
    counts = np.histogram(x, 256)[0]
    assert st["entropy"] == pytest.approx(sps.entropy(counts, base=2))
    assert st["noise"] == pytest.approx(5.0, rel=0.05)  # white Gaussian noise of SD 5
    smooth = np.add.outer(np.linspace(0, 50, 128), np.linspace(0, 30, 128))
    assert noise_sigma(smooth + rng.normal(0, 2, smooth.shape)) == pytest.approx(2.0, rel=0.05)
    assert entropy_bits(np.ones(10)) == 0.0
