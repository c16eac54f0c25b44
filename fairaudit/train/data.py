"""Training data: DICOM images (decoded in worker processes) joined with demographics and
labels or masks through fairaudit.io, already preprocessed to the network grid.

Every DICOM file, demographics row and mask file ends up in the manifest with its status
(included / excluded) and reason, as in an audit.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fairaudit.errors import InputError, arg
from fairaudit.io.tables import (
    DICOM_ID_TAGS,
    ID_CANDIDATES,
    Table,
    detect_id_column,
    is_missing,
    parse_binary,
    read_table,
)
from fairaudit.models.preprocessing import prepare_image, prepare_mask

log = logging.getLogger(__name__)

LABEL_COLUMN_CANDIDATES = ("label", "finding", "target", "y")


@dataclass
class TrainingData:
    """Preprocessed cases: images (N, C, H, W); targets (N,) 0/1, (N, K) 0/1/NaN (one column
    per finding of a multi-label classifier, `classes`; NaN: uncertain or not mentioned, left
    out of that finding's loss) or (N, H, W) labels."""

    images: np.ndarray
    targets: np.ndarray
    attributes: dict[str, np.ndarray]  # attribute -> group per case (str)
    patients: np.ndarray  # grouping key for the split (str)
    ids: list[str]
    manifest: list[dict[str, Any]] = field(default_factory=list)
    id_column: str = ""
    patient_column: str = ""
    classes: list[str] = field(default_factory=list)  # a multi-label classifier's findings

    @property
    def n(self) -> int:
        return len(self.ids)


def _label_column(table: Table, requested: str | None, id_col: str) -> str:
    if requested is not None:
        return table.column(requested, argument="label_column")
    for cand in LABEL_COLUMN_CANDIDATES:
        if table.has(cand):
            return table.column(cand)
    others = [c for c in table.frame.columns if c.lower() != id_col.lower()]
    if len(others) == 1:
        return others[0]
    raise InputError(
        f"cannot tell which column holds the label (columns: {', '.join(table.frame.columns)}).",
        file=str(table.path),
        hint=f"Pass {arg('label_column')} NAME.",
        argument="label_column",
    )


def _index(table: Table, id_col: str) -> dict[str, int]:
    col = table.column(id_col)
    out: dict[str, int] = {}
    for i, (value, row) in enumerate(zip(table.frame[col], table.rows, strict=True)):
        if is_missing(value):
            continue
        if value in out:
            raise InputError(
                f"duplicate id '{value}' (also in row {int(table.rows.iloc[out[value]])}).",
                file=str(table.path),
                column=col,
                row=int(row),
            )
        out[value] = i
    return out


def load_training_data(
    dicom_dir: Path,
    *,
    task: str,
    demographics: Path,
    attributes: list[str],
    spec: dict[str, Any],
    labels: Path | None = None,
    masks: Path | None = None,
    mask_labels: tuple[int, ...] | None = None,
    id_column: str | None = None,
    label_column: str | None = None,
    findings: tuple[str, ...] | None = None,
    patient_column: str | None = None,
    workers: int | None = None,
    progress: bool = True,
    max_pixels: int | None = None,
    max_file_size: int | None = None,
) -> TrainingData:
    """Decode, join and preprocess. Classification needs `labels`; segmentation `masks`
    (foreground = any nonzero value, or the values in `mask_labels`). `max_pixels` and
    `max_file_size` (--max-pixels, --max-file-size) bound what one DICOM file may cost, as
    in an audit (None: the reader's defaults); a file over them is excluded in the manifest.
    `findings` (("all",) or names, as `--findings` of an audit): a multi-label classifier,
    one target per finding column of `labels`; -1 (uncertain) and blank leave a case out of
    that finding's loss only (CheXpert's U-Ignore)."""
    from fairaudit.io.dicom import iter_outcomes, limited_options

    options = limited_options(max_pixels, max_file_size, frames="middle")  # checked before any read
    dicom_dir = Path(dicom_dir)
    if not dicom_dir.is_dir():
        raise InputError(
            "is not a folder.", file=str(dicom_dir), hint="Pass the folder that holds the DICOM files."
        )
    if task not in ("classification", "segmentation"):
        raise InputError(
            f"{arg('task')} must be classification or segmentation, not '{task}'.", argument="task"
        )
    if task == "classification" and labels is None:
        raise InputError(
            f"{arg('task')} classification needs {arg('labels')} labels.csv (one 0/1 label per image).",
            argument="labels",
        )
    if task == "segmentation" and masks is None:
        raise InputError(
            f"{arg('task')} segmentation needs {arg('masks')} MASK_DIR (<id>.png label images).",
            argument="masks",
        )
    if not attributes:
        raise InputError(
            f"pass at least one {arg('attributes')} (the demographic column to stratify and report by).",
            argument="attributes",
        )

    demo = read_table(demographics)
    tables = [demo]
    lab = None
    if labels is not None:
        lab = read_table(labels)
        tables.append(lab)
    id_col = detect_id_column(tables, id_column, ID_CANDIDATES)
    if id_col is None:
        raise InputError(
            "no id column found.",
            file=str(demographics),
            hint=f"Pass {arg('id_column')} NAME.",
            argument="id_column",
        )
    attr_cols = [demo.column(a, argument="attributes") for a in attributes]
    if patient_column is not None:
        pat_col = demo.column(patient_column, argument="patient_column")
    elif demo.has("patient_id"):
        pat_col = demo.column("patient_id")
    else:
        pat_col = demo.column(id_col)
    demo_index = _index(demo, id_col)
    label_values = None
    lab_index: dict[str, int] = {}
    classes: list[str] = []
    if lab is not None and findings:
        classes = _finding_columns(lab, findings, id_col)
        label_values = np.column_stack(
            [parse_binary(lab, c, "label", uncertain=True).to_numpy() for c in classes]
        )
        label_values[label_values == -1.0] = np.nan  # U-Ignore
        lab_index = _index(lab, id_col)
    elif lab is not None:
        lcol = _label_column(lab, label_column, id_col)
        label_values = parse_binary(lab, lcol, "label").to_numpy()
        lab_index = _index(lab, id_col)

    mask_index = None
    if masks is not None:
        from fairaudit.io.masks import index_masks

        mask_index = index_masks(masks)

    manifest: list[dict[str, Any]] = []
    images: list[np.ndarray] = []
    targets: list[np.ndarray | float] = []
    ids: list[str] = []
    rows: list[int] = []
    used: set[str] = set()

    def exclude(source: str, ident: str, reason: str) -> None:
        manifest.append({"source": source, "id": ident, "status": "excluded", "reason": reason})

    for outcome in iter_outcomes(
        dicom_dir, header_only=False, options=options, workers=workers, progress=progress
    ):
        if outcome.status != "ok" or outcome.image is None:
            exclude("dicom", outcome.path, outcome.reason or outcome.status)
            continue
        if outcome.image.ndim != 2:
            exclude("dicom", outcome.path, f"image of shape {outcome.image.shape} is not 2-D")
            continue
        if id_col.lower() == "path":
            key = outcome.path
        else:
            tag = DICOM_ID_TAGS.get(id_col.lower())
            key = str((outcome.header or {}).get(tag, "")) if tag else ""
        if not key:
            exclude("dicom", outcome.path, f"no {id_col} to join on")
            continue
        if key in used:
            exclude("dicom", outcome.path, f"duplicate {id_col}")  # never the id: reasons are in clear
            continue
        if key not in demo_index:
            exclude("dicom", key, "no demographics row")
            continue
        drow = demo_index[key]
        groups = [demo.frame[c].iloc[drow] for c in attr_cols]
        if any(is_missing(g) for g in groups):
            exclude("dicom", key, "missing attribute value")
            continue
        spacing = tuple(outcome.spacing[-2:]) if outcome.spacing else None
        if task == "classification":
            if key not in lab_index or np.isnan(label_values[lab_index[key]]).all():
                exclude("dicom", key, "no label")
                continue
            target: np.ndarray | float = (
                label_values[lab_index[key]].copy() if classes else float(label_values[lab_index[key]])
            )
        else:
            from fairaudit.io.masks import MaskReadError, foreground, read_label_image

            path = mask_index.files.get(key)
            if path is None:
                exclude("dicom", key, "no mask file")
                continue
            try:
                stored = read_label_image(path)
            except MaskReadError as exc:
                exclude("mask", mask_index.rel(path), str(exc))
                continue
            if stored.shape != outcome.image.shape:
                exclude(
                    "mask",
                    mask_index.rel(path),
                    f"mask shape {stored.shape} != image shape {outcome.image.shape}",
                )
                continue
            target = prepare_mask(foreground(stored, mask_labels).astype(np.int64), spacing, spec)
        images.append(prepare_image(outcome.image, spacing, spec))
        targets.append(target)
        ids.append(key)
        rows.append(drow)
        used.add(key)
        manifest.append({"source": "dicom", "id": key, "status": "included", "reason": ""})
    for key in demo_index:
        if key not in used:
            manifest.append(
                {"source": "demographics", "id": key, "status": "excluded", "reason": "no usable image"}
            )
    if mask_index is not None:
        for rel, reason in mask_index.skipped:
            exclude("mask", rel, reason)
    if not ids:
        reasons = Counter(m["reason"] for m in manifest if m["status"] == "excluded").most_common(3)
        raise InputError(
            f"no usable training case (most common reasons: {reasons}).",
            file=str(dicom_dir),
            hint=f"Check that the ids in the CSV files match the DICOM files (or pass {arg('id_column')}).",
        )
    attr_values = {
        a: np.array([demo.frame[c].iloc[r] for r in rows], dtype=str)
        for a, c in zip(attributes, attr_cols, strict=True)
    }
    return TrainingData(
        images=np.stack(images).astype(np.float32),
        targets=np.stack([np.asarray(t) for t in targets]),
        attributes=attr_values,
        patients=np.array([demo.frame[pat_col].iloc[r] for r in rows], dtype=str),
        ids=ids,
        manifest=manifest,
        id_column=id_col,
        patient_column=pat_col,
        classes=classes,
    )


def _finding_columns(lab: Table, findings: tuple[str, ...], id_col: str) -> list[str]:
    """The finding columns of the labels file (`findings`: ("all",) or names)."""
    from fairaudit.cohort.findings import ALL, finding_candidates

    if findings == (ALL,):
        return finding_candidates(lab, {id_col, "patient_id"})
    return [lab.column(f, argument="findings") for f in findings]
