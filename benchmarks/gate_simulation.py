"""Does the gate get stricter, not looser, with less data? A simulation by the audit's own functions.

Two groups of n cases each (prevalence 0.5), reference tpr 0.85, the other group's tpr
0.85 - gap, both fpr 0.10. Each simulated cohort goes through `fairaudit.stats.run_audit`
(whatever intervals main has) and `fairaudit.gate.apply_gate` with the policy
metrics = ["tpr"], max_abs_difference = 0.05, under both decide modes. Printed: P(outcome
== "pass") per size and gap over R cohorts, and whether the targets of docs/ci.md hold:

- gap 0.15 (three times the bound): P(pass) <= 0.10 at every size;
- gap 0: P(pass) does not fall as n grows (Monte Carlo slack: 2 standard errors).

    .venv/bin/python benchmarks/gate_simulation.py [--reps 200] [--sizes 30,60,120,240,480]
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Sequence

import numpy as np

log = logging.getLogger("bench.gate")

TPR_REFERENCE = 0.85
FPR = 0.10
BOUND = 0.05
GAPS = (0.0, 0.15)
DECIDES = ("no_evidence_of_harm", "evidence_of_fairness")


def cohort(n: int, gap: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, scores and group of 2n cases: group A (reference) and B, n each."""
    group = np.repeat(np.array(["A", "B"]), n)
    labels = (rng.random(2 * n) < 0.5).astype(np.int64)
    tpr = np.where(group == "A", TPR_REFERENCE, TPR_REFERENCE - gap)
    called = np.where(labels == 1, rng.random(2 * n) < tpr, rng.random(2 * n) < FPR)
    # Scores away from the 0.5 threshold: above it when the model calls the case positive.
    u = rng.random(2 * n)
    scores = np.where(called, 0.55 + 0.44 * u, 0.01 + 0.44 * u)
    return labels, np.round(scores, 4), group


def pass_rates(
    sizes: Sequence[int],
    gaps: Sequence[float] = GAPS,
    reps: int = 200,
    *,
    bootstrap: int = 200,
    seed: int = 0,
    decides: Sequence[str] = DECIDES,
    min_group_size: int = 30,
) -> dict[tuple[str, float, int], float]:
    """P(outcome == "pass") for each (decide, gap, n): one run_audit per cohort, every mode on it."""
    from fairaudit.gate import GatePolicy, apply_gate
    from fairaudit.stats import AuditConfig, run_audit

    rng = np.random.default_rng(seed)
    policies = {d: GatePolicy(metrics=("tpr",), max_abs_difference=BOUND, decide=d) for d in decides}
    passes = {(d, g, n): 0 for d in decides for g in gaps for n in sizes}
    for gap in gaps:
        for n in sizes:
            for r in range(reps):
                labels, scores, group = cohort(n, gap, rng)
                cfg = AuditConfig(
                    bootstrap=bootstrap,
                    permutations=bootstrap,
                    seed=int(rng.integers(2**31)),
                    min_group_size=min_group_size,
                    workers=1,
                )
                result = run_audit(labels, scores, {"grp": group}, cfg, references={"grp": "A"})
                for d, policy in policies.items():
                    passes[(d, gap, n)] += apply_gate(result, policy)["outcome"] == "pass"
                log.debug("gap %s n %d rep %d", gap, n, r)
    return {k: v / reps for k, v in passes.items()}


def _se(p: float, reps: int) -> float:
    # At p = 0 or 1 the binomial SE is 0; use the rule-of-three scale so slack is not zero.
    return math.sqrt(max(p * (1 - p), 1.0 / reps) / reps)


def targets(
    rates: dict[tuple[str, float, int], float], sizes: Sequence[int], reps: int, decide: str
) -> dict[str, bool]:
    """The issue's two targets for one decide mode, with 2 standard errors of Monte Carlo slack."""
    harm = [rates[(decide, 0.15, n)] for n in sizes]
    null = [rates[(decide, 0.0, n)] for n in sizes]
    strict = all(p <= 0.10 + 2 * _se(p, reps) for p in harm)
    monotone = all(
        b >= a - 2 * math.hypot(_se(a, reps), _se(b, reps)) for a, b in zip(null, null[1:], strict=False)
    )
    return {"gap 0.15: P(pass) <= 0.10 at every size": strict, "gap 0: P(pass) non-decreasing in n": monotone}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=200, help="simulated cohorts per cell (default 200)")
    parser.add_argument("--sizes", default="30,60,120,240,480", help="cases per group, comma-separated")
    parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples per audit")
    parser.add_argument("--min-group-size", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("fairaudit").setLevel(logging.WARNING)  # one line per audit otherwise
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    start = time.perf_counter()
    rates = pass_rates(
        sizes, reps=args.reps, bootstrap=args.bootstrap, seed=args.seed, min_group_size=args.min_group_size
    )
    took = time.perf_counter() - start
    print(
        f"P(gate outcome == pass), policy tpr max_abs_difference = {BOUND}; reference tpr {TPR_REFERENCE}, "
        f"prevalence 0.5; R = {args.reps} cohorts per cell, B = {args.bootstrap}, "
        f"min_group_size = {args.min_group_size} ({took:.0f} s)"
    )
    header = "| decide | true gap | " + " | ".join(f"n = {n}" for n in sizes) + " |"
    print(header)
    print("|" + "---|" * (len(sizes) + 2))
    for d in DECIDES:
        for gap in GAPS:
            cells = " | ".join(f"{rates[(d, gap, n)]:.3f}" for n in sizes)
            print(f"| {d} | {gap:.2f} | {cells} |")
    print()
    for d in DECIDES:
        for name, ok in targets(rates, sizes, args.reps, d).items():
            print(f"{d}: {name}: {'holds' if ok else 'DOES NOT HOLD'}")


if __name__ == "__main__":
    main()
