"""Patient-level resampling: a group's cases as counts per (patient, cell, label).

Images of one patient share the patient: their labels, and often the model's errors, are
correlated, so a group of 400 images of 100 patients holds less information than 400
independent images, and resampling images gives intervals that are too narrow
(docs/statistics.md, "Patient-level resampling"). Here the unit of every bootstrap and
permutation draw is the cluster (the patient): a resample draws patients with replacement
and takes all of each drawn patient's images in the group; a permutation reassigns whole
patients between the two groups. Closed-form intervals use the cluster-robust variance of
each estimate through its design effect (Kish's effective sample size, as in Rao & Scott
1992): n / deff cases in a score interval. AUROC's variance is Obuchowski's (1997).

A cluster's counts are one row of a sparse (patients x 2K) matrix whose columns are the
cells of `Cells.codes` (neg_0, pos_0, neg_1, ...): a resample's counts are a weight per
patient times that matrix, so the metrics still come from cell counts (fairaudit.stats._metrics).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import sparse
from scipy import stats as sps

from fairaudit.stats._cells import Cells
from fairaudit.stats._metrics import PROPORTIONS, MetricKernel
from fairaudit.stats._resample import cells_width, null_differences, resampled_metrics
from fairaudit.stats._tests import TestResult, delong_placements

# Weights per chunk of resamples (resamples x patients).
_CHUNK_WEIGHTS = 400_000


@dataclass(frozen=True)
class ClusterCells:
    """Counts per (cluster, cell, label) of one group: rows are clusters (patients)."""

    u: np.ndarray  # (K,) ascending scores, as Cells.u
    matrix: sparse.csr_matrix  # (P, 2K) float64: column 2k + label of cell k

    @property
    def n_clusters(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def k(self) -> int:
        return int(self.u.size)

    @property
    def sizes(self) -> np.ndarray:
        """Cases per cluster."""
        return np.asarray(self.matrix.sum(axis=1)).ravel()

    @property
    def clustered(self) -> bool:
        """True when some cluster holds more than one case (else images are the unit)."""
        return bool(self.n_clusters and self.sizes.max() > 1)

    def cells(self) -> Cells:
        """The group's cells (column sums)."""
        total = np.rint(np.asarray(self.matrix.sum(axis=0)).ravel()).astype(np.int64)
        return Cells(u=self.u, pos=total[1::2], neg=total[0::2])

    @cached_property
    def _split(self) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
        return self.matrix[:, 1::2].tocsr(), self.matrix[:, 0::2].tocsr()

    def by_label(self) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
        """(positives, negatives) per (cluster, cell): two (P, K) matrices, sliced once
        (the design effects of every metric and the Brier means all read them)."""
        return self._split

    def regrid(self, index: np.ndarray, u: np.ndarray) -> ClusterCells:
        """The same clusters on another cell grid: cell k moves to cell index[k] of `u`."""
        cols = np.stack([2 * index, 2 * index + 1], axis=1).ravel()
        move = sparse.csr_matrix(
            (np.ones(cols.size), (np.arange(cols.size), cols)), shape=(2 * self.k, 2 * u.size)
        )
        return ClusterCells(u=np.asarray(u, dtype=np.float64), matrix=(self.matrix @ move).tocsr())


def cluster_cells(scores: np.ndarray, labels: np.ndarray, clusters: np.ndarray, cells: Cells) -> ClusterCells:
    """One group's cases (`cells` made from the same scores and labels) per cluster code."""
    cell = np.searchsorted(cells.u, np.asarray(scores, dtype=np.float64))
    code = 2 * cell + np.asarray(labels, dtype=np.int64)
    _, row = np.unique(np.asarray(clusters), return_inverse=True)
    n_rows = int(row.max()) + 1 if row.size else 0
    matrix = sparse.csr_matrix(
        (np.ones(code.size), (row.ravel(), code)), shape=(n_rows, 2 * cells.k), dtype=np.float64
    )
    matrix.sum_duplicates()
    return ClusterCells(u=cells.u, matrix=matrix)


def stack(parts: Sequence[ClusterCells], u: np.ndarray, indices: Sequence[np.ndarray]) -> ClusterCells:
    """Clusters of several groups, each moved onto grid `u`, as one set of units."""
    moved = [p.regrid(i, u).matrix for p, i in zip(parts, indices, strict=True)]
    return ClusterCells(u=np.asarray(u, dtype=np.float64), matrix=sparse.vstack(moved, format="csr"))


# ------------------------------------------------------------------------ resampling


def weighted_counts(
    cc: ClusterCells, weights: np.ndarray, as_float: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(pos, neg) per cell for each row of cluster weights (B, P).

    `as_float`: as the float64 arrays MetricKernel.evaluate takes, without the round trip
    through int64 (whole-number weights: bootstrap counts, 0/1 permutations; their float64
    sums are exact, so the values are the same; the resampling tasks' hot path). In column
    order, as the int64 counts converted were: the metrics' sums then round the same way.
    """
    counts = np.asarray(cc.matrix.T @ weights.T).T
    if as_float:
        counts = counts.reshape(weights.shape[0], cc.k, 2)
        return np.asfortranarray(counts[:, :, 1]), np.asfortranarray(counts[:, :, 0])
    counts = np.rint(counts).astype(np.int64).reshape(weights.shape[0], cc.k, 2)
    return counts[:, :, 1], counts[:, :, 0]


def bootstrap_weights(n_clusters: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """How often each cluster is drawn in `size` resamples of n_clusters draws with replacement."""
    draws = rng.integers(0, n_clusters, size=(size, n_clusters))
    draws += np.arange(size, dtype=draws.dtype)[:, None] * n_clusters
    return (
        np.bincount(draws.ravel(), minlength=size * n_clusters).reshape(size, n_clusters).astype(np.float64)
    )


def permutation_weights(n_units: int, n_first: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """0/1 rows: which `n_first` of the pooled units the first group gets in each permutation
    (each row an independent shuffle of n_first ones and the rest zeros: a uniform subset,
    five times faster than ranking random keys at 25,000 patients)."""
    base = np.zeros(n_units)
    base[:n_first] = 1.0
    return rng.permuted(np.broadcast_to(base, (size, n_units)), axis=1)


def cluster_bootstrap_task(
    cc: ClusterCells,
    threshold: float,
    with_scores: bool,
    size: int,
    seed: int,
    key: tuple[int, ...],
    chunks: tuple[int, int] | None = None,
) -> dict[str, np.ndarray]:
    """Every metric over `size` resamples of the group's patients (all their images each);
    `chunks`: only those (fairaudit.stats._resample.run_parts)."""
    kernel = MetricKernel(cc.u, threshold, with_scores)

    def draw(k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return weighted_counts(cc, bootstrap_weights(cc.n_clusters, k, rng), as_float=True)

    return resampled_metrics(kernel, draw, _width(cc), size, seed, key, chunks)


def _width(cc: ClusterCells) -> int:
    """Elements per resample, for the chunk size."""
    return max(cc.n_clusters, 2 * cc.k, cc.matrix.nnz // 4)


def resample_width(source: Cells | ClusterCells) -> int:
    """Elements per resample of a group's cells or its patients, for the chunk size."""
    return _width(source) if isinstance(source, ClusterCells) else cells_width(source)


def cluster_permutation_task(
    pooled: ClusterCells,
    n_first: int,
    threshold: float,
    metrics: Sequence[str],
    size: int,
    seed: int,
    key: tuple[int, ...],
    chunks: tuple[int, int] | None = None,
) -> dict[str, np.ndarray]:
    """Null distribution of (first - second group) when whole patients swap group labels."""
    kernel = MetricKernel(pooled.u, threshold, True)

    def draw(k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        weights = permutation_weights(pooled.n_clusters, n_first, k, rng)
        return weighted_counts(pooled, weights, as_float=True)

    return null_differences(kernel, pooled.cells(), metrics, draw, _width(pooled), size, seed, key, chunks)


def leave_one_cluster_out(cc: ClusterCells, kernel: MetricKernel) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Jackknife values with one patient (all their images) left out at a time (for BCa)."""
    total = cc.cells()
    dense_rows = max(1, _CHUNK_WEIGHTS // max(2 * cc.k, 1))
    parts = []
    for a in range(0, cc.n_clusters, dense_rows):
        rows = cc.matrix[a : a + dense_rows].toarray().reshape(-1, cc.k, 2)
        parts.append(kernel.evaluate(total.pos[None, :] - rows[:, :, 1], total.neg[None, :] - rows[:, :, 0]))
    loo = {m: np.concatenate([p[m] for p in parts]) for m in kernel.metrics}
    return loo, np.ones(cc.n_clusters)


# ------------------------------------------------------------------------ design effects


def _worst(den: np.ndarray) -> float:
    """The design effect when every case of a cluster has the same outcome (ICC 1)."""
    n = float(den.sum())
    return max(1.0, float(np.sum(den.astype(np.float64) ** 2)) / n) if n > 0 else 1.0


def proportion_design_effect(num: np.ndarray, den: np.ndarray, z: float | None = None) -> float:
    """Cluster-robust variance of sum(num)/sum(den) over its binomial variance, in [1, worst].

    The ratio estimator's variance m/(m-1) sum((num_i - p den_i)^2) / n^2 over the m
    clusters with den_i > 0. Where it cannot be estimated (p of 0 or 1, or one cluster)
    the worst case: every image of a patient has the same outcome, so each patient counts
    once (n / deff = n^2 / sum(den_i^2)). With `z` (the interval's normal quantile), times
    (t_df / z)^2 for the variance estimate's Satterthwaite degrees of freedom
    df = (sum e_i^2)^2 / sum e_i^4 (Bell & McCaffrey 2002; Korn & Graubard 1998): with a
    rare outcome the variance rests on the few patients who have it, and is itself uncertain.
    """
    keep = den > 0
    num = num[keep].astype(np.float64)
    den = den[keep].astype(np.float64)
    worst = _worst(den)
    n = den.sum()
    m = den.size
    if n <= 0:
        return 1.0
    p = num.sum() / n
    if m < 2 or p <= 0 or p >= 1:
        return worst
    e = num - p * den
    ss = float(e @ e)
    ratio = m / (m - 1) * ss / n**2 / (p * (1 - p) / n)
    if z is not None and ss > 0:
        df = max(1.0, ss * ss / float(np.sum(e**4)))
        ratio *= (float(sps.t.isf(sps.norm.sf(z), df)) / z) ** 2
    return float(min(max(ratio, 1.0), worst))


def obuchowski_variance(cc: ClusterCells) -> tuple[float, float] | None:
    """AUROC and its clustered variance (Obuchowski 1997); DeLong's when clusters are single cases."""
    pos_m, neg_m = cc.by_label()
    cells = cc.cells()
    n_pos, n_neg = cells.n_pos, cells.n_neg
    if n_pos < 2 or n_neg < 2:
        return None
    pos = cells.pos.astype(np.float64)
    neg = cells.neg.astype(np.float64)
    v10 = (np.cumsum(neg) - 0.5 * neg) / n_neg  # placement of a positive at each cell
    v01 = (n_pos - np.cumsum(pos) + 0.5 * pos) / n_pos  # of a negative
    m_i = np.asarray(pos_m.sum(axis=1)).ravel()
    n_i = np.asarray(neg_m.sum(axis=1)).ravel()
    auc = float(pos @ v10) / n_pos
    d10 = pos_m @ v10 - m_i * auc
    d01 = neg_m @ v01 - n_i * auc
    i10, i01, i_all = int((m_i > 0).sum()), int((n_i > 0).sum()), cc.n_clusters
    if i10 < 2 or i01 < 2:
        return None
    s10 = i10 / ((i10 - 1) * n_pos) * float(d10 @ d10)
    s01 = i01 / ((i01 - 1) * n_neg) * float(d01 @ d01)
    s11 = i_all / (i_all - 1) * float(d10 @ d01)
    return auc, s10 / n_pos + s01 / n_neg + 2 * s11 / (n_pos * n_neg)


def auroc_design_effect(cc: ClusterCells) -> float:
    """Obuchowski's variance over DeLong's (images as independent), in [1, worst]."""
    pos_m, neg_m = cc.by_label()
    worst = max(_worst(np.asarray(pos_m.sum(axis=1)).ravel()), _worst(np.asarray(neg_m.sum(axis=1)).ravel()))
    clustered = obuchowski_variance(cc)
    single = delong_placements(cc.cells())
    if clustered is None or single is None or single[1] <= 0 or clustered[1] <= 0:
        return worst
    return float(min(max(clustered[1] / single[1], 1.0), worst))


def design_effects(
    cc: ClusterCells, threshold: float, with_scores: bool, z: float | None = None
) -> dict[str, float]:
    """Each closed-form metric's design effect in this group (proportions, and AUROC);
    `z`: the interval's normal quantile, for the small-sample factor of proportions."""
    pos_m, neg_m = cc.by_label()
    above = (cc.u >= threshold).astype(np.float64)
    tp = pos_m @ above
    fp = neg_m @ above
    n_pos = np.asarray(pos_m.sum(axis=1)).ravel()
    n_neg = np.asarray(neg_m.sum(axis=1)).ravel()
    parts = {"tp": tp, "fp": fp, "tn": n_neg - fp, "fn": n_pos - tp}
    out = {}
    for metric, (num, den) in PROPORTIONS.items():
        x = sum(parts[k] for k in num)
        n = sum(parts[k] for k in den)
        out[metric] = proportion_design_effect(np.asarray(x), np.asarray(n), z)
    if with_scores:
        out["auroc"] = auroc_design_effect(cc)
    return out


def cluster_means(cc: ClusterCells, per_cell_pos: np.ndarray, per_cell_neg: np.ndarray) -> np.ndarray:
    """Each cluster's mean of a per-case value (given per cell for positives and negatives)."""
    pos_m, neg_m = cc.by_label()
    sums = pos_m @ per_cell_pos + neg_m @ per_cell_neg
    return sums / cc.sizes


def rao_scott(result: TestResult, design_effect: float) -> TestResult:
    """A chi-square test with its statistic divided by the mean design effect (Rao & Scott 1981)."""
    if result.p_value is None or result.statistic is None or result.df is None or design_effect <= 1:
        return result
    stat = result.statistic / design_effect
    return TestResult(
        f"{result.test}_rao_scott", float(sps.chi2.sf(stat, result.df)), statistic=stat, df=result.df
    )
