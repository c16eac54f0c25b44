"""Build the AuditResult: per-group metrics, intervals, comparisons, tests, summaries."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from statsmodels.stats.multitest import multipletests

from fairaudit.stats import _tests as T
from fairaudit.stats._cells import (
    RESAMPLE_GRID,
    Cells,
    coarsen,
    grid_edges,
    make_cells,
    merge_cells,
)
from fairaudit.stats._intervals import acceleration, bca_interval, percentile_interval
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
from fairaudit.stats._resample import bootstrap_task, permutation_task, run_tasks
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

PERMUTATION_METRICS: tuple[str, ...] = ("balanced_accuracy", "auprc", "ece")
CORRECTIONS = ("holm", "fdr_bh", "bonferroni", "none")
CI_METHODS = ("percentile", "bca")


@dataclass(frozen=True)
class AuditConfig:
    """The statistical settings of an audit (recorded verbatim in results.json)."""

    bootstrap: int = 2000
    ci_level: float = 0.95
    ci_method: str = "percentile"
    seed: int = 0
    threshold: float = 0.5
    min_group_size: int = 30
    correction: str = "holm"
    permutations: int | None = None  # None: as many as bootstrap resamples
    workers: int | None = field(default=None, compare=False)  # processes; not a result setting

    def __post_init__(self) -> None:
        if self.bootstrap < 1:
            raise ValueError("--bootstrap must be at least 1")
        if not 0 < self.ci_level < 1:
            raise ValueError("--ci-level must be between 0 and 1 (for example 0.95)")
        if self.ci_method not in CI_METHODS:
            raise ValueError(f"--ci-method must be one of {', '.join(CI_METHODS)}")
        if self.correction not in CORRECTIONS:
            raise ValueError(f"--correction must be one of {', '.join(CORRECTIONS)}")
        if not 0 <= self.threshold <= 1:
            raise ValueError("--threshold must be in [0, 1]")
        if self.min_group_size < 0:
            raise ValueError("--min-group-size must be >= 0")

    @property
    def alpha(self) -> float:
        """1 - ci_level, rounded so that 1 - 0.95 is exactly 0.05 (not 0.050000000000000044)."""
        return round(1.0 - self.ci_level, 12)

    @property
    def n_permutations(self) -> int:
        return self.permutations if self.permutations is not None else self.bootstrap

    def to_dict(self) -> dict:
        out = asdict(self)
        out["permutations"] = self.n_permutations
        out.pop("workers")
        return out


@dataclass
class _GroupStats:
    """One group's cells, point metrics, bootstrap distributions and jackknife values."""

    name: str
    cells: Cells
    kernel: MetricKernel
    point: dict[str, float]
    resample_cells: Cells
    shift: dict[str, float]
    loo: dict[str, np.ndarray]
    loo_w: np.ndarray
    boot: dict[str, np.ndarray] = field(default_factory=dict)


def _resampling_grid(cells: Cells, cfg: AuditConfig) -> tuple[Cells, MetricKernel | None]:
    """The cells resampling draws from: binned to the grid when there are many scores."""
    if cells.k <= RESAMPLE_GRID:
        return cells, None
    coarse = coarsen(cells, grid_edges(cfg.threshold))
    return coarse, MetricKernel(coarse.u, cfg.threshold, True)


def _prepare(name: str, cells: Cells, cfg: AuditConfig, has_scores: bool) -> _GroupStats:
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
    loo, w = kernel.leave_one_out(cells.pos, cells.neg) if cfg.ci_method == "bca" else ({}, np.empty(0))
    return _GroupStats(name, cells, kernel, point, rcells, shift, loo, w)


def _bootstrap_all(
    stats: list[tuple[_GroupStats, tuple[int, ...]]], cfg: AuditConfig, has_scores: bool
) -> None:
    """Bootstrap every group at once (in worker processes when large)."""
    tasks = [(g.resample_cells, cfg.threshold, has_scores, cfg.bootstrap, cfg.seed, key) for g, key in stats]
    work = sum(g.cells.n for g, _ in stats) * float(cfg.bootstrap)
    for (g, _), res in zip(stats, run_tasks(bootstrap_task, tasks, work, cfg.workers), strict=True):
        g.boot = {m: res[m] + g.shift[m] for m in res}


def _interval(
    cfg: AuditConfig,
    boot: np.ndarray,
    estimate: float,
    strata: Sequence[tuple[np.ndarray, np.ndarray]] | None,
) -> tuple[float, float] | None:
    if cfg.ci_method == "bca" and strata is not None:
        return bca_interval(boot, estimate, acceleration(strata), cfg.ci_level)
    return percentile_interval(boot, cfg.ci_level)


def _estimate(cfg: AuditConfig, value: float, boot: np.ndarray, strata, reason: str) -> Estimate:
    if not np.isfinite(value):
        return Estimate(None, None, reason)
    ci = _interval(cfg, boot, value, strata)
    est = Estimate(float(value), ci, None)
    if ci is None:
        return Estimate(float(value), None, "interval undefined: the metric is undefined in most resamples")
    return est


def _metric_estimates(gs: _GroupStats, cfg: AuditConfig, has_scores: bool) -> dict[str, Estimate]:
    out: dict[str, Estimate] = {}
    for m in METRICS:
        if m in SCORE_METRICS and not has_scores:
            out[m] = Estimate(None, None, NO_SCORE_REASON)
            continue
        strata = [(gs.loo[m], gs.loo_w)] if cfg.ci_method == "bca" else None
        out[m] = _estimate(cfg, gs.point[m], gs.boot[m], strata, UNDEFINED_REASON[m])
    return out


def _choose_reference(groups: list[_GroupStats], requested: str | None, attr: str) -> str:
    if requested is not None:
        names = [g.name for g in groups]
        if requested not in names:
            raise ValueError(
                f"--reference {attr}={requested}: no such group; groups of '{attr}' are: " + ", ".join(names)
            )
        return requested
    # The largest group; ties go to the first name in sorted order.
    return sorted(groups, key=lambda g: (-g.cells.n, g.name))[0].name


def _permutation_spec(
    g: _GroupStats, r: _GroupStats, cfg: AuditConfig, metrics: Sequence[str], key: tuple[int, ...]
) -> tuple:
    """Arguments of the permutation task for group vs reference."""
    pooled, _, _ = merge_cells(g.cells, r.cells)
    pooled, _ = _resampling_grid(pooled, cfg)
    return (pooled, g.cells.n, cfg.threshold, tuple(metrics), cfg.n_permutations, cfg.seed, key)


def _compare(
    g: _GroupStats,
    r: _GroupStats,
    cfg: AuditConfig,
    has_scores: bool,
    small: bool,
    nulls: dict[str, np.ndarray],
) -> list[Comparison]:
    conf_g = T.confusion(g.cells, cfg.threshold)
    conf_r = T.confusion(r.cells, cfg.threshold)
    metrics = METRICS if has_scores else RATE_METRICS
    rows = []
    for m in metrics:
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
        why = f"{m} undefined in this group or the reference"
        difference = _estimate(cfg, diff, bg - br, d_strata, why)
        ratio_est = _estimate(
            cfg,
            ratio,
            boot_ratio,
            r_strata,
            why if not np.isfinite(diff) else "reference value is 0",
        )
        if m in PROPORTIONS:
            res = T.fisher_test(conf_g, conf_r, PROPORTIONS[m])
        elif m == "auroc":
            res = T.delong_test(g.cells, r.cells)
        elif m == "brier":
            res = T.mannwhitney_test(T.per_case_brier(g.cells), T.per_case_brier(r.cells))
        else:
            p = T.permutation_p_value(diff, nulls[m])
            res = T.TestResult("permutation", p, reason=None if p is not None else why)
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
            )
        )
    return rows


def _omnibus(groups: list[_GroupStats], cfg: AuditConfig, has_scores: bool) -> list[Omnibus]:
    out = []
    confs = [T.confusion(g.cells, cfg.threshold) for g in groups]
    for m, parts in PROPORTIONS.items():
        res = T.chi2_omnibus(confs, parts)
        out.append(Omnibus(m, res.test, res.p_value, res.statistic, res.df, res.reason))
    if has_scores:
        res = T.delong_omnibus([g.cells for g in groups])
        out.append(Omnibus("auroc", res.test, res.p_value, res.statistic, res.df, res.reason))
        res = T.kruskal_omnibus([T.per_case_brier(g.cells) for g in groups])
        out.append(Omnibus("brier", res.test, res.p_value, res.statistic, res.df, res.reason))
    return out


def _summaries(
    groups: list[_GroupStats], small: dict[str, bool], cfg: AuditConfig, has_scores: bool
) -> dict[str, MetricSummary]:
    """Between-group spread of each metric (fairlearn's difference and ratio), with intervals.

    Small groups are left out: their noise alone would make the spread look large.
    Intervals are percentile intervals (max and min are not smooth enough for BCa).
    """
    out: dict[str, MetricSummary] = {}
    metrics = METRICS if has_scores else RATE_METRICS
    big = [g for g in groups if not small[g.name]]
    for m in metrics:
        defined = [g for g in big if np.isfinite(g.point[m])]
        if len(defined) < 2:
            reason = "fewer than two groups of adequate size with a defined value"
            out[m] = MetricSummary(Estimate(None, None, reason), Estimate(None, None, reason), None)
            continue
        vals = np.array([g.point[m] for g in defined])
        boots = np.vstack([g.boot[m] for g in defined])
        with np.errstate(invalid="ignore", divide="ignore"):
            bmax, bmin = np.max(boots, axis=0), np.min(boots, axis=0)
            bdiff = bmax - bmin
            bratio = np.where(bmax > 0, bmin / bmax, np.nan)
        d = float(vals.max() - vals.min())
        ratio = float(vals.min() / vals.max()) if vals.max() > 0 else np.nan
        direction = HIGHER_IS_BETTER[m]
        if direction is True:
            worst = defined[int(np.argmin(vals))].name
        elif direction is False:
            worst = defined[int(np.argmax(vals))].name
        else:
            worst = None
        out[m] = MetricSummary(
            Estimate(d, percentile_interval(bdiff, cfg.ci_level)),
            Estimate.of(ratio, percentile_interval(bratio, cfg.ci_level), "the largest group value is 0"),
            worst,
        )
    return out


def run_audit(
    labels: np.ndarray,
    scores: np.ndarray,
    attributes: dict[str, np.ndarray],
    cfg: AuditConfig,
    *,
    has_scores: bool = True,
    references: dict[str, str] | None = None,
) -> AuditResult:
    """Audit one set of cases: `labels` 0/1, `scores` in [0, 1] (or 0/1 predictions).

    `attributes` maps each attribute name (intersections included, already combined) to
    one group label per case, as strings. Inputs must be validated by the caller.
    """
    references = references or {}
    labels = np.asarray(labels, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    all_cells = make_cells(scores, labels)
    overall = _prepare("overall", all_cells, cfg, has_scores)
    to_boot = [(overall, (0,))]
    per_attr: list[tuple[str, list[_GroupStats]]] = []
    for ai, (attr, values) in enumerate(attributes.items()):
        values = np.asarray(values).astype(str)
        names = sorted(set(values.tolist()))
        log.info("attribute %s: %d groups", attr, len(names))
        groups = []
        for gi, name in enumerate(names):
            mask = values == name
            gs = _prepare(name, make_cells(scores[mask], labels[mask]), cfg, has_scores)
            groups.append(gs)
            to_boot.append((gs, (1, ai, gi)))
        per_attr.append((attr, groups))
    _bootstrap_all(to_boot, cfg, has_scores)
    overall_est = _metric_estimates(overall, cfg, has_scores)

    # References, then every permutation test of the audit in one batch.
    plan = []
    perm_metrics = [m for m in PERMUTATION_METRICS if has_scores or m in RATE_METRICS]
    for attr, groups in per_attr:
        ref_name = _choose_reference(groups, references.get(attr), attr)
        ref = next(g for g in groups if g.name == ref_name)
        pairs = [(gi, g) for gi, g in enumerate(groups) if g.name != ref_name]
        plan.append((attr, groups, ref, pairs))
    specs = [
        _permutation_spec(g, ref, cfg, perm_metrics, (2, ai, gi))
        for ai, (_, _, ref, pairs) in enumerate(plan)
        for gi, g in pairs
    ]
    work = sum(s[0].n for s in specs) * float(cfg.n_permutations) * 2
    nulls = iter(run_tasks(permutation_task, specs, work, cfg.workers))

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
            # Neither a small group nor a small reference may decide anything on its own.
            tiny = small[g.name] or small[ref.name]
            comparisons += _compare(g, ref, cfg, has_scores, tiny, next(nulls))
        attr_results.append(
            AttributeResult(
                name=attr,
                reference=ref.name,
                groups=group_results,
                comparisons=comparisons,
                omnibus=_omnibus(groups, cfg, has_scores),
                summary=_summaries(groups, small, cfg, has_scores),
            )
        )

    result = AuditResult(
        task="classification",
        config=cfg.to_dict(),
        n=all_cells.n,
        overall=overall_est,
        attributes=attr_results,
    )
    adjust(result, cfg)
    return result


def adjust(result: AuditResult, cfg: AuditConfig) -> None:
    """One family per audit: correct every comparison's p-value together."""
    rows = [c for _, c in result.comparisons() if c.p_value is not None]
    if not rows:
        return
    pvals = np.array([c.p_value for c in rows])
    alpha = cfg.alpha
    if cfg.correction == "none":
        adjusted = pvals
    else:
        adjusted = multipletests(pvals, alpha=alpha, method=cfg.correction)[1]
    for c, p in zip(rows, adjusted, strict=True):
        c.p_adjusted = float(p)
        c.significant = bool(p < alpha)
