"""The resampling grid: binning scores for the bootstrap barely changes any resample.

For the same resampled rows, the statistic on the binned grid (centred on the exact
estimate, as the engine does) must match the statistic on the exact scores; rates must
match exactly, since no bin straddles the threshold, and ECE closely, since no bin
straddles an ECE edge (only the score sums within a bin are approximated).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from fairaudit.stats._cells import coarsen, grid_edges, make_cells
from fairaudit.stats._metrics import MetricKernel


def test_binned_resamples_match_exact_resamples() -> None:
    rng = np.random.default_rng(3)
    n = 4000
    y = (rng.random(n) < 0.3).astype(int)
    s = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.3 * y - 1)))
    threshold = 0.37
    exact = make_cells(s, y)
    edges = grid_edges(threshold)
    coarse = coarsen(exact, edges)
    assert coarse.k < exact.k
    k_exact = MetricKernel(exact.u, threshold, True)
    k_coarse = MetricKernel(coarse.u, threshold, True)
    p_exact = k_exact.point(exact.pos, exact.neg)
    p_coarse = k_coarse.point(coarse.pos, coarse.neg)
    shift = {m: p_exact[m] - p_coarse[m] for m in p_exact}
    # Map each case to its coarse cell to resample the same rows on both grids.
    cell_of = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, edges.size - 2)
    coarse_idx = np.searchsorted(np.unique(cell_of), cell_of)
    for _ in range(30):
        rows = rng.integers(0, n, n)
        ys, ss = y[rows], s[rows]
        pos = np.bincount(coarse_idx[rows], weights=ys, minlength=coarse.k)
        neg = np.bincount(coarse_idx[rows], weights=1 - ys, minlength=coarse.k)
        binned = k_coarse.point(pos, neg)
        assert abs(binned["auroc"] + shift["auroc"] - roc_auc_score(ys, ss)) < 2e-4
        assert abs(binned["auprc"] + shift["auprc"] - average_precision_score(ys, ss)) < 2e-3
        assert abs(binned["brier"] + shift["brier"] - brier_score_loss(ys, ss)) < 1e-5
        pred = ss >= threshold
        assert binned["tpr"] == np.sum(pred & (ys == 1)) / np.sum(ys == 1)
        assert binned["fpr"] == np.sum(pred & (ys == 0)) / np.sum(ys == 0)
        e = make_cells(ss, ys)
        ece_exact = MetricKernel(e.u, threshold, True).point(e.pos, e.neg)["ece"]
        assert abs(binned["ece"] + shift["ece"] - ece_exact) < 1e-4


def test_grid_keeps_threshold_and_ece_edges() -> None:
    edges = grid_edges(0.4321)
    assert 0.4321 in edges
    for k in range(11):
        assert k / 10 in edges
