"""brier's betting interval, auprc's logit interval and the squared calibration error's
bootstrap Wald interval (fairaudit/stats/_mean_intervals.py) against their formulas, in an
audit, and by coverage."""

from __future__ import annotations

import numpy as np
import pytest

from fairaudit.stats import AuditConfig, run_audit

from _helpers.benchmarks import load

cov = load("coverage")


def _cohort(n: int, seed: int, power: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    s = rng.beta(2.0, 5.0, n)
    return np.round(s, 3), (rng.random(n) < s**power).astype(int)


def test_squared_ce_interval_is_estimate_plus_minus_z_bootstrap_sd() -> None:
    from fairaudit.stats._cells import make_cells
    from fairaudit.stats._mean_intervals import wald_at
    from fairaudit.stats._resample import bootstrap_task

    s, y = _cohort(200, 4, power=1.5)
    dist = bootstrap_task(make_cells(s, y), 0.5, True, 500, 0, (1,))["squared_calibration_error"]
    lo, hi = wald_at(0.01, dist)(1.959963984540054)
    sd = np.std(dist, ddof=1)
    assert lo == pytest.approx(0.01 - 1.959963984540054 * sd) and hi == pytest.approx(
        0.01 + 1.959963984540054 * sd
    )


def test_audit_uses_them_and_the_adjusted_interval_comes_from_the_same_method() -> None:
    s1, y1 = _cohort(300, 2)
    s2, y2 = _cohort(200, 3, power=1.5)
    s, y = np.concatenate([s1, s2]), np.concatenate([y1, y2])
    g = np.array(["A"] * s1.size + ["B"] * s2.size)
    res = run_audit(y, s, {"g": g}, AuditConfig(bootstrap=500, seed=0)).to_dict()
    groups = res["attributes"][0]["groups"]
    assert groups[0]["metrics"]["auprc"]["method"] == "logit_boyd"
    assert groups[0]["metrics"]["squared_calibration_error"]["method"] == "bootstrap_wald"
    assert groups[0]["metrics"]["brier"]["method"] == "betting_hedged"
    brier_row = next(c for c in res["attributes"][0]["comparisons"] if c["metric"] == "brier")
    assert brier_row["difference"]["method"] == "bootstrap_percentile"
    for metric in ("auprc", "squared_calibration_error"):
        row = next(c for c in res["attributes"][0]["comparisons"] if c["metric"] == metric)
        lo, hi = row["difference"]["ci"]
        adj_lo, adj_hi = row["difference_adjusted"]["ci"]
        assert adj_lo <= lo <= row["difference"]["value"] <= hi <= adj_hi


def test_auprc_logit_interval_is_boyds_formula() -> None:
    """logit(AP) +- z / sqrt(n_pos AP (1 - AP)) (Boyd, Eng & Page 2013), written out here."""
    from fairaudit.stats._mean_intervals import logit_ap_at
    from fairaudit.stats._score import modified_wilson

    ap, n_pos, z = 0.71, 40, 1.959963984540054
    eta, tau = np.log(ap / (1 - ap)), 1 / np.sqrt(n_pos * ap * (1 - ap))
    expected = (1 / (1 + np.exp(-(eta - z * tau))), 1 / (1 + np.exp(-(eta + z * tau))))
    assert logit_ap_at(ap, n_pos)(z) == pytest.approx(expected)
    # A perfect AP: the binomial interval, never of zero width.
    lo, hi = logit_ap_at(1.0, n_pos)(z)
    assert (lo, hi) == pytest.approx(modified_wilson(n_pos, n_pos, z)) and lo < 1.0 == hi


def test_coverage_with_30_cases_where_the_percentile_bootstrap_fell_short() -> None:
    """A fast subset of benchmarks/coverage.py ("Mean metrics"): 30 cases, known truth."""
    rng = np.random.default_rng(5)
    truth = cov.mean_metric_truth(1.5, rng, n=1_000_000)
    c = cov.mean_metric_coverage(30, 1.5, truth, 300, rng, boot=500)
    assert c["squared_calibration_error"] >= 0.9 and c["auprc"] >= 0.92
    assert c["auprc"] >= c["auprc_pct"] + 0.03
    # The percentile bootstrap of the squared calibration error: about 0.81 here.
    assert c["squared_calibration_error"] >= c["sqce_pct"] + 0.05


def _capital_by_hand(x: np.ndarray, m: float, alpha: float) -> float:
    """The largest hedged capital over the cases (Waudby-Smith & Ramdas 2024, Theorem 3 with
    the fixed-sample predictable plug-in bets), one case at a time."""
    n = x.size
    mu_sum, sq_sum = 0.5, 0.25  # prior sum of means (1/2) and of squared deviations (1/4)
    up = down = 1.0
    best = 0.0
    for t, xt in enumerate(x, start=1):
        var_prev = sq_sum / t  # (1/4 + sum_{i<t} (x_i - mu_i)^2) / t
        lam = np.sqrt(2 * np.log(2 / alpha) / (n * var_prev))
        up *= 1 + min(lam, 0.75 / m) * (xt - m)
        down *= 1 - min(lam, 0.75 / (1 - m)) * (xt - m)
        best = max(best, 0.5 * up + 0.5 * down)
        mu_sum += xt
        mu_t = mu_sum / (t + 1)
        sq_sum += (xt - mu_t) ** 2
    return best


def test_brier_betting_interval_is_the_set_where_the_capital_stays_below_one_over_alpha() -> None:
    """The bisection's bounds against a grid of candidate means, each tested by hand."""
    from fairaudit.stats._mean_intervals import betting_at

    rng = np.random.default_rng(8)
    x = rng.beta(0.3, 4.0, 60)
    alpha, z = 0.05, 1.959963984540054
    lo, hi = betting_at(x, np.random.default_rng(1))(z)
    order = np.random.default_rng(1).permutation(x.size)
    grid = np.linspace(0.0005, 0.9995, 1999)
    kept = [m for m in grid if _capital_by_hand(x[order], m, alpha) < 1 / alpha]
    assert kept and lo <= x.mean() <= hi
    assert abs(min(kept) - lo) < 5e-4 and abs(max(kept) - hi) < 5e-4
    # One interval: every grid point between the bounds is kept.
    assert len(kept) == sum(lo <= m <= hi for m in grid)


def test_brier_betting_interval_covers_a_near_perfect_model_where_the_bootstrap_does_not() -> None:
    """A fast subset of benchmarks/coverage.py ("Mean metrics", near-perfect model, 30 cases):
    the mean error is carried by rare large errors that a small sample rarely holds."""
    rng = np.random.default_rng(6)
    truth = cov.mean_metric_truth(None, rng, n=1_000_000)
    c = cov.mean_metric_coverage(30, None, truth, 200, rng, boot=300)
    assert c["brier"] >= 0.95  # guaranteed at any size (Ville's inequality); 0.95 - 3 se
    assert c["brier_pct"] <= 0.8  # the percentile bootstrap: about 0.63


def test_brier_betting_interval_is_never_of_zero_width_and_stays_in_0_1() -> None:
    from fairaudit.stats._mean_intervals import betting_at

    for x in (np.zeros(20), np.ones(20), np.full(5, 1e-9)):
        lo, hi = betting_at(x, np.random.default_rng(0))(1.959963984540054)
        assert 0.0 <= lo <= x.mean() <= hi <= 1.0 and hi - lo > 0.05


def test_brier_betting_interval_bets_on_patients_when_they_share_images() -> None:
    """A fast subset of benchmarks/coverage.py (patient-level, brier): 4 images per patient
    sharing a patient effect; betting on images undercovers (about 0.85), on patients not."""
    rng = np.random.default_rng(12)
    by_images, by_patients = cov.clustered_brier_coverage(0.99, 10, 0.8, 150, rng)
    assert by_patients >= 0.95 and by_images < by_patients


def test_brier_betting_interval_with_one_case_per_patient_is_the_case_interval() -> None:
    from fairaudit.stats._mean_intervals import betting_at

    x = np.random.default_rng(2).beta(0.5, 3.0, 40)
    z = 1.959963984540054
    by_case = betting_at(x, np.random.default_rng(4))(z)
    by_patient = betting_at(x, np.random.default_rng(4), np.ones(x.size))(z)
    assert by_patient == pytest.approx(by_case, abs=1e-12)
