"""Build the AuditResult: per-group metrics, intervals, comparisons, tests, summaries."""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from scipy.stats import norm

from fairaudit._util.absent import ABSENT
from fairaudit.errors import arg
from fairaudit.stats import _tests as T
from fairaudit.stats._analytic import (
    ANALYTIC_METHODS,
    NO_RATIO_REASON,
    RATIO_METRICS,
    Analytic,
    Counts,
    denominator,
    variance_free,
)
from fairaudit.stats._cells import (
    RESAMPLE_GRID,
    Cells,
    coarse_index,
    coarsen,
    grid_edges,
    make_cells,
    merge_cells,
)
from fairaudit.stats._clusters import (
    ClusterCells,
    cluster_bootstrap_task,
    cluster_cells,
    cluster_means,
    cluster_permutation_task,
    design_effects,
    leave_one_cluster_out,
    rao_scott,
    resample_width,
    stack,
)
from fairaudit.stats._intervals import acceleration, bca_interval, percentile_interval
from fairaudit.stats._mean_intervals import DIFFERENCE_METHODS as MEAN_DIFFERENCE_METHODS
from fairaudit.stats._mean_intervals import METHODS as MEAN_METHODS
from fairaudit.stats._mean_intervals import difference_interval_at, group_interval_at, level_z
from fairaudit.stats._metrics import (
    HIGHER_IS_BETTER,
    METRICS,
    NO_SCORE_REASON,
    PROPORTIONS,
    RATE_METRICS,
    SCORE_METRICS,
    UNDEFINED_REASON,
    MetricKernel,
)
from fairaudit.stats._multitest import adjust_pvalues
from fairaudit.stats._resample import bootstrap_task, chunk_bounds, generator, permutation_task, run_parts
from fairaudit.stats._score import z_of
from fairaudit.stats._segmentation import SEGMENTATION_METRICS
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

CORRECTIONS = ("holm", "fdr_bh", "bonferroni", "none")
# "score" and "exact": closed-form intervals where they exist (docs/statistics.md), the
# bootstrap elsewhere; "percentile" and "bca": the bootstrap for every metric.
CI_METHODS = ("score", "exact", "percentile", "bca")
# Stream key of the order brier's betting interval takes cases in; distinct from the
# bootstrap (0, 1), permutation (2) and discovery (3) streams.
_BETTING_KEY = 4
_SECOND_STAGE_KEY = 6  # the raised permutations' streams (_permutation_nulls); 5 is --within's
# tpr and fnr (tnr and fpr) are one hypothesis: the second of each pair takes the first's
# test and is not counted again in its family. Prevalence describes the cohort, not the
# model: it is shown, not tested.
TESTED_AS: dict[str, str] = {"fnr": "tpr", "tnr": "fpr"}
UNTESTED_REASON = {"prevalence": "prevalence describes the cohort, not the model: described, not tested"}
KNOWN_PRIMARY: tuple[str, ...] = METRICS + SEGMENTATION_METRICS
# Mean metrics are tested by permuting group labels (the mean difference, as their interval).
_MEAN_PERMUTED: tuple[str, ...] = ("brier", "auprc", "ece", "squared_calibration_error")


@dataclass(frozen=True)
class AuditConfig:
    """The statistical settings of an audit (recorded verbatim in results.json)."""

    bootstrap: int = 2000
    ci_level: float = 0.95
    ci_method: str = "score"
    seed: int = 0
    threshold: float = 0.5
    min_group_size: int = 30
    correction: str = "holm"
    permutations: int | None = None  # None: as many as bootstrap resamples
    # The pre-specified primary family (the gated metrics, or --primary-metrics); the rest of
    # the comparisons are the exploratory family, corrected on its own (docs/statistics.md).
    primary_metrics: tuple[str, ...] = ()
    workers: int | None = field(default=None, compare=False)  # processes; not a result setting
    # Take the largest group as the reference without the warning an audit gives when it is
    # small (training's validation audit: its user has no flags to act on it).
    small_reference: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        if self.bootstrap < 1:
            raise ValueError(f"{arg('bootstrap')} must be at least 1")
        if self.permutations is not None and self.permutations < 1:
            raise ValueError(
                f"{arg('permutations')} must be at least 1 (leave it out for the {arg('bootstrap')} count)"
            )
        if not 0 < self.ci_level < 1:
            raise ValueError(f"{arg('ci_level')} must be between 0 and 1 (for example 0.95)")
        if self.ci_method not in CI_METHODS:
            raise ValueError(f"{arg('ci_method')} must be one of {', '.join(CI_METHODS)}")
        if self.correction not in CORRECTIONS:
            raise ValueError(f"{arg('correction')} must be one of {', '.join(CORRECTIONS)}")
        if not 0 <= self.threshold <= 1:
            raise ValueError(f"{arg('threshold')} must be in [0, 1]")
        if self.min_group_size < 0:
            raise ValueError(f"{arg('min_group_size')} must be >= 0")
        unknown = [m for m in self.primary_metrics if m not in KNOWN_PRIMARY]
        if unknown:
            raise ValueError(
                f"{arg('primary_metrics')}: unknown metric(s) {', '.join(unknown)}; known: {', '.join(KNOWN_PRIMARY)}"
            )

    @property
    def alpha(self) -> float:
        """1 - ci_level, rounded so that 1 - 0.95 is exactly 0.05 (not 0.050000000000000044)."""
        return round(1.0 - self.ci_level, 12)

    @property
    def analytic(self) -> bool:
        """Closed-form intervals and inverted tests where a metric has them."""
        return self.ci_method in ANALYTIC_METHODS

    @property
    def permutation_metrics(self) -> tuple[str, ...]:
        """Metrics whose comparison is a permutation test."""
        return _MEAN_PERMUTED if self.analytic else ("balanced_accuracy", *_MEAN_PERMUTED)

    @property
    def n_permutations(self) -> int:
        return self.permutations if self.permutations is not None else self.bootstrap

    def to_dict(self) -> dict:
        out = asdict(self)
        out["permutations"] = self.n_permutations
        out["primary_metrics"] = list(self.primary_metrics)
        out.pop("workers")
        out.pop("small_reference")
        return out


@dataclass
class _GroupStats:
    """One group's cells, point metrics, bootstrap distributions and jackknife values."""

    name: str
    cells: Cells
    counts: Counts
    kernel: MetricKernel
    point: dict[str, float]
    resample_cells: Cells
    shift: dict[str, float]
    loo: dict[str, np.ndarray]
    loo_w: np.ndarray
    boot: dict[str, np.ndarray] = field(default_factory=dict)
    # Patient-level resampling (fairaudit/stats/_clusters.py): the group's cases per patient
    # (None: no patient ids), and whether any patient has more than one case here.
    clusters: ClusterCells | None = None
    clustered: bool = False
    resample_clusters: ClusterCells | None = None  # `clusters` on the resampling grid

    def resample_source(self) -> Cells | ClusterCells:
        """What a bootstrap of this group draws from: patients, or cases (on the grid)."""
        if self.clustered and self.resample_clusters is not None:
            return self.resample_clusters
        return self.resample_cells


def _resampling_grid(cells: Cells, cfg: AuditConfig) -> tuple[Cells, MetricKernel | None]:
    """The cells resampling draws from: binned to the grid when there are many scores."""
    if cells.k <= RESAMPLE_GRID:
        return cells, None
    coarse = coarsen(cells, grid_edges(cfg.threshold))
    return coarse, MetricKernel(coarse.u, cfg.threshold, True)


def _clusters_on_grid(cc: ClusterCells, cells: Cells, grid: Cells, cfg: AuditConfig) -> ClusterCells:
    """Per-patient counts moved to the resampling grid (`grid`, or `cells` when not binned)."""
    if grid is cells:
        return cc
    return cc.regrid(coarse_index(cells, grid_edges(cfg.threshold)), grid.u)


def _prepare(
    name: str, cells: Cells, cfg: AuditConfig, has_scores: bool, clusters: ClusterCells | None = None
) -> _GroupStats:
    kernel = MetricKernel(cells.u, cfg.threshold, has_scores)
    point = kernel.point(cells.pos, cells.neg)
    rcells, rkernel = _resampling_grid(cells, cfg)
    shift = {m: 0.0 for m in kernel.metrics}
    if rkernel is not None:
        # Centre the binned statistic on the exact estimate (removes the binning offset).
        coarse_point = rkernel.point(rcells.pos, rcells.neg)
        shift = {
            m: (point[m] - coarse_point[m]) if np.isfinite(point[m] - coarse_point[m]) else 0.0
            for m in kernel.metrics
        }
    clustered = clusters is not None and clusters.clustered
    loo: dict[str, np.ndarray] = {}
    w = np.empty(0)
    if cfg.ci_method == "bca":
        # Jackknife by the resampling unit: one patient (all their cases) at a time.
        loo, w = (
            leave_one_cluster_out(clusters, kernel)
            if clustered
            else kernel.leave_one_out(cells.pos, cells.neg)
        )
    conf = T.confusion(cells, cfg.threshold)
    deff = design_effects(clusters, cfg.threshold, has_scores, z_of(cfg.ci_level)) if clustered else {}
    counts = Counts(conf["tp"], conf["fp"], conf["tn"], conf["fn"], deff=deff)
    gs = _GroupStats(name, cells, counts, kernel, point, rcells, shift, loo, w, clusters=clusters)
    if clustered:
        gs.clustered = True
        gs.resample_clusters = _clusters_on_grid(clusters, cells, rcells, cfg)
    return gs


def _bootstrap_one(source: Cells | ClusterCells, *args: Any) -> dict[str, np.ndarray]:
    """Bootstrap a group by its resampling unit (patients, or cases)."""
    task = cluster_bootstrap_task if isinstance(source, ClusterCells) else bootstrap_task
    return task(source, *args)


def _permute_one(source: Cells | ClusterCells, *args: Any) -> dict[str, np.ndarray]:
    """Permute group labels by the resampling unit (patients, or cases)."""
    task = cluster_permutation_task if isinstance(source, ClusterCells) else permutation_task
    return task(source, *args)


def _size(source: Cells | ClusterCells) -> int:
    """Work per resample of a source: its cases (patients' nonzero cells)."""
    return source.n if isinstance(source, Cells) else int(source.matrix.nnz)


def _n_chunks(source: Cells | ClusterCells, size: int) -> int:
    """How many chunks (streams) `size` resamples of `source` are drawn in (run_parts)."""
    return len(chunk_bounds(size, resample_width(source)))


def _bootstrap_all(
    stats: list[tuple[_GroupStats, tuple[int, ...]]], cfg: AuditConfig, has_scores: bool
) -> None:
    """Bootstrap every group at once (in worker processes when large)."""
    tasks = [
        (g.resample_source(), cfg.threshold, has_scores, cfg.bootstrap, cfg.seed, key) for g, key in stats
    ]
    work = sum(g.cells.n for g, _ in stats) * float(cfg.bootstrap)
    n_chunks = [_n_chunks(t[0], cfg.bootstrap) for t in tasks]
    for (g, _), res in zip(stats, run_parts(_bootstrap_one, tasks, n_chunks, work, cfg.workers), strict=True):
        g.boot = {m: res[m] + g.shift.get(m, 0.0) for m in res}


def _interval(
    cfg: AuditConfig,
    boot: np.ndarray,
    estimate: float,
    strata: Sequence[tuple[np.ndarray, np.ndarray]] | None,
) -> tuple[float, float] | None:
    if cfg.ci_method == "bca" and strata is not None:
        return bca_interval(boot, estimate, acceleration(strata), cfg.ci_level)
    return percentile_interval(boot, cfg.ci_level)


def _estimate(
    cfg: AuditConfig, value: float, boot: np.ndarray, strata, reason: str, n: int | None = None
) -> Estimate:
    if not np.isfinite(value):
        return Estimate(None, None, reason, n=n)
    ci = _interval(cfg, boot, value, strata)
    if ci is None:
        why = "interval undefined: the metric is undefined in most resamples"
        return Estimate(float(value), None, why, n=n)
    method = "bootstrap_bca" if cfg.ci_method == "bca" and strata is not None else "bootstrap_percentile"
    return Estimate(float(value), ci, None, method, n)


def _metric_estimates(gs: _GroupStats, cfg: AuditConfig, has_scores: bool) -> dict[str, Estimate]:
    out: dict[str, Estimate] = {}
    closed = Analytic(cfg.ci_method, cfg.ci_level) if cfg.analytic else None
    for m in METRICS:
        if m in SCORE_METRICS and not has_scores:
            out[m] = Estimate(None, None, NO_SCORE_REASON)
            continue
        if closed is not None and variance_free(m):
            out[m] = closed.group(m, gs.counts, gs.cells, gs.point[m], UNDEFINED_REASON[m])
            continue
        if closed is not None and _mean_method(m, gs.clustered):
            at = group_interval_at(m, gs.point, gs.boot, gs.cells, _order_rng(cfg, gs.name), _units(gs))
            out[m] = _from_interval_at(
                gs.point[m], at, cfg.ci_level, m, UNDEFINED_REASON[m], denominator(m, gs.counts)
            )
            continue
        strata = [(gs.loo[m], gs.loo_w)] if cfg.ci_method == "bca" else None
        out[m] = _estimate(
            cfg, gs.point[m], gs.boot[m], strata, UNDEFINED_REASON[m], denominator(m, gs.counts)
        )
        if gs.clustered and (m in PROPORTIONS or m == "auroc") and out[m].value is not None:
            # The power of the test that is run counts n / deff cases (docs/statistics.md).
            out[m] = replace(out[m], design_effect=gs.counts.design_effect(m))
    return out


def _mean_method(m: str, clustered: bool, difference: bool = False) -> bool:
    """Whether `m` takes its interval from fairaudit/stats/_mean_intervals.py (score methods):
    auprc's logit interval assumes independent cases, so not with patient clusters; brier's
    differences keep the bootstrap (docs/statistics.md)."""
    if difference and m not in MEAN_DIFFERENCE_METHODS:
        return False
    return m in MEAN_METHODS and not (clustered and m == "auprc")


def _units(g: _GroupStats) -> ClusterCells | None:
    """The patients brier's betting interval bets on, or None for cases."""
    return g.clusters if g.clustered else None


def _order_rng(cfg: AuditConfig, name: str) -> np.random.Generator:
    """The seeded order in which brier's betting interval takes a group's cases (one per group,
    so that its intervals at every level are of one order)."""
    return generator(cfg.seed, (_BETTING_KEY, zlib.crc32(name.encode("utf-8"))))


def _from_interval_at(
    value: float,
    at: Callable[[float], tuple[float, float]] | None,
    level: float,
    m: str,
    reason: str,
    n: int | None,
) -> Estimate:
    """An estimate whose interval is `at` at the audit's level (brier, squared CE: _mean_intervals)."""
    if not np.isfinite(value):
        return Estimate(None, None, reason, n=n)
    if at is None:
        why = "interval undefined: no variation in the per-case values, or undefined in most resamples"
        return Estimate(float(value), None, why, n=n)
    lo, hi = at(level_z(level))
    return Estimate(float(value), (float(lo), float(hi)), None, MEAN_METHODS[m], n)


def choose_reference(sizes: dict[str, int], requested: str | None, attr: str, min_group_size: int) -> str:
    """The requested group, else the largest (ties: the first name in sorted order). It is small
    only when every group is: then a warning says what to do, and every comparison of the
    attribute is small, so none can pass the gate (issue 21; docs/statistics.md, "Small
    groups"). min_group_size 0: no warning."""
    if not sizes:
        raise ValueError(
            f"no audited record has a value of '{attr}' (every one is missing): leave it out of "
            f"{arg('attributes')}, or keep the blanks as a group with {arg('missing_as_group')}."
        )
    if requested is not None:
        if requested not in sizes:
            raise ValueError(
                f"{arg('references')} {attr}={requested}: no such group; groups of '{attr}' are: "
                + ", ".join(sizes)
            )
        return requested
    name = sorted(sizes, key=lambda g: (-sizes[g], g))[0]
    if sizes[name] < min_group_size:
        log.warning(
            "every group of '%s' has fewer than %s %d records (the largest, '%s', has %d): its "
            "comparisons rest on a small reference and none can pass the gate; pool the small groups "
            "with %s, name a reference with %s %s=GROUP, or lower %s",
            attr, arg("min_group_size"), min_group_size, name, sizes[name], arg("merge_small_groups"),
            arg("references"), attr, arg("min_group_size"),
        )  # fmt: skip
    return name


def _choose_reference(groups: list[_GroupStats], requested: str | None, attr: str, cfg: AuditConfig) -> str:
    floor = 0 if cfg.small_reference else cfg.min_group_size
    return choose_reference({g.name: g.cells.n for g in groups}, requested, attr, floor)


def _permutation_spec(
    g: _GroupStats,
    r: _GroupStats,
    cfg: AuditConfig,
    metrics: Sequence[str],
    key: tuple[int, ...],
    size: int,
) -> tuple:
    """Arguments of the permutation task for group vs reference.

    With patients, the units are each group's patients (a patient with cases in both groups
    is two units: the cases in one group move together).
    """
    pooled, ig, ir = merge_cells(g.cells, r.cells)
    grid, _ = _resampling_grid(pooled, cfg)
    if (g.clustered or r.clustered) and g.clusters is not None and r.clusters is not None:
        units = _clusters_on_grid(stack([g.clusters, r.clusters], pooled.u, [ig, ir]), pooled, grid, cfg)
        return (units, g.clusters.n_clusters, cfg.threshold, tuple(metrics), size, cfg.seed, key)
    return (grid, g.cells.n, cfg.threshold, tuple(metrics), size, cfg.seed, key)


def _permutation_nulls(
    plan: list[tuple[str, list[_GroupStats], _GroupStats, list[tuple[int, _GroupStats]]]],
    cfg: AuditConfig,
    metrics: Sequence[str],
    n_perm: int,
) -> list[dict[str, np.ndarray]]:
    """Each comparison's permutation null distributions, in `plan`'s order.

    When the family needs more permutations than asked for (`n_perm` above
    cfg.n_permutations), in two stages: every comparison gets the asked-for number; only a
    metric whose first p-value is below alpha, the only ones that can be significant after
    any correction, gets `n_perm` fresh permutations (its own seed stream) and their
    p-value. The p-value stays valid: below alpha it is the second draw's, independent of
    the first given the data; above alpha it can only be where the first was
    (docs/statistics.md, "The family"). A 14-finding audit then pays the raise for a few
    comparisons instead of all of them (benchmarks/README.md, multilabel.py).
    """
    pairs = [(ai, gi, g, ref) for ai, (_, _, ref, members) in enumerate(plan) for gi, g in members]

    def run(
        size: int,
        stage: int,
        chosen: list[tuple[int, int, _GroupStats, _GroupStats]],
        only: list[list[str]] | None = None,
    ) -> list[dict]:
        """`only`: each comparison's metrics to evaluate (the draws do not depend on them)."""
        specs = [
            _permutation_spec(g, ref, cfg, metrics if only is None else only[k], (stage, ai, gi), size)
            for k, (ai, gi, g, ref) in enumerate(chosen)
        ]
        work = sum(_size(s[0]) for s in specs) * float(size) * 2
        n_chunks = [_n_chunks(s[0], size) for s in specs]
        return run_parts(_permute_one, specs, n_chunks, work, cfg.workers)

    first = min(n_perm, cfg.n_permutations)
    nulls = run(first, 2, pairs)
    if n_perm <= first:
        return nulls
    wanted: dict[int, list[str]] = {}
    for i, (_, _, g, ref) in enumerate(pairs):
        for m, null in nulls[i].items():
            diff = g.point[m] - ref.point[m]
            p = T.permutation_p_value(diff, null) if np.isfinite(diff) else None
            if p is not None and p < cfg.alpha:
                wanted.setdefault(i, []).append(m)
    log.info(
        "permutations: %d for every comparison, %d more for the %d metric(s) of %d comparison(s) below alpha",
        first, n_perm, sum(len(v) for v in wanted.values()), len(wanted),
    )  # fmt: skip
    if wanted:
        chosen = [pairs[i] for i in wanted]
        only = [[m for m in metrics if m in wanted[i]] for i in wanted]
        for i, second in zip(wanted, run(n_perm, _SECOND_STAGE_KEY, chosen, only), strict=True):
            nulls[i] = {m: second[m] if m in wanted[i] else null for m, null in nulls[i].items()}
    return nulls


def permutations_needed(
    cfg: AuditConfig, n_pairs: int, has_scores: bool, permuted: Sequence[str] | None = None
) -> int:
    """Permutations enough for the smallest attainable p to pass the first corrected threshold.

    The smallest permutation p is 1 / (P + 1); Holm's (and Bonferroni's) first threshold is
    alpha / m for a family of m tests, so P + 1 must exceed m / alpha. m counts every
    hypothesis of the family that holds a permutation-tested metric.
    """
    metrics = METRICS if has_scores else RATE_METRICS
    tested = [m for m in metrics if m not in TESTED_AS and m not in UNTESTED_REASON]
    primary = set(cfg.primary_metrics)
    permuted = cfg.permutation_metrics if permuted is None else permuted
    need = cfg.n_permutations
    for in_primary in (True, False):
        family = [m for m in tested if (m in primary) == in_primary]
        if cfg.correction == "none" or not any(m in permuted for m in family):
            continue
        m_tests = n_pairs * len(family)
        need = max(need, int(m_tests / cfg.alpha) + 1)
    return need


def _compare(
    g: _GroupStats,
    r: _GroupStats,
    cfg: AuditConfig,
    has_scores: bool,
    nulls: dict[str, np.ndarray],
) -> list[Comparison]:
    conf_g = T.confusion(g.cells, cfg.threshold)
    conf_r = T.confusion(r.cells, cfg.threshold)
    closed = Analytic(cfg.ci_method, cfg.ci_level) if cfg.analytic else None
    metrics = METRICS if has_scores else RATE_METRICS
    rows = []
    for m in metrics:
        vg, vr = g.point[m], r.point[m]
        why = f"{m} undefined in this group or the reference"
        # Neither a small group nor a small reference decides anything: small by the
        # metric's own denominator (positives for tpr, negatives for fpr ...).
        small = min(denominator(m, g.counts), denominator(m, r.counts)) < cfg.min_group_size
        if closed is not None and variance_free(m):
            difference, ratio_est, res, interval_at = closed.compare(
                m, (g.counts, g.cells, vg), (r.counts, r.cells, vr), why
            )
        else:
            if closed is not None and _mean_method(m, g.clustered or r.clustered, difference=True):
                at = difference_interval_at(
                    m,
                    (g.point, g.boot, g.cells.n_pos),
                    (r.point, r.boot, r.cells.n_pos),
                )
                d = vg - vr if np.isfinite(vg) and np.isfinite(vr) else np.nan
                difference = _from_interval_at(d, at, cfg.ci_level, m, why, None)
                ratio_est = Estimate(None, None, NO_RATIO_REASON)
                interval_at = at if difference.ci is not None else None
            else:
                difference, ratio_est = _bootstrap_comparison(g, r, m, cfg, why)
                interval_at = _percentile_at(g.boot[m] - r.boot[m]) if difference.ci is not None else None
            if m in nulls:  # mean metrics; every tested metric when patients are resampled
                diff = vg - vr if np.isfinite(vg) and np.isfinite(vr) else np.nan
                p = T.permutation_p_value(diff, nulls[m])
                res = T.TestResult("permutation", p, reason=None if p is not None else why)
            elif m in PROPORTIONS:
                res = T.fisher_test(conf_g, conf_r, PROPORTIONS[m])
            else:
                res = T.delong_test(g.cells, r.cells)
        if m not in RATIO_METRICS:
            ratio_est = Estimate(None, None, NO_RATIO_REASON)
        if m in UNTESTED_REASON:
            res = T.TestResult("none", None, reason=UNTESTED_REASON[m])
        rows.append(
            Comparison(
                metric=m,
                group=g.name,
                reference=r.name,
                difference=difference,
                ratio=ratio_est,
                test=res.test,
                p_value=res.p_value,
                reason=res.reason,
                small=small,
                interval_at=interval_at,
            )
        )
    return rows


def _percentile_at(boot: np.ndarray) -> Callable[[float], tuple[float, float]]:
    """The percentile interval of a bootstrap distribution at normal quantile z."""

    def at(z: float) -> tuple[float, float]:
        ci = percentile_interval(boot, 1.0 - 2.0 * float(norm.sf(z)))
        return ci if ci is not None else (float("nan"), float("nan"))

    return at


def _bootstrap_comparison(
    g: _GroupStats, r: _GroupStats, m: str, cfg: AuditConfig, why: str
) -> tuple[Estimate, Estimate]:
    """Difference and ratio intervals from the two groups' bootstrap distributions."""
    vg, vr = g.point[m], r.point[m]
    bg, br = g.boot[m], r.boot[m]
    diff = vg - vr if np.isfinite(vg) and np.isfinite(vr) else np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = vg / vr if np.isfinite(diff) and vr != 0 else np.nan
        boot_ratio = bg / br
    boot_ratio[~np.isfinite(boot_ratio)] = np.nan
    d_strata = r_strata = None
    if cfg.ci_method == "bca" and np.isfinite(diff):
        d_strata = [(g.loo[m] - vr, g.loo_w), (vg - r.loo[m], r.loo_w)]
        with np.errstate(divide="ignore", invalid="ignore"):
            r_strata = [(g.loo[m] / vr, g.loo_w), (vg / r.loo[m], r.loo_w)]
    difference = _estimate(cfg, diff, bg - br, d_strata, why)
    ratio_est = _estimate(
        cfg, ratio, boot_ratio, r_strata, why if not np.isfinite(diff) else "reference value is 0"
    )
    return difference, ratio_est


def _omnibus(groups: list[_GroupStats], cfg: AuditConfig, has_scores: bool) -> list[Omnibus]:
    """Heterogeneity across all groups of an attribute.

    With patients: chi-square statistics over the groups' mean design effect (Rao & Scott's
    first-order correction), AUROC variances times each group's design effect, and Welch's
    ANOVA on each patient's mean Brier score (fairaudit/stats/_clusters.py).
    """
    out = []
    clustered = any(g.clustered for g in groups)
    confs = [T.confusion(g.cells, cfg.threshold) for g in groups]
    for m, parts in PROPORTIONS.items():
        res = T.chi2_omnibus(confs, parts)
        if clustered:
            dens = np.array([denominator(m, g.counts) for g in groups], dtype=np.float64)
            deffs = np.array([g.counts.design_effect(m) for g in groups])
            res = rao_scott(res, float(dens @ deffs / dens.sum()) if dens.sum() > 0 else 1.0)
        out.append(Omnibus(m, res.test, res.p_value, res.statistic, res.df, res.reason))
    if has_scores:
        omnibus_auroc = T.auroc_score_omnibus if cfg.analytic else T.delong_omnibus
        deffs = [g.counts.design_effect("auroc") for g in groups] if clustered else None
        res = omnibus_auroc([g.cells for g in groups], deffs)
        out.append(Omnibus("auroc", res.test, res.p_value, res.statistic, res.df, res.reason))
        if clustered:
            samples = [_patient_brier(g) for g in groups]
        else:
            samples = [T.per_case_brier(g.cells) for g in groups]
        res = T.welch_anova(samples)
        out.append(Omnibus("brier", res.test, res.p_value, res.statistic, res.df, res.reason))
    return out


def _patient_brier(g: _GroupStats) -> np.ndarray:
    """Each patient's mean Brier score in the group (the unit Welch's ANOVA compares)."""
    if g.clusters is None:
        return T.per_case_brier(g.cells)
    u = g.clusters.u
    return cluster_means(g.clusters, (u - 1.0) ** 2, u**2)


def _summaries(
    groups: list[_GroupStats],
    comparisons: list[Comparison],
    omnibus: list[Omnibus],
    cfg: AuditConfig,
    has_scores: bool,
) -> dict[str, MetricSummary]:
    """Between-group spread of each metric, and the headline: the worst signed difference.

    The range (max - min) and min/max ratio get intervals from simultaneous (Bonferroni)
    intervals of every group's value: when every group's interval holds, which happens
    with probability >= ci_level, the true range lies in [max(0, max lo - min hi),
    max hi - min lo]. When the groups are equal this interval contains 0 (a bootstrap of
    max - min never did). Groups whose denominator is below min_group_size are left out:
    their noise alone would make the spread look large.
    """
    out: dict[str, MetricSummary] = {}
    metrics = METRICS if has_scores else RATE_METRICS
    closed = Analytic(cfg.ci_method, cfg.ci_level) if cfg.analytic else None
    tests = {o.metric: o for o in omnibus}
    for m in metrics:
        heterogeneity = tests.get(m)
        worst_row = _worst_comparison(m, [c for c in comparisons if c.metric == m])
        defined = [
            g for g in groups if np.isfinite(g.point[m]) and denominator(m, g.counts) >= cfg.min_group_size
        ]
        if len(defined) < 2:
            reason = "fewer than two groups of adequate size with a defined value"
            out[m] = MetricSummary(
                Estimate(None, None, reason), Estimate(None, None, reason), None, worst_row, heterogeneity
            )
            continue
        level = 1.0 - cfg.alpha / len(defined)
        boxes = [_simultaneous(g, m, level, closed, cfg) for g in defined]
        vals = np.array([g.point[m] for g in defined])
        method = f"bonferroni_simultaneous_{len(defined)}"
        if any(b is None for b in boxes):
            rng_est = Estimate(float(np.ptp(vals)), None, "a group's interval is undefined")
            ratio_est = Estimate(None, None, "a group's interval is undefined")
        else:
            lows = np.array([b[0] for b in boxes])
            highs = np.array([b[1] for b in boxes])
            rng_ci = (max(0.0, float(lows.max() - highs.min())), float(highs.max() - lows.min()))
            rng_est = Estimate(float(np.ptp(vals)), rng_ci, method=method)
            if m not in RATIO_METRICS:
                ratio_est = Estimate(None, None, NO_RATIO_REASON)
            elif vals.max() <= 0:
                ratio_est = Estimate(None, None, "the largest group value is 0")
            else:
                top = float(lows.max())
                hi = min(1.0, float(highs.min()) / top) if top > 0 else 1.0
                lo = max(0.0, float(lows.min())) / float(highs.max()) if highs.max() > 0 else 0.0
                ratio_est = Estimate(float(vals.min() / vals.max()), (lo, hi), method=method)
        direction = HIGHER_IS_BETTER[m]
        if direction is True:
            worst = defined[int(np.argmin(vals))].name
        elif direction is False:
            worst = defined[int(np.argmax(vals))].name
        else:
            worst = None
        out[m] = MetricSummary(rng_est, ratio_est, worst, worst_row, heterogeneity)
    return out


def _simultaneous(
    g: _GroupStats, m: str, level: float, closed: Analytic | None, cfg: AuditConfig
) -> tuple[float, float] | None:
    """One group's interval at a (Bonferroni-adjusted) level, by the audit's method."""
    if closed is not None and variance_free(m):
        est = Analytic(closed.method, level).group(m, g.counts, g.cells, g.point[m], "")
        return est.ci
    if closed is not None and _mean_method(m, g.clustered):
        at = group_interval_at(m, g.point, g.boot, g.cells, _order_rng(cfg, g.name), _units(g))
        return at(level_z(level)) if at is not None else None
    return percentile_interval(g.boot[m], level)


def _worst_comparison(m: str, rows: list[Comparison]) -> Comparison | None:
    """The comparison with the most harmful signed difference to the reference.

    Lowest difference where higher is better, highest where lower is better, largest in
    size where neither is; comparisons that may decide (not small) first.
    """
    rows = [c for c in rows if c.difference.value is not None]
    if not rows:
        return None
    direction = HIGHER_IS_BETTER[m]

    def harm(c: Comparison) -> float:
        d = float(c.difference.value)
        return -d if direction is True else d if direction is False else abs(d)

    return max(rows, key=lambda c: (not c.small, harm(c)))


def run_audit(
    labels: np.ndarray,
    scores: np.ndarray,
    attributes: dict[str, np.ndarray],
    cfg: AuditConfig,
    *,
    has_scores: bool = True,
    references: dict[str, str] | None = None,
    clusters: np.ndarray | None = None,
    cluster_unit: str = "patient",
    family_factor: int = 1,
    adjust_now: bool = True,
) -> AuditResult:
    """Audit one set of cases: `labels` 0/1, `scores` in [0, 1] (or 0/1 predictions).

    A multi-label audit runs this once per finding with `adjust_now=False` and corrects all
    findings as one family (`adjust_together`); `family_factor`, the number of findings,
    raises the permutations for that larger family.

    `attributes` maps each attribute name (intersections included, already combined) to
    one group label per case, as strings. `clusters`: one code per case naming its patient
    (or other `cluster_unit`): bootstrap and permutation draws then take whole patients and
    closed-form intervals their design effect (docs/statistics.md, "Patient-level
    resampling"). Inputs must be validated by the caller.
    """
    references = references or {}
    labels = np.asarray(labels, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if clusters is not None:
        _, clusters = np.unique(np.asarray(clusters), return_inverse=True)
        clusters = clusters.ravel()
        if clusters.size != labels.size:
            raise ValueError("clusters: one code per case is needed")

    def prepare(name: str, mask: np.ndarray | None) -> _GroupStats:
        s_, y_ = (scores, labels) if mask is None else (scores[mask], labels[mask])
        cells = make_cells(s_, y_)
        cc = None
        if clusters is not None:
            cc = cluster_cells(s_, y_, clusters if mask is None else clusters[mask], cells)
        return _prepare(name, cells, cfg, has_scores, cc)

    overall = prepare("overall", None)
    all_cells = overall.cells
    to_boot = [(overall, (0,))]
    per_attr: list[tuple[str, list[_GroupStats]]] = []
    n_missing: dict[str, int] = {}
    for ai, (attr, values) in enumerate(attributes.items()):
        values = np.asarray(values).astype(str)
        n_missing[attr] = int(np.sum(values == ABSENT))
        names = sorted(set(values.tolist()) - {ABSENT})  # a record without a value: in no group
        log.info("attribute %s: %d groups", attr, len(names))
        groups = []
        for gi, name in enumerate(names):
            gs = prepare(name, values == name)
            groups.append(gs)
            to_boot.append((gs, (1, ai, gi)))
        per_attr.append((attr, groups))
    _bootstrap_all(to_boot, cfg, has_scores)
    overall_est = _metric_estimates(overall, cfg, has_scores)

    # References, then every permutation test of the audit in one batch.
    plan = []
    clustered = overall.clustered
    permuted = list(cfg.permutation_metrics)
    if clustered and not cfg.analytic:
        # Fisher's and DeLong's tests take images as independent: with patients, every
        # tested metric is compared by permuting patients, like its interval resamples them.
        tested = [m for m in PROPORTIONS if m not in TESTED_AS and m not in UNTESTED_REASON]
        permuted += [m for m in (*tested, "auroc") if m not in permuted]
    perm_metrics = [m for m in permuted if has_scores or m in RATE_METRICS]
    for attr, groups in per_attr:
        ref_name = _choose_reference(groups, references.get(attr), attr, cfg)
        ref = next(g for g in groups if g.name == ref_name)
        pairs = [(gi, g) for gi, g in enumerate(groups) if g.name != ref_name]
        plan.append((attr, groups, ref, pairs))
    n_perm = permutations_needed(cfg, family_factor * sum(len(p[3]) for p in plan), has_scores, perm_metrics)
    if n_perm > cfg.n_permutations:
        log.info("permutations raised from %d to %d for the corrected threshold", cfg.n_permutations, n_perm)
    nulls = iter(_permutation_nulls(plan, cfg, perm_metrics, n_perm))

    attr_results: list[AttributeResult] = []
    for attr, groups, ref, pairs in plan:
        small = {g.name: g.cells.n < cfg.min_group_size for g in groups}
        group_results = [
            GroupResult(
                g.name,
                g.cells.n,
                g.cells.n_pos,
                small[g.name],
                _metric_estimates(g, cfg, has_scores),
            )
            for g in groups
        ]
        comparisons: list[Comparison] = []
        for _, g in pairs:
            comparisons += _compare(g, ref, cfg, has_scores, next(nulls))
        omnibus = _omnibus(groups, cfg, has_scores)
        attr_results.append(
            AttributeResult(
                name=attr,
                reference=ref.name,
                groups=group_results,
                comparisons=comparisons,
                omnibus=omnibus,
                summary=_summaries(groups, comparisons, omnibus, cfg, has_scores),
                n_missing=n_missing[attr],
            )
        )

    config = cfg.to_dict()
    config["permutations_requested"] = config["permutations"]
    config["permutations"] = n_perm
    # The resampling unit: "case" (each image or series) or, with clusters, e.g. "patient".
    config["resampling_unit"] = cluster_unit if clustered else "case"
    config["n_clusters"] = int(clusters.max()) + 1 if clusters is not None and clusters.size else None
    result = AuditResult(
        task="classification",
        config=config,
        n=all_cells.n,
        overall=overall_est,
        attributes=attr_results,
    )
    if adjust_now:
        adjust(result, cfg)
    return result


def adjust(result: AuditResult, cfg: AuditConfig) -> None:
    """Correct the p-values of each family (primary, exploratory) on its own."""
    adjust_together([result], cfg)


def adjust_together(results: Sequence[AuditResult], cfg: AuditConfig) -> None:
    """Correct the p-values of each family (primary, exploratory) on its own, over every
    result given (the findings of a multi-label audit are one family, docs/multilabel.md).

    One row per hypothesis: fnr and tnr rows take the adjusted p-value of their tpr and fpr
    twins (the same test) and are not counted again. A family is the primary one when the
    metric or its twin is in `cfg.primary_metrics`.
    """
    primary = set(cfg.primary_metrics)
    alpha = cfg.alpha
    twins: dict[tuple[int, str, str, str], Comparison] = {}
    families: dict[str, list[Comparison]] = {"primary": [], "exploratory": []}
    rows = [(i, attr, c) for i, result in enumerate(results) for attr, c in result.comparisons()]
    for i, attr, c in rows:
        base = TESTED_AS.get(c.metric, c.metric)
        c.family = "primary" if (c.metric in primary or base in primary) else "exploratory"
        if c.metric in TESTED_AS:
            c.tested_as = base
            continue
        twins[(i, attr.name, c.group, c.metric)] = c
        if c.p_value is not None:
            families[c.family].append(c)
    for family in families.values():
        if not family:
            continue
        adjusted = adjust_pvalues([c.p_value for c in family], cfg.correction, alpha)
        for c, p in zip(family, adjusted, strict=True):
            c.p_adjusted = p
            c.significant = bool(p < alpha)
            c.level_alpha = _row_alpha(c.p_value, c.p_adjusted, alpha, len(family))
    for i, attr, c in rows:
        if c.tested_as is not None:
            twin = twins.get((i, attr.name, c.group, c.tested_as))
            if twin is not None:
                c.family = twin.family
                c.p_adjusted, c.significant = twin.p_adjusted, twin.significant
                c.level_alpha = twin.level_alpha
    for _, _, c in rows:
        c.adjusted = _adjusted_interval(c)


def _row_alpha(p: float, p_adjusted: float, alpha: float, m: int) -> float:
    """The two-sided level at which this row's interval is the family's simultaneous one.

    At alpha * p / p_adjusted the inverted test rejects exactly when p_adjusted < alpha, so
    "significant after correction" and "the adjusted interval excludes 0" say the same
    (for Bonferroni this is alpha / m; for Holm, the step's own level).
    """
    # Where the correction caps p_adjusted at 1 (or p is 0), alpha / m: a row that is not
    # significant has p >= alpha / m under Holm, Bonferroni and Benjamini-Hochberg alike.
    if p_adjusted <= 0 or p <= 0 or p_adjusted >= 1:
        return alpha / m
    return alpha * min(1.0, p / p_adjusted)


def _adjusted_interval(c: Comparison) -> Estimate | None:
    """The difference interval at the row's adjusted level (None when untested)."""
    if c.level_alpha is None or c.interval_at is None or c.difference.value is None:
        return None
    z = float(norm.isf(c.level_alpha / 2.0))
    lo, hi = c.interval_at(z)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return Estimate(c.difference.value, None, "interval undefined at the adjusted level")
    return Estimate(c.difference.value, (float(lo), float(hi)), method=f"{c.difference.method}_adjusted")
