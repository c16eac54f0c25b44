"""The resampling fast paths (issue 21's speed target) give exactly the numbers of the
straightforward computation they replace.

- `MetricKernel.evaluate(..., metrics)` evaluates only the metrics a permutation null needs:
  each equals the full evaluation's, bit for bit;
- `weighted_counts(..., as_float=True)` skips the int64 round trip: the same counts as the
  per-resample sum over patients, laid out so that the metrics round as the int64 path's;
- `run_parts` cuts a task into runs of its chunks for the worker processes: the parts put
  end to end are the whole task run in this process.
"""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest

from fairaudit.stats import _resample
from fairaudit.stats._audit import _bootstrap_one
from fairaudit.stats._cells import make_cells
from fairaudit.stats._clusters import (
    ClusterCells,
    bootstrap_weights,
    cluster_bootstrap_task,
    cluster_cells,
    cluster_permutation_task,
    permutation_weights,
    resample_width,
    weighted_counts,
)
from fairaudit.stats._metrics import METRICS, MetricKernel
from fairaudit.stats._resample import chunk_bounds, run_parts


def _group(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores, labels and patients (1 to 3 images each) of one group."""
    rng = np.random.default_rng(seed)
    pid = np.sort(rng.integers(0, n // 2, n))
    y = (rng.random(n) < 0.3).astype(int)
    s = np.round(1 / (1 + np.exp(-(np.where(y == 1, 1.0, -1.0) + rng.normal(0, 1, n)))), 2)
    return s, y, pid


def _clusters(seed: int = 0) -> ClusterCells:
    s, y, pid = _group(seed=seed)
    return cluster_cells(s, y, pid, make_cells(s, y))


@pytest.mark.parametrize(
    "subset", [("brier",), ("auprc",), ("auroc",), ("ece", "squared_calibration_error"), ("tpr", "brier")]
)
def test_evaluating_some_metrics_gives_the_full_evaluation_of_those(subset: tuple[str, ...]) -> None:
    cc = _clusters()
    kernel = MetricKernel(cc.u, 0.5, True)
    pos, neg = weighted_counts(cc, bootstrap_weights(cc.n_clusters, 50, np.random.default_rng(1)))
    full = kernel.evaluate(pos, neg)
    some = kernel.evaluate(pos, neg, subset)
    assert set(full) == set(METRICS)
    assert set(some) == set(subset)
    for m in subset:
        np.testing.assert_array_equal(some[m], full[m])


def test_float_weighted_counts_are_the_sums_over_patients_and_round_as_the_int64_path() -> None:
    cc = _clusters()
    w = bootstrap_weights(cc.n_clusters, 40, np.random.default_rng(2))
    pos_i, neg_i = weighted_counts(cc, w)
    pos_f, neg_f = weighted_counts(cc, w, as_float=True)
    # The straightforward sum: each resample's patients, weighted by their draws.
    dense = cc.matrix.toarray()
    direct = np.stack([(w[r][:, None] * dense).sum(axis=0) for r in range(w.shape[0])])
    np.testing.assert_array_equal(pos_f, direct[:, 1::2])
    np.testing.assert_array_equal(neg_f, direct[:, 0::2])
    np.testing.assert_array_equal(pos_f, pos_i)
    kernel = MetricKernel(cc.u, 0.5, True)
    a, b = kernel.evaluate(pos_i, neg_i), kernel.evaluate(pos_f, neg_f)
    for m in a:
        np.testing.assert_array_equal(a[m], b[m], err_msg=m)
    # The null's "rest of the pool" (pool minus group) too.
    total = cc.cells()
    a = kernel.evaluate(total.pos[None, :] - pos_i, total.neg[None, :] - neg_i)
    b = kernel.evaluate(total.pos[None, :] - pos_f, total.neg[None, :] - neg_f)
    for m in a:
        np.testing.assert_array_equal(a[m], b[m], err_msg=m)


def test_permutation_null_of_some_metrics_is_the_full_null_of_those() -> None:
    cc = _clusters()
    n_first = cc.n_clusters // 3
    full = cluster_permutation_task(cc, n_first, 0.5, tuple(METRICS), 300, 7, (2, 0, 1))
    some = cluster_permutation_task(cc, n_first, 0.5, ("brier",), 300, 7, (2, 0, 1))
    np.testing.assert_array_equal(some["brier"], full["brier"])
    w = permutation_weights(cc.n_clusters, n_first, 5, np.random.default_rng(0))
    assert np.all(w.sum(axis=1) == n_first)


def test_parts_of_tasks_in_processes_are_the_whole_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("worker processes need fork")
    monkeypatch.setattr(_resample, "_CHUNK_ELEMENTS", 20_000)  # several chunks per task
    cc = _clusters()
    s, y, _ = _group(seed=3)
    cells = make_cells(s, y)
    size = 700
    tasks = [
        (cc, 0.5, True, size, 11, (1, 0, 0)),
        (cells, 0.5, True, size, 11, (1, 0, 1)),
    ]
    n_chunks = [len(chunk_bounds(size, resample_width(t[0]))) for t in tasks]
    assert max(n_chunks) > 1  # else nothing is cut

    whole = [_bootstrap_one(*t) for t in tasks]
    monkeypatch.setattr(_resample, "_PARALLEL_MIN_WORK", 0)
    ran: list[int] = []
    run_tasks = _resample.run_tasks

    def counted(fn, parts, work, workers):  # noqa: ANN001, ANN202
        ran.append(len(parts))
        return run_tasks(fn, parts, work, workers)

    monkeypatch.setattr(_resample, "run_tasks", counted)
    cut = run_parts(_bootstrap_one, tasks, n_chunks, work=1.0, workers=2)
    assert ran and ran[0] > len(tasks)  # the tasks were cut
    for w, c in zip(whole, cut, strict=True):
        assert list(w) == list(c)
        for m in w:
            np.testing.assert_array_equal(w[m], c[m], err_msg=m)


def test_a_run_of_chunks_is_that_slice_of_the_whole_task(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_resample, "_CHUNK_ELEMENTS", 20_000)
    cc = _clusters()
    size = 500
    bounds = chunk_bounds(size, resample_width(cc))
    assert len(bounds) >= 3
    whole = cluster_bootstrap_task(cc, 0.5, True, size, 5, (0,))
    part = cluster_bootstrap_task(cc, 0.5, True, size, 5, (0,), (1, 3))
    a, b = bounds[1][0], bounds[2][1]
    for m in whole:
        np.testing.assert_array_equal(part[m], whole[m][a:b])
