"""Batched inference over a DICOM folder: decode in worker processes, predict in batches.

`run_inference(predictor, root)` streams every file under `root` through
`fairaudit.io.dicom.iter_outcomes` (worker processes, path order, a rich progress bar
with files/s on a terminal) and cuts the stream into blocks of `batch_size` consecutive
files; each block's images are prepared with the predictor's own preprocessing, grouped
by shape, and each group runs as one batch (the predictor runs torch under
`torch.inference_mode`). Decoding of the next files goes on in the workers while the
parent runs the model. With `--scheduler` (fairaudit.cluster) the same blocks are decoded
and predicted on Dask workers (fairaudit.models.blocks), so every batch holds the same
images and the scores are the same wherever the run went.

Nothing is fatal for a single file: a file that is not DICOM, cannot be decoded, cannot
be prepared, or on which the model fails becomes an `unreadable` entry with its reason
(the audit's manifest lists it). Only when the model fails on every batch is that an
error (the model does not fit the data: wrong channels, wrong size...).
"""

from __future__ import annotations

import json
import logging
import os
import time
import zlib
from array import array
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from fairaudit._util.batching import batched
from fairaudit._util.privacy import shown_path
from fairaudit.errors import InputError, arg
from fairaudit.io.tables import DICOM_ID_TAGS
from fairaudit.models.blocks import (
    BlockResult,
    InputPreparer,
    ModelRef,
    RecordSpec,
    predict_block,
    record,
    remote_block,
)

if TYPE_CHECKING:
    from pathlib import Path

    from fairaudit.models.loading import Predictor
    from fairaudit.models.pred_cache import PredictionCache

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 32


class Records:
    """The predicted files' records (path, join keys, `dicom:` text), stored by column in
    compact blocks.

    On a large cohort a str object per cell (~50 bytes of header each) held the run's
    memory in proportion to the files; each column is kept as JSON text per block of
    records (one deflated string per 1,024 cells) and read back a chunk at a time (`chunks`).
    Iterating gives one dict per record.
    """

    BLOCK = 1024

    def __init__(self) -> None:
        self._names: list[str] = []
        self._blocks: dict[str, list[bytes]] = {}  # name -> JSON arrays of BLOCK cells, deflated
        self._tail: dict[str, list[str]] = {}  # name -> cells of the block being filled
        self._n = 0
        # name -> (source column, function of a block's cells): a column computed when read
        self._derived: dict[str, tuple[str, Callable[[list[str]], list[str]]]] = {}

    def append(self, rec: dict[str, str]) -> None:
        for name in rec:
            if name not in self._tail:
                self._names.append(name)
                self._blocks[name] = [self._pack([""] * self.BLOCK)] * (self._n // self.BLOCK)
                self._tail[name] = [""] * (self._n % self.BLOCK)
        for name, tail in self._tail.items():
            tail.append(rec.get(name, ""))
        self._n += 1
        if self._n % self.BLOCK == 0:
            for name, tail in self._tail.items():
                self._blocks[name].append(self._pack(tail))
                self._tail[name] = []

    @staticmethod
    def _pack(cells: list[str]) -> bytes:
        return zlib.compress(json.dumps(cells, ensure_ascii=False, separators=(",", ":")).encode(), 1)

    @property
    def names(self) -> list[str]:
        """The columns, in the order they first appeared, then the derived ones."""
        return [*self._names, *self._derived]

    def derive(self, name: str, source: str, fn: Callable[[list[str]], list[str]]) -> None:
        """Column `name` is `fn` of column `source`, computed a block at a time when read (a
        path as the CSVs name it, fairaudit.cohort.dicom_files.PathIds): nothing is stored."""
        self._derived[name] = (source, fn)

    def _cells(self, name: str, block: int) -> list[str]:
        if name in self._derived:
            source, fn = self._derived[name]
            return fn(self._cells(source, block))
        blocks = self._blocks.get(name)
        if blocks is None:
            return [""] * min(self.BLOCK, self._n - block * self.BLOCK)
        if block < len(blocks):
            return json.loads(zlib.decompress(blocks[block]))
        return list(self._tail[name])

    def column(self, name: str) -> list[str]:
        """One column's values (empty strings where a record lacks it): all of them at once."""
        out: list[str] = []
        for b in range(self._n_blocks()):
            out.extend(self._cells(name, b))
        return out

    def _n_blocks(self) -> int:
        return -(-self._n // self.BLOCK)

    def chunks(self, names: list[str], rows: int) -> Iterator[dict[str, list[str]]]:
        """The columns `names`, about `rows` records at a time (whole blocks), in order."""
        per = max(1, rows // self.BLOCK)
        for b0 in range(0, self._n_blocks(), per):
            blocks = range(b0, min(self._n_blocks(), b0 + per))
            yield {n: [c for b in blocks for c in self._cells(n, b)] for n in names}

    def is_sorted_by(self, name: str) -> bool:
        """Whether column `name` is in ascending order (read a block at a time)."""
        last = None
        for b in range(self._n_blocks()):
            cells = self._cells(name, b)
            if any(cells[i] > cells[i + 1] for i in range(len(cells) - 1)):
                return False
            if cells and last is not None and last > cells[0]:
                return False
            if cells:
                last = cells[-1]
        return True

    def reorder(self, order: list[int]) -> None:
        """Keep the records in `order` (indices into the current order)."""
        columns = {name: self.column(name) for name in self._names}
        self._blocks = {name: [] for name in columns}
        self._tail = {name: [] for name in columns}
        self._n = 0
        for i in order:
            self.append({n: values[i] for n, values in columns.items()})

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[dict[str, str]]:
        names = self.names
        for b in range(self._n_blocks()):
            cols = [self._cells(n, b) for n in names]
            for values in zip(*cols, strict=True):
                yield dict(zip(names, values, strict=True))


@dataclass
class InferenceRun:
    """What a model run over a folder produced, one entry per file."""

    records: Records = field(default_factory=Records)  # predicted images: path + DICOM_ID_TAGS
    scores: array = field(default_factory=lambda: array("d"))  # classification: P(finding), per record
    # A multi-output model (Predictor.outputs): each output's probabilities, per record
    # (`scores` stays empty).
    outputs: dict[str, array] = field(default_factory=dict)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, "status: reason")
    n_files: int = 0
    seconds: float = 0.0  # wall time of the whole run (decoding overlaps with the model)
    model_seconds: float = 0.0  # time inside predictor.predict
    batches: int = 0
    from_cache: int = 0  # scores taken from the prediction cache (audit --resume)

    @property
    def n_predicted(self) -> int:
        return len(self.records)

    def summary(self) -> dict[str, Any]:
        """Counts and speed for results.json's model object."""
        return {
            "n_files": self.n_files,
            "n_predicted": self.n_predicted,
            "n_unreadable": len(self.unreadable),
            "batches": self.batches,
            "from_cache": self.from_cache,
            "seconds": round(self.seconds, 3),
            "model_seconds": round(self.model_seconds, 3),
            "images_per_second": round(self.n_predicted / self.seconds, 2) if self.seconds > 0 else None,
        }


@contextmanager
def _cpu_threads(predictor: Predictor, workers: int | None) -> Iterator[None]:
    """Fewer torch threads while decode workers share the CPUs with the model.

    torch's OpenMP threads spin while they wait for each other; when the decode worker
    processes hold the cores, a batch that needs all threads stalls (on 2 CPUs with 2
    workers a U-Net ran at 82 instead of 396 images/s, benchmarks/inference.py). So during
    a run on CPU with W > 1 workers, torch gets the CPUs the workers leave, at least one.
    """
    import sys

    torch = sys.modules.get("torch")
    if torch is None or predictor.device != "cpu" or predictor.runtime == "onnxruntime":
        yield
        return
    from fairaudit.io.dicom import workers_default

    n_workers = workers_default() if workers is None else max(1, int(workers))
    before = torch.get_num_threads()
    if n_workers > 1:
        torch.set_num_threads(max(1, min(before, _cpus() - n_workers)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def run_inference(
    predictor: Predictor,
    root: Path,
    *,
    batch_size: int | None = None,
    workers: int | None = None,
    progress: bool = True,
    on_mask: Callable[[dict[str, str], np.ndarray], None] | None = None,
    header_keywords: tuple[str, ...] = (),
    id_columns: tuple[str, ...] | None = None,
    cache: PredictionCache | None = None,
    resume: bool = False,
    max_pixels: int | None = None,
    max_file_size: int | None = None,
    device: str | None = None,
    restore_masks: bool = True,
) -> InferenceRun:
    """Run `predictor` on every file under `root` (see the module doc).

    Classification fills `run.scores`; segmentation calls `on_mask(record, mask)` with the
    predicted label map restored to the image's original grid (the run keeps no masks);
    with `restore_masks=False` a local run hands it still on the model's grid
    (fairaudit.models.mask_writer.ModelGridMask), for a MaskWriter's workers to restore.
    `header_keywords`: DICOM keywords whose raw header text each record keeps as a
    `dicom:KEYWORD` column (for `--attribute dicom:KEYWORD`, fairaudit.io.dicom_attributes).
    `id_columns`: the DICOM id columns (of DICOM_ID_TAGS) each record keeps besides its path
    (default: all; an audit keeps only its join key).

    `cache` (classification): every score is appended to it, keyed by the file's content
    hash, as the run goes; with `resume`, files whose hash it holds are not decoded nor
    predicted again (only their header is read, for the ids).
    `max_pixels` (--max-pixels): files declaring more pixels are refused from their header;
    `max_file_size` (--max-file-size): larger files are refused from their size.
    Inside `fairaudit.cluster.connect(...)` each block is decoded and predicted on a Dask
    worker, which loads the same model (checked by sha256) onto `device` (default: the
    predictor's). Records come out in path order either way.
    """
    from fairaudit import cluster
    from fairaudit._util import interrupt
    from fairaudit.io.dicom import HEADER_FIELDS, limited_options
    from fairaudit.io.dicom._scan import count_files, walk

    size = DEFAULT_BATCH_SIZE if batch_size is None else int(batch_size)
    if size < 1:
        raise InputError(f"{arg('batch_size')} must be at least 1, not {size}.", argument="batch_size")
    segmentation = predictor.task == "segmentation"
    if segmentation and on_mask is None:
        raise ValueError("a segmentation run needs on_mask")
    if segmentation:
        cache = None  # masks are not cached (yet): a segmentation run always predicts every file
    run = InferenceRun(outputs={name: array("d") for name in predictor.outputs})
    per_output = list(run.outputs.values())
    first_error: list[str] = []
    # The file list is held only to resume (which files the cache already scored); otherwise
    # the walk streams (on 50,000 files the list held ~20 MiB through the run).
    cached = cache.load() if cache is not None and resume else {}
    entries = list(walk(root)) if cached else None
    total = None if entries is None else sum(1 for e in entries if e.problem is None)
    digests: dict[str, str] = {}
    done = {"new": 0, "cached": 0}
    interrupt.note(
        scored=0,
        total=total if total is not None else (lambda: count_files(root)),
        cache=None if cache is None else str(cache.folder),
    )

    def merge(block: BlockResult) -> None:
        run.n_files += block.n_files
        run.unreadable.extend(block.unreadable)
        run.batches += block.batches
        run.model_seconds += block.model_seconds
        if block.model_error and not first_error:
            first_error.append(block.model_error)
            log.warning("the model failed on %s", block.model_error)
        if cache is not None and block.records:
            cache.add(
                [
                    (d, v if isinstance(v, tuple) else float(v))
                    for d, v in zip(block.digests, block.values, strict=True)
                ]
            )
        for rec, value in zip(block.records, block.values, strict=True):
            if segmentation:
                on_mask(rec, value)  # type: ignore[misc]
            elif per_output:
                for column, v in zip(per_output, value, strict=True):  # type: ignore[call-overload]
                    column.append(float(v))
            else:
                run.scores.append(float(value))
            run.records.append(rec)
        if block.records:
            done["new"] += len(block.records)
            interrupt.note(scored=done["new"] + done["cached"])
            interrupt.maybe_test_interrupt(done["new"])

    start = time.perf_counter()
    extra = tuple(k for k in header_keywords if k not in HEADER_FIELDS)
    spec = RecordSpec(
        keywords=header_keywords,
        ids=tuple(DICOM_ID_TAGS)
        if id_columns is None
        else tuple(c for c in id_columns if c in DICOM_ID_TAGS),
    )
    options = limited_options(max_pixels, max_file_size, frames="middle", extra_header=extra)
    session = cluster.active()
    try:
        if cached and entries is not None:
            entries = _resume_cached(root, entries, cached, digests, run, options, workers, spec)
            done["cached"] = run.from_cache = len(run.records)
            interrupt.note(scored=done["cached"])
            log.warning(
                "resume: %d of %d files scored from the cache (%s); predicting the rest",
                done["cached"],
                total,
                cache.folder if cache is not None else "",
            )
        if session is not None:
            blocks = _cluster_blocks(
                session, predictor, root, entries, size, options, spec, cache is not None, device
            )
            for block in _block_progress(blocks, root, total, progress):
                merge(block)
        else:
            with _cpu_threads(predictor, workers):
                for block in _local_blocks(
                    predictor,
                    root,
                    entries,
                    size,
                    options,
                    spec,
                    cache,
                    digests,
                    workers,
                    progress,
                    restore_masks,
                ):
                    merge(block)
    finally:
        if cache is not None:
            cache.close()
    # Path order, whatever came from the cache, the cluster or the batching by shape.
    if not run.records.is_sorted_by("path"):  # (checked a block at a time: usually true)
        paths = run.records.column("path")
        order = sorted(range(len(paths)), key=paths.__getitem__)
        del paths
        run.records.reorder(order)
        if not segmentation:
            run.scores = array("d", (run.scores[i] for i in order)) if run.scores else run.scores
            for name, column in run.outputs.items():
                run.outputs[name] = array("d", (column[i] for i in order))
        del order
    run.unreadable.sort()
    run.seconds = time.perf_counter() - start
    if first_error and not run.records:
        raise InputError(
            f"the model could not run on any image ({first_error[0].removeprefix('failed: model: ')}).",
            file=predictor.reference or predictor.name,
            hint="Check that the model takes the input its preprocessing spec makes (channels, size).",
        )
    log.info(
        "model %s: %d of %d files predicted in %.1f s (%d unreadable)",
        predictor.name,
        run.n_predicted,
        run.n_files,
        run.seconds,
        len(run.unreadable),
    )
    return run


def _local_blocks(
    predictor: Predictor,
    root: Path,
    entries: list[Any] | None,
    size: int,
    options: Any,
    spec: RecordSpec,
    cache: PredictionCache | None,
    digests: dict[str, str],
    workers: int | None,
    progress: bool,
    restore: bool = True,
) -> Iterator[BlockResult]:
    """Blocks of `size` consecutive files from the local decode stream, each predicted here."""
    from fairaudit.io.dicom import iter_outcomes
    from fairaudit.models.pred_cache import file_digest

    def digest_of(path: str) -> str:
        return digests.get(path) or file_digest(root / path)

    outcomes = iter_outcomes(
        root,
        header_only=False,
        options=options,
        workers=workers,
        progress=progress,
        entries=entries,
        prepare=InputPreparer(predictor.spec),
        ahead=size,
    )
    try:
        for chunk in batched(outcomes, size):
            yield predict_block(predictor, chunk, spec, digest_of if cache is not None else None, restore)
    finally:
        outcomes.close()  # type: ignore[attr-defined]


def _cluster_blocks(
    session: Any,
    predictor: Predictor,
    root: Path,
    entries: list[Any] | None,
    size: int,
    options: Any,
    spec: RecordSpec,
    with_digests: bool,
    device: str | None,
) -> Iterator[BlockResult]:
    """The same blocks, each decoded and predicted by one task on the Dask cluster.

    A block whose workers kept dying (KilledWorker) runs again one file per task; a file
    that still kills its worker is recorded as failed (like a crash in a local worker).
    """
    from pathlib import Path as _Path

    from fairaudit.io.dicom._cluster import LOST_REASON
    from fairaudit.io.dicom._scan import walk

    reference = predictor.reference or predictor.name
    if not reference.startswith("bundled:"):
        reference = str(_Path(reference).expanduser().resolve())
    ref = ModelRef(reference, device or predictor.device, predictor.task, predictor.sha256)
    args = (str(root), ref, options, spec, with_digests)

    def one_by_one(chunk: list[Any], _: BaseException) -> BlockResult:
        block = BlockResult()
        for entry, part in session.one_at_a_time(remote_block, chunk, *args):
            if part is None:
                log.warning("%s: %s", shown_path(entry.rel), LOST_REASON)
                part = BlockResult(n_files=1, unreadable=[(entry.rel, f"failed: {LOST_REASON}")])
            block.merge(part)
        return block

    chunks = batched(walk(root) if entries is None else iter(entries), size)
    for _, block in session.ordered(remote_block, chunks, *args, on_lost=one_by_one):
        yield block


def _block_progress(
    blocks: Iterator[BlockResult], root: Path, total: int | None, show: bool
) -> Iterator[BlockResult]:
    """A rich progress bar (files/s) over blocks, on a terminal."""
    from fairaudit.io.dicom._parallel import _is_terminal, with_progress
    from fairaudit.io.dicom._scan import count_entries

    if not (show and _is_terminal()):
        return blocks
    total = count_entries(root) if total is None else total
    return with_progress(blocks, total, "Dask: decode + model", files=lambda b: b.n_files)


def _resume_cached(
    root: Path,
    entries: list[Any],
    cached: dict[str, Any],
    digests: dict[str, str],
    run: InferenceRun,
    options: Any,
    workers: int | None,
    spec: RecordSpec,
) -> list[Any]:
    """Take the scores of already-scored files from the cache; return the entries left to decode.

    A cached file's header is still read (in the workers, without its pixels) for its ids.
    """
    from fairaudit.io.dicom import iter_outcomes
    from fairaudit.models.pred_cache import file_digest

    hits, rest = [], []
    for e in entries:
        if e.problem is None:
            if _size(e.path) > options.max_file_size:  # refused by the reader: never hashed
                rest.append(e)
                continue
            digests[e.rel] = file_digest(e.path)
            if _fits(cached.get(digests[e.rel]), len(run.outputs)):
                hits.append(e)
                continue
        rest.append(e)
    if hits:
        for o in iter_outcomes(
            root, header_only=True, options=options, workers=workers, progress=False, entries=hits
        ):
            run.n_files += 1
            if o.status != "ok":
                run.unreadable.append((o.path, f"{o.status}: {o.reason}" if o.reason else o.status))
                continue
            run.records.append(record(o, spec))
            value = cached[digests[o.path]]
            if run.outputs:  # a multi-output model: one score per output
                for column, v in zip(run.outputs.values(), value, strict=True):  # type: ignore[arg-type]
                    column.append(v)
            else:
                run.scores.append(value)  # type: ignore[arg-type]
    return rest


def _fits(value: Any, n_outputs: int) -> bool:
    """A cached value the run can use: one score, or one per output of a multi-output model."""
    if value is None:
        return False
    if n_outputs:
        return isinstance(value, tuple) and len(value) == n_outputs
    return not isinstance(value, tuple)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0  # the reader reports it


def predict_arrays(
    predictor: Predictor, images: list[np.ndarray], batch_size: int = DEFAULT_BATCH_SIZE
) -> np.ndarray:
    """Predictions for already-prepared (C, H, W) arrays of one shape, in batches (used by benchmarks)."""
    out = [predictor.predict(np.stack(images[i : i + batch_size])) for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.empty(0)
