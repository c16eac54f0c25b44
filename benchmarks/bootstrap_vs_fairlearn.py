"""Bootstrap speed: fairaudit's vectorized engine against fairlearn's MetricFrame(n_boot=...).

Both run in this one process on the same 100,000 rows in 8 groups. fairlearn recomputes
tpr, fpr and auroc per group with scikit-learn for each resample; fairaudit computes all
15 classification metrics per group (and permutation tests) from cell counts. The script
prints seconds per resample for each, their ratio (target: >= 100x), and the wall time of
a complete audit with B = 10,000 (all metrics, intervals and tests; target: <= 30 s).
Then patient-level resampling: the same audit of 100,000 images of 30,000 patients with
whole patients drawn (`clusters=`), against the image-level audit of the same rows in the
same run (target: <= 2x), for the default score intervals and for the percentile bootstrap.

    .venv/bin/python benchmarks/bootstrap_vs_fairlearn.py [--n 100000] [--fairlearn-boot 20]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import time
from functools import partial

import numpy as np

log = logging.getLogger("bench")


def make_data(n: int, groups: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, n)
    y = (rng.random(n) < 0.3).astype(int)
    logit = rng.normal(0.0, 1.0, n) + (1.0 + 0.15 * g) * y - 1.0
    s = np.round(1.0 / (1.0 + np.exp(-logit)), 6)
    return y, s, np.array([f"g{i}" for i in g])


def make_patients(n: int, patients: int, groups: int, seed: int = 1) -> tuple[np.ndarray, ...]:
    """Images of `patients` patients (a group and a random effect per patient)."""
    rng = np.random.default_rng(seed)
    pid = rng.integers(0, patients, n)
    g_pat = rng.integers(0, groups, patients)
    effect = rng.normal(0.0, 0.8, patients)
    y = (rng.random(n) < 0.3).astype(int)
    logit = effect[pid] + rng.normal(0.0, 0.6, n) + (1.0 + 0.15 * g_pat[pid]) * y - 1.0
    s = np.round(1.0 / (1.0 + np.exp(-logit)), 6)
    return y, s, np.array([f"g{i}" for i in g_pat[pid]]), pid


def patient_level_seconds(n: int, patients: int, groups: int, b: int, method: str) -> tuple[float, float]:
    """(image-level, patient-level) wall time of the same audit, in this process."""
    from fairaudit.stats import AuditConfig, run_audit

    y, s, g, pid = make_patients(n, patients, groups)
    times = []
    for clusters in (None, pid):
        t0 = time.perf_counter()
        run_audit(y, s, {"group": g}, AuditConfig(bootstrap=b, seed=0, ci_method=method), clusters=clusters)
        times.append(time.perf_counter() - t0)
    return times[0], times[1]


def _tpr(y, s):
    from sklearn.metrics import recall_score

    return recall_score(y, s >= 0.5)


def _fpr(y, s):
    from fairlearn.metrics import false_positive_rate

    return false_positive_rate(y, s >= 0.5)


def fairlearn_seconds(y, s, g, n_boot: int) -> float:
    """MetricFrame time with n_boot resamples minus the time without: seconds per resample."""
    from fairlearn.metrics import MetricFrame
    from sklearn.metrics import roc_auc_score

    metrics = {"tpr": _tpr, "fpr": _fpr, "auroc": roc_auc_score}
    make = partial(MetricFrame, metrics=metrics, y_true=y, y_pred=s, sensitive_features=g)
    t0 = time.perf_counter()
    make()
    base = time.perf_counter() - t0
    t0 = time.perf_counter()
    make(n_boot=n_boot, ci_quantiles=[0.025, 0.975], random_state=0)
    boot = time.perf_counter() - t0
    return max(boot - base, 1e-9) / n_boot


def fairaudit_seconds(y, s, g, b_small: int, b_large: int, method: str = "percentile") -> tuple[float, float]:  # noqa: E501
    """(seconds per resample, wall time at b_large) of a full fairaudit audit."""
    from fairaudit.stats import AuditConfig, run_audit

    times = {}
    for b in (b_small, b_large):
        t0 = time.perf_counter()
        run_audit(y, s, {"group": g}, AuditConfig(bootstrap=b, seed=0, ci_method=method))
        times[b] = time.perf_counter() - t0
    per = max(times[b_large] - times[b_small], 1e-9) / (b_large - b_small)
    return per, times[b_large]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--groups", type=int, default=8)
    ap.add_argument("--fairlearn-boot", type=int, default=20)
    ap.add_argument("--b", type=int, default=10_000, help="B of the full fairaudit audit")
    ap.add_argument("--patients", type=int, default=30_000, help="patients of the patient-level run")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("fairaudit").setLevel(logging.WARNING)
    y, s, g = make_data(args.n, args.groups)
    log.info(
        "machine: %s, %d CPUs, Python %s",
        platform.processor() or platform.machine(),
        os.cpu_count(),
        platform.python_version(),
    )
    log.info("data: %d rows, %d groups; metrics tpr, fpr, auroc", args.n, args.groups)
    fl = fairlearn_seconds(y, s, g, args.fairlearn_boot)
    log.info("fairlearn MetricFrame (n_boot=%d): %.4f s per resample", args.fairlearn_boot, fl)
    fa, wall = fairaudit_seconds(y, s, g, 1000, args.b)
    log.info("fairaudit run_audit (all 15 metrics + tests): %.6f s per resample", fa)
    log.info("ratio fairlearn / fairaudit seconds per resample: %.0fx (target >= 100x)", fl / fa)
    log.info(
        "fairaudit full audit, B = %d (all metrics, intervals, tests): %.1f s (target <= 30 s)", args.b, wall
    )
    t0 = time.perf_counter()
    from fairaudit.stats import AuditConfig, run_audit

    run_audit(y, s, {"group": g}, AuditConfig(bootstrap=args.b, seed=0, ci_method="bca"))
    log.info("fairaudit full audit, B = %d, BCa intervals: %.1f s", args.b, time.perf_counter() - t0)
    for method in ("score", "percentile"):
        image, patient = patient_level_seconds(args.n, args.patients, args.groups, args.b, method)
        log.info(
            "patient-level (%d images of %d patients, B = %d, %s): images %.1f s, patients %.1f s, "
            "ratio %.2fx (target <= 2x)",
            args.n, args.patients, args.b, method, image, patient, patient / image,
        )  # fmt: skip


if __name__ == "__main__":
    main()
