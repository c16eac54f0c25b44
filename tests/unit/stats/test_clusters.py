"""Patient-level resampling (fairaudit/stats/_clusters.py) against independent answers.

statsmodels' cluster-robust variance, DeLong by brute force, properties that must hold
(a cohort of every image copied four times, each copy the same patient, carries the
information of the original cohort), and coverage where the truth is known (a fast subset
of benchmarks/coverage.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats as sps

from fairaudit.stats import AuditConfig, run_audit
from fairaudit.stats import _tests as T
from fairaudit.stats._cells import make_cells
from fairaudit.stats._clusters import (
    bootstrap_weights,
    cluster_bootstrap_task,
    cluster_cells,
    obuchowski_variance,
    permutation_weights,
    proportion_design_effect,
)
from fairaudit.stats._segmentation_audit import cluster_permutation_mean_test

from _helpers import cli
from _helpers.benchmarks import load

cov = load("coverage")


def _patients(n_pat: int, m: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores with a patient effect, labels shared within a patient, and the patient of each image."""
    rng = np.random.default_rng(seed)
    pid = np.repeat(np.arange(n_pat), m)
    y = np.repeat((rng.random(n_pat) < 0.4).astype(int), m)
    z = 1.2 * y + np.repeat(rng.normal(0, 0.8, n_pat), m) + rng.normal(0, 0.6, pid.size)
    return np.round(1 / (1 + np.exp(-z)), 3), y, pid


def test_proportion_design_effect_matches_statsmodels_cluster_robust_variance() -> None:
    rng = np.random.default_rng(1)
    sizes = rng.integers(1, 6, 80)
    pid = np.repeat(np.arange(sizes.size), sizes)
    shared = rng.random(sizes.size) < 0.7
    hit = np.where(rng.random(pid.size) < 0.6, shared[pid], rng.random(pid.size) < 0.7).astype(float)
    num = np.bincount(pid, weights=hit)
    den = np.bincount(pid).astype(float)
    # The mean of `hit` as OLS on a constant; cluster-robust variance without small-sample
    # factors, times G / (G - 1) as our estimator uses.
    fit = sm.OLS(hit, np.ones_like(hit)).fit(
        cov_type="cluster", cov_kwds={"groups": pid, "use_correction": False}
    )
    g = sizes.size
    var = float(fit.cov_params()[0, 0]) * g / (g - 1)
    p = hit.mean()
    expected = var / (p * (1 - p) / hit.size)
    assert 1 < expected < float((den**2).sum() / den.sum())  # inside the bounds: not clipped
    assert proportion_design_effect(num, den) == pytest.approx(expected, rel=1e-10)


def test_small_sample_factor_is_the_t_over_z_ratio_at_satterthwaite_df() -> None:
    rng = np.random.default_rng(11)
    den = rng.integers(1, 5, 60).astype(float)
    num = np.minimum(den, rng.binomial(den.astype(int), 0.93)).astype(float)
    p = num.sum() / den.sum()
    e = num - p * den
    df = (e @ e) ** 2 / np.sum(e**4)
    z = 1.959963984540054
    factor = (sps.t.ppf(0.975, df) / z) ** 2
    worst = (den**2).sum() / den.sum()
    expected = min(max(raw_unclipped(num, den) * factor, 1.0), worst)
    assert proportion_design_effect(num, den, z) == pytest.approx(expected)
    assert 1.0 < expected < worst  # inside the bounds: the factor is what is tested


def raw_unclipped(num: np.ndarray, den: np.ndarray) -> float:
    """The variance ratio before it is bounded to [1, worst] (written out for the test above)."""
    n, m = den.sum(), den.size
    p = num.sum() / n
    return m / (m - 1) * float(np.sum((num - p * den) ** 2)) / n**2 / (p * (1 - p) / n)


def test_design_effect_bounds_at_the_boundary_and_for_single_images() -> None:
    den = np.array([4.0, 4.0, 2.0, 1.0])
    # A rate of 1: no variance to estimate; each patient counts once (sum n_i^2 / n).
    assert proportion_design_effect(den.copy(), den) == pytest.approx((den**2).sum() / den.sum())
    # One image per patient: images are independent, deff 1 whatever the outcomes.
    ones = np.ones(50)
    assert proportion_design_effect((np.arange(50) % 3 == 0).astype(float), ones) == 1.0


def test_obuchowski_variance_is_delong_for_single_images_and_matches_brute_force() -> None:
    s, y, pid = _patients(60, 3, seed=2)
    cells = make_cells(s, y)
    single = obuchowski_variance(cluster_cells(s, y, np.arange(s.size), cells))
    auc, var = T.delong_placements(cells)
    assert single[0] == pytest.approx(auc) and single[1] == pytest.approx(var, rel=1e-12)
    # Brute force from Obuchowski (1997): placement sums per patient, pairwise psi with ties 1/2.
    pos, neg = s[y == 1], s[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10 = psi.mean(axis=1)  # per positive image
    v01 = psi.mean(axis=0)  # per negative image
    theta = psi.mean()
    m, n = pos.size, neg.size
    pats = np.unique(pid)
    m_i = np.array([np.sum((pid == k) & (y == 1)) for k in pats])
    n_i = np.array([np.sum((pid == k) & (y == 0)) for k in pats])
    s10 = np.array([v10[pid[y == 1] == k].sum() for k in pats]) - m_i * theta
    s01 = np.array([v01[pid[y == 0] == k].sum() for k in pats]) - n_i * theta
    i10, i01, i_all = (m_i > 0).sum(), (n_i > 0).sum(), pats.size
    expected = (
        i10 / ((i10 - 1) * m) * (s10 @ s10) / m
        + i01 / ((i01 - 1) * n) * (s01 @ s01) / n
        + 2 * i_all / (i_all - 1) * (s10 @ s01) / (m * n)
    )
    got = obuchowski_variance(cluster_cells(s, y, pid, cells))
    assert got[0] == pytest.approx(theta) and got[1] == pytest.approx(expected, rel=1e-10)


def test_resampling_weights_draw_whole_units() -> None:
    rng = np.random.default_rng(3)
    w = bootstrap_weights(7, 5000, rng)
    assert (w.sum(axis=1) == 7).all()
    # Each unit is drawn Binomial(7, 1/7) times per resample.
    assert w.mean() == pytest.approx(1.0, abs=0.02) and w.var() == pytest.approx(6 / 7, abs=0.04)
    p = permutation_weights(9, 4, 3000, rng)
    assert set(np.unique(p)) == {0.0, 1.0} and (p.sum(axis=1) == 4).all()
    assert p.mean(axis=0) == pytest.approx(np.full(9, 4 / 9), abs=0.03)


def test_cluster_bootstrap_spread_matches_the_cluster_robust_standard_error() -> None:
    s, y, pid = _patients(300, 4, seed=4)
    cells = make_cells(s, y)
    cc = cluster_cells(s, y, pid, cells)
    boot = cluster_bootstrap_task(cc, 0.5, True, 3000, 0, (1,))["tpr"]
    pos = y == 1
    hit = (s[pos] >= 0.5).astype(float)
    fit = sm.OLS(hit, np.ones_like(hit)).fit(
        cov_type="cluster", cov_kwds={"groups": pid[pos], "use_correction": False}
    )
    assert boot.std() == pytest.approx(float(fit.bse[0]), rel=0.08)
    # Images as independent would claim about half that spread here (shared outcomes).
    assert boot.std() > 1.5 * np.sqrt(hit.mean() * (1 - hit.mean()) / hit.size)


def test_copied_cohort_with_its_patients_gives_the_original_score_intervals() -> None:
    """Each image copied 4x, the copies one patient: as much information as the original."""
    s, y, pid = _patients(120, 1, seed=5)
    g = np.where(np.arange(s.size) % 3 == 0, "B", "A")
    cfg = AuditConfig(bootstrap=200, seed=0)
    original = run_audit(y, s, {"g": g}, cfg).to_dict()
    copies = run_audit(
        np.repeat(y, 4), np.repeat(s, 4), {"g": np.repeat(g, 4)}, cfg, clusters=np.repeat(pid, 4)
    )
    copied = copies.to_dict()
    assert copied["config"]["resampling_unit"] == "patient" and copied["config"]["n_clusters"] == 120
    for metric in ("tpr", "fpr", "ppv", "auroc"):
        a = original["attributes"][0]["groups"][1]["metrics"][metric]
        b = copied["attributes"][0]["groups"][1]["metrics"][metric]
        assert b["design_effect"] == pytest.approx(4.0)
        assert b["ci"] == pytest.approx(a["ci"], abs=1e-9), metric
    for a, b in zip(
        original["attributes"][0]["comparisons"], copied["attributes"][0]["comparisons"], strict=True
    ):
        if a["metric"] in ("tpr", "fpr", "ppv", "npv"):
            assert b["difference"]["ci"] == pytest.approx(a["difference"]["ci"], abs=1e-9)
            assert b["p_value"] == pytest.approx(a["p_value"], abs=1e-6)
    # Without the patients the copies look four times as precise.
    naive = run_audit(np.repeat(y, 4), np.repeat(s, 4), {"g": np.repeat(g, 4)}, cfg).to_dict()
    w_naive = np.diff(naive["attributes"][0]["groups"][1]["metrics"]["tpr"]["ci"])[0]
    w_orig = np.diff(original["attributes"][0]["groups"][1]["metrics"]["tpr"]["ci"])[0]
    assert w_naive < 0.6 * w_orig


def test_single_image_patients_change_nothing() -> None:
    s, y, _ = _patients(150, 1, seed=6)
    g = np.where(np.arange(s.size) % 2 == 0, "A", "B")
    cfg = AuditConfig(bootstrap=100, seed=0, ci_method="percentile")
    a = run_audit(y, s, {"g": g}, cfg).to_dict()
    b = run_audit(y, s, {"g": g}, cfg, clusters=np.arange(s.size)[::-1]).to_dict()
    assert b["config"]["resampling_unit"] == "case" and b["config"]["n_clusters"] == s.size
    assert a["attributes"] == b["attributes"]


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_bootstrap_methods_permute_patients_for_every_test(method: str) -> None:
    s, y, pid = _patients(200, 3, seed=7)
    g = np.where(pid % 2 == 0, "A", "B")
    res = run_audit(
        y, s, {"g": g}, AuditConfig(bootstrap=100, seed=0, ci_method=method), clusters=pid
    ).to_dict()
    tests = {c["metric"]: c["test"] for c in res["attributes"][0]["comparisons"]}
    assert tests["tpr"] == tests["auroc"] == tests["brier"] == "permutation"
    assert tests["prevalence"] == "none"
    omni = {o["metric"]: o["test"] for o in res["attributes"][0]["omnibus"]}
    assert omni["tpr"] == "chi2_rao_scott"


def test_segmentation_patient_permutation_agrees_with_scipy_on_patient_means() -> None:
    """Equal cases per patient: permuting patients is scipy's permutation test of patient means."""
    rng = np.random.default_rng(8)
    a = rng.normal(0.80, 0.05, (25, 3)) + rng.normal(0, 0.05, (25, 1))
    b = rng.normal(0.77, 0.05, (30, 3)) + rng.normal(0, 0.05, (30, 1))
    ours = cluster_permutation_mean_test(
        (a.sum(axis=1), np.full(25, 3.0)), (b.sum(axis=1), np.full(30, 3.0)), 20000, np.random.default_rng(0)
    )
    ref = sps.permutation_test(
        (a.mean(axis=1), b.mean(axis=1)),
        lambda x, y: x.mean() - y.mean(),
        n_resamples=20000,
        rng=np.random.default_rng(1),
    )
    assert ours.statistic == pytest.approx(a.mean() - b.mean())
    assert ours.p_value == pytest.approx(ref.pvalue, abs=0.015)


def test_patient_level_coverage_where_image_level_fails() -> None:
    """Four images per patient sharing the outcome (benchmarks/coverage.py, a fast subset)."""
    rng = np.random.default_rng(9)
    c = cov.clustered_rate_coverage(0.9, 30, 1.0, 300, rng, boot=200)
    assert c["rate_patient"] >= 0.92 and c["diff_patient"] >= 0.92
    assert c["rate_image"] < 0.8 and c["diff_image"] < 0.8
    img, pat = cov.clustered_auroc_coverage(0.8, 20, 0.8, 200, rng)
    assert pat >= 0.92 and img < 0.88
    size_img, size_pat = cov.clustered_permutation_size(10, 0.8, 80, rng, n_perm=200)
    assert size_pat <= 0.1 and size_img > 0.15


def test_cli_cluster_column(tmp_path: Path) -> None:
    rng = np.random.default_rng(10)
    pid = np.repeat(np.arange(60), 2)
    rows = ["sop_instance_uid,patient_id,sex,label,score"] + [
        f"i{i},P{p},{'F' if p % 2 else 'M'},{int(p % 3 == 0)},{rng.random():.3f}" for i, p in enumerate(pid)
    ]
    csv = tmp_path / "preds.csv"
    csv.write_text("\n".join(rows) + "\n")
    base = ["audit", "--predictions", str(csv), "--attribute", "sex", "--bootstrap", "50", "--quiet"]
    res = cli.invoke([*base, "--out", str(tmp_path / "a")], columns=None)
    assert res.exit_code == 0, res.output
    config = json.loads((tmp_path / "a" / "results.json").read_text())["config"]
    assert config["cluster_column"] == "patient_id" and config["resampling_unit"] == "patient"
    assert config["n_clusters"] == 60
    res = cli.invoke([*base, "--cluster-column", "none", "--out", str(tmp_path / "b")], columns=None)
    config = json.loads((tmp_path / "b" / "results.json").read_text())["config"]
    assert config["cluster_column"] is None and config["resampling_unit"] == "image"
    res = cli.invoke([*base, "--cluster-column", "mrn", "--out", str(tmp_path / "c")], columns=None)
    assert res.exit_code == 2 and "--cluster-column mrn" in res.output and "preds.csv" in res.output
    assert not (tmp_path / "c" / "results.json").exists()
