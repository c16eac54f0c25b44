"""The scheduler option, the client's lifetime, and the bounded, ordered task stream."""

from __future__ import annotations

import logging
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from fairaudit.errors import InputError, arg

log = logging.getLogger(__name__)

INSTALL_HINT = "Install Dask's distributed scheduler with: pip install 'fairaudit-imaging[dask]'"
_ADDRESS = re.compile(r"^(tcp|tls|ucx|ws|wss|inproc)://\S+$")
# Tasks in flight per worker thread: enough that no worker waits, few enough that the client
# holds only a bounded number of results (it never holds all images).
WINDOW_PER_THREAD = 3

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class SchedulerSpec:
    """`--scheduler`: an existing cluster's address, or a LocalCluster's number of workers."""

    address: str | None = None
    local_workers: int | None = None

    def describe(self) -> str:
        return self.address if self.address else f"a LocalCluster of {self.local_workers} workers"


def parse_scheduler(value: str) -> SchedulerSpec:
    """`tcp://HOST:PORT` (or another Dask protocol) or `local:N`; InputError otherwise."""
    text = value.strip()
    if text.lower().startswith("local:"):
        count = text.split(":", 1)[1]
        if not count.isdigit() or int(count) < 1:
            raise InputError(
                f"{arg('scheduler')} local:N needs a positive number of workers, not {value!r}.",
                hint=f"Example: {arg('scheduler')} local:4",
                argument="scheduler",
            )
        return SchedulerSpec(local_workers=int(count))
    if _ADDRESS.match(text):
        return SchedulerSpec(address=text)
    raise InputError(
        f"{arg('scheduler')} must be a Dask scheduler address (tcp://HOST:PORT) or local:N, not {value!r}.",
        hint=f"Example: {arg('scheduler')} tcp://10.0.0.5:8786, or {arg('scheduler')} local:4 for a cluster "
        "on this machine.",
        argument="scheduler",
    )


def _distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise InputError(
            f"{arg('scheduler')} needs dask.distributed, which is not installed.",
            hint=INSTALL_HINT,
            argument="scheduler",
        ) from exc
    return distributed


class ClusterSession:
    """A connected client: submits tasks in a bounded window and yields results in order."""

    def __init__(self, client: Any, spec: SchedulerSpec) -> None:
        self.client = client
        self.spec = spec

    def threads(self) -> int:
        """Worker threads in the cluster now (at least 1, so a window is never empty)."""
        return max(1, sum(int(n) for n in self.client.nthreads().values()))

    def ordered(
        self,
        fn: Callable[..., R],
        items: Iterable[T],
        *args: Any,
        window: int | None = None,
        on_lost: Callable[[T, BaseException], R] | None = None,
    ) -> Iterator[tuple[T, R]]:
        """(item, fn(item, *args)) for each item, in the order given, computed on the cluster.

        At most `window` tasks are in flight (default WINDOW_PER_THREAD per worker thread),
        so the client holds a bounded number of results. A worker lost mid-task is handled
        by Dask (the scheduler reruns its tasks elsewhere). A task whose workers kept dying
        (KilledWorker, after Dask's allowed failures) goes to `on_lost(item, error)` when
        given (the caller turns it into per-file failures); any other task error is
        raised as InputError: it says the cluster cannot run fairaudit's work at all.
        """
        distributed = _distributed()
        killed = distributed.KilledWorker
        limit = window if window is not None else WINDOW_PER_THREAD * self.threads()
        source = iter(items)
        pending: deque[tuple[T, Any]] = deque()
        try:
            while True:
                while len(pending) < max(1, limit):
                    item = next(source, _END)
                    if item is _END:
                        break
                    pending.append((item, self.client.submit(fn, item, *args, pure=False)))
                if not pending:
                    return
                item, future = pending.popleft()
                try:
                    result = future.result()
                except killed as exc:
                    if on_lost is None:
                        raise
                    log.warning("Dask workers died %s while running a task; isolating its files", _times())
                    result = on_lost(item, exc)
                except InputError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a worker that cannot run fairaudit's code
                    raise InputError(
                        f"a Dask worker failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                        hint="Every worker needs fairaudit (same version) and read access to the same paths "
                        "(the data, and a model file or bundle if not bundled).",
                    ) from exc
                finally:
                    future.release()
                yield item, result
        finally:
            for _, future in pending:
                future.cancel()

    def one_at_a_time(
        self, fn: Callable[..., R], items: Iterable[T], *args: Any
    ) -> Iterator[tuple[T, R | None]]:
        """(item, fn([item], *args)) for each item, each as a task of its own: for a batch whose
        workers kept dying, to find the item that kills them. The result is None for an item
        whose task still killed its worker (KilledWorker); the caller records it as failed."""
        killed = _distributed().KilledWorker
        for item in items:
            future = self.client.submit(fn, [item], *args, pure=False)
            try:
                yield item, future.result()
            except killed:
                yield item, None
            finally:
                future.release()


_END: Any = object()


def _times() -> str:
    import dask

    return f"{dask.config.get('distributed.scheduler.allowed-failures', 3) + 1} times"


_ACTIVE: list[ClusterSession] = []


def active() -> ClusterSession | None:
    """The session of the innermost `connect` block, or None (run locally)."""
    return _ACTIVE[-1] if _ACTIVE else None


@contextmanager
def connect(value: str | SchedulerSpec | None) -> Iterator[ClusterSession | None]:
    """Join or start the cluster `value` names (None: yield None, everything runs locally)."""
    if value is None:
        yield None
        return
    spec = value if isinstance(value, SchedulerSpec) else parse_scheduler(value)
    distributed = _distributed()
    # Dask logs its scheduler's and nannies' life at INFO (in this process for a LocalCluster):
    # shown with fairaudit -v, not otherwise, e.g. when Ctrl-C stops the workers.
    dask_log = logging.getLogger("distributed")
    dask_level = dask_log.level
    if not log.isEnabledFor(logging.INFO):
        dask_log.setLevel(logging.WARNING)
    try:
        with _connected(spec, distributed) as session:
            yield session
    finally:
        dask_log.setLevel(dask_level)


@contextmanager
def _connected(spec: SchedulerSpec, distributed: Any) -> Iterator[ClusterSession]:
    cluster = None
    try:
        if spec.local_workers is not None:
            # Processes, one thread each: torch, numpy and the decoders each get a core
            # (Dask's nanny sets OMP_NUM_THREADS=1 in its workers). No dashboard: nothing
            # should listen on a port the user did not ask for.
            import dask

            # Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, which also fixes
            # glibc's mmap threshold at 128 KiB: every image-sized array is then mmap'ed and
            # page-faulted afresh, and decoding ran 1.5x slower (benchmarks/scale_dask.py).
            # Our workers keep glibc's defaults, as the local run does.
            with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
                cluster = distributed.LocalCluster(
                    n_workers=spec.local_workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                )
            client = distributed.Client(cluster)
        else:
            import dask

            timeout = dask.config.get("distributed.comm.timeouts.connect", "30s")
            client = distributed.Client(spec.address, timeout=timeout)
    except RuntimeError as exc:  # a LocalCluster whose worker processes did not start
        if cluster is not None:
            cluster.close()
        raise InputError(
            f"could not start {spec.describe()}: {exc}",
            hint="Worker processes are spawned: run fairaudit from its command or from a script "
            "guarded by `if __name__ == '__main__':`, not from standard input.",
        ) from exc
    except (OSError, TimeoutError) as exc:
        if cluster is not None:
            cluster.close()
        raise InputError(
            f"could not reach the Dask scheduler at {spec.describe()}: {exc}",
            hint="Check the address and that the scheduler is running (dask scheduler; dask worker ADDRESS).",
        ) from exc
    session = ClusterSession(client, spec)
    log.info("Dask: %s, %d worker threads", spec.describe(), session.threads())
    _ACTIVE.append(session)
    try:
        yield session
    finally:
        _ACTIVE.remove(session)
        client.close()
        if cluster is not None:
            cluster.close()
