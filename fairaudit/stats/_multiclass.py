"""Multi-class audits (`--task multiclass`): the model as a whole, each class one-vs-rest,
and every comparison corrected as one family (docs/multiclass.md).

The predicted class is the argmax of the class probabilities (ties to the class listed
first). The audit has three parts, each reusing the single-label engine where it can:

- accuracy: the single-label engine on "was the record classified correctly" (a rate:
  score interval, Newcombe difference, Fisher's test, patient design effects);
- balanced accuracy (macro tpr), macro fpr and macro one-vs-rest AUROC: statistics of all
  classes at once that no closed form covers, so a bootstrap of patients (records without
  patient ids) stratified by group, and a permutation test of patients between the group
  and its reference;
- per class, one-vs-rest: tpr, fnr, tnr, fpr, ppv, npv, prevalence at the argmax, and
  auroc of the class's probability, each from the single-label engine.

Then the p-values of all parts form one primary and one exploratory family
(`adjust_together`), as the findings of a multi-label audit do. Never imports torch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.stats import norm

from fairaudit._util.absent import ABSENT
from fairaudit.stats import _score as S
from fairaudit.stats import _tests as T
from fairaudit.stats._audit import AuditConfig, adjust_together, run_audit
from fairaudit.stats._clusters import proportion_design_effect
from fairaudit.stats._intervals import percentile_interval
from fairaudit.stats._resample import generator
from fairaudit.stats.result import (
    AuditResult,
    Comparison,
    Estimate,
    MetricSummary,
)

log = logging.getLogger(__name__)

#: The model-wide metrics bootstrapped here (balanced_accuracy is the macro tpr, as in
#: scikit-learn's balanced_accuracy_score).
MACRO_METRICS: tuple[str, ...] = ("balanced_accuracy", "macro_fpr", "macro_auroc")
#: The metrics of the top-level (model-wide) block of a multi-class results.json.
SUMMARY_METRICS: tuple[str, ...] = ("accuracy", *MACRO_METRICS)
#: Each class's one-vs-rest metrics.
CLASS_METRICS: tuple[str, ...] = ("tpr", "fnr", "tnr", "fpr", "ppv", "npv", "prevalence", "auroc")
#: Metrics a gate policy may name in a multi-class audit.
GATE_METRICS: tuple[str, ...] = ("accuracy", "balanced_accuracy")
HIGHER: dict[str, bool] = {
    "accuracy": True,
    "balanced_accuracy": True,
    "macro_fpr": False,
    "macro_auroc": True,
}
_STREAM = 7  # generator key of this module's draws (the engine's streams are 0-6)
_METHOD = "bootstrap_percentile_expanded"
_CELLS = 5_000_000  # replicate x record weights held at once


# ---------------------------------------------------------------- weighted macro metrics


@dataclass(frozen=True)
class _Records:
    """One set of records: true class, predicted class, probabilities, and a patient code
    per record (0..C-1; each record its own patient without patient ids)."""

    y: np.ndarray
    pred: np.ndarray
    p: np.ndarray
    clusters: np.ndarray

    @property
    def n_clusters(self) -> int:
        return int(self.clusters.max()) + 1 if self.clusters.size else 0

    def subset(self, mask: np.ndarray) -> _Records:
        _, codes = np.unique(self.clusters[mask], return_inverse=True)
        return _Records(self.y[mask], self.pred[mask], self.p[mask], codes.ravel())


def _macro(rec: _Records, w: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """balanced_accuracy, macro_fpr and macro_auroc of `rec` under record weights `w` (one
    row per replicate): each class's rate where its denominator is positive, averaged over
    those classes (scikit-learn's convention)."""
    w = np.atleast_2d(np.asarray(w, dtype=np.float64))
    cell = rec.y * k + rec.pred
    conf = np.stack([w[:, cell == c].sum(axis=1) for c in range(k * k)], axis=1).reshape(-1, k, k)
    support = conf.sum(axis=2)
    hits = np.diagonal(conf, axis1=1, axis2=2)
    predicted = conf.sum(axis=1)
    total = support.sum(axis=1, keepdims=True)
    negatives = total - support
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = np.where(support > 0, hits / np.where(support > 0, support, 1), np.nan)
        fpr = np.where(negatives > 0, (predicted - hits) / np.where(negatives > 0, negatives, 1), np.nan)
    auc = np.full((w.shape[0], k), np.nan)
    for j in range(k):
        auc[:, j] = _weighted_auroc(rec.p[:, j], rec.y == j, w)
    return {
        "balanced_accuracy": _nanmean(tpr),
        "macro_fpr": _nanmean(fpr),
        "macro_auroc": _nanmean(auc),
    }


def _nanmean(values: np.ndarray) -> np.ndarray:
    defined = np.isfinite(values)
    count = defined.sum(axis=1)
    total = np.where(defined, values, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.where(count > 0, count, 1), np.nan)


def _weighted_auroc(score: np.ndarray, positive: np.ndarray, w: np.ndarray) -> np.ndarray:
    """AUROC of `score` for `positive` under each row of weights: the weighted share of
    (positive, negative) pairs ordered correctly, ties counting a half (Mann-Whitney)."""
    order = np.argsort(score, kind="stable")
    s = score[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]]) if s.size else np.array([], dtype=int)
    if starts.size == 0:
        return np.full(w.shape[0], np.nan)
    ws = w[:, order]
    pos = positive[order]
    wp = np.add.reduceat(np.where(pos, ws, 0.0), starts, axis=1)
    wn = np.add.reduceat(np.where(pos, 0.0, ws), starts, axis=1)
    below = np.cumsum(wn, axis=1) - wn
    n_pos, n_neg = wp.sum(axis=1), wn.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (wp * (below + 0.5 * wn)).sum(axis=1) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), out, np.nan)


def macro_point(rec: _Records, k: int) -> dict[str, float]:
    """The macro metrics of `rec` as they are (every record weight 1)."""
    return {m: float(v[0]) for m, v in _macro(rec, np.ones((1, rec.y.size)), k).items()}


def _chunks(total: int, n: int) -> list[int]:
    size = max(1, min(total, _CELLS // max(n, 1)))
    return [min(size, total - a) for a in range(0, total, size)]


def _bootstrap(rec: _Records, k: int, b: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """`b` resamples of the group's patients (with replacement), each patient's records
    together; the macro metrics of each."""
    out: dict[str, list[np.ndarray]] = {m: [] for m in MACRO_METRICS}
    c = rec.n_clusters
    for size in _chunks(b, rec.y.size):
        draws = rng.multinomial(c, np.full(c, 1.0 / c), size=size).astype(np.float64)
        for m, v in _macro(rec, draws[:, rec.clusters], k).items():
            out[m].append(v)
    return {m: np.concatenate(v) for m, v in out.items()}


def _permutation_nulls(
    group: _Records, ref: _Records, k: int, n_perm: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Differences group - reference after shuffling whole patients between the two."""
    pooled = _Records(
        np.r_[group.y, ref.y],
        np.r_[group.pred, ref.pred],
        np.r_[group.p, ref.p],
        np.r_[group.clusters, ref.clusters + group.n_clusters],
    )
    n_g, c = group.n_clusters, pooled.n_clusters
    out: dict[str, list[np.ndarray]] = {m: [] for m in MACRO_METRICS}
    for size in _chunks(n_perm, pooled.y.size):
        in_group = rng.permuted(np.tile(np.arange(c) < n_g, (size, 1)), axis=1).astype(np.float64)
        w = in_group[:, pooled.clusters]
        a, b = _macro(pooled, w, k), _macro(pooled, 1.0 - w, k)
        for m in MACRO_METRICS:
            out[m].append(a[m] - b[m])
    return {m: np.concatenate(v) for m, v in out.items()}


# ---------------------------------------------------------------- estimates and comparisons


def _expanded_level(z: float, m: int) -> float:
    """The percentile level that widens a bootstrap of m patients for its small size: the
    expanded percentile interval (Hesterberg 2015), quantile sqrt(m / (m - 1)) t_{m-1} in
    place of z; at 20 patients a 95% interval takes the 96.8% percentiles."""
    if m < 2:
        return 1.0 - 2.0 * float(norm.sf(z))
    from scipy.stats import t as student_t

    wide = float(np.sqrt(m / (m - 1.0)) * student_t.isf(norm.sf(z), m - 1))
    return 1.0 - 2.0 * float(norm.sf(wide))


def _interval(value: float, boot: np.ndarray, level: float, why: str, n: int, m: int) -> Estimate:
    """A percentile interval of `boot`, expanded for its `m` patients (or records)."""
    if not np.isfinite(value):
        return Estimate(None, None, why, n=n)
    ci = percentile_interval(boot, _expanded_level(S.z_of(level), m))
    if ci is None:
        return Estimate(float(value), None, "too few resamples define it", n=n)
    return Estimate(float(value), ci, None, _METHOD, n=n)


def _percentile_at(boot: np.ndarray, m: int) -> Any:
    def at(z: float) -> tuple[float, float]:
        ci = percentile_interval(boot, _expanded_level(z, m))
        return ci if ci is not None else (float("nan"), float("nan"))

    return at


#: With the score (or exact) methods every macro metric is MOVER of its classes' intervals
#: (Zou & Donner 2008), as the engine's binary balanced accuracy is MOVER of its two classes'
#: recalls; each class's design effect also holds the classes' correlation (_rates, _aurocs).
_MOVER_METRICS: tuple[str, ...] = MACRO_METRICS
_INVERTED_TEST = {"score": "newcombe_score", "exact": "mover_exact", "auroc": "auroc_score_mover"}


@dataclass(frozen=True)
class _Rates:
    """A group's per-class rates of one macro metric: (successes, cases, design effect) of
    each class whose denominator is positive."""

    parts: tuple[tuple[float, float, float], ...]

    @property
    def value(self) -> float:
        return float(np.mean([x / n for x, n, _ in self.parts])) if self.parts else float("nan")

    def mover(self, z: float, sign: float, prop: Any) -> list[tuple[float, float, tuple[float, float]]]:
        w = sign / len(self.parts)
        return [(w, x / n, prop(x / d, n / d, z)) for x, n, d in self.parts]


def _rates(rec: _Records, k: int, metric: str, z: float) -> _Rates:
    """balanced_accuracy: each class's recall; macro_fpr: each class's false-positive rate;
    with patients, each with its design effect (fairaudit.stats._clusters)."""
    clustered = rec.n_clusters < rec.y.size
    c = rec.n_clusters
    parts = []
    per_cluster = []  # each class's (successes, cases) per patient
    for j in range(k):
        den = rec.y == j if metric == "balanced_accuracy" else rec.y != j
        num = den & (rec.pred == j)  # recalled (tp), or called j though not j (fp)
        n = float(den.sum())
        if n == 0:
            continue
        d = 1.0
        if clustered:
            x_c = np.bincount(rec.clusters, num.astype(float), c)
            n_c = np.bincount(rec.clusters, den.astype(float), c)
            d = proportion_design_effect(x_c, n_c, z)
            per_cluster.append((x_c, n_c))
        parts.append((float(num.sum()), n, d))
    if clustered and parts:
        # A patient's records of different classes share the patient's outcome too: the mean's
        # own design effect (cluster-robust over independent-classes variance) bounds each class's.
        whole = _mean_design_effect(per_cluster, z)
        parts = [(x, n, max(d, whole)) for x, n, d in parts]
    return _Rates(tuple(parts))


def _mean_design_effect(per_cluster: list[tuple[np.ndarray, np.ndarray]], z: float) -> float:
    """Design effect of a mean of class rates sum(x_j) / sum(n_j) over the classes: the
    ratio estimators' linearised cluster-robust variance m/(m-1) sum_c e_c^2, e_c =
    sum_j (x_jc - r_j n_jc) / n_j, over the variance the classes would have as independent
    binomials, times (t_df / z)^2 with Satterthwaite's df, as
    fairaudit.stats._clusters.proportion_design_effect does for one rate."""
    from scipy.stats import t as student_t

    e = np.zeros_like(per_cluster[0][0])
    independent = 0.0
    for x_c, n_c in per_cluster:
        n = n_c.sum()
        r = x_c.sum() / n
        e += (x_c - r * n_c) / n
        independent += r * (1.0 - r) / n
    m = int(np.sum(sum(n_c for _, n_c in per_cluster) > 0))
    ss = float(e @ e)
    if m < 2 or independent <= 0 or ss <= 0:
        return 1.0
    ratio = m / (m - 1) * ss / independent
    df = max(1.0, ss * ss / float(np.sum(e**4)))
    ratio *= (float(student_t.isf(norm.sf(z), df)) / z) ** 2
    return max(1.0, ratio)


@dataclass(frozen=True)
class _Aurocs:
    """A group's one-vs-rest AUROCs for macro_auroc: (auroc, positives, negatives, design
    effect) of each class with both; `mover` gives each class's AUROC score interval
    (Newcombe 2006) at its effective sizes, the interface of _Rates."""

    parts: tuple[tuple[float, float, float, float], ...]

    @property
    def value(self) -> float:
        return float(np.mean([a for a, _, _, _ in self.parts])) if self.parts else float("nan")

    def mover(
        self, z: float, sign: float, prop: Any = None
    ) -> list[tuple[float, float, tuple[float, float]]]:
        w = sign / len(self.parts)
        return [
            (w, a, S.auroc_score(a, max(1.0, n_pos / d), max(1.0, n_neg / d), z))
            for a, n_pos, n_neg, d in self.parts
        ]


def _placements(score: np.ndarray, positive: np.ndarray) -> tuple[float, np.ndarray]:
    """AUROC and each record's influence on it (DeLong's placement values: a positive's
    (V10 - A) / n_pos, a negative's (V01 - A) / n_neg; their squares sum to DeLong's variance)."""
    pos, neg = score[positive], score[~positive]
    neg_sorted, pos_sorted = np.sort(neg), np.sort(pos)
    v10 = (np.searchsorted(neg_sorted, pos, "left") + np.searchsorted(neg_sorted, pos, "right")) / (
        2.0 * neg.size
    )
    v01 = (
        2.0 * pos.size - np.searchsorted(pos_sorted, neg, "left") - np.searchsorted(pos_sorted, neg, "right")
    ) / (2.0 * pos.size)
    a = float(v10.mean())
    infl = np.empty(score.size)
    infl[positive] = (v10 - a) / pos.size
    infl[~positive] = (v01 - a) / neg.size
    return a, infl


def _aurocs(rec: _Records, k: int, z: float) -> _Aurocs:
    """Each class's AUROC with a design effect: the larger of its own (cluster-robust DeLong
    variance over the records-independent one) and that of the mean over classes, whose
    cluster-robust variance (per patient, the sum of its records' influences on the mean)
    also holds the classes' correlation (they share records), over the variance the classes
    would have as independent, times the small-sample (t_df / z)^2."""
    from scipy.stats import t as student_t

    c = rec.n_clusters
    rows = []
    for j in range(k):
        positive = rec.y == j
        if positive.all() or not positive.any():
            continue
        a, infl = _placements(rec.p[:, j], positive)
        rows.append(
            (a, float(positive.sum()), float((~positive).sum()), np.bincount(rec.clusters, infl, c), infl)
        )
    if not rows:
        return _Aurocs(())

    def robust(e: np.ndarray) -> float:
        m = e.size
        return m / (m - 1.0) * float(e @ e) if m > 1 else 0.0

    def t_factor(e: np.ndarray) -> float:
        ss = float(e @ e)
        if ss <= 0:
            return 1.0
        df = max(1.0, ss * ss / float(np.sum(e**4)))
        return (float(student_t.isf(norm.sf(z), df)) / z) ** 2

    mean_e = sum(r[3] for r in rows) / len(rows)
    independent = sum(robust(r[4]) for r in rows) / len(rows) ** 2
    whole = robust(mean_e) * t_factor(mean_e) / independent if independent > 0 else 1.0
    parts = []
    for a, n_pos, n_neg, e_c, infl in rows:
        own = robust(e_c) * t_factor(e_c) / robust(infl) if robust(infl) > 0 else 1.0
        parts.append((a, n_pos, n_neg, max(1.0, own, whole)))
    return _Aurocs(tuple(parts))


def _parts(rec: _Records, k: int, metric: str, z: float) -> _Rates | _Aurocs:
    """The per-class parts of a macro metric, for its MOVER interval."""
    return _aurocs(rec, k, z) if metric == "macro_auroc" else _rates(rec, k, metric, z)


def _mover_estimate(r: _Rates | _Aurocs, cfg: AuditConfig, why: str, n: int) -> Estimate:
    if not r.parts:
        return Estimate(None, None, why, n=n)
    prop_name = "modified_wilson" if cfg.ci_method == "score" else "clopper_pearson"
    lo, hi = S.mover_sum(r.mover(S.z_of(cfg.ci_level), 1.0, S.PROPORTION_INTERVALS[prop_name]))
    method = "mover_auroc_score" if isinstance(r, _Aurocs) else f"mover_{prop_name}"
    return Estimate(r.value, (max(0.0, lo), min(1.0, hi)), None, method, n=n)


def _mover_comparison(
    g: _Rates | _Aurocs, r: _Rates | _Aurocs, cfg: AuditConfig, why: str
) -> tuple[Estimate, Estimate, Any, Any]:
    """Difference (MOVER of both groups' class rates), ratio (MOVER-R), the inverted test's p."""
    none = Estimate(None, None, why)
    if not g.parts or not r.parts:
        return none, none, None, None
    prop = S.PROPORTION_INTERVALS["modified_wilson" if cfg.ci_method == "score" else "clopper_pearson"]

    def diff_at(z: float) -> tuple[float, float]:
        return S.mover_sum(g.mover(z, 1.0, prop) + r.mover(z, -1.0, prop))

    z = S.z_of(cfg.ci_level)
    d = g.value - r.value
    lo, hi = diff_at(z)
    difference = Estimate(float(d), (float(lo), float(hi)), method="mover")
    ratio = none
    if r.value > 0:
        ig, ir = S.mover_sum(g.mover(z, 1.0, prop)), S.mover_sum(r.mover(z, 1.0, prop))
        rlo, rhi = S.mover_ratio(g.value, ig, r.value, ir)
        if np.isfinite(rlo):
            ratio = Estimate(g.value / r.value, (float(rlo), float(rhi)), None, "mover_r")
    p = S.mover_p_value(diff_at, d)
    return difference, ratio, (float(p) if np.isfinite(p) else None), diff_at


@dataclass
class _Group:
    name: str
    rec: _Records
    point: dict[str, float]
    boot: dict[str, np.ndarray]
    rates: dict[str, _Rates | _Aurocs]


def _macro_comparisons(
    g: _Group, r: _Group, cfg: AuditConfig, nulls: dict[str, np.ndarray]
) -> list[Comparison]:
    rows = []
    small = min(g.rec.y.size, r.rec.y.size) < cfg.min_group_size
    for m in MACRO_METRICS:
        why = f"{m} undefined in this group or the reference"
        if cfg.analytic and m in _MOVER_METRICS:
            difference, ratio, p_mover, diff_at = _mover_comparison(g.rates[m], r.rates[m], cfg, why)
            rows.append(
                Comparison(
                    metric=m,
                    group=g.name,
                    reference=r.name,
                    difference=difference,
                    ratio=ratio,
                    test=_INVERTED_TEST["auroc" if m == "macro_auroc" else cfg.ci_method],
                    p_value=p_mover,
                    reason=None if p_mover is not None else why,
                    small=small,
                    interval_at=diff_at,
                )  # fmt: skip
            )
            continue
        vg, vr = g.point[m], r.point[m]
        d = vg - vr if np.isfinite(vg) and np.isfinite(vr) else np.nan
        diff_boot = g.boot[m] - r.boot[m]
        units = min(g.rec.n_clusters, r.rec.n_clusters)
        difference = _interval(d, diff_boot, cfg.ci_level, why, g.rec.y.size, units)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio_v = vg / vr if np.isfinite(d) and vr > 0 else np.nan
            ratio = _interval(
                ratio_v, g.boot[m] / r.boot[m], cfg.ci_level, why + " (or the reference is 0)", g.rec.y.size,
                units,
            )  # fmt: skip
        p = T.permutation_p_value(d, nulls[m])
        rows.append(
            Comparison(
                metric=m,
                group=g.name,
                reference=r.name,
                difference=difference,
                ratio=ratio,
                test="permutation",
                p_value=p,
                reason=None if p is not None else why,
                small=small,
                interval_at=_percentile_at(diff_boot, units) if difference.ci is not None else None,
            )
        )
    return rows


def _macro_summary(m: str, groups: list[_Group], comps: list[Comparison], cfg: AuditConfig) -> MetricSummary:
    """The attribute's spread in a macro metric: the range over groups that are not small
    (no interval: docs/multiclass.md), the worst comparison in the harmful direction."""
    values = {
        g.name: g.point[m] for g in groups if g.rec.y.size >= cfg.min_group_size and np.isfinite(g.point[m])
    }
    why = "no interval for the range of a macro metric over groups; see the comparisons"
    spread = Estimate(
        float(max(values.values()) - min(values.values())) if len(values) > 1 else None, None, why
    )
    worst_group = None
    if values:
        pick = min if HIGHER[m] else max
        worst_group = pick(values, key=values.__getitem__)
    rows = [c for c in comps if c.metric == m and c.difference.value is not None]
    sign = -1.0 if HIGHER[m] else 1.0
    worst = max(rows, key=lambda c: (not c.small, sign * float(c.difference.value))) if rows else None
    return MetricSummary(spread, Estimate(None, None, why), worst_group, worst, None)


# ---------------------------------------------------------------- the audit


@dataclass
class ClassAudit:
    """One class, one-vs-rest: the single-label engine's result at the argmax (rates) and on
    the class's probability (auroc)."""

    name: str
    score_column: str
    result: AuditResult

    def to_dict(self) -> dict[str, Any]:
        body = self.result.to_dict()
        prevalence = self.result.overall.get("prevalence")
        n_pos = (
            0
            if prevalence is None or prevalence.value is None
            else int(round(prevalence.value * self.result.n))
        )
        return {
            "class": self.name,
            "score_column": self.score_column,
            "n": self.result.n,
            "n_positive": n_pos,
            "overall": body["overall"],
            "attributes": body["attributes"],
            "consistency": body["consistency"],
        }


@dataclass
class MultiClassResult:
    """A multi-class audit: the model-wide block (an AuditResult the reports and the gate
    read as a single-label one), each class's block and the confusion matrices."""

    summary: AuditResult
    classes: list[ClassAudit]
    confusion: dict[str, Any]
    label_column: str = ""

    @property
    def task(self) -> str:
        return self.summary.task

    def comparisons(self) -> list[tuple[Any, Comparison]]:
        return self.summary.comparisons() + [p for c in self.classes for p in c.result.comparisons()]

    def block(self) -> dict[str, Any]:
        """results.json's `multiclass` (docs/multiclass.md)."""
        return {
            "classes": [c.name for c in self.classes],
            "label_column": self.label_column,
            "score_columns": {c.name: c.score_column for c in self.classes},
            "prediction": "argmax",
            "ties": "the class listed first",
            "per_class": [c.to_dict() for c in self.classes],
            "confusion": self.confusion,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary.to_dict(), "multiclass": self.block()}


def predicted_class(probabilities: np.ndarray) -> np.ndarray:
    """The argmax per row; ties go to the class listed first (numpy's argmax takes the first
    maximum), as docs/multiclass.md says."""
    return np.argmax(np.asarray(probabilities, dtype=np.float64), axis=1).astype(np.int64)


def confusion(y: np.ndarray, pred: np.ndarray, k: int) -> dict[str, Any]:
    """Counts (rows: true class, columns: predicted class, in class order) and the rows
    normalised to 1 (null for a class the records do not hold)."""
    counts = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
    rows = counts.sum(axis=1)
    normalized = [
        [float(v) / float(rows[i]) for v in counts[i]] if rows[i] > 0 else [None] * k for i in range(k)
    ]
    return {"n": int(y.size), "counts": counts.astype(int).tolist(), "normalized": normalized}


def _confusion_block(
    y: np.ndarray, pred: np.ndarray, k: int, attributes: dict[str, np.ndarray]
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "rows": "true class",
        "columns": "predicted class",
        "overall": confusion(y, pred, k),
    }
    out["attributes"] = []
    for attr, values in attributes.items():
        values = np.asarray(values).astype(str)
        groups = sorted(set(values.tolist()) - {ABSENT})
        out["attributes"].append(
            {
                "name": attr,
                "groups": [{"group": g, **confusion(y[values == g], pred[values == g], k)} for g in groups],
            }
        )
    return out


def _rename_accuracy(result: AuditResult) -> AuditResult:
    """The engine's audit of "classified correctly" (labels all 1): its tpr is accuracy."""
    result.overall = {"accuracy": result.overall["tpr"]}
    for attr in result.attributes:
        for g in attr.groups:
            g.metrics = {"accuracy": g.metrics["tpr"]}
        attr.comparisons = [c for c in attr.comparisons if c.metric == "tpr"]
        for c in attr.comparisons:
            c.metric = "accuracy"
        attr.omnibus = [o for o in attr.omnibus if o.metric == "tpr"]
        for o in attr.omnibus:
            o.metric = "accuracy"
        attr.summary = {"accuracy": attr.summary["tpr"]} if "tpr" in attr.summary else {}
    return result


def accuracy_audit(
    y: np.ndarray,
    pred: np.ndarray,
    attributes: dict[str, np.ndarray],
    cfg: AuditConfig,
    *,
    references: dict[str, str] | None = None,
    clusters: np.ndarray | None = None,
    family_factor: int = 1,
) -> AuditResult:
    """Accuracy per group: the single-label engine's rate (score interval, patient design
    effects, Fisher's test) of "classified correctly", p-values not yet adjusted."""
    result = run_audit(
        np.ones(np.asarray(y).size, dtype=np.int64), (np.asarray(pred) == np.asarray(y)).astype(np.float64),
        attributes, replace(cfg, threshold=0.5), has_scores=False, references=references, clusters=clusters,
        family_factor=family_factor, adjust_now=False,
    )  # fmt: skip
    return _rename_accuracy(result)


def _merge_class(rates: AuditResult, scored: AuditResult) -> AuditResult:
    """One class's block: the rates at the argmax, auroc from its probability."""

    def pick(d: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
        return {
            m: (other if m == "auroc" else d)[m] for m in CLASS_METRICS if m in (other if m == "auroc" else d)
        }

    rates.overall = pick(rates.overall, scored.overall)
    for a, s in zip(rates.attributes, scored.attributes, strict=True):
        for g, gs in zip(a.groups, s.groups, strict=True):
            g.metrics = pick(g.metrics, gs.metrics)
        a.comparisons = [c for c in a.comparisons if c.metric in CLASS_METRICS and c.metric != "auroc"] + [
            c for c in s.comparisons if c.metric == "auroc"
        ]
        a.omnibus = [o for o in a.omnibus if o.metric in CLASS_METRICS and o.metric != "auroc"] + [
            o for o in s.omnibus if o.metric == "auroc"
        ]
        a.summary = pick(a.summary, s.summary)
    return rates


def permutations_for(cfg: AuditConfig, n_pairs: int, k: int) -> int:
    """Permutations enough for the smallest attainable p (1 / (P + 1)) to pass the first
    corrected threshold of a family holding every tested comparison of the audit."""
    if cfg.correction == "none":
        return cfg.n_permutations
    tested = len(SUMMARY_METRICS) + k * 5  # per class: tpr, fpr, ppv, npv, auroc
    return max(cfg.n_permutations, int(n_pairs * tested / cfg.alpha) + 1)


def run_multiclass(
    labels: np.ndarray,
    probabilities: np.ndarray,
    attributes: dict[str, np.ndarray],
    cfg: AuditConfig,
    *,
    classes: Sequence[str],
    score_columns: Sequence[str] | None = None,
    references: dict[str, str] | None = None,
    clusters: np.ndarray | None = None,
    label_column: str = "",
) -> MultiClassResult:
    """Audit a multi-class model: `labels` class indices 0..K-1, `probabilities` (records,
    K) rows summing to 1 (validated by the caller, fairaudit.cohort.classes)."""
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probabilities, dtype=np.float64)
    k = len(classes)
    pred = predicted_class(p)
    cfg = replace(cfg, threshold=0.5)  # 0/1 inputs to the engine: the argmax decides
    family = k + 1
    # Accuracy first: its references are everyone's, so every block compares the same groups.
    summary = accuracy_audit(
        y, pred, attributes, cfg, references=references, clusters=clusters, family_factor=family
    )
    refs = {a.name: a.reference for a in summary.attributes}

    # Macro metrics: MOVER of the classes' intervals (score and exact methods), else a
    # bootstrap of patients per group and a permutation test per comparison.
    codes = (
        np.arange(y.size)
        if clusters is None
        else np.unique(np.asarray(clusters), return_inverse=True)[1].ravel()
    )
    every = _Records(y, pred, p, codes)

    def boot_of(rec: _Records, key: tuple[int, ...]) -> dict[str, np.ndarray]:
        return {} if cfg.analytic else _bootstrap(rec, k, cfg.bootstrap, generator(cfg.seed, key))

    overall_boot = boot_of(every, (_STREAM, 0))
    overall_point = macro_point(every, k)
    z = S.z_of(cfg.ci_level)
    for m in MACRO_METRICS:
        summary.overall[m] = (
            _mover_estimate(_parts(every, k, m, z), cfg, f"{m} undefined", y.size)
            if cfg.analytic and m in _MOVER_METRICS
            else _interval(
                overall_point[m], overall_boot[m], cfg.ci_level, f"{m} undefined", y.size, every.n_clusters
            )
        )
    n_pairs = sum(max(0, len(a.groups) - 1) for a in summary.attributes)
    n_perm = permutations_for(cfg, n_pairs, k)
    for ai, (attr, values) in enumerate(attributes.items()):
        values = np.asarray(values).astype(str)
        result = summary.attribute(attr)
        groups: list[_Group] = []
        for gi, gr in enumerate(result.groups):
            rec = every.subset(values == gr.group)
            point = macro_point(rec, k)
            boot = boot_of(rec, (_STREAM, 1, ai, gi))
            rates = {m: _parts(rec, k, m, z) for m in _MOVER_METRICS} if cfg.analytic else {}
            groups.append(_Group(gr.group, rec, point, boot, rates))
            for m in MACRO_METRICS:
                why = f"{m} undefined in this group"
                gr.metrics[m] = (
                    _mover_estimate(rates[m], cfg, why, rec.y.size)
                    if cfg.analytic and m in _MOVER_METRICS
                    else _interval(point[m], boot[m], cfg.ci_level, why, rec.y.size, rec.n_clusters)
                )
        ref = next(g for g in groups if g.name == result.reference)
        comps: list[Comparison] = []
        for gi, g in enumerate(groups):
            if g is ref:
                continue
            nulls = (
                {}
                if cfg.analytic
                else _permutation_nulls(g.rec, ref.rec, k, n_perm, generator(cfg.seed, (_STREAM, 2, ai, gi)))
            )
            comps += _macro_comparisons(g, ref, cfg, nulls)
        result.comparisons += comps
        for m in MACRO_METRICS:
            result.summary[m] = _macro_summary(m, groups, comps, cfg)
    if not cfg.analytic:
        summary.config["permutations"] = max(int(summary.config["permutations"]), n_perm)

    per_class: list[ClassAudit] = []
    for j, name in enumerate(classes):
        yj = (y == j).astype(np.int64)
        log.info("class %s: %d of %d records", name, int(yj.sum()), y.size)
        common = {"references": refs, "clusters": clusters, "family_factor": family, "adjust_now": False}
        rates = run_audit(yj, (pred == j).astype(np.float64), attributes, cfg, has_scores=False, **common)
        scored = run_audit(yj, p[:, j], attributes, cfg, has_scores=True, **common)
        column = "" if score_columns is None else str(score_columns[j])
        per_class.append(ClassAudit(str(name), column, _merge_class(rates, scored)))
        summary.config["permutations"] = max(
            int(summary.config["permutations"]),
            int(rates.config["permutations"]),
            int(scored.config["permutations"]),
        )
    adjust_together([summary, *(c.result for c in per_class)], cfg)
    return MultiClassResult(
        summary=summary,
        classes=per_class,
        confusion=_confusion_block(y, pred, k, attributes),
        label_column=label_column,
    )
