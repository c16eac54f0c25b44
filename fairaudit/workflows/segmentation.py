"""A segmentation audit as a library call: masks + demographics -> AuditResult -> files.

`audit_segmentation(SegmentationRequest(...))` compares predicted masks with ground-truth
masks case by case (dice, iou, hd95, assd, volume_error, nsd; fairaudit.stats._segmentation),
then runs the per-group statistics (fairaudit.stats._segmentation_audit) and writes
results.json, the reports, manifest.csv and segmentation_cases.csv. Predicted masks come
from a folder (`--pred-masks`) or, for a model run, as a mapping id -> array.

Spacing (for hd95 and assd in mm): from the DICOM file of the same id when a DICOM folder
is given (header-only scan: PixelSpacing, else ImagerPixelSpacing), else `spacing`
(`--spacing 0.5x0.5`), else distances are in pixels. A PNG or JPEG image in the folder
has no spacing of its own: `spacing`, else pixels when no case is in mm (docs/images.md).
results.json says which (config.segmentation.distance_unit and spacing_source). Every demographics row, mask
file and DICOM file appears in manifest.csv; a bad file excludes its case, never the audit.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fairaudit._util.absent import ABSENT, absent_notes, combine
from fairaudit._util.sanitize import cap, frame_to_csv
from fairaudit.errors import InputError, arg
from fairaudit.workflows.core import (
    AuditOutcome,
    audit_config,
    base_config,
    input_paths,
    load_gate,
    resolve_references,
    run_stats,
    without_timings,
    write_outcome,
)

if TYPE_CHECKING:
    from fairaudit.results import AuditReport
    from fairaudit.stats._segmentation import CaseMetrics

log = logging.getLogger(__name__)

CASES_FILE = "segmentation_cases.csv"


@dataclass
class SegmentationRequest:
    """Everything a segmentation audit needs (the CLI flags, typed).

    `pred_masks` is a folder of `<id>.png|.npy`, or a mapping id -> label image (numpy,
    2-D or 3-D) for predictions made in memory. `pred_mask_labels` None means: the same
    as `mask_labels` (None: any nonzero value is foreground).
    """

    masks: Path
    pred_masks: Path | Mapping[str, np.ndarray]
    attributes: list[str]
    out: Path | None  # None: nothing is written (the Python API)
    demographics: Path | None = None
    dicom_dir: Path | None = None
    id_column: str | None = None
    cluster_column: str | None = None  # a patient column: None finds `patient_id`, "none" is off
    intersections: list[list[str]] = field(default_factory=list)
    references: dict[str, str] = field(default_factory=dict)
    missing_as_group: bool = False
    mask_labels: tuple[int, ...] | None = None
    pred_mask_labels: tuple[int, ...] | None = None
    spacing: tuple[float, ...] | None = None
    bins: dict[str, list[float]] = field(default_factory=dict)  # --bins dicom:KVP=60,80 (dicom: attributes)
    nsd_tolerance_mm: float = 1.0  # --nsd-tolerance-mm (in pixels when the distances are)
    max_pixels: int | None = None  # --max-pixels, --max-file-size: the image folder's limits
    max_file_size: int | None = None
    # --structures 1=liver,2=tumour: each label audited on its own (fairaudit.workflows.structures)
    structures: tuple[tuple[int, str], ...] | None = None
    bootstrap: int = 2000
    ci_level: float = 0.95
    ci_method: str = "score"
    correction: str = "holm"
    primary_metrics: tuple[str, ...] | None = None  # None: the gate policy's metrics
    min_group_size: int = 30
    seed: int = 0
    workers: int | None = None
    gate: Path | None = None
    formats: tuple[str, ...] = ("json", "md", "html")
    keep_ids: bool = False
    salt: str | None = None
    command: str = ""
    progress: bool = True
    model: dict[str, Any] | None = None  # {"name": ..., "sha256": ...} when a model made pred_masks
    # A model run's files that gave no mask: path (in dicom_dir) -> "status: reason", for manifest.csv.
    model_failures: Mapping[str, str] = field(default_factory=dict)
    discover: bool = False  # --discover: rank slices on a per-case metric (stats._discover)
    discover_metric: str | None = None  # default: dice
    discover_top: int = 10
    # The set of outputs a model run opened (it writes pred_masks/ first); None: the audit opens one.
    outputs: Any = None
    max_groups: int = 20  # --max-groups: an attribute with more groups is refused (an identifier?)
    # A model run on volumes (fairaudit.workflows.volume_run) hands the folder's files by id
    # (a _Dicom: a series is many files, one id), so the folder is not scanned file by file.
    dicom_index: Any = None
    review: Any = None  # --title, --context, --reference-population (fairaudit.report.review_view)


@dataclass
class _Dicom:
    """The DICOM side: id -> (path, spacing, (rows, cols)), ambiguous ids, manifest rows;
    `images`: the ids of PNG and JPEG files (no spacing of their own: docs/images.md)."""

    by_id: dict[str, tuple[str, tuple[float, ...] | None, tuple[int, int] | None]]
    ambiguous: set[str]
    paths_by_id: dict[str, list[str]]
    unreadable: list[tuple[str, str]]
    images: set[str] = field(default_factory=set)
    #: NIfTI volumes' canonical grids (fairaudit.io.nifti.Grid) by id: a mask must share it.
    grids: dict[str, Any] = field(default_factory=dict)
    #: `--attribute dicom:KEYWORD`: each id's raw header text per keyword (io.dicom_attributes).
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Ids are SeriesInstanceUIDs: each names a series assembled into one volume (its grid in
    #: `grids`), matched with NIfTI masks (docs/nifti.md); a series that is not one regular
    #: volume has its reason here.
    series: bool = False
    series_reasons: dict[str, str] = field(default_factory=dict)


def _scan_dicom(
    root: Path,
    id_col: str,
    workers: int | None,
    progress: bool,
    path_ids: Any = None,
    keywords: tuple[str, ...] = (),
    limits: tuple[int | None, int | None] = (None, None),
) -> _Dicom:
    """The folder's files by id: a DICOM id from the header, or (`path_ids`, a
    fairaudit.cohort.dicom_files.PathIds) the path as the demographics name it; the header
    text of `keywords` (vetted `dicom:` attributes) per id. `limits`: --max-pixels and
    --max-file-size (None: the defaults of docs/dicom.md)."""
    from fairaudit.io.dicom import HEADER_FIELDS, iter_outcomes, limited_options
    from fairaudit.io.dicom_attributes import header_text
    from fairaudit.io.tables import DICOM_ID_TAGS

    options = limited_options(*limits, extra_header=tuple(k for k in keywords if k not in HEADER_FIELDS))
    texts_by_path: dict[str, dict[str, str]] = {}

    root = Path(root)
    if not root.is_dir():
        raise InputError(
            "is not a folder.", file=str(root), hint="Pass the folder that holds the DICOM files."
        )
    tag = DICOM_ID_TAGS.get(id_col.lower())
    if tag is None and path_ids is None:
        raise InputError(
            f"with a DICOM folder, mask files must be named by a DICOM id; the id column '{id_col}' is not "
            f"one of {', '.join(DICOM_ID_TAGS)}.",
            hint=f"Pass {arg('id_column')} sop_instance_uid (or leave {arg('dicom_dir')} out and give {arg('spacing')}).",
            argument="id_column",
        )
    by_id: dict[str, tuple[str, tuple[float, ...] | None, tuple[int, int] | None]] = {}
    paths: dict[str, list[str]] = {}
    unreadable: list[tuple[str, str]] = []
    found: list[tuple[str, str, tuple[float, ...] | None, tuple[int, int] | None, bool]] = []
    grids_by_path: dict[str, Any] = {}  # NIfTI volumes (docs/nifti.md)
    series_files = []  # --id-column series_instance_uid: the headers to assemble series from
    for o in iter_outcomes(root, header_only=True, workers=workers, progress=progress, options=options):
        if o.status != "ok" or o.header is None:
            unreadable.append((o.path, f"{o.status}: {o.reason}" if o.reason else o.status))
            continue
        if tag == "SeriesInstanceUID":
            series_files.append(o)
        if keywords:
            texts_by_path[o.path] = {kw: header_text(o.header.get(kw)) for kw in keywords}
        key = str(o.header.get(tag) or "").strip() if tag is not None else ""
        rows, cols = o.header.get("Rows"), o.header.get("Columns")
        shape = (int(rows), int(cols)) if rows and cols else None
        spacing = tuple(float(s) for s in o.spacing) if o.spacing is not None else None
        found.append((key, o.path, spacing, shape, o.file_format in ("png", "jpeg")))
        if o.affine is not None and o.volume_shape is not None:
            from fairaudit.io.nifti import Grid

            grids_by_path[o.path] = Grid(tuple(o.volume_shape), o.affine)
    keys = path_ids([f[1] for f in found]) if path_ids is not None else [f[0] for f in found]
    images: set[str] = set()
    grids: dict[str, Any] = {}
    for key, (_, path, spacing, shape, is_image) in zip(keys, found, strict=True):
        paths.setdefault(key, []).append(path)
        by_id[key] = (path, spacing, shape)
        if path in grids_by_path:
            grids[key] = grids_by_path[path]
        if is_image:
            images.add(key)
    ambiguous = {k for k, v in paths.items() if len(v) > 1}
    headers = {
        key: texts_by_path[path]
        for key, (_, path, *_) in zip(keys, found, strict=True)
        if path in texts_by_path
    }
    found_dicom = _Dicom(by_id, ambiguous, paths, unreadable, images, grids, headers)
    if tag == "SeriesInstanceUID":
        _series_volumes(found_dicom, series_files)
    return found_dicom


def _series_volumes(dicom: _Dicom, files: list) -> None:
    """Ids that are SeriesInstanceUIDs: each CT or MR series assembled (header only) into
    one volume whose RAS grid its NIfTI mask must share (docs/nifti.md, "DICOM series and
    NIfTI masks"); spacing from the series, per canonical axis."""
    from fairaudit.io.dicom import assemble_series
    from fairaudit.io.dicom._series import series_affine
    from fairaudit.io.nifti import canonical_grid

    dicom.series = True
    for volume in assemble_series(files):
        uid = volume.series_uid
        if not uid or uid not in dicom.paths_by_id:
            continue
        affine = series_affine(volume)
        dicom.ambiguous.discard(uid)
        rows, cols = (volume.header or {}).get("Rows"), (volume.header or {}).get("Columns")
        if affine is None or not rows or not cols:
            dicom.series_reasons[uid] = volume.reason or "no slice spacing or orientation"
            dicom.by_id.pop(uid, None)
            continue
        grid, zooms = canonical_grid((volume.n_slices, int(rows), int(cols)), affine)
        dicom.by_id[uid] = (volume.paths[0], zooms, None)
        dicom.grids[uid] = grid


def audit_segmentation(req: SegmentationRequest) -> AuditOutcome:
    """Run a complete segmentation audit and write every output file (see the module doc).

    --out is checked before the work, and the files reach it as one set
    (fairaudit._util.atomic.output_set)."""
    from fairaudit._util.atomic import output_set

    with output_set(req.out, protect=input_paths(req), shared=req.outputs) as outs:
        return write_outcome(build_segmentation_report(req), outs, req.formats, req.review)


def build_segmentation_report(req: SegmentationRequest) -> AuditReport:
    """The segmentation audit as an AuditReport (with manifest.csv and
    segmentation_cases.csv as its companions), nothing written."""
    if req.structures:  # one audit per structure, combined (docs/segmentation.md)
        from fairaudit.workflows.structures import build_structures_report

        return build_structures_report(req)
    from fairaudit._util.privacy import IdHasher, use_for_logs
    from fairaudit.cohort.dicom_files import PathIds, is_path_id
    from fairaudit.cohort.join import INTERSECTION_SEP, MISSING_GROUP, intersection_name, pseudonymize_sources
    from fairaudit.io.masks import index_masks, keyed_by_ids
    from fairaudit.io.nifti import strip_suffix
    from fairaudit.io.tables import detect_id_column, is_missing, read_table
    from fairaudit.results import AuditReport, assemble
    from fairaudit.stats._segmentation import SEGMENTATION_METRICS
    from fairaudit.stats._segmentation_audit import run_segmentation_audit

    # 1. validate
    policy = load_gate(req.gate, "segmentation")
    cfg = audit_config(req, policy)
    if req.demographics is None:
        raise InputError(
            f"a segmentation audit needs {arg('demographics')} (one row per case, with the attributes).",
            argument="demographics",
        )
    hasher = IdHasher(req.salt, req.keep_ids)
    use_for_logs(hasher)  # log lines name files as the outputs do
    pred_labels = req.pred_mask_labels if req.pred_mask_labels is not None else req.mask_labels
    tolerance = float(req.nsd_tolerance_mm)
    if not np.isfinite(tolerance) or tolerance < 0:
        raise InputError(
            f"{arg('nsd_tolerance_mm')} {req.nsd_tolerance_mm}: the tolerance of the normalized surface "
            "Dice must be a finite number of mm >= 0.",
            hint=f"Pass {arg('nsd_tolerance_mm')} 1 (the default) or the tolerance chosen for the structure.",
            argument="nsd_tolerance_mm",
        )

    demo = read_table(req.demographics)
    id_col = detect_id_column([demo], req.id_column)
    if id_col is None:
        raise InputError(
            "no id column (tried sop_instance_uid, study_instance_uid, patient_id, path).",
            file=demo.name,
            hint=f"Pass {arg('id_column')} NAME: the column whose values name the mask files (<id>.png).",
            argument="id_column",
        )
    id_col_actual = demo.column(id_col, argument="id_column")
    needed = list(dict.fromkeys(req.attributes + [a for parts in req.intersections for a in parts]))
    if not needed:
        raise InputError(
            f"no {arg('attributes')} given: name at least one demographic column to audit by.",
            argument="attributes",
        )
    # `--attribute dicom:KEYWORD`: vetted now, read from the headers of DICOM_DIR with the scan.
    from fairaudit.io import dicom_attributes as dicom_attrs

    dicom_wanted = dicom_attrs.requested(needed, [], req.bins, req.dicom_dir is not None)
    attr_cols = {
        a: demo.column(a, argument="attributes") for a in needed if not dicom_attrs.is_dicom_attribute(a)
    }
    from fairaudit.cohort.join import cluster_source

    cluster = cluster_source(req.cluster_column, id_col_actual, [demo])
    # Identifier columns are refused as attributes (the reports name every group), before
    # any mask is read (fairaudit.cohort.identifiers).
    from fairaudit.cohort.identifiers import check_group_count, refuse_identifier_attributes

    refuse_identifier_attributes(
        needed,
        id_column=id_col_actual,
        cluster_columns=(req.cluster_column, "patient_id", cluster and cluster[1]),
    )
    for a, col in attr_cols.items():
        present = demo.frame[col][~demo.frame[col].map(is_missing)]
        check_group_count(a, int(present.nunique()), len(demo.frame), req.max_groups, file=demo.name)

    # Ids with or without the image's extension (case_001.nii.gz or case_001; docs/nifti.md).
    demo_ids = [str(k) for k in demo.frame[id_col_actual] if not is_missing(k)]
    truth_index = keyed_by_ids(index_masks(req.masks, argument="masks"), demo_ids)
    pred_index = None
    if not isinstance(req.pred_masks, Mapping):
        pred_index = keyed_by_ids(index_masks(req.pred_masks, "pred_masks"), demo_ids)
    pred_ids = set(req.pred_masks) if isinstance(req.pred_masks, Mapping) else set(pred_index.files)
    if pred_index is not None:  # by name, or through a model run's index.csv (docs/segmentation.md)
        pred_index = _match_pred_index(req, pred_index, demo, id_col_actual, truth_index.files)
        pred_ids = set(pred_index.files)
    path_ids = None
    if req.dicom_dir and is_path_id(id_col):  # files named by their path (docs/images.md)
        path_ids = PathIds.from_tables([demo], id_col)
    dicom = req.dicom_index
    if dicom is None and req.dicom_dir:
        keywords = tuple(a.keyword for a in dicom_wanted)
        limits = (req.max_pixels, req.max_file_size)
        dicom = _scan_dicom(req.dicom_dir, id_col, req.workers, req.progress, path_ids, keywords, limits)
    dicom_records = _dicom_groups(req, demo, id_col_actual, dicom, dicom_wanted, attr_cols)
    if dicom is not None:
        spacing_source = "dicom"  # or, when no case takes its spacing from a file, see below
    elif req.spacing is not None:
        spacing_source = "--spacing"
    else:
        spacing_source = "none"
        if not any(strip_suffix(p.name) for p in truth_index.files.values()):  # NIfTI: from the headers
            log.warning("no DICOM folder and no %s: hd95 and assd are in pixels, not mm", arg("spacing"))

    ids = demo.frame[id_col_actual].astype(str)
    dup = ids.duplicated(keep=False)
    reasons: list[str] = []
    file_reason: dict[tuple[str, str], str] = {}  # (which, id) -> reason of an unusable file
    case_values: list[dict[str, float]] = []
    case_reasons: list[dict[str, str]] = []
    case_rows: list[int] = []
    nonempty: list[bool] = []
    cases: list[_Case] = []  # rows whose masks are read and compared
    n_mm_fallback = 0
    n_from_files = 0  # cases whose spacing came from their DICOM file (or a NIfTI header)
    n_nifti = 0  # cases whose spacing came from a NIfTI header (image or mask)
    for i, (key, is_dup) in enumerate(zip(ids, dup, strict=True)):
        why = ""
        if is_missing(key):
            why = f"missing {id_col}"
        elif is_dup:
            why = f"duplicate id in {demo.name}"
        elif key not in truth_index.files:
            why = "no ground-truth mask (--masks) for this id"
        elif key not in pred_ids:
            why = "no predicted mask for this id"
        spacing: tuple[float, ...] | None = req.spacing
        dshape = None
        grid = None  # a NIfTI image's voxel grid, which its masks must share
        from_file = False
        nifti_mask = not why and strip_suffix(truth_index.files[key].name) is not None
        if not why and dicom is not None:
            if key in dicom.ambiguous:
                why = f"several DICOM files with this id ({len(dicom.paths_by_id[key])})"
            elif key in dicom.series_reasons:
                why = f"the DICOM series of this id is not one regular volume: {dicom.series_reasons[key]}"
            elif dicom.series and key in dicom.grids and not nifti_mask:
                why = "a DICOM series volume is matched with a NIfTI mask only (its affine places it): save the mask as .nii.gz"
            elif key not in dicom.by_id:
                why = "no readable DICOM file with this id (see the files' rows in the manifest)"
            else:
                _, dsp, dshape = dicom.by_id[key]
                grid = dicom.grids.get(key)
                if grid is not None:  # a volume: its whole grid is checked, not (rows, cols)
                    dshape = None
                    n_nifti += 0 if dicom.series else 1  # a series' spacing is DICOM's
                if dsp is not None and all(np.isfinite(dsp)):
                    spacing = dsp
                    n_from_files += 1
                    from_file = True
                elif nifti_mask:
                    pass  # the mask's NIfTI header gives it (below)
                elif req.spacing is not None:
                    n_mm_fallback += 1
                elif key not in dicom.images:
                    why = "the DICOM file has no pixel spacing (pass --spacing to give one)"
                # else a PNG or JPEG image without --spacing: measured in pixels (below)
        header = bool(nifti_mask and not from_file)  # spacing from the NIfTI mask's header
        if not why and header:
            spacing = None
            n_from_files += 1
            n_nifti += 1
        if not why:
            cases.append(_Case(i, key, spacing, dshape, grid, header))
        reasons.append(why)
    if dicom is not None and req.spacing is None:
        cases, spacing_source = _pixel_cases(cases, reasons, n_from_files)
    elif dicom is not None and n_from_files == 0:  # no file gave one: every case in --spacing's mm
        spacing_source = "--spacing"
    if n_nifti:  # NIfTI headers gave spacing (docs/nifti.md): cases in pixels cannot join them
        if dicom is None and req.spacing is None:
            cases, _ = _pixel_cases(cases, reasons, n_from_files)
        spacing_source = "nifti" if n_nifti == n_from_files else "dicom"
    # Reading both masks and the metrics: in worker processes, in row order (_measure_all).
    sources = _Sources(
        truth_files=truth_index.files,
        pred_files=None if pred_index is None else pred_index.files,
        pred_arrays=req.pred_masks if pred_index is None else None,  # type: ignore[arg-type]
        mask_labels=req.mask_labels,
        pred_labels=pred_labels,
        nsd_tolerance=tolerance,
    )
    case_by_row = {c.row: c for c in cases}  # for the example cases drawn after the statistics
    for case, (why, bad_file, m) in zip(cases, _measure_all(sources, cases, req.workers), strict=True):
        if bad_file is not None:
            file_reason[(bad_file[0], case.key)] = bad_file[1]
        if m is not None:
            case_values.append(m.values)
            case_reasons.append(m.reasons)
            case_rows.append(case.row)
            nonempty.append(m.truth_voxels > 0)
        reasons[case.row] = why
    if n_mm_fallback:
        log.warning(
            "%d files had no pixel spacing (DICOM files without one, PNG or JPEG images): %s %s used for them",
            n_mm_fallback,
            arg("spacing"),
            req.spacing,
        )

    reason = pd.Series(reasons, index=demo.frame.index, dtype=object)
    included = reason == ""
    counts = Counter(reason[~included])
    for why, k in sorted(counts.items()):
        log.warning("excluded %d of %d rows of %s: %s", k, len(reason), demo.name, why)
    if not included.any():
        raise InputError(
            f"no case can be audited: every row was excluded "
            f"({'; '.join(f'{k} x {w}' for w, k in counts.most_common(5))}). See manifest reasons above.",
            file=demo.name,
        )
    excluded = [{"reason": f"{demo.name}: {why}", "count": int(k)} for why, k in sorted(counts.items())]
    manifest = [
        pd.DataFrame(
            {
                "source": demo.name,
                "row": demo.rows.to_numpy(),
                "id": ids.map(hasher).to_numpy(),
                "status": np.where(included, "included", "excluded"),
                "reason": reason.to_numpy(dtype=object)
                if req.missing_as_group
                else absent_notes(
                    reason.to_numpy(dtype=object),
                    included.to_numpy(),
                    {a: demo.frame[col].map(is_missing).to_numpy(dtype=bool) for a, col in attr_cols.items()},
                ),  # fmt: skip
            }
        )
    ]
    used = set(ids[included])
    known = set(ids[~ids.map(is_missing)])
    for which, index, label in (("truth", truth_index, "masks"), ("pred", pred_index, "pred_masks")):
        if index is None:
            continue
        rows = []
        for key, path in sorted(index.files.items()):
            if key in used:
                status, why = "included", ""
            elif (which, key) in file_reason:
                status, why = "excluded", file_reason[(which, key)]
            elif key not in known:
                status, why = "excluded", "no demographics row for this id"
            else:
                status, why = "excluded", "its demographics row was excluded (see that row)"
            rows.append((f"{label}/{index.rel(path)}", hasher(key), status, why))
        for rel, why in index.skipped:
            rows.append((f"{label}/{rel}", "", "excluded", why))
        frame = pd.DataFrame(rows, columns=["source", "id", "status", "reason"])
        frame.insert(1, "row", "")
        manifest.append(pseudonymize_sources(frame, hasher))  # file names can name the patient
        for why, k in Counter(r[3] for r in rows if r[2] == "excluded").items():
            if why != "its demographics row was excluded (see that row)":
                excluded.append({"reason": f"{label}: {why}", "count": int(k)})
    if dicom is not None:
        rows = [(f"DICOM files/{p}", "", "excluded", w) for p, w in dicom.unreadable]
        for key, plist in sorted(dicom.paths_by_id.items()):
            for p in plist:
                ok = key in used
                rows.append(
                    (f"DICOM files/{p}", hasher(key) if key else "", "included" if ok else "excluded",
                     "" if ok else req.model_failures.get(p, "no included case with this id"))
                )  # fmt: skip
        frame = pd.DataFrame(rows, columns=["source", "id", "status", "reason"])
        frame.insert(1, "row", "")
        manifest.append(pseudonymize_sources(frame, hasher))
        for why, k in Counter(w for _, w in dicom.unreadable).items():
            excluded.append({"reason": f"DICOM files: {why}", "count": int(k)})

    values = {m: np.array([v[m] for v in case_values], dtype=np.float64) for m in SEGMENTATION_METRICS}
    per_case_reasons = {m: [r.get(m, "") for r in case_reasons] for m in SEGMENTATION_METRICS}
    rows_idx = np.array(case_rows)
    attr_values: dict[str, pd.Series] = {}
    for a, col in attr_cols.items():
        vals = demo.frame[col].iloc[rows_idx].astype(str).reset_index(drop=True)
        vals = vals.map(cap)  # a group is named by at most NAME_LIMIT characters (docs/reports.md)
        # Missing: its own group with --missing-as-group, else out of this attribute's groups
        # only (docs/statistics.md, "Missing values").
        attr_values[a] = vals.where(~vals.map(is_missing), MISSING_GROUP if req.missing_as_group else ABSENT)
    attributes: dict[str, np.ndarray] = {a: attr_values[a].to_numpy(dtype=str) for a in req.attributes}
    for parts in req.intersections:
        attributes[intersection_name(parts)] = combine(
            [attr_values[p].to_numpy(dtype=str) for p in parts], INTERSECTION_SEP
        )
    references = resolve_references(req.references, attributes)
    log.info("auditing %d of %d cases", len(case_rows), len(demo.frame))
    clusters, cluster_missing = None, 0
    if cluster is not None:
        patient = demo.frame[cluster[1]].iloc[rows_idx].astype(str).to_numpy(dtype=object)
        absent = np.array([is_missing(v) for v in patient], dtype=bool)
        cluster_missing = int(absent.sum())
        # A case without a patient id is a patient of its own.
        patient[absent] = [f"\x00{i}" for i in range(cluster_missing)]
        clusters = np.unique(patient.astype(str), return_inverse=True)[1].ravel()

    # 3. stats
    result = run_stats(
        lambda: run_segmentation_audit(
            values,
            attributes,
            cfg,
            truth_nonempty=np.array(nonempty, bool),
            reasons=per_case_reasons,
            references=references,
            clusters=clusters,
        )  # fmt: skip
    )

    # 4. attach
    body = result.to_dict()
    _attach_examples(body, values["dice"], attributes, [case_by_row[r] for r in case_rows], sources)
    config = base_config(
        body, id_column=id_col, cluster_column=None if cluster is None else cluster[1],
        cluster_missing=cluster_missing, unit="image",
    )  # fmt: skip
    config["threshold_policy"] = None
    config["segmentation"] = {
        "mask_labels": list(req.mask_labels) if req.mask_labels else "any nonzero",
        "pred_mask_labels": list(pred_labels) if pred_labels else "any nonzero",
        "distance_unit": "pixels" if spacing_source == "none" else "mm",
        "spacing_source": spacing_source,
        "spacing": list(req.spacing) if req.spacing else None,
        "hd95": "max of the two directed 95th percentiles of surface distances (as MONAI)",
        "assd": "mean of both directions' surface distances pooled (as MONAI, symmetric)",
        "nsd": "share of both surfaces' voxels within the tolerance of the other surface "
        "(as MONAI's compute_surface_dice)",
        "nsd_tolerance": tolerance,
        "nsd_tolerance_unit": "pixels" if spacing_source == "none" else "mm",
        "group_value": "mean over the group's cases where the metric is defined (see n_defined)",
    }
    inputs = {
        "n_records": len(demo.frame),
        "n_included": int(included.sum()),
        "excluded": excluded,
        "unit": "mask",
        "masks": {
            "truth_files": len(truth_index.files),
            "pred_files": len(pred_ids),
            "other_files": len(truth_index.skipped) + (len(pred_index.skipped) if pred_index else 0),
        },
        "dicom_files": None
        if dicom is None
        else {
            "readable": sum(len(v) for v in dicom.paths_by_id.values()),
            "unreadable": len(dicom.unreadable),
        },
    }
    if dicom_records:  # `dicom:` attributes: how their groups were formed (as for classification)
        inputs["dicom_attributes"] = dicom_records
    # Formula-like cells neutralised (docs/reports.md); row numbers and metrics stay numbers.
    manifest_text = frame_to_csv(pd.concat(manifest, ignore_index=True), numeric=("row",))
    cases = pd.DataFrame({"id": ids.iloc[rows_idx].map(hasher).to_numpy()})
    for m in SEGMENTATION_METRICS:
        cases[m] = values[m]
    report = AuditReport(
        assemble(
            command=req.command, body=body, config=config, inputs=inputs, model=without_timings(req.model)
        ),
        result=result,
        manifest=manifest_text,
        companions={CASES_FILE: frame_to_csv(cases, numeric=SEGMENTATION_METRICS)},
    )
    report.attach_gate(policy)
    if req.discover:
        from fairaudit.stats._discover import discover_slices

        metric = req.discover_metric or "dice"
        if metric not in values:
            raise InputError(
                f"{arg('discover_metric')} {metric}: a segmentation audit ranks slices on one of "
                f"{', '.join(SEGMENTATION_METRICS)}.",
                argument="discover_metric",
            )
        base = {a: attributes[a] for a in dict.fromkeys(req.attributes) if a in attributes}
        report.attach(
            "discovered",
            run_stats(
                lambda: discover_slices(
                    None,
                    None,
                    base,
                    cfg,
                    metric=metric,
                    top=req.discover_top,
                    per_case=values[metric],
                    clusters=clusters,
                )  # fmt: skip
            ),
        )
    from fairaudit.report.provenance import collect_provenance
    from fairaudit.stats._power import attach_power

    attach_power(report.data)
    report.attach(
        "provenance",
        collect_provenance(manifest_text, {"demographics": req.demographics, "gate_policy": req.gate}),
    )
    return report


def _dicom_groups(
    req: SegmentationRequest,
    demo: Any,
    id_col: str,
    dicom: _Dicom | None,
    wanted: list,
    attr_cols: dict[str, str],
) -> list[dict[str, Any]]:
    """`dicom:` attributes as demographics columns: each row's group from the header of its
    DICOM file (binned or hashed as for classification, fairaudit.io.dicom_attributes), so the
    rest of the audit treats them as any column; the records of how, for results.json."""
    if not wanted:
        return []
    from fairaudit._util.privacy import IdHasher
    from fairaudit.io import dicom_attributes as dicom_attrs

    headers = dicom.headers if dicom is not None else {}
    keys = demo.frame[id_col].astype(str)
    records = []
    for a in wanted:
        raw = keys.map(lambda k, kw=a.keyword: (headers.get(k) or {}).get(kw, ""))
        # Hashes, never clear text, whatever --keep-ids says (as for classification).
        groups, record = dicom_attrs.derive_groups(a, raw, req.bins.get(a.name), IdHasher(req.salt))
        demo.frame[a.name] = groups.astype(str)
        attr_cols[a.name] = a.name
        records.append(record)
    return records


def _match_pred_index(req: SegmentationRequest, pred_index: Any, demo: Any, id_col: str, truth: Any) -> Any:
    """The predicted-mask folder's files keyed by demographics id: by file name, or through
    a model run's pred_masks/index.csv (fairaudit.workflows.mask_index); index.csv itself is
    no mask. Files no id claims keep their own name (manifest: no demographics row)."""
    from dataclasses import replace

    from fairaudit.io.tables import is_missing
    from fairaudit.workflows.mask_index import INDEX_FILE, match_pred_masks, read_mask_index

    ids = [str(k) for k in demo.frame[id_col] if not is_missing(k)]
    folder = Path(req.pred_masks)  # type: ignore[arg-type]
    matched = match_pred_masks(
        folder, pred_index.files, ids, [k for k in ids if k in truth], salt=req.salt, id_column=id_col,
        table=demo.name,
    )  # fmt: skip
    if read_mask_index(folder) is None:
        return pred_index
    claimed = {p.name for p in matched.values()}
    rest = {k: f for k, f in pred_index.files.items() if f.name not in claimed}
    skipped = [(rel, why) for rel, why in pred_index.skipped if rel != INDEX_FILE]
    return replace(pred_index, files={**rest, **matched}, skipped=skipped)


# ----------------------------------------------------------------------------- per-case metrics
# Reading two masks and measuring them is the audit's per-case cost (tens of ms for a
# 1024 x 1024 lung), so cases go to forked worker processes as fairaudit.io.dicom._parallel
# reads DICOM files: small chunks, a few per worker in flight (memory stays flat), results
# back in row order, serial with one worker or without fork. Workers get the mask sources
# by inheritance (fork), not through the task pipe: a model run's in-memory predictions
# are never pickled.

_CASES_PER_TASK = 8
_TASKS_PER_WORKER = 4


@dataclass(frozen=True)
class _Case:
    """A row whose masks are to be read and compared, with the spacing and the DICOM
    image's shape (rows, cols) found for it."""

    row: int
    key: str
    spacing: tuple[float, ...] | None
    dshape: tuple[int, int] | None
    grid: Any = None  # fairaudit.io.nifti.Grid of a NIfTI image: the masks must share it
    header_spacing: bool = False  # spacing from the ground-truth NIfTI mask's header


@dataclass(frozen=True)
class _Sources:
    """Where the masks of an id are: files (truth, pred) or, for predictions, arrays."""

    truth_files: Mapping[str, Path]
    pred_files: Mapping[str, Path] | None
    pred_arrays: Mapping[str, np.ndarray] | None
    mask_labels: tuple[int, ...] | None
    pred_labels: tuple[int, ...] | None
    nsd_tolerance: float = 1.0


# (exclusion reason or "", (which file, its manifest reason) or None, metrics or None)
_Measured = tuple[str, "tuple[str, str] | None", "CaseMetrics | None"]

_SOURCES: _Sources | None = None  # set in the parent before the workers fork


#: The reason of a PNG or JPEG case left out because other cases are measured in mm.
PIXELS_AMONG_MM = (
    "a PNG or JPEG image has no pixel spacing and the other cases are measured in mm "
    "(pass --spacing to give one)"
)


def _pixel_cases(cases: list[_Case], reasons: list[str], n_from_files: int) -> tuple[list[_Case], str]:
    """Without --spacing, a PNG or JPEG image (no spacing of its own) is measured in pixels
    (docs/images.md) when every case is; among cases in mm from their DICOM files it is
    excluded, so that hd95 and assd never mix units. Returns the cases to measure and the
    spacing_source ("dicom": distances in mm; "none": in pixels)."""
    if n_from_files == 0:
        if cases:
            log.warning("PNG or JPEG images without %s: hd95 and assd are in pixels, not mm", arg("spacing"))
        return cases, "none"
    keep = []
    for case in cases:
        if case.spacing is None and not case.header_spacing:
            reasons[case.row] = PIXELS_AMONG_MM
        else:
            keep.append(case)
    return keep, "dicom"


def _measure(src: _Sources, case: _Case) -> _Measured:
    """Read both masks of one case and measure them; a mask that cannot be used becomes
    the case's exclusion reason (and its file's manifest reason), never an error."""
    from fairaudit.io.masks import MaskReadError, foreground, read_label_volume
    from fairaudit.io.nifti import same_geometry
    from fairaudit.stats._segmentation import case_metrics

    key, spacing, dshape = case.key, case.spacing, case.dshape
    try:
        truth, tinfo = read_label_volume(src.truth_files[key])
        truth = foreground(truth, src.mask_labels)
    except MaskReadError as exc:
        return f"ground-truth mask {exc}", ("truth", str(exc)), None
    pinfo = None
    try:
        if src.pred_files is not None:
            pred, pinfo = read_label_volume(src.pred_files[key])
            pred = foreground(pred, src.pred_labels)
        else:
            pred = foreground(np.asarray(src.pred_arrays[key]), src.pred_labels)  # type: ignore[index]
    except MaskReadError as exc:
        return f"predicted mask {exc}", ("pred", str(exc)), None
    if case.header_spacing and tinfo is not None:
        spacing = tinfo.spacing  # the NIfTI header's zooms, per canonical axis (docs/nifti.md)
    why = ""
    # NIfTI files carry their grid: masks and image must share shape and affine (docs/nifti.md).
    grid_why = same_geometry(tinfo, pinfo) if tinfo is not None and pinfo is not None else ""
    if grid_why:
        why = f"ground-truth and predicted NIfTI masks do not match: {grid_why}"
    elif case.grid is not None and tinfo is not None and (grid_why := same_geometry(case.grid, tinfo)):
        why = f"the ground-truth NIfTI mask does not match its image volume: {grid_why}"
    elif case.grid is not None and tuple(truth.shape) != tuple(case.grid.shape):
        why = f"mask shape {truth.shape} does not match the NIfTI image {tuple(case.grid.shape)}"
    elif truth.shape != pred.shape:
        why = f"mask shapes differ: ground truth {truth.shape}, prediction {pred.shape}"
    elif dshape is not None and tuple(truth.shape[-2:]) != dshape:
        why = f"mask shape {truth.shape} does not match the DICOM image ({dshape[0]} x {dshape[1]})"
    elif spacing is not None and len(spacing) != truth.ndim:
        why = (
            f"spacing {spacing} has {len(spacing)} values but the mask is {truth.ndim}-D "
            f"(pass --spacing with {truth.ndim} values)"
        )
    if why:
        return why, None, None
    return "", None, case_metrics(truth, pred, spacing, src.nsd_tolerance)


def _read_pair(src: _Sources, case: _Case) -> tuple[np.ndarray, np.ndarray, Any] | None:
    """Both masks of a case `_measure` measured, read again (for its example image), with
    the spacing it used; None when a file has changed and cannot be read."""
    from fairaudit.io.masks import MaskReadError, foreground, read_label_volume

    try:
        truth, tinfo = read_label_volume(src.truth_files[case.key])
        if src.pred_files is not None:
            pred = foreground(read_label_volume(src.pred_files[case.key])[0], src.pred_labels)
        else:
            pred = foreground(np.asarray(src.pred_arrays[case.key]), src.pred_labels)  # type: ignore[index]
    except (MaskReadError, OSError):
        return None
    spacing = tinfo.spacing if case.header_spacing and tinfo is not None else case.spacing
    truth = foreground(truth, src.mask_labels)
    return (truth, pred, spacing) if truth.shape == pred.shape else None


def _attach_examples(
    body: dict[str, Any],
    dice: np.ndarray,
    attributes: Mapping[str, np.ndarray],
    cases: list[_Case],
    src: _Sources,
) -> None:
    """attributes[].segmentation_examples: each group's median-Dice case drawn as contours
    (fairaudit.workflows.segmentation_examples); two masks read again per group."""
    from fairaudit.workflows.segmentation_examples import group_examples

    examples = group_examples(dice, attributes, lambda i: _read_pair(src, cases[i]))
    for attribute in body.get("attributes") or []:
        attribute["segmentation_examples"] = examples.get(attribute.get("name"), [])


def _measure_chunk(cases: list[_Case]) -> list[_Measured]:
    """Worker side: the cases of one task, with the sources inherited from the parent."""
    assert _SOURCES is not None, "worker started without mask sources"
    return [_measure(_SOURCES, c) for c in cases]


def _measure_all(src: _Sources, cases: list[_Case], workers: int | None) -> Iterator[_Measured]:
    """`_measure` of every case, in order: in forked workers when there are several
    workers and more than one task's worth of cases, else in this process. A worker that
    dies (out of memory) leaves the cases not yet returned to this process."""
    import multiprocessing
    from collections import deque
    from concurrent.futures.process import BrokenProcessPool

    from fairaudit._util.batching import batched
    from fairaudit.io.dicom._parallel import _Pool, workers_default

    global _SOURCES
    n = workers_default() if workers is None else max(1, int(workers))
    n = min(n, -(-len(cases) // _CASES_PER_TASK))
    if n < 2 or "fork" not in multiprocessing.get_all_start_methods():
        for case in cases:
            yield _measure(src, case)
        return
    done = 0  # cases yielded so far
    _SOURCES = src
    pool = _Pool(n)  # forks now: the workers see _SOURCES
    log.debug("measuring %d cases in %d processes", len(cases), n)
    try:
        chunks = batched(cases, _CASES_PER_TASK)
        pending: deque = deque()
        while True:
            while len(pending) < _TASKS_PER_WORKER * n:
                chunk = next(chunks, None)
                if chunk is None:
                    break
                pending.append(pool.executor.submit(_measure_chunk, chunk))
            if not pending:
                return
            results = pending.popleft().result()
            done += len(results)
            yield from results
    except BrokenProcessPool:
        log.warning(
            "a worker process died while measuring masks (out of memory?): the other %d cases "
            "are measured in this process",
            len(cases) - done,
        )
        pool.close()
        for case in cases[done:]:
            yield _measure(src, case)
    finally:
        pool.close()
        _SOURCES = None


def request_from_audit(
    req: Any,
    *,
    masks: Path | None,
    pred_masks: Path | Mapping[str, np.ndarray] | None,
    mask_labels: str | tuple[int, ...] | None = None,
    pred_mask_labels: str | tuple[int, ...] | None = None,
    spacing: str | tuple[float, ...] | None = None,
    model: dict[str, Any] | None = None,
    model_failures: Mapping[str, str] | None = None,
) -> SegmentationRequest:
    """A SegmentationRequest from the `audit` command's AuditRequest plus the mask options.

    The CLI (and a model run that wrote its masks to a folder or holds them in memory)
    builds one AuditRequest from the flags and hands the segmentation part here.
    """
    from fairaudit.io.masks import parse_labels, parse_spacing
    from fairaudit.workflows.audit import check_audit

    check_audit(req, task="segmentation", masks=masks, pred_masks=pred_masks)
    return SegmentationRequest(
        masks=Path(masks),
        pred_masks=pred_masks if isinstance(pred_masks, Mapping) else Path(pred_masks),
        attributes=list(req.attributes),
        out=None if req.out is None else Path(req.out),
        demographics=req.demographics,
        dicom_dir=req.dicom_dir,
        id_column=req.id_column,
        cluster_column=getattr(req, "cluster_column", None),
        max_groups=getattr(req, "max_groups", SegmentationRequest.max_groups),
        intersections=list(req.intersections),
        references=dict(req.references),
        missing_as_group=req.missing_as_group,
        mask_labels=mask_labels if not isinstance(mask_labels, str) else parse_labels(mask_labels),
        pred_mask_labels=pred_mask_labels
        if not isinstance(pred_mask_labels, str)
        else parse_labels(pred_mask_labels, "pred_mask_labels"),
        spacing=spacing if not isinstance(spacing, str) else parse_spacing(spacing),
        structures=getattr(req, "structures", None),
        nsd_tolerance_mm=float(getattr(req, "nsd_tolerance_mm", SegmentationRequest.nsd_tolerance_mm)),
        max_pixels=getattr(req, "max_pixels", None),
        max_file_size=getattr(req, "max_file_size", None),
        bins=dict(getattr(req, "bins", None) or {}),
        bootstrap=req.bootstrap,
        ci_level=req.ci_level,
        ci_method=req.ci_method,
        correction=req.correction,
        primary_metrics=getattr(req, "primary_metrics", None),
        min_group_size=req.min_group_size,
        seed=req.seed,
        workers=req.workers,
        gate=req.gate,
        formats=tuple(req.formats),
        keep_ids=req.keep_ids,
        salt=req.salt,
        command=req.command,
        progress=req.progress,
        model=model,
        model_failures=dict(model_failures or {}),
        discover=bool(getattr(req, "discover", False)),
        discover_metric=getattr(req, "discover_metric", None),
        discover_top=int(getattr(req, "discover_top", 10)),
        outputs=getattr(req, "outputs", None),
        review=getattr(req, "review", None),
    )
