"""FAIRAUDIT_WORKERS: the number of worker processes, read in one place.

Why: the variable is read where a pool starts (DICOM decoding, bootstrap), often after
the model has run; a value that is not a positive whole number must be an exit 2 naming
the variable and its value (docs/ci.md, "Exit codes"), checked up front by the CLI.
"""

from __future__ import annotations

import os

from fairaudit.errors import InputError

ENV = "FAIRAUDIT_WORKERS"


def env_workers() -> int | None:
    """The count FAIRAUDIT_WORKERS sets, or None when it is unset or empty."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        shown = raw if len(raw) <= 40 else raw[:40] + "..."
        raise InputError(
            f"environment variable {ENV} is {shown!r}; it must be a whole number of worker processes, at least 1.",
            hint=f"Set {ENV}=4 (for example), or unset it to use every CPU.",
        )
    return value


def worker_init(one_blas_thread: bool = False) -> None:
    """Initializer of every forked worker pool: ignore SIGINT (on Ctrl-C the parent alone
    stops, cancels what is queued and shuts the pool down: no worker tracebacks) and, for
    workers that do BLAS work (bootstrap sums, a model's resize), one BLAS thread each: the
    workers already split the cores, and an OpenBLAS pool per worker oversubscribes them
    (a model run's preprocessing went from 72 to 21 files/s on 2 CPUs without it).
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if one_blas_thread:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)


def fork_pool(workers: int, initializer=None, initargs: tuple = ()):  # noqa: ANN001, ANN201
    """A fork-context process pool whose workers are all forked now, with the parent's
    objects frozen out of the garbage collector meanwhile: a collection in a worker would
    otherwise write to (and so copy) every page it shares with the parent.
    `initializer` defaults to `worker_init` (SIGINT ignored)."""
    import gc
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    gc.freeze()
    try:
        executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("fork"),
            initializer=initializer or worker_init,
            initargs=initargs,
        )
        executor.submit(int).result()  # forks every worker now
    finally:
        gc.unfreeze()
    return executor
