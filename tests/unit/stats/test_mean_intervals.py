"""auprc's logit interval and the squared calibration error's bootstrap Wald interval
(fairaudit/stats/_mean_intervals.py) against their formulas, in an audit, and by coverage."""

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
    assert groups[0]["metrics"]["brier"]["method"] == "bootstrap_percentile"
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
