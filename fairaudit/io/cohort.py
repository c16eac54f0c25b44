"""Join predictions, labels and demographics into the audited cohort, accounting for every row.

Every row of every input file ends in the manifest as included or excluded with a reason;
results.json counts the exclusions by reason; nothing is dropped silently.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fairaudit.errors import InputError
from fairaudit.io.manifest_spool import ManifestSpool
from fairaudit.io.privacy import IdHasher
from fairaudit.io.tables import (
    ID_CANDIDATES,
    Table,
    canonical,
    detect_id_column,
    is_missing,
    missing_cells,
    parse_binary,
    parse_score,
    read_header,
    read_table,
)

log = logging.getLogger(__name__)

MISSING_GROUP = "(missing)"
INTERSECTION_SEP = "×"
MANIFEST_COLUMNS = ("source", "row", "id", "status", "reason")
_MANIFEST_SLICE = 20_000  # rows of one input made and written at a time (memory)


@dataclass
class CohortSpec:
    """Where the cohort's columns live and how to join them (from the CLI flags)."""

    predictions: Path | Table  # a CSV, or a model run's predictions already in memory
    attributes: list[str]
    demographics: Path | None = None
    labels: Path | None = None
    id_column: str | None = None
    label_column: str = "label"
    score_column: str = "score"
    prediction_column: str = "prediction"
    score_column_given: bool = False
    intersections: list[list[str]] = field(default_factory=list)
    missing_as_group: bool = False
    # The DICOM side of the join (one row per readable file or series), and the manifest
    # rows of the files that could not be read; see fairaudit.io.dicom_cohort.
    files: Table | None = None
    files_manifest: pd.DataFrame | None = None
    id_candidates: tuple[str, ...] = ID_CANDIDATES


@dataclass
class Cohort:
    """The included cases, ready for the statistics, and the account of every input row."""

    labels: np.ndarray
    scores: np.ndarray
    has_scores: bool
    attributes: dict[str, np.ndarray]
    manifest: pd.DataFrame
    n_records: int
    excluded: list[dict]
    id_column: str | None
    ids: np.ndarray | None = None  # the included records' ids, in clear (never written out)

    @property
    def n_included(self) -> int:
        return int(self.labels.size)


def intersection_name(parts: list[str]) -> str:
    return INTERSECTION_SEP.join(parts)


def _ids(table: Table, id_col: str | None) -> pd.Series:
    if id_col is None:
        return table.rows.astype(str)
    return table.frame[table.column(id_col)]


def _join_codes(pred_ids: pd.Series, others: list[pd.Series]) -> tuple[np.ndarray, list[np.ndarray], int]:
    """Integer codes of the ids of the predictions and of each other input (equal ids, equal
    codes) and how many distinct ids there are. One hash table for the whole join; every
    lookup, count and membership test after it is an array operation (memory: one table
    instead of a set, a count and an index per input)."""
    parts = [pred_ids.to_numpy(dtype=object), *(o.to_numpy(dtype=object) for o in others)]
    codes, uniques = pd.factorize(np.concatenate(parts), use_na_sentinel=False)
    n = len(uniques)
    del uniques
    split = np.split(codes, np.cumsum([len(p) for p in parts])[:-1])
    return split[0], split[1:], n


def _lookup(
    pred_codes: np.ndarray, index: pd.Index, other: Table, other_codes: np.ndarray, n: int, missing: str
) -> tuple[pd.Series, pd.Series]:
    """For each prediction row: the first matching row label of `other` (NaN if none), and a
    reason where there is none or more than one."""
    first = np.full(n, -1, dtype=np.int64)
    distinct, at = np.unique(other_codes, return_index=True)
    first[distinct] = at
    pos = first[pred_codes]
    found = pos >= 0
    idx = pd.Series(np.nan, index=index, dtype=float)
    idx[found] = other.frame.index.to_numpy()[pos[found]].astype(float)
    reason = pd.Series("", index=index, dtype=object)
    reason[~found] = missing
    reason[np.bincount(other_codes, minlength=n)[pred_codes] > 1] = f"duplicate id in {other.name}"
    return idx, reason


class _ManifestParts:
    """The manifest's parts, one per input: kept as frames, or each written to a spool as it
    comes (only one part's frame of per-row strings exists at a time)."""

    def __init__(self, spool: ManifestSpool | None) -> None:
        self.spool = spool
        self.frames: list[pd.DataFrame] = []

    def append(self, frame: pd.DataFrame) -> None:
        if self.spool is not None:
            self.spool.append(frame)
        else:
            self.frames.append(frame)

    def add_part(
        self,
        hasher: IdHasher,
        name: str,
        rows: np.ndarray | None,
        ids: np.ndarray,
        included: np.ndarray,
        reasons: np.ndarray,
        *,
        paths: np.ndarray | None = None,
    ) -> None:
        """One input's rows (`paths`: a folder's files, named NAME/PATH, without a row number),
        made and written a slice of rows at a time: the per-row strings (hashed ids, sources)
        of a whole large input never exist at once."""
        n = len(ids)
        for a in range(0, max(n, 1), _MANIFEST_SLICE):
            b = min(n, a + _MANIFEST_SLICE)
            self.append(
                pd.DataFrame(
                    {
                        "source": name if paths is None else [f"{name}/{p}" for p in paths[a:b]],
                        "row": "" if rows is None else rows[a:b],
                        "id": [hasher(str(i)) for i in ids[a:b]],
                        "status": np.where(included[a:b], "included", "excluded"),
                        "reason": reasons[a:b],
                    },
                    index=pd.RangeIndex(a, b),
                )
            )

    def frame(self) -> pd.DataFrame:
        if self.spool is not None:
            return pd.DataFrame(columns=list(MANIFEST_COLUMNS))
        return pd.concat(self.frames, ignore_index=True)


def build_cohort(
    spec: CohortSpec, hasher: IdHasher, *, manifest_spool: ManifestSpool | None = None
) -> Cohort:
    """Read, validate and join the inputs; raise InputError for bad input (exit code 2).

    `manifest_spool`: write manifest.csv's rows there part by part (and leave `manifest`
    an empty frame): on large cohorts the frames of per-row strings, then the text, were
    the peak of the audit's memory.
    """
    needed = list(dict.fromkeys(spec.attributes + [a for parts in spec.intersections for a in parts]))
    pred = spec.predictions if isinstance(spec.predictions, Table) else read_table(spec.predictions)
    files = spec.files
    # The join key is chosen on the headers; then the demographics and labels keep only it and
    # the columns the audit uses, and their ids become the predictions' own string objects,
    # chunk by chunk (memory on large cohorts: one string per id, not one per file read).
    heads = [
        t
        for t in (pred, *(read_header(p) for p in (spec.demographics, spec.labels) if p), files)
        if t is not None
    ]
    id_col = detect_id_column(heads, spec.id_column, spec.id_candidates)
    if id_col is None and len(heads) > 1:  # pragma: no cover - detect_id_column raises
        raise InputError("no id column to join on.")
    del heads
    # (detect_id_column has checked that every table, the predictions included, has id_col)
    share = None if id_col is None else (id_col, canonical(pred.frame[pred.column(id_col)]))
    ids_kept = [id_col] if id_col else []
    demo = (
        read_table(spec.demographics, keep=[*ids_kept, *needed], share=share) if spec.demographics else None
    )
    lab = read_table(spec.labels, keep=[*ids_kept, spec.label_column], share=share) if spec.labels else None
    del share

    # Columns and their sources.
    label_table = lab or pred
    label_col = label_table.column(
        spec.label_column, option="--label-column" if lab else "--label-column (or --labels FILE)"
    )
    if pred.has(spec.score_column) or spec.score_column_given:
        score_col = pred.column(spec.score_column, option="--score-column")
        has_scores = True
    elif pred.has(spec.prediction_column):
        score_col = pred.column(spec.prediction_column, option="--prediction-column")
        has_scores = False
        log.warning(
            "%s has 0/1 predictions ('%s') and no score column: auroc, auprc, brier and ece will be null.",
            pred.name,
            score_col,
        )
    else:
        cols = ", ".join(repr(c) for c in pred.columns)
        raise InputError(
            f"no score column '{spec.score_column}' and no prediction column "
            f"'{spec.prediction_column}' (columns: {cols}).",
            file=pred.name,
            column=spec.score_column,
            hint="Pass --score-column NAME (probabilities) or --prediction-column NAME (0/1).",
        )
    attr_table = demo or pred
    if not needed:
        raise InputError("no --attribute given: name at least one demographic column to audit by.")
    attr_cols = {}
    for a in needed:
        if files is not None and a.startswith("dicom:") and files.has(a):  # from the DICOM headers
            attr_cols[a] = (files, files.column(a))
        elif attr_table.has(a) or demo is None or not pred.has(a):
            # Not found anywhere: the error names the demographics file, where it belongs.
            attr_cols[a] = (attr_table, attr_table.column(a, option="--attribute"))
        else:
            attr_cols[a] = (pred, pred.column(a, option="--attribute"))

    # Values (validation errors name file, column and row).
    label_vals = parse_binary(label_table, label_col, "label")
    if has_scores:
        score_vals = parse_score(pred, score_col)
    else:
        score_vals = parse_binary(pred, score_col, "prediction")

    pred_ids = _ids(pred, id_col)
    reason = pd.Series("", index=pred.frame.index, dtype=object)

    def mark(mask: pd.Series, why: str | pd.Series) -> None:
        free = mask & (reason == "")
        if isinstance(why, pd.Series):
            reason[free] = why[free]
        else:
            reason[free] = why

    # Each other input, with the reason a prediction row gets when it has no row there.
    no_row = [
        (demo, f"no row in {demo.name if demo else ''} (demographics)"),
        (lab, f"no row in {lab.name if lab else ''} (labels)"),
        (files, "no readable DICOM file with this id (see the files' rows in the manifest)"),
    ]
    others = [t for t, _ in no_row if t is not None]
    pred_codes, other_codes, n_ids = _join_codes(pred_ids, [_ids(t, id_col) for t in others])
    if id_col is not None:
        mark(pred_ids.map(is_missing), f"missing {id_col}")
        mark(pd.Series(np.bincount(pred_codes, minlength=n_ids)[pred_codes] > 1, index=reason.index),
             f"duplicate id in {pred.name}")  # fmt: skip

    # Row index into each other table, per prediction row.
    where: dict[str, pd.Series] = {}
    reasons = [why for t, why in no_row if t is not None]
    for other, codes, missing in zip(others, other_codes, reasons, strict=True):
        idx, why = _lookup(pred_codes, reason.index, other, codes, n_ids, missing)
        mark(why != "", why)
        where[other.name] = idx

    def values_of(table: Table, series: pd.Series) -> pd.Series:
        if table is pred:
            return series
        idx = where[table.name]
        out = pd.Series(
            np.nan if series.dtype.kind == "f" else "", index=pred.frame.index, dtype=series.dtype
        )
        ok = idx.notna()
        out[ok] = series.reindex(idx[ok].astype(int)).to_numpy()
        return out

    labels = values_of(label_table, label_vals)
    mark(labels.isna(), "missing label")
    raw_scores = pred.frame[score_col]
    mark(missing_cells(raw_scores), "missing score" if has_scores else "missing prediction")

    attr_values: dict[str, pd.Series] = {}
    for a, (table, col) in attr_cols.items():
        vals = values_of(table, table.frame[col]).astype(str)
        missing = vals.map(is_missing)
        if spec.missing_as_group:
            vals = vals.where(~missing, MISSING_GROUP)
        else:
            mark(missing, f"missing {a}")
        attr_values[a] = vals

    included = reason == ""
    counts = Counter(reason[~included])
    for why, k in sorted(counts.items()):
        log.warning("excluded %d of %d rows of %s: %s", k, len(reason), pred.name, why)

    manifest = _ManifestParts(manifest_spool)
    manifest.add_part(
        hasher, pred.name, pred.rows.to_numpy(), pred_ids.to_numpy(), included.to_numpy(), reason.to_numpy()
    )
    excluded = [{"reason": f"{pred.name}: {why}", "count": int(k)} for why, k in sorted(counts.items())]
    # The prediction ids, and those included, by code: for all the other inputs.
    used = np.zeros(n_ids, dtype=bool)
    used[pred_codes[included.to_numpy()]] = True
    predicted = np.zeros(n_ids, dtype=bool)
    predicted[pred_codes] = True
    del pred_codes
    for other, codes in zip(others, other_codes, strict=True):
        ids = _ids(other, id_col)
        status = pd.Series(used[codes], index=other.frame.index)
        why = pd.Series("", index=other.frame.index, dtype=object)
        why[~predicted[codes]] = "no prediction for this id"
        why[np.bincount(codes, minlength=n_ids)[codes] > 1] = f"duplicate id in {other.name}"
        why[(why == "") & ~status] = "its prediction row was excluded (see that row)"
        orphan = int((why == "no prediction for this id").sum())
        dups = int((why == f"duplicate id in {other.name}").sum())
        if orphan:
            log.warning("%d rows of %s have no prediction", orphan, other.name)
            excluded.append({"reason": f"{other.name}: no prediction for this id", "count": orphan})
        if dups:
            excluded.append({"reason": f"{other.name}: duplicate id", "count": dups})
        is_files = other is files
        manifest.add_part(
            hasher,
            other.name,
            None if is_files else other.rows.to_numpy(),
            ids.to_numpy(),
            status.to_numpy(),
            why.to_numpy(),
            paths=other.frame["path"].to_numpy() if is_files else None,
        )

    if spec.files_manifest is not None and len(spec.files_manifest):
        manifest.append(spec.files_manifest.loc[:, list(MANIFEST_COLUMNS)])
        for why, k in spec.files_manifest["reason"].value_counts().sort_index().items():
            excluded.append({"reason": f"{files.name if files else 'DICOM files'}: {why}", "count": int(k)})

    attributes: dict[str, np.ndarray] = {}
    for a in spec.attributes:
        attributes[a] = attr_values[a][included].to_numpy(dtype=str)
    for parts in spec.intersections:
        combined = attr_values[parts[0]][included]
        for p in parts[1:]:
            combined = combined + INTERSECTION_SEP + attr_values[p][included]
        attributes[intersection_name(parts)] = combined.to_numpy(dtype=str)

    if not included.any():
        raise InputError(
            f"no row of {pred.name} can be audited: every row was excluded "
            f"({'; '.join(f'{k} x {w}' for w, k in counts.items())}). See the reasons above.",
            file=pred.name,
        )
    return Cohort(
        labels=labels[included].to_numpy(dtype=np.int64),
        scores=score_vals[included].to_numpy(dtype=np.float64),
        has_scores=has_scores,
        attributes=attributes,
        manifest=manifest.frame(),
        n_records=len(pred.frame),
        excluded=excluded,
        id_column=id_col,
        ids=pred_ids[included].astype(str).to_numpy(),
    )
