"""The DICOM side of the cohort join: one row per readable file (or series) from its header.

Files are scanned by content with headers only (no pixel decoding), in parallel. Every
file appears in the manifest: readable ones through the join, the others here with the
reader's reason. Join keys come from the DICOM tags SOPInstanceUID, StudyInstanceUID,
SeriesInstanceUID, PatientID, and the path relative to DICOM_DIR, which an id matches with
or without the file's extension (PathIds): PNG and JPEG files have only that one
(docs/images.md).
"""

from __future__ import annotations

import logging
import posixpath
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from fairaudit.errors import InputError, arg
from fairaudit.io.tables import DICOM_ID_TAGS, ID_CANDIDATES, Table

log = logging.getLogger(__name__)

FILES_LABEL = "DICOM files"
SERIES_CANDIDATES: tuple[str, ...] = ("series_instance_uid", "study_instance_uid", "patient_id", "path")


#: The column of a files table holding each file's path as the CSVs name it (PathIds).
PATH_ID = "path_id"
#: The extensions whose presence in most of a CSV's path ids says it writes paths with them.
FILE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".nii", ".nii.gz")


def is_path_id(id_column: str | None) -> bool:
    """Whether the join key names files by their path: `path`, or any column that is not a
    DICOM id (ChestX-ray14's `Image Index` holds file names: docs/images.md)."""
    return id_column is not None and id_column.lower() not in DICOM_ID_TAGS


def _without_extension(path: str) -> str:
    """`path` without its extension; both parts of a NIfTI `.nii.gz` (docs/nifti.md)."""
    from fairaudit.io.nifti import strip_suffix

    return strip_suffix(path) or posixpath.splitext(path)[0]


class PathIds:
    """Which form of a file's path (relative to the folder) the CSVs use as its id: the path
    itself when they have it, else the path without its extension (`images/0001.png` is
    matched by `images/0001.png` or by `images/0001`), else the path (no match).

    The CSVs' ids are kept as 16-byte digests (fairaudit.cohort.keys), not strings."""

    def __init__(self, known: np.ndarray) -> None:
        self._known = np.unique(_keys(known)) if len(known) else np.empty(0, dtype=_KEY)

    @classmethod
    def from_tables(cls, tables: list[Table], id_column: str) -> PathIds:
        """The ids of `id_column` in every table that has it, read a chunk at a time.

        Each file gets one id, so the tables must write paths alike: InputError when one
        writes them with an image or DICOM extension and another without."""
        from fairaudit.cohort.keys import digest

        parts = [np.empty((0, 2), dtype=np.uint64)]
        forms: dict[str, bool] = {}  # table name -> whether most of its ids have an extension
        for table in tables:
            if not table.has(id_column):
                continue
            name = table.column(id_column)
            n = with_ext = 0
            for frame, _ in table.chunks([name]):
                ids = frame[name].astype(str)
                parts.append(digest(ids))
                n += int((ids != "").sum())
                with_ext += int(ids.str.lower().str.endswith(FILE_EXTENSIONS).sum())
            if n:
                forms[table.name] = with_ext * 2 > n
        if len(set(forms.values())) > 1:
            has = [t for t, f in forms.items() if f]
            lacks = [t for t, f in forms.items() if not f]
            raise InputError(
                f"the files are named by their path in '{id_column}', with the extension in "
                f"{', '.join(has)} (e.g. 0001.png) and without it in {', '.join(lacks)} (e.g. 0001): "
                "each file gets one id, so write the paths alike in every file.",
                file=lacks[0],
                column=id_column,
            )
        return cls(np.concatenate(parts))

    def _has(self, texts: list[str]) -> np.ndarray:
        from fairaudit.cohort.keys import digest

        if not len(self._known) or not texts:
            return np.zeros(len(texts), dtype=bool)
        keys = _keys(digest(pd.Series(texts, dtype=object)))
        at = np.minimum(np.searchsorted(self._known, keys), len(self._known) - 1)
        return self._known[at] == keys

    def __call__(self, paths: list[str]) -> list[str]:
        """Each path as the CSVs name it (see the class doc)."""
        paths = [str(p) for p in paths]
        stems = [_without_extension(p) for p in paths]
        full, short = self._has(paths), self._has(stems)
        return [s if (h2 and not h1) else p for p, s, h1, h2 in zip(paths, stems, full, short, strict=True)]


def refuse_empty_dicom_attributes(columns: dict[str, list[str] | pd.Series], folder: Path | str) -> None:
    """A `dicom:` attribute that no file of the folder has would form no group: exit 2 naming
    it. PNG and JPEG files have no DICOM header (docs/images.md): in a folder that also holds
    DICOM files they only leave that attribute's groups, as any record missing it."""
    for name, values in columns.items():
        if name.startswith("dicom:") and not any(str(v).strip() for v in values):
            raise InputError(
                f"{arg('attributes')} {name}: no file of the folder has this DICOM attribute (PNG and "
                "JPEG files have no DICOM header), so it forms no group; audit by a column of the "
                "demographics instead.",
                file=str(folder),
                argument="attributes",
            )


def attach_path_ids(files: Table, id_column: str | None, inputs: list[Path | Table | None]) -> str | None:
    """Where the join key names files by their path (is_path_id), give the files table the
    column PATH_ID (each file's path as the CSVs `inputs` name it: with or without its
    extension) and make the key name it (`files.aliases`); the manifest keeps the real path.
    Returns the key's name, None when it is a DICOM id or cannot be told yet (the join
    then says why). `id_column` None: the first of ID_CANDIDATES that every input has."""
    from fairaudit.io.tables import detect_id_column, read_header

    if id_column is not None and "=" in id_column:  # ROLE=COLUMN pairs: the join aliases them
        return None
    tables = [t if isinstance(t, Table) else read_header(t) for t in inputs if t is not None]
    found = detect_id_column(tables, None) if id_column is None else id_column
    if not is_path_id(found) or "path" not in files.frame.columns:
        return None
    assert found is not None
    files.frame[PATH_ID] = PathIds.from_tables(tables, found)(files.frame["path"].tolist())
    files.aliases[found] = PATH_ID
    return found


_KEY = np.dtype((np.void, 16))


def _keys(digests: np.ndarray) -> np.ndarray:
    """(n, 2) uint64 digests as n sortable 16-byte keys."""
    return np.ascontiguousarray(digests, dtype=np.uint64).view(_KEY).ravel()


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
    refuse_empty_dicom_attributes({c: frame[c] for c in frame.columns}, root)
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
