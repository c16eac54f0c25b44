"""Predict one block of files: the unit of work, in this process or on a Dask worker.

A run cuts the folder's files, in path order, into blocks of `batch_size` files; the
readable images of a block are prepared, grouped by shape and predicted one batch per
shape. Locally the blocks come from the decode stream; with `--scheduler` each block is
one task, decoded and predicted on a worker. Either way every batch holds the same files,
so a run gives the same scores wherever it ran.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fairaudit.io.tables import DICOM_ID_TAGS

if TYPE_CHECKING:
    from fairaudit.io.dicom import DecodeOptions
    from fairaudit.io.dicom._scan import WalkEntry
    from fairaudit.models.loading import Predictor


@dataclass
class BlockResult:
    """What one block gave; small and picklable (it may come back from a Dask worker)."""

    records: list[dict[str, str]] = field(default_factory=list)  # predicted files: path + DICOM_ID_TAGS
    values: list[Any] = field(default_factory=list)  # per record: a float score, or a label map
    digests: list[str] = field(default_factory=list)  # per record: the file's sha256 ("" untracked)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, "status: reason")
    n_files: int = 0
    batches: int = 0
    model_seconds: float = 0.0
    model_error: str = ""  # the first batch failure's reason, if any

    def merge(self, other: BlockResult) -> None:
        """Add `other`'s files to this block (a block run again one file per task)."""
        self.records.extend(other.records)
        self.values.extend(other.values)
        self.digests.extend(other.digests)
        self.unreadable.extend(other.unreadable)
        self.n_files += other.n_files
        self.batches += other.batches
        self.model_seconds += other.model_seconds
        self.model_error = self.model_error or other.model_error


@dataclass(frozen=True)
class RecordSpec:
    """What each predicted file's record keeps besides its path: the id columns the join
    needs (of DICOM_ID_TAGS; on a large cohort each unused one costs ~100 bytes a file) and the raw
    header text of `keywords` (`dicom:` attributes)."""

    keywords: tuple[str, ...] = ()
    ids: tuple[str, ...] = tuple(DICOM_ID_TAGS)


def record(o: Any, spec: RecordSpec) -> dict[str, str]:
    """The file's path, join keys and `dicom:` attribute text."""
    row = {"path": o.path}
    header = o.header or {}
    for col in spec.ids:
        value = header.get(DICOM_ID_TAGS[col])
        row[col] = "" if value is None else str(value).strip()
    if spec.keywords:
        from fairaudit.io.dicom_attributes import PREFIX, header_text

        for kw in spec.keywords:
            row[PREFIX + kw] = header_text(header.get(kw))
    return row


def reason_of(exc: BaseException) -> str:
    """One line: the exception type and message (a TorchScript error's last line holds its
    cause), without the values it quotes (fairaudit._util.privacy.scrub_reason): it is written
    to manifest.csv and the reports whatever --keep-ids says."""
    from fairaudit._util.privacy import scrub_reason

    lines = [line.strip() for line in scrub_reason(str(exc)).splitlines() if line.strip()]
    if lines and lines[0].startswith("The following operation failed in the TorchScript interpreter"):
        return lines[-1][:240]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:240]


@dataclass(frozen=True, eq=False)
class InputPreparer:
    """Turns a decoded outcome into the model's input where the file was decoded (a decode
    worker, or a Dask task): picklable (the spec only, not the model), never raises.

    A file that cannot be prepared becomes a failed outcome with the reason; a prepared one
    holds the (C, H', W') input in `image` and the decoded shape in `source_shape`.
    """

    spec: dict[str, Any]

    def __call__(self, o: Any) -> Any:
        if o.status != "ok" or o.image is None or o.source_shape is not None:
            return o
        from fairaudit.models.preprocessing import model_input

        image, o.image, o.padding_mask = o.image, None, None
        if image.ndim != 2:
            o.status, o.reason = "failed", f"not a 2-D image (shape {tuple(image.shape)})"
            return o
        try:
            o.image = model_input(image, o.spacing, self.spec)
        except Exception as exc:  # noqa: BLE001 - one odd image must not stop the run
            o.status, o.reason = "failed", f"preprocessing: {reason_of(exc)}"
            return o
        o.source_shape = (int(image.shape[0]), int(image.shape[1]))
        return o


def predict_block(
    predictor: Predictor,
    outcomes: Iterable[Any],
    spec: RecordSpec,
    digest_of: Callable[[str], str] | None = None,
    restore: bool = True,
) -> BlockResult:
    """Batch by shape and predict the readable files of one block of outcomes (prepared
    where they were decoded, or here by the same `InputPreparer`).

    Nothing is fatal for one file: unreadable, unpreparable, or failed in the model, it
    becomes an `unreadable` entry with the reason. `digest_of(path)`: the content hash a
    prediction cache keys the file by. Segmentation values are label maps on the image's
    original grid, or with `restore=False` still on the model's grid
    (fairaudit.models.mask_writer.ModelGridMask: restored later, in a worker).
    """
    block = BlockResult()
    prepare = InputPreparer(predictor.spec)
    groups: dict[tuple[int, ...], list[tuple[dict[str, str], np.ndarray, tuple[int, int], str]]] = {}
    for o in outcomes:
        block.n_files += 1
        o = prepare(o)
        if o.status != "ok" or o.image is None:
            block.unreadable.append((o.path, f"{o.status}: {o.reason}" if o.reason else o.status))
            continue
        x = o.image
        digest = digest_of(o.path) if digest_of is not None else ""
        shape = (int(o.source_shape[0]), int(o.source_shape[1]))
        groups.setdefault(tuple(x.shape), []).append((record(o, spec), x, shape, digest))
    for key, items in groups.items():
        _predict_batch(predictor, key, items, block, restore)
    return block


def _predict_batch(
    predictor: Predictor, key: tuple[int, ...], items: list[Any], block: BlockResult, restore: bool = True
) -> None:
    batch = np.stack([x for _, x, _, _ in items])
    start = time.perf_counter()
    try:
        out = predictor.predict(batch)
    except Exception as exc:  # noqa: BLE001 - the model's failure is reported per file
        reason = f"failed: model: {reason_of(exc)}"
        block.model_error = block.model_error or f"{reason} (a batch of {len(items)} images of shape {key})"
        block.unreadable.extend((rec["path"], reason) for rec, _, _, _ in items)
        return
    finally:
        block.model_seconds += time.perf_counter() - start
    block.batches += 1
    segmentation = predictor.task == "segmentation"
    for i, (rec, _, shape, digest) in enumerate(items):
        if segmentation and not restore:
            from fairaudit.models.mask_writer import ModelGridMask

            value: Any = ModelGridMask(np.asarray(out[i]), shape)
        elif segmentation:
            try:
                value = predictor.restore(out[i], shape)
            except Exception as exc:  # noqa: BLE001
                block.unreadable.append((rec["path"], f"failed: restoring the mask: {reason_of(exc)}"))
                continue
        elif predictor.outputs:  # a multi-output model: one probability per output
            value = tuple(float(v) for v in out[i])
        else:
            value = float(out[i])
        block.records.append(rec)
        block.values.append(value)
        block.digests.append(digest)


# ---- on a Dask worker


@dataclass(frozen=True)
class ModelRef:
    """How a worker loads the client's model: the same reference, verified by its sha256."""

    reference: str
    device: str
    task: str
    sha256: str


_LOADED: dict[ModelRef, Any] = {}


def worker_predictor(ref: ModelRef) -> Predictor:
    """The model, loaded once per worker process and checked against the client's hash."""
    predictor = _LOADED.get(ref)
    if predictor is None:
        from fairaudit.models.loading import load_predictor

        # The client loaded this model first (with --trust-model where it is TorchScript),
        # and the sha256 below ties the worker's file to that one.
        predictor = load_predictor(ref.reference, ref.device, task=ref.task, trust_model=True)
        if predictor.sha256 != ref.sha256:
            raise RuntimeError(
                f"the model {ref.reference} on this worker has sha256 {predictor.sha256}, "
                f"not {ref.sha256} as on the client: give the workers the same model file"
            )
        _LOADED.clear()  # one model per worker at a time
        _LOADED[ref] = predictor
    return predictor


def remote_block(
    entries: list[WalkEntry],
    root: str,
    ref: ModelRef,
    options: DecodeOptions,
    spec: RecordSpec,
    with_digests: bool,
) -> BlockResult:
    """Runs on a worker: decode, prepare and predict one block of files."""
    from fairaudit.io.dicom._cluster import read_entries
    from fairaudit.models.pred_cache import file_digest

    predictor = worker_predictor(ref)
    base = Path(root)
    outcomes = read_entries(entries, root, header_only=False, options=options)
    digest_of = (lambda rel: file_digest(base / rel)) if with_digests else None
    return predict_block(predictor, outcomes, spec, digest_of)
