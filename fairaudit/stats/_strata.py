"""Comparisons within strata of a third variable (`--within COLUMN`; docs/statistics.md,
"Confounders (`--within`)").

A group's gap to its reference can be the gap of something the group is unevenly spread
over: a race that is mostly imaged on the portable unit inherits the portable unit's
sensitivity. So every comparison of an audit is computed again within each stratum (each
value of the `--within` column, or each combination of the values of several) and pooled
across strata, and the report sets the pooled difference beside the crude one.

- Rates (fairaudit.stats._metrics.PROPORTIONS): the Mantel-Haenszel risk difference
  (Greenland & Robins 1985) with Sato's (1989) variance, which holds with many small strata
  and with a few large ones; its test is the Cochran-Mantel-Haenszel test (statsmodels'
  StratifiedTable.test_null_odds; Mantel & Haenszel 1959), whose statistic is the same
  weighted sum of the strata's differences. With patients (several records each) both take
  the design effect of that sum: its cluster-robust variance over the independent one.
- The other metrics (auroc, balanced_accuracy, brier, auprc, ece, squared CE): the strata's
  differences averaged with the same weights, n_g n_r / (n_g + n_r) on the metric's own
  denominator; the interval is a stratified bootstrap's percentile interval (each group
  resampled within each stratum, by patient where there are patients) and the test a
  stratified permutation test (the group's and the reference's records, or patients,
  shuffled within each stratum, never across).

A stratum where the group or the reference has no case of the metric's denominator says
nothing about the gap: it drops out (`n_strata_used` counts the strata left). These
p-values are a sensitivity analysis: they join no multiplicity family.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats as sps

from fairaudit._util.absent import ABSENT, combine
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
    bootstrap_weights,
    cluster_cells,
    permutation_weights,
    resample_width,
    stack,
    weighted_counts,
)
from fairaudit.stats._intervals import percentile_interval
from fairaudit.stats._metrics import METRICS, PROPORTIONS, RATE_METRICS, MetricKernel
from fairaudit.stats._resample import bootstrap_counts, chunk_bounds, generator, permutation_counts, run_tasks
from fairaudit.stats._score import z_of
from fairaudit.stats._tests import TestResult, permutation_p_value
from fairaudit.stats.result import AuditResult, Estimate, Within

if TYPE_CHECKING:
    from fairaudit.stats._audit import AuditConfig

log = logging.getLogger(__name__)

#: Stream key of the within-stratum draws: distinct from the bootstrap (0, 1), permutation
#: (2), discovery (3) and betting (4) streams of the audit.
WITHIN_KEY = 5
RATE_METHOD = "mantel_haenszel_sato"
WEIGHTED_METHOD = "stratified_bootstrap_percentile"
CMH_TEST = "cochran_mantel_haenszel"
PERMUTATION_TEST = "stratified_permutation"
#: Joins the names of several --within columns (site × sex), as intersections are named.
STRATA_SEP = "×"
_NO_STRATUM = "no stratum has cases of the metric's denominator in both the group and the reference"
_UNTESTED = {"prevalence": "prevalence describes the cohort, not the model: described, not tested"}


# ---------------------------------------------------------------------------- strata


def stratum_codes(strata: Mapping[str, np.ndarray]) -> np.ndarray:
    """One code per record for its stratum: its combination of values of the --within
    columns; -1 where a value is missing (the record is left out of the within analysis)."""
    cols = [np.asarray(v).astype(str) for v in strata.values()]
    keys = combine(cols, "\x1f") if len(cols) > 1 else cols[0]
    known = keys != ABSENT
    codes = np.full(keys.size, -1, dtype=np.int64)
    if known.any():
        _, inverse = np.unique(keys[known], return_inverse=True)
        codes[known] = inverse.ravel()
    return codes


def strata_label(columns: Sequence[str]) -> str:
    """The strata as the report names them: "site", or "site × sex"."""
    return f" {STRATA_SEP} ".join(columns)


# ---------------------------------------------------------------------------- rates


def mantel_haenszel_difference(
    x_g: np.ndarray, n_g: np.ndarray, x_r: np.ndarray, n_r: np.ndarray
) -> tuple[float, float]:
    """The Mantel-Haenszel risk difference (group minus reference) over strata, and its
    variance by Sato (1989), which is consistent both for many sparse strata and for a few
    large ones (Greenland & Robins' 1985 variance needs large strata).

    With N = n_g + n_r and w = n_g n_r / N per stratum: RD = sum (x_g n_r - x_r n_g) / N / sum w;
    Var = (RD sum P + sum Q) / (sum w)^2, P = (n_g^2 x_r - n_r^2 x_g + n_g n_r (n_r - n_g) / 2) / N^2,
    Q = (x_g (n_r - x_r) + x_r (n_g - x_g)) / (2N). Every stratum needs n_g, n_r >= 1.
    """
    x_g, n_g, x_r, n_r = (np.asarray(a, dtype=np.float64) for a in (x_g, n_g, x_r, n_r))
    big = n_g + n_r
    w_sum = float(np.sum(n_g * n_r / big))
    rd = float(np.sum((x_g * n_r - x_r * n_g) / big)) / w_sum
    p = (n_g**2 * x_r - n_r**2 * x_g + n_g * n_r * (n_r - n_g) / 2.0) / big**2
    q = (x_g * (n_r - x_r) + x_r * (n_g - x_g)) / (2.0 * big)
    var = (rd * float(p.sum()) + float(q.sum())) / w_sum**2
    return rd, max(var, 0.0)


def cmh_test(
    x_g: np.ndarray, n_g: np.ndarray, x_r: np.ndarray, n_r: np.ndarray, design_effect: float = 1.0
) -> TestResult:
    """The Cochran-Mantel-Haenszel test of no association in any stratum (statsmodels'
    StratifiedTable.test_null_odds, no continuity correction). With patients, its statistic
    over the design effect of the pooled difference (Rao & Scott's first-order correction;
    the CMH numerator is the Mantel-Haenszel difference times sum w)."""
    from statsmodels.stats.contingency_tables import StratifiedTable

    x_g, n_g, x_r, n_r = (np.asarray(a, dtype=np.float64) for a in (x_g, n_g, x_r, n_r))
    tables = np.array([[x_g, n_g - x_g], [x_r, n_r - x_r]])  # (2, 2, strata)
    with np.errstate(divide="ignore", invalid="ignore"):
        res = StratifiedTable(tables).test_null_odds(correction=False)
    stat = float(res.statistic)
    if not np.isfinite(stat):
        return TestResult(CMH_TEST, None, reason="no stratum varies: every record has the same outcome")
    if design_effect > 1.0:
        stat /= design_effect
        return TestResult(f"{CMH_TEST}_rao_scott", float(sps.chi2.sf(stat, 1)), statistic=stat, df=1)
    return TestResult(CMH_TEST, float(res.pvalue), statistic=stat, df=1)


def _rate_design_effect(
    y: np.ndarray, in_g: np.ndarray, stratum: np.ndarray, units: np.ndarray, n_g: np.ndarray, n_r: np.ndarray
) -> float:
    """The design effect of the Mantel-Haenszel difference: the cluster-robust variance of
    its linearization, sum over records of c_i (y_i - p_group,stratum), summed per patient
    before squaring, over the same sum squared record by record. At least 1."""
    big = n_g + n_r
    w_sum = float(np.sum(n_g * n_r / big))
    coef = np.where(in_g, n_r[stratum], -n_g[stratum]) / big[stratum] / w_sum
    k = n_g.size
    cell = 2 * stratum + in_g.astype(np.int64)
    rate = np.bincount(cell, weights=y, minlength=2 * k) / np.maximum(np.bincount(cell, minlength=2 * k), 1)
    infl = coef * (y - rate[cell])
    independent = float(infl @ infl)
    if independent <= 0:
        return 1.0
    _, unit = np.unique(units, return_inverse=True)
    per_unit = np.bincount(unit.ravel(), weights=infl)
    return max(1.0, float(per_unit @ per_unit) / independent)


def _rate_within(
    metric: str,
    conf: Mapping[str, np.ndarray],
    in_g: np.ndarray,
    stratum: np.ndarray,
    n_strata: int,
    units: np.ndarray | None,
    z: float,
) -> tuple[Estimate, TestResult, int]:
    """One rate's pooled within-stratum difference, its test and the strata used, over the
    records of the group (in_g) and the reference (the rest) that have a stratum."""
    num, den = PROPORTIONS[metric]
    in_den = np.logical_or.reduce([conf[c] for c in den])
    y = np.logical_or.reduce([conf[c] for c in num]).astype(np.float64)
    size = 2 * n_strata
    cell = 2 * stratum + in_g.astype(np.int64)
    n = np.bincount(cell[in_den], minlength=size).reshape(n_strata, 2)
    x = np.bincount(cell[in_den], weights=y[in_den], minlength=size).reshape(n_strata, 2)
    used = (n[:, 0] > 0) & (n[:, 1] > 0)
    if not used.any():
        return Estimate(None, None, _NO_STRATUM), TestResult(CMH_TEST, None, reason=_NO_STRATUM), 0
    x_g, n_g, x_r, n_r = x[used, 1], n[used, 1], x[used, 0], n[used, 0]
    rd, var = mantel_haenszel_difference(x_g, n_g, x_r, n_r)
    deff = 1.0
    if units is not None:
        dense = np.cumsum(used) - 1  # stratum code -> its index among the used strata
        keep = in_den & used[stratum]
        deff = _rate_design_effect(
            y[keep],
            in_g[keep],
            dense[stratum[keep]],
            units[keep],
            n_g.astype(np.float64),
            n_r.astype(np.float64),
        )
    n_used = int(n_g.sum() + n_r.sum())
    if var <= 0:
        why = "no interval: the Sato variance is 0 (no record's outcome varies within the strata used)"
        estimate = Estimate(rd, None, why, n=n_used)
    else:
        half = z * float(np.sqrt(var * deff))
        ci = (max(-1.0, rd - half), min(1.0, rd + half))
        estimate = Estimate(rd, ci, None, RATE_METHOD, n_used, deff if units is not None else None)
    return estimate, cmh_test(x_g, n_g, x_r, n_r, deff), int(used.sum())


# ---------------------------------------------------------------------------- other metrics


def _denominator(metric: str, n_pos: np.ndarray, n_neg: np.ndarray) -> np.ndarray:
    """The metric's own denominator, per row (fairaudit.stats._analytic.denominator)."""
    if metric in ("auroc", "balanced_accuracy"):
        return np.minimum(n_pos, n_neg)
    if metric == "auprc":
        return n_pos
    return n_pos + n_neg


def _pooled(
    metric: str,
    parts: Sequence[
        tuple[
            Mapping[str, np.ndarray], np.ndarray, np.ndarray, Mapping[str, np.ndarray], np.ndarray, np.ndarray
        ]
    ],
) -> tuple[np.ndarray, np.ndarray]:
    """The stratum-weighted difference (group minus reference) of rows of values, and how
    many strata had a weight, from per stratum (group metrics, n_pos, n_neg, reference ...)."""
    num = den = used = None
    for mg, pg, ng, mr, pr, nr in parts:
        hg = _denominator(metric, pg, ng).astype(np.float64)
        hr = _denominator(metric, pr, nr).astype(np.float64)
        vg, vr = mg[metric], mr[metric]
        ok = (hg > 0) & (hr > 0) & np.isfinite(vg) & np.isfinite(vr)
        w = np.where(ok, hg * hr / np.where(ok, hg + hr, 1.0), 0.0)
        term = np.where(ok, w * np.where(ok, vg - vr, 0.0), 0.0)
        num = term if num is None else num + term
        den = w if den is None else den + w
        used = ok.astype(np.int64) if used is None else used + ok
    assert num is not None and den is not None and used is not None
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan), used


def _grid(cells: Cells, threshold: float) -> tuple[Cells, np.ndarray | None]:
    """The cells resampling draws from (binned to the resampling grid when there are many
    distinct scores, as the audit's own draws are) and each cell's index there."""
    if cells.k <= RESAMPLE_GRID:
        return cells, None
    edges = grid_edges(threshold)
    return coarsen(cells, edges), coarse_index(cells, edges)


def bootstrap_part(
    source: Cells | ClusterCells,
    threshold: float,
    with_scores: bool,
    size: int,
    seed: int,
    key: tuple[int, ...],
) -> dict[str, np.ndarray]:
    """Every metric, and the positives and negatives, of `size` bootstrap resamples of one
    group within one stratum (its records, or its patients with all their records)."""
    kernel = MetricKernel(source.u, threshold, with_scores)
    parts: list[dict[str, np.ndarray]] = []
    for i, (a, b) in enumerate(chunk_bounds(size, resample_width(source))):
        rng = generator(seed, key + (i,))
        if isinstance(source, ClusterCells):
            pos, neg = weighted_counts(source, bootstrap_weights(source.n_clusters, b - a, rng))
        else:
            pos, neg = bootstrap_counts(source, b - a, rng)
        out = kernel.evaluate(pos, neg)
        out["n_pos"], out["n_neg"] = pos.sum(axis=1), neg.sum(axis=1)
        parts.append(out)
    return {m: np.concatenate([p[m] for p in parts]) for m in parts[0]}


def permutation_null(
    pools: Sequence[tuple[Cells | ClusterCells, int]],
    threshold: float,
    metrics: Sequence[str],
    size: int,
    seed: int,
    key: tuple[int, ...],
) -> dict[str, np.ndarray]:
    """The stratum-weighted difference of each metric over `size` stratified permutations:
    in each stratum the pooled records (or patients) of the group and the reference are
    split at random into the group's size (`n_first` units) and the rest."""
    chunks = chunk_bounds(size, max(resample_width(p) for p, _ in pools))
    out: dict[str, list[np.ndarray]] = {m: [] for m in metrics}
    for i, (a, b) in enumerate(chunks):
        per_stratum = []
        for s, (pool, n_first) in enumerate(pools):
            rng = generator(seed, key + (s, i))
            if isinstance(pool, ClusterCells):
                pos_g, neg_g = weighted_counts(
                    pool, permutation_weights(pool.n_clusters, n_first, b - a, rng)
                )
                total = pool.cells()
            else:
                pos_g, neg_g = permutation_counts(pool, n_first, b - a, rng)
                total = pool
            kernel = MetricKernel(pool.u, threshold, True)
            pos_r, neg_r = total.pos[None, :] - pos_g, total.neg[None, :] - neg_g
            per_stratum.append(
                (
                    kernel.evaluate(pos_g, neg_g), pos_g.sum(axis=1), neg_g.sum(axis=1),
                    kernel.evaluate(pos_r, neg_r), pos_r.sum(axis=1), neg_r.sum(axis=1),
                )
            )  # fmt: skip
        for m in metrics:
            out[m].append(_pooled(m, per_stratum)[0])
    return {m: np.concatenate(v) for m, v in out.items()}


@dataclass
class _Part:
    """One group's records within one stratum."""

    cells: Cells
    point: dict[str, np.ndarray]  # every metric (one row) and n_pos / n_neg
    clusters: ClusterCells | None  # per patient, when patients are the unit
    boot: dict[str, np.ndarray] | None = None

    def source(self, threshold: float) -> Cells | ClusterCells:
        """What a bootstrap of this part draws: patients, or records (on the grid)."""
        grid, index = _grid(self.cells, threshold)
        if self.clusters is not None and self.clusters.clustered:
            return self.clusters if index is None else self.clusters.regrid(index, grid.u)
        return grid


def _part(
    scores: np.ndarray, labels: np.ndarray, units: np.ndarray | None, threshold: float, with_scores: bool
) -> _Part:
    cells = make_cells(scores, labels)
    point = MetricKernel(cells.u, threshold, with_scores).evaluate(cells.pos[None, :], cells.neg[None, :])
    point["n_pos"], point["n_neg"] = np.array([cells.n_pos]), np.array([cells.n_neg])
    cc = cluster_cells(scores, labels, units, cells) if units is not None else None
    return _Part(cells, point, cc)


def _pool(g: _Part, r: _Part, threshold: float) -> tuple[Cells | ClusterCells, int]:
    """The group's and the reference's records (or patients) of one stratum as one pool to
    split, and how many units the group takes."""
    pooled, ig, ir = merge_cells(g.cells, r.cells)
    grid, index = _grid(pooled, threshold)
    if g.clusters is not None and r.clusters is not None and (g.clusters.clustered or r.clusters.clustered):
        units = stack([g.clusters, r.clusters], pooled.u, [ig, ir])
        if index is not None:
            units = units.regrid(index, grid.u)
        return units, g.clusters.n_clusters
    return grid, g.cells.n


# ---------------------------------------------------------------------------- the audit


def attach_within(
    result: AuditResult,
    labels: np.ndarray,
    scores: np.ndarray,
    attributes: Mapping[str, np.ndarray],
    strata: Mapping[str, np.ndarray],
    cfg: AuditConfig,
    *,
    has_scores: bool = True,
    clusters: np.ndarray | None = None,
) -> None:
    """Give every comparison of `result` its `within` block: the comparison within each
    stratum of the `strata` columns (one value per record, ABSENT where missing), pooled.

    `labels`, `scores`, `attributes` and `clusters` are those `result` was computed from;
    the threshold, level, seed and counts of draws are `cfg`'s. Nothing else of `result`
    changes: these p-values join no family (docs/statistics.md, "Confounders").
    """
    columns = list(strata)
    labels = np.asarray(labels, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    codes = stratum_codes(strata)
    units = None if clusters is None else np.unique(np.asarray(clusters), return_inverse=True)[1].ravel()
    if units is not None and (units.size == 0 or np.bincount(units).max() <= 1):
        units = None  # every patient has one record: records are the unit
    pred = scores >= cfg.threshold
    conf = {
        "tp": (labels == 1) & pred,
        "fp": (labels == 0) & pred,
        "tn": (labels == 0) & ~pred,
        "fn": (labels == 1) & ~pred,
    }
    others = [m for m in (METRICS if has_scores else RATE_METRICS) if m not in PROPORTIONS]
    plans = _plans(result, attributes, codes, scores, labels, units, cfg.threshold, has_scores)
    if others:
        _bootstrap_parts(plans, cfg, has_scores)
    nulls = _permutation_nulls(plans, cfg, others) if others else {}
    z = z_of(cfg.ci_level)
    for ai, (attr, values, parts) in enumerate(plans):
        ref = attr.reference
        for group in dict.fromkeys(c.group for c in attr.comparisons):
            in_pair = (codes >= 0) & ((values == group) | (values == ref))
            strata_of, dense = np.unique(codes[in_pair], return_inverse=True)
            pair_conf = {k: v[in_pair] for k, v in conf.items()}
            pair_units = None if units is None else units[in_pair]
            for c in (c for c in attr.comparisons if c.group == group):
                if c.metric in PROPORTIONS:
                    estimate, test, n_used = _rate_within(
                        c.metric,
                        pair_conf,
                        values[in_pair] == group,
                        dense.ravel(),
                        strata_of.size,
                        pair_units,
                        z,
                    )
                else:
                    estimate, test, n_used = _other_within(
                        c.metric, parts, group, ref, nulls.get((ai, group)), cfg.ci_level
                    )
                if c.metric in _UNTESTED:
                    test = TestResult("none", None, reason=_UNTESTED[c.metric])
                c.within = Within(
                    strata=columns,
                    n_strata=int(strata_of.size),
                    n_strata_used=n_used,
                    difference=estimate,
                    test=test.test,
                    p_value=test.p_value,
                    reason=test.reason,
                )


_Plan = tuple[Any, np.ndarray, dict[tuple[str, int], _Part]]  # (AttributeResult, group per record, parts)


def _plans(
    result: AuditResult,
    attributes: Mapping[str, np.ndarray],
    codes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    units: np.ndarray | None,
    threshold: float,
    has_scores: bool,
) -> list[_Plan]:
    """Per attribute of `result`: its group per record and every (group, stratum) part."""
    plans = []
    for attr in result.attributes:
        values = np.asarray(attributes[attr.name]).astype(str)
        parts: dict[tuple[str, int], _Part] = {}
        for g in attr.groups:
            mask = (values == g.group) & (codes >= 0)
            for s in np.unique(codes[mask]).tolist():
                m = mask & (codes == s)
                parts[(g.group, s)] = _part(
                    scores[m], labels[m], None if units is None else units[m], threshold, has_scores
                )
        plans.append((attr, values, parts))
    return plans


def _bootstrap_parts(plans: list[_Plan], cfg: AuditConfig, has_scores: bool) -> None:
    """Bootstrap every (group, stratum) part at once (in worker processes when large), each
    from its own seeded stream (WITHIN_KEY, 0, attribute, group, stratum)."""
    jobs = []
    for ai, (attr, _, parts) in enumerate(plans):
        index = {g.group: gi for gi, g in enumerate(attr.groups)}
        jobs += [(part, (WITHIN_KEY, 0, ai, index[g], s)) for (g, s), part in parts.items()]
    tasks = [
        (p.source(cfg.threshold), cfg.threshold, has_scores, cfg.bootstrap, cfg.seed, k) for p, k in jobs
    ]
    work = sum(p.cells.n for p, _ in jobs) * float(cfg.bootstrap)
    for (p, _), res in zip(jobs, run_tasks(bootstrap_part, tasks, work, cfg.workers), strict=True):
        p.boot = res


def _permutation_nulls(
    plans: list[_Plan], cfg: AuditConfig, metrics: Sequence[str]
) -> dict[tuple[int, str], dict[str, np.ndarray]]:
    """The stratified permutation null of every group against its reference, by (attribute
    index, group), each from its own seeded stream (WITHIN_KEY, 1, attribute, group)."""
    keys, tasks, work = [], [], 0.0
    for ai, (attr, _, parts) in enumerate(plans):
        ref = attr.reference
        for gi, g in enumerate(attr.groups):
            name = g.group
            if name == ref or not any(c.group == name for c in attr.comparisons):
                continue
            common = sorted(s for (k, s) in parts if k == name and (ref, s) in parts)
            if not common:
                continue
            pools = [_pool(parts[(name, s)], parts[(ref, s)], cfg.threshold) for s in common]
            keys.append((ai, name))
            tasks.append(
                (pools, cfg.threshold, list(metrics), cfg.n_permutations, cfg.seed, (WITHIN_KEY, 1, ai, gi))
            )
            work += sum(parts[(k, s)].cells.n for s in common for k in (name, ref)) * 2.0 * cfg.n_permutations
    return dict(zip(keys, run_tasks(permutation_null, tasks, work, cfg.workers), strict=True))


def _other_within(
    metric: str,
    parts: Mapping[tuple[str, int], _Part],
    group: str,
    ref: str,
    null: Mapping[str, np.ndarray] | None,
    level: float,
) -> tuple[Estimate, TestResult, int]:
    """A metric other than a rate: the stratum-weighted difference, its stratified bootstrap
    interval and its stratified permutation test."""
    common = sorted(s for (g, s) in parts if g == group and (ref, s) in parts)
    if not common:
        return Estimate(None, None, _NO_STRATUM), TestResult(PERMUTATION_TEST, None, reason=_NO_STRATUM), 0

    def rows(key: str) -> list[tuple[Any, ...]]:
        out = []
        for s in common:
            g, r = parts[(group, s)], parts[(ref, s)]
            a, b = (g.point, r.point) if key == "point" else (g.boot, r.boot)
            assert a is not None and b is not None
            out.append((a, a["n_pos"], a["n_neg"], b, b["n_pos"], b["n_neg"]))
        return out

    value, used = _pooled(metric, rows("point"))
    d, n_used = float(value[0]), int(used[0])
    if not np.isfinite(d):
        why = f"{metric}: {_NO_STRATUM}"
        return Estimate(None, None, why), TestResult(PERMUTATION_TEST, None, reason=why), 0
    n = sum(int(parts[(k, s)].cells.n) for s in common for k in (group, ref))
    ci = percentile_interval(_pooled(metric, rows("boot"))[0], level)
    if ci is None:
        estimate = Estimate(d, None, "interval undefined: undefined in most stratified resamples", n=n)
    else:
        estimate = Estimate(d, ci, None, WEIGHTED_METHOD, n)
    p = permutation_p_value(d, null[metric]) if null is not None and metric in null else None
    test = TestResult(PERMUTATION_TEST, p, reason=None if p is not None else "undefined in every permutation")
    return estimate, test, n_used


def stratified_permutation_test(
    labels: np.ndarray,
    scores: np.ndarray,
    in_group: np.ndarray,
    stratum: np.ndarray,
    metrics: Sequence[str],
    *,
    threshold: float = 0.5,
    size: int = 1000,
    seed: int = 0,
) -> dict[str, tuple[float | None, float | None]]:
    """One group (`in_group`) against the other records, within the strata of `stratum`
    (codes >= 0): per metric the stratum-weighted difference and its stratified permutation
    p-value (records as the unit), as `attach_within` computes them for a metric that is not
    a rate. None where no stratum has cases of the metric's denominator in both."""
    labels = np.asarray(labels, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    in_group = np.asarray(in_group, dtype=bool)
    stratum = np.asarray(stratum)
    parts = {}
    for s in np.unique(stratum[stratum >= 0]).tolist():
        for name, mask in (("g", in_group), ("r", ~in_group)):
            m = mask & (stratum == s)
            if m.any():
                parts[(name, s)] = _part(scores[m], labels[m], None, threshold, True)
    common = sorted(s for (g, s) in parts if g == "g" and ("r", s) in parts)
    pools = [_pool(parts[("g", s)], parts[("r", s)], threshold) for s in common]
    null = permutation_null(pools, threshold, metrics, size, seed, (WITHIN_KEY, 2)) if pools else {}
    out: dict[str, tuple[float | None, float | None]] = {}
    for metric in metrics:
        if not common:
            out[metric] = (None, None)
            continue
        rows = [(parts[("g", s)].point, parts[("r", s)].point) for s in common]
        value = _pooled(metric, [(a, a["n_pos"], a["n_neg"], b, b["n_pos"], b["n_neg"]) for a, b in rows])[0][
            0
        ]
        d = float(value) if np.isfinite(value) else None
        out[metric] = (d, permutation_p_value(d, null[metric]) if d is not None else None)
    return out
