"""Does the stated detectable difference have the stated power? Simulation from known populations.

For each cell the true difference is set to the detectable difference that
`fairaudit.stats._power` states (80 % power at the decision level), cohorts are drawn,
and the audit's own test is run on each:

- rates: reference rate p in {0.5, 0.9, 0.97}, denominators n in {20, 50, 200} in the group
  and in the reference (and a block with the reference at 200 cases), decision level
  alpha in {0.05, 0.005}; group ~ Binomial(n, p +- d), reference ~ Binomial(n, p); the test
  is `newcombe_score`, i.e. `_score.mover_p_value` over Newcombe's hybrid score interval
  (modified Wilson limits), significant when p < alpha.
- AUROC: reference AUROC in {0.5, 0.9, 0.97}, n positives (and 4n negatives) per group,
  binormal scores (negatives N(0, 1), positives N(mu, 1)); the test is `auroc_score_mover`:
  the MOVER of the two Newcombe score intervals at the decision level excludes 0 (what
  `mover_p_value` < alpha means; the equivalence is checked in tests/unit/stats/test_power_simulation.py).
- tpr with patient clusters (--clustered-reps; 0 skips it): patients of 4 images that share the
  label and, with probability rho = 0.5, the model's outcome (`patients_rates` of
  benchmarks/coverage.py), as many negative patients as positive ones, reference tpr in
  {0.5, 0.9} x {50, 200} positive patients per group, alpha 0.05. The stated detectable decrease
  is `min_detectable_difference` (as `attach_power` computes it, with each group's design effect)
  on cohorts at no difference (the median over 200); cohorts are then drawn with the group at
  p_ref - d and decided by the test the audit runs with patients: `newcombe_score` on n / deff
  cases (`Analytic.compare` with the design effects of `design_effects`). Baseline: the decrease
  stated with images as independent cases (the design effect ignored), decided by the same
  patient-level test (half as many cohorts; its power is the summary's "old method" line).

Baseline in the same run: the method before this change, which stated the difference of
the arcsine test (Cohen's h) for rates and (z(0.975) + z(0.8)) x SE from the 95 % interval of
the difference for AUROC, both at the unadjusted alpha = 0.05, whatever level decided the
row; its simulated power at the decision level is printed beside.

Usage: `.venv/bin/python benchmarks/power.py [--reps 2000] [--seed 0] [--skip-auroc]
[--clustered-reps 800]`. Monte Carlo SE at power 0.8 with 2000 cohorts: 0.009 (800: 0.014).
A fast subset runs in tests/unit/stats/test_power_simulation.py.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
from scipy import stats as sps

from fairaudit.stats import _score as S
from fairaudit.stats._analytic import Analytic
from fairaudit.stats._cells import make_cells
from fairaudit.stats._clusters import cluster_cells
from fairaudit.stats._power import (
    DEFAULT_POWER,
    detectable_auroc_difference,
    detectable_rate_difference,
    min_detectable_difference,
)

RATES = (0.5, 0.9, 0.97)
SIZES = ((20, 20), (50, 50), (200, 200), (20, 200), (50, 200))
LEVELS = (0.05, 0.005)
AUROC_SIZES = (20, 50, 200)
TOLERANCE = 0.05
OLD_ALPHA = 0.05


# ----------------------------------------------------------------------------- the old method


def old_rate_difference(p_ref: float, n_group: int, n_ref: int) -> tuple[float | None, float | None]:
    """The arcsine (Cohen's h) detectable increase and decrease at alpha 0.05 (before this change)."""
    h = (sps.norm.isf(OLD_ALPHA / 2) + sps.norm.ppf(DEFAULT_POWER)) * math.sqrt(1 / n_group + 1 / n_ref)
    phi = 2 * math.asin(math.sqrt(p_ref))
    up = math.sin((phi + h) / 2) ** 2 - p_ref if phi + h <= math.pi else None
    down = p_ref - math.sin((phi - h) / 2) ** 2 if phi - h >= 0 else None
    return up, down


def old_auroc_difference(auc: float, group: tuple[int, int], reference: tuple[int, int]) -> float:
    """(z(0.975) + z(0.8)) x SE, SE from the 95 % MOVER interval of the difference at no difference."""
    z = S.z_of(0.95)
    lo, hi = S.mover_difference(auc, S.auroc_score(auc, *group, z), auc, S.auroc_score(auc, *reference, z))
    return float((z + sps.norm.ppf(DEFAULT_POWER)) * (hi - lo) / (2 * z))


# ----------------------------------------------------------------------------- rates


class RateTest:
    """The audit's `newcombe_score` p-value for (x_group, x_ref), memoised (it is a pure function)."""

    def __init__(self) -> None:
        self.cache: dict[tuple[int, int, int, int], float] = {}
        self.disagree: set[tuple[int, int, int, int, float]] = set()

    def check(self, xg: int, ng: int, xr: int, nr: int, alpha: float, rejected: bool) -> None:
        """Record outcomes where p < alpha and "the interval at 1 - alpha excludes 0" differ."""
        z = float(sps.norm.isf(alpha / 2))
        lo, hi = S.mover_difference(
            xg / ng, S.modified_wilson(xg, ng, z), xr / nr, S.modified_wilson(xr, nr, z)
        )
        if (lo > 0 or hi < 0) != rejected:
            self.disagree.add((xg, ng, xr, nr, alpha))

    def p_value(self, xg: int, ng: int, xr: int, nr: int) -> float:
        key = (xg, ng, xr, nr)
        if key not in self.cache:

            def at(z: float) -> S.Interval:
                return S.mover_difference(
                    xg / ng, S.modified_wilson(xg, ng, z), xr / nr, S.modified_wilson(xr, nr, z)
                )

            self.cache[key] = S.mover_p_value(at, xg / ng - xr / nr)
        return self.cache[key]

    def power(
        self,
        p_group: float,
        p_ref: float,
        ng: int,
        nr: int,
        alpha: float,
        reps: int,
        rng: np.random.Generator,
    ) -> float:
        xg = rng.binomial(ng, min(max(p_group, 0.0), 1.0), reps)
        xr = rng.binomial(nr, p_ref, reps)
        pairs, counts = np.unique(np.stack([xg, xr], axis=1), axis=0, return_counts=True)
        hits = 0
        for (a, b), c in zip(pairs, counts, strict=True):
            rejected = self.p_value(int(a), ng, int(b), nr) < alpha
            self.check(int(a), ng, int(b), nr, alpha, rejected)
            hits += int(c) * rejected
        return hits / reps


# ----------------------------------------------------------------------------- AUROC


def simulated_aucs(
    auc: float, n_pos: int, n_neg: int, reps: int, rng: np.random.Generator, model: str = "binormal"
) -> np.ndarray:
    """Empirical AUROCs of `reps` cohorts with true AUROC `auc`.

    binormal: negatives N(0, 1), positives N(mu, 1). exponential: negatives Exp(1), positives
    Exp(rate 1/auc - 1), the model under which Hanley & McNeil's variance is exact.
    """
    if model == "binormal":
        mu = math.sqrt(2.0) * float(sps.norm.ppf(auc))
        pos = rng.normal(mu, 1.0, (reps, n_pos))
        neg = rng.normal(0.0, 1.0, (reps, n_neg))
    else:
        pos = rng.exponential(1.0 / (1.0 / auc - 1.0), (reps, n_pos))
        neg = rng.exponential(1.0, (reps, n_neg))
    ranks = sps.rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    return (ranks[:, :n_pos].sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def auroc_rejects(
    a_g: float, group: tuple[int, int], a_r: float, reference: tuple[int, int], alpha: float
) -> bool:
    """`auroc_score_mover` at level alpha: the MOVER of the two score intervals excludes 0."""
    z = float(sps.norm.isf(alpha / 2))
    lo, hi = S.mover_difference(a_g, S.auroc_score(a_g, *group, z), a_r, S.auroc_score(a_r, *reference, z))
    return lo > 0 or hi < 0


def auroc_power(
    auc_g: float, auc_r: float, n: int, alpha: float, reps: int, rng: np.random.Generator, model: str
) -> float:
    cls = (n, 4 * n)
    ag = simulated_aucs(min(max(auc_g, 1e-9), 1 - 1e-9), *cls, reps, rng, model)
    ar = simulated_aucs(auc_r, *cls, reps, rng, model)
    return float(
        np.mean([auroc_rejects(float(g), cls, float(r), cls, alpha) for g, r in zip(ag, ar, strict=True)])
    )


# ----------------------------------------------------------------------------- patient clusters

CLUSTER_RHO = 0.5  # each image's outcome is the patient's shared one with probability rho
CLUSTER_RATES = (0.5, 0.9)  # the reference's true tpr
CLUSTER_PATIENTS = (50, 200)  # positive patients per group (4 images each; as many negative ones)
CLUSTER_ALPHA = 0.05  # one comparison: Holm's level for a primary family of one
CLUSTER_PILOTS = 200  # cohorts at no difference whose stated detectable decrease is taken


def _coverage_module() -> ModuleType:
    """benchmarks/coverage.py, for its cohorts of patients (`patients_rates`) and their counts."""
    spec = importlib.util.spec_from_file_location(
        "benchmark_coverage", Path(__file__).with_name("coverage.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def clustered_tpr_row(
    group: tuple[np.ndarray, ...],
    reference: tuple[np.ndarray, ...],
    clustered: bool,
    alpha: float,
    cov: ModuleType,
    state: bool = True,
) -> tuple[float | None, float | None, float]:
    """The audit's tpr comparison of two groups (scores, labels, patient) with the default score
    intervals: (the p-value of its test, the detectable decrease it states at `alpha`, the group's
    design effect). clustered: patients as the unit (the counts carry each group's design
    effect, as `_audit._prepare` builds them); else images as independent cases.

    The test is `Analytic.compare` (`newcombe_score` on n / deff cases, what `_audit._compare`
    runs); the stated difference is `min_detectable_difference` (what `attach_power` writes into
    results.json) on the group and comparison entries results.json holds."""
    closed = Analytic("score", 0.95)
    parts, entries = [], []
    for scores, labels, patient in (group, reference):
        cells = make_cells(scores, labels)
        counts = cov._counts(cells, cluster_cells(scores, labels, patient, cells), clustered)
        value = counts.tp / counts.n_pos
        estimate = closed.group("tpr", counts, cells, value, "")
        parts.append((counts, cells, value))
        entries.append({"n": cells.n, "n_positive": cells.n_pos, "metrics": {"tpr": estimate.to_dict()}})
    res = closed.compare("tpr", parts[0], parts[1], "")[2]
    deff = parts[0][0].design_effect("tpr")
    if not state:
        return res.p_value, None, deff
    row = {"metric": "tpr", "test": res.test, "p_value": res.p_value, "adjusted_level": 1.0 - alpha}
    stated = min_detectable_difference(row, entries[0], entries[1], alpha, 0.95)
    return res.p_value, stated.get("decrease"), deff


def clustered_power(
    p_ref: float,
    patients: int,
    reps: int,
    rng: np.random.Generator,
    cov: ModuleType,
    pilots: int | None = None,
) -> dict[str, float]:
    """Stated detectable tpr decrease (median over `pilots` cohorts at no difference) with patients
    and, the baseline, with images as the unit; and the rejection rate of the audit's patient-level
    test over `reps` cohorts (half as many for the baseline) whose group tpr is p_ref minus each.
    `d_at_alternative`: the median decrease the audit states on the cohorts at p_ref - d itself
    (where the group's design effect is estimated at its own rate)."""
    pilots = CLUSTER_PILOTS if pilots is None else pilots
    stated: dict[str, list[float]] = {"patient": [], "image": []}
    deffs = []
    for _ in range(pilots):
        g, r = (cov.patients_rates(p_ref, patients, CLUSTER_RHO, rng) for _ in range(2))
        for unit in stated:
            _, d, deff = clustered_tpr_row(g, r, unit == "patient", CLUSTER_ALPHA, cov)
            if d is not None:
                stated[unit].append(d)
            if unit == "patient":
                deffs.append(deff)
    out = {"deff": float(np.median(deffs))}
    for unit, values in stated.items():
        d = float(np.median(values))
        out[f"d_{unit}"] = d
        out[f"d_{unit}_lo"], out[f"d_{unit}_hi"] = (float(q) for q in np.quantile(values, [0.25, 0.75]))
        hits = 0
        n = reps if unit == "patient" else max(1, reps // 2)
        again = []
        for _ in range(n):
            g = cov.patients_rates(p_ref - d, patients, CLUSTER_RHO, rng)
            r = cov.patients_rates(p_ref, patients, CLUSTER_RHO, rng)
            p, d_again, _ = clustered_tpr_row(g, r, True, CLUSTER_ALPHA, cov, state=unit == "patient")
            hits += p is not None and p < CLUSTER_ALPHA
            if d_again is not None:
                again.append(d_again)
        out[f"power_{unit}"] = hits / n
        if unit == "patient":
            out["d_at_alternative"] = float(np.median(again)) if again else math.nan
    return out


def run_clustered(reps: int, rng: np.random.Generator, out: list[float], old: list[float]) -> None:
    cov = _coverage_module()
    print(
        f"\nPatient clusters: {cov.IMAGES_PER_PATIENT} images per patient sharing the outcome with probability"
        f" {CLUSTER_RHO}; tpr decrease, alpha {CLUSTER_ALPHA}; stated d: median [IQR] over {CLUSTER_PILOTS}"
        f" cohorts at no difference; power of the audit's patient-level test (newcombe_score on n / deff)"
        f" over {reps} cohorts at p_ref - d, and the median d the audit states on those cohorts (d at alt.);"
        f" baseline ({max(1, reps // 2)} cohorts): d stated with images as independent cases"
    )
    print(
        f"{'p_ref  pos. patients (images)  deff':<36} {'d (patients)':>22} {'power':>6} {'d at alt.':>9} | "
        f"{'d (images)':>22} {'power':>6}"
    )
    for p_ref in CLUSTER_RATES:
        for k in CLUSTER_PATIENTS:
            c = clustered_power(p_ref, k, reps, rng, cov)
            out.append(c["power_patient"])
            old.append(c["power_image"])
            label = f"{p_ref:<6} {k:>5} ({cov.IMAGES_PER_PATIENT * k:>4})          {c['deff']:5.2f}"
            flag = "" if abs(c["power_patient"] - DEFAULT_POWER) <= TOLERANCE else "  <-- outside +-0.05"
            print(
                f"{label:<36} {c['d_patient']:.3f} [{c['d_patient_lo']:.3f}, {c['d_patient_hi']:.3f}] "
                f"{c['power_patient']:6.3f} {c['d_at_alternative']:9.3f} | {c['d_image']:.3f} [{c['d_image_lo']:.3f}, {c['d_image_hi']:.3f}] "
                f"{c['power_image']:6.3f}{flag}"
            )


# ----------------------------------------------------------------------------- the grid


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _row(label: str, d: float | None, sim: float | None, d_old: float | None, sim_old: float | None) -> str:
    flag = "" if sim is None or abs(sim - DEFAULT_POWER) <= TOLERANCE else "  <-- outside +-0.05"
    return f"{label:<40} {_fmt(d):>7} {_fmt(sim):>7} | {_fmt(d_old):>7} {_fmt(sim_old):>7}{flag}"


def run_rates(
    test: RateTest, reps: int, rng: np.random.Generator, out: list[float], old: list[float]
) -> None:
    print(f"\nRates (newcombe_score), {reps} cohorts per cell; stated power {DEFAULT_POWER}")
    print(
        f"{'p_ref  n_group/n_ref  alpha  direction':<40} {'d':>7} {'power':>7} | {'d_old':>7} {'pow_old':>7}"
    )
    for alpha in LEVELS:
        for p in RATES:
            for ng, nr in SIZES:
                new = detectable_rate_difference(p, ng, nr, alpha)
                old_up, old_down = old_rate_difference(p, ng, nr)
                for name, sign, d, d_old in (
                    ("up", 1, new["increase"], old_up),
                    ("down", -1, new["decrease"], old_down),
                ):
                    sim = None if d is None else test.power(p + sign * d, p, ng, nr, alpha, reps, rng)
                    sim_old = (
                        None if d_old is None else test.power(p + sign * d_old, p, ng, nr, alpha, reps, rng)
                    )
                    if sim is not None:
                        out.append(sim)
                    if sim_old is not None:
                        old.append(sim_old)
                    print(_row(f"{p:<6} {ng:>4}/{nr:<4}      {alpha:<6} {name}", d, sim, d_old, sim_old))


def run_auroc(reps: int, rng: np.random.Generator, out: list[float], old: list[float], model: str) -> None:
    print(
        f"\nAUROC (auroc_score_mover), {model} scores, n positives and 4n negatives per group, {reps} cohorts"
    )
    print(f"{'auc_ref  n_pos  alpha  direction':<40} {'d':>7} {'power':>7} | {'d_old':>7} {'pow_old':>7}")
    for alpha in LEVELS:
        for auc in RATES:
            for n in AUROC_SIZES:
                cls = (n, 4 * n)
                new = detectable_auroc_difference(auc, cls, cls, alpha)
                d_old = old_auroc_difference(auc, cls, cls)
                for name, sign, d in (("up", 1, new["increase"]), ("down", -1, new["decrease"])):
                    feasible_old = 0 < auc + sign * d_old < 1
                    sim = None if d is None else auroc_power(auc + sign * d, auc, n, alpha, reps, rng, model)
                    sim_old = (
                        auroc_power(auc + sign * d_old, auc, n, alpha, reps, rng, model)
                        if feasible_old
                        else None
                    )
                    if sim is not None:
                        out.append(sim)
                    if sim_old is not None:
                        old.append(sim_old)
                    print(
                        _row(
                            f"{auc:<8} {n:>4}    {alpha:<6} {name}",
                            d,
                            sim,
                            d_old if feasible_old else None,
                            sim_old,
                        )
                    )


def _summary(name: str, values: list[float]) -> str:
    if not values:
        return f"{name}: no cells"
    arr = np.array(values)
    bad = int(np.sum(np.abs(arr - DEFAULT_POWER) > TOLERANCE))
    return (
        f"{name}: {arr.size} cells, median simulated power {np.median(arr):.3f}, "
        f"range [{arr.min():.3f}, {arr.max():.3f}], {bad} outside 0.8 +- {TOLERANCE}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-auroc", action="store_true")
    parser.add_argument(
        "--clustered-reps",
        type=int,
        default=800,
        help="cohorts per cell of the patient-cluster block (0: skip)",
    )
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    new: dict[str, list[float]] = {}
    old: dict[str, list[float]] = {}
    test = RateTest()
    run_rates(test, args.reps, rng, new.setdefault("rates", []), old.setdefault("rates", []))
    if not args.skip_auroc:
        for model in ("binormal", "exponential"):
            name = f"AUROC, {model}"
            run_auroc(args.reps, rng, new.setdefault(name, []), old.setdefault(name, []), model)
    if args.clustered_reps > 0:
        name = "tpr with patient clusters"
        run_clustered(args.clustered_reps, rng, new.setdefault(name, []), old.setdefault(name, []))
    print()
    for name in new:
        print(_summary(f"{name}, this method", new[name]))
        print(_summary(f"{name}, old method (baseline)", old[name]))
    print(
        f"newcombe_score p-values that disagree with the interval at the decision level: "
        f"{len(test.disagree)} outcome pairs, e.g. {sorted(test.disagree)[:3]} (x_group, n_group, x_ref, n_ref, alpha)"
    )
    print(f"{time.perf_counter() - start:.0f} s")
    outside = [v for values in new.values() for v in values if abs(v - DEFAULT_POWER) > TOLERANCE]
    print("targets met" if not outside else "TARGETS NOT MET")
    return 1 if outside else 0


if __name__ == "__main__":
    sys.exit(main())
