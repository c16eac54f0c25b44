"""Comparisons within strata (`--within`; fairaudit/stats/_strata.py, docs/statistics.md,
"Confounders"): the Mantel-Haenszel risk difference and Sato's variance against a hand
computation and a published interval, the CMH test against statsmodels' StratifiedTable, the
stratified permutation test's size under a confounder, and what an audit attaches."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.contingency_tables import StratifiedTable

from fairaudit._util.absent import ABSENT
from fairaudit.stats import AuditConfig, run_audit
from fairaudit.stats._strata import (
    CMH_TEST,
    PERMUTATION_TEST,
    RATE_METHOD,
    attach_within,
    cmh_test,
    mantel_haenszel_difference,
    stratified_permutation_test,
    stratum_codes,
)

# Beitler & Landis's (1985) eight-centre trial (Agresti 2013, table 6.9): successes and
# patients on the drug (the group) and on the control (the reference) per centre.
X_G = np.array([11, 16, 14, 2, 6, 1, 1, 4])
N_G = np.array([36, 20, 19, 16, 17, 11, 5, 6])
X_R = np.array([10, 22, 7, 1, 0, 0, 1, 6])
N_R = np.array([37, 32, 19, 17, 12, 10, 9, 7])


def _hand(x_g, n_g, x_r, n_r) -> tuple[float, float]:
    """Sato's (1989) formulas written out stratum by stratum."""
    num = w_sum = p_sum = q_sum = 0.0
    for a, n1, b, n0 in zip(x_g, n_g, x_r, n_r, strict=True):
        big = n1 + n0
        num += (a * n0 - b * n1) / big
        w_sum += n1 * n0 / big
        p_sum += (n1 * n1 * b - n0 * n0 * a + n1 * n0 * (n0 - n1) / 2) / big**2
        q_sum += (a * (n0 - b) + b * (n1 - a)) / (2 * big)
    rd = num / w_sum
    return rd, (rd * p_sum + q_sum) / w_sum**2


def _tables(x_g, n_g, x_r, n_r) -> list[np.ndarray]:
    return [np.array([[a, n1 - a], [b, n0 - b]]) for a, n1, b, n0 in zip(x_g, n_g, x_r, n_r, strict=True)]


def test_the_mantel_haenszel_difference_and_sato_variance_by_hand() -> None:
    rd, var = mantel_haenszel_difference(X_G, N_G, X_R, N_R)
    hand_rd, hand_var = _hand(X_G, N_G, X_R, N_R)
    assert rd == pytest.approx(hand_rd, rel=1e-12) and var == pytest.approx(hand_var, rel=1e-12)
    # The pooled difference is the weighted mean of the strata's differences (weights n_g n_r / N).
    w = N_G * N_R / (N_G + N_R)
    assert rd == pytest.approx(float(np.sum(w * (X_G / N_G - X_R / N_R)) / w.sum()), rel=1e-12)
    # The interval R's cardx::ci_prop_diff_mh_strata gives on these data: 0.13 [0.0313, 0.2284].
    z = sps.norm.isf(0.025)
    assert (rd - z * math.sqrt(var), rd + z * math.sqrt(var)) == pytest.approx((0.0313, 0.2284), abs=5e-5)
    # One stratum: the plain difference, and Sato's variance is the unpooled (Wald) variance.
    rd1, var1 = mantel_haenszel_difference([30], [50], [20], [60])
    p1, p0 = 30 / 50, 20 / 60
    assert rd1 == pytest.approx(p1 - p0) and var1 == pytest.approx(p1 * (1 - p1) / 50 + p0 * (1 - p0) / 60)


def test_the_cmh_p_value_is_statsmodels() -> None:
    ref = StratifiedTable(_tables(X_G, N_G, X_R, N_R)).test_null_odds()
    res = cmh_test(X_G, N_G, X_R, N_R)
    assert res.test == CMH_TEST and res.p_value == pytest.approx(float(ref.pvalue), rel=1e-12)
    assert res.statistic == pytest.approx(float(ref.statistic), rel=1e-12)
    # With patients: the statistic over the design effect.
    adjusted = cmh_test(X_G, N_G, X_R, N_R, design_effect=2.0)
    assert adjusted.test == f"{CMH_TEST}_rao_scott"
    assert adjusted.p_value == pytest.approx(float(sps.chi2.sf(float(ref.statistic) / 2.0, 1)))
    # Every record with the same outcome: no test, and why.
    flat = cmh_test([3, 4], [3, 4], [5, 2], [5, 2])
    assert flat.p_value is None and flat.reason


def test_stratum_codes_combine_columns_and_leave_blanks_out() -> None:
    site = np.array(["a", "a", "b", "b", ABSENT, "a"])
    sex = np.array(["F", "M", "F", "F", "F", ABSENT])
    assert stratum_codes({"site": site}).tolist() == [0, 0, 1, 1, -1, 0]
    codes = stratum_codes({"site": site, "sex": sex})
    assert codes[4] == -1 and codes[5] == -1
    assert codes[0] != codes[1] and codes[2] == codes[3] and len(set(codes[:4].tolist())) == 3


def _cohort(rng: np.random.Generator, n: int = 600) -> dict[str, np.ndarray]:
    """A confounded cohort: group C mostly at site s2, where the model misses more positives."""
    race = rng.choice(["A", "C"], n, p=[0.6, 0.4])
    at_s2 = rng.random(n) < np.where(race == "C", 0.8, 0.15)
    site = np.where(at_s2, "s2", "s1")
    labels = (rng.random(n) < 0.35).astype(np.int64)
    strength = np.where(at_s2, 0.15, 0.45)
    scores = np.clip(0.3 + strength * (2 * labels - 1) + rng.normal(0, 0.2, n), 0, 1).round(3)
    return {"race": race, "site": site, "labels": labels, "scores": scores}


def test_an_audit_attaches_the_pooled_difference_to_every_comparison() -> None:
    data = _cohort(np.random.default_rng(3))
    cfg = AuditConfig(bootstrap=200, seed=0, workers=1)
    attrs = {"race": data["race"]}
    site = data["site"].astype(object)
    site[:7] = ABSENT  # blank: out of the within analysis only
    res = run_audit(data["labels"], data["scores"], attrs, cfg)
    before = res.to_dict()
    attach_within(res, data["labels"], data["scores"], attrs, {"site": site}, cfg)
    after = res.to_dict()
    # Nothing but the `within` blocks changes: no family, no adjusted p-value moves.
    for a, b in zip(
        before["attributes"][0]["comparisons"], after["attributes"][0]["comparisons"], strict=True
    ):
        assert {k: v for k, v in b.items() if k != "within"} == a
    rows = {c["metric"]: c for c in after["attributes"][0]["comparisons"]}
    assert set(rows) == set(before["attributes"][0]["summary"])  # every comparison has one
    tpr = rows["tpr"]["within"]
    assert tpr["strata"] == ["site"] and tpr["n_strata"] == 2 and tpr["n_strata_used"] == 2
    assert tpr["difference"]["method"] == RATE_METHOD and tpr["test"] == CMH_TEST

    # By hand over the records with a site: x, n of positives per (stratum, group).
    keep = site != ABSENT
    pos = keep & (data["labels"] == 1)
    hit = data["scores"] >= 0.5
    counts = {
        (s, g): (int(np.sum(pos & hit & (site == s) & (data["race"] == g))), int(np.sum(pos & (site == s) & (data["race"] == g))))
        for s in ("s1", "s2")
        for g in ("A", "C")
    }  # fmt: skip
    x_g = [counts[(s, "C")][0] for s in ("s1", "s2")]
    n_g = [counts[(s, "C")][1] for s in ("s1", "s2")]
    x_r = [counts[(s, "A")][0] for s in ("s1", "s2")]
    n_r = [counts[(s, "A")][1] for s in ("s1", "s2")]
    rd, var = _hand(x_g, n_g, x_r, n_r)
    z = sps.norm.isf(0.025)
    assert tpr["difference"]["value"] == pytest.approx(rd, rel=1e-12)
    assert tpr["difference"]["ci"] == pytest.approx(
        [rd - z * math.sqrt(var), rd + z * math.sqrt(var)], rel=1e-9
    )
    assert tpr["difference"]["n"] == sum(n_g) + sum(n_r)
    ref = StratifiedTable(_tables(x_g, n_g, x_r, n_r)).test_null_odds()
    assert tpr["p_value"] == pytest.approx(float(ref.pvalue), rel=1e-12)
    # The crude gap is the site's: within site it shrinks.
    assert abs(tpr["difference"]["value"]) < abs(rows["tpr"]["difference"]["value"])
    # fnr is tpr's twin; prevalence is described, not tested.
    assert rows["fnr"]["within"]["difference"]["value"] == pytest.approx(-rd)
    assert rows["fnr"]["within"]["p_value"] == pytest.approx(tpr["p_value"])
    assert rows["prevalence"]["within"]["p_value"] is None and rows["prevalence"]["within"]["reason"]
    auroc = rows["auroc"]["within"]
    assert (
        auroc["test"] == PERMUTATION_TEST
        and auroc["difference"]["method"] == "stratified_bootstrap_percentile"
    )
    lo, hi = auroc["difference"]["ci"]
    assert lo <= auroc["difference"]["value"] <= hi and 0 < auroc["p_value"] <= 1
    # Seeded: the same draws again.
    again = run_audit(data["labels"], data["scores"], attrs, cfg)
    attach_within(again, data["labels"], data["scores"], attrs, {"site": site}, cfg)
    assert again.to_dict()["attributes"] == after["attributes"]


def test_patients_widen_the_interval_and_a_stratum_without_cases_drops_out() -> None:
    data = _cohort(np.random.default_rng(5), n=400)
    cfg = AuditConfig(bootstrap=100, seed=0, workers=1)
    attrs = {"race": data["race"]}
    strata = {"site": data["site"]}
    # Each record twice, as two images of one patient with the same outcome.
    twice = {k: np.concatenate([v, v]) for k, v in data.items()}
    patients = np.concatenate([np.arange(400), np.arange(400)])
    single = run_audit(twice["labels"], twice["scores"], {"race": twice["race"]}, cfg)
    attach_within(
        single, twice["labels"], twice["scores"], {"race": twice["race"]}, {"site": twice["site"]}, cfg
    )
    paired = run_audit(twice["labels"], twice["scores"], {"race": twice["race"]}, cfg, clusters=patients)
    attach_within(
        paired, twice["labels"], twice["scores"], {"race": twice["race"]}, {"site": twice["site"]}, cfg,
        clusters=patients,
    )  # fmt: skip
    a = next(c.within for c in single.attributes[0].comparisons if c.metric == "tpr")
    b = next(c.within for c in paired.attributes[0].comparisons if c.metric == "tpr")
    assert a is not None and b is not None and a.difference.value == pytest.approx(b.difference.value)
    width = [w.difference.ci[1] - w.difference.ci[0] for w in (a, b)]
    assert b.difference.design_effect == pytest.approx(2.0, rel=0.05)  # every pair shares its outcome
    assert width[1] == pytest.approx(width[0] * math.sqrt(b.difference.design_effect), rel=1e-9)
    assert b.test == f"{CMH_TEST}_rao_scott" and b.p_value > a.p_value

    # No positive of C at s2: that stratum drops out of tpr (counted), not of fpr.
    labels = data["labels"].copy()
    labels[(data["race"] == "C") & (data["site"] == "s2")] = 0
    res = run_audit(labels, data["scores"], attrs, cfg)
    attach_within(res, labels, data["scores"], attrs, strata, cfg)
    rows = {c.metric: c.within for c in res.attributes[0].comparisons}
    assert (rows["tpr"].n_strata, rows["tpr"].n_strata_used) == (2, 1)
    assert rows["fpr"].n_strata_used == 2


def test_the_stratified_permutation_test_holds_its_size_under_a_confounder() -> None:
    """Two sites of different difficulty, the group mostly at the hard one, and no difference
    within a site: the crude permutation test rejects most of the time, the stratified one at
    its level (200 cohorts of 160 records; 199 permutations each)."""
    rng = np.random.default_rng(11)
    n, reps, alpha = 160, 200, 0.05
    rejected = {"crude": np.zeros(2), "within": np.zeros(2)}
    for r in range(reps):
        in_group = rng.random(n) < 0.5
        hard = rng.random(n) < np.where(in_group, 0.85, 0.15)
        labels = (rng.random(n) < 0.4).astype(np.int64)
        sep = np.where(hard, 0.05, 0.35)
        scores = np.clip(0.5 + sep * (2 * labels - 1) + rng.normal(0, 0.15, n), 0, 1)
        for name, stratum in (("crude", np.zeros(n, dtype=np.int64)), ("within", hard.astype(np.int64))):
            res = stratified_permutation_test(
                labels, scores, in_group, stratum, ("auroc", "brier"), size=199, seed=r
            )
            rejected[name] += [res[m][1] is not None and res[m][1] < alpha for m in ("auroc", "brier")]
    size = rejected["within"] / reps
    assert np.all((size >= 0.015) & (size <= 0.095)), size  # 0.05 within about 3.5 standard errors
    assert np.all(rejected["crude"] / reps > 0.5), rejected["crude"] / reps
