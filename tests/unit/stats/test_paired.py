"""Release comparison statistics checked against sklearn, scipy, statsmodels and definitions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import brier_score_loss, recall_score, roc_auc_score

from fairaudit.stats._paired import (
    compare_to_baseline,
    mcnemar_test,
    metrics_weighted,
    paired_delong,
    paired_test,
)


def _data(n: int = 300, seed: int = 0, noise: float = 0.3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s_new = np.clip(0.5 * y + rng.normal(0.25, 0.25, n), 0, 1).round(2)
    s_base = np.clip(s_new + rng.normal(0, noise, n), 0, 1).round(2)
    return y, s_new, s_base


def test_weighted_metrics_equal_sklearn_with_sample_weight():
    y, s, _ = _data()
    w = np.random.default_rng(1).integers(0, 4, size=(3, len(y))).astype(float)
    got = metrics_weighted(y, s, w, 0.5)
    for r in range(3):
        pred = (s >= 0.5).astype(int)
        assert got["tpr"][r] == pytest.approx(recall_score(y, pred, sample_weight=w[r]), abs=1e-12)
        assert got["tnr"][r] == pytest.approx(recall_score(1 - y, 1 - pred, sample_weight=w[r]), abs=1e-12)
        assert got["auroc"][r] == pytest.approx(roc_auc_score(y, s, sample_weight=w[r]), abs=1e-12)
        assert got["brier"][r] == pytest.approx(brier_score_loss(y, s, sample_weight=w[r]), abs=1e-12)


def _delong_by_definition(y, a, b):
    """The 1988 paper's formulas with the explicit m x n kernel (ties one half)."""
    y = y.astype(bool)

    def parts(s):
        psi = (s[y][:, None] > s[~y][None, :]) + 0.5 * (s[y][:, None] == s[~y][None, :])
        return psi.mean(), psi.mean(axis=1), psi.mean(axis=0)

    a1, v10a, v01a = parts(a)
    a2, v10b, v01b = parts(b)
    m, n = y.sum(), (~y).sum()
    s10 = np.cov(np.vstack([v10a, v10b]))
    s01 = np.cov(np.vstack([v01a, v01b]))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    return 2 * sps.norm.sf(abs(a1 - a2) / np.sqrt(var))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_paired_delong_equals_definition(seed):
    y, s_new, s_base = _data(200, seed)
    assert paired_delong(y, s_new, s_base).p_value == pytest.approx(
        _delong_by_definition(y, s_new, s_base), rel=1e-9
    )


def test_paired_delong_identical_models_p_one():
    y, s, _ = _data()
    assert paired_delong(y, s, s).p_value == 1.0


def test_paired_delong_variance_matches_bootstrap():
    y, s_new, s_base = _data(600, 3)
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(800):
        i = rng.integers(0, len(y), len(y))
        diffs.append(roc_auc_score(y[i], s_new[i]) - roc_auc_score(y[i], s_base[i]))
    z_boot = (roc_auc_score(y, s_new) - roc_auc_score(y, s_base)) / np.std(diffs)
    p_boot = 2 * sps.norm.sf(abs(z_boot))
    assert paired_delong(y, s_new, s_base).p_value == pytest.approx(p_boot, abs=0.03)


def test_mcnemar_tpr_is_exact_binomial_on_discordant_positives():
    y, s_new, s_base = _data(400, 4, noise=0.4)
    pos = y == 1
    pn, pb = s_new[pos] >= 0.5, s_base[pos] >= 0.5
    b, c = int((pn & ~pb).sum()), int((~pn & pb).sum())
    expected = sps.binomtest(b, b + c, 0.5).pvalue
    assert mcnemar_test("tpr", y, s_new, s_base, 0.5).p_value == pytest.approx(expected, rel=1e-9)
    neg = y == 0
    qn, qb = s_new[neg] < 0.5, s_base[neg] < 0.5
    b, c = int((qn & ~qb).sum()), int((~qn & qb).sum())
    assert mcnemar_test("fpr", y, s_new, s_base, 0.5).p_value == pytest.approx(
        sps.binomtest(b, b + c, 0.5).pvalue, rel=1e-9
    )


def test_brier_uses_wilcoxon_signed_rank():
    y, s_new, s_base = _data(150, 5)
    d = (s_new - y) ** 2 - (s_base - y) ** 2
    assert paired_test("brier", y, s_new, s_base, 0.5).p_value == pytest.approx(sps.wilcoxon(d).pvalue)


def _run(y, s_new, s_base, groups, seed=0, bootstrap=400):
    return compare_to_baseline(
        y,
        s_new,
        s_base,
        {"g": groups},
        {},
        threshold=0.5,
        bootstrap=bootstrap,
        ci_level=0.95,
        seed=seed,
        min_group_size=30,
    )


def test_same_model_has_zero_change_and_zero_gap_increase():
    y, s, _ = _data()
    groups = np.where(np.arange(len(y)) % 3 == 0, "B", "A")
    res = _run(y, s, s.copy(), groups)[0]
    assert res["reference"] == "A"
    for g in res["groups"]:
        for m, row in g["metrics"].items():
            assert row["change"]["value"] == 0 and row["change"]["ci"] == [0, 0], m
            if g["group"] == "B":
                assert row["disparity_increase"]["value"] == 0
                assert row["disparity_increase"]["ci"] == [0, 0]


def test_paired_interval_is_narrower_than_independent_intervals():
    """Pairing removes the shared case-to-case variation: the change is known better."""
    y, s_new, s_base = _data(400, 6, noise=0.05)
    groups = np.array(["A"] * len(y))
    row = _run(y, s_new, s_base, groups, bootstrap=600)[0]["groups"][0]["metrics"]["auroc"]
    paired_width = row["change"]["ci"][1] - row["change"]["ci"][0]
    rng = np.random.default_rng(1)
    a = [roc_auc_score(y[i], s_new[i]) for i in (rng.integers(0, 400, 400) for _ in range(300))]
    b = [roc_auc_score(y[i], s_base[i]) for i in (rng.integers(0, 400, 400) for _ in range(300))]
    unpaired = np.subtract(a, b)
    assert paired_width < 0.5 * (np.percentile(unpaired, 97.5) - np.percentile(unpaired, 2.5))


def test_gap_increase_detects_a_widened_gap_and_is_seeded():
    rng = np.random.default_rng(7)
    n = 800
    y = rng.integers(0, 2, n)
    groups = np.where(rng.random(n) < 0.5, "A", "B")
    s_base = np.clip(0.6 * y + rng.normal(0.2, 0.2, n), 0, 1)
    s_new = s_base.copy()
    hurt = (groups == "B") & (y == 1)
    s_new[hurt] = np.clip(s_new[hurt] - 0.35, 0, 1)  # the new model misses more positives of B
    res = _run(y, s_new, s_base, groups, seed=3)
    b = next(g for g in res[0]["groups"] if g["group"] == "B")["metrics"]["tpr"]
    assert b["disparity_increase"]["ci"][0] > 0.1
    assert b["p_value"] < 1e-6 and b["test"] == "mcnemar"
    again = _run(y, s_new, s_base, groups, seed=3)
    assert again == res


# ------------------------------------------------------------------ patients as the unit


def test_obuchowski_paired_equals_delong_with_one_case_per_patient():
    y, s_new, s_base = _data(200, 4)
    from fairaudit.stats._paired import paired_obuchowski

    got = paired_obuchowski(y, s_new, s_base, np.arange(len(y)))
    assert got.p_value == pytest.approx(_delong_by_definition(y, s_new, s_base), rel=1e-9)


def test_obuchowski_paired_of_copies_equals_delong_of_the_originals():
    """Every case copied 3 times, the copies one patient: the same information, so the
    clustered variance gives DeLong's p-value on the originals (image-level DeLong on the
    copies would be three times as confident)."""
    from fairaudit.stats._paired import paired_obuchowski

    y, s_new, s_base = _data(150, 5)
    rep = np.repeat(np.arange(len(y)), 3)
    got = paired_obuchowski(y[rep], s_new[rep], s_base[rep], rep)
    assert got.p_value == pytest.approx(_delong_by_definition(y, s_new, s_base), rel=1e-9)
    assert paired_delong(y[rep], s_new[rep], s_base[rep]).p_value < got.p_value


def test_patient_sign_flip_is_exact_mcnemar_with_one_discordant_case_per_patient():
    """Patients of two positives, at most one of them discordant: each patient's balance is
    -1, 0 or +1, and the sign-flip test is the exact (binomial) McNemar test."""
    from statsmodels.stats.contingency_tables import mcnemar

    from fairaudit.stats._paired import mcnemar_patients

    rng = np.random.default_rng(6)
    k = 40
    y = np.ones(2 * k, dtype=int)
    s_new = np.full(2 * k, 0.9)
    s_base = np.full(2 * k, 0.9)
    kind = rng.choice(3, k, p=[0.7, 0.15, 0.15])  # 0: concordant, 1: new misses, 2: baseline misses
    s_new[2 * np.flatnonzero(kind == 1)] = 0.1
    s_base[2 * np.flatnonzero(kind == 2)] = 0.1
    units = np.repeat(np.arange(k), 2)
    got = mcnemar_patients("tpr", y, s_new, s_base, 0.5, units, np.random.default_rng(0))
    b, c = int((kind == 2).sum()), int((kind == 1).sum())  # new-only hits, baseline-only hits
    expected = mcnemar([[k - b - c, b], [c, k]], exact=True).pvalue
    assert (b + c) <= 16  # enumerated, so exact
    assert got.p_value == pytest.approx(expected, rel=1e-12)


def test_sign_flip_p_enumerated_matches_by_hand_and_random_flips_agree():
    from fairaudit.stats._paired import sign_flip_p

    d = np.array([3.0, -1.0, 2.0])
    # 8 sign patterns, |sum| >= 4: (+,-,+) -> 4 and (-,+,-) -> -4, (+,+,+) 6, (-,-,-) -6
    assert sign_flip_p(d, np.random.default_rng(0)) == pytest.approx(4 / 8)
    big = np.random.default_rng(1).normal(0.3, 1.0, 40)
    signs = np.random.default_rng(2).choice((-1.0, 1.0), size=(200_000, big.size))
    reference = float(np.mean(np.abs(signs @ big) >= abs(big.sum())))
    assert sign_flip_p(big, np.random.default_rng(3)) == pytest.approx(reference, abs=0.01)


def test_patient_bootstrap_of_copies_equals_the_singleton_patient_bootstrap():
    """A patient drawn brings all its cases: copies that form one patient give the
    replicates of the original cases drawn as patients (same generator)."""
    from fairaudit.stats._paired import group_bootstrap

    y, s_new, s_base = _data(80, 7)
    rep = np.repeat(np.arange(len(y)), 4)
    a = group_bootstrap(y, s_new, s_base, 0.5, 300, np.random.default_rng(9), units=np.arange(len(y)))
    b = group_bootstrap(y[rep], s_new[rep], s_base[rep], 0.5, 300, np.random.default_rng(9), units=rep)
    for m in ("tpr", "fpr", "auroc", "brier"):
        np.testing.assert_allclose(b.boot_new[m], a.boot_new[m], rtol=1e-12, equal_nan=True)
        np.testing.assert_allclose(b.boot_base[m], a.boot_base[m], rtol=1e-12, equal_nan=True)


def test_compare_to_baseline_uses_patients_only_where_a_patient_has_several_cases():
    y, s_new, s_base = _data(240, 8)
    groups = np.where(np.arange(240) < 120, "A", "B")
    clusters = np.arange(240)
    clusters[:120] = np.arange(120) // 3  # A: patients of 3 cases; B: one case each
    out = compare_to_baseline(
        y, s_new, s_base, {"g": groups}, {}, threshold=0.5, bootstrap=200, ci_level=0.95, seed=0,
        min_group_size=30, clusters=clusters,
    )  # fmt: skip
    by = {g["group"]: g for g in out[0]["groups"]}
    assert by["A"]["unit"] == "patient" and by["B"]["unit"] == "case"
    assert by["A"]["metrics"]["tpr"]["test"] == "mcnemar_patients"
    assert by["A"]["metrics"]["auroc"]["test"] == "obuchowski_paired"
    assert by["A"]["metrics"]["brier"]["test"] == "wilcoxon_patients"
    assert by["B"]["metrics"]["tpr"]["test"] == "mcnemar"
    plain = compare_to_baseline(
        y, s_new, s_base, {"g": groups}, {}, threshold=0.5, bootstrap=200, ci_level=0.95, seed=0,
        min_group_size=30,
    )  # fmt: skip
    assert {g["group"]: g for g in plain[0]["groups"]}["B"]["metrics"] == by["B"]["metrics"]
