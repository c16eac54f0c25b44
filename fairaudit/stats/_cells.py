"""A group's cases reduced to counts per (unique score, label).

Every classification metric (docs/statistics.md, "Metrics") is a function of these counts, and a bootstrap
resample or a permutation of a group is just another count vector over the same cells.
That is what makes the resampling engine vectorized: it never touches per-case rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Cells:
    """Counts of negatives and positives at each unique score (ascending)."""

    u: np.ndarray  # (K,) float64, ascending unique scores
    pos: np.ndarray  # (K,) int64, cases with label 1 at u[k]
    neg: np.ndarray  # (K,) int64, cases with label 0 at u[k]

    @property
    def n(self) -> int:
        return int(self.pos.sum() + self.neg.sum())

    @property
    def n_pos(self) -> int:
        return int(self.pos.sum())

    @property
    def n_neg(self) -> int:
        return int(self.neg.sum())

    @property
    def k(self) -> int:
        return int(self.u.size)

    def codes(self) -> np.ndarray:
        """One code per case (2*k + label), in cell order: the rows a resample draws from."""
        both = np.stack([self.neg, self.pos], axis=1).ravel()
        return np.repeat(np.arange(2 * self.k, dtype=np.int32), both)

    def counts(self) -> np.ndarray:
        """Interleaved counts (neg_0, pos_0, neg_1, pos_1, ...) matching `codes`."""
        return np.stack([self.neg, self.pos], axis=1).ravel()


def make_cells(scores: np.ndarray, labels: np.ndarray) -> Cells:
    """Reduce cases to cells; `labels` must be 0/1 and `scores` finite."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    u, inv = np.unique(scores, return_inverse=True)
    total = np.bincount(inv, minlength=u.size).astype(np.int64)
    pos = np.bincount(inv, weights=labels, minlength=u.size).astype(np.int64)
    return Cells(u=u, pos=pos, neg=total - pos)


def merge_cells(a: Cells, b: Cells) -> tuple[Cells, np.ndarray, np.ndarray]:
    """Pool two groups onto one cell grid; returns the pool and each group's cell index map."""
    u = np.union1d(a.u, b.u)
    ia = np.searchsorted(u, a.u)
    ib = np.searchsorted(u, b.u)
    pos = np.zeros(u.size, dtype=np.int64)
    neg = np.zeros(u.size, dtype=np.int64)
    np.add.at(pos, ia, a.pos)
    np.add.at(neg, ia, a.neg)
    np.add.at(pos, ib, b.pos)
    np.add.at(neg, ib, b.neg)
    return Cells(u=u, pos=pos, neg=neg), ia, ib


def expand_on(cells: Cells, grid: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts of `cells` placed on a larger grid of `grid.size` cells."""
    pos = np.zeros(grid.size, dtype=np.int64)
    neg = np.zeros(grid.size, dtype=np.int64)
    pos[index] = cells.pos
    neg[index] = cells.neg
    return pos, neg


# Resampling grid: scores are binned to 1/RESAMPLE_GRID for bootstrap and permutation
# draws once a group has more distinct scores than that (see `coarsen`).
RESAMPLE_GRID = 2000


def grid_edges(threshold: float, resolution: int = RESAMPLE_GRID) -> np.ndarray:
    """Bin edges at j/resolution, plus the decision threshold, so no bin straddles it.

    `resolution` is a multiple of 10, so the ECE bin edges k/10 are among the edges too.
    """
    edges = np.arange(resolution + 1) / resolution
    return np.union1d(edges, [threshold])


def _bins(cells: Cells, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The non-empty grid bins, and each cell's position among them."""
    idx = np.clip(np.searchsorted(edges, cells.u, side="right") - 1, 0, edges.size - 2)
    uniq, inv = np.unique(idx, return_inverse=True)
    return uniq, inv


def coarse_index(cells: Cells, edges: np.ndarray) -> np.ndarray:
    """Each cell's index in `coarsen(cells, edges)` (to move per-patient counts there too)."""
    return _bins(cells, edges)[1]


def coarsen(cells: Cells, edges: np.ndarray) -> Cells:
    """Merge cells whose scores share a grid bin; each bin keeps its mean score.

    Rates are unchanged (no bin straddles the threshold) and every case keeps its ECE bin
    (none straddles k/10). AUROC, average precision, Brier and ECE change by a tiny, nearly
    constant amount (ties within a bin of width 1/2000, a bin's mean score for its cases),
    which the caller removes by centring the resampled statistic on the exact estimate;
    tests/unit/stats/test_resampling_grid.py bounds what is left.
    """
    uniq, inv = _bins(cells, edges)
    pos = np.bincount(inv, weights=cells.pos, minlength=uniq.size)
    neg = np.bincount(inv, weights=cells.neg, minlength=uniq.size)
    ssum = np.bincount(inv, weights=cells.u * (cells.pos + cells.neg), minlength=uniq.size)
    u = ssum / (pos + neg)
    lo = edges[uniq]
    hi = np.where(uniq + 1 < edges.size - 1, np.nextafter(edges[uniq + 1], -np.inf), edges[-1])
    u = np.clip(u, lo, hi)  # a rounded mean never leaves its bin
    return Cells(u=u, pos=pos.astype(np.int64), neg=neg.astype(np.int64))
