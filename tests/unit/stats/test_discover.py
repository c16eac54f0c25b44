"""Slice discovery (fairaudit.stats._discover) against independent answers.

- a planted weak slice (one manufacturer's portable AP images) is found first, and is
  significant after adjustment over the whole search; with nothing planted, no slice is
  significant (several seeds);
- each slice's test equals the library on the slice vs its complement, one-sided in the
  direction of "worse": DeLong from statsmodels' rank_compare_2indep (AUROC from
  scikit-learn), Fisher exact from scipy on a hand-counted 2x2 table, Mann-Whitney U from
  scipy for per-case values;
- p_adjusted == statsmodels multipletests over every slice tested (one family);
- candidates, duplicates (same cases) and small slices are counted by hand;
- the bootstrap interval of the difference is seeded and agrees with DeLong's normal
  approximation.
"""

from __future__ import annotations

import json
import re
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import roc_auc_score
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.nonparametric import rank_compare_2indep

from fairaudit.stats import AuditConfig
from fairaudit.stats._discover import discover_slices

from _helpers import cli


def cohort(n: int, seed: int, planted: bool) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Three manufacturers x two views x sex x age band; scores binormal. When `planted`, the
    portable unit's AP images (manufacturer "Mobile" & view "AP") have much noisier scores."""
    rng = np.random.default_rng(seed)
    man = rng.choice(["Mobile", "Phantom", "Synth"], n)
    view = np.where(rng.random(n) < np.where(man == "Mobile", 0.6, 0.2), "AP", "PA")
    sex = rng.choice(["F", "M"], n)
    age = rng.choice(["18-39", "40-64", "65+"], n)
    y = (rng.random(n) < 0.35).astype(np.int64)
    sd = np.full(n, 1.0)
    if planted:
        sd[(man == "Mobile") & (view == "AP")] = 4.0
    z = np.where(y == 1, 0.8, -0.8) + rng.normal(0, 1, n) * sd
    s = np.round(1 / (1 + np.exp(-z)), 4)
    return y, s, {"manufacturer": man, "view": view, "sex": sex, "age": age}


CFG = AuditConfig(bootstrap=400, seed=0, min_group_size=30)


def test_planted_weak_slice_is_found_first() -> None:
    y, s, attrs = cohort(1500, 0, planted=True)
    d = discover_slices(y, s, attrs, CFG, top=5)
    first = d["slices"][0]
    assert {(c["attribute"], c["group"]) for c in first["conditions"]} == {
        ("manufacturer", "Mobile"),
        ("view", "AP"),
    }
    assert first["significant"] and first["p_adjusted"] < 0.001
    assert first["difference"]["value"] < -0.1
    lo, hi = first["difference"]["ci"]
    assert lo <= first["difference"]["value"] <= hi < 0
    assert first["gap"] == pytest.approx(-first["difference"]["value"])
    gaps = [sl["gap"] for sl in d["slices"]]
    assert gaps == sorted(gaps, reverse=True)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_nothing_planted_nothing_significant(seed: int) -> None:
    y, s, attrs = cohort(800, seed, planted=False)
    d = discover_slices(y, s, attrs, CFG, top=3)
    assert d["n_tested"] > 30
    assert d["n_significant"] == 0
    assert not any(sl["significant"] for sl in d["slices"])


def _masks(attrs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for a, v in attrs.items():
        for g in np.unique(v):
            out[f"{a}={g}"] = v == g
    for a, b in combinations(attrs, 2):
        for g in np.unique(attrs[a]):
            for h in np.unique(attrs[b]):
                m = (attrs[a] == g) & (attrs[b] == h)
                if m.any():
                    out[f"{a}={g} & {b}={h}"] = m
    return out


def test_delong_p_values_and_adjustment_equal_statsmodels() -> None:
    y, s, attrs = cohort(600, 5, planted=True)
    attrs = {k: attrs[k] for k in ("manufacturer", "view", "sex")}
    d = discover_slices(y, s, attrs, CFG, top=1000)
    masks = _masks(attrs)
    assert d["n_candidates"] == len(masks)
    family = {k: _delong_p(y, s, m) for k, m in masks.items() if m.sum() >= 30 and (~m).sum() >= 30}
    assert d["n_tested"] == len(family)
    # Only slices served worse than the rest are listed (issue 23), all of them with top=1000.
    assert {sl["slice"] for sl in d["slices"]} == {k for k, (p, gap) in family.items() if gap > 0}
    for sl in d["slices"]:
        m = masks[sl["slice"]]
        assert sl["n"] == m.sum() and sl["n_rest"] == (~m).sum() and sl["n_positive"] == y[m].sum()
        auc_s, auc_r = roc_auc_score(y[m], s[m]), roc_auc_score(y[~m], s[~m])
        assert sl["value"]["value"] == pytest.approx(auc_s, abs=1e-12)
        assert sl["rest_value"]["value"] == pytest.approx(auc_r, abs=1e-12)
        rs = rank_compare_2indep(s[m][y[m] == 1], s[m][y[m] == 0])
        rr = rank_compare_2indep(s[~m][y[~m] == 1], s[~m][y[~m] == 0])
        z = (auc_s - auc_r) / np.sqrt(rs.var_prob + rr.var_prob)
        assert sl["test"] == "delong"
        assert sl["p_value"] == pytest.approx(sps.norm.cdf(z), rel=1e-9)  # H1: the slice is worse
    # One family: every slice tested (listed or not), adjusted together.
    names = list(family)
    adj = dict(zip(names, multipletests([family[k][0] for k in names], method="holm")[1], strict=True))
    assert [sl["p_adjusted"] for sl in d["slices"]] == pytest.approx(
        [adj[sl["slice"]] for sl in d["slices"]], rel=1e-12
    )
    assert d["n_significant"] == int(sum(v < 0.05 for v in adj.values()))


def _delong_p(y: np.ndarray, s: np.ndarray, m: np.ndarray) -> tuple[float, float]:
    """One-sided DeLong p (H1: the slice is worse) and the gap (rest - slice AUROC), from
    statsmodels' rank_compare_2indep variances and scikit-learn's AUROC."""
    auc_s, auc_r = roc_auc_score(y[m], s[m]), roc_auc_score(y[~m], s[~m])
    rs = rank_compare_2indep(s[m][y[m] == 1], s[m][y[m] == 0])
    rr = rank_compare_2indep(s[~m][y[~m] == 1], s[~m][y[~m] == 0])
    return float(sps.norm.cdf((auc_s - auc_r) / np.sqrt(rs.var_prob + rr.var_prob))), auc_r - auc_s


def test_fisher_for_rates_and_bh_correction() -> None:
    y, s, attrs = cohort(500, 7, planted=True)
    attrs = {k: attrs[k] for k in ("manufacturer", "sex")}
    cfg = AuditConfig(bootstrap=200, correction="fdr_bh", threshold=0.5, min_group_size=30)
    d = discover_slices(y, s, attrs, cfg, metric="tpr", top=1000)
    masks = _masks(attrs)
    pred = s >= 0.5
    for sl in d["slices"]:
        m = masks[sl["slice"]]
        tp_s, fn_s = int(np.sum(pred & m & (y == 1))), int(np.sum(~pred & m & (y == 1)))
        tp_r, fn_r = int(np.sum(pred & ~m & (y == 1))), int(np.sum(~pred & ~m & (y == 1)))
        assert sl["test"] == "fisher_exact"
        assert sl["p_value"] == pytest.approx(
            sps.fisher_exact([[tp_s, fn_s], [tp_r, fn_r]], alternative="less").pvalue, rel=1e-12
        )
        assert sl["difference"]["value"] == pytest.approx(tp_s / (tp_s + fn_s) - tp_r / (tp_r + fn_r))
    family = {}
    for k, m in masks.items():
        if m.sum() < 30 or (~m).sum() < 30:
            continue
        table = [[int(np.sum(pred & mm & (y == 1))), int(np.sum(~pred & mm & (y == 1)))] for mm in (m, ~m)]
        family[k] = sps.fisher_exact(table, alternative="less").pvalue
    assert d["n_tested"] == len(family)
    names = list(family)
    adj = dict(zip(names, multipletests([family[k] for k in names], method="fdr_bh")[1], strict=True))
    assert [sl["p_adjusted"] for sl in d["slices"]] == pytest.approx(
        [adj[sl["slice"]] for sl in d["slices"]], rel=1e-12
    )
    # fnr: lower is better, so "worse" is a higher rate in the slice.
    f = discover_slices(y, s, attrs, cfg, metric="fnr", top=1)
    assert f["higher_is_better"] is False and f["alternative"] == "greater"
    assert f["slices"][0]["difference"]["value"] == pytest.approx(f["slices"][0]["gap"])


def test_counts_duplicates_and_small_slices() -> None:
    # site and manufacturer split the cases identically: their slices are duplicates.
    n = 200
    site = np.array(["a"] * 100 + ["b"] * 80 + ["c"] * 20)
    man = np.array(["X"] * 100 + ["Y"] * 80 + ["Z"] * 20)
    sex = np.array(["F", "M"] * 100)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, n)
    s = rng.random(n)
    d = discover_slices(y, s, {"site": site, "man": man, "sex": sex}, CFG, top=100)
    # Candidates: 3 + 3 + 2 groups; site x man 3 (diagonal), site x sex 6, man x sex 6.
    assert d["n_candidates"] == 8 + 3 + 6 + 6
    # Small slices (< 30 cases) are skipped before they could be anyone's duplicate: c, Z, c&Z,
    # c&F, c&M, Z&F, Z&M are all counted as small.
    by_name = {sl["slice"]: sl for sl in d["slices"]}
    assert by_name["site=a"]["equivalent"] == ["man=X", "site=a & man=X"]
    assert "man=X" not in by_name
    assert d["n_skipped_small"] == 7 and d["n_duplicates"] == 2 + 2 + 4  # X, Y; a&X, b&Y; man x sex
    assert d["n_candidates"] == d["n_tested"] + d["n_untestable"] + d["n_duplicates"] + d["n_skipped_small"]
    # Tested: a, b, F, M, a&F, a&M, b&F, b&M (each with n >= 30 and rest >= 30); listed: those
    # of them served worse than their rest.
    tested = {"site=a", "site=b", "sex=F", "sex=M", "site=a & sex=F", "site=a & sex=M", "site=b & sex=F",
              "site=b & sex=M"}  # fmt: skip
    assert d["n_tested"] == len(tested) and set(by_name) <= tested and len(by_name) == d["n_worse"]
    assert all(sl["gap"] > 0 for sl in d["slices"])


def test_per_case_metric_uses_mann_whitney() -> None:
    rng = np.random.default_rng(3)
    n = 300
    site = rng.choice(["p", "q", "r"], n)
    dice = np.clip(rng.normal(0.85, 0.05, n) - 0.1 * (site == "r"), 0, 1)
    dice[:5] = np.nan  # undefined cases are left out
    d = discover_slices(np.zeros(n), np.zeros(n), {"site": site}, CFG, metric="dice", top=3, per_case=dice)
    first = d["slices"][0]
    assert first["slice"] == "site=r" and first["test"] == "mann_whitney_u"
    ok = np.isfinite(dice)
    m = site == "r"
    mwu = sps.mannwhitneyu(dice[m & ok], dice[~m & ok], alternative="less")
    assert first["p_value"] == pytest.approx(mwu.pvalue, rel=1e-12)
    assert first["difference"]["value"] == pytest.approx(dice[m & ok].mean() - dice[~m & ok].mean())
    lo, hi = first["difference"]["ci"]
    assert lo < first["difference"]["value"] < hi


def test_interval_is_seeded_and_agrees_with_delong() -> None:
    y, s, attrs = cohort(1500, 0, planted=True)
    cfg = AuditConfig(bootstrap=2000, seed=4, min_group_size=30)
    a = discover_slices(y, s, {"manufacturer": attrs["manufacturer"]}, cfg, top=1)["slices"][0]
    b = discover_slices(y, s, {"manufacturer": attrs["manufacturer"]}, cfg, top=1)["slices"][0]
    assert a == b
    m = attrs["manufacturer"] == a["conditions"][0]["group"]
    rs = rank_compare_2indep(s[m][y[m] == 1], s[m][y[m] == 0])
    rr = rank_compare_2indep(s[~m][y[~m] == 1], s[~m][y[~m] == 0])
    half = 1.96 * np.sqrt(rs.var_prob + rr.var_prob)
    lo, hi = a["difference"]["ci"]
    assert hi - lo == pytest.approx(2 * half, rel=0.15)


def test_bad_metric_is_refused() -> None:
    y, s, attrs = cohort(100, 0, planted=False)
    with pytest.raises(ValueError, match="discover_metric="):
        discover_slices(y, s, attrs, CFG, metric="ece")
    with pytest.raises(ValueError, match="needs scores"):
        discover_slices(y, (s > 0.5).astype(float), attrs, CFG, metric="auroc", has_scores=False)


def test_cli_discover_writes_results_and_report(tmp_path: Path) -> None:
    from fairaudit.schema import validate_results

    y, s, attrs = cohort(400, 0, planted=True)
    attrs["manufacturer"] = np.where(
        attrs["manufacturer"] == "Mobile", "<i>Mobile</i>", attrs["manufacturer"]
    )
    lines = ["id,label,score,manufacturer,view,sex"]
    lines += [
        f"c{i},{y[i]},{s[i]},{attrs['manufacturer'][i]},{attrs['view'][i]},{attrs['sex'][i]}"
        for i in range(400)
    ]
    (tmp_path / "p.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    res = cli.invoke(["audit", "--predictions", str(tmp_path / "p.csv"), "--attribute", "manufacturer", "--attribute",
         "view", "--attribute", "sex", "--discover", "--discover-top", "40", "--bootstrap", "200",
         "--out", str(out), "--quiet"], columns=None)  # fmt: skip
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    validate_results(results)
    disc = results["discovered"]
    assert disc["metric"] == "auroc" and len(disc["slices"]) == disc["n_worse"] > 4
    assert disc["slices"][0]["slice"] == "manufacturer=<i>Mobile</i> & view=AP"  # the planted slice
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert "Discovered slices" in md and "manufacturer=&lt;i&gt;Mobile&lt;/i&gt; &amp; view=AP" in html
    assert re.search(r"Mobile.{0,8} \\?& view=AP", md)  # Markdown may escape the & and the tag
    assert "<i>Mobile" not in html  # escaped
    bad = cli.invoke(["audit", "--predictions", str(tmp_path / "p.csv"), "--attribute", "sex", "--discover",
         "--discover-metric", "ece", "--bootstrap", "20", "--out", str(out), "--quiet"], columns=None)  # fmt: skip
    assert bad.exit_code == 2


# ------------------------------------------------------------------ patients as the unit


def test_one_case_per_patient_changes_nothing() -> None:
    y, s, attrs = cohort(600, 6, planted=True)
    plain = discover_slices(y, s, attrs, CFG, top=3)
    single = discover_slices(y, s, attrs, CFG, top=3, clusters=np.arange(y.size))
    assert single == plain and single["unit"] == "case"


def test_copies_as_one_patient_give_delong_on_the_originals() -> None:
    """Every case copied 3 times, the copies one patient: the same information, so each
    slice's clustered AUROC test equals DeLong's (statsmodels' rank_compare_2indep
    variances) on the original cases."""
    y, s, attrs = cohort(600, 7, planted=True)
    attrs = {k: attrs[k] for k in ("manufacturer", "view")}
    rep = np.repeat(np.arange(y.size), 3)
    d = discover_slices(y[rep], s[rep], {k: v[rep] for k, v in attrs.items()}, CFG, top=1000, clusters=rep)
    assert d["unit"] == "patient"
    masks = _masks(attrs)
    for sl in d["slices"]:
        m = masks[sl["slice"]]
        rs = rank_compare_2indep(s[m][y[m] == 1], s[m][y[m] == 0])
        rr = rank_compare_2indep(s[~m][y[~m] == 1], s[~m][y[~m] == 0])
        auc_s, auc_r = roc_auc_score(y[m], s[m]), roc_auc_score(y[~m], s[~m])
        z = (auc_s - auc_r) / np.sqrt(rs.var_prob + rr.var_prob)
        assert sl["test"] == "obuchowski"
        assert sl["p_value"] == pytest.approx(sps.norm.cdf(z), rel=1e-9)


def test_rate_test_with_patients_uses_the_cluster_robust_variance_of_statsmodels() -> None:
    """selection_rate per slice with 2-4 images per patient: the z test's variances are
    statsmodels' cluster-robust variance of the mean (OLS on a constant, no small-sample
    correction) times G / (G - 1)."""
    import statsmodels.api as sm

    y, s, attrs = cohort(900, 8, planted=False)
    attrs = {"sex": attrs["sex"]}
    patients = np.repeat(np.arange(300), 3)
    cfg = AuditConfig(bootstrap=200, seed=0, min_group_size=30, threshold=0.5)
    d = discover_slices(y, s, attrs, cfg, metric="selection_rate", top=10, clusters=patients)
    pred = (s >= 0.5).astype(float)

    def part(m):
        fit = sm.OLS(pred[m], np.ones(m.sum())).fit(
            cov_type="cluster", cov_kwds={"groups": patients[m], "use_correction": False}
        )
        g = np.unique(patients[m]).size
        return fit.params[0], fit.cov_params()[0, 0] * g / (g - 1)

    for sl in d["slices"]:
        m = attrs["sex"] == sl["conditions"][0]["group"]
        (a, va), (b, vb) = part(m), part(~m)
        z = (a - b) / np.sqrt(va + vb)
        assert sl["test"] == "wald_patients"
        assert sl["p_value"] == pytest.approx(2 * sps.norm.sf(abs(z)), rel=1e-9)  # selection rate: two-sided


def test_per_case_means_with_patients_resample_patients() -> None:
    """Per-case values copied into patients: the patient bootstrap of the copies draws the
    same means as the patient bootstrap of the originals (a patient brings all its cases)."""
    from fairaudit.stats._discover import _mean_boot

    v = np.random.default_rng(9).random(120)
    rep = np.repeat(np.arange(120), 4)
    a = _mean_boot(v, 500, 3, (3, 0, 0), np.arange(120))
    b = _mean_boot(v[rep], 500, 3, (3, 0, 0), rep)
    np.testing.assert_allclose(b, a, rtol=1e-12)
    assert np.std(a) == pytest.approx(np.std(v) / np.sqrt(120), rel=0.15)


def test_terminal_lists_the_worst_slices(tmp_path: Path) -> None:
    """Issue 23: the terminal named none of the slices it found; it lists the worst (at most
    five) with the numbers results.json holds for them."""
    sample = Path(__file__).resolve().parents[3] / "sample_data"
    res = cli.invoke(["audit", "--predictions", str(sample / "predictions.csv"), "--demographics",
                      str(sample / "demographics.csv"), "--attribute", "sex", "--attribute", "race", "--discover",
                      "--bootstrap", "100", "--out", str(tmp_path / "o")], columns=200)  # fmt: skip
    assert res.exit_code == 0, res.output
    disc = json.loads((tmp_path / "o" / "results.json").read_text())["discovered"]
    assert f"{len(disc['slices'])} slices served worse than the rest on {disc['metric']}" in res.output
    first = disc["slices"][0]
    assert f"1. {first['slice']} (n {first['n']}): difference" in res.output
    assert all(sl["gap"] > 0 for sl in disc["slices"])
