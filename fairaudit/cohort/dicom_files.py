"""The DICOM side of the cohort join: one row per readable file (or series) from its header.

Files are scanned by content with headers only (no pixel decoding), in parallel. Every
file appears in the manifest: readable ones through the join, the others here with the
reader's reason. Join keys come from the DICOM tags SOPInstanceUID, StudyInstanceUID,
SeriesInstanceUID, PatientID, and the path relative to DICOM_DIR.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pandas as pd

from fairaudit.errors import InputError, arg
from fairaudit.io.tables import DICOM_ID_TAGS, ID_CANDIDATES, Table

log = logging.getLogger(__name__)

FILES_LABEL = "DICOM files"
SERIES_CANDIDATES: tuple[str, ...] = ("series_instance_uid", "study_instance_uid", "patient_id", "path")


def id_candidates(unit: str) -> tuple[str, ...]:
    """Join keys auto-detect tries, in order, for the unit of analysis."""
    if unit == "series":
        return SERIES_CANDIDATES
    return ID_CANDIDATES


def scan_dicom_table(
    root: Path,
    *,
    unit: str = "image",
    workers: int | None = None,
    progress: bool = True,
    keywords: tuple[str, ...] = (),
    max_pixels: int | None = None,
    max_file_size: int | None = None,
) -> tuple[Table, pd.DataFrame]:
    """(join table of readable files or series, manifest rows of unreadable files).

    `keywords` (vetted by fairaudit.io.dicom_attributes) become raw text columns "dicom:KEYWORD".
    `max_pixels` (default: DecodeOptions') refuses, from the header, files declaring more pixels;
    `max_file_size` (default: DecodeOptions'), from their size, files larger than that."""
    from fairaudit.io.dicom import HEADER_FIELDS, iter_outcomes, limited_options
    from fairaudit.io.dicom_attributes import PREFIX, header_text

    extra = tuple(k for k in keywords if k not in HEADER_FIELDS)
    options = limited_options(max_pixels, max_file_size, extra_header=extra)

    root = Path(root)
    if not root.is_dir():
        raise InputError(
            "is not a folder.", file=str(root), hint="Pass the folder that holds the DICOM files."
        )
    if unit not in ("image", "series"):
        raise InputError(f"{arg('unit')} must be image or series, not '{unit}'.", argument="unit")
    rows: list[dict[str, str]] = []
    bad: list[dict[str, str]] = []
    for o in iter_outcomes(root, header_only=True, workers=workers, progress=progress, options=options):
        if o.status != "ok" or o.header is None:
            bad.append(
                {
                    "source": f"{FILES_LABEL}/{o.path}",
                    "row": "",
                    "id": "",
                    "status": "excluded",
                    "reason": f"{o.status}: {o.reason}" if o.reason else o.status,
                }
            )
            continue
        row = {"path": o.path}
        for col, tag in DICOM_ID_TAGS.items():
            value = o.header.get(tag)
            row[col] = "" if value is None else str(value).strip()
        for kw in keywords:
            row[PREFIX + kw] = header_text(o.header.get(kw))
        rows.append(row)
    if bad:
        counts = Counter(b["reason"] for b in bad)
        log.warning(
            "%d of %d files in %s could not be used (see manifest.csv): %s",
            len(bad),
            len(bad) + len(rows),
            root.name,
            "; ".join(f"{k} x {v}" for v, k in counts.most_common(5)),
        )
    if not rows:
        raise InputError(
            f"no readable DICOM file ({len(bad)} files looked at).", file=str(root), hint="Check the folder."
        )
    frame = pd.DataFrame(rows, dtype=str)
    if unit == "series":
        frame = _series_rows(frame)
    table = Table(
        path=root, frame=frame, rows=pd.Series(range(1, len(frame) + 1), index=frame.index), label=FILES_LABEL
    )
    return table, pd.DataFrame(bad, columns=["source", "row", "id", "status", "reason"])


def _series_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per SeriesInstanceUID (its first file's path stands for the series)."""
    missing = frame["series_instance_uid"] == ""
    frame = frame.assign(series_instance_uid=frame["series_instance_uid"].where(~missing, "(no series uid)"))
    grouped = frame.sort_values("path").groupby("series_instance_uid", sort=True, as_index=False)
    out = grouped.agg(
        path=("path", "first"),
        study_instance_uid=("study_instance_uid", "first"),
        patient_id=("patient_id", "first"),
        n_files=("path", "size"),
        **{c: (c, "first") for c in frame.columns if c.startswith("dicom:")},
    )
    out["sop_instance_uid"] = ""
    out["n_files"] = out["n_files"].astype(str)
    return out
