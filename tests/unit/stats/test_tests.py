"""Significance tests and the multiple-testing adjustment, against scipy and statsmodels.

What is compared with what:
- `fisher_test` p and odds ratio == scipy.stats.fisher_exact on a 2x2 table counted by hand;
- `chi2_omnibus` == scipy.stats.chi2_contingency(correction=False);
- `delong_placements` (AUROC, variance) == statsmodels' rank_compare_2indep. In statsmodels
  0.15, `prob1` is P(x1 > x2) + P(x1 = x2)/2, so rank_compare_2indep(x_pos, x_neg).prob1 is
  the AUROC (with the brief's argument order (x_neg, x_pos), `prob2` is the AUROC and
  `prob1` = 1 - AUROC; both orders are asserted). `var_prob` = var1/n1 + var2/n2 with
  var_i = S_i/n_other^2, S_i the ddof=1 sample variance of sample i's rank differences,
  i.e. of its placement values (share of the other sample below/above, ties 1/2) times
  n_other: exactly DeLong's S10/m + S01/n with ddof=1, and symmetric in the order. Also compared with an O(mn)
  placement computation by hand, and with the bootstrap variance of AUROC;
- `delong_test` p == 2 * norm.sf(|z|) with z from the statsmodels quantities;
- `mannwhitney_test` == scipy.stats.mannwhitneyu, `kruskal_omnibus` == scipy.stats.kruskal;
- `permutation_p_value` == a hand count; run_audit's permutation p-values ≈ a brute-force
  permutation of group labels over rows (different draws, Monte Carlo tolerance);
- the adjustment in run_audit == statsmodels multipletests over every comparison row with
  a p-value, in audit order.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.nonparametric import rank_compare_2indep
from statsmodels.stats.proportion import confint_proportions_2indep

from fairaudit.stats import AuditConfig, run_audit
from fairaudit.stats import _tests as T
from fairaudit.stats._cells import make_cells
from fairaudit.stats._metrics import PROPORTIONS
from fairaudit.stats._resample import bootstrap_task, generator, permutation_counts

# --------------------------------------------------------------------------- helpers


def hand_confusion(s: np.ndarray, y: np.ndarray, t: float) -> dict[str, int]:
    pred = s >= t
    return {
        "tp": int(np.sum(pred & (y == 1))),
        "fp": int(np.sum(pred & (y == 0))),
        "tn": int(np.sum(~pred & (y == 0))),
        "fn": int(np.sum(~pred & (y == 1))),
    }


def binormal(n: int, d: float, pi: float, seed: int, decimals: int | None = None):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < pi).astype(int)
    s = sps.norm.cdf(rng.standard_normal(n) + d * y)
    if decimals is not None:
        s = np.round(s, decimals)
    return s, y


def hand_delong(s: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """DeLong (1988) from the m x n kernel matrix psi(x_pos, x_neg)."""
    xp, xn = s[y == 1], s[y == 0]
    psi = (xp[:, None] > xn[None, :]) + 0.5 * (xp[:, None] == xn[None, :])
    v10 = psi.mean(axis=1)
    v01 = psi.mean(axis=0)
    auc = psi.mean()
    return float(auc), float(np.var(v10, ddof=1) / xp.size + np.var(v01, ddof=1) / xn.size)


# --------------------------------------------------------------------------- confusion / Fisher / chi2


@pytest.mark.parametrize("t", [0.3, 0.5, 0.8])
def test_confusion_counts_by_hand(t) -> None:
    s, y = binormal(150, 1.0, 0.4, 1, decimals=1)
    assert T.confusion(make_cells(s, y), t) == hand_confusion(s, y, t)


@pytest.mark.parametrize("metric", sorted(PROPORTIONS))
def test_fisher_equals_scipy(metric) -> None:
    sg, yg = binormal(80, 0.6, 0.35, 2, decimals=2)
    sr, yr = binormal(200, 1.2, 0.45, 3, decimals=2)
    cg, cr = hand_confusion(sg, yg, 0.5), hand_confusion(sr, yr, 0.5)
    num, den = PROPORTIONS[metric]
    a, da = sum(cg[k] for k in num), sum(cg[k] for k in den)
    b, db = sum(cr[k] for k in num), sum(cr[k] for k in den)
    want = sps.fisher_exact([[a, da - a], [b, db - b]], alternative="two-sided")
    got = T.fisher_test(
        T.confusion(make_cells(sg, yg), 0.5), T.confusion(make_cells(sr, yr), 0.5), PROPORTIONS[metric]
    )
    assert got.test == "fisher_exact"
    assert got.p_value == pytest.approx(float(want.pvalue), rel=1e-12, abs=0)
    assert got.statistic == pytest.approx(float(want.statistic), rel=1e-12)


def test_fisher_undefined_with_zero_denominator() -> None:
    conf_g = {"tp": 0, "fp": 3, "tn": 5, "fn": 0}  # no positives: tpr undefined
    conf_r = {"tp": 4, "fp": 3, "tn": 5, "fn": 2}
    res = T.fisher_test(conf_g, conf_r, PROPORTIONS["tpr"])
    assert res.p_value is None and res.reason


@pytest.mark.parametrize("metric", ["tpr", "fpr", "ppv", "selection_rate", "accuracy"])
def test_chi2_omnibus_equals_scipy(metric) -> None:
    confs = []
    for seed, (n, d) in enumerate([(150, 1.0), (90, 0.5), (40, 1.5), (220, 0.8)]):
        s, y = binormal(n, d, 0.4, 10 + seed)
        confs.append(hand_confusion(s, y, 0.5))
    num, den = PROPORTIONS[metric]
    table = [[sum(c[k] for k in num), sum(c[k] for k in den) - sum(c[k] for k in num)] for c in confs]
    want = sps.chi2_contingency(np.array(table), correction=False)
    got = T.chi2_omnibus(confs, PROPORTIONS[metric])
    assert got.p_value == pytest.approx(float(want.pvalue), rel=1e-10)
    assert got.statistic == pytest.approx(float(want.statistic), rel=1e-10)
    assert got.df == want.dof == 3


def test_chi2_omnibus_drops_groups_without_denominator_and_no_variation() -> None:
    confs = [
        {"tp": 5, "fp": 1, "tn": 9, "fn": 5},
        {"tp": 0, "fp": 2, "tn": 8, "fn": 0},  # no positives: left out of the tpr table
        {"tp": 9, "fp": 3, "tn": 7, "fn": 1},
    ]
    want = sps.chi2_contingency(np.array([[5, 5], [9, 1]]), correction=False)
    got = T.chi2_omnibus(confs, PROPORTIONS["tpr"])
    assert got.p_value == pytest.approx(float(want.pvalue), rel=1e-10) and got.df == 1
    same = [{"tp": 5, "fp": 0, "tn": 0, "fn": 0}, {"tp": 7, "fp": 0, "tn": 0, "fn": 0}]
    res = T.chi2_omnibus(same, PROPORTIONS["tpr"])
    assert res.p_value is None and res.reason


# --------------------------------------------------------------------------- DeLong


@pytest.mark.parametrize(
    "n,decimals,seed",
    [(120, None, 1), (200, 1, 2), (60, 2, 3), (35, 0, 4)],
    ids=["cont", "ties1", "ties2", "ties0"],
)
def test_delong_placements_equal_statsmodels(n, decimals, seed) -> None:
    s, y = binormal(n, 0.9, 0.4, seed, decimals)
    auc, var = T.delong_placements(make_cells(s, y))
    res = rank_compare_2indep(s[y == 1], s[y == 0])
    assert auc == pytest.approx(float(res.prob1), abs=1e-12)
    assert var == pytest.approx(float(res.var_prob), rel=1e-10)
    rev = rank_compare_2indep(s[y == 0], s[y == 1])
    assert auc == pytest.approx(float(rev.prob2), abs=1e-12)
    assert auc == pytest.approx(1 - float(rev.prob1), abs=1e-12)
    assert var == pytest.approx(float(rev.var_prob), rel=1e-10)
    # The same numbers from the m x n kernel matrix, and AUROC from scikit-learn.
    h_auc, h_var = hand_delong(s, y)
    assert auc == pytest.approx(h_auc, abs=1e-12)
    assert var == pytest.approx(h_var, rel=1e-10)
    from sklearn.metrics import roc_auc_score

    assert auc == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_delong_placements_undefined_below_two_per_class() -> None:
    s = np.array([0.1, 0.4, 0.6, 0.9])
    assert T.delong_placements(make_cells(s, np.array([0, 0, 0, 1]))) is None
    assert T.delong_placements(make_cells(s, np.array([1, 1, 1, 0]))) is None
    assert T.delong_placements(make_cells(s, np.array([0, 1, 0, 1]))) is not None


def test_delong_variance_close_to_bootstrap_variance() -> None:
    s, y = binormal(400, 1.0, 0.4, 7)
    cells = make_cells(s, y)
    _, var = T.delong_placements(cells)
    boot = bootstrap_task(cells, 0.5, True, 4000, 123, (0,))["auroc"]
    # Relative Monte Carlo error of a variance from 4000 draws is ~2%; DeLong and the
    # bootstrap variance differ by O(1/n) besides.
    assert np.var(boot, ddof=1) == pytest.approx(var, rel=0.10)


def test_delong_test_p_by_hand() -> None:
    sg, yg = binormal(90, 0.5, 0.4, 21, decimals=2)
    sr, yr = binormal(250, 1.3, 0.4, 22, decimals=2)
    rg = rank_compare_2indep(sg[yg == 1], sg[yg == 0])
    rr = rank_compare_2indep(sr[yr == 1], sr[yr == 0])
    z = (rg.prob1 - rr.prob1) / math.sqrt(rg.var_prob + rr.var_prob)
    got = T.delong_test(make_cells(sg, yg), make_cells(sr, yr))
    assert got.test == "delong"
    assert got.statistic == pytest.approx(z, rel=1e-10)
    assert got.p_value == pytest.approx(2 * sps.norm.sf(abs(z)), rel=1e-10)
    assert got.p_value < 0.05  # the effect is large enough to see


def test_delong_omnibus_by_hand() -> None:
    groups = [binormal(n, d, 0.4, 30 + i, 2) for i, (n, d) in enumerate([(150, 1.0), (80, 0.3), (120, 1.4)])]
    auc = np.array([rank_compare_2indep(s[y == 1], s[y == 0]).prob1 for s, y in groups])
    var = np.array([rank_compare_2indep(s[y == 1], s[y == 0]).var_prob for s, y in groups])
    w = 1 / var
    q = float(np.sum(w * (auc - np.sum(w * auc) / np.sum(w)) ** 2))
    got = T.delong_omnibus([make_cells(s, y) for s, y in groups])
    assert got.statistic == pytest.approx(q, rel=1e-10)
    assert got.df == 2
    assert got.p_value == pytest.approx(sps.chi2.sf(q, 2), rel=1e-10)


# --------------------------------------------------------------------------- Mann-Whitney / Kruskal


def test_per_case_brier_and_mannwhitney_equal_scipy() -> None:
    sg, yg = binormal(70, 0.8, 0.4, 41, decimals=1)
    sr, yr = binormal(130, 1.1, 0.4, 42, decimals=1)
    eg, er = (sg - yg) ** 2, (sr - yr) ** 2
    pg = T.per_case_brier(make_cells(sg, yg))
    assert np.allclose(np.sort(pg), np.sort(eg), atol=1e-15, rtol=0)
    want = sps.mannwhitneyu(eg, er, alternative="two-sided")
    got = T.mannwhitney_test(pg, T.per_case_brier(make_cells(sr, yr)))
    assert got.p_value == pytest.approx(float(want.pvalue), rel=1e-10)
    assert got.statistic == pytest.approx(float(want.statistic), rel=1e-12)


def test_mannwhitney_undefined_cases() -> None:
    assert T.mannwhitney_test(np.array([]), np.array([0.1, 0.2])).p_value is None


def test_kruskal_equals_scipy() -> None:
    samples = []
    for i, (n, d) in enumerate([(60, 0.5), (90, 1.0), (40, 1.5)]):
        s, y = binormal(n, d, 0.4, 50 + i, decimals=2)
        samples.append((s - y) ** 2)
    want = sps.kruskal(*samples)
    got = T.kruskal_omnibus(samples)
    assert got.p_value == pytest.approx(float(want.pvalue), rel=1e-10)
    assert got.statistic == pytest.approx(float(want.statistic), rel=1e-10)
    assert got.df == 2
    assert T.kruskal_omnibus([np.full(5, 0.25), np.full(3, 0.25)]).p_value is None


# --------------------------------------------------------------------------- permutation


def test_permutation_p_value_hand_count() -> None:
    observed = -0.3
    null = np.array([0.1, -0.3, 0.3, 0.5, -0.05, np.nan, 0.2999999, -0.31, np.inf * 0, 0.0])
    # defined: 8 values; |T*| >= 0.3: -0.3, 0.3, 0.5, -0.31 -> 4 (0.2999999 is not a tie)
    assert T.permutation_p_value(observed, null) == pytest.approx((1 + 4) / (1 + 8))
    # A floating-point tie (0.1 + 0.2 vs 0.3) counts as a tie.
    assert T.permutation_p_value(0.3, np.array([0.1 + 0.2, 0.0])) == pytest.approx(2 / 3)
    assert T.permutation_p_value(np.nan, null) is None
    assert T.permutation_p_value(0.2, np.array([np.nan, np.nan])) is None
    assert T.permutation_p_value(0.0, np.array([0.0, 1.0, -2.0])) == pytest.approx(1.0)


@pytest.mark.parametrize("n_cells_per_case", ["few", "many"])
def test_permutation_counts_are_hypergeometric(n_cells_per_case) -> None:
    """Each cell's count in the first group: mean N1 c/N, hypergeometric variance."""
    if n_cells_per_case == "few":
        s, y = binormal(400, 1.0, 0.4, 60, decimals=1)  # 'marginals' method
    else:
        s, y = binormal(60, 1.0, 0.4, 61)  # 'count' method
    pooled = make_cells(s, y)
    n_first, size = 25 if n_cells_per_case == "many" else 150, 20000
    pos, neg = permutation_counts(pooled, n_first, size, generator(3, (9,)))
    assert np.all(pos + neg >= 0) and np.all((pos + neg).sum(axis=1) == n_first)
    assert np.all(pos <= pooled.pos) and np.all(neg <= pooled.neg)
    N = pooled.n
    for got, c in ((pos, pooled.pos), (neg, pooled.neg)):
        mean = n_first * c / N
        var = n_first * (c / N) * (1 - c / N) * (N - n_first) / (N - 1)
        se = np.sqrt(np.maximum(var, 1e-12) / size)
        assert np.all(np.abs(got.mean(axis=0) - mean) < 5 * se + 1e-9)
        big = var > 0.05
        assert np.allclose(got.var(axis=0)[big], var[big], rtol=0.1)


def _fast_ece(s: np.ndarray, y: np.ndarray) -> float:
    b = np.minimum(np.floor(s * 10 + 1e-12).astype(int), 9)  # bin k: [k/10, (k+1)/10)
    d = np.bincount(b, weights=s - y, minlength=10)
    return float(np.abs(d).sum() / s.size)


def _balanced_accuracy(s: np.ndarray, y: np.ndarray) -> float:
    pred = s >= 0.5
    return 0.5 * (np.mean(pred[y == 1]) + np.mean(~pred[y == 0]))


def _brier(s: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((s - y) ** 2))


def test_permutation_p_values_in_audit_match_brute_force() -> None:
    """Permutation p-values ≈ shuffling group labels over rows (2000 draws each): ece and the
    mean brier with score intervals, balanced accuracy with bootstrap intervals."""
    sg, yg = binormal(120, 0.9, 0.4, 70, decimals=3)
    sr, yr = binormal(200, 1.0, 0.4, 71, decimals=3)
    sg = np.clip(sg * 1.1 - 0.02, 0, 1)  # a mild miscalibration: p-values neither 0 nor 1
    s, y = np.concatenate([sg, sr]), np.concatenate([yg, yr])
    g = np.array(["g"] * 120 + ["r"] * 200)
    rng = np.random.default_rng(99)
    for ci_method, metric, fn in (
        ("score", "ece", _fast_ece),
        ("score", "brier", _brier),
        ("percentile", "balanced_accuracy", _balanced_accuracy),
    ):
        cfg = AuditConfig(bootstrap=50, permutations=2000, seed=4, ci_method=ci_method)
        res = run_audit(y, s, {"a": g}, cfg, references={"a": "r"})
        rows = {c.metric: c for c in res.attribute("a").comparisons}
        observed = fn(sg, yg) - fn(sr, yr)
        assert rows[metric].difference.value == pytest.approx(observed, abs=1e-9)
        hits = 0
        P = 2000
        for _ in range(P):
            perm = rng.permutation(s.size)
            a, b = perm[:120], perm[120:]
            hits += abs(fn(s[a], y[a]) - fn(s[b], y[b])) >= abs(observed) - 1e-12
        p_brute = (1 + hits) / (1 + P)
        assert rows[metric].test == "permutation"
        # Two independent Monte Carlo estimates of one p-value: sd of the difference < 0.016.
        assert rows[metric].p_value == pytest.approx(p_brute, abs=0.05), metric


# --------------------------------------------------------------------------- run_audit p-values and adjustment


def audit_data(seed: int = 80):
    rng = np.random.default_rng(seed)
    n = 700
    sex = rng.choice(["F", "M"], n, p=[0.55, 0.45])
    site = rng.choice(["s1", "s2", "s3", "tiny"], n, p=[0.5, 0.3, 0.17, 0.03])
    y = (rng.random(n) < 0.4).astype(int)
    y[site == "tiny"] = 0  # a group without positives: its tpr, auroc, ... tests are undefined
    shift = np.where(site == "s2", -0.6, 0.0) + np.where(sex == "M", 0.3, 0.0)
    s = np.round(sps.norm.cdf(rng.standard_normal(n) + (1.0 + shift) * y), 2)
    return y, s, {"sex": sex, "site": site}


@pytest.fixture(scope="module")
def audit_runs():
    y, s, attrs = audit_data()
    out = {}
    for corr in ("holm", "fdr_bh", "bonferroni", "none"):
        cfg = AuditConfig(
            bootstrap=40,
            permutations=199,
            seed=3,
            correction=corr,
            ci_level=0.9 if corr in ("fdr_bh", "none") else 0.95,
        )
        out[corr] = (cfg, run_audit(y, s, attrs, cfg))
    return y, s, attrs, out


@pytest.mark.parametrize("corr", ["holm", "fdr_bh", "bonferroni", "none"])
def test_adjustment_equals_multipletests(audit_runs, corr) -> None:
    *_, runs = audit_runs
    cfg, res = runs[corr]
    rows = [c for _, c in res.comparisons()]
    # One row per hypothesis: fnr / tnr share their tpr / fpr twin's test, prevalence is not tested.
    tested = [c for c in rows if c.metric not in ("fnr", "tnr")]
    with_p = [c for c in tested if c.p_value is not None]
    assert len(with_p) > 20 and len(with_p) < len(tested)  # some tests are undefined (tiny group)
    assert all(c.p_value is None and "not tested" in c.reason for c in rows if c.metric == "prevalence")
    p = np.array([c.p_value for c in with_p])
    want = p if corr == "none" else multipletests(p, alpha=1 - cfg.ci_level, method=corr)[1]
    alpha = 1 - cfg.ci_level
    for c, w in zip(with_p, want, strict=True):
        assert c.family == "exploratory"  # no primary metrics named: one family
        assert c.p_adjusted == pytest.approx(float(w), rel=1e-12, abs=0)
        assert c.significant == (w < alpha)
    by_key = {(c.group, c.metric): c for c in rows}
    for c in rows:
        if c.metric in ("fnr", "tnr"):
            twin = by_key[(c.group, {"fnr": "tpr", "tnr": "fpr"}[c.metric])]
            assert c.tested_as == twin.metric and c.p_adjusted == twin.p_adjusted
    d = res.to_dict()
    for a in d["attributes"]:
        for c in a["comparisons"]:
            if c["p_value"] is None:
                assert c["p_adjusted"] is None and c["significant"] is False and c["reason"]
    if corr == "none":
        # Some p-values lie between 0.05 and alpha = 0.10: `significant` must use 1 - ci_level.
        assert any(0.05 <= c.p_adjusted < alpha for c in with_p)
    # Holm and Bonferroni never lower a p-value.
    if corr != "none":
        assert all(c.p_adjusted >= c.p_value - 1e-15 for c in with_p)


def test_audit_raw_p_values_equal_scipy(audit_runs) -> None:
    """With bootstrap intervals (--ci-method percentile): the classical tests, as scipy computes them."""
    y, s, attrs, _ = audit_runs
    res = run_audit(y, s, attrs, AuditConfig(bootstrap=40, permutations=199, seed=3, ci_method="percentile"))
    for attr_name, values in attrs.items():
        attr = res.attribute(attr_name)
        ref = attr.reference
        mr = values == ref
        for c in attr.comparisons:
            mg = values == c.group
            if c.metric in PROPORTIONS and c.p_value is not None:
                num, den = PROPORTIONS[c.metric]
                cg, cr = hand_confusion(s[mg], y[mg], 0.5), hand_confusion(s[mr], y[mr], 0.5)
                a, da = sum(cg[k] for k in num), sum(cg[k] for k in den)
                b, db = sum(cr[k] for k in num), sum(cr[k] for k in den)
                p = sps.fisher_exact([[a, da - a], [b, db - b]]).pvalue
                assert c.test == "fisher_exact" and c.p_value == pytest.approx(p, rel=1e-12)
            elif c.metric == "auroc" and c.p_value is not None:
                rg = rank_compare_2indep(s[mg][y[mg] == 1], s[mg][y[mg] == 0])
                rr = rank_compare_2indep(s[mr][y[mr] == 1], s[mr][y[mr] == 0])
                z = (rg.prob1 - rr.prob1) / math.sqrt(rg.var_prob + rr.var_prob)
                assert c.test == "delong" and c.p_value == pytest.approx(2 * sps.norm.sf(abs(z)), rel=1e-9)
            elif c.metric in ("ece", "auprc", "balanced_accuracy", "brier"):
                assert c.test == "permutation"
                if c.p_value is not None:
                    assert 1 / 200 <= c.p_value <= 1  # (1 + hits) / (1 + 199)


def test_score_p_values_invert_statsmodels_newcombe_interval(audit_runs) -> None:
    """With score intervals, a rate's p-value is the level at which statsmodels' Newcombe
    interval of the difference just reaches 0: p < alpha exactly when it excludes 0."""
    y, s, attrs, runs = audit_runs
    _, res = runs["holm"]
    checked = 0
    for attr_name, values in attrs.items():
        attr = res.attribute(attr_name)
        mr = values == attr.reference
        for c in attr.comparisons:
            if c.metric not in PROPORTIONS or c.p_value is None or not 1e-6 < c.p_value < 0.999:
                continue
            mg = values == c.group
            num, den = PROPORTIONS[c.metric]
            cg, cr = hand_confusion(s[mg], y[mg], 0.5), hand_confusion(s[mr], y[mr], 0.5)
            counts = (
                sum(cg[k] for k in num),
                sum(cg[k] for k in den),
                sum(cr[k] for k in num),
                sum(cr[k] for k in den),
            )
            assert c.test == "newcombe_score"
            lo, hi = confint_proportions_2indep(*counts, method="newcomb", alpha=c.p_value)
            assert min(abs(lo), abs(hi)) < 1e-7, (c.metric, c.group)
            lo, hi = confint_proportions_2indep(*counts, method="newcomb", alpha=c.p_value * 1.01)
            assert lo > 0 or hi < 0
            lo, hi = confint_proportions_2indep(*counts, method="newcomb", alpha=c.p_value * 0.99)
            assert lo < 0 < hi
            want = confint_proportions_2indep(*counts, method="newcomb", alpha=0.05)
            assert c.difference.ci == pytest.approx(want, abs=1e-9)
            checked += 1
    assert checked > 10


def test_audit_omnibus_equals_scipy(audit_runs) -> None:
    y, s, attrs, runs = audit_runs
    _, res = runs["holm"]
    site = attrs["site"]
    names = sorted(set(site))
    om = {o.metric: o for o in res.attribute("site").omnibus}
    confs = [hand_confusion(s[site == g], y[site == g], 0.5) for g in names]
    for metric in ("tpr", "fpr", "selection_rate"):
        num, den = PROPORTIONS[metric]
        table = [[sum(c[k] for k in num), sum(c[k] for k in den) - sum(c[k] for k in num)] for c in confs]
        table = [row for row in table if sum(row) > 0]  # a group without a defined rate is left out
        want = sps.chi2_contingency(np.array(table), correction=False)
        assert om[metric].test == "chi2"
        assert om[metric].df == len(table) - 1
        assert om[metric].p_value == pytest.approx(float(want.pvalue), rel=1e-10)
    # Per-case brier: Welch's ANOVA of the means, by its formula (Welch 1951).
    samples = [(s[site == g] - y[site == g]) ** 2 for g in names]
    k = len(samples)
    n = np.array([x.size for x in samples], dtype=float)
    w = n / np.array([x.var(ddof=1) for x in samples])
    means = np.array([x.mean() for x in samples])
    grand = np.sum(w * means) / np.sum(w)
    lam = np.sum((1 - w / w.sum()) ** 2 / (n - 1))
    f = (np.sum(w * (means - grand) ** 2) / (k - 1)) / (1 + 2 * (k - 2) / (k**2 - 1) * lam)
    p = sps.f.sf(f, k - 1, (k**2 - 1) / (3 * lam))
    assert om["brier"].test == "welch_anova"
    assert om["brier"].p_value == pytest.approx(float(p), rel=1e-8)
    assert om["auroc"].test == "auroc_score_chi2" and 0 <= om["auroc"].p_value <= 1


def test_primary_family_is_corrected_apart_from_the_exploratory_one(audit_runs) -> None:
    y, s, attrs, _ = audit_runs
    cfg = AuditConfig(bootstrap=40, permutations=199, seed=3, primary_metrics=("tpr", "auroc"))
    res = run_audit(y, s, attrs, cfg)
    rows = [c for _, c in res.comparisons()]
    for family, metrics in (("primary", {"tpr", "auroc"}), ("exploratory", None)):
        members = [c for c in rows if c.family == family and c.tested_as is None and c.p_value is not None]
        if metrics is not None:
            assert {c.metric for c in members} == metrics
        want = multipletests([c.p_value for c in members], alpha=0.05, method="holm")[1]
        assert [c.p_adjusted for c in members] == pytest.approx(list(want), rel=1e-12)
    assert all(c.family == "primary" for c in rows if c.metric == "fnr")  # the twin of tpr
    assert res.config["primary_metrics"] == ["tpr", "auroc"]
    with pytest.raises(ValueError, match="primary_metrics="):
        AuditConfig(primary_metrics=("sensitivity",))


@pytest.mark.parametrize("corr", ["holm", "bonferroni", "fdr_bh"])
def test_adjusted_intervals_say_what_adjusted_p_values_say(audit_runs, corr) -> None:
    """Simultaneous intervals: 'significant after correction' iff 'the adjusted interval
    excludes 0', in every row with a test inverting its interval; with Bonferroni a rate's
    adjusted interval is statsmodels' Newcombe interval at alpha / m."""
    y, s, attrs, _ = audit_runs
    res = run_audit(y, s, attrs, AuditConfig(bootstrap=40, permutations=199, seed=3, correction=corr))
    family = [c for _, c in res.comparisons() if c.p_value is not None and c.tested_as is None]
    checked = 0
    for attr_name, values in attrs.items():
        attr = res.attribute(attr_name)
        mr = values == attr.reference
        for c in attr.comparisons:
            if c.adjusted is None or c.adjusted.ci is None:
                continue
            lo, hi = c.adjusted.ci
            assert lo <= c.difference.ci[0] + 1e-12 and hi >= c.difference.ci[1] - 1e-12  # wider
            if c.test in ("newcombe_score", "auroc_score_mover"):
                assert c.significant == (lo > 0 or hi < 0), (c.metric, c.group)
                checked += 1
            if (
                corr == "bonferroni"
                and c.metric in ("selection_rate", "accuracy")
                and c.test == "newcombe_score"
            ):
                mg = values == c.group
                num, den = PROPORTIONS[c.metric]
                cg, cr = hand_confusion(s[mg], y[mg], 0.5), hand_confusion(s[mr], y[mr], 0.5)
                counts = [sum(cg[k] for k in num), sum(cg[k] for k in den)]
                counts += [sum(cr[k] for k in num), sum(cr[k] for k in den)]
                want = confint_proportions_2indep(*counts, method="newcomb", alpha=0.05 / len(family))
                assert c.adjusted.ci == pytest.approx(want, abs=1e-9)
    assert checked > 10
    cons = res.to_dict()["consistency"]
    assert cons["rows"] == len([c for c in family if c.difference.ci is not None])
    assert cons["agree"] >= 0.9 * cons["rows"]
    assert (
        len(cons["disagreements"]) == cons["rows"] - min(cons["agree"], cons["agree_adjusted"])
        or cons["disagreements"]
    )


def test_raised_permutations_are_drawn_only_where_p_is_below_alpha() -> None:
    """A family raised past the asked-for permutations (family_factor, as 14 findings make it):
    a clearly different group's brier p-value comes from the raised count (finer than
    1 / (asked + 1)), a null one keeps the asked-for count's p-value (a multiple of
    1 / (asked + 1)). test_permutation_p_values_in_audit_match_brute_force checks the p-values
    themselves."""
    sg, yg = binormal(150, 0.9, 0.4, 80, decimals=3)
    sn, yn = binormal(150, 1.0, 0.4, 83, decimals=3)
    sr, yr = binormal(300, 1.0, 0.4, 82, decimals=3)
    sg = np.clip(sg + 0.3, 0, 1)  # badly calibrated: brier clearly worse
    s, y = np.concatenate([sg, sn, sr]), np.concatenate([yg, yn, yr])
    g = np.array(["bad"] * 150 + ["same"] * 150 + ["ref"] * 300)
    cfg = AuditConfig(bootstrap=50, permutations=200, seed=4)
    res = run_audit(y, s, {"a": g}, cfg, references={"a": "ref"}, family_factor=40, adjust_now=False)
    raised = res.config["permutations"]
    assert raised > 200
    rows = {(c.group, c.metric): c for c in res.attribute("a").comparisons}
    bad, same = rows[("bad", "brier")].p_value, rows[("same", "brier")].p_value
    assert bad < 1 / 201  # drawn again with the raised count
    assert bad == pytest.approx(1 / (raised + 1)) or bad * (raised + 1) == pytest.approx(
        round(bad * (raised + 1))
    )
    assert same >= 0.05 and same * 201 == pytest.approx(round(same * 201))  # the asked-for draws
