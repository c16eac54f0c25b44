"""Images of a DICOM folder joined with a demographics CSV, for normalize and augment-check.

The join key is --id-column, else the first of sop_instance_uid, study_instance_uid,
patient_id, path that the CSV has (matched against the DICOM tags SOPInstanceUID,
StudyInstanceUID, PatientID or the path relative to DICOM_DIR), as in `fairaudit audit`.
Every file and every CSV row ends in the manifest with a status and a reason; ids are
pseudonymized by IdHasher unless --keep-ids.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pandas as pd

from fairaudit._util.privacy import IdHasher
from fairaudit._util.sanitize import frame_to_csv
from fairaudit.errors import InputError, arg
from fairaudit.io.tables import DICOM_ID_TAGS, ID_CANDIDATES, Table, is_missing, read_table

if TYPE_CHECKING:
    from fairaudit.io.dicom import DecodeOptions

FILES_LABEL = "DICOM files"
#: The longest file stem of a per-image output (--keep-ids names it after the path): with
#: ".npy" and a temporary name's prefix and suffix, far below NAME_MAX (255 bytes).
STEM_MAX = 100
MANIFEST_COLUMNS = ("source", "row", "id", "status", "reason", "output")
MISSING_GROUP = "(missing)"


@dataclass(kw_only=True)
class CohortRequest:
    """The options normalize and augment-check share: statistics, decoding, privacy, reports."""

    bootstrap: int = 1000
    ci_level: float = 0.95
    correction: str = "holm"
    min_group_size: int = 30
    seed: int = 0
    workers: int | None = None
    keep_ids: bool = False
    salt: str | None = None
    formats: tuple[str, ...] = ("html", "md", "json")
    progress: bool = False
    command: str = ""
    max_pixels: int | None = None  # --max-pixels: refuse DICOM files declaring more (None: reader default)
    max_file_size: int | None = None  # --max-file-size: refuse larger DICOM files (None: reader default)

    def decode_options(self) -> DecodeOptions:
        """The reader's options with this run's --max-pixels and --max-file-size: the same
        limits as audit's (fairaudit.io.dicom.limited_options; docs/dicom.md)."""
        from fairaudit.io.dicom import limited_options

        return limited_options(self.max_pixels, self.max_file_size)


@dataclass
class CohortOutcome:
    """What a run returns: its results (the JSON's content) and the files it wrote, by kind."""

    results: dict[str, Any]
    files: dict[str, Path]


def outcome_id(outcome: Any, id_column: str | None) -> str:
    """The join key of one decoded file (its relative path when there is no CSV)."""
    if id_column is None or id_column.lower() == "path":
        return str(outcome.path)
    tag = DICOM_ID_TAGS.get(id_column.lower())
    if tag is None or outcome.header is None:
        return ""
    value = outcome.header.get(tag)
    return "" if value is None else str(value).strip()


@dataclass
class Demographics:
    """A demographics CSV indexed by its join key."""

    table: Table
    id_column: str
    attributes: list[str]  # actual column names
    extra: dict[str, str]  # requested name -> actual column (e.g. site)
    by_id: dict[str, int]
    duplicates: set[str]
    used: set[str] = field(default_factory=set)

    @staticmethod
    def read(
        path: Path, attributes: list[str], id_column: str | None, extra: list[str] | None = None
    ) -> Demographics:
        table = read_table(path)
        if id_column is not None:
            col = table.column(id_column, argument="id_column")
        else:
            found = [c for c in ID_CANDIDATES if table.has(c)]
            if not found:
                raise InputError(
                    f"no id column (tried {', '.join(ID_CANDIDATES)}).",
                    file=str(path),
                    hint=f"Pass {arg('id_column')} naming the column that holds SOPInstanceUID (or the path).",
                    argument="id_column",
                )
            col = table.column(found[0])
        if col.lower() not in (*DICOM_ID_TAGS, "path"):
            raise InputError(
                f"{arg('id_column')} '{col}' cannot be matched with the DICOM files: use one of "
                f"{', '.join((*DICOM_ID_TAGS, 'path'))} (named so in the CSV).",
                file=str(path),
                argument="id_column",
            )
        # An identifier as an attribute would put every id in the reports (fairaudit.cohort.identifiers).
        from fairaudit.cohort.identifiers import refuse_identifier_attributes

        refuse_identifier_attributes(attributes, id_column=col, cluster_columns=("patient_id",))
        attrs = [table.column(a, argument="attributes") for a in attributes]
        ex = {e: table.column(e, argument="site_column") for e in (extra or [])}
        ids = table.frame[col]
        counts = Counter(ids)
        dupes = {i for i, k in counts.items() if k > 1 or i == ""}
        by_id = {i: k for k, i in enumerate(ids) if i not in dupes}
        return Demographics(table, col, attrs, ex, by_id, dupes)

    def lookup(self, key: str) -> tuple[int | None, str]:
        if key in self.duplicates:
            return None, f"id appears more than once in {self.table.name}"
        k = self.by_id.get(key)
        if k is None:
            return None, f"no row in {self.table.name} for this file's {self.id_column}"
        self.used.add(key)
        return k, ""

    def value(self, k: int, column: str) -> str | None:
        v = self.table.frame.at[k, column]
        return None if is_missing(v) else str(v)

    def manifest_rows(self, hasher: IdHasher) -> list[dict[str, Any]]:
        rows = []
        name = self.table.name
        for k, key in enumerate(self.table.frame[self.id_column]):
            if key in self.used:
                status, reason = "included", ""
            elif key in self.duplicates:
                status, reason = "excluded", "duplicate or empty id"
            else:
                status, reason = "excluded", "no readable DICOM file with this id"
            rows.append(
                {
                    "source": name,
                    "row": int(self.table.rows[k]),
                    "id": hasher(key),
                    "status": status,
                    "reason": reason,
                    "output": "",
                }
            )
        return rows


def manifest_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))


def check_dicom_dir(dicom_dir: Path) -> None:
    if not Path(dicom_dir).is_dir():
        raise InputError("is not a folder.", file=str(dicom_dir), hint="Pass the folder of DICOM files.")


def file_row(outcome: Any, status: str = "", *, hasher: IdHasher) -> dict[str, Any]:
    """The manifest row of one file of DICOM_DIR; a decode failure already carries its reason.
    The path is pseudonymized by `hasher` (in clear with --keep-ids): folder and file names
    can name the patient."""
    row = {
        "source": f"{FILES_LABEL}/{hasher.path(str(outcome.path))}",
        "row": "",
        "id": "",
        "status": status,
        "reason": "",
        "output": "",
    }
    if outcome.status != "ok" or outcome.image is None:
        row["status"] = "excluded"
        row["reason"] = f"{outcome.status}: {outcome.reason}" if outcome.reason else outcome.status
    return row


def write_manifest(out: Path, rows: list[dict[str, Any]]) -> Path:
    """manifest.csv in `out` (created if missing), written atomically."""
    from fairaudit._util.atomic import atomic_write_text

    path = Path(out) / "manifest.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, frame_to_csv(manifest_frame(rows), numeric=("row",)))  # docs/reports.md
    return path


def no_usable_image(outs: Any, rows: list[dict[str, Any]], n_files: int, dicom_dir: Path) -> NoReturn:
    """Write the manifest (it holds each file's reason) and stop with a bad-input error.

    `outs`: the run's fairaudit._util.atomic.OutputSet; the manifest alone is published (no
    results JSON: the run has no result)."""
    write_manifest(outs.staging, rows)
    outs.publish(only=("manifest.csv",))
    path = outs.out / "manifest.csv"
    raise InputError(
        f"no usable image ({n_files} files looked at; see the reasons in {path}).", file=str(dicom_dir)
    )


def excluded_counts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    c = Counter(
        f"{r['source'].split('/')[0]}: {r['reason']}"
        for r in rows
        if r["status"] not in ("included", "normalized", "checked")
    )
    return [{"reason": k, "count": v} for k, v in sorted(c.items())]


def safe_name(rel_path: str, hasher: IdHasher) -> str:
    """File stem for per-image outputs: a salted hash of the path (or the path, --keep-ids)."""
    if hasher.keep_ids:
        stem = rel_path.replace("/", "__")
        stem = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in stem)
        if len(stem.encode("utf-8")) > STEM_MAX:  # a deep path: ENAMETOOLONG once written
            import hashlib

            digest = hashlib.sha256(rel_path.encode("utf-8", "surrogatepass")).hexdigest()[:16]
            short = stem.encode("utf-8")[: STEM_MAX - 17].decode("utf-8", "ignore")
            stem = f"{short}-{digest}"
        return stem
    return hasher(rel_path)
