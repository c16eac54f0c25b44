"""Predicted masks restored to their image's grid and written as PNG, in worker processes.

Why: at full size (1024 x 1024 and up) restoring a label map (two gathers) and compressing
its PNG cost about 8 ms a mask, as much as the model; done in the process that batches and
runs the model, they stall it (docs/models.md, "Throughput"). The model run hands
each batch's small model-grid label maps here; forked workers restore and write them while
the model goes on. A mask that cannot be restored or written is reported back with the
reason, as the model run reports a file it could not predict.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fairaudit._util.atomic import atomic_path

log = logging.getLogger(__name__)

#: Batches in flight per worker: enough to keep them busy, few enough that the parent
#: never holds more than a few batches of (small, model-grid) label maps.
_TASKS_PER_WORKER = 2


@dataclass(frozen=True)
class ModelGridMask:
    """A predicted label map still on the model's grid, and the shape of the image it
    belongs to: what a local model run hands on (restored later, in a worker)."""

    label_map: np.ndarray
    source_shape: tuple[int, int]


def write_png(path: Path, mask: np.ndarray) -> None:
    """`mask` as an 8-bit (16-bit if a label exceeds 255) grayscale PNG, atomically."""
    from PIL import Image

    arr = np.asarray(mask)
    dtype = np.uint8 if arr.size == 0 or arr.max() < 256 else np.uint16
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(arr.astype(dtype))).save(tmp, format="PNG")


def _restore_and_write(spec: dict[str, Any], jobs: Sequence[tuple[str, Path, Any]]) -> list[tuple[str, str]]:
    """Restore and write each (key, path, mask); the (key, reason) of those that failed."""
    from fairaudit.models.blocks import reason_of
    from fairaudit.models.preprocessing import restore_mask

    failed: list[tuple[str, str]] = []
    for key, path, value in jobs:
        try:
            if isinstance(value, ModelGridMask):
                value = restore_mask(value.label_map, value.source_shape, spec)
        except Exception as exc:  # noqa: BLE001 - one odd mask must not stop the run
            failed.append((key, f"failed: restoring the mask: {reason_of(exc)}"))
            continue
        try:
            write_png(path, value)
        except OSError as exc:
            failed.append((key, f"failed: writing the mask: {reason_of(exc)}"))
    return failed


class MaskWriter:
    """Restores and writes predicted masks: in `workers` forked processes, or here when
    `workers` is 0 (or there is no fork). `close()` waits for every mask and returns the
    (key, reason) of those that failed."""

    def __init__(self, spec: dict[str, Any], workers: int, chunk: int = 16) -> None:
        self.spec = dict(spec)
        self.workers = max(0, int(workers))
        self.chunk = max(1, int(chunk))
        self._jobs: list[tuple[str, Path, Any]] = []
        self._pending: deque[tuple[Future, list[tuple[str, Path, Any]]]] = deque()
        self._failed: list[tuple[str, str]] = []
        self._executor = None
        if self.workers > 0 and "fork" in multiprocessing.get_all_start_methods():
            from fairaudit._util.workers import fork_pool, worker_init

            self._executor = fork_pool(self.workers, worker_init, (True,))

    def add(self, key: str, path: Path, mask: Any) -> None:
        """Queue `mask` (restored, or a ModelGridMask) to be written to `path`; every
        `chunk` masks go to a worker as one task."""
        self._jobs.append((key, path, mask))
        if len(self._jobs) >= self.chunk:
            self.flush()

    def flush(self) -> None:
        """Hand the queued masks to a worker."""
        jobs, self._jobs = self._jobs, []
        if not jobs:
            return
        if self._executor is None:
            self._failed.extend(_restore_and_write(self.spec, jobs))
            return
        while len(self._pending) >= _TASKS_PER_WORKER * self.workers:
            self._collect()
        try:
            self._pending.append((self._executor.submit(_restore_and_write, self.spec, jobs), jobs))
        except BrokenProcessPool:
            self._failed.extend(_restore_and_write(self.spec, jobs))

    def _collect(self) -> None:
        future, jobs = self._pending.popleft()
        try:
            self._failed.extend(future.result())
        except BrokenProcessPool:  # a worker died (out of memory?): this batch here instead
            log.warning("a mask-writing worker died; writing its masks in this process")
            self._failed.extend(_restore_and_write(self.spec, jobs))

    def close(self) -> list[tuple[str, str]]:
        """Wait for every queued mask; the (key, reason) of those not written."""
        try:
            self.flush()
            while self._pending:
                self._collect()
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True, cancel_futures=True)
                self._executor = None
        return self._failed

    def __enter__(self) -> MaskWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
