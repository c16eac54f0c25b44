"""Seeded, vectorized resampling of cell counts: bootstrap and permutation draws.

A bootstrap resample of a group of n cases is n draws with replacement; its cell counts
are what the metrics need. Two exact ways to get them, chosen by the shape of the data:
- few cells (discrete scores, 0/1 predictions): numpy's multinomial over the cells;
- many cells: n uniform integer draws binned into cells.
Both give exactly the distribution of resampling rows. Each chunk of resamples has its
own generator derived from (seed, stream key, chunk index), and chunk sizes depend only
on the data, so the numbers do not depend on how many processes run the tasks.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from fairaudit._util.workers import worker_init
from fairaudit.stats._cells import Cells
from fairaudit.stats._metrics import MetricKernel

log = logging.getLogger(__name__)

# Elements (resamples x cells) per chunk: enough to amortize Python overhead, small
# enough that the temporaries of one chunk stay in cache.
_CHUNK_ELEMENTS = 400_000
# Below this much work (cases x resamples, all tasks), processes cost more than they save.
_PARALLEL_MIN_WORK = 20_000_000
# Parts per worker when run_parts cuts tasks: enough that the workers finish together.
_PARTS_PER_WORKER = 4


def chunk_bounds(total: int, width: int) -> list[tuple[int, int]]:
    """Split `total` resamples into chunks sized for `width` cells per resample."""
    size = max(1, min(total, _CHUNK_ELEMENTS // max(width, 1)))
    return [(a, min(total, a + size)) for a in range(0, total, size)]


def generator(seed: int, key: Sequence[int]) -> np.random.Generator:
    """A generator for one stream: same (seed, key), same draws, on any machine."""
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=tuple(key)))


def bootstrap_counts(cells: Cells, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`size` bootstrap resamples of the group's cases, as (pos, neg) counts per cell."""
    n = cells.n
    k2 = 2 * cells.k
    if k2 * 8 <= n:
        counts = rng.multinomial(n, cells.counts() / n, size=size)
    else:
        codes = cells.codes()
        dtype = np.int32 if n < 2**31 else np.int64
        counts = np.empty((size, k2), dtype=np.int64)
        # One resample's draws at a time: the same numbers as one (size, n) call (the bit
        # generator, not the call, keeps the unused half of a 64-bit draw; tested), without
        # holding size x n indices.
        for r in range(size):
            counts[r] = np.bincount(codes[rng.integers(0, n, size=n, dtype=dtype)], minlength=k2)
    counts = counts.reshape(size, cells.k, 2)
    return counts[:, :, 1], counts[:, :, 0]


def permutation_counts(
    pooled: Cells, n_first: int, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """`size` random splits of the pooled cases: the first group's (pos, neg) counts.

    Shuffling group labels among pooled cases makes the first group's cell counts a
    multivariate hypergeometric draw; the second group's counts are the pool minus it.
    """
    colors = pooled.counts()
    method = "marginals" if colors.size * 16 <= pooled.n else "count"
    counts = rng.multivariate_hypergeometric(colors, n_first, size=size, method=method)
    counts = counts.reshape(size, pooled.k, 2)
    return counts[:, :, 1], counts[:, :, 0]


def cells_width(cells: Cells) -> int:
    """Elements per resample of a group's cells, for the chunk size."""
    return max(cells.n // 4, 2 * cells.k)


def bootstrap_task(
    cells: Cells,
    threshold: float,
    with_scores: bool,
    size: int,
    seed: int,
    key: tuple[int, ...],
    chunks: tuple[int, int] | None = None,
) -> dict[str, np.ndarray]:
    """Every metric over `size` bootstrap resamples of one group (`chunks`: only those, see
    `run_parts`)."""
    kernel = MetricKernel(cells.u, threshold, with_scores)

    def draw(k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return bootstrap_counts(cells, k, rng)

    return resampled_metrics(kernel, draw, cells_width(cells), size, seed, key, chunks)


def permutation_task(
    pooled: Cells,
    n_first: int,
    threshold: float,
    metrics: Sequence[str],
    size: int,
    seed: int,
    key: tuple[int, ...],
    chunks: tuple[int, int] | None = None,
) -> dict[str, np.ndarray]:
    """Null distribution of (first group - second group) under shuffled group labels."""
    kernel = MetricKernel(pooled.u, threshold, True)
    width = cells_width(pooled)

    def draw(k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return permutation_counts(pooled, n_first, k, rng)

    return null_differences(kernel, pooled, metrics, draw, width, size, seed, key, chunks)


#: Draws `k` resamples' (pos, neg) counts per cell with a generator.
Draw = Callable[[int, np.random.Generator], tuple[np.ndarray, np.ndarray]]


def _chunks(size: int, width: int, chunks: tuple[int, int] | None) -> list[tuple[int, int, int]]:
    """(stream index, first, end) of each chunk, all of them or the run `chunks` of them."""
    bounds = chunk_bounds(size, width)
    lo, hi = (0, len(bounds)) if chunks is None else chunks
    return [(i, *bounds[i]) for i in range(lo, min(hi, len(bounds)))]


def resampled_metrics(
    kernel: MetricKernel,
    draw: Draw,
    width: int,
    size: int,
    seed: int,
    key: tuple[int, ...],
    chunks: tuple[int, int] | None = None,
) -> dict[str, np.ndarray]:
    """Every metric of `size` resamples, drawn a chunk at a time, each chunk its own stream
    (`chunks`: only the chunks first..end-1, a part of the task that `run_parts` runs)."""
    parts = []
    for i, a, b in _chunks(size, width, chunks):
        parts.append(kernel.evaluate(*draw(b - a, generator(seed, key + (i,)))))
    return {m: np.concatenate([p[m] for p in parts]) for m in parts[0]}


def null_differences(
    kernel: MetricKernel,
    pooled: Cells,
    metrics: Sequence[str],
    draw: Draw,
    width: int,
    size: int,
    seed: int,
    key: tuple[int, ...],
    chunks: tuple[int, int] | None = None,
) -> dict[str, np.ndarray]:
    """(first - second group) of each metric over `size` splits of the pool, as `draw` makes
    them; only `metrics` are evaluated (`chunks`: as in `resampled_metrics`)."""
    parts = []
    for i, a, b in _chunks(size, width, chunks):
        pos_g, neg_g = draw(b - a, generator(seed, key + (i,)))
        m_g = kernel.evaluate(pos_g, neg_g, metrics)
        m_r = kernel.evaluate(pooled.pos[None, :] - pos_g, pooled.neg[None, :] - neg_g, metrics)
        parts.append({m: m_g[m] - m_r[m] for m in metrics})
    return {m: np.concatenate([p[m] for p in parts]) for m in metrics}


def workers_default() -> int:
    """FAIRAUDIT_WORKERS if set (InputError when not a positive number), else the CPU count."""
    from fairaudit._util.workers import env_workers

    env = env_workers()
    if env is not None:
        return env
    return max(1, os.cpu_count() or 1)


def run_parts(
    fn: Callable[..., dict[str, np.ndarray]],
    tasks: list[tuple[Any, ...]],
    n_chunks: Sequence[int],
    work: float,
    workers: int | None = None,
) -> list[dict[str, np.ndarray]]:
    """`run_tasks`, with each task cut into runs of its chunks when processes run them.

    Every chunk draws from its own stream, so a task's parts put end to end are the whole
    task's numbers. Cut, one large task (the raised permutations of a multi-label audit are
    often one comparison of tens of thousands of patients) no longer leaves the other workers
    idle. `fn` takes the run of chunks (first, end) as its last argument; `n_chunks`: each
    task's number of chunks (`chunk_bounds`).
    """
    workers = workers_default() if workers is None else max(1, workers)
    total = float(sum(n_chunks))
    if (
        workers <= 1
        or work < _PARALLEL_MIN_WORK
        or total <= 0
        or "fork" not in multiprocessing.get_all_start_methods()
    ):
        return run_tasks(fn, tasks, work, workers)
    # Parts of about equal work (chunks of one task are of one size; tasks' chunk sizes differ
    # little, each about _CHUNK_ELEMENTS), several per worker so that they finish together.
    per_part = max(1.0, total / (workers * _PARTS_PER_WORKER))
    parts: list[tuple[int, int, int]] = []
    for t, count in enumerate(n_chunks):
        pieces = min(count, max(1, round(count / per_part)))
        edges = np.linspace(0, count, pieces + 1).round().astype(int)
        parts += [(t, int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]
    results = run_tasks(fn, [(*tasks[t], (a, b)) for t, a, b in parts], work, workers)
    out: list[list[dict[str, np.ndarray]]] = [[] for _ in tasks]
    for (t, _, _), res in zip(parts, results, strict=True):
        out[t].append(res)
    return [{m: np.concatenate([r[m] for r in rs]) for m in rs[0]} for rs in out]


def run_tasks(
    fn: Callable[..., dict[str, np.ndarray]],
    tasks: list[tuple[Any, ...]],
    work: float,
    workers: int | None = None,
) -> list[dict[str, np.ndarray]]:
    """Run tasks in order, in worker processes when the work is large enough to pay."""
    workers = workers_default() if workers is None else max(1, workers)
    workers = min(workers, len(tasks))
    if workers <= 1 or work < _PARALLEL_MIN_WORK or "fork" not in multiprocessing.get_all_start_methods():
        from threadpoolctl import threadpool_limits

        # One BLAS thread here too: sums then round the same way as in the workers, so
        # results do not depend on the number of processes.
        with threadpool_limits(1):
            return [fn(*t) for t in tasks]
    log.debug("running %d resampling tasks in %d processes", len(tasks), workers)
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=worker_init, initargs=(True,)
    ) as pool:
        # The parent's objects (a large cohort's tables among them) are frozen out of the
        # garbage collector while the workers fork: a collection in a worker would otherwise
        # write to, and so copy, every page it shares with the parent.
        gc.collect()
        gc.freeze()
        try:
            futures = [pool.submit(fn, *t) for t in tasks]  # the first submit forks every worker
        finally:
            gc.unfreeze()
        try:
            return [f.result() for f in futures]
        except BaseException:  # Ctrl-C or a failed task: do not wait for the queued ones
            pool.shutdown(wait=True, cancel_futures=True)
            raise
