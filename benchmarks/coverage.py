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

Patient-level resampling: cohorts of patients with 4 images each that share the patient's
label and, with probability rho, the model's outcome (rho = 1: all four images right or all
wrong; the rest independent draws with the same rate), or (AUROC) a patient effect on the
score. Coverage of the tpr interval, of the difference of two equal groups' tpr (its test's
size is 1 - that), of the AUROC interval and of the percentile bootstrap of tpr, each with
images as the unit (the baseline: what fairaudit did before) and with patients (the
percentile bootstrap is shown, not held to the target: near rates of 1 it undercovers with
either unit, as the rates table shows for images, which is why score intervals are the
default); and the
size of the permutation test of the Brier difference with images and with patients
permuted (target <= 0.06); and the coverage of brier's betting interval betting on images
and on patients (AUROC 0.8 and 0.99, a patient effect on the score).

Mean metrics (brier, auprc, squared_calibration_error, ece) with the default score method:
brier's betting interval, squared_calibration_error's bootstrap Wald and auprc's logit
interval (fairaudit/stats/_mean_intervals.py), ece's percentile bootstrap, and as the
baseline in the same run the percentile bootstrap of brier, squared_calibration_error and
auprc (what every method used before): cohorts of n cases with scores Beta(2, 5), labels
drawn with P(y = 1) = s (calibrated) or s^1.5 (miscalibrated), and a near-perfect model
(AUROC about 0.998); truth from 4 million draws; 1000 resamples per cohort. Also the
coverage of the brier difference's interval (percentile bootstrap) between two groups of
n and 2n cases of the same model.

Release comparison and slice discovery with patient clusters: patients of 4 images that
share the label and a patient effect on both models' scores, and each model a patient
effect of its own (so the two models are exchangeable: the true tpr change is 0). Coverage
of the paired bootstrap interval of the tpr change and the size of the paired test
(McNemar with images, the patients' sign-flip test with patients); and the size of
--discover's one-sided slice test of tpr for a site drawn per patient with nothing planted
(Fisher exact with images, the patients' Wald test with patients), each with images and
with patients as the unit (target: patients' coverage >= 0.93, size <= 0.06).

auprc with patient clusters (--auprc-reps): patients of 4 images with a patient effect on the
score (`patients_scores`, ICC 0.8, 4 negative patients per positive one), AUROC in {0.7, 0.9} x
{10, 30} positive patients; truth: the average precision of one cohort of 4 million images.
Coverage of the group auprc interval that `run_audit` reports, images as the unit (no patient
ids: Boyd's logit interval) and patients (the patient bootstrap's percentile interval, what the
audit uses under patient clusters); beside them, not a target, a candidate: Boyd's logit
interval at n_pos / deff positives with AUROC's design effect.

Segmentation per-case means (--segmentation-reps): per-case dice from Beta(8, 2) (mean 0.80),
Beta(19, 1) (mean 0.95, most cases near 1) and a mixture near 1 with failures (Beta(63, 0.5),
and with probability 0.05 a failure U(0, 0.3): mean 0.950), hd95 decreasing with dice (Gamma(2,
1.5) mm, a failure U(20, 60) mm), through a Gaussian copula so that the true means are exact;
two equal groups of n in {30, 100} cases, independent or 4 cases per patient sharing a patient
effect (latent ICC 0.5). Through `run_segmentation_audit`: coverage of a group's mean dice and
hd95 (the percentile bootstrap, of cases and of patients) and of the difference of the two
groups (truth 0), and the dice permutation test's rejection rate (shown). Candidates shown
beside them, not targets: the betting interval (as brier's) and a cluster-robust t interval of
the group mean, with their widths over the percentile interval's.

Brier's betting interval with unequal cluster sizes (--brier-sizes-reps): as the patient-level
brier table, but min(Geometric(0.3), 8) images per patient (1 to 8, mean 3.1), so that
`betting_at(values, rng, sizes)` bets on totals over unequal sizes; images | patients.

Multi-class (--multiclass-reps, off by default): a small group of n in {40, 100} records, two
per patient, three classes drawn uniformly, logits N(0, 1) with a patient effect (ICC 0.5) and
a signal of 1.0 or 2.0 on the true class (accuracy about 0.66 and 0.87), softmax probabilities.
Truth: accuracy, balanced accuracy, macro fpr and macro one-vs-rest AUROC of 300,000 records
(scikit-learn). Coverage of the intervals the audit reports with the default score method: the
accuracy rate's score interval and the MOVER intervals of balanced accuracy, macro fpr and
macro AUROC, each class's design effect holding the patients and the classes' correlation
(fairaudit/stats/_multiclass.py); baseline in the same run, the plain percentile bootstrap of
patients (500 resamples).

Usage: `.venv/bin/python benchmarks/coverage.py [--reps 2000] [--seed 0] [--clustered-reps 1000]
[--mean-reps 500] [--release-reps 300] [--auprc-reps 500] [--segmentation-reps 300]
[--brier-sizes-reps 1000] [--multiclass-reps 0]` (a reps count of 0 skips its block). Figures in benchmarks/README.md;
a fast subset runs in tests/unit/stats/test_coverage.py.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
from scipy import stats as sps

from fairaudit.stats import _score as S
from fairaudit.stats import _tests as T
from fairaudit.stats._analytic import Analytic, Counts
from fairaudit.stats._cells import make_cells
from fairaudit.stats._clusters import (
    cluster_bootstrap_task,
    cluster_cells,
    cluster_permutation_task,
    design_effects,
)
from fairaudit.stats._intervals import percentile_interval
from fairaudit.stats._resample import bootstrap_task, permutation_task

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


IMAGES_PER_PATIENT = 4
CLUSTER_RATES = (0.5, 0.9, 0.97)
CLUSTER_PATIENTS = (10, 30, 100)  # positive patients per group


def patients_rates(
    p: float, patients_pos: int, rho: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores, labels, patient) of a group: positives detected at rate p, outcomes shared with prob. rho.

    As many negative patients as positive ones (specificity 0.9, shared likewise); scores
    0.75 for a positive call, 0.25 for a negative one.
    """
    m = IMAGES_PER_PATIENT
    n_pat = 2 * patients_pos
    y_pat = np.repeat([1, 0], patients_pos)
    rate = np.where(y_pat == 1, p, 0.9)
    shared = rng.random(n_pat) < rate
    own = rng.random((n_pat, m)) < rate[:, None]
    correct = np.where(rng.random((n_pat, m)) < rho, shared[:, None], own)
    y = np.repeat(y_pat, m)
    call = np.where(y == 1, correct.ravel(), ~correct.ravel())
    return np.where(call, 0.75, 0.25), y, np.repeat(np.arange(n_pat), m)


def _counts(cells, cc, clustered: bool) -> Counts:
    conf = T.confusion(cells, 0.5)
    deff = design_effects(cc, 0.5, True, S.z_of(0.95)) if clustered else {}
    return Counts(conf["tp"], conf["fp"], conf["tn"], conf["fn"], deff=deff)


def clustered_rate_coverage(
    p: float, patients_pos: int, rho: float, reps: int, rng: np.random.Generator, boot: int = 400
) -> dict[str, float]:
    """Coverage of tpr (score and percentile bootstrap) and of a tpr difference, images vs patients."""
    closed = Analytic("score", 0.95)
    hits = dict.fromkeys(
        ("rate_image", "rate_patient", "diff_image", "diff_patient", "boot_image", "boot_patient"), 0
    )
    for r in range(reps):
        groups = []
        for _ in range(2):
            s, y, pid = patients_rates(p, patients_pos, rho, rng)
            cells = make_cells(s, y)
            cc = cluster_cells(s, y, pid, cells)
            value = cells.pos[cells.u >= 0.5].sum() / cells.n_pos
            groups.append((cells, cc, value))
        (cells, cc, value), other = groups
        for unit, clustered in (("image", False), ("patient", True)):
            counts = _counts(cells, cc, clustered)
            lo, hi = closed.group("tpr", counts, cells, value, "").ci
            hits[f"rate_{unit}"] += lo <= p <= hi
            ref = (_counts(other[0], other[1], clustered), other[0], other[2])
            diff = closed.compare("tpr", (counts, cells, value), ref, "")[0]
            hits[f"diff_{unit}"] += diff.ci[0] <= 0 <= diff.ci[1]
            if r < reps // 4:  # the bootstrap is the slow part: a quarter of the cohorts
                source = cc if clustered else cells
                task = cluster_bootstrap_task if clustered else bootstrap_task
                dist = task(source, 0.5, False, boot, r, (7,))["tpr"]
                ci = percentile_interval(dist, 0.95)
                hits[f"boot_{unit}"] += ci is not None and ci[0] <= p <= ci[1]
    quarter = max(1, reps // 4)
    return {k: v / (quarter if k.startswith("boot") else reps) for k, v in hits.items()}


def patients_scores(
    auc: float,
    patients_pos: int,
    icc: float,
    rng: np.random.Generator,
    sizes: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Binormal scores with a patient effect: score = mu y + b_patient + e, var(b) = icc (total 1).

    `sizes`: images of each of the 5 * patients_pos patients (default IMAGES_PER_PATIENT each).
    """
    m = IMAGES_PER_PATIENT if sizes is None else np.asarray(sizes, dtype=np.int64)
    mu = math.sqrt(2.0) * float(sps.norm.ppf(auc))
    n_pat = 5 * patients_pos  # 4 negative patients per positive one
    y_pat = (np.arange(n_pat) < patients_pos).astype(int)
    b = rng.normal(0.0, math.sqrt(icc), n_pat)
    y = np.repeat(y_pat, m)
    z = mu * y + np.repeat(b, m) + rng.normal(0.0, math.sqrt(1.0 - icc), y.size)
    return 1.0 / (1.0 + np.exp(-z)), y, np.repeat(np.arange(n_pat), m)


def clustered_auroc_coverage(
    auc: float, patients_pos: int, icc: float, reps: int, rng: np.random.Generator
) -> tuple[float, float]:
    """Coverage of the AUROC interval, images vs patients as the unit."""
    closed = Analytic("score", 0.95)
    hit_i = hit_p = 0
    for _ in range(reps):
        s, y, pid = patients_scores(auc, patients_pos, icc, rng)
        cells = make_cells(s, y)
        cc = cluster_cells(s, y, pid, cells)
        value = T._auc(cells)
        lo, hi = closed.group("auroc", _counts(cells, cc, False), cells, value, "").ci
        hit_i += lo <= auc <= hi
        lo, hi = closed.group("auroc", _counts(cells, cc, True), cells, value, "").ci
        hit_p += lo <= auc <= hi
    return hit_i / reps, hit_p / reps


def clustered_permutation_size(
    patients_pos: int, icc: float, reps: int, rng: np.random.Generator, n_perm: int = 400
) -> tuple[float, float]:
    """Rejection rate at 0.05 of the Brier permutation test between two equal groups: images vs patients."""
    from fairaudit.stats._cells import merge_cells
    from fairaudit.stats._clusters import stack

    rej_i = rej_p = 0
    for r in range(reps):
        parts = []
        for _ in range(2):
            s, y, pid = patients_scores(0.8, patients_pos, icc, rng)
            cells = make_cells(np.round(s, 3), y)
            parts.append((cells, cluster_cells(np.round(s, 3), y, pid, cells)))
        (cg, ccg), (cr, ccr) = parts
        observed = T.per_case_brier(cg).mean() - T.per_case_brier(cr).mean()
        pooled, ig, ir = merge_cells(cg, cr)
        null = permutation_task(pooled, cg.n, 0.5, ("brier",), n_perm, r, (8,))["brier"]
        rej_i += (T.permutation_p_value(observed, null) or 1.0) < 0.05
        units = stack([ccg, ccr], pooled.u, [ig, ir])
        null = cluster_permutation_task(units, ccg.n_clusters, 0.5, ("brier",), n_perm, r, (9,))["brier"]
        rej_p += (T.permutation_p_value(observed, null) or 1.0) < 0.05
    return rej_i / reps, rej_p / reps


MAX_IMAGES_PER_PATIENT = 8
# Unequal cluster sizes: min(Geometric(0.3), 8) images per patient (P(1) = 0.30, P(2) = 0.21,
# ..., P(8) = 0.7^7 = 0.082; mean 3.1), drawn independently of the label and the scores.
SIZE_GEOMETRIC_P = 0.3


def patient_sizes(n_patients: int, rng: np.random.Generator) -> np.ndarray:
    """Images per patient, 1 to MAX_IMAGES_PER_PATIENT, a truncated geometric mix."""
    return np.minimum(rng.geometric(SIZE_GEOMETRIC_P, n_patients), MAX_IMAGES_PER_PATIENT)


def clustered_brier_coverage(
    auc: float,
    patients_pos: int,
    icc: float,
    reps: int,
    rng: np.random.Generator,
    unequal: bool = False,
) -> tuple[float, float]:
    """Coverage of brier's betting interval, images vs patients as the unit it bets on.

    unequal: each patient's number of images drawn by `patient_sizes` (1 to 8), so that the
    betting interval bets on totals T_j over unequal k_j (`betting_at(values, rng, sizes)`);
    the truth is then the image-weighted mean error of a very large cohort drawn the same way.
    """
    from fairaudit.stats._mean_intervals import group_interval_at

    def draw(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        sizes = patient_sizes(5 * k, rng) if unequal else None
        return patients_scores(auc, k, icc, rng, sizes)

    s, y, _ = draw(20_000)
    truth = float(np.mean((np.round(s, 4) - y) ** 2))
    z = S.z_of(0.95)
    hit_i = hit_p = 0
    for _ in range(reps):
        s, y, pid = draw(patients_pos)
        s = np.round(s, 4)
        cells = make_cells(s, y)
        cc = cluster_cells(s, y, pid, cells)
        point = {"brier": float(np.mean((s - y) ** 2))}
        lo, hi = group_interval_at("brier", point, {}, cells, rng)(z)
        hit_i += lo <= truth <= hi
        lo, hi = group_interval_at("brier", point, {}, cells, rng, cc)(z)
        hit_p += lo <= truth <= hi
    return hit_i / reps, hit_p / reps


def brier_sizes_section(reps: int, rng: np.random.Generator, out) -> float:
    """Print the table of brier's betting interval with unequal cluster sizes; return the worst
    patient-level coverage."""
    out(
        f"\nBrier's betting interval with unequal cluster sizes: min(Geometric({SIZE_GEOMETRIC_P}), "
        f"{MAX_IMAGES_PER_PATIENT}) images per patient (1 to {MAX_IMAGES_PER_PATIENT}, mean 3.1), patient "
        f"effect on the score (ICC 0.8), images | patients ({reps} cohorts per cell)\n"
    )
    out(f"{'AUROC':>5} {'pos. patients':>13} | {'coverage':>11}\n")
    worst = 1.0
    for auc in (0.8, 0.99):
        for k in (10, 30):
            ci, cp = clustered_brier_coverage(auc, k, 0.8, reps, rng, unequal=True)
            worst = min(worst, cp)
            out(f"{auc:>5} {k:>13} | {ci:.3f} {cp:.3f}\n")
    return worst


AUPRC_ICC = 0.8
AUPRC_AUROCS = (0.7, 0.9)
AUPRC_PATIENTS = (10, 30)  # positive patients (and 4 negative patients per positive one)


def auprc_truth(auc: float, icc: float, rng: np.random.Generator, patients_pos: int = 200_000) -> float:
    """Population average precision of `patients_scores`: one cohort of 4 million images."""
    from fairaudit.stats._metrics import MetricKernel

    s, y, _ = patients_scores(auc, patients_pos, icc, rng)
    cells = make_cells(s, y)
    return float(MetricKernel(cells.u, 0.5, True).point(cells.pos, cells.neg)["auprc"])


def clustered_auprc_coverage(
    auc: float,
    patients_pos: int,
    icc: float,
    truth: float,
    reps: int,
    rng: np.random.Generator,
    boot: int = 1000,
) -> dict[str, float]:
    """Coverage of the auprc interval that `run_audit` reports for a group of patients with 4
    images each (a patient effect on the score): images as the unit (no patient ids: Boyd's
    logit interval, `logit_boyd`) and patients (`clusters`: the patient bootstrap's percentile
    interval, `_audit._mean_method`). The group is the audit's `overall` estimate, computed by
    the same function as every group's (`_metric_estimates`). "candidate" (shown, not a target,
    not what the audit does): Boyd's logit interval at n_pos / deff positives, deff AUROC's
    design effect (`auroc_design_effect`: Obuchowski's variance over DeLong's)."""
    from fairaudit.stats import AuditConfig, run_audit
    from fairaudit.stats._clusters import auroc_design_effect
    from fairaudit.stats._mean_intervals import logit_ap_at

    z = S.z_of(0.95)
    hits = {"image": 0, "patient": 0, "candidate": 0}
    for _ in range(reps):
        s, y, pid = patients_scores(auc, patients_pos, icc, rng)
        cfg = AuditConfig(bootstrap=boot, seed=int(rng.integers(1 << 30)), workers=1)
        for unit, clusters in (("image", None), ("patient", pid)):
            est = run_audit(y, s, {}, cfg, clusters=clusters).overall["auprc"]
            if est.ci is not None and est.method != _AUPRC_METHOD[unit]:
                raise AssertionError(f"auprc with {unit}s as the unit used {est.method}")
            hits[unit] += est.ci is not None and est.ci[0] <= truth <= est.ci[1]
        cells = make_cells(s, y)
        deff = auroc_design_effect(cluster_cells(s, y, pid, cells))
        at = logit_ap_at(float(est.value), cells.n_pos / deff) if est.value is not None else None
        lo, hi = at(z) if at is not None else (math.nan, math.nan)
        hits["candidate"] += lo <= truth <= hi
    return {k: v / reps for k, v in hits.items()}


_AUPRC_METHOD = {"image": "logit_boyd", "patient": "bootstrap_percentile"}


def clustered_auprc_section(reps: int, rng: np.random.Generator, out) -> float:
    """Print the auprc-with-patient-clusters table; return the worst patient-level coverage."""
    out(
        f"\nauprc with patient clusters: {IMAGES_PER_PATIENT} images per patient, patient effect on the "
        f"score (ICC {AUPRC_ICC}), 4 negative patients per positive one; 95% coverage of run_audit's "
        f"interval, images (logit_boyd) | patients (patient bootstrap percentile), {reps} cohorts per cell;"
        " candidate (shown, not a target): logit interval at n_pos / AUROC's design effect\n"
    )
    out(f"{'AUROC':>5} {'true AP':>7} {'pos. patients':>13} | {'coverage':>11} | {'candidate':>9}\n")
    worst = 1.0
    for auc in AUPRC_AUROCS:
        truth = auprc_truth(auc, AUPRC_ICC, rng)
        for k in AUPRC_PATIENTS:
            c = clustered_auprc_coverage(auc, k, AUPRC_ICC, truth, reps, rng)
            worst = min(worst, c["patient"])
            out(
                f"{auc:>5} {truth:7.4f} {k:>13} | {c['image']:.3f} {c['patient']:.3f} | {c['candidate']:9.3f}\n"
            )
    return worst


# Segmentation per-case means. Per case a latent N(0, 1) (with patient clusters
# sqrt(SEG_ICC) b_patient + sqrt(1 - SEG_ICC) e), u = Phi(latent), and every metric a quantile
# of u, so the marginal distributions, and hence the true means, are exact: dice is Beta(a, b)
# and, with probability `fail`, a failure U(0, 0.3) (the lowest u); hd95 (mm) decreases with
# dice: Gamma(2, scale 1.5) (mean 3), a failure U(20, 60) (mean 40).
SEG_ICC = 0.5
SEG_SIZES = (30, 100)  # cases per group; with clusters 4 per patient (30: 7 patients of 4 and one of 2)
SEG_MODELS: tuple[tuple[str, float, float, float], ...] = (
    ("Beta(8, 2)", 8.0, 2.0, 0.0),  # mean 0.80
    ("Beta(19, 1)", 19.0, 1.0, 0.0),  # mean 0.95, most cases near 1
    ("Beta(63, .5)+5% U(0, .3)", 63.0, 0.5, 0.05),  # mean 0.950: near 1 and a few failures
)
SEG_HD95 = (2.0, 1.5)  # Gamma shape, scale
SEG_COLUMNS = ("dice_mean", "dice_diff", "hd95_mean", "hd95_diff")
# Candidates for group A's mean, shown and not targets (with the target unit: patients when
# clustered), each with its median width over the audit's percentile interval: the betting
# interval (`betting_at`, as brier's; on patients' sums with clusters) of dice, and of
# hd95 / SEG_HD95_CAP (hd95 cannot exceed the image's diagonal; 100 mm assumed here); and the
# t interval with the cluster-robust (ratio-estimator) standard error and P - 1 degrees of
# freedom over P units (the plain t interval for independent cases).
SEG_CANDIDATES = ("dice_bet", "hd95_bet", "dice_t", "hd95_t")
SEG_HD95_CAP = 100.0


def segmentation_truth(a: float, b: float, fail: float) -> dict[str, float]:
    """True mean dice and hd95 of a model (exact)."""
    return {
        "dice": (1 - fail) * a / (a + b) + fail * 0.15,
        "hd95": (1 - fail) * SEG_HD95[0] * SEG_HD95[1] + fail * 40.0,
    }


def segmentation_cohort(
    a: float, b: float, fail: float, n: int, clustered: bool, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-case values of the five segmentation metrics and each case's patient (4 per patient)."""
    patient = np.arange(n) // IMAGES_PER_PATIENT
    if clustered:
        b_pat = rng.normal(0.0, math.sqrt(SEG_ICC), int(patient.max()) + 1)
        latent = b_pat[patient] + rng.normal(0.0, math.sqrt(1.0 - SEG_ICC), n)
    else:
        latent = rng.normal(0.0, 1.0, n)
    u = sps.norm.cdf(latent)
    failed = u < fail
    v = np.clip((u - fail) / (1.0 - fail), 1e-12, 1.0 - 1e-12)  # the level within the Beta part
    w = u / fail if fail > 0 else np.zeros(n)  # the level within the failures
    dice = np.where(failed, 0.3 * w, sps.beta.ppf(v, a, b))
    hd95 = np.where(failed, 20.0 + 40.0 * (1.0 - w), sps.gamma.ppf(1.0 - v, SEG_HD95[0], scale=SEG_HD95[1]))
    values = {
        "dice": dice,
        "iou": dice / (2.0 - dice),
        "hd95": hd95,
        "assd": 0.4 * hd95,
        "volume_error": dice - 1.0,
    }
    return values, patient


def _cluster_t_interval(total: np.ndarray, count: np.ndarray, z: float) -> tuple[float, float]:
    """sum T / sum k +- t(P - 1) x the cluster-robust SE of the ratio (candidate, not fairaudit's)."""
    p, n = total.size, float(count.sum())
    r = float(total.sum()) / n
    e = total - r * count
    se = math.sqrt(p / (p - 1) * float(e @ e)) / n
    half = float(sps.t.isf(sps.norm.sf(z), p - 1)) * se
    return r - half, r + half


def segmentation_coverage(
    model: tuple[str, float, float, float],
    n: int,
    clustered: bool,
    reps: int,
    rng: np.random.Generator,
    boot: int = 1000,
) -> dict[str, float]:
    """Coverage of run_segmentation_audit's intervals for two equal groups A and B of n cases:
    A's mean of dice and hd95 (the percentile bootstrap) and B - A (truth 0); and the rejection
    rate of the dice permutation test at 0.05. Keys f"{unit}_{column}" and f"{unit}_size", unit
    "case" (cases resampled) and, with clusters, "patient"; SEG_CANDIDATES: the candidates'
    coverage with the target unit, f"{candidate}_width" their median width over the percentile
    interval's."""
    from fairaudit.stats import AuditConfig
    from fairaudit.stats._mean_intervals import betting_at
    from fairaudit.stats._segmentation_audit import run_segmentation_audit

    _, a, b, fail = model
    truth = segmentation_truth(a, b, fail)
    units = ("case", "patient") if clustered else ("case",)
    hits = {f"{u}_{c}": 0 for u in units for c in (*SEG_COLUMNS, "size")}
    hits.update(dict.fromkeys(SEG_CANDIDATES, 0))
    widths: dict[str, list[float]] = {c: [] for c in SEG_CANDIDATES}
    z = S.z_of(0.95)
    groups = {"g": np.repeat(["A", "B"], n)}
    for _ in range(reps):
        (va, pa), (vb, pb) = (segmentation_cohort(a, b, fail, n, clustered, rng) for _ in range(2))
        values = {m: np.concatenate([va[m], vb[m]]) for m in va}
        patients = np.concatenate([pa, pb + pa.max() + 1])
        # correction "none": the intervals and unadjusted p-values do not depend on it.
        cfg = AuditConfig(
            bootstrap=boot, permutations=200, correction="none", seed=int(rng.integers(1 << 30)), workers=1
        )
        pct = {}
        for unit in units:
            res = run_segmentation_audit(
                values, groups, cfg, references={"g": "A"}, clusters=patients if unit == "patient" else None
            )
            att = res.attribute("g")
            for m in ("dice", "hd95"):
                ci = pct[m] = att.group("A").metrics[m].ci
                hits[f"{unit}_{m}_mean"] += ci is not None and ci[0] <= truth[m] <= ci[1]
                row = next(c for c in att.comparisons if c.metric == m and c.group == "B")
                ci = row.difference.ci
                hits[f"{unit}_{m}_diff"] += ci is not None and ci[0] <= 0.0 <= ci[1]
                if m == "dice":
                    hits[f"{unit}_size"] += row.p_value is not None and row.p_value < 0.05
        # Candidates, with the target unit (the last one: patients when clustered).
        unit_of = pa if clustered else np.arange(n)
        count = np.bincount(unit_of).astype(float)
        for m in ("dice", "hd95"):
            total = np.bincount(unit_of, weights=va[m])
            scale = SEG_HD95_CAP if m == "hd95" else 1.0
            at = betting_at(total / scale, rng, count if clustered else None)
            bet = at(z) if at is not None else (math.nan, math.nan)
            for key, (lo, hi) in (
                (f"{m}_bet", (scale * bet[0], scale * bet[1])),
                (f"{m}_t", _cluster_t_interval(total, count, z)),
            ):
                hits[key] += lo <= truth[m] <= hi
                if pct[m] is not None and pct[m][1] > pct[m][0]:
                    widths[key].append((hi - lo) / (pct[m][1] - pct[m][0]))
    out = {k: v / reps for k, v in hits.items()}
    out.update({f"{k}_width": float(np.median(v)) if v else math.nan for k, v in widths.items()})
    return out


def segmentation_section(reps: int, rng: np.random.Generator, out) -> dict[str, float]:
    """Print the segmentation tables; return the worst coverage of the audit's intervals
    (independent cases, and patients with clusters) and the largest permutation size (shown)."""
    out(
        f"\nSegmentation per-case means (run_segmentation_audit, percentile bootstrap of the mean, B = 1000):"
        f" 95% coverage of group A's mean and of B - A between two equal groups, and the dice"
        f" permutation test's rejection rate at 0.05 (shown, not a target); {reps} cohorts per cell\n"
    )
    head = " | ".join(f"{c:>11}" for c in (*SEG_COLUMNS, "dice size"))
    worst = {"mean": 1.0, "diff": 1.0, "size": 0.0}
    candidates: list[str] = []
    for clustered in (False, True):
        if clustered:
            out(
                f"{IMAGES_PER_PATIENT} cases per patient, patient effect (latent ICC {SEG_ICC}); cases | patients\n"
            )
        else:
            out("independent cases\n")
        out(f"{'model':>25} {'n':>4} | {head}\n")
        unit = "patient" if clustered else "case"
        for model in SEG_MODELS:
            for n in SEG_SIZES:
                c = segmentation_coverage(model, n, clustered, reps, rng)
                for col in SEG_COLUMNS:
                    key = col.split("_")[1]
                    worst[key] = min(worst[key], c[f"{unit}_{col}"])
                worst["size"] = max(worst["size"], c[f"{unit}_size"])
                shown = (*SEG_COLUMNS, "size")
                if clustered:
                    cells = [f"{c[f'case_{k}']:.3f} {c[f'patient_{k}']:.3f}" for k in shown]
                else:
                    cells = [f"{c[f'case_{k}']:>11.3f}" for k in shown]
                out(f"{model[0]:>25} {n:>4} | " + " | ".join(cells) + "\n")
                candidates.append(
                    f"{model[0]:>25} {n:>4} {unit:>7} | "
                    + " | ".join(f"{c[k]:.3f} ({c[k + '_width']:4.1f}x)" for k in SEG_CANDIDATES)
                    + "\n"
                )
    out(
        "Candidates for group A's mean (shown, not targets): coverage (median width / the percentile"
        " interval's); betting as brier's (hd95 / 100 mm), t: cluster-robust SE, P - 1 df\n"
    )
    out(f"{'model':>25} {'n':>4} {'unit':>7} | " + " | ".join(f"{k:>14}" for k in SEG_CANDIDATES) + "\n")
    for line in candidates:
        out(line)
    return worst


MEAN_METRICS = ("brier", "auprc", "squared_calibration_error", "ece")
MEAN_COLUMNS = (
    "brier",
    "brier_pct",
    "brier_diff",
    "auprc",
    "auprc_pct",
    "squared_calibration_error",
    "sqce_pct",
    "ece",
)
MEAN_TARGETS = ("brier", "auprc", "squared_calibration_error")
MEAN_SIZES = (30, 100, 400)
# (name, power): labels drawn with P(y = 1) = s ** power from scores Beta(2, 5); power None:
# a near-perfect model (AUROC about 0.998, like the bundled classifier's 0.997 on the sample
# cohort): prevalence 0.2, logit score +-(5 + N(0, 2.5)) for positives / negatives, so that
# the mean error is carried by a few rare large errors.
MEAN_MODELS: tuple[tuple[str, float | None], ...] = (
    ("calibrated", 1.0),
    ("miscalibrated", 1.5),
    ("near-perfect", None),
)


def _mean_cohort(n: int, power: float | None, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if power is None:
        y = (rng.random(n) < 0.2).astype(int)
        logit = np.where(y == 1, 1.0, -1.0) * (5.0 + rng.normal(0.0, 2.5, n))
        return np.round(1.0 / (1.0 + np.exp(-logit)), 6), y
    s = rng.beta(2.0, 5.0, n)
    return np.round(s, 3), (rng.random(n) < s**power).astype(int)


def mean_metric_truth(power: float | None, rng: np.random.Generator, n: int = 4_000_000) -> dict[str, float]:
    """Population values of the mean metrics (one very large cohort)."""
    from fairaudit.stats._metrics import MetricKernel

    s, y = _mean_cohort(n, power, rng)
    cells = make_cells(s, y)
    return MetricKernel(cells.u, 0.5, True).point(cells.pos, cells.neg)


def mean_metric_coverage(
    n: int,
    power: float | None,
    truth: dict[str, float],
    reps: int,
    rng: np.random.Generator,
    boot: int = 1000,
) -> dict[str, float]:
    """Coverage of each mean metric's default interval (and of the percentile baselines) at n
    cases; brier_diff: the default interval of the brier difference of two groups of n and 2n
    cases of the same model (truth 0)."""
    from fairaudit.stats._mean_intervals import METHODS, group_interval_at
    from fairaudit.stats._metrics import MetricKernel

    z = S.z_of(0.95)
    hits = dict.fromkeys(MEAN_COLUMNS, 0)
    for r in range(reps):
        s, y = _mean_cohort(n, power, rng)
        cells = make_cells(s, y)
        point = MetricKernel(cells.u, 0.5, True).point(cells.pos, cells.neg)
        dist = bootstrap_task(cells, 0.5, True, boot, r, (11,))
        for m in MEAN_METRICS:
            at = group_interval_at(m, point, dist, cells, rng) if m in METHODS else None
            ci = at(z) if at is not None else percentile_interval(dist[m], 0.95)
            hits[m] += ci is not None and ci[0] <= truth[m] <= ci[1]
        for m, col in (
            ("brier", "brier_pct"),
            ("auprc", "auprc_pct"),
            ("squared_calibration_error", "sqce_pct"),
        ):
            ci = percentile_interval(dist[m], 0.95)
            hits[col] += ci is not None and ci[0] <= truth[m] <= ci[1]
        s2, y2 = _mean_cohort(2 * n, power, rng)
        other = bootstrap_task(make_cells(s2, y2), 0.5, True, boot, r, (12,))["brier"]
        ci = percentile_interval(dist["brier"] - other, 0.95)
        hits["brier_diff"] += ci is not None and ci[0] <= 0.0 <= ci[1]
    return {m: v / reps for m, v in hits.items()}


def mean_section(reps: int, rng: np.random.Generator, out) -> dict[str, float]:
    """Print the mean-metric table; return the worst coverage of brier, auprc and squared CE."""
    worst: dict[str, float] = {}
    out(
        f"\nMean metrics: 95% coverage of the default intervals ({reps} cohorts per cell; ece, brier_diff"
        " and the percentile baselines *_pct shown, not targets)\n"
    )
    out(f"{'model':>13} {'n':>4} | " + " ".join(f"{m[:12]:>12}" for m in MEAN_COLUMNS) + "\n")
    for name, power in MEAN_MODELS:
        truth = mean_metric_truth(power, rng)
        for n in MEAN_SIZES:
            c = mean_metric_coverage(n, power, truth, reps, rng)
            for m in MEAN_TARGETS:
                worst[m] = min(worst.get(m, 1.0), c[m])
            out(f"{name:>13} {n:>4} | " + " ".join(f"{c[m]:12.3f}" for m in MEAN_COLUMNS) + "\n")
    return worst


def clustered_section(reps: int, rng: np.random.Generator, out) -> dict[str, float]:
    """Print the patient-level tables; return the worst patient-level figures."""
    worst: dict[str, float] = {}
    out(f"\nPatient-level resampling: {IMAGES_PER_PATIENT} images per patient ({reps} cohorts per cell)\n")
    out(
        "tpr of one group and tpr difference of two equal groups, 95% coverage, images | patients as the unit\n"
    )
    out(
        f"{'rho':>4} {'tpr':>5} {'pos. patients':>13} | {'rate':>11} | {'difference':>11} | {'bootstrap':>11}\n"
    )
    for rho in (1.0, 0.5):
        for p in CLUSTER_RATES:
            for k in CLUSTER_PATIENTS:
                c = clustered_rate_coverage(p, k, rho, reps, rng)
                for key in ("rate", "diff"):
                    worst[key] = min(worst.get(key, 1.0), c[f"{key}_patient"])
                out(
                    f"{rho:>4} {p:>5} {k:>13} | {c['rate_image']:.3f} {c['rate_patient']:.3f} | "
                    f"{c['diff_image']:.3f} {c['diff_patient']:.3f} | {c['boot_image']:.3f} {c['boot_patient']:.3f}\n"
                )
    out("\nAUROC interval with a patient effect on the score (ICC of the latent score), images | patients\n")
    out(f"{'ICC':>4} {'AUROC':>5} {'pos. patients':>13} | {'coverage':>11}\n")
    for icc in (0.8, 0.4):
        for auc in (0.7, 0.9):
            for k in (10, 30):
                ci, cp = clustered_auroc_coverage(auc, k, icc, reps, rng)
                worst["auroc"] = min(worst.get("auroc", 1.0), cp)
                out(f"{icc:>4} {auc:>5} {k:>13} | {ci:.3f} {cp:.3f}\n")
    out(
        "\nBrier permutation test between equal groups (ICC 0.8), rejection rate at 0.05, images | patients\n"
    )
    size = 0.0
    for k in (10, 30):
        si, sp = clustered_permutation_size(k, 0.8, max(100, reps // 4), rng)
        size = max(size, sp)
        out(f"{k:>4} positive patients | {si:.3f} {sp:.3f}\n")
    worst["size"] = size
    out("\nBrier's betting interval with a patient effect on the score (ICC 0.8), images | patients\n")
    out(f"{'AUROC':>5} {'pos. patients':>13} | {'coverage':>11}\n")
    for auc in (0.8, 0.99):
        for k in (10, 30):
            ci, cp = clustered_brier_coverage(auc, k, 0.8, max(100, reps // 4), rng)
            worst["brier"] = min(worst.get("brier", 1.0), cp)
            out(f"{auc:>5} {k:>13} | {ci:.3f} {cp:.3f}\n")
    return worst


def _two_models(k: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """k patients of IMAGES_PER_PATIENT images: label, a shared patient effect, and each
    model's own patient effect (exchangeable models); returns y, s_new, s_base, patient."""
    n = k * IMAGES_PER_PATIENT
    patient = np.repeat(np.arange(k), IMAGES_PER_PATIENT)
    y = (rng.random(k) < 0.5).astype(int)[patient]
    shared = np.where(y == 1, 1.5, -1.5) + rng.normal(0.0, 1.0, k)[patient]

    def model() -> np.ndarray:
        z = shared + rng.normal(0.0, 1.0, k)[patient] + rng.normal(0.0, 0.3, n)
        return np.round(1.0 / (1.0 + np.exp(-z)), 4)

    return y, model(), model(), patient


def release_coverage(k: int, reps: int, rng: np.random.Generator, boot: int = 1000) -> dict[str, float]:
    """Paired tpr change: interval coverage of 0 and test rejection rate, images | patients."""
    from fairaudit.stats._paired import group_bootstrap, paired_test

    hits = {"cover_image": 0, "cover_patient": 0, "size_image": 0, "size_patient": 0}
    for _ in range(reps):
        y, s_new, s_base, patient = _two_models(k, rng)
        for unit, units in (("image", None), ("patient", patient)):
            gb = group_bootstrap(y, s_new, s_base, 0.5, boot, rng, has_scores=False, units=units)
            ci = percentile_interval(gb.boot_new["tpr"] - gb.boot_base["tpr"], 0.95)
            hits[f"cover_{unit}"] += ci is not None and ci[0] <= 0.0 <= ci[1]
            p = paired_test("tpr", y, s_new, s_base, 0.5, units, rng).p_value
            hits[f"size_{unit}"] += p is not None and p < 0.05
    return {key: v / reps for key, v in hits.items()}


def discover_size(k: int, reps: int, rng: np.random.Generator) -> tuple[float, float]:
    """Rejection rate at 0.05 of --discover's one-sided tpr test of one site (drawn per
    patient, nothing planted), images | patients."""
    from fairaudit.stats._audit import AuditConfig
    from fairaudit.stats._discover import discover_slices

    rejected = {"image": 0, "patient": 0}
    for r in range(reps):
        y, s, _, patient = _two_models(k, rng)
        site = np.where(rng.random(k) < 0.5, "A", "B")[patient]
        cfg = AuditConfig(bootstrap=20, seed=r, min_group_size=10, threshold=0.5)
        for unit, units in (("image", None), ("patient", patient)):
            d = discover_slices(y, s, {"site": site}, cfg, metric="tpr", top=2, clusters=units)
            p = next((sl["p_value"] for sl in d["slices"] if sl["slice"] == "site=A"), None)
            rejected[unit] += p is not None and p < 0.05
    return rejected["image"] / reps, rejected["patient"] / reps


def release_section(reps: int, rng: np.random.Generator, out) -> dict[str, float]:
    """Print the release-comparison and discovery tables; return the patients' worst figures."""
    out(
        f"\nRelease comparison and slice discovery, {IMAGES_PER_PATIENT} images per patient, two "
        f"exchangeable models ({reps} cohorts per cell), images | patients\n"
    )
    out(f"{'patients':>8} | {'tpr change coverage':>19} | {'paired test size':>16} | {'discover size':>13}\n")
    worst = {"cover": 1.0, "size": 0.0}
    for k in (60, 200):
        c = release_coverage(k, reps, rng)
        di, dp = discover_size(k, reps, rng)
        worst["cover"] = min(worst["cover"], c["cover_patient"])
        worst["size"] = max(worst["size"], c["size_patient"], dp)
        out(
            f"{k:>8} | {c['cover_image']:>9.3f} {c['cover_patient']:.3f} | "
            f"{c['size_image']:>10.3f} {c['size_patient']:.3f} | {di:>7.3f} {dp:.3f}\n"
        )
    return worst


def _multiclass_draw(n: int, signal: float, icc: float, rng: np.random.Generator):
    """Three classes drawn uniformly, logits N(0, 1) plus `signal` on the true class, a patient
    effect (variance icc) shared by each patient's two records; softmax probabilities."""
    k = 3
    y = rng.integers(0, k, n)
    patients = np.arange(n) // 2
    shared = rng.normal(0.0, 1.0, (n // 2 + 1, k))[patients]
    logits = np.sqrt(icc) * shared + np.sqrt(1.0 - icc) * rng.normal(0.0, 1.0, (n, k))
    logits[np.arange(n), y] += signal
    prob = np.exp(logits)
    return y, prob / prob.sum(axis=1, keepdims=True), patients


def multiclass_section(reps: int, rng: np.random.Generator, out) -> dict[str, float]:
    """Coverage of a small group's accuracy, balanced accuracy, macro fpr and macro AUROC
    intervals in a multi-class audit, patients as the unit; the worst of each over the cells."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, roc_auc_score

    from fairaudit.stats._audit import AuditConfig
    from fairaudit.stats._multiclass import (
        _bootstrap,
        _mover_estimate,
        _parts,
        _Records,
        accuracy_audit,
        predicted_class,
    )

    k, boot, icc = 3, 500, 0.5
    cfg = AuditConfig(bootstrap=1)
    z = float(sps.norm.isf(0.025))
    names = ("accuracy", "balanced_accuracy", "macro_fpr", "macro_auroc")
    out(
        f"\nMulti-class, a small group (95% intervals, {reps} cohorts per cell, 2 records per patient, "
        f"patient effect ICC {icc}; baseline: plain percentile bootstrap of patients)\n"
    )
    out(
        f"{'signal':>6} {'acc.':>5} {'n':>4} | {'accuracy':>8} {'bal_acc':>7} {'mac_fpr':>7} {'mac_auroc':>9} "
        f"| {'boot bal':>8} {'boot fpr':>8} {'boot auroc':>10}\n"
    )
    worst: dict[str, float] = {}
    for signal in (1.0, 2.0):
        y, prob, _ = _multiclass_draw(300_000, signal, 0.0, rng)
        pred = predicted_class(prob)
        cm = confusion_matrix(y, pred)
        fpr = [(cm[:, j].sum() - cm[j, j]) / (cm.sum() - cm[j].sum()) for j in range(k)]
        truth = {
            "accuracy": accuracy_score(y, pred),
            "balanced_accuracy": balanced_accuracy_score(y, pred),
            "macro_fpr": float(np.mean(fpr)),
            "macro_auroc": roc_auc_score(y, prob, multi_class="ovr"),
        }
        for n in (40, 100):
            hits = dict.fromkeys(names, 0)
            plain = dict.fromkeys(names[1:], 0)
            for _ in range(reps):
                y, prob, patients = _multiclass_draw(n, signal, icc, rng)
                pred = predicted_class(prob)
                acc = accuracy_audit(y, pred, {"g": np.full(n, "a")}, cfg, clusters=patients).overall[
                    "accuracy"
                ]
                hits["accuracy"] += acc.ci[0] <= truth["accuracy"] <= acc.ci[1]
                rec = _Records(y, pred, prob, patients)
                draws = _bootstrap(rec, k, boot, rng)
                for m in names[1:]:
                    ci = _mover_estimate(_parts(rec, k, m, z), cfg, "", n).ci
                    hits[m] += ci is not None and ci[0] <= truth[m] <= ci[1]
                for m in names[1:]:
                    ci = percentile_interval(draws[m], 0.95)
                    plain[m] += ci is not None and ci[0] <= truth[m] <= ci[1]
            cover = {m: h / reps for m, h in hits.items()}
            for m, c in cover.items():
                worst[m] = min(worst.get(m, 1.0), c)
            out(
                f"{signal:>6} {truth['accuracy']:5.2f} {n:>4} | {cover['accuracy']:8.3f} "
                f"{cover['balanced_accuracy']:7.3f} {cover['macro_fpr']:7.3f} {cover['macro_auroc']:9.3f} | "
                f"{plain['balanced_accuracy'] / reps:8.3f} {plain['macro_fpr'] / reps:8.3f} "
                f"{plain['macro_auroc'] / reps:10.3f}\n"
            )
    return worst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=2000, help="simulated cohorts per AUROC cell")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--clustered-reps", type=int, default=1000, help="simulated cohorts per patient-level cell (0: skip)"
    )
    ap.add_argument("--mean-reps", type=int, default=500, help="cohorts per mean-metric cell (0: skip)")
    ap.add_argument(
        "--release-reps", type=int, default=300, help="cohorts per release/discovery cell (0: skip)"
    )
    ap.add_argument(
        "--auprc-reps",
        type=int,
        default=500,
        help="cohorts per cell of auprc with patient clusters (0: skip)",
    )
    ap.add_argument(
        "--segmentation-reps", type=int, default=300, help="cohorts per segmentation-mean cell (0: skip)"
    )
    ap.add_argument(
        "--brier-sizes-reps",
        type=int,
        default=1000,
        help="cohorts per cell of brier's betting interval with unequal cluster sizes (0: skip)",
    )
    ap.add_argument(
        "--multiclass-reps",
        type=int,
        default=0,
        help="cohorts per cell of the multi-class small-group coverage (0: skip)",
    )
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

    clustered = clustered_section(args.clustered_reps, rng, out) if args.clustered_reps > 0 else {}
    means = mean_section(args.mean_reps, rng, out) if args.mean_reps > 0 else {}
    release = release_section(args.release_reps, rng, out) if args.release_reps > 0 else {}
    auprc = clustered_auprc_section(args.auprc_reps, rng, out) if args.auprc_reps > 0 else None
    segmentation = (
        segmentation_section(args.segmentation_reps, rng, out) if args.segmentation_reps > 0 else {}
    )
    brier_sizes = brier_sizes_section(args.brier_sizes_reps, rng, out) if args.brier_sizes_reps > 0 else None
    multiclass = multiclass_section(args.multiclass_reps, rng, out) if args.multiclass_reps > 0 else {}

    out(f"\nWorst coverage (target >= {TARGET}): " + ", ".join(f"{k} {v:.3f}" for k, v in worst.items()))
    out(f"; largest AUROC test size {size:.3f} (target <= 0.06); {time.perf_counter() - t0:.0f} s\n")
    out(f"range interval contains 0 at least {contains:.3f} of the time (target >= 0.90)\n")
    ok = all(v >= TARGET for v in worst.values()) and size <= 0.06 and contains >= 0.90
    if clustered:
        cover = {k: v for k, v in clustered.items() if k != "size"}
        out(
            "patient-level worst coverage: "
            + ", ".join(f"{k} {v:.3f}" for k, v in cover.items())
            + f"; Brier permutation size {clustered['size']:.3f} (targets >= {TARGET}, <= 0.06)\n"
        )
        ok = ok and all(v >= TARGET for v in cover.values()) and clustered["size"] <= 0.06
    if means:
        out(
            "mean-metric bootstrap worst coverage: "
            + ", ".join(f"{k} {v:.3f}" for k, v in means.items())
            + "\n"
        )
        ok = ok and all(v >= TARGET for v in means.values())
    if release:
        out(
            f"release/discovery with patients: worst coverage {release['cover']:.3f}, largest size "
            f"{release['size']:.3f} (targets >= {TARGET}, <= 0.06)\n"
        )
        ok = ok and release["cover"] >= TARGET and release["size"] <= 0.06
    if auprc is not None:
        out(f"auprc with patient clusters: worst patient-level coverage {auprc:.3f} (target >= {TARGET})\n")
        ok = ok and auprc >= TARGET
    if segmentation:
        out(
            f"segmentation means (percentile bootstrap): worst coverage of a group mean {segmentation['mean']:.3f}, "
            f"of a difference {segmentation['diff']:.3f} (targets >= {TARGET}); largest dice permutation size "
            f"{segmentation['size']:.3f} (shown)\n"
        )
        ok = ok and segmentation["mean"] >= TARGET and segmentation["diff"] >= TARGET
    if brier_sizes is not None:
        out(
            f"brier betting with unequal cluster sizes: worst patient-level coverage {brier_sizes:.3f} "
            f"(target >= {TARGET})\n"
        )
        ok = ok and brier_sizes >= TARGET
    if multiclass:
        out(
            "multi-class small group worst coverage: "
            + ", ".join(f"{k} {v:.3f}" for k, v in multiclass.items())
            + f" (target >= {TARGET})\n"
        )
        ok = ok and all(v >= TARGET for v in multiclass.values())
    out("targets met\n" if ok else "TARGETS NOT MET\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
