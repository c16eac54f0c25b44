"""The AuditResult of a segmentation audit, from per-case metric values.

Same statistics as the classification engine (docs/statistics.md; docs/segmentation.md,
"Per group"), on per-case values:
- a group's value of a metric is the mean over its cases where the metric is defined
  (hd95 and assd need two non-empty masks; volume_error a non-empty truth);
- intervals: bootstrap stratified by group (cases resampled within each group, sizes
  fixed; one draw of case indices serves every metric), percentile or BCa (jackknife of
  the mean for the acceleration); differences and ratios from the same resamples;
- tests: a two-sided permutation test of the difference of means, group vs reference (the
  question the interval of the difference of means answers; Mann-Whitney U answered another,
  stochastic ordering); omnibus: Welch's ANOVA of the group means; families corrected by
  `adjust`, the permutation count raised so that its smallest p can pass the first corrected
  threshold (docs/statistics.md).
Plus, per attribute, the summary measures the segmentation-fairness literature uses:
the skewed error ratio (1 - min group Dice) / (1 - max group Dice), the standard
deviation (population, ddof = 0) of the group mean Dice and the equity-scaled Dice (ES-Dice,
FairSeg: overall / (1 + sum |group - overall|)), over groups of adequate size.
With patient ids (`clusters`), bootstrap and permutation draws take whole patients, the
jackknife leaves one patient out, and Welch's ANOVA compares patients' means
(docs/statistics.md, "Patient-level resampling").
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fairaudit._util.absent import ABSENT
from fairaudit.stats import _tests as T
from fairaudit.stats._audit import AuditConfig, adjust, choose_reference
from fairaudit.stats._clusters import bootstrap_weights, permutation_weights
from fairaudit.stats._intervals import acceleration, bca_interval, percentile_interval
from fairaudit.stats._resample import generator
from fairaudit.stats._segmentation import (
    RATIO_METRICS,
    SEGMENTATION_HIGHER_IS_BETTER,
    SEGMENTATION_METRICS,
)
from fairaudit.stats.result import (
    AttributeResult,
    AuditResult,
    Comparison,
    Estimate,
    GroupResult,
    MetricSummary,
    Omnibus,
)

log = logging.getLogger(__name__)

# Per-group distribution of these metrics (bounded in [0, 1]) for the report's plots.
DISTRIBUTION_METRICS: tuple[str, ...] = ("dice", "iou")
DISTRIBUTION_BINS = 20
DISTRIBUTION_QUANTILES: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)
# Cases x resamples per chunk of the bootstrap (bounds the temporary index array).
_CHUNK_ELEMENTS = 2_000_000


@dataclass
class SegmentationGroupResult(GroupResult):
    """A group of a segmentation audit; n_positive counts cases with a non-empty truth mask."""

    n_defined: dict[str, int] = field(default_factory=dict)
    distributions: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["n_defined"] = dict(self.n_defined)
        out["distributions"] = self.distributions
        return out


@dataclass
class SegmentationAttributeResult(AttributeResult):
    """An attribute of a segmentation audit, with the segmentation fairness summary."""

    segmentation_summary: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["segmentation_summary"] = self.segmentation_summary
        return out


@dataclass
class SegmentationAuditResult(AuditResult):
    overall_n_defined: dict[str, int] = field(default_factory=dict)
    overall_distributions: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["overall"]["n_defined"] = dict(self.overall_n_defined)
        out["overall"]["distributions"] = self.overall_distributions
        return out


@dataclass
class _Group:
    """One group's per-case values, point means, bootstrap means and jackknife means."""

    name: str
    values: dict[str, np.ndarray]
    reasons: dict[str, np.ndarray]
    n_positive: int
    point: dict[str, float] = field(default_factory=dict)
    boot: dict[str, np.ndarray] = field(default_factory=dict)
    loo: dict[str, np.ndarray] = field(default_factory=dict)
    # Per bootstrap resample, how many defined Dice values it holds (the weight of the
    # group's resampled mean in the pooled mean of ES-Dice).
    boot_n_dice: np.ndarray | None = None
    clusters: np.ndarray | None = None  # per case, its patient (0..P-1); None: cases are the unit

    @property
    def n(self) -> int:
        return int(next(iter(self.values.values())).size)

    @property
    def n_units(self) -> int:
        """What resampling draws: patients (when some has two cases or more), else cases."""
        return int(self.clusters.max()) + 1 if self.clusters is not None and self.clusters.size else self.n

    def unit_sums(self, m: str) -> tuple[np.ndarray, np.ndarray]:
        """Per resampling unit, the sum of the defined values of `m` and how many there are."""
        v = self.values[m]
        ok = np.isfinite(v)
        if self.clusters is None:
            return np.where(ok, v, 0.0), ok.astype(np.float64)
        k = self.n_units
        return (
            np.bincount(self.clusters, weights=np.where(ok, v, 0.0), minlength=k),
            np.bincount(self.clusters, weights=ok.astype(np.float64), minlength=k),
        )

    def unit_means(self, m: str) -> np.ndarray:
        """Each unit's mean of `m` (the values Welch's ANOVA compares), where defined."""
        if self.clusters is None:
            return self.defined(m)
        total, count = self.unit_sums(m)
        return total[count > 0] / count[count > 0]

    def defined(self, m: str) -> np.ndarray:
        v = self.values[m]
        return v[np.isfinite(v)]

    def undefined_reason(self, m: str) -> str:
        """Why the group mean is undefined: the per-case reasons, counted."""
        if self.n == 0:
            return "no cases"
        counts = Counter(r for r in self.reasons[m].tolist() if r)
        text = "; ".join(f"{why}: {k}" for why, k in counts.most_common())
        return f"undefined in every case ({text})" if text else "undefined in every case"


def _nanmean_rows(x: np.ndarray) -> np.ndarray:
    finite = np.isfinite(x)
    count = finite.sum(axis=1)
    total = np.where(finite, x, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _prepare(g: _Group, cfg: AuditConfig, key: tuple[int, ...]) -> None:
    """Point means, B bootstrap means (one index draw for every metric), jackknife means."""
    n = g.n
    for m in SEGMENTATION_METRICS:
        d = g.defined(m)
        g.point[m] = float(d.mean()) if d.size else float("nan")
        g.boot[m] = np.full(cfg.bootstrap, np.nan)
        if cfg.ci_method == "bca":
            # Leave one unit (a case, or a patient with all their cases) out.
            total, count = g.unit_sums(m)
            k, s = float(count.sum()), float(total.sum())
            with np.errstate(invalid="ignore", divide="ignore"):
                loo = np.where(count > 0, (s - total) / (k - count), s / k if k else np.nan)
            g.loo[m] = loo.astype(np.float64)
    g.boot_n_dice = np.zeros(cfg.bootstrap)
    if n == 0:
        return
    if g.clusters is not None:
        _prepare_clusters(g, cfg, key)
        return
    size = max(1, _CHUNK_ELEMENTS // n)
    for i, a in enumerate(range(0, cfg.bootstrap, size)):
        b = min(cfg.bootstrap, a + size)
        idx = generator(cfg.seed, key + (i,)).integers(0, n, size=(b - a, n))
        for m in SEGMENTATION_METRICS:
            g.boot[m][a:b] = _nanmean_rows(g.values[m][idx])
        g.boot_n_dice[a:b] = np.isfinite(g.values["dice"][idx]).sum(axis=1)


def _prepare_clusters(g: _Group, cfg: AuditConfig, key: tuple[int, ...]) -> None:
    """Bootstrap means over resamples of patients: sum of drawn patients' values over their count."""
    k = g.n_units
    sums = {m: g.unit_sums(m) for m in SEGMENTATION_METRICS}
    size = max(1, _CHUNK_ELEMENTS // k)
    for i, a in enumerate(range(0, cfg.bootstrap, size)):
        b = min(cfg.bootstrap, a + size)
        weights = bootstrap_weights(k, b - a, generator(cfg.seed, key + (i,)))
        for m, (total, count) in sums.items():
            with np.errstate(invalid="ignore", divide="ignore"):
                num, den = weights @ total, weights @ count
                g.boot[m][a:b] = np.where(den > 0, num / np.maximum(den, 1e-300), np.nan)
                if m == "dice":
                    g.boot_n_dice[a:b] = den


def _interval(cfg: AuditConfig, boot: np.ndarray, value: float, strata) -> tuple[float, float] | None:
    if cfg.ci_method == "bca" and strata is not None:
        return bca_interval(boot, value, acceleration(strata), cfg.ci_level)
    return percentile_interval(boot, cfg.ci_level)


def _estimate(cfg: AuditConfig, value: float, boot: np.ndarray, strata, reason: str) -> Estimate:
    if not np.isfinite(value):
        return Estimate(None, None, reason)
    ci = _interval(cfg, boot, value, strata)
    if ci is None:
        return Estimate(float(value), None, "interval undefined: the metric is undefined in most resamples")
    return Estimate(float(value), ci, None)


def _ones(g: _Group) -> np.ndarray:
    """Jackknife multiplicities: one per resampling unit."""
    return np.ones(g.n_units)


def _group_estimates(g: _Group, cfg: AuditConfig) -> dict[str, Estimate]:
    out = {}
    for m in SEGMENTATION_METRICS:
        strata = [(g.loo[m], _ones(g))] if cfg.ci_method == "bca" else None
        out[m] = _estimate(cfg, g.point[m], g.boot[m], strata, g.undefined_reason(m))
    return out


def distribution(values: np.ndarray) -> dict[str, Any]:
    """Histogram (20 equal bins over the values' own range, the last closed) and quantiles of
    the defined values. Bins over [0, 1] put a good model's Dice in one bar (issue 23), so the
    edges follow the data; a group whose values are all equal gets one 0.05 wide span around them."""
    d = np.clip(values[np.isfinite(values)], 0.0, 1.0)
    lo, hi = (float(d.min()), float(d.max())) if d.size else (0.0, 1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5 / DISTRIBUTION_BINS, hi + 0.5 / DISTRIBUTION_BINS
    counts, edges = np.histogram(d, bins=DISTRIBUTION_BINS, range=(lo, hi))
    quantiles = (
        {
            f"{q:g}": float(v)
            for q, v in zip(DISTRIBUTION_QUANTILES, np.quantile(d, DISTRIBUTION_QUANTILES), strict=True)
        }
        if d.size
        else {f"{q:g}": None for q in DISTRIBUTION_QUANTILES}
    )
    return {
        "n": int(d.size),
        "edges": [round(float(e), 10) for e in edges],
        "counts": [int(c) for c in counts],
        "quantiles": quantiles,
        "min": float(d.min()) if d.size else None,
        "max": float(d.max()) if d.size else None,
    }


def _group_result(g: _Group, cfg: AuditConfig) -> SegmentationGroupResult:
    return SegmentationGroupResult(
        group=g.name,
        n=g.n,
        n_positive=g.n_positive,
        small=g.n < cfg.min_group_size,
        metrics=_group_estimates(g, cfg),
        n_defined={m: int(g.defined(m).size) for m in SEGMENTATION_METRICS},
        distributions={m: distribution(g.values[m]) for m in DISTRIBUTION_METRICS},
    )


def permutation_mean_test(
    x: np.ndarray, y: np.ndarray, n_perm: int, rng: np.random.Generator
) -> T.TestResult:
    """Two-sided permutation test of mean(x) - mean(y): group labels exchanged `n_perm` times.

    Each permutation is a uniformly random split of the pooled cases into sizes |x| and |y|
    (argpartition of uniform keys), in chunks that bound memory.
    """
    if x.size == 0 or y.size == 0:
        return T.TestResult("permutation", None, reason="a group has no cases")
    z = np.concatenate([x, y]).astype(np.float64)
    n, n1 = z.size, x.size
    total = float(z.sum())
    observed = float(x.mean() - y.mean())
    null = np.empty(n_perm)
    chunk = max(1, 4_000_000 // n)
    for a in range(0, n_perm, chunk):
        b = min(n_perm, a + chunk)
        first = np.argpartition(rng.random((b - a, n)), n1 - 1, axis=1)[:, :n1]
        s1 = z[first].sum(axis=1)
        null[a:b] = s1 / n1 - (total - s1) / (n - n1)
    p = T.permutation_p_value(observed, null)
    return T.TestResult("permutation", p, statistic=observed, reason=None if p is not None else "undefined")


def cluster_permutation_mean_test(
    first: tuple[np.ndarray, np.ndarray],
    second: tuple[np.ndarray, np.ndarray],
    n_perm: int,
    rng: np.random.Generator,
) -> T.TestResult:
    """`permutation_mean_test` with whole patients exchanged: each unit is (sum, count) of its cases."""
    total = np.concatenate([first[0], second[0]])
    count = np.concatenate([first[1], second[1]])
    n1 = first[0].size
    s_all, c_all = float(total.sum()), float(count.sum())
    observed = float(first[0].sum() / first[1].sum() - second[0].sum() / second[1].sum())
    null = np.empty(n_perm)
    chunk = max(1, 4_000_000 // total.size)
    for a in range(0, n_perm, chunk):
        b = min(n_perm, a + chunk)
        weights = permutation_weights(total.size, n1, b - a, rng)
        s1, c1 = weights @ total, weights @ count
        with np.errstate(invalid="ignore", divide="ignore"):
            null[a:b] = s1 / c1 - (s_all - s1) / (c_all - c1)
    p = T.permutation_p_value(observed, null)
    return T.TestResult("permutation", p, statistic=observed, reason=None if p is not None else "undefined")


def _compare(
    g: _Group, r: _Group, cfg: AuditConfig, small: bool, n_perm: int, key: tuple[int, ...]
) -> list[Comparison]:
    rows = []
    for mi, m in enumerate(SEGMENTATION_METRICS):
        vg, vr = g.point[m], r.point[m]
        bg, br = g.boot[m], r.boot[m]
        diff = vg - vr if np.isfinite(vg) and np.isfinite(vr) else np.nan
        why = f"{m} undefined in this group or the reference"
        d_strata = r_strata = None
        if cfg.ci_method == "bca" and np.isfinite(diff):
            d_strata = [(g.loo[m] - vr, _ones(g)), (vg - r.loo[m], _ones(r))]
            with np.errstate(invalid="ignore", divide="ignore"):
                r_strata = [(g.loo[m] / vr, _ones(g)), (vg / r.loo[m], _ones(r))]
        difference = _estimate(cfg, diff, bg - br, d_strata, why)
        if m not in RATIO_METRICS:
            ratio = Estimate(None, None, f"no ratio for a signed metric ({m}); see the difference")
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                rv = vg / vr if np.isfinite(diff) and vr != 0 else np.nan
                boot_ratio = bg / br
            boot_ratio[~np.isfinite(boot_ratio)] = np.nan
            ratio = _estimate(
                cfg, rv, boot_ratio, r_strata, why if not np.isfinite(diff) else "reference value is 0"
            )
        xg, xr = g.defined(m), r.defined(m)
        if xg.size == 0 or xr.size == 0:
            res = T.TestResult("permutation", None, reason=f"no case with a defined {m} in one group")
        elif g.clusters is not None or r.clusters is not None:
            res = cluster_permutation_mean_test(
                g.unit_sums(m), r.unit_sums(m), n_perm, generator(cfg.seed, key + (mi,))
            )
        else:
            res = permutation_mean_test(xg, xr, n_perm, generator(cfg.seed, key + (mi,)))
        rows.append(
            Comparison(
                metric=m,
                group=g.name,
                reference=r.name,
                difference=difference,
                ratio=ratio,
                test=res.test,
                p_value=res.p_value,
                reason=res.reason,
                small=small,
            )
        )
    return rows


def _omnibus(groups: list[_Group]) -> list[Omnibus]:
    out = []
    for m in SEGMENTATION_METRICS:
        res = T.welch_anova([g.unit_means(m) for g in groups])
        out.append(Omnibus(m, res.test, res.p_value, res.statistic, res.df, res.reason))
    return out


def _worst_comparison(m: str, rows: list[Comparison]) -> Comparison | None:
    """The comparison with the most harmful signed difference to the reference (the
    headline's, as for classification): lowest where higher is better, highest where lower
    is better, largest in size for the signed volume_error; not-small comparisons first."""
    rows = [c for c in rows if c.metric == m and c.difference.value is not None]
    if not rows:
        return None
    direction = SEGMENTATION_HIGHER_IS_BETTER[m]

    def harm(c: Comparison) -> float:
        d = float(c.difference.value)
        return -d if direction is True else d if direction is False else abs(d)

    return max(rows, key=lambda c: (not c.small, harm(c)))


def _summaries(
    big: list[_Group], cfg: AuditConfig, comparisons: list[Comparison], omnibus: list[Omnibus]
) -> dict[str, MetricSummary]:
    """Between-group spread of each metric over groups of adequate size (percentile
    intervals), with the worst comparison and the omnibus test (the report's headline)."""
    out: dict[str, MetricSummary] = {}
    tests = {o.metric: o for o in omnibus}
    for m in SEGMENTATION_METRICS:
        worst_row, heterogeneity = _worst_comparison(m, comparisons), tests.get(m)
        defined = [g for g in big if np.isfinite(g.point[m])]
        if len(defined) < 2:
            reason = "fewer than two groups of adequate size with a defined value"
            out[m] = MetricSummary(
                Estimate(None, None, reason), Estimate(None, None, reason), None, worst_row, heterogeneity
            )
            continue
        vals = np.array([g.point[m] for g in defined])
        boots = np.vstack([g.boot[m] for g in defined])
        with np.errstate(invalid="ignore", divide="ignore"):
            bmax, bmin = np.max(boots, axis=0), np.min(boots, axis=0)
            bratio = np.where(bmax > 0, bmin / bmax, np.nan)
        d = float(vals.max() - vals.min())
        if m in RATIO_METRICS:
            ratio = float(vals.min() / vals.max()) if vals.max() > 0 else np.nan
            ratio_est = Estimate.of(
                ratio, percentile_interval(bratio, cfg.ci_level), "the largest group value is 0"
            )
        else:
            ratio_est = Estimate(None, None, f"no ratio for a signed metric ({m})")
        direction = SEGMENTATION_HIGHER_IS_BETTER[m]
        if direction is True:
            worst = defined[int(np.argmin(vals))].name
        elif direction is False:
            worst = defined[int(np.argmax(vals))].name
        else:
            worst = None
        out[m] = MetricSummary(
            Estimate(d, percentile_interval(bmax - bmin, cfg.ci_level)),
            ratio_est,
            worst,
            worst_row,
            heterogeneity,
        )
    return out


def fairness_summary(big: list[_Group], cfg: AuditConfig) -> dict[str, Any]:
    """Skewed error ratio, SD of group mean Dice and ES-Dice, with percentile intervals.

    results.json: attributes[].segmentation_summary = {"metric": "dice", "groups": [...],
    "skewed_error_ratio": ESTIMATE, "sd_group_means": ESTIMATE, "es_dice": ESTIMATE +
    {"overall_dice"}}.
    """
    groups = [g for g in big if np.isfinite(g.point["dice"])]
    out: dict[str, Any] = {"metric": "dice", "groups": [g.name for g in groups]}
    if len(groups) < 2:
        reason = "fewer than two groups of adequate size"
        out["skewed_error_ratio"] = Estimate(None, None, reason).to_dict()
        out["sd_group_means"] = Estimate(None, None, reason).to_dict()
        out["es_dice"] = Estimate(None, None, reason).to_dict() | {"overall_dice": None}
        return out
    vals = np.array([g.point["dice"] for g in groups])
    boots = np.vstack([g.boot["dice"] for g in groups])
    with np.errstate(invalid="ignore", divide="ignore"):
        ser = (1.0 - vals.min()) / (1.0 - vals.max()) if vals.max() < 1.0 else np.nan
        bmax = boots.max(axis=0)
        bser = np.where(bmax < 1.0, (1.0 - boots.min(axis=0)) / (1.0 - bmax), np.nan)
    out["skewed_error_ratio"] = Estimate.of(
        ser, percentile_interval(bser, cfg.ci_level), "the best group's mean Dice is 1 (no error)"
    ).to_dict()
    out["sd_group_means"] = Estimate(
        float(vals.std(ddof=0)), percentile_interval(boots.std(axis=0, ddof=0), cfg.ci_level)
    ).to_dict()
    out["es_dice"] = _es_dice(groups, vals, boots, cfg)
    return out


def equity_scaled(overall: np.ndarray | float, group_means: np.ndarray) -> np.ndarray | float:
    """ES-Dice (FairSeg, Tian et al. 2024): overall / (1 + sum over groups |group - overall|).
    `group_means` has the groups on axis 0 (and resamples on axis 1 with an array `overall`)."""
    return overall / (1.0 + np.abs(group_means - overall).sum(axis=0))


def _es_dice(groups: list[_Group], vals: np.ndarray, boots: np.ndarray, cfg: AuditConfig) -> dict[str, Any]:
    """ES-Dice of the groups compared, with its percentile interval and the overall Dice it
    scales: the mean over these groups' cases, which each resample recomputes from the
    groups' resampled means and counts (groups are resampled apart, sizes fixed)."""
    counts = np.array([g.defined("dice").size for g in groups], dtype=np.float64)
    overall = float((vals * counts).sum() / counts.sum())
    weights = np.vstack([g.boot_n_dice for g in groups])
    with np.errstate(invalid="ignore", divide="ignore"):
        boot_overall = np.nansum(boots * weights, axis=0) / weights.sum(axis=0)
        boot_es = equity_scaled(boot_overall, boots)
    boot_es = np.where(np.isfinite(boot_es), boot_es, np.nan)
    out = Estimate(float(equity_scaled(overall, vals)), percentile_interval(boot_es, cfg.ci_level)).to_dict()
    out["overall_dice"] = overall
    return out


def _choose_reference(groups: list[_Group], requested: str | None, attr: str, cfg: AuditConfig) -> str:
    """The requested group, else the largest and not small, as for classification."""
    return choose_reference({g.name: g.n for g in groups}, requested, attr, cfg.min_group_size)


def segmentation_permutations(cfg: AuditConfig, n_pairs: int) -> int:
    """Permutations enough for 1 / (P + 1) to pass the first corrected threshold of each family
    (every segmentation metric is permutation-tested; as `permutations_needed` for classification)."""
    if cfg.correction == "none":
        return cfg.n_permutations
    primary = set(cfg.primary_metrics)
    need = cfg.n_permutations
    for in_primary in (True, False):
        family = [m for m in SEGMENTATION_METRICS if (m in primary) == in_primary]
        if family:
            need = max(need, int(n_pairs * len(family) / cfg.alpha) + 1)
    return need


def run_segmentation_audit(
    values: Mapping[str, np.ndarray],
    attributes: Mapping[str, np.ndarray],
    cfg: AuditConfig,
    *,
    truth_nonempty: np.ndarray | None = None,
    reasons: Mapping[str, Sequence[str]] | None = None,
    references: Mapping[str, str] | None = None,
    clusters: np.ndarray | None = None,
    cluster_unit: str = "patient",
) -> SegmentationAuditResult:
    """Audit per-case segmentation metrics (NaN where undefined) by each attribute.

    `values` maps each of SEGMENTATION_METRICS to one value per case; `reasons` to one
    string per case ("" where defined); `attributes` maps each attribute name
    (intersections already combined) to one group label per case.
    """
    references = references or {}
    n = np.asarray(values["dice"]).size
    # A metric the caller did not compute (nsd from an older caller): undefined, with the reason.
    vals = {
        m: np.asarray(values[m], dtype=np.float64) if m in values else np.full(n, np.nan)
        for m in SEGMENTATION_METRICS
    }
    why = {
        m: np.asarray(
            reasons[m] if reasons and m in reasons else [""] * n if m in values else ["not computed"] * n,
            dtype=object,
        )
        for m in SEGMENTATION_METRICS
    }
    nonempty = np.ones(n, bool) if truth_nonempty is None else np.asarray(truth_nonempty, bool)
    codes = None
    if clusters is not None:
        codes = np.unique(np.asarray(clusters), return_inverse=True)[1].ravel()
        if codes.size != n:
            raise ValueError("clusters: one code per case is needed")

    def subset(name: str, mask: np.ndarray) -> _Group:
        local = None
        if codes is not None:
            local = np.unique(codes[mask], return_inverse=True)[1].ravel()
            if local.size and np.bincount(local).max() < 2:
                local = None  # one case per patient: cases are the unit
        return _Group(
            name,
            {m: v[mask] for m, v in vals.items()},
            {m: r[mask] for m, r in why.items()},
            int(nonempty[mask].sum()),
            clusters=local,
        )

    overall = subset("overall", np.ones(n, bool))
    _prepare(overall, cfg, (0,))
    n_pairs = sum(
        len(set(np.asarray(labels).astype(str).tolist()) - {ABSENT}) - 1 for labels in attributes.values()
    )
    n_perm = segmentation_permutations(cfg, n_pairs)
    if n_perm > cfg.n_permutations:
        log.info("permutations raised from %d to %d for the corrected threshold", cfg.n_permutations, n_perm)
    attr_results: list[AttributeResult] = []
    for ai, (attr, labels) in enumerate(attributes.items()):
        labels = np.asarray(labels).astype(str)
        groups = []
        for gi, name in enumerate(sorted(set(labels.tolist()) - {ABSENT})):
            g = subset(name, labels == name)
            _prepare(g, cfg, (1, ai, gi))
            groups.append(g)
        log.info("attribute %s: %d groups", attr, len(groups))
        ref_name = _choose_reference(groups, references.get(attr), attr, cfg)
        ref = next(g for g in groups if g.name == ref_name)
        small = {g.name: g.n < cfg.min_group_size for g in groups}
        comparisons: list[Comparison] = []
        for gi, g in enumerate(groups):
            if g.name != ref_name:
                comparisons += _compare(g, ref, cfg, small[g.name] or small[ref_name], n_perm, (2, ai, gi))
        big = [g for g in groups if not small[g.name]]
        omnibus = _omnibus(groups)
        attr_results.append(
            SegmentationAttributeResult(
                name=attr,
                reference=ref_name,
                groups=[_group_result(g, cfg) for g in groups],
                comparisons=comparisons,
                omnibus=omnibus,
                summary=_summaries(big, cfg, comparisons, omnibus),
                segmentation_summary=fairness_summary(big, cfg),
                n_missing=int(np.sum(labels == ABSENT)),
            )
        )
    config = cfg.to_dict()
    config["threshold"] = None
    config["permutations_requested"] = config["permutations"]
    config["permutations"] = n_perm
    config["resampling_unit"] = cluster_unit if overall.clusters is not None else "case"
    config["n_clusters"] = int(codes.max()) + 1 if codes is not None and codes.size else None
    result = SegmentationAuditResult(
        task="segmentation",
        config=config,
        n=n,
        overall=_group_estimates(overall, cfg),
        attributes=attr_results,
        overall_n_defined={m: int(overall.defined(m).size) for m in SEGMENTATION_METRICS},
        overall_distributions={m: distribution(overall.values[m]) for m in DISTRIBUTION_METRICS},
    )
    adjust(result, cfg)
    return result
