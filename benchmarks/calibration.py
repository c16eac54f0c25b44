"""Calibration metrics by group size, where the truth is known (issue 18, point 7).

Plug-in `ece` (the baseline) adds each bin's label noise to the error, so a perfectly
calibrated model gets a larger ECE in a small group than in a large one, and a bound on the
between-group ECE difference flags small groups for nothing. `squared_calibration_error`
(docs/statistics.md, "Calibration") removes that noise term without bias.

Populations (scores p ~ Beta(2, 3), outcomes y ~ Bernoulli(p), every draw independent):
- calibrated: the score is p, so every population calibration error is 0;
- miscalibrated: the score is min(p + 0.1, 1), the outcome still Bernoulli(p).
For each group size in {50, 100, 400}, `--reps` groups are drawn and each metric is
computed by fairaudit's own kernel (`MetricKernel`). Printed per size: mean and SD of ece
and of squared_calibration_error, beside the population value ("truth", from 2 million
draws); then the mean difference between a group of 50 and a group of 400 of the same
population (what an audit reports as group - reference), with its Monte Carlo standard
error, and how often the 50-case group's ece exceeds the 400-case group's by more than 0.05.
A third column, `kumar_var`, is Kumar et al.'s literal estimator (the bin's variance term
ybar (1 - ybar) / (n_b - 1) in place of the per-case one), for comparison only.

Usage: `.venv/bin/python benchmarks/calibration.py [--reps 2000] [--seed 0]` (about 10 s).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fairaudit.stats._cells import make_cells
from fairaudit.stats._metrics import ECE_BINS, MetricKernel, ece_bin_index

SIZES = (50, 100, 400)
SHIFT = 0.1
BETA = (2.0, 3.0)
ECE_BOUND = 0.05


def draw(rng: np.random.Generator, n: int, shift: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n cases: (score, label, true probability)."""
    p = rng.beta(*BETA, size=n)
    y = (rng.random(n) < p).astype(np.int64)
    return np.minimum(p + shift, 1.0), y, p


def kumar_var(s: np.ndarray, y: np.ndarray) -> float:
    """Kumar, Liang & Ma (2019)'s debiased estimator as printed: the variance term of each
    bin is ybar (1 - ybar) / (n_b - 1), which also subtracts the scores' spread in the bin."""
    b = ece_bin_index(s)
    nb = np.bincount(b, minlength=ECE_BINS).astype(float)
    sy = np.bincount(b, weights=y, minlength=ECE_BINS)
    ss = np.bincount(b, weights=s, minlength=ECE_BINS)
    ok = nb >= 2
    ybar, sbar = sy[ok] / nb[ok], ss[ok] / nb[ok]
    return float(np.sum(nb[ok] / s.size * ((ybar - sbar) ** 2 - ybar * (1 - ybar) / (nb[ok] - 1))))


def metrics(s: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(ece, squared_calibration_error, kumar_var) of one group, the first two by fairaudit."""
    c = make_cells(s, y)
    k = MetricKernel(c.u, 0.5, True)
    ece = k.point(c.pos, c.neg)["ece"]
    sq = float(k.squared_calibration_error(c.pos[None, :], c.neg[None, :])[0])
    return ece, sq, kumar_var(s, y)


def truth(rng: np.random.Generator, shift: float, n: int = 2_000_000) -> tuple[float, float]:
    """Population ece and squared calibration error: bin weights and E[score - p | bin]."""
    s, _, p = draw(rng, n, shift)
    b = ece_bin_index(s)
    w = np.bincount(b, minlength=ECE_BINS) / n
    gap = np.bincount(b, weights=s - p, minlength=ECE_BINS) / np.maximum(w * n, 1)
    return float(np.sum(w * np.abs(gap))), float(np.sum(w * gap**2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    names = ("ece", "squared_calibration_error", "kumar_var")
    print(f"scores ~ Beta{BETA}, y ~ Bernoulli(p); {args.reps} groups per size; seed {args.seed}")
    for label, shift in (("calibrated", 0.0), (f"miscalibrated (score = p + {SHIFT})", SHIFT)):
        t_ece, t_sq = truth(rng, shift)
        print(f"\n{label}: truth ece {t_ece:.4f}, squared_calibration_error {t_sq:.5f}")
        print(f"{'n':>5} " + " ".join(f"{m + ' mean (SD)':>36}" for m in names))
        vals: dict[int, np.ndarray] = {}
        for n in SIZES:
            vals[n] = np.array([metrics(*draw(rng, n, shift)[:2]) for _ in range(args.reps)])
            cells = " ".join(f"{v.mean():>24.5f} ({v.std(ddof=1):.5f})" for v in vals[n].T)
            print(f"{n:>5} {cells}")
        d = vals[50] - vals[400]  # independent groups: the audit's group - reference
        se = d.std(axis=0, ddof=1) / np.sqrt(args.reps)
        diffs = " ".join(f"{m} {d[:, i].mean():+.5f} (MC SE {se[i]:.5f})" for i, m in enumerate(names))
        print(f"mean difference 50 - 400: {diffs}")
        print(f"ece(50) - ece(400) > {ECE_BOUND}: {np.mean(d[:, 0] > ECE_BOUND):.1%} of pairs")
    print(f"\n{time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
