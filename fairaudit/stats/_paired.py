"""Release comparison: a new model against its baseline on the same patients.

Both models scored the same cases, so the two metric values of a group are correlated:
the intervals come from a paired bootstrap (each resample draws cases, and both models'
predictions of a drawn case come along), and the tests are paired ones (McNemar on the
discordant predictions for rates, paired DeLong for AUROC, Wilcoxon signed-rank on
per-case Brier scores). Groups are resampled within themselves, as in the main audit, so
a disparity (group minus reference) and its change since the baseline come from the same
resamples of both groups.

With patient clusters (docs/statistics.md, "Patient-level resampling") a group whose
patients hold several cases is resampled by patient, and its tests take the patient as
the unit: a sign-flip test of each patient's discordant-prediction balance for rates
(the exact McNemar test when every patient has one case), Obuchowski's (1997) clustered
variance of the paired AUROC difference (DeLong's when every patient has one case), and
Wilcoxon's signed-rank test on each patient's mean Brier difference.

Never imports torch or pydicom.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from fairaudit._util.absent import ABSENT
from fairaudit.stats._intervals import percentile_interval
from fairaudit.stats.result import Estimate

PAIRED_METRICS = (
    "tpr",
    "fnr",
    "tnr",
    "fpr",
    "selection_rate",
    "accuracy",
    "balanced_accuracy",
    "auroc",
    "brier",
)
SCORE_ONLY = ("auroc", "brier")
_CHUNK = 256
# The patients' sign-flip test enumerates every flip up to this many discordant patients,
# and draws this many flips (seeded) above it.
_EXACT_FLIPS = 16
_RANDOM_FLIPS = 20_000

# For each rate: which cases it is measured on and what counts as the event, so McNemar
# compares the two models' events on exactly those cases.
_MCNEMAR = {
    "tpr": ("positives", "predicted positive"),
    "fnr": ("positives", "predicted positive"),
    "tnr": ("negatives", "predicted negative"),
    "fpr": ("negatives", "predicted negative"),
    "selection_rate": ("all", "predicted positive"),
    "accuracy": ("all", "correct"),
}


@dataclass(frozen=True)
class PairedTest:
    test: str
    p_value: float | None
    reason: str | None = None


def _stream(seed: int, *names: str) -> np.random.Generator:
    """A generator of its own for each (attribute, group): results do not depend on order."""
    key = [zlib.crc32(n.encode("utf-8")) for n in names]
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _auroc_weighted(y: np.ndarray, s: np.ndarray, w: np.ndarray) -> np.ndarray:
    """AUROC of each weight row (ties count one half), from one sort of the scores."""
    order = np.argsort(s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order].astype(float)
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    ws = w[:, order]
    pos = np.add.reduceat(ws * y_sorted, starts, axis=1)
    neg = np.add.reduceat(ws * (1.0 - y_sorted), starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    num = (pos * (below + 0.5 * neg)).sum(axis=1)
    den = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def metrics_weighted(
    y: np.ndarray, s: np.ndarray, w: np.ndarray, threshold: float, has_scores: bool = True
) -> dict[str, np.ndarray]:
    """Every paired metric for each row of case weights `w` (shape (R, n)); NaN if undefined."""
    yb = y.astype(bool)
    pred = s >= threshold
    yf, pf = yb.astype(float), pred.astype(float)
    n = w.sum(axis=1)
    tp = w @ (yf * pf)
    pos = w @ yf
    fp = w @ ((1 - yf) * pf)
    neg = n - pos
    tn = neg - fp
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = np.where(pos > 0, tp / np.where(pos > 0, pos, 1), np.nan)
        tnr = np.where(neg > 0, tn / np.where(neg > 0, neg, 1), np.nan)
        out = {
            "tpr": tpr,
            "fnr": 1 - tpr,
            "tnr": tnr,
            "fpr": 1 - tnr,
            "selection_rate": (tp + fp) / n,
            "accuracy": (tp + tn) / n,
            "balanced_accuracy": (tpr + tnr) / 2,
        }
        if has_scores:
            out["auroc"] = _auroc_weighted(yb, s, w)
            out["brier"] = (w @ ((s - yf) ** 2)) / n
    return out


def _delong_structural(y: np.ndarray, s: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUROC and DeLong's placement values (V10 over positives, V01 over negatives)."""
    pos, neg = s[y], s[~y]
    # Mid-ranks give both placements without the m x n kernel matrix.
    r_all = sps.rankdata(s)
    r_pos = sps.rankdata(pos)
    r_neg = sps.rankdata(neg)
    m, n = len(pos), len(neg)
    v10 = (r_all[y] - r_pos) / n
    v01 = 1.0 - (r_all[~y] - r_neg) / m
    return float(v10.mean()), v10, v01


def paired_delong(y: np.ndarray, s_new: np.ndarray, s_base: np.ndarray) -> PairedTest:
    """DeLong, DeLong & Clarke-Pearson (1988) for two correlated ROC curves."""
    yb = y.astype(bool)
    m, n = int(yb.sum()), int((~yb).sum())
    if m < 2 or n < 2:
        return PairedTest("delong_paired", None, "needs at least 2 positives and 2 negatives")
    a1, v10a, v01a = _delong_structural(yb, s_new)
    a2, v10b, v01b = _delong_structural(yb, s_base)
    s10 = np.cov(np.vstack([v10a, v10b]))
    s01 = np.cov(np.vstack([v01a, v01b]))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    if not var > 1e-15:
        if a1 == a2:
            return PairedTest("delong_paired", 1.0)
        return PairedTest("delong_paired", None, "zero variance of the AUROC difference")
    z = (a1 - a2) / np.sqrt(var)
    return PairedTest("delong_paired", float(2 * sps.norm.sf(abs(z))))


def paired_obuchowski(y: np.ndarray, s_new: np.ndarray, s_base: np.ndarray, units: np.ndarray) -> PairedTest:
    """Two correlated AUROCs with patient clusters: Obuchowski's (1997) clustered variance
    applied to the difference of the two models' placement values (DeLong's when every
    patient has one case)."""
    yb = y.astype(bool)
    m, n = int(yb.sum()), int((~yb).sum())
    if m < 2 or n < 2:
        return PairedTest("obuchowski_paired", None, "needs at least 2 positives and 2 negatives")
    a1, v10a, v01a = _delong_structural(yb, s_new)
    a2, v10b, v01b = _delong_structural(yb, s_base)
    _, unit = np.unique(units, return_inverse=True)
    k = int(unit.max()) + 1
    d10 = np.bincount(unit[yb], weights=v10a - v10b, minlength=k)
    d01 = np.bincount(unit[~yb], weights=v01a - v01b, minlength=k)
    m_i = np.bincount(unit[yb], minlength=k)
    n_i = np.bincount(unit[~yb], minlength=k)
    d10 -= m_i * (a1 - a2)
    d01 -= n_i * (a1 - a2)
    i10, i01 = int((m_i > 0).sum()), int((n_i > 0).sum())
    if i10 < 2 or i01 < 2:
        return PairedTest("obuchowski_paired", None, "needs positives and negatives of at least 2 patients")
    var = (
        i10 / ((i10 - 1) * m * m) * float(d10 @ d10)
        + i01 / ((i01 - 1) * n * n) * float(d01 @ d01)
        + 2 * k / (k - 1) * float(d10 @ d01) / (m * n)
    )
    if not var > 1e-15:
        if a1 == a2:
            return PairedTest("obuchowski_paired", 1.0)
        return PairedTest("obuchowski_paired", None, "zero variance of the AUROC difference")
    z = (a1 - a2) / np.sqrt(var)
    return PairedTest("obuchowski_paired", float(2 * sps.norm.sf(abs(z))))


def sign_flip_p(d: np.ndarray, rng: np.random.Generator) -> float:
    """Two-sided p of sum(d) under random signs of the nonzero d (each patient's difference
    is symmetric about 0 when the two models are exchangeable within the patient): every
    flip enumerated up to 16 nonzero values, else 20,000 seeded flips."""
    d = d[d != 0]
    if d.size == 0:
        return 1.0
    t = abs(float(d.sum()))
    tol = 1e-9 * max(1.0, float(np.abs(d).sum()))
    if d.size <= _EXACT_FLIPS:
        signs = 1 - 2 * ((np.arange(2**d.size)[:, None] >> np.arange(d.size)) & 1)
        return float(np.mean(np.abs(signs @ d) >= t - tol))
    hits = 0
    for a in range(0, _RANDOM_FLIPS, 2_000):
        signs = rng.choice((-1.0, 1.0), size=(min(2_000, _RANDOM_FLIPS - a), d.size))
        hits += int((np.abs(signs @ d) >= t - tol).sum())
    return (1 + hits) / (1 + _RANDOM_FLIPS)


def _events(metric: str, y: np.ndarray, s_new: np.ndarray, s_base: np.ndarray, t: float):
    """The cases `metric` is measured on (mask) and each model's event on them."""
    cases, event = _MCNEMAR[metric]
    yb = y.astype(bool)
    keep = yb if cases == "positives" else (~yb if cases == "negatives" else np.ones_like(yb))
    pn, pb = s_new[keep] >= t, s_base[keep] >= t
    if event == "predicted negative":
        pn, pb = ~pn, ~pb
    elif event == "correct":
        pn, pb = pn == yb[keep], pb == yb[keep]
    return keep, pn, pb


def mcnemar_patients(
    metric: str,
    y: np.ndarray,
    s_new: np.ndarray,
    s_base: np.ndarray,
    t: float,
    units: np.ndarray,
    rng: np.random.Generator,
) -> PairedTest:
    """McNemar's question with patients as the unit: the sign-flip test of each patient's
    (new-only events - baseline-only events); the exact McNemar test when each patient has
    one case of the metric's denominator."""
    cases, _ = _MCNEMAR[metric]
    keep, pn, pb = _events(metric, y, s_new, s_base, t)
    if keep.sum() == 0:
        return PairedTest("mcnemar_patients", None, f"no {cases} in this group")
    _, unit = np.unique(units[keep], return_inverse=True)
    d = np.bincount(unit, weights=(pn & ~pb).astype(float) - (~pn & pb).astype(float))
    return PairedTest("mcnemar_patients", sign_flip_p(d, rng))


def mcnemar_test(metric: str, y: np.ndarray, s_new: np.ndarray, s_base: np.ndarray, t: float) -> PairedTest:
    """Exact McNemar test on the cases where the two models' predictions disagree."""
    from statsmodels.stats.contingency_tables import mcnemar

    cases, _ = _MCNEMAR[metric]
    keep, pn, pb = _events(metric, y, s_new, s_base, t)
    if keep.sum() == 0:
        return PairedTest("mcnemar", None, f"no {cases} in this group")
    table = [[int((pn & pb).sum()), int((pn & ~pb).sum())], [int((~pn & pb).sum()), int((~pn & ~pb).sum())]]
    if table[0][1] + table[1][0] == 0:
        return PairedTest("mcnemar", 1.0)
    return PairedTest("mcnemar", float(mcnemar(table, exact=True).pvalue))


def paired_test(
    metric: str,
    y: np.ndarray,
    s_new: np.ndarray,
    s_base: np.ndarray,
    t: float,
    units: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
) -> PairedTest:
    """The paired test of the release comparison for `metric` (docs/ci.md, "A release
    must not widen a gap"); with `units` (one patient code per case) patients are the unit."""
    if units is not None:
        return _paired_test_patients(metric, y, s_new, s_base, t, units, rng or np.random.default_rng(0))
    if metric in _MCNEMAR:
        return mcnemar_test(metric, y, s_new, s_base, t)
    if metric == "auroc":
        return paired_delong(y, s_new, s_base)
    if metric == "brier":
        d = (s_new - y) ** 2 - (s_base - y) ** 2
        if not np.any(d != 0):
            return PairedTest("wilcoxon", 1.0)
        return PairedTest("wilcoxon", float(sps.wilcoxon(d).pvalue))
    return PairedTest("none", None, f"no paired test for {metric}; see its bootstrap interval")


def _paired_test_patients(
    metric: str,
    y: np.ndarray,
    s_new: np.ndarray,
    s_base: np.ndarray,
    t: float,
    units: np.ndarray,
    rng: np.random.Generator,
) -> PairedTest:
    if metric in _MCNEMAR:
        return mcnemar_patients(metric, y, s_new, s_base, t, units, rng)
    if metric == "auroc":
        return paired_obuchowski(y, s_new, s_base, units)
    if metric == "brier":
        _, unit = np.unique(units, return_inverse=True)
        yf = y.astype(float)
        d = np.bincount(unit, weights=(s_new - yf) ** 2 - (s_base - yf) ** 2) / np.bincount(unit)
        if not np.any(d != 0):
            return PairedTest("wilcoxon_patients", 1.0)
        return PairedTest("wilcoxon_patients", float(sps.wilcoxon(d).pvalue))
    return PairedTest("none", None, f"no paired test for {metric}; see its bootstrap interval")


@dataclass
class GroupBoot:
    """Point values and paired-bootstrap replicates of both models for one group."""

    n: int
    new: dict[str, float]
    base: dict[str, float]
    boot_new: dict[str, np.ndarray]
    boot_base: dict[str, np.ndarray]


def group_bootstrap(
    y: np.ndarray,
    s_new: np.ndarray,
    s_base: np.ndarray,
    threshold: float,
    bootstrap: int,
    rng: np.random.Generator,
    has_scores: bool = True,
    units: np.ndarray | None = None,
) -> GroupBoot:
    """Resample the group's cases B times (its patients, with `units`, one patient code per
    case: a drawn patient brings all its cases); both models see the same drawn cases."""
    from fairaudit.stats._clusters import bootstrap_weights

    n = len(y)
    unit = np.unique(units, return_inverse=True)[1] if units is not None else None
    ones = np.ones((1, n))
    new = {k: float(v[0]) for k, v in metrics_weighted(y, s_new, ones, threshold, has_scores).items()}
    base = {k: float(v[0]) for k, v in metrics_weighted(y, s_base, ones, threshold, has_scores).items()}
    parts_new: dict[str, list[np.ndarray]] = {k: [] for k in new}
    parts_base: dict[str, list[np.ndarray]] = {k: [] for k in base}
    done = 0
    while done < bootstrap:
        b = min(_CHUNK, bootstrap - done)
        if unit is None:
            w = rng.multinomial(n, np.full(n, 1.0 / n), size=b).astype(float)
        else:
            w = bootstrap_weights(int(unit.max()) + 1, b, rng)[:, unit]
        for k, v in metrics_weighted(y, s_new, w, threshold, has_scores).items():
            parts_new[k].append(v)
        for k, v in metrics_weighted(y, s_base, w, threshold, has_scores).items():
            parts_base[k].append(v)
        done += b
    return GroupBoot(
        n,
        new,
        base,
        {k: np.concatenate(v) for k, v in parts_new.items()},
        {k: np.concatenate(v) for k, v in parts_base.items()},
    )


def _estimate(value: float, boot: np.ndarray, level: float, reason: str) -> Estimate:
    finite = boot[np.isfinite(boot)]
    ci = percentile_interval(finite, level) if finite.size >= 0.5 * boot.size and finite.size > 1 else None
    return Estimate.of(value, ci, reason)


def compare_to_baseline(
    y: np.ndarray,
    s_new: np.ndarray,
    s_base: np.ndarray,
    attributes: dict[str, np.ndarray],
    references: dict[str, str],
    *,
    threshold: float,
    bootstrap: int,
    ci_level: float,
    seed: int,
    min_group_size: int,
    metrics: Sequence[str] = PAIRED_METRICS,
    has_scores: bool = True,
    clusters: np.ndarray | None = None,
) -> list[dict]:
    """Per attribute: each group's change since the baseline and each gap's change.

    `clusters`: one patient code per case; a group where some patient has several cases is
    resampled and tested by patient (each group's `unit` says which).

    Returns the `baseline.attributes` list of results.json: for every group and metric the
    two values, the change (new minus baseline) with its paired interval and paired test;
    for every non-reference group the disparity (group minus reference) under both models
    and `disparity_increase` = |gap now| - |gap before|, with its interval.
    """
    y = np.asarray(y).astype(int)
    s_new = np.asarray(s_new, dtype=float)
    s_base = np.asarray(s_base, dtype=float)
    metrics = [m for m in metrics if has_scores or m not in SCORE_ONLY]
    out = []
    for attr, values in attributes.items():
        values = np.asarray(values, dtype=object)
        names = sorted({str(v) for v in values} - {ABSENT})  # a record without a value: in no group
        boots: dict[str, GroupBoot] = {}
        units: dict[str, np.ndarray | None] = {}
        for g in names:
            idx = np.flatnonzero(values.astype(str) == g)
            units[g] = _patients(clusters, idx)
            boots[g] = group_bootstrap(
                y[idx], s_new[idx], s_base[idx], threshold, bootstrap, _stream(seed, attr, g), has_scores,
                units[g],
            )  # fmt: skip
        ref = references.get(attr) or max(names, key=lambda g: (boots[g].n, g))
        groups = []
        for g in names:
            gb = boots[g]
            idx = np.flatnonzero(values.astype(str) == g)
            rows = {}
            test_rng = _stream(seed, attr, g, "test")
            for m in metrics:
                test = paired_test(m, y[idx], s_new[idx], s_base[idx], threshold, units[g], test_rng)
                change = _estimate(
                    gb.new[m] - gb.base[m], gb.boot_new[m] - gb.boot_base[m], ci_level, "undefined in a model"
                )
                row = {
                    "new": _nullable(gb.new[m]),
                    "baseline": _nullable(gb.base[m]),
                    "change": change.to_dict(),
                    "test": test.test,
                    "p_value": test.p_value,
                }
                if test.reason:
                    row["test_reason"] = test.reason
                if g != ref:
                    rb = boots[ref]
                    d_new = gb.new[m] - rb.new[m]
                    d_base = gb.base[m] - rb.base[m]
                    inc_boot = np.abs(gb.boot_new[m] - rb.boot_new[m]) - np.abs(
                        gb.boot_base[m] - rb.boot_base[m]
                    )
                    row["disparity_new"] = _nullable(d_new)
                    row["disparity_baseline"] = _nullable(d_base)
                    row["disparity_increase"] = _estimate(
                        abs(d_new) - abs(d_base), inc_boot, ci_level, "a gap is undefined"
                    ).to_dict()
                rows[m] = row
            unit = "patient" if units[g] is not None else "case"
            groups.append(
                {"group": g, "n": gb.n, "small": gb.n < min_group_size, "unit": unit, "metrics": rows}
            )
        out.append({"name": attr, "reference": ref, "groups": groups})
    return out


def _patients(clusters: np.ndarray | None, idx: np.ndarray) -> np.ndarray | None:
    """The group's patient codes when some patient has several of its cases, else None."""
    if clusters is None or idx.size == 0:
        return None
    codes = np.asarray(clusters)[idx]
    return codes if np.unique(codes).size < codes.size else None


def _nullable(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None
