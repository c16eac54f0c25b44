"""Batched inference over a DICOM folder: decode in worker processes, predict in batches.

`run_inference(predictor, root)` streams every file under `root` through
`fairaudit.io.dicom.iter_outcomes` (worker processes, path order, a rich progress bar
with files/s on a terminal), prepares each decoded image with the predictor's own
preprocessing, groups the prepared images by shape into batches of `batch_size`, and runs
each batch once (the predictor runs torch under `torch.inference_mode`). Decoding of the
next files goes on in the workers while the parent runs the model.

Nothing is fatal for a single file: a file that is not DICOM, cannot be decoded, cannot
be prepared, or on which the model fails becomes an `unreadable` entry with its reason
(the audit's manifest lists it). Only when the model fails on every batch is that an
error (the model does not fit the data: wrong channels, wrong size...).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from fairaudit.errors import InputError

if TYPE_CHECKING:
    from pathlib import Path

    from fairaudit.models.loading import Predictor
    from fairaudit.models.pred_cache import PredictionCache

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 32
#: DICOM tags kept per image for the join (the column names of fairaudit.io.tables.ID_CANDIDATES).
ID_TAGS = {
    "sop_instance_uid": "SOPInstanceUID",
    "study_instance_uid": "StudyInstanceUID",
    "series_instance_uid": "SeriesInstanceUID",
    "patient_id": "PatientID",
}


@dataclass
class InferenceRun:
    """What a model run over a folder produced, one entry per file."""

    records: list[dict[str, str]] = field(default_factory=list)  # predicted images: path + ID_TAGS
    scores: list[float] = field(default_factory=list)  # classification: P(finding), per record
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


def _record(o: Any, keywords: tuple[str, ...]) -> dict[str, str]:
    """The file's join keys, and the raw text of the header `keywords` (`dicom:` attributes)."""
    row = {"path": o.path}
    header = o.header or {}
    for col, tag in ID_TAGS.items():
        value = header.get(tag)
        row[col] = "" if value is None else str(value).strip()
    if keywords:
        from fairaudit.io.dicom_attributes import PREFIX, header_text

        for kw in keywords:
            row[PREFIX + kw] = header_text(header.get(kw))
    return row


def _reason(exc: BaseException) -> str:
    """One line: the exception type and message (a TorchScript error's last line holds its cause)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if lines and lines[0].startswith("The following operation failed in the TorchScript interpreter"):
        return lines[-1][:240]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:240]


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
    cache: PredictionCache | None = None,
    resume: bool = False,
    max_pixels: int | None = None,
) -> InferenceRun:
    """Run `predictor` on every file under `root` (see the module doc).

    Classification fills `run.scores`; segmentation calls `on_mask(record, mask)` with the
    predicted label map restored to the image's original grid (the run keeps no masks).
    `header_keywords`: DICOM keywords whose raw header text each record keeps as a
    `dicom:KEYWORD` column (for `--attribute dicom:KEYWORD`, fairaudit.io.dicom_attributes).

    `cache` (classification): every score is appended to it, keyed by the file's content
    hash, as the run goes; with `resume`, files whose hash it holds are not decoded nor
    predicted again (only their header is read, for the ids). With a cache the records
    come out in path order, whatever the batching.
    `max_pixels` (--max-pixels): files declaring more pixels are refused from their header.
    """
    from fairaudit import interrupt
    from fairaudit.io.dicom import HEADER_FIELDS, DecodeOptions, iter_outcomes
    from fairaudit.io.dicom._scan import walk
    from fairaudit.models.pred_cache import file_digest

    size = DEFAULT_BATCH_SIZE if batch_size is None else int(batch_size)
    if size < 1:
        raise InputError(f"--batch-size must be at least 1, not {size}.")
    segmentation = predictor.task == "segmentation"
    if segmentation and on_mask is None:
        raise ValueError("a segmentation run needs on_mask")
    if segmentation:
        cache = None  # masks are not cached (yet): a segmentation run always predicts every file
    run = InferenceRun()
    pending: dict[tuple[int, ...], list[tuple[dict[str, str], np.ndarray, tuple[int, int], str]]] = {}
    first_error: list[str] = []
    entries = list(walk(root)) if cache is not None else None
    total = None if entries is None else sum(1 for e in entries if e.problem is None)
    digests: dict[str, str] = {}
    cached = cache.load() if cache is not None and resume else {}
    done = {"new": 0, "cached": 0}
    interrupt.note(scored=0, total=total, cache=None if cache is None else str(cache.folder))

    def flush(key: tuple[int, ...]) -> None:
        items = pending.pop(key, [])
        if not items:
            return
        batch = np.stack([x for _, x, _, _ in items])
        start = time.perf_counter()
        try:
            out = predictor.predict(batch)
        except Exception as exc:  # noqa: BLE001 - the model's failure is reported per file
            reason = f"failed: model: {_reason(exc)}"
            if not first_error:
                first_error.append(reason)
                log.warning(
                    "the model failed on a batch of %d images of shape %s: %s", len(items), key, reason
                )
            run.unreadable.extend((rec["path"], reason) for rec, _, _, _ in items)
            return
        finally:
            run.model_seconds += time.perf_counter() - start
        run.batches += 1
        if cache is not None:
            cache.add([(digest, float(out[i])) for i, (_, _, _, digest) in enumerate(items)])
        for i, (rec, _, shape, _) in enumerate(items):
            if segmentation:
                try:
                    mask = predictor.restore(out[i], shape)
                except Exception as exc:  # noqa: BLE001
                    run.unreadable.append((rec["path"], f"failed: restoring the mask: {_reason(exc)}"))
                    continue
                on_mask(rec, mask)  # type: ignore[misc]
            else:
                run.scores.append(float(out[i]))
            run.records.append(rec)
        done["new"] += len(items)
        interrupt.note(scored=done["new"] + done["cached"])
        interrupt.maybe_test_interrupt(done["new"])

    def consume(outcomes: Iterator[Any]) -> None:
        for o in outcomes:
            run.n_files += 1
            if o.status != "ok" or o.image is None:
                run.unreadable.append((o.path, f"{o.status}: {o.reason}" if o.reason else o.status))
                continue
            image = o.image
            if image.ndim != 2:
                run.unreadable.append((o.path, f"failed: not a 2-D image (shape {tuple(image.shape)})"))
                continue
            try:
                x = predictor.prepare(image, o.spacing)
            except Exception as exc:  # noqa: BLE001 - one odd image must not stop the run
                run.unreadable.append((o.path, f"failed: preprocessing: {_reason(exc)}"))
                continue
            key = tuple(x.shape)
            shape = (int(image.shape[0]), int(image.shape[1]))
            digest = "" if cache is None else digests.get(o.path) or file_digest(root / o.path)
            pending.setdefault(key, []).append((_record(o, header_keywords), x, shape, digest))
            if len(pending[key]) >= size:
                flush(key)
        for key in list(pending):
            flush(key)

    start = time.perf_counter()
    extra = tuple(k for k in header_keywords if k not in HEADER_FIELDS)
    limit = {} if max_pixels is None else {"max_pixels": int(max_pixels)}
    options = DecodeOptions(frames="middle", extra_header=extra, **limit)
    try:
        if cached and entries is not None:
            entries = _resume_cached(root, entries, cached, digests, run, options, workers, header_keywords)
            done["cached"] = run.from_cache = len(run.records)
            interrupt.note(scored=done["cached"])
            log.warning(
                "resume: %d of %d files scored from the cache (%s); predicting the rest",
                done["cached"],
                total,
                cache.folder if cache is not None else "",
            )
        with _cpu_threads(predictor, workers):
            consume(
                iter_outcomes(
                    root,
                    header_only=False,
                    options=options,
                    workers=workers,
                    progress=progress,
                    entries=entries,
                )
            )
    finally:
        if cache is not None:
            cache.close()
    if cache is not None:  # path order, whatever came from the cache or the batching
        order = sorted(range(len(run.records)), key=lambda i: run.records[i]["path"])
        run.records = [run.records[i] for i in order]
        run.scores = [run.scores[i] for i in order]
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


def _resume_cached(
    root: Path,
    entries: list[Any],
    cached: dict[str, float],
    digests: dict[str, str],
    run: InferenceRun,
    options: Any,
    workers: int | None,
    header_keywords: tuple[str, ...],
) -> list[Any]:
    """Take the scores of already-scored files from the cache; return the entries left to decode.

    A cached file's header is still read (in the workers, without its pixels) for its ids.
    """
    from fairaudit.io.dicom import iter_outcomes
    from fairaudit.models.pred_cache import file_digest

    hits, rest = [], []
    for e in entries:
        if e.problem is None:
            digests[e.rel] = file_digest(e.path)
            if digests[e.rel] in cached:
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
            run.records.append(_record(o, header_keywords))
            run.scores.append(cached[digests[o.path]])
    return rest


def predict_arrays(
    predictor: Predictor, images: list[np.ndarray], batch_size: int = DEFAULT_BATCH_SIZE
) -> np.ndarray:
    """Predictions for already-prepared (C, H, W) arrays of one shape, in batches (used by benchmarks)."""
    out = [predictor.predict(np.stack(images[i : i + batch_size])) for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.empty(0)
