"""Significance tests of a group against the reference, and omnibus tests across groups.

Rates: two-sided Fisher exact on the 2x2 counts (scipy). AUROC: DeLong's test for two
independent ROC curves, with variances from placement values (computed on the cells, in
O(K); checked against statsmodels' rank_compare_2indep in the tests). Per-case brier:
Mann-Whitney U (scipy). ece, auprc, balanced_accuracy: a permutation test of group labels.
Omnibus: chi-square of independence for rates, Welch's ANOVA of the per-case brier means
(statsmodels; a test of means, like the intervals), and a chi-square test of equal AUROC
(from DeLong variances, or, with score intervals, from Hanley-McNeil variances at the
pooled AUROC, which no group's perfect AUROC makes zero). Rate and AUROC comparisons with
score intervals invert those intervals instead (fairaudit/stats/_analytic.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from fairaudit.stats._cells import Cells


@dataclass(frozen=True)
class TestResult:
    """One test's outcome; p_value None means the test is undefined, for `reason`."""

    test: str
    p_value: float | None
    statistic: float | None = None
    df: int | None = None
    reason: str | None = None


def confusion(cells: Cells, threshold: float) -> dict[str, int]:
    """TP, FP, TN, FN at the threshold (prediction = score >= threshold)."""
    above = cells.u >= threshold
    tp = int(cells.pos[above].sum())
    fp = int(cells.neg[above].sum())
    return {"tp": tp, "fp": fp, "tn": cells.n_neg - fp, "fn": cells.n_pos - tp}


def _prop(conf: dict[str, int], parts: tuple[tuple[str, ...], tuple[str, ...]]) -> tuple[int, int]:
    num = sum(conf[k] for k in parts[0])
    den = sum(conf[k] for k in parts[1])
    return num, den


def fisher_test(
    conf_g: dict[str, int], conf_r: dict[str, int], parts: tuple[tuple[str, ...], tuple[str, ...]]
) -> TestResult:
    """Two-sided Fisher exact test of one proportion, group vs reference."""
    a, da = _prop(conf_g, parts)
    b, db = _prop(conf_r, parts)
    if da == 0 or db == 0:
        return TestResult("fisher_exact", None, reason="a denominator is zero in one group")
    res = sps.fisher_exact([[a, da - a], [b, db - b]], alternative="two-sided")
    return TestResult("fisher_exact", float(res.pvalue), statistic=float(res.statistic))


def chi2_omnibus(confs: list[dict[str, int]], parts: tuple[tuple[str, ...], tuple[str, ...]]) -> TestResult:
    """Chi-square test of independence of one proportion across all groups."""
    table = []
    for conf in confs:
        num, den = _prop(conf, parts)
        if den > 0:
            table.append([num, den - num])
    if len(table) < 2:
        return TestResult("chi2", None, reason="fewer than two groups with a defined rate")
    arr = np.array(table, dtype=np.int64)
    if np.any(arr.sum(axis=0) == 0):
        return TestResult("chi2", None, reason="no variation: every group has the same outcome")
    res = sps.chi2_contingency(arr, correction=False)
    return TestResult("chi2", float(res.pvalue), statistic=float(res.statistic), df=int(res.dof))


def delong_placements(cells: Cells) -> tuple[float, float] | None:
    """AUROC and its DeLong variance from placement values, or None if undefined."""
    n_pos, n_neg = cells.n_pos, cells.n_neg
    if n_pos < 2 or n_neg < 2:
        return None
    pos = cells.pos.astype(np.float64)
    neg = cells.neg.astype(np.float64)
    cum_neg = np.cumsum(neg)
    cum_pos = np.cumsum(pos)
    v10 = (cum_neg - neg + 0.5 * neg) / n_neg  # per positive at each cell
    v01 = (n_pos - cum_pos + 0.5 * pos) / n_pos  # per negative at each cell
    auc = float(pos @ v10) / n_pos
    s10 = float(pos @ (v10 - auc) ** 2) / (n_pos - 1)
    s01 = float(neg @ (v01 - auc) ** 2) / (n_neg - 1)
    return auc, s10 / n_pos + s01 / n_neg


def delong_test(cells_g: Cells, cells_r: Cells) -> TestResult:
    """DeLong's z test for two independent ROC curves (two-sided)."""
    g = delong_placements(cells_g)
    r = delong_placements(cells_r)
    if g is None or r is None:
        return TestResult(
            "delong", None, reason="needs at least two positive and two negative cases per group"
        )
    var = g[1] + r[1]
    diff = g[0] - r[0]
    if var <= 0:
        if diff == 0:
            return TestResult("delong", 1.0, statistic=0.0)
        return TestResult("delong", None, reason="zero variance in both groups")
    z = diff / np.sqrt(var)
    return TestResult("delong", float(2 * sps.norm.sf(abs(z))), statistic=float(z))


def delong_omnibus(cells_list: list[Cells], design_effects: list[float] | None = None) -> TestResult:
    """Chi-square test that all groups share one AUROC (inverse-variance weighted).

    `design_effects`: per group, the factor patient-level clustering puts on the variance.
    """
    deffs = design_effects or [1.0] * len(cells_list)
    parts = [delong_placements(c) for c in cells_list]
    parts = [(p[0], p[1] * d) for p, d in zip(parts, deffs, strict=True) if p is not None and p[1] > 0]
    if len(parts) < 2:
        return TestResult("delong_chi2", None, reason="fewer than two groups with a defined AUROC variance")
    auc = np.array([p[0] for p in parts])
    w = 1.0 / np.array([p[1] for p in parts])
    pooled = float(np.sum(w * auc) / np.sum(w))
    q = float(np.sum(w * (auc - pooled) ** 2))
    df = len(parts) - 1
    return TestResult("delong_chi2", float(sps.chi2.sf(q, df)), statistic=q, df=df)


def per_case_brier(cells: Cells) -> np.ndarray:
    """Each case's squared error (s - y)^2, expanded from the cells."""
    errs = np.concatenate([(cells.u - 1.0) ** 2, cells.u**2])
    counts = np.concatenate([cells.pos, cells.neg])
    return np.repeat(errs, counts)


def mannwhitney_test(x: np.ndarray, y: np.ndarray) -> TestResult:
    """Two-sided Mann-Whitney U test of per-case values."""
    if x.size == 0 or y.size == 0:
        return TestResult("mann_whitney_u", None, reason="a group has no cases")
    res = sps.mannwhitneyu(x, y, alternative="two-sided")
    p = float(res.pvalue)
    if not np.isfinite(p):
        return TestResult("mann_whitney_u", None, reason="undefined (all values tied)")
    return TestResult("mann_whitney_u", p, statistic=float(res.statistic))


def kruskal_omnibus(samples: list[np.ndarray]) -> TestResult:
    """Kruskal-Wallis test of per-case values across all groups."""
    samples = [s for s in samples if s.size > 0]
    if len(samples) < 2:
        return TestResult("kruskal_wallis", None, reason="fewer than two groups with cases")
    if np.all(np.concatenate(samples) == samples[0][0]):
        return TestResult("kruskal_wallis", None, reason="no variation: all values are equal")
    res = sps.kruskal(*samples)
    return TestResult(
        "kruskal_wallis", float(res.pvalue), statistic=float(res.statistic), df=len(samples) - 1
    )


def permutation_p_value(observed: float, null: np.ndarray) -> float | None:
    """Two-sided permutation p-value (1 + #{|T*| >= |T|}) / (1 + defined permutations)."""
    defined = null[np.isfinite(null)]
    if not np.isfinite(observed) or defined.size == 0:
        return None
    # A relative tolerance keeps floating-point ties of |T*| and |T| counted as ties.
    tol = 1e-12 * max(1.0, abs(observed))
    hits = int(np.sum(np.abs(defined) >= abs(observed) - tol))
    return (1 + hits) / (1 + defined.size)


def welch_anova(samples: list[np.ndarray]) -> TestResult:
    """Welch's one-way ANOVA of group means (unequal variances; statsmodels).

    Where a group's values do not vary (its variance 0 would get infinite weight), the
    classical equal-variance F test is used instead.
    """
    from statsmodels.stats.oneway import anova_oneway

    samples = [np.asarray(s, dtype=np.float64) for s in samples if s.size > 0]
    if len(samples) < 2:
        return TestResult("welch_anova", None, reason="fewer than two groups with cases")
    if np.all(np.concatenate(samples) == samples[0][0]):
        return TestResult("welch_anova", None, reason="no variation: all values are equal")
    unequal = all(s.size >= 2 and np.var(s) > 0 for s in samples)
    name = "welch_anova" if unequal else "anova"
    res = anova_oneway(samples, use_var="unequal" if unequal else "equal")
    p = float(res.pvalue)
    if not np.isfinite(p):
        return TestResult(name, None, reason="undefined (no variation within groups)")
    # Groups that differ but do not vary within (nsd of 1 in every case of one group, 0.9 in
    # every case of another): F is infinite and p = 0; the statistic is left out of JSON.
    statistic = float(res.statistic)
    return TestResult(name, p, statistic=statistic if np.isfinite(statistic) else None, df=len(samples) - 1)


def hanley_mcneil_variance(auc: float, n_pos: int, n_neg: int) -> float:
    """Hanley & McNeil's (1982) variance of an AUROC estimate at true value `auc`."""
    q1 = auc / (2 - auc)
    q2 = 2 * auc * auc / (1 + auc)
    return (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (
        n_pos * n_neg
    )


def auroc_score_omnibus(cells_list: list[Cells], design_effects: list[float] | None = None) -> TestResult:
    """Chi-square test that all groups share one AUROC, with variances at the common value.

    Every group with both classes takes part (a perfect AUROC included: under the null its
    variance is that of the pooled value, not 0). `design_effects`: per group, the factor
    patient-level clustering puts on the variance (its class sizes are divided by it).
    """
    deffs = design_effects or [1.0] * len(cells_list)
    parts = [
        (_auc(c), c.n_pos / d, c.n_neg / d)
        for c, d in zip(cells_list, deffs, strict=True)
        if c.n_pos > 0 and c.n_neg > 0
    ]
    if len(parts) < 2:
        return TestResult("auroc_score_chi2", None, reason="fewer than two groups with both classes")
    auc = np.array([p[0] for p in parts])
    size = np.array([p[1] * p[2] for p in parts], dtype=np.float64)
    pooled = float(np.sum(size * auc) / np.sum(size))
    if pooled <= 0 or pooled >= 1:
        return TestResult("auroc_score_chi2", 1.0, statistic=0.0, df=len(parts) - 1)
    var = np.array([hanley_mcneil_variance(pooled, m, n) for _, m, n in parts])
    q = float(np.sum((auc - pooled) ** 2 / var))
    df = len(parts) - 1
    return TestResult("auroc_score_chi2", float(sps.chi2.sf(q, df)), statistic=q, df=df)


def _auc(cells: Cells) -> float:
    """AUROC from the cells (ties count one half)."""
    neg = cells.neg.astype(np.float64)
    below = np.cumsum(neg) - neg + 0.5 * neg
    return float(cells.pos.astype(np.float64) @ below) / (cells.n_pos * cells.n_neg)
