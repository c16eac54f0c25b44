"""`fairaudit audit VOLUMES --model M --task segmentation`: a model run on volumes, then the audit.

Why apart from fairaudit.workflows.model_run: a volume is many files (a DICOM series) or
one (a NIfTI file), and a 3D model runs on it by sliding windows, a 2D one slice by slice
(fairaudit.models.volumes); the 2D run's one-file-one-image batching does not apply.
model_run hands over here when the model's model.json says spatial_dims 3 or slice_axis.

1. Plan: a header-only pass over the folder; CT and MR files are grouped into series
   volumes (fairaudit.io.dicom.assemble_series: slice order along the normal, spacing),
   each NIfTI file is a volume of its own. Anything else (a 2-D image, a broken series)
   is excluded with the reason, as a file the 2D run cannot read.
2. Ids: a DICOM series is named by a DICOM id of its first slice (series_instance_uid;
   sop_instance_uid only for a one-file volume), a NIfTI file by its path (with or
   without `.nii.gz`), as the demographics name them.
3. Predict: the folder is decoded once more, volume after volume (one volume's slices held
   at a time), each predicted on its own grid and written to pred_masks/: `.npy` in the
   (slices, rows, cols) order of a DICOM series, `.nii.gz` with the input's canonical
   affine for a NIfTI input, so either can be audited again with --pred-masks.
4. Audit: the segmentation audit with the volumes' spacing (mm, from the series or the
   NIfTI header) and files, without scanning the folder again.
"""

from __future__ import annotations

import gzip
import logging
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from fairaudit._util.atomic import atomic_path
from fairaudit.errors import InputError, arg

log = logging.getLogger(__name__)

NOT_A_VOLUME = "a 2-D image: the model (spatial_dims 3 or slice_axis, model.json) runs on volumes"


@dataclass
class PlannedVolume:
    """One volume to predict: its id, its files (slice order) and what they are."""

    key: str
    paths: list[str]
    kind: str  # "series" | "nifti"


@dataclass
class VolumeRun:
    """What a volume run produced: the files per id, the excluded files with reasons."""

    masks: dict[str, Path] = field(default_factory=dict)  # id -> pred_masks file
    rows: list[dict[str, str]] = field(default_factory=list)  # predictions.csv: id, mask
    by_id: dict[str, tuple[str, tuple[float, ...] | None, tuple[int, int] | None]] = field(
        default_factory=dict
    )
    paths_by_id: dict[str, list[str]] = field(default_factory=dict)
    grids: dict[str, Any] = field(default_factory=dict)  # NIfTI: id -> fairaudit.io.nifti.Grid
    # `--attribute dicom:KEYWORD`: id -> the header text of its series' first slice per keyword
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    ambiguous: set[str] = field(default_factory=set)  # ids that name several volumes
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, "status: reason")
    n_files: int = 0
    n_volumes: int = 0
    seconds: float = 0.0
    model_seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """Counts and speed for results.json's model.run."""
        return {
            "n_files": self.n_files,
            "n_volumes": self.n_volumes,
            "n_predicted": len(self.masks),
            "n_unreadable": len(self.unreadable),
            "seconds": round(self.seconds, 3),
            "model_seconds": round(self.model_seconds, 3),
            "volumes_per_second": round(len(self.masks) / self.seconds, 3) if self.seconds > 0 else None,
        }


class VolumeMasks(Mapping[str, np.ndarray]):
    """id -> predicted label volume, read from its `.npy` / `.nii.gz` when asked (no volume
    is held in memory for the whole cohort)."""

    def __init__(self, files: dict[str, Path]) -> None:
        self._files = files

    def __getitem__(self, key: str) -> np.ndarray:
        path = self._files[key]
        if path.name.endswith(".nii.gz"):
            from fairaudit.io.nifti import read_volume

            return read_volume(path, raw=True)[0]
        return np.load(path, allow_pickle=False)

    def __iter__(self) -> Iterator[str]:
        return iter(self._files)

    def __len__(self) -> int:
        return len(self._files)


def plan_volumes(
    outcomes: list[Any], id_col: str, path_ids: Any
) -> tuple[list[PlannedVolume], list[tuple[str, str]]]:
    """The volumes of a folder from its header-only outcomes (see the module doc), and the
    files that are in none, with the reason."""
    from fairaudit.io.dicom import SERIES_MODALITIES, assemble_series
    from fairaudit.io.tables import DICOM_ID_TAGS

    unreadable: list[tuple[str, str]] = []
    dicom, nifti = [], []
    for o in outcomes:
        if o.status != "ok" or o.header is None:
            unreadable.append((o.path, f"{o.status}: {o.reason}" if o.reason else o.status))
        elif o.file_format == "nifti":
            nifti.append(o)
        elif o.file_format == "dicom" and (o.header.get("Modality") or "").upper() in SERIES_MODALITIES:
            dicom.append(o)
        else:
            unreadable.append((o.path, f"excluded: {NOT_A_VOLUME}"))
    tag = DICOM_ID_TAGS.get(id_col.lower())
    planned: list[PlannedVolume] = []
    for s in assemble_series(dicom):
        if s.status != "ok":
            unreadable.extend((p, f"failed: series: {s.reason}") for p in s.paths)
        elif tag is None:
            why = f"a DICOM series is named by its DICOM ids, not by a path ('{id_col}'): use series_instance_uid"
            unreadable.extend((p, f"excluded: {why}") for p in s.paths)
        elif tag == "SOPInstanceUID" and len(s.paths) > 1:
            why = f"a series of {len(s.paths)} files has no one sop_instance_uid: name volumes by series_instance_uid"
            unreadable.extend((p, f"excluded: {why}") for p in s.paths)
        else:
            planned.append(
                PlannedVolume(str((s.header or {}).get(tag) or "").strip(), list(s.paths), "series")
            )
    if nifti:
        if path_ids is None:
            why = f"a NIfTI file has no DICOM ids ('{id_col}'): name it by its path ({arg('id_column')} path)"
            unreadable.extend((o.path, f"excluded: {why}") for o in nifti)
        else:
            keys = path_ids([o.path for o in nifti])
            planned.extend(PlannedVolume(k, [o.path], "nifti") for k, o in zip(keys, nifti, strict=True))
    planned.sort(key=lambda v: v.paths[0])
    return planned, unreadable


def iter_volumes(
    root: Path, planned: list[PlannedVolume], options: Any, workers: int | None, progress: bool
) -> Iterator[tuple[PlannedVolume, Any, list[tuple[str, str]]]]:
    """(planned volume, its decoded form or None, the (path, "status: reason") of its files
    when it could not be used) per planned volume, decoded in the workers in plan order; one
    volume's slices are held at a time. The decoded form is a SeriesVolume (`volume`,
    `spacing`) for a DICOM series, the file's outcome (`image`, `spacing`, `affine`) for NIfTI."""
    from fairaudit.io.dicom import assemble_series, iter_outcomes
    from fairaudit.io.dicom._scan import walk

    wanted = {p for v in planned for p in v.paths}
    entries = {e.rel: e for e in walk(root) if e.rel in wanted}
    ordered = [entries[p] for v in planned for p in v.paths if p in entries]
    stream = iter_outcomes(
        root, header_only=False, options=options, workers=workers, progress=progress, entries=ordered
    )
    try:
        for v in planned:
            got = {p: next(stream) for p in v.paths if p in entries}
            bad = {p: f"{o.status}: {o.reason}" for p, o in got.items() if o.status != "ok"}
            if bad or len(got) != len(v.paths):
                others = "failed: another file of its volume could not be read (see that file)"
                yield v, None, [(p, bad.get(p, others if p in got else "failed: gone")) for p in v.paths]
            elif v.kind == "nifti":
                yield v, got[v.paths[0]], []
            else:
                series = assemble_series(list(got.values()))
                s = series[0] if len(series) == 1 else None
                if s is None or s.status != "ok" or s.volume is None:
                    why = s.reason if s is not None and s.reason else "the files did not decode to one volume"
                    yield v, None, [(p, f"failed: series: {why}") for p in v.paths]
                else:
                    yield v, s, []
    finally:
        stream.close()  # type: ignore[attr-defined]


def write_volume_mask(path: Path, labels: np.ndarray, affine: np.ndarray | None) -> None:
    """A predicted label volume, atomically: `.nii.gz` with `affine` (nibabel) or `.npy`."""
    arr = np.ascontiguousarray(labels)
    if path.name.endswith(".nii.gz"):
        import nibabel as nib

        image = nib.Nifti1Image(arr, np.asarray(affine, dtype=np.float64))
        image.header.set_xyzt_units("mm")
        data = gzip.compress(image.to_bytes(), compresslevel=6, mtime=0)
        with atomic_path(path) as tmp:
            Path(tmp).write_bytes(data)
        return
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, arr, allow_pickle=False)


def run_volumes(
    predictor: Any,
    root: Path,
    mask_dir: Path,
    *,
    id_col: str,
    path_ids: Any,
    name_of: Any,
    workers: int | None,
    progress: bool,
    batch_size: int,
    max_pixels: int | None = None,
    max_file_size: int | None = None,
    header_keywords: tuple[str, ...] = (),
) -> VolumeRun:
    """Plan, decode and predict every volume under `root`; write each mask to `mask_dir`
    (`name_of(id)`: its file stem). Nothing is fatal for one volume: it is excluded with
    the reason (each of its files in the manifest). `header_keywords`: the `dicom:`
    attributes' header fields, kept per volume from its first file (a NIfTI file has none)."""
    from fairaudit.io.dicom import HEADER_FIELDS, iter_outcomes, limited_options
    from fairaudit.io.dicom_attributes import header_text
    from fairaudit.models.blocks import reason_of
    from fairaudit.models.volumes import predict_volume

    start = time.perf_counter()
    run = VolumeRun()
    extra = tuple(k for k in header_keywords if k not in HEADER_FIELDS)
    options = limited_options(max_pixels, max_file_size, frames="all", extra_header=extra)
    headers = list(iter_outcomes(root, header_only=True, options=options, workers=workers, progress=progress))
    run.n_files = len(headers)
    planned, run.unreadable = plan_volumes(headers, id_col, path_ids)
    texts = {
        o.path: {kw: header_text(o.header.get(kw)) for kw in header_keywords}
        for o in headers
        if header_keywords and o.status == "ok" and o.header is not None and o.file_format == "dicom"
    }
    del headers
    run.n_volumes = len(planned)
    if not run.n_volumes:
        reasons = Counter(w for _, w in run.unreadable).most_common(3)
        raise InputError(
            f"no volume to run the model on in {len(run.unreadable)} files"
            + (f" ({'; '.join(f'{w} x {k}' for w, k in reasons)})" if reasons else "")
            + ".",
            file=str(root),
            hint="Pass a folder of CT or MR DICOM series, or of NIfTI volumes (.nii, .nii.gz).",
        )
    from fairaudit._util import interrupt

    # Ctrl-C: "interrupted: N of M files scored" counts the files of the volumes predicted.
    interrupt.note(scored=0, total=sum(len(v.paths) for v in planned), cache=None)
    done_files = 0
    seen = Counter(v.key for v in planned)
    run.ambiguous = {k for k, n in seen.items() if n > 1}
    first_error = ""
    volumes = iter_volumes(root, planned, options, workers, progress=False)
    if progress:
        from fairaudit.io.dicom._parallel import _is_terminal, with_progress

        if _is_terminal():  # a rich bar on a terminal: files/s over the volumes
            total = sum(len(v.paths) for v in planned)
            volumes = with_progress(
                volumes, total, "volumes: decode + model", files=lambda item: len(item[0].paths)
            )
    for v, vol, failures in volumes:
        if failures or vol is None:
            run.unreadable.extend(failures)
            continue
        if v.paths[0] in texts:
            run.headers[v.key] = texts[v.paths[0]]
        if not v.key or seen[v.key] > 1:  # no id, or two volumes share one: the audit excludes it
            _index(run, v, vol)
            continue
        image = vol.volume if v.kind == "series" else vol.image
        spacing = tuple(float(s) for s in vol.spacing) if vol.spacing is not None else None
        t0 = time.perf_counter()
        try:
            labels = predict_volume(predictor, image, spacing, batch_size=batch_size)
        except Exception as exc:  # noqa: BLE001 - the model's failure is reported per volume
            reason = f"failed: model: {reason_of(exc)}"
            first_error = first_error or reason
            run.unreadable.extend((p, reason) for p in v.paths)
            continue
        finally:
            run.model_seconds += time.perf_counter() - t0
        suffix = ".nii.gz" if v.kind == "nifti" else ".npy"
        path = mask_dir / f"{name_of(v.key)}{suffix}"
        try:
            write_volume_mask(path, labels, getattr(vol, "affine", None))
        except OSError as exc:
            run.unreadable.extend((p, f"failed: writing the mask: {reason_of(exc)}") for p in v.paths)
            continue
        _index(run, v, vol)
        run.masks[v.key] = path
        done_files += len(v.paths)
        interrupt.note(scored=done_files)
        log.info(
            "volume %d of %d predicted: %s voxels",
            len(run.masks),
            run.n_volumes,
            "x".join(map(str, labels.shape)),
        )
    run.unreadable.sort()
    run.seconds = time.perf_counter() - start
    if first_error and not run.masks:
        raise InputError(
            f"the model could not run on any volume ({first_error.removeprefix('failed: model: ')}).",
            file=predictor.reference or predictor.name,
            hint="Check the model's roi_size and channels (model.json) against what it takes (docs/models.md, '3D models and volumes').",
        )
    return run


def _index(run: VolumeRun, v: PlannedVolume, vol: Any) -> None:
    """The volume's files, spacing and grid, as the segmentation audit's scan would give them."""
    image = vol.volume if v.kind == "series" else vol.image
    spacing = tuple(float(s) for s in vol.spacing) if vol.spacing is not None else None
    run.paths_by_id.setdefault(v.key, []).extend(v.paths)
    run.by_id[v.key] = (v.paths[0], spacing, (int(image.shape[-2]), int(image.shape[-1])))
    if v.kind == "nifti" and getattr(vol, "affine", None) is not None:
        from fairaudit.io.nifti import Grid

        run.grids[v.key] = Grid(tuple(int(s) for s in image.shape), vol.affine)


def audit_volumes_with_model(
    req: Any,
    predictor: Any,
    *,
    id_col: str,
    path_ids: Any,
    hasher: Any,
    masks: Path | None,
    mask_labels: Any,
    pred_mask_labels: Any,
    spacing: Any,
    batch_size: int | None,
) -> Any:
    """Run `predictor` on the volumes of req.dicom_dir and audit its masks (module doc)."""
    from fairaudit._util.safe_paths import own_folder
    from fairaudit.models.inference import DEFAULT_BATCH_SIZE
    from fairaudit.workflows.model_run import PRED_MASKS_DIR, _safe, dicom_keywords, publish_masks
    from fairaudit.workflows.segmentation import _Dicom, audit_segmentation, request_from_audit

    mask_dir = req.outputs.path(PRED_MASKS_DIR)
    own_folder(mask_dir)  # never a planted link: the masks would be written where it points
    size = batch_size or DEFAULT_BATCH_SIZE
    run = run_volumes(
        predictor, Path(req.dicom_dir), mask_dir, id_col=id_col, path_ids=path_ids,
        name_of=lambda key: _safe(hasher(key)), workers=req.workers, progress=req.progress,
        batch_size=size, max_pixels=getattr(req, "max_pixels", None),
        max_file_size=getattr(req, "max_file_size", None), header_keywords=dicom_keywords(req),
    )  # fmt: skip
    rows = [{"id": hasher(k), "mask": f"{PRED_MASKS_DIR}/{p.name}"} for k, p in run.masks.items()]
    info = predictor.describe()
    info["batch_size"] = size
    info["run"] = run.summary()
    publish_masks(req, mask_dir, rows, hasher, info, run.unreadable, "volume")
    index = _Dicom(run.by_id, run.ambiguous, run.paths_by_id, run.unreadable, set(), run.grids, run.headers)
    seg = request_from_audit(
        req, masks=masks, pred_masks=VolumeMasks(run.masks), mask_labels=mask_labels,
        pred_mask_labels=pred_mask_labels, spacing=spacing, model=info,
    )  # fmt: skip
    return audit_segmentation(replace(seg, dicom_index=index, id_column=id_col))
