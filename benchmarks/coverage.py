"""Coverage of fairaudit's intervals, and size of its tests, where the truth is known.

Rates, differences and ratios: exact coverage, by summing the binomial probabilities of
every outcome (no Monte Carlo error), over p in {0.5, 0.9, 0.97, 0.99} x n in
{10, 20, 50, 100, 400}. The difference and the ratio compare a group with a reference of
the same size and the same rate p (so the truth is 0 and 1), and the size of the test that
inverts the difference interval is 1 - its coverage there. Baseline in the same run: the
percentile bootstrap (its limit as B grows, computed from binomial quantiles), the default
before fairaudit 0.2.

AUROC: simulated binormal cohorts (negatives N(0, 1), positives N(mu, 1), 4 negatives per
positive), AUROC in {0.7, 0.9, 0.97} x positives in {10, 30, 100}: coverage of the group
interval, and the rejection rate of the AUROC comparison at equal AUROC for a group of
10 positives / 40 negatives against a reference of 60 / 240 (target <= 0.06).

Usage: `.venv/bin/python benchmarks/coverage.py [--reps 2000] [--seed 0]`. Figures in
benchmarks/README.md; a fast subset runs in tests/test_coverage.py.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
from scipy import stats as sps

from fairaudit.stats import _score as S

RATES = (0.5, 0.9, 0.97, 0.99)
SIZES = (10, 20, 50, 100, 400)
AUROCS = (0.7, 0.9, 0.97)
POSITIVES = (10, 30, 100)
TARGET = 0.93


def support(n: int, p: float, width: float = 8.0) -> tuple[np.ndarray, np.ndarray]:
    """Outcomes x of Binomial(n, p) holding all but ~1e-15 of the mass, with their pmf."""
    sd = math.sqrt(n * p * (1 - p))
    lo = max(0, int(n * p - width * sd) - 2)
    hi = min(n, int(n * p + width * sd) + 2)
    x = np.arange(lo, hi + 1)
    return x, sps.binom.pmf(x, n, p)


def percentile_rate(x: int, n: int, z: float) -> S.Interval:
    """The percentile bootstrap's interval of x/n as B grows: binomial quantiles of x*/n."""
    a = 2 * sps.norm.sf(z)
    q = sps.binom.ppf([a / 2, 1 - a / 2], n, x / n)
    return (float(q[0]) / n, float(q[1]) / n)


def rate_coverage(p: float, n: int, interval) -> float:
    z = S.z_of(0.95)
    x, w = support(n, p)
    hit = [lo <= p <= hi for lo, hi in (interval(int(k), n, z) for k in x)]
    return float(np.sum(w[np.array(hit)]))


def pair_coverage(p: float, n: int, kind: str, method: str) -> float:
    """Exact coverage of the difference (truth 0) or ratio (truth 1) of two groups at rate p."""
    z = S.z_of(0.95)
    x, w = support(n, p)
    ints = {
        int(k): (S.modified_wilson(k, n, z) if method == "score" else percentile_rate(int(k), n, z))
        for k in x
    }
    total = 0.0
    for i, a in enumerate(x):
        for j, b in enumerate(x):
            a, b = int(a), int(b)
            if kind == "difference":
                if method == "score":
                    lo, hi = S.mover_difference(a / n, ints[a], b / n, ints[b])
                else:  # the bootstrap difference: quantiles of a difference of binomials
                    lo, hi = _percentile_difference(a, b, n, z)
                ok = lo <= 0 <= hi
            else:
                if a == 0 and b == 0:
                    ok = False  # 0 / 0: no interval, counted as a miss
                elif method == "score":
                    lo, hi = S.koopman_ratio(a, n, b, n, z)
                    ok = lo <= 1 <= hi
                else:
                    lo, hi = _percentile_ratio(a, b, n, z)
                    ok = lo <= 1 <= hi
            if ok:
                total += w[i] * w[j]
    return total


_RNG = np.random.default_rng(12345)
_DRAWS = 4000


def _percentile_difference(a: int, b: int, n: int, z: float) -> S.Interval:
    d = (_RNG.binomial(n, a / n, _DRAWS) - _RNG.binomial(n, b / n, _DRAWS)) / n
    q = np.quantile(d, [sps.norm.sf(z), sps.norm.cdf(z)])
    return float(q[0]), float(q[1])


def _percentile_ratio(a: int, b: int, n: int, z: float) -> S.Interval:
    with np.errstate(divide="ignore", invalid="ignore"):
        r = _RNG.binomial(n, a / n, _DRAWS) / _RNG.binomial(n, b / n, _DRAWS)
    r = r[np.isfinite(r)]
    if r.size < _DRAWS / 2:
        return (math.nan, math.nan)
    q = np.quantile(r, [sps.norm.sf(z), sps.norm.cdf(z)])
    return float(q[0]), float(q[1])


def binormal(auc: float, n_pos: int, n_neg: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    mu = math.sqrt(2) * sps.norm.ppf(auc)
    return rng.normal(mu, 1.0, n_pos), rng.normal(0.0, 1.0, n_neg)


def empirical_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    ranks = sps.rankdata(np.concatenate([pos, neg]))
    return float((ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2) / (pos.size * neg.size))


def delong_variance(pos: np.ndarray, neg: np.ndarray) -> float:
    """DeLong's variance (placement values), the baseline interval's ingredient."""
    v10 = (
        np.searchsorted(np.sort(neg), pos, side="left") + np.searchsorted(np.sort(neg), pos, side="right")
    ) / (2 * neg.size)
    v01 = 1 - (
        np.searchsorted(np.sort(pos), neg, side="left") + np.searchsorted(np.sort(pos), neg, side="right")
    ) / (2 * pos.size)
    return float(v10.var(ddof=1) / pos.size + v01.var(ddof=1) / neg.size)


def auroc_coverage(auc: float, n_pos: int, reps: int, rng: np.random.Generator) -> tuple[float, float]:
    """(fairaudit's score interval, Wald DeLong baseline) coverage of the true AUROC."""
    z = S.z_of(0.95)
    hit = base = 0
    for _ in range(reps):
        pos, neg = binormal(auc, n_pos, 4 * n_pos, rng)
        a = empirical_auc(pos, neg)
        lo, hi = S.auroc_score(a, n_pos, 4 * n_pos, z)
        hit += lo <= auc <= hi
        half = z * math.sqrt(delong_variance(pos, neg))
        base += a - half <= auc <= a + half
    return hit / reps, base / reps


def auroc_size(auc: float, reps: int, rng: np.random.Generator) -> tuple[float, float]:
    """Rejection rate at equal AUROC, 10/40 against 60/240: (fairaudit, DeLong z test)."""
    z = S.z_of(0.95)
    rej = base = 0
    for _ in range(reps):
        p1, n1 = binormal(auc, 10, 40, rng)
        p2, n2 = binormal(auc, 60, 240, rng)
        a1, a2 = empirical_auc(p1, n1), empirical_auc(p2, n2)

        def diff_at(zz: float, a1: float = a1, a2: float = a2) -> S.Interval:
            return S.mover_difference(a1, S.auroc_score(a1, 10, 40, zz), a2, S.auroc_score(a2, 60, 240, zz))

        rej += S.mover_p_value(diff_at, a1 - a2) < 0.05
        var = delong_variance(p1, n1) + delong_variance(p2, n2)
        base += var > 0 and abs(a1 - a2) / math.sqrt(var) > z
    return rej / reps, base / reps


def range_contains_zero(n: int, reps: int, rng: np.random.Generator, groups: int = 3) -> tuple[float, float]:
    """Share of audits of `groups` equal groups (tpr 0.8, n positives each) whose range summary
    (max - min) interval contains 0: (fairaudit's simultaneous interval, bootstrap of max - min)."""
    from fairaudit.stats import AuditConfig, run_audit

    hit = base = 0
    for _ in range(reps):
        y = np.ones(groups * n, dtype=int)
        s = (rng.random(groups * n) < 0.8).astype(float)
        g = np.repeat([f"g{i}" for i in range(groups)], n)
        # Negatives so that every metric is defined; they do not enter tpr.
        y = np.concatenate([y, np.zeros(groups * n, dtype=int)])
        s = np.concatenate([s, (rng.random(groups * n) < 0.2).astype(float)])
        g = np.concatenate([g, g])
        cfg = AuditConfig(bootstrap=200, permutations=19, seed=int(rng.integers(1 << 30)))
        hit += run_audit(y, s, {"a": g}, cfg).attributes[0].summary["tpr"].max_difference.ci[0] <= 0
        # Baseline: the percentile bootstrap of max - min (the summary before schema 2).
        rates = [s[(g == f"g{i}") & (y == 1)].mean() for i in range(groups)]
        boot = np.array([rng.binomial(n, r, 2000) / n for r in rates])
        base += np.quantile(boot.max(axis=0) - boot.min(axis=0), 0.025) <= 0
    return hit / reps, base / reps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=2000, help="simulated cohorts per AUROC cell")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    worst: dict[str, float] = {}
    out = sys.stdout.write

    out("\nRates (exact coverage of the 95% interval; baseline: percentile bootstrap, B -> infinity)\n")
    out(
        f"{'p':>5} {'n':>4} | {'mod. Wilson':>11} {'boot':>6} | {'Newcombe diff':>13} {'boot':>6} | {'Koopman ratio':>13} {'boot':>6}\n"
    )
    for p in RATES:
        for n in SIZES:
            w = rate_coverage(p, n, S.modified_wilson)
            wb = rate_coverage(p, n, percentile_rate)
            d = pair_coverage(p, n, "difference", "score")
            db = pair_coverage(p, n, "difference", "percentile")
            r = pair_coverage(p, n, "ratio", "score")
            rb = pair_coverage(p, n, "ratio", "percentile")
            for key, val in (("rate", w), ("difference", d), ("ratio", r)):
                worst[key] = min(worst.get(key, 1.0), val)
            out(f"{p:>5} {n:>4} | {w:11.3f} {wb:6.3f} | {d:13.3f} {db:6.3f} | {r:13.3f} {rb:6.3f}\n")

    out(f"\nAUROC (95% interval, {args.reps} binormal cohorts per cell, 4 negatives per positive)\n")
    out(f"{'AUROC':>5} {'pos':>4} | {'score':>6} {'Wald DeLong':>11}\n")
    for auc in AUROCS:
        for m in POSITIVES:
            c, b = auroc_coverage(auc, m, args.reps, rng)
            worst["auroc"] = min(worst.get("auroc", 1.0), c)
            out(f"{auc:>5} {m:>4} | {c:6.3f} {b:11.3f}\n")

    out("\nAUROC comparison at equal AUROC, 10/40 vs 60/240: rejection rate at nominal 0.05\n")
    out(f"{'AUROC':>5} | {'fairaudit':>9} {'DeLong z':>8}\n")
    size = 0.0
    for auc in (0.9, 0.97, 0.99):
        r, b = auroc_size(auc, args.reps, rng)
        size = max(size, r)
        out(f"{auc:>5} | {r:9.3f} {b:8.3f}\n")

    out("\nRange summary (max - min of tpr over 3 equal groups) whose interval contains 0, target >= 0.90\n")
    out(f"{'positives':>9} | {'fairaudit':>9} {'bootstrap of max - min':>22}\n")
    contains = 1.0
    for n in (30, 100):
        c, b = range_contains_zero(n, max(50, args.reps // 10), rng)
        contains = min(contains, c)
        out(f"{n:>9} | {c:9.3f} {b:22.3f}\n")

    out(f"\nWorst coverage (target >= {TARGET}): " + ", ".join(f"{k} {v:.3f}" for k, v in worst.items()))
    out(f"; largest AUROC test size {size:.3f} (target <= 0.06); {time.perf_counter() - t0:.0f} s\n")
    out(f"range interval contains 0 at least {contains:.3f} of the time (target >= 0.90)\n")
    ok = all(v >= TARGET for v in worst.values()) and size <= 0.06 and contains >= 0.90
    out("targets met\n" if ok else "TARGETS NOT MET\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
