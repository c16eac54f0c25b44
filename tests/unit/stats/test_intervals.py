"""Bootstrap draws, percentile and BCa intervals, and their coverage, against independent answers.

- `bootstrap_counts`: per-cell mean n p and variance n p (1 - p) of a multinomial, on both
  code paths (few cells: numpy multinomial; many cells: integer draws), each forced by data.
- `percentile_interval` == np.quantile; `bca_interval` == Efron's formula as
  scipy.stats.bootstrap implements it (computed here by hand on the same resamples) and ≈
  scipy.stats.bootstrap(method='BCa') itself on independent draws;
- `acceleration` == the textbook jackknife formula on brute-force leave-one-out values;
- coverage of 95% percentile intervals on simulated data with a known truth.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats as sps
from scipy.special import ndtr, ndtri
from sklearn.metrics import roc_auc_score

from fairaudit.stats import AuditConfig, run_audit
from fairaudit.stats._cells import make_cells
from fairaudit.stats._intervals import acceleration, bca_interval, percentile_interval
from fairaudit.stats._metrics import MetricKernel
from fairaudit.stats._resample import bootstrap_counts, bootstrap_task, generator

# --------------------------------------------------------------------------- bootstrap draws


class _SpyRng:
    """Delegates to a numpy Generator and records which sampling methods were called."""

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self.calls: list[str] = []

    def multinomial(self, *a, **k):
        self.calls.append("multinomial")
        return self._rng.multinomial(*a, **k)

    def integers(self, *a, **k):
        self.calls.append("integers")
        return self._rng.integers(*a, **k)


@pytest.mark.parametrize("path", ["multinomial", "integers"])
def test_bootstrap_counts_are_multinomial(path) -> None:
    rng = np.random.default_rng(5)
    if path == "multinomial":
        n = 400
        y = (rng.random(n) < 0.3).astype(int)
        s = np.round(rng.random(n), 1)  # 11 scores: 22 cells, 22 * 8 <= 400
    else:
        n = 50
        y = (rng.random(n) < 0.4).astype(int)
        s = np.round(rng.random(n), 3)  # ~50 scores: 2k * 8 > n
    cells = make_cells(s, y)
    spy = _SpyRng(generator(1, (7,)))
    size = 20000
    pos, neg = bootstrap_counts(cells, size, spy)
    assert set(spy.calls) == {path}
    assert pos.shape == neg.shape == (size, cells.k)
    assert np.all((pos.sum(axis=1) + neg.sum(axis=1)) == n)
    assert np.all(pos[:, cells.pos == 0] == 0) and np.all(neg[:, cells.neg == 0] == 0)
    for got, c in ((pos, cells.pos), (neg, cells.neg)):
        p = c / n
        mean, var = n * p, n * p * (1 - p)
        se = np.sqrt(np.maximum(var, 1e-12) / size)
        assert np.all(np.abs(got.mean(axis=0) - mean) < 5 * se + 1e-12)
        # Sample variance of 20000 draws: relative sd ~ 1-3% for these cells.
        big = var > 0.5
        assert big.sum() >= 3
        assert np.allclose(got.var(axis=0, ddof=1)[big], var[big], rtol=0.1)
    # Covariance of two distinct cells: -n p_i p_j.
    i, j = np.argsort(-cells.pos)[:2]
    cov = np.cov(pos[:, i], pos[:, j])[0, 1]
    want = -n * (cells.pos[i] / n) * (cells.pos[j] / n)
    assert cov == pytest.approx(want, abs=0.1 * np.sqrt(var.max()) + 0.1 * abs(want))


@pytest.mark.parametrize("n", [50, 301, 2001])
def test_integer_draws_are_one_matrix_of_row_indices_drawn_at_once(n) -> None:
    """Drawing each resample's row indices in its own call gives the numbers of one
    (size, n) call on the same generator: the intervals users already have do not move."""
    rng = np.random.default_rng(3)
    y = (rng.random(n) < 0.4).astype(int)
    s = np.round(rng.random(n), 4)  # many scores: the integer path
    cells = make_cells(s, y)
    assert 2 * cells.k * 8 > n
    size = 37
    pos, neg = bootstrap_counts(cells, size, generator(11, (2, 5)))
    idx = generator(11, (2, 5)).integers(0, n, size=(size, n), dtype=np.int32)
    codes = cells.codes()
    want = np.stack([np.bincount(codes[row], minlength=2 * cells.k) for row in idx]).reshape(size, cells.k, 2)
    assert np.array_equal(pos, want[:, :, 1]) and np.array_equal(neg, want[:, :, 0])


def test_bootstrap_task_resamples_rows() -> None:
    """The bootstrap distribution of prevalence is Binomial(n, p)/n (row resampling)."""
    rng = np.random.default_rng(2)
    y = (rng.random(60) < 0.25).astype(int)
    s = rng.random(60)
    boot = bootstrap_task(make_cells(s, y), 0.5, True, 20000, 3, (1,))["prevalence"]
    p = y.mean()
    assert boot.mean() == pytest.approx(p, abs=4 * np.sqrt(p * (1 - p) / 60 / 20000))
    assert boot.var() == pytest.approx(p * (1 - p) / 60, rel=0.05)


# --------------------------------------------------------------------------- percentile


@pytest.mark.parametrize("level", [0.95, 0.9, 0.5])
def test_percentile_interval_equals_numpy_quantile(level) -> None:
    rng = np.random.default_rng(0)
    boot = rng.gamma(2.0, size=1001)
    a = 1 - level
    assert percentile_interval(boot, level) == pytest.approx(
        tuple(np.quantile(boot, [a / 2, 1 - a / 2])), abs=0
    )
    with_nan = boot.copy()
    with_nan[:300] = np.nan  # under half undefined: dropped
    want = np.quantile(boot[300:], [a / 2, 1 - a / 2])
    assert percentile_interval(with_nan, level) == pytest.approx(tuple(want), abs=0)
    with_nan[:600] = np.nan  # most undefined: no interval
    assert percentile_interval(with_nan, level) is None


# --------------------------------------------------------------------------- BCa


def scipy_rule_bca(boot: np.ndarray, estimate: float, accel: float, level: float) -> tuple[float, float]:
    """BCa as scipy.stats.bootstrap (1.17) computes it from resamples and an acceleration.

    z0 = ndtri(share of resamples below the estimate, ties counted 1/2) -- scipy's
    `_percentile_of_score` ('mean' kind of percentileofscore); Efron & Tibshirani eq. 14.10.
    """
    b = boot[np.isfinite(boot)]
    share = (np.count_nonzero(b < estimate) + np.count_nonzero(b <= estimate)) / (2 * b.size)
    z0 = ndtri(share)
    z = ndtri(np.array([(1 - level) / 2, (1 + level) / 2]))
    adj = ndtr(z0 + (z0 + z) / (1 - accel * (z0 + z)))
    lo, hi = np.quantile(b, adj)
    return float(lo), float(hi)


def test_bca_formula_without_ties() -> None:
    """No resample equals the estimate: Efron's formula, exactly."""
    rng = np.random.default_rng(3)
    boot = rng.normal(0.3, 0.1, 4000) + 0.05 * rng.standard_exponential(4000)
    for accel in (0.0, 0.05, -0.03):
        got = bca_interval(boot, 0.31, accel, 0.95)
        assert got == pytest.approx(scipy_rule_bca(boot, 0.31, accel, 0.95), abs=1e-12)
    # z0 = 0 and a = 0 give the percentile interval.
    med = float(np.median(boot))  # an even count: the median is between two resamples
    assert bca_interval(boot, med, 0.0, 0.9) == pytest.approx(percentile_interval(boot, 0.9), abs=1e-12)


def _prevalence_bootstrap(y: np.ndarray, B: int, seed: int):
    s = np.full(y.size, 0.5)
    cells = make_cells(s, y)
    kernel = MetricKernel(cells.u, 0.5, True)
    boot = bootstrap_task(cells, 0.5, True, B, seed, (0,))["prevalence"]
    loo, w = kernel.leave_one_out(cells.pos, cells.neg)
    return boot, float(y.mean()), acceleration([(loo["prevalence"], w)])


def test_bca_bias_correction_counts_ties_half() -> None:
    """Resamples equal to the estimate count 1/2 in z0 (as in scipy.stats.bootstrap).

    Counting only resamples strictly below biases z0 negative for a rate of a small group
    and shifts the whole interval down (n=30: by one to two grid steps of 1/30; in a
    simulation the truth fell above the upper bound 3.7% of the time, below 0.2%).
    """
    rng = np.random.default_rng(1)
    y = (rng.random(30) < 0.3).astype(int)
    boot, est, a = _prevalence_bootstrap(y, 5000, 0)
    assert np.mean(boot == est) > 0.1  # the situation: many resamples tie the estimate
    got = bca_interval(boot, est, a, 0.95)
    assert got == pytest.approx(scipy_rule_bca(boot, est, a, 0.95), abs=1e-12)


def test_bca_close_to_scipy_bootstrap_for_a_rate() -> None:
    """Mean of 0/1 data (n=400): engine BCa vs scipy.stats.bootstrap BCa, independent draws."""
    rng = np.random.default_rng(11)
    y = (rng.random(400) < 0.3).astype(int)
    boot, est, a = _prevalence_bootstrap(y, 5000, 1)
    got = bca_interval(boot, est, a, 0.95)
    ref = sps.bootstrap(
        (y,), np.mean, method="BCa", n_resamples=5000, confidence_level=0.95, rng=np.random.default_rng(2)
    )
    assert got[0] == pytest.approx(ref.confidence_interval.low, abs=0.01)
    assert got[1] == pytest.approx(ref.confidence_interval.high, abs=0.01)


def test_acceleration_equals_textbook_jackknife() -> None:
    """a = sum(d^3) / (6 (sum d^2)^1.5), d = mean(theta_-i) - theta_-i, by brute force (AUROC)."""
    rng = np.random.default_rng(4)
    n = 70
    y = (rng.random(n) < 0.35).astype(int)
    s = np.round(sps.norm.cdf(rng.standard_normal(n) + 1.2 * y), 1)  # ties
    theta = np.array([roc_auc_score(np.delete(y, i), np.delete(s, i)) for i in range(n)])
    d = theta.mean() - theta
    want = np.sum(d**3) / (6 * np.sum(d**2) ** 1.5)
    cells = make_cells(s, y)
    loo, w = MetricKernel(cells.u, 0.5, True).leave_one_out(cells.pos, cells.neg)
    assert acceleration([(loo["auroc"], w)]) == pytest.approx(want, rel=1e-9, abs=1e-15)
    # The same from the raw per-case jackknife values with unit weights.
    assert acceleration([(theta, np.ones(n))]) == pytest.approx(want, rel=1e-9, abs=1e-15)
    assert want != 0


def test_acceleration_two_strata_equals_davison_hinkley() -> None:
    """Difference of two independent means: sum_i sum_j l_ij^3 / n_i^3 / 6 (sum l^2 / n_i^2)^1.5."""
    rng = np.random.default_rng(5)
    xg = rng.exponential(size=25)
    xr = rng.exponential(size=40)
    tg = np.array([np.delete(xg, i).mean() for i in range(xg.size)]) - xr.mean()
    tr = xg.mean() - np.array([np.delete(xr, i).mean() for i in range(xr.size)])
    num = den = 0.0
    for t in (tg, tr):
        n = t.size
        lval = (n - 1) * (t.mean() - t)
        num += np.sum(lval**3) / n**3
        den += np.sum(lval**2) / n**2
    want = num / (6 * den**1.5)
    got = acceleration([(tg, np.ones(tg.size)), (tr, np.ones(tr.size))])
    assert got == pytest.approx(want, rel=1e-12)


def test_bca_difference_in_run_audit_close_to_scipy_two_sample() -> None:
    """run_audit(ci_method='bca') difference of prevalence ≈ scipy BCa, two independent samples."""
    rng = np.random.default_rng(8)
    ng, nr = 250, 350
    yg = (rng.random(ng) < 0.22).astype(int)
    yr = (rng.random(nr) < 0.35).astype(int)
    y = np.concatenate([yg, yr])
    s = np.round(rng.random(ng + nr), 2)
    g = np.array(["g"] * ng + ["r"] * nr)
    cfg = AuditConfig(bootstrap=5000, ci_method="bca", seed=3, permutations=20)
    res = run_audit(y, s, {"a": g}, cfg, references={"a": "r"})
    row = next(c for c in res.attribute("a").comparisons if c.metric == "prevalence")
    assert row.difference.value == pytest.approx(yg.mean() - yr.mean(), abs=1e-12)

    def diff(a, b, axis=-1):
        return np.mean(a, axis=axis) - np.mean(b, axis=axis)

    ref = sps.bootstrap(
        (yg, yr), diff, paired=False, method="BCa", n_resamples=5000, rng=np.random.default_rng(4)
    ).confidence_interval
    lo, hi = row.difference.ci
    assert lo == pytest.approx(ref.low, abs=0.01)
    assert hi == pytest.approx(ref.high, abs=0.01)
    # The group-level BCa of the same run against scipy's one-sample BCa.
    ci = res.attribute("a").group("g").metrics["prevalence"].ci
    ref1 = sps.bootstrap((yg,), np.mean, method="BCa", n_resamples=5000, rng=np.random.default_rng(6))
    assert ci[0] == pytest.approx(ref1.confidence_interval.low, abs=0.012)
    assert ci[1] == pytest.approx(ref1.confidence_interval.high, abs=0.012)


# --------------------------------------------------------------------------- coverage


def coverage(reps: int, n: int = 200, B: int = 500, d: float = 1.0, pi: float = 0.5, seed: int = 2024):
    """Share of 95% percentile intervals covering the true TPR and AUROC (binormal model).

    Negatives X ~ N(0, 1), positives X ~ N(d, 1), score Phi(X): threshold 0.5 is X >= 0, so
    TPR = Phi(d); AUROC = P(X_pos > X_neg) = Phi(d / sqrt 2). Also returns, as "tpr_textbook",
    the coverage of a plain numpy row bootstrap of TPR on the very same data sets (its own
    draws): the engine's coverage must match it closely, whatever the data sets' luck.
    """
    truth = {"tpr": sps.norm.cdf(d), "auroc": sps.norm.cdf(d / np.sqrt(2))}
    rng = np.random.default_rng(seed)
    rng_textbook = np.random.default_rng(seed + 1)
    hits = {m: 0 for m in truth}
    hits["tpr_textbook"] = 0
    for r in range(reps):
        y = (rng.random(n) < pi).astype(int)
        s = sps.norm.cdf(rng.standard_normal(n) + d * y)
        boot = bootstrap_task(make_cells(s, y), 0.5, True, B, r, (0,))
        for m, t in truth.items():
            lo, hi = percentile_interval(boot[m], 0.95)
            hits[m] += lo <= t <= hi
        idx = rng_textbook.integers(0, n, (B, n))
        yy, called = y[idx] == 1, s[idx] >= 0.5
        tpr = (called & yy).sum(axis=1) / yy.sum(axis=1)
        lo, hi = np.quantile(tpr, [0.025, 0.975])
        hits["tpr_textbook"] += lo <= truth["tpr"] <= hi
    return {m: h / reps for m, h in hits.items()}


# The percentile bootstrap's own coverage in this set-up, measured once with 4000
# repetitions (engine and plain numpy bootstrap alike): tpr 0.942 (about 100 positives: a
# proportion's percentile interval is a little short), auroc 0.947. So at 1000 repetitions
# (sd 0.007) a 0.93 floor for tpr would fail for about 1 seed in 20 without any bug -- it
# does for this test's first seed, where the plain numpy bootstrap covers 0.929 too. The
# fast test therefore pairs the band with the textbook comparison on the same data sets;
# the slow one (sd 0.0036) holds both metrics to 93-97%. A resampling bug (wrong n,
# resampling across groups, not with replacement) moves coverage far outside these bands.


def test_percentile_coverage_tpr_auroc() -> None:
    cov = coverage(1000)
    assert 0.92 <= cov["tpr"] <= 0.97, cov
    assert 0.93 <= cov["auroc"] <= 0.97, cov
    assert abs(cov["tpr"] - cov["tpr_textbook"]) <= 0.015, cov


@pytest.mark.slow
def test_percentile_coverage_in_93_97_at_n400() -> None:
    """The issue's band, 93-97% over 1000 repetitions, for a group of n = 400 (200 positives).
    Slow (17 s); test_percentile_coverage_tpr_auroc checks the same band at the default n."""
    cov = coverage(1000, n=400)
    for m in ("tpr", "auroc"):
        assert 0.93 <= cov[m] <= 0.97, cov
    assert abs(cov["tpr"] - cov["tpr_textbook"]) <= 0.015, cov


@pytest.mark.slow
def test_percentile_coverage_tpr_auroc_long() -> None:
    cov = coverage(4000, B=1000, seed=7)
    for m in ("tpr", "auroc", "tpr_textbook"):
        assert 0.93 <= cov[m] <= 0.97, cov
    assert abs(cov["tpr"] - cov["tpr_textbook"]) <= 0.01, cov


def test_bca_difference_with_skewed_reference_close_to_scipy() -> None:
    """A rare outcome in a small reference dominates the difference's skew: the reference's
    jackknife values must enter the acceleration with the sign of -reference. Flipping that
    sign moves the endpoints by ~0.015 here; independent draws agree to ~0.005."""
    rng = np.random.default_rng(12)
    ng, nr = 500, 60
    yg = (rng.random(ng) < 0.3).astype(int)
    yr = np.zeros(nr, int)
    yr[:3] = 1
    y = np.concatenate([yg, yr])
    s = np.round(rng.random(ng + nr), 2)
    g = np.array(["g"] * ng + ["r"] * nr)
    cfg = AuditConfig(bootstrap=5000, ci_method="bca", seed=0, permutations=20)
    res = run_audit(y, s, {"a": g}, cfg, references={"a": "r"})
    row = next(c for c in res.attribute("a").comparisons if c.metric == "prevalence")

    def diff(a, b, axis=-1):
        return np.mean(a, axis=axis) - np.mean(b, axis=axis)

    kw = dict(paired=False, n_resamples=5000, rng=np.random.default_rng(10))
    ref = sps.bootstrap((yg, yr), diff, method="BCa", **kw).confidence_interval
    pct = sps.bootstrap((yg, yr), diff, method="percentile", **kw).confidence_interval
    assert pct.low - ref.low > 0.008  # BCa really adjusts here
    lo, hi = row.difference.ci
    assert lo == pytest.approx(ref.low, abs=0.008)
    assert hi == pytest.approx(ref.high, abs=0.008)


def test_bca_ratio_close_to_scipy_two_sample() -> None:
    """BCa of the ratio group / reference (a skewed statistic) ≈ scipy's two-sample BCa.

    The reference's jackknife values enter as group / reference_-i; using their reciprocal
    moves the upper end by ~8% here, independent draws agree to ~3%."""
    rng = np.random.default_rng(12)
    ng, nr = 500, 80
    yg = (rng.random(ng) < 0.3).astype(int)
    yr = np.zeros(nr, int)
    yr[:10] = 1
    y = np.concatenate([yg, yr])
    s = np.round(rng.random(ng + nr), 2)
    g = np.array(["g"] * ng + ["r"] * nr)
    cfg = AuditConfig(bootstrap=5000, ci_method="bca", seed=0, permutations=20)
    res = run_audit(y, s, {"a": g}, cfg, references={"a": "r"})
    row = next(c for c in res.attribute("a").comparisons if c.metric == "prevalence")
    assert row.ratio.value == pytest.approx(yg.mean() / yr.mean(), rel=1e-12)

    def ratio(a, b, axis=-1):
        return np.mean(a, axis=axis) / np.mean(b, axis=axis)

    ref = sps.bootstrap(
        (yg, yr), ratio, paired=False, method="BCa", n_resamples=5000, rng=np.random.default_rng(10)
    ).confidence_interval
    lo, hi = row.ratio.ci
    assert lo == pytest.approx(ref.low, rel=0.05)
    assert hi == pytest.approx(ref.high, rel=0.05)
