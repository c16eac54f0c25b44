"""Slice discovery: which group, or pair of groups, does the model serve worst?

Every group of every attribute and every group of every pairwise intersection is one
candidate slice. Each slice is compared with the rest of the cohort (slice vs
complement) on one metric: the point difference, a test of "the slice is worse" (DeLong
for auroc, Fisher exact for rates, Mann-Whitney U for per-case values such as brier or
dice; one-sided in the direction that is worse for the metric, two-sided for
selection_rate and prevalence, which have no better side), and,
for the top slices, a stratified bootstrap interval (slice and complement each resampled
within itself, sizes fixed). The whole search is one family: p-values are adjusted over
every slice tested (statsmodels multipletests, the audit's correction), so a slice picked
from many is not significant merely because its raw p is small.

Why one-sided: the search asks which slices are served worse. A two-sided DeLong test
also flags small slices that look better (AUROC near 1, where its variance estimate is too
small): on cohorts with nothing planted (n = 800, 40 seeds) two-sided tests gave a
family-wise error of 0.15 under Holm, one-sided 0.025.

Slices with the same cases (a manufacturer that is exactly one site) are tested once and
listed with their equivalents; slices or complements under min_group_size are skipped
and counted.

With patient clusters (some patient with several cases; docs/statistics.md,
"Patient-level resampling") the cases of a patient are not independent, so each slice is
tested by a Wald z test with the patients as the unit: the cluster-robust (linearised)
variance of a ratio for rates and means, Obuchowski's (1997) clustered variance for AUROC;
and the top slices' intervals resample patients.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from itertools import combinations
from typing import Any

import numpy as np
from scipy import stats as sps

from fairaudit._util.absent import ABSENT, present
from fairaudit.errors import arg
from fairaudit.stats import _tests as T
from fairaudit.stats._audit import AuditConfig, _bootstrap_all, _prepare
from fairaudit.stats._cells import Cells, make_cells
from fairaudit.stats._intervals import percentile_interval
from fairaudit.stats._metrics import HIGHER_IS_BETTER, PROPORTIONS
from fairaudit.stats._multitest import adjust_pvalues
from fairaudit.stats._resample import generator
from fairaudit.stats.result import Estimate

log = logging.getLogger(__name__)

# Metrics discovery can rank on (each has a classical test, fast enough for hundreds of slices).
CELL_METRICS: tuple[str, ...] = ("auroc", "brier", *PROPORTIONS)
PER_CASE_HIGHER_IS_BETTER: dict[str, bool] = {
    "dice": True,
    "iou": True,
    "hd95": False,
    "assd": False,
    "volume_error": False,
    "nsd": True,
}
CONDITION_SEP = " & "
_KEY = 3  # bootstrap stream key prefix, distinct from run_audit's (0, 1, 2)


def default_metric(has_scores: bool) -> str:
    return "auroc" if has_scores else "tpr"


def _slices(
    attributes: dict[str, np.ndarray],
) -> Iterator[tuple[tuple[tuple[str, str], ...], np.ndarray, np.ndarray]]:
    """Every group of every attribute, then every group of every pairwise intersection; each
    with the records that have the attributes it uses (a record without a value is in
    neither the slice nor its rest)."""
    codes: dict[str, tuple[list[str], np.ndarray, np.ndarray]] = {}
    for a, values in attributes.items():
        names, inv = np.unique(np.asarray(values).astype(str), return_inverse=True)
        known = present(values)
        codes[a] = (names.tolist(), inv, known)
        for i, g in enumerate(names.tolist()):
            if g != ABSENT:
                yield ((a, g),), inv == i, known
    for a, b in combinations(attributes, 2):
        (na, ia, ka), (nb, ib, kb) = codes[a], codes[b]
        pair = ia.astype(np.int64) * len(nb) + ib
        for code in np.unique(pair):
            ga, gb = na[code // len(nb)], nb[code % len(nb)]
            if ABSENT not in (ga, gb):
                yield ((a, ga), (b, gb)), pair == code, ka & kb


def _unpack(key: bytes, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The slice's and the rest's masks from a row's key (the two packed masks)."""
    half = len(key) // 2
    unpack = [
        np.unpackbits(np.frombuffer(k, dtype=np.uint8), count=n).astype(bool)
        for k in (key[:half], key[half:])
    ]
    return unpack[0], unpack[1]


def _prepare_part(
    name: str,
    m: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    clusters: np.ndarray | None,
    cfg: AuditConfig,
    has_scores: bool,
):
    """The audit's per-group statistics of the cases in `m` (by patient with `clusters`)."""
    cells = make_cells(scores[m], labels[m])
    if clusters is None:
        return _prepare(name, cells, cfg, has_scores)
    from fairaudit.stats._clusters import cluster_cells

    return _prepare(name, cells, cfg, has_scores, cluster_cells(scores[m], labels[m], clusters[m], cells))


def _label(conditions: tuple[tuple[str, str], ...]) -> str:
    return CONDITION_SEP.join(f"{a}={g}" for a, g in conditions)


def _alternative(higher_is_better: bool | None) -> str:
    """The test's alternative, for slice vs rest: "less" when a lower value is worse."""
    if higher_is_better is None:
        return "two-sided"
    return "less" if higher_is_better else "greater"


def _delong(s, r, alternative: str) -> T.TestResult:
    """DeLong's z test of slice vs rest AUROC (the audit's placement variances), one- or two-sided."""
    g, h = T.delong_placements(s), T.delong_placements(r)
    if g is None or h is None:
        return T.TestResult("delong", None, reason="needs at least two positive and two negative cases")
    var = g[1] + h[1]
    if var <= 0:
        return T.TestResult("delong", None, reason="zero variance in the slice and the rest")
    z = (g[0] - h[0]) / np.sqrt(var)
    p = {"less": sps.norm.cdf(z), "greater": sps.norm.sf(z), "two-sided": 2 * sps.norm.sf(abs(z))}
    return T.TestResult("delong", float(p[alternative]), statistic=float(z))


def _fisher(conf_s: dict, conf_r: dict, metric: str, alternative: str) -> T.TestResult:
    num, den = PROPORTIONS[metric]
    a, da = sum(conf_s[k] for k in num), sum(conf_s[k] for k in den)
    b, db = sum(conf_r[k] for k in num), sum(conf_r[k] for k in den)
    if da == 0 or db == 0:
        return T.TestResult("fisher_exact", None, reason="a denominator is zero in the slice or the rest")
    res = sps.fisher_exact([[a, da - a], [b, db - b]], alternative=alternative)
    return T.TestResult("fisher_exact", float(res.pvalue), statistic=float(res.statistic))


def _mannwhitney(x: np.ndarray, y: np.ndarray, alternative: str) -> T.TestResult:
    if x.size == 0 or y.size == 0:
        return T.TestResult("mann_whitney_u", None, reason="no defined values in the slice or the rest")
    res = sps.mannwhitneyu(x, y, alternative=alternative)
    if not np.isfinite(res.pvalue):
        return T.TestResult("mann_whitney_u", None, reason="undefined (all values tied)")
    return T.TestResult("mann_whitney_u", float(res.pvalue), statistic=float(res.statistic))


def _ratio_and_variance(num: np.ndarray, den: np.ndarray, unit: np.ndarray) -> tuple[float, float]:
    """sum(num) / sum(den) and its cluster-robust variance with G / (G - 1) (NaN if undefined)."""
    _, u = np.unique(unit, return_inverse=True)
    g = int(u.max()) + 1 if u.size else 0
    total = float(den.sum())
    if g < 2 or total <= 0:
        return np.nan, np.nan
    ratio = float(num.sum()) / total
    e = np.bincount(u, weights=num, minlength=g) - ratio * np.bincount(u, weights=den, minlength=g)
    return ratio, g / (g - 1) * float(e @ e) / total**2


def _z_test(name: str, a: tuple[float, float], b: tuple[float, float], alternative: str) -> T.TestResult:
    """Slice vs rest z test from (estimate, variance) of each; one- or two-sided."""
    var = a[1] + b[1]
    if not np.isfinite(var):
        return T.TestResult(
            name, None, reason="needs at least two patients with cases in the slice and the rest"
        )
    if var <= 0:
        return T.TestResult(name, None, reason="zero variance in the slice and the rest")
    z = (a[0] - b[0]) / np.sqrt(var)
    p = {"less": sps.norm.cdf(z), "greater": sps.norm.sf(z), "two-sided": 2 * sps.norm.sf(abs(z))}
    return T.TestResult(name, float(p[alternative]), statistic=float(z))


def _per_case(
    metric: str, labels: np.ndarray, scores: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per case, the numerator and denominator `metric` sums (brier: the error and 1)."""
    if metric == "brier":
        return (scores - labels) ** 2, np.ones(labels.size)
    y, pred = labels.astype(bool), scores >= threshold
    conf = {"tp": y & pred, "fn": y & ~pred, "fp": ~y & pred, "tn": ~y & ~pred}
    num, den = PROPORTIONS[metric]
    return sum(conf[k] for k in num).astype(float), sum(conf[k] for k in den).astype(float)


def _test_patients(
    metric: str,
    mask: np.ndarray,
    rest: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    clusters: np.ndarray,
    cells: tuple[Cells, Cells],
    per_case: tuple[np.ndarray, np.ndarray] | None,
    alternative: str,
) -> T.TestResult:
    """Slice vs rest with patients as the unit (a patient with cases on both sides is two units)."""
    if metric == "auroc":
        from fairaudit.stats._clusters import cluster_cells, obuchowski_variance

        parts = []
        for m, c in zip((mask, rest), cells, strict=True):
            res = obuchowski_variance(cluster_cells(scores[m], labels[m], clusters[m], c))
            if res is None:
                return T.TestResult(
                    "obuchowski", None, reason="needs positives and negatives of at least two patients"
                )
            parts.append(res)
        return _z_test("obuchowski", parts[0], parts[1], alternative)
    assert per_case is not None  # every metric but auroc has its per-case parts
    num, den = per_case
    return _z_test(
        "wald_patients",
        _ratio_and_variance(num[mask], den[mask], clusters[mask]),
        _ratio_and_variance(num[rest], den[rest], clusters[rest]),
        alternative,
    )


def _test(metric: str, s, r, threshold: float, alternative: str) -> T.TestResult:
    if metric == "auroc":
        return _delong(s, r, alternative)
    if metric == "brier":
        return _mannwhitney(T.per_case_brier(s), T.per_case_brier(r), alternative)
    return _fisher(T.confusion(s, threshold), T.confusion(r, threshold), metric, alternative)


def _point(metric: str, c: Cells, threshold: float) -> float:
    """The metric of one cell vector (NaN where undefined), as MetricKernel.point defines it."""
    if metric == "auroc":
        if c.n_pos == 0 or c.n_neg == 0:
            return np.nan
        below = np.cumsum(c.neg) - 0.5 * c.neg  # negatives below each cell, ties count one half
        return float(c.pos @ below) / (c.n_pos * c.n_neg)
    if metric == "brier":
        return float(c.pos @ (c.u - 1.0) ** 2 + c.neg @ c.u**2) / c.n if c.n else np.nan
    conf = T.confusion(c, threshold)
    num, den = (sum(conf[k] for k in part) for part in PROPORTIONS[metric])
    return num / den if den else np.nan


def _gap(diff: float, higher_is_better: bool | None) -> float:
    """How much worse the slice is than the rest (positive = worse)."""
    if higher_is_better is None:
        return abs(diff)
    return -diff if higher_is_better else diff


def _mean_boot(
    values: np.ndarray, size: int, seed: int, key: tuple[int, ...], unit: np.ndarray | None = None
) -> np.ndarray:
    """Bootstrap means of per-case values (seeded, in chunks of bounded memory); with `unit`
    (a patient code per value) patients are drawn, each with all its values."""
    rng = generator(seed, key)
    if unit is not None:
        from fairaudit.stats._clusters import bootstrap_weights

        _, u = np.unique(unit, return_inverse=True)
        g = int(u.max()) + 1 if u.size else 0
        sums, counts = np.bincount(u, weights=values, minlength=g), np.bincount(u, minlength=g)
        out = np.empty(size)
        step = max(1, 2_000_000 // max(g, 1))
        for a in range(0, size, step):
            w = bootstrap_weights(g, min(size, a + step) - a, rng)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[a : a + w.shape[0]] = (w @ sums) / (w @ counts)
        return out
    n = values.size
    out = np.empty(size)
    step = max(1, 2_000_000 // max(n, 1))
    for a in range(0, size, step):
        b = min(size, a + step)
        out[a:b] = values[rng.integers(0, n, size=(b - a, n))].mean(axis=1)
    return out


def discover_slices(
    labels: np.ndarray | None,
    scores: np.ndarray | None,
    attributes: dict[str, np.ndarray],
    cfg: AuditConfig,
    *,
    metric: str | None = None,
    top: int = 10,
    has_scores: bool = True,
    per_case: np.ndarray | None = None,
    clusters: np.ndarray | None = None,
) -> dict[str, Any]:
    """Rank the slices of `attributes` (and their pairwise intersections) by how much worse
    `metric` is in the slice than in the rest of the cohort; the results.json `discovered` block.

    `labels` 0/1 and `scores` of the cases (None with `per_case`); `attributes` one group
    label per case for each attribute (not intersections: pairs are formed here);
    `per_case`: one value per case of a per-case metric (dice, iou, hd95, ...; NaN where
    undefined) to rank on instead of a classification metric of (labels, scores).
    `clusters`: one patient code per case; when a patient has several cases, tests and
    intervals take the patient as the unit (`unit` in the block says which).
    Raises ValueError for a metric it cannot rank on.

    Runs with one BLAS thread: hundreds of small products gain nothing from more, and on a
    busy machine a BLAS pool per product made the search four times slower.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return _discover(labels, scores, attributes, cfg, metric, top, has_scores, per_case, clusters)


def _discover(
    labels: np.ndarray | None,
    scores: np.ndarray | None,
    attributes: dict[str, np.ndarray],
    cfg: AuditConfig,
    metric: str | None,
    top: int,
    has_scores: bool,
    per_case: np.ndarray | None,
    clusters: np.ndarray | None,
) -> dict[str, Any]:
    metric = metric or default_metric(has_scores)
    if per_case is not None:
        if metric not in PER_CASE_HIGHER_IS_BETTER:
            raise ValueError(
                f"{arg('discover_metric')} must be one of {', '.join(PER_CASE_HIGHER_IS_BETTER)}"
            )
        higher = PER_CASE_HIGHER_IS_BETTER[metric]
        values = np.asarray(per_case, dtype=np.float64)
        n_cases = values.size
    else:
        if metric not in CELL_METRICS:
            raise ValueError(f"{arg('discover_metric')} must be one of {', '.join(CELL_METRICS)}")
        if metric in ("auroc", "brier") and not has_scores:
            raise ValueError(
                f"{arg('discover_metric')} {metric} needs scores, and the predictions are 0/1 only"
            )
        higher = HIGHER_IS_BETTER[metric]
        values = None
        labels = np.asarray(labels, dtype=np.int64)
        scores = np.asarray(scores, dtype=np.float64)
        n_cases = labels.size
    if top < 1:
        raise ValueError(f"{arg('discover_top')} must be at least 1")
    pcfg = replace(cfg, ci_method="percentile")
    alternative = _alternative(higher)
    defined = np.isfinite(values) if values is not None else np.ones(n_cases, dtype=bool)
    if clusters is not None:
        clusters = np.asarray(clusters)
        if np.unique(clusters).size == clusters.size:  # one case per patient: cases are the unit
            clusters = None
    case_parts: tuple[np.ndarray, np.ndarray] | None = None  # per case (numerator, denominator)
    if clusters is not None and values is not None:
        case_parts = (np.where(defined, values, 0.0), defined.astype(float))
    elif clusters is not None and metric != "auroc":
        case_parts = _per_case(metric, labels, scores, cfg.threshold)
    if values is None:
        grid, inv = np.unique(scores, return_inverse=True)
        pos_all = np.bincount(inv, weights=labels, minlength=grid.size).astype(np.int64)
        neg_all = np.bincount(inv, minlength=grid.size) - pos_all

    seen: dict[bytes, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    n_candidates = n_small = n_duplicate = 0
    for conditions, mask, known in _slices(attributes):
        n_candidates += 1
        rest = known & ~mask  # records without a value the slice uses are in neither
        key = np.packbits(mask).tobytes() + np.packbits(rest).tobytes()
        if key in seen:
            n_duplicate += 1
            seen[key]["equivalent"].append(_label(conditions))
            continue
        n_s, n_r = int(mask.sum()), int(rest.sum())
        if n_s < max(cfg.min_group_size, 1) or n_r < max(cfg.min_group_size, 1):
            n_small += 1
            continue
        # The packed masks, not the masks: memory stays n/4 bytes per slice on large cohorts.
        row: dict[str, Any] = {
            "conditions": conditions,
            "key": key,
            "equivalent": [],
            "n": n_s,
            "n_rest": n_r,
        }
        seen[key] = row
        if values is not None:
            vs, vr = values[mask & defined], values[rest & defined]
            point_s = float(vs.mean()) if vs.size else np.nan
            point_r = float(vr.mean()) if vr.size else np.nan
            if clusters is None:
                res = _mannwhitney(vs, vr, alternative)
            else:
                res = _test_patients(
                    metric, mask, rest, labels, scores, clusters, (), case_parts, alternative
                )
            row["n_positive"] = None
        else:
            # Slice and rest as counts on the cohort's score grid: O(n) per slice, no sorting.
            pos = np.bincount(inv[mask], weights=labels[mask], minlength=grid.size).astype(np.int64)
            neg = np.bincount(inv[mask], minlength=grid.size) - pos
            if n_s + n_r == n_cases:
                s, r = Cells(grid, pos, neg), Cells(grid, pos_all - pos, neg_all - neg)
            else:
                pos_r = np.bincount(inv[rest], weights=labels[rest], minlength=grid.size).astype(np.int64)
                s = Cells(grid, pos, neg)
                r = Cells(grid, pos_r, np.bincount(inv[rest], minlength=grid.size) - pos_r)
            point_s, point_r = _point(metric, s, cfg.threshold), _point(metric, r, cfg.threshold)
            if clusters is None:
                res = _test(metric, s, r, cfg.threshold, alternative)
            else:
                res = _test_patients(
                    metric, mask, rest, labels, scores, clusters, (s, r), case_parts, alternative
                )
            row["n_positive"] = s.n_pos
        diff = point_s - point_r
        row.update(point=point_s, rest_point=point_r, diff=diff, gap=_gap(diff, higher), test=res)
        rows.append(row)

    tested = [r for r in rows if r["test"].p_value is not None and np.isfinite(r["diff"])]
    if tested:
        adjusted = adjust_pvalues([r["test"].p_value for r in tested], cfg.correction, cfg.alpha)
        for r, p in zip(tested, adjusted, strict=True):
            r["p_adjusted"] = p
    ranked = sorted(tested, key=lambda r: (-r["gap"], r["p_adjusted"], _label(r["conditions"])))
    # The search asks where the model serves worse: a slice it serves better than the rest
    # (gap <= 0) is tested and adjusted with the others, never listed among the worst (issue 23).
    best = [r for r in ranked if r["gap"] > 0][:top]
    log.info(
        "slice discovery on %s: %d candidates, %d tested, %d skipped as small, %d duplicates",
        metric, n_candidates, len(tested), n_small, n_duplicate,
    )  # fmt: skip

    # Intervals for the reported slices only: slice and rest resampled independently.
    if values is None and best:
        plan = []
        for i, r in enumerate(best):
            m, rest = _unpack(r["key"], n_cases)
            gs = _prepare_part("slice", m, scores, labels, clusters, pcfg, has_scores)
            gr = _prepare_part("rest", rest, scores, labels, clusters, pcfg, has_scores)
            r["stats"] = (gs, gr)
            plan += [(gs, (_KEY, i, 0)), (gr, (_KEY, i, 1))]
        _bootstrap_all(plan, pcfg, has_scores)
    out_slices = []
    for rank, r in enumerate(best, start=1):
        if values is None:
            gs, gr = r["stats"]
            boot_s, boot_r = gs.boot[metric], gr.boot[metric]
        else:
            i = rank - 1
            m, rest = _unpack(r["key"], n_cases)
            us, ur = (
                (clusters[m & defined], clusters[rest & defined]) if clusters is not None else (None, None)
            )
            boot_s = _mean_boot(values[m & defined], cfg.bootstrap, cfg.seed, (_KEY, i, 0), us)
            boot_r = _mean_boot(values[rest & defined], cfg.bootstrap, cfg.seed, (_KEY, i, 1), ur)
        why = f"{metric} undefined in the slice or the rest"
        res: T.TestResult = r["test"]
        out_slices.append(
            {
                "rank": rank,
                "slice": _label(r["conditions"]),
                "conditions": [{"attribute": a, "group": g} for a, g in r["conditions"]],
                "equivalent": r["equivalent"],
                "n": r["n"],
                "n_positive": r["n_positive"],
                "n_rest": r["n_rest"],
                "value": Estimate.of(r["point"], percentile_interval(boot_s, cfg.ci_level), why).to_dict(),
                "rest_value": Estimate.of(
                    r["rest_point"], percentile_interval(boot_r, cfg.ci_level), why
                ).to_dict(),
                "difference": Estimate.of(
                    r["diff"], percentile_interval(boot_s - boot_r, cfg.ci_level), why
                ).to_dict(),
                "gap": float(r["gap"]),
                "test": res.test,
                "p_value": res.p_value,
                "p_adjusted": r["p_adjusted"],
                "significant": bool(r["p_adjusted"] < cfg.alpha),
            }
        )
    return {
        "metric": metric,
        "higher_is_better": higher,
        "alternative": alternative,
        "unit": "patient" if clusters is not None else "case",
        "attributes": list(attributes),
        "correction": cfg.correction,
        "alpha": cfg.alpha,
        "min_group_size": cfg.min_group_size,
        "top": top,
        "n_candidates": n_candidates,
        "n_duplicates": n_duplicate,
        "n_skipped_small": n_small,
        "n_untestable": len(rows) - len(tested),
        "n_tested": len(tested),
        "n_significant": int(sum(r["p_adjusted"] < cfg.alpha for r in tested)),
        "n_worse": int(sum(r["gap"] > 0 for r in tested)),
        "slices": out_slices,
    }
