"""Read every file of a folder in worker processes, streaming outcomes in sorted path order.

- Worker processes come from the fork context (as in fairaudit.stats._resample); with
  one worker, or where fork is unavailable, the files are read in this process.
- Files go out in small chunks, and only a few chunks per worker are in flight: the
  parent holds only those results, so memory does not grow with the number of files.
- Decoded images come back through shared memory (see "transfer" below).
- Outcomes come back in the walk's order (sorted paths) whatever order workers finish in.
- A transient rich progress bar on stderr shows files done / total and files per second,
  when asked for and when stderr is a terminal.
- `prepare` (a model run): each worker also turns its decoded image into the model's input,
  so the parent receives 64 x 64 arrays, not 1024 x 1024 images, and the preprocessing runs
  on every core while the parent runs the model (docs/models.md, "Throughput").
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from fairaudit import cluster
from fairaudit._util.batching import batched
from fairaudit._util.privacy import shown_path
from fairaudit._util.workers import fork_pool, worker_init
from fairaudit.io.dicom._decode import DEFAULT_OPTIONS, DecodeOptions, FileOutcome, read_file, relative_path
from fairaudit.io.dicom._scan import WalkEntry, count_entries, walk

log = logging.getLogger(__name__)
T = TypeVar("T")

# Files per task: header reads are quick (amortize the task overhead over more files);
# decoded images are large (keep the in-flight memory small).
_CHUNK_HEADER = 16
_CHUNK_DECODE = 2
# Tasks in flight per worker: enough that no worker waits for the next one.
_WINDOW_HEADER = 4
_WINDOW_DECODE = 3
# Arrays from this size go through shared memory; each decode task has a slot this big.
_SHARED_MIN_BYTES = 64 * 1024
_SLOT_BYTES = 8 * 2**20


def workers_default() -> int:
    """FAIRAUDIT_WORKERS if set (InputError when not a positive number), else the CPUs this
    process may run on."""
    from fairaudit._util.workers import env_workers

    env = env_workers()
    if env is not None:
        return env
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _preload() -> None:
    """Import pydicom, its decoding plugins and Pillow's PNG and JPEG plugins once, before
    forking, so workers inherit them."""
    import importlib

    for name in (
        "pydicom",
        "pydicom.pixels",
        "pydicom.pixels.decoders",
        "pydicom.pixels.decoders.pylibjpeg",
        "pydicom.pixels.decoders.pyjpegls",
        "pydicom.pixels.decoders.pillow",
        "pydicom.pixels.decoders.rle",
        "pylibjpeg",
        "libjpeg",
        "openjpeg",
        "rle",
        "jpeg_ls",
        "PIL.PngImagePlugin",  # PNG and JPEG files (fairaudit.io.images)
        "PIL.JpegImagePlugin",
    ):
        try:
            importlib.import_module(name)
        except Exception:  # an optional plugin that is not installed
            log.debug("not preloading %s", name)


# --------------------------------------------------------------------------- transfer
# Decoded images go back to the parent through shared memory, not the result pipe
# (which copies in 64 kB pieces, each a context switch). The parent owns one block per
# task in flight ("slot") and reuses it, so its pages are mapped once, not per image;
# an array too large for the rest of its slot gets a block of its own.


@dataclass(frozen=True)
class _InSlot:
    offset: int
    shape: tuple[int, ...]
    dtype: str
    order: str = "C"  # "F" for a Fortran-ordered array (a NIfTI volume), kept as it is


@dataclass(frozen=True)
class _Shared:
    name: str
    shape: tuple[int, ...]
    dtype: str
    order: str = "C"


def _new_block(size: int):
    """A shared-memory block with its pages reserved, or None when /dev/shm has no room
    (64 MB in a default Docker container): writing to an unreserved page of a full tmpfs
    kills the process with SIGBUS, reserving fails cleanly."""
    from multiprocessing import shared_memory

    try:
        block = shared_memory.SharedMemory(create=True, size=size)
    except OSError:
        return None
    fd = getattr(block, "_fd", -1)
    if fd >= 0 and hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError:
            block.close()
            block.unlink()
            return None
    return block


class _Slots:
    """The parent's reusable shared-memory blocks, one per task in flight."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.blocks: list = []
        self.free: list[int] = []
        self.full = False

    def take(self) -> int | None:
        """A free slot, or None (the task's arrays then go through the pipe)."""
        if self.free:
            return self.free.pop()
        if self.full:
            return None
        block = _new_block(self.size)
        if block is None:
            self.full = True
            log.debug("shared memory is full: decoded images go through the result pipe")
            return None
        self.blocks.append(block)
        return len(self.blocks) - 1

    def name(self, index: int) -> str:
        return self.blocks[index].name

    def release(self, index: int | None) -> None:
        if index is not None:
            self.free.append(index)

    def close(self) -> None:
        for block in self.blocks:
            block.close()
            block.unlink()
        self.blocks = []


_ATTACHED: dict[str, object] = {}  # worker side: slots mapped once per process


class _SlotWriter:
    def __init__(self, name: str | None) -> None:
        self.block = None
        self.offset = 0
        if name is not None:
            from multiprocessing import shared_memory

            block = _ATTACHED.get(name)
            if block is None:
                block = _ATTACHED[name] = shared_memory.SharedMemory(name=name)
            self.block = block

    def pack(self, array: np.ndarray | None) -> np.ndarray | _InSlot | _Shared | None:
        if array is None or array.nbytes < _SHARED_MIN_BYTES:
            return array
        # Copied in the array's own memory order: a C-order copy of a Fortran-ordered
        # volume is a transpose (docs/nifti.md).
        order = "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"
        block = self.block
        if block is not None and self.offset + array.nbytes <= block.size:  # type: ignore[attr-defined]
            offset = self.offset
            view = np.ndarray(array.shape, array.dtype, buffer=block.buf, offset=offset, order=order)  # type: ignore[attr-defined]
            view[...] = array
            self.offset = (offset + array.nbytes + 63) // 64 * 64
            return _InSlot(offset, array.shape, array.dtype.str, order)
        own = _new_block(array.nbytes)
        if own is None:  # no room in shared memory: the pipe it is
            return array
        try:
            np.ndarray(array.shape, array.dtype, buffer=own.buf, order=order)[...] = array
            return _Shared(own.name, array.shape, array.dtype.str, order)
        finally:
            own.close()


def _unpack(value, block, keep: bool) -> np.ndarray | None:
    if isinstance(value, _InSlot):
        if not keep:
            return None
        view = np.ndarray(
            value.shape, np.dtype(value.dtype), buffer=block.buf, offset=value.offset, order=value.order
        )
        return view.copy(order="K")
    if isinstance(value, _Shared):
        from multiprocessing import shared_memory

        own = shared_memory.SharedMemory(name=value.name)
        try:
            if not keep:
                return None
            view = np.ndarray(value.shape, np.dtype(value.dtype), buffer=own.buf, order=value.order)
            return view.copy(order="K")
        finally:
            own.close()
            own.unlink()
    return value


def _collect(outcomes: list[FileOutcome], block, keep: bool = True) -> list[FileOutcome]:
    for o in outcomes:
        o.image = _unpack(o.image, block, keep)
        o.padding_mask = _unpack(o.padding_mask, block, keep)
    return outcomes


Prepare = Callable[[FileOutcome], FileOutcome]


def _read_chunk(
    root: str,
    paths: list[str],
    header_only: bool,
    options: DecodeOptions,
    slot: str | None,
    prepare: Prepare | None = None,
) -> list[FileOutcome]:
    base = Path(root)
    outcomes = [read_file(Path(p), base, header_only=header_only, options=options) for p in paths]
    if prepare is not None:
        outcomes = [prepare(o) for o in outcomes]
    # Packed once every file is read: a worker that dies mid-chunk leaves no block behind.
    writer = _SlotWriter(slot)
    for o in outcomes:
        o.image = writer.pack(o.image)  # type: ignore[assignment]
        o.padding_mask = writer.pack(o.padding_mask)  # type: ignore[assignment]
    return outcomes


def _problem_outcome(entry: WalkEntry) -> FileOutcome:
    status, reason = entry.problem  # type: ignore[misc]
    return FileOutcome(entry.rel, status, reason, None)


def _chunks(entries: Iterable[WalkEntry], size: int) -> Iterator[list[WalkEntry]]:
    """Consecutive entries, cut before and after each problem entry (those need no worker)."""
    chunk: list[WalkEntry] = []
    for entry in entries:
        if entry.problem is not None:
            if chunk:
                yield chunk
                chunk = []
            yield [entry]
            continue
        chunk.append(entry)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def iter_outcomes(
    root: Path,
    *,
    header_only: bool,
    options: DecodeOptions = DEFAULT_OPTIONS,
    workers: int | None = None,
    progress: bool = True,
    entries: list[WalkEntry] | None = None,
    prepare: Prepare | None = None,
    ahead: int = 0,
) -> Iterator[FileOutcome]:
    """One FileOutcome per file under `root`, in sorted path order, read in parallel.

    Never raises for a bad file (it becomes a "failed" or "skipped" outcome). Closing the
    iterator early (break) stops the workers. `entries`: read only these (from `walk(root)`,
    e.g. the files a resumed model run has not scored yet) instead of walking `root`.
    Inside `fairaudit.cluster.connect(...)` the files are read on that Dask cluster.
    `prepare` (picklable; it must not raise): applied to each outcome where the file was
    read, in the worker. `ahead`: keep at least this many files in flight (a model run's
    batch: the workers go on preparing the next batch while the parent predicts this one).
    """
    root = Path(root)
    workers = workers_default() if workers is None else max(1, int(workers))
    parallel = workers > 1 and "fork" in multiprocessing.get_all_start_methods()
    show = progress and _is_terminal()
    total = (len(entries) if entries is not None else count_entries(root)) if show else None
    session = cluster.active()
    chunk_size = _CHUNK_HEADER if header_only else _CHUNK_DECODE
    source = walk(root) if entries is None else iter(entries)
    if session is not None:  # --scheduler: the files are read on the Dask cluster
        from fairaudit.io.dicom._cluster import CHUNK_DECODE, CHUNK_HEADER, cluster_outcomes

        chunks = batched(source, CHUNK_HEADER if header_only else CHUNK_DECODE)
        stream = cluster_outcomes(session, root, chunks, header_only, options)
        if prepare is not None:
            stream = map(prepare, stream)
    elif parallel:
        stream = _parallel(root, _chunks(source, chunk_size), header_only, options, workers, prepare, ahead)
    else:
        stream = _serial(root, _chunks(source, chunk_size), header_only, options, prepare)
    if not show:
        yield from stream
        return
    yield from with_progress(stream, total, "DICOM headers" if header_only else "DICOM decoding")


def _serial(
    root: Path,
    chunks: Iterator[list[WalkEntry]],
    header_only: bool,
    options: DecodeOptions,
    prepare: Prepare | None = None,
) -> Iterator[FileOutcome]:
    for chunk in chunks:
        for entry in chunk:
            if entry.problem is not None:
                yield _problem_outcome(entry)
                continue
            outcome = read_file(entry.path, root, header_only=header_only, options=options)
            yield outcome if prepare is None else prepare(outcome)


class _Pool:
    """A fork-context process pool that can be replaced when a worker dies."""

    def __init__(self, workers: int, one_blas_thread: bool = False) -> None:
        self.workers = workers
        self.one_blas_thread = one_blas_thread
        self.executor = self._new()

    def _new(self) -> ProcessPoolExecutor:
        # A BLAS limit only where the workers do BLAS work (`prepare`: a model's resize):
        # decoding does none, and setting OpenBLAS's thread count in each forked worker
        # made every file about 10% slower to decode (measured; see benchmarks/README.md).
        return fork_pool(self.workers, worker_init, (self.one_blas_thread,))

    def renew(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.executor = self._new()

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


@dataclass
class _Task:
    paths: list[str]
    slot: int | None
    future: Future | None  # None: not accepted (the pool had broken)


def _parallel(
    root: Path,
    chunks: Iterator[list[WalkEntry]],
    header_only: bool,
    options: DecodeOptions,
    workers: int,
    prepare: Prepare | None = None,
    ahead: int = 0,
) -> Iterator[FileOutcome]:
    window = (_WINDOW_HEADER if header_only else _WINDOW_DECODE) * workers
    if prepare is not None:  # small results: room for a batch ahead, and no shared-memory slots
        window = max(window, -(-ahead // _CHUNK_DECODE) + workers)
    # In submission order: a _Task, or the ready outcome of a walk problem.
    pending: deque[_Task | FileOutcome] = deque()
    _preload()
    # One resource tracker for the parent and its workers (started before they fork), so
    # shared memory that a worker maps and the parent unlinks is tracked once.
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    slots = _Slots(_SLOT_BYTES)
    pool = _Pool(workers, one_blas_thread=prepare is not None)
    in_flight = 0
    log.debug("reading files in %d processes", workers)

    def submit(paths: list[str], slot: int | None) -> _Task:
        name = None if slot is None else slots.name(slot)
        try:
            future = pool.executor.submit(_read_chunk, str(root), paths, header_only, options, name, prepare)
        except BrokenProcessPool:  # a worker died since the last task: resubmitted below
            future = None
        return _Task(paths, slot, future)

    try:
        while True:
            while in_flight < window:
                chunk = next(chunks, None)
                if chunk is None:
                    break
                if chunk[0].problem is not None:
                    pending.append(_problem_outcome(chunk[0]))
                else:
                    slot = None if header_only or prepare is not None else slots.take()
                    pending.append(submit([str(e.path) for e in chunk], slot))
                    in_flight += 1
            if not pending:
                return
            head = pending.popleft()
            if isinstance(head, FileOutcome):
                yield head
                continue
            in_flight -= 1
            block = None if head.slot is None else slots.blocks[head.slot]
            try:
                if head.future is None:
                    raise BrokenProcessPool("submitted to a broken pool")
                results = _collect(head.future.result(), block)
            except BrokenProcessPool:
                # A file in flight killed its worker (a decoder crash, or out of memory):
                # read this chunk one file at a time to find it, then resubmit the tasks
                # that the broken pool did not finish.
                pool.renew()
                results = [_isolated(pool, submit, root, p, head.slot, block) for p in head.paths]
                for i, task in enumerate(pending):
                    if isinstance(task, _Task) and not _finished(task.future):
                        pending[i] = submit(task.paths, task.slot)
            slots.release(head.slot)
            yield from results
    finally:
        pool.close()
        # Closed early: free what finished tasks left in shared memory of their own.
        for task in pending:
            if isinstance(task, _Task) and _finished(task.future):
                _collect(task.future.result(), None, keep=False)  # type: ignore[union-attr]
        slots.close()


def _finished(future: Future | None) -> bool:
    """Done with a result (not cancelled, not failed)."""
    return future is not None and future.done() and not future.cancelled() and future.exception() is None


def _isolated(pool: _Pool, submit, root: Path, path: str, slot: int | None, block) -> FileOutcome:
    try:
        future = submit([path], slot).future
        if future is None:
            raise BrokenProcessPool("submitted to a broken pool")
        return _collect(future.result(), block)[0]
    except BrokenProcessPool:
        pool.renew()
        rel = relative_path(Path(path), root)
        log.warning("%s: the worker process died while reading this file", shown_path(rel))
        return FileOutcome(
            rel, "failed", "the worker process died while reading this file (crash or out of memory)", None
        )


def _is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def with_progress(
    stream: Iterator[T], total: int | None, label: str, files: Callable[[T], int] = lambda _: 1
) -> Iterator[T]:
    """`stream` passed through, under a rich bar on stderr: label, bar, n of N, files/s, time.

    `files(item)`: how many files an item stands for (1 per outcome; a block's size).
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
    )
    start = time.perf_counter()
    done = 0
    # The first result comes before the bar starts: the worker processes are forked
    # before rich's refresh thread exists.
    try:
        item = next(stream, None)
        if item is None:
            return
        with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task(label, total=total, rate="")
            while item is not None:
                yield item
                n = files(item)
                done += n
                elapsed = time.perf_counter() - start
                bar.update(task, advance=n, rate=f"{done / elapsed:,.0f} files/s" if elapsed > 0 else "")
                item = next(stream, None)
    finally:
        stream.close()  # type: ignore[attr-defined]
