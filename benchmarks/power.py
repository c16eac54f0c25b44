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

Baseline in the same run: the method before this change, which stated the difference of
the arcsine test (Cohen's h) for rates and (z(0.975) + z(0.8)) x SE from the 95 % interval of
the difference for AUROC, both at the unadjusted alpha = 0.05, whatever level decided the
row; its simulated power at the decision level is printed beside.

Usage: `.venv/bin/python benchmarks/power.py [--reps 2000] [--seed 0]`. Monte Carlo SE at
power 0.8 with 2000 cohorts: 0.009. A fast subset runs in tests/unit/stats/test_power_simulation.py.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
from scipy import stats as sps

from fairaudit.stats import _score as S
from fairaudit.stats._power import DEFAULT_POWER, detectable_auroc_difference, detectable_rate_difference

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
    return 1 if outside else 0


if __name__ == "__main__":
    sys.exit(main())
