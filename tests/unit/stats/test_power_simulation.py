"""The stated detectable difference has the stated power: exact sums and small simulations.

A fast subset of benchmarks/power.py. Simulated cells use 4000 cohorts: the Monte Carlo SE
of a power of 0.8 is 0.0063, so the +-0.05 tolerance is about 8 SE.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from fairaudit.stats import _score as S
from fairaudit.stats._power import (
    detectable_auroc_difference,
    detectable_rate_difference,
    exact_rate_power,
    newcombe_rejects,
)

from _helpers.benchmarks import load

bench = load("power")

REPS = 4000
INTERVALS = {"modified_wilson": S.modified_wilson, "clopper_pearson": S.clopper_pearson}


def _excludes_zero(
    xg: int, ng: int, xr: int, nr: int, alpha: float, interval: str = "modified_wilson"
) -> bool:
    """The audit's own difference interval (scalar _score functions) at level 1 - alpha excludes 0."""
    f, z = INTERVALS[interval], float(sps.norm.isf(alpha / 2))
    lo, hi = S.mover_difference(xg / ng, f(xg, ng, z), xr / nr, f(xr, nr, z))
    return lo > 0 or hi < 0


@pytest.mark.parametrize("interval", sorted(INTERVALS))
@pytest.mark.parametrize(("ng", "nr", "alpha"), [(9, 14, 0.05), (30, 12, 0.005), (120, 7, 0.01)])
def test_rejection_matrix_is_the_audit_interval(interval, ng, nr, alpha):
    matrix = newcombe_rejects(np.arange(ng + 1), ng, np.arange(nr + 1), nr, alpha, interval)
    for xg in range(ng + 1):
        for xr in range(nr + 1):
            assert matrix[xg, xr] == _excludes_zero(xg, ng, xr, nr, alpha, interval), (xg, xr)


@pytest.mark.parametrize("interval", sorted(INTERVALS))
def test_exact_power_equals_a_brute_force_double_loop(interval):
    ng, nr, alpha, p_ref = 7, 9, 0.05, 0.6
    for p_group in (0.05, 0.3, 0.6, 0.95, 1.0):
        expected = 0.0
        for xg in range(ng + 1):
            for xr in range(nr + 1):
                if _excludes_zero(xg, ng, xr, nr, alpha, interval):
                    expected += (
                        math.comb(ng, xg)
                        * p_group**xg
                        * (1 - p_group) ** (ng - xg)
                        * (math.comb(nr, xr) * p_ref**xr * (1 - p_ref) ** (nr - xr))
                    )
        assert exact_rate_power(p_group, p_ref, ng, nr, alpha, interval) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("p", "ng", "nr", "alpha"), [(0.5, 20, 200, 0.05), (0.9, 50, 50, 0.005), (0.97, 200, 200, 0.005)]
)
def test_stated_difference_has_exactly_the_power(p, ng, nr, alpha):
    out = detectable_rate_difference(p, ng, nr, alpha)
    assert out["method"] == "exact_binomial"
    for sign, d in ((1, out["increase"]), (-1, out["decrease"])):
        if d is not None:
            assert exact_rate_power(p + sign * d, p, ng, nr, alpha) == pytest.approx(0.8, abs=1e-5)


def _simulated_rate_power(p_group, p_ref, ng, nr, alpha, rng):
    xg, xr = rng.binomial(ng, p_group, REPS), rng.binomial(nr, p_ref, REPS)
    pairs, counts = np.unique(np.stack([xg, xr], axis=1), axis=0, return_counts=True)
    hits = sum(
        int(c)
        for (a, b), c in zip(pairs, counts, strict=True)
        if _excludes_zero(int(a), ng, int(b), nr, alpha)
    )
    return hits / REPS


@pytest.mark.parametrize(
    ("p", "ng", "nr", "alpha", "sign"),
    [
        (0.5, 20, 200, 0.05, 1),
        (0.9, 50, 50, 0.005, -1),
        (0.97, 200, 200, 0.005, -1),
        (0.9, 200, 200, 0.05, 1),
    ],
)
def test_simulated_rate_power_is_the_stated_power(p, ng, nr, alpha, sign):
    out = detectable_rate_difference(p, ng, nr, alpha)
    d = out["increase"] if sign > 0 else out["decrease"]
    power = _simulated_rate_power(p + sign * d, p, ng, nr, alpha, np.random.default_rng(20260))
    assert power == pytest.approx(0.8, abs=0.05)


@pytest.mark.parametrize(
    ("auc", "n", "alpha", "sign", "model"),
    [(0.5, 20, 0.05, 1, "binormal"), (0.9, 50, 0.005, -1, "exponential"), (0.7, 50, 0.05, 1, "exponential")],
)
def test_simulated_auroc_power_is_the_stated_power(auc, n, alpha, sign, model):
    cls = (n, 4 * n)
    out = detectable_auroc_difference(auc, cls, cls, alpha)
    d = out["increase"] if sign > 0 else out["decrease"]
    power = bench.auroc_power(auc + sign * d, auc, n, alpha, REPS, np.random.default_rng(7), model)
    assert power == pytest.approx(0.8, abs=0.05)


def test_auroc_decision_is_the_inverted_p_value():
    """benchmarks/power.py decides AUROC by the interval; the audit by mover_p_value < alpha."""
    rng = np.random.default_rng(3)
    cls = (20, 80)
    for _ in range(40):
        a_g, a_r = (float(a) for a in rng.uniform(0.55, 0.99, 2))

        def at(z, a_g=a_g, a_r=a_r):
            return S.mover_difference(a_g, S.auroc_score(a_g, *cls, z), a_r, S.auroc_score(a_r, *cls, z))

        p = S.mover_p_value(at, a_g - a_r)
        for alpha in (0.05, 0.005):
            if abs(p - alpha) > 1e-6:
                assert bench.auroc_rejects(a_g, cls, a_r, cls, alpha) == (p < alpha)


def test_clustered_stated_difference_is_what_attach_power_writes():
    """benchmarks/power.py states the detectable tpr decrease with patient clusters as the audit
    does: the same figure as attach_power on run_audit's results.json."""
    from fairaudit.stats import AuditConfig, run_audit
    from fairaudit.stats._power import attach_power

    cov = bench._coverage_module()
    rng = np.random.default_rng(5)
    g, r = (cov.patients_rates(0.8, 40, bench.CLUSTER_RHO, rng) for _ in range(2))
    _, d, deff = bench.clustered_tpr_row(g, r, True, 0.05, cov)
    s, y = np.concatenate([g[0], r[0]]), np.concatenate([g[1], r[1]])
    patient = np.concatenate([g[2], r[2] + g[2].max() + 1])
    groups = np.repeat(["b", "a"], [g[0].size, r[0].size])
    cfg = AuditConfig(bootstrap=50, seed=1, primary_metrics=("tpr",), workers=1)
    data = run_audit(y, s, {"site": groups}, cfg, clusters=patient, references={"site": "a"}).to_dict()
    attach_power(data)
    row = next(c for c in data["attributes"][0]["comparisons"] if c["metric"] == "tpr")
    assert row["adjusted_level"] == pytest.approx(0.95)
    assert row["min_detectable_difference"]["decrease"] == pytest.approx(d, rel=1e-9)
    group = next(x for x in data["attributes"][0]["groups"] if x["group"] == "b")
    assert group["metrics"]["tpr"]["design_effect"] == pytest.approx(deff) and deff > 1


def test_clustered_stated_difference_has_about_the_stated_power():
    """Fast subset of the patient-cluster block of benchmarks/power.py: 4 images per patient
    sharing the outcome with probability 0.5. At the decrease the audit states with patients as
    the unit its patient-level test has about 80 % power; at the decrease stated with images as
    independent cases (the design effect ignored) the power is far below."""
    cov = bench._coverage_module()
    rng = np.random.default_rng(10)
    k, p_ref = 50, 0.5
    stated = {"patient": [], "image": []}
    for _ in range(5):
        g, r = (cov.patients_rates(p_ref, k, bench.CLUSTER_RHO, rng) for _ in range(2))
        for unit in stated:
            stated[unit].append(bench.clustered_tpr_row(g, r, unit == "patient", 0.05, cov)[1])
    power = {}
    for unit, values in stated.items():
        d = float(np.median(values))
        hits = 0
        for _ in range(120):
            g = cov.patients_rates(p_ref - d, k, bench.CLUSTER_RHO, rng)
            r = cov.patients_rates(p_ref, k, bench.CLUSTER_RHO, rng)
            p = bench.clustered_tpr_row(g, r, True, 0.05, cov, state=False)[0]
            hits += p is not None and p < 0.05
        power[unit] = hits / 120
    assert power["patient"] == pytest.approx(0.8, abs=0.1), power
    assert power["image"] < 0.65, power
