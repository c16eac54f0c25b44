"""Join predictions, labels and demographics into the audited cohort, accounting for every row.

Every row of every input file ends in the manifest as included or excluded with a reason;
results.json counts the exclusions by reason; nothing is dropped silently.

Each input is read twice, a chunk of rows at a time (fairaudit.io.tables.iter_chunks, or a
model run's records): the first pass keeps per row a digest of its id and the parsed values
used (fairaudit.cohort.keys), the second writes the manifest's rows. Memory then grows by a few
bytes per row, not by a Python string per cell.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fairaudit._util.absent import ABSENT, absent_notes, combine, present
from fairaudit._util.privacy import IdHasher
from fairaudit._util.sanitize import cap
from fairaudit.cohort.classes import ClassColumns
from fairaudit.cohort.findings import (
    Finding,
    FindingColumns,
    apply_uncertain,
    resolve_findings,
    status_matrix,
    status_notes,
)
from fairaudit.cohort.identifiers import DEFAULT_MAX_GROUPS, check_group_count, refuse_identifier_attributes
from fairaudit.cohort.keys import TextCodes, digest, first_rows, join_codes
from fairaudit.cohort.manifest import ManifestSpool
from fairaudit.errors import InputError, arg
from fairaudit.io.tables import (
    ID_CANDIDATES,
    Table,
    detect_id_column,
    is_missing,
    parse_binary,
    parse_score,
    read_header,
)

log = logging.getLogger(__name__)

MISSING_GROUP = "(missing)"
INTERSECTION_SEP = "×"
OTHER_GROUP = "other"  # --merge-small-groups pools small groups under this name
MANIFEST_COLUMNS = ("source", "row", "id", "status", "reason")


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
    # rows of the files that could not be read; see fairaudit.cohort.dicom_files.
    files: Table | None = None
    files_manifest: pd.DataFrame | None = None
    id_candidates: tuple[str, ...] = ID_CANDIDATES
    keep_clear_ids: bool = True  # Cohort.ids: the included ids in clear (to pair a baseline)
    # The patient column whose records resample together (docs/statistics.md, "Patient-level
    # resampling"): None finds `patient_id`, "none" turns it off.
    cluster_column: str | None = None
    # --max-groups: an attribute with more groups (or nearly one per row) is refused as an
    # identifier (fairaudit.cohort.identifiers); 0: no limit.
    max_groups: int = DEFAULT_MAX_GROUPS
    # --bins COLUMN=EDGE,...: numeric CSV attributes cut into groups at these sorted edges
    # (`dicom:` targets are binned where the headers are read, fairaudit.io.dicom_attributes).
    bins: dict[str, list[float]] = field(default_factory=dict)
    # --merge-small-groups: an attribute's groups with fewer included records than this are
    # pooled into OTHER_GROUP (0: off); intersections are formed from the pooled groups.
    merge_below: int = 0
    positive_label: str | None = None  # --positive-label: the label value that is 1
    score_scale: str = "probability"  # --score-scale: "probability" ([0, 1]) or "percent" ([0, 100])
    # --findings (a multi-label audit, fairaudit.cohort.findings): ("all",) or the finding
    # columns; their score columns by name or --score-column FINDING=COLUMN; --uncertain.
    findings: tuple[str, ...] | None = None
    finding_scores: dict[str, str] = field(default_factory=dict)
    uncertain: str = "exclude"
    # --within: stratum columns, read like attributes; a blank value leaves the record out of
    # the within-stratum analysis only (fairaudit.stats._strata).
    strata: list[str] = field(default_factory=list)
    # --task multiclass (fairaudit.cohort.classes): the label column holds class names or
    # integers, the predictions one probability column per class (--score-column CLASS=COLUMN).
    multiclass: bool = False
    class_scores: dict[str, str] = field(default_factory=dict)


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
    # Per included record, a code for its patient (None: records are independent), the
    # column it came from, and how many records had none (each its own patient).
    clusters: np.ndarray | None = None
    cluster_column: str | None = None
    cluster_missing: int = 0
    # Which column of which input gave the labels and the scores (results.json `config`).
    label_source: dict[str, str] | None = None
    score_source: dict[str, str] | None = None
    # How each binned CSV attribute's groups were formed (results.json `inputs.binned_attributes`).
    binned: list[dict[str, Any]] = field(default_factory=list)
    # Which groups --merge-small-groups pooled (results.json `inputs.merged_groups`).
    merged: list[dict[str, Any]] = field(default_factory=list)
    # A multi-label audit: each finding's labels and scores over the included records
    # (`labels` and `scores` are then empty; docs/multilabel.md).
    findings: list[Finding] | None = None
    n_rows: int | None = None  # included records of a multi-label audit
    # Included records without a value of an attribute (or intersection), by its name: in the
    # audit, out of that attribute's groups (results.json `inputs.missing_attributes`).
    absent: dict[str, int] = field(default_factory=dict)
    # --within: each stratum column's value per included record (ABSENT where blank).
    strata: dict[str, np.ndarray] = field(default_factory=dict)
    # --task multiclass: the classes (in argmax tie-break order) and each included record's
    # probabilities, (records, classes); `labels` then holds class indices (docs/multiclass.md).
    classes: list[ClassColumns] | None = None
    class_scores: np.ndarray | None = None

    @property
    def n_included(self) -> int:
        return int(self.labels.size) if self.n_rows is None else self.n_rows


def _merge_small(values: dict[str, np.ndarray], included: np.ndarray, below: int) -> list[dict[str, Any]]:
    """Pool, in place, each attribute's groups with fewer than `below` included records into
    OTHER_GROUP (the missing group stays apart): 40 hospitals of 20 patients become the
    large ones and "other". Returns what was pooled, for results.json."""
    records = []
    for a, vals in values.items():
        names, counts = np.unique(vals[included].astype(str), return_counts=True)
        small = [
            str(g)
            for g, k in zip(names, counts, strict=True)
            if k < below and g not in (MISSING_GROUP, ABSENT)
        ]
        if not small:
            continue
        pooled = np.isin(vals.astype(str), small)
        vals[pooled] = OTHER_GROUP
        n_other = int(np.sum(pooled & included))
        log.info(
            "%s: %d groups under %d records pooled into '%s' (%d records)",
            a,
            len(small),
            below,
            OTHER_GROUP,
            n_other,
        )
        records.append({"attribute": a, "into": OTHER_GROUP, "groups": small, "below": below, "n": n_other})
    return records


def _binned(name: str, texts: np.ndarray, cuts: list[float]) -> tuple[np.ndarray, dict[str, Any]]:
    """A numeric attribute's distinct texts as the groups of `--bins` (fairaudit.io.
    dicom_attributes.bin_labels: "< 40", "[40, 65)", ">= 65"); text that is not a number counts
    as missing, with a warning; and the record of how the groups were formed."""
    from fairaudit.io.dicom_attributes import bin_labels

    values = np.array([_number(v) for v in texts], dtype=np.float64)
    unparsable = int(sum(1 for v, x in zip(texts, values, strict=True) if not is_missing(v) and np.isnan(x)))
    if unparsable:
        log.warning("%s: %d distinct value(s) are not numbers; they count as missing", name, unparsable)
    finite = values[np.isfinite(values)]
    record: dict[str, Any] = {"name": name, "kind": "numeric"}
    record.update(source="--bins", edges=[float(c) for c in cuts], n_unparsable_values=unparsable)
    if finite.size:
        record["range"] = [float(finite.min()), float(finite.max())]
    return bin_labels(values, cuts), record


def _quantile_edges(name: str, texts: np.ndarray, codes: np.ndarray, k: int) -> list[float]:
    """`--bins COLUMN=quantiles:k`: the inner k-quantiles of the numeric values of the records
    still in the audit (`codes` into `texts`); tied quantiles merge, so ties may leave fewer
    than k groups (logged)."""
    numbers = np.array([_number(v) for v in texts], dtype=np.float64)
    values = numbers[codes[codes >= 0]] if codes.size else np.empty(0)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise InputError(
            f"{arg('bins')} {name}=quantiles:{k}: the column has no numeric value to cut.",
            argument="bins",
        )
    edges = sorted({float(q) for q in np.quantile(values, np.arange(1, k) / k)})
    if len(edges) < k - 1:
        log.warning(
            "%s: tied values leave %d groups of the %d quantile groups asked for", name, len(edges) + 1, k
        )
    return edges


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        return math.nan
    return value if math.isfinite(value) else math.nan


def intersection_name(parts: list[str]) -> str:
    return INTERSECTION_SEP.join(parts)


@dataclass
class _Scan:
    """One input reduced to what the join needs (first pass over its records): per row the
    id's digest, whether the id is missing, and the parsed values of the columns used."""

    table: Table
    n: int
    digest: np.ndarray
    id_missing: np.ndarray
    numbers: dict[tuple[str, str], np.ndarray]  # (column, kind) -> floats, NaN where missing
    texts: dict[str, tuple[np.ndarray, list[str]]]  # column -> (codes, distinct values)


def _scan(
    table: Table,
    id_col: str | None,
    parse: list[tuple[str, str]],
    positive: str | None = None,
    percent: bool = False,
) -> _Scan:
    """Read `table` a chunk at a time; `parse`: (column, kind) with kind label, finding (a
    label that may be -1, uncertain), prediction, score (validated; errors name file, column
    and row) or text. `positive`: the label value
    that is 1 (--positive-label); `percent`: scores in [0, 100] (--score-scale percent)."""
    others: dict[str, set[str]] = {}
    id_name = table.column(id_col) if id_col else None
    cols = list(dict.fromkeys([*([id_name] if id_name else []), *(c for c, _ in parse)]))
    digests, missing = [], []
    numbers: dict[tuple[str, str], list[np.ndarray]] = {(c, k): [] for c, k in parse if k != "text"}
    texts = {c: TextCodes() for c, k in parse if k == "text"}
    n = 0
    for frame, rows in table.chunks(cols):
        part = Table(path=table.path, frame=frame, rows=rows, label=table.label or table.path.name)
        ids = frame[id_name] if id_name else rows.astype(str)
        digests.append(digest(ids))
        missing.append(
            ids.map(is_missing).to_numpy(dtype=bool) if id_name else np.zeros(len(ids), dtype=bool)
        )
        for c, kind in parse:
            if kind == "text":
                texts[c].add(frame[c])
            elif kind == "score":
                numbers[(c, kind)].append(parse_score(part, c, percent).to_numpy(dtype=np.float64))
            elif kind == "finding":  # 1, 0, -1 (uncertain) or blank
                values = parse_binary(part, c, "label", None, None, uncertain=True)
                numbers[(c, kind)].append(values.to_numpy(dtype=np.float64))
            else:
                pos = positive if kind == "label" else None
                values = parse_binary(part, c, kind, pos, others.setdefault(c, set()))
                numbers[(c, kind)].append(values.to_numpy(dtype=np.float64))
        n += len(frame)
    if n == 0:
        raise InputError("has a header but no records.", file=str(table.path))
    return _Scan(
        table=table,
        n=n,
        digest=np.concatenate(digests),
        id_missing=np.concatenate(missing),
        numbers={key: np.concatenate(v) for key, v in numbers.items()},
        texts={c: (t.codes(), t.values) for c, t in texts.items()},
    )


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
        scan: _Scan,
        id_col: str | None,
        included: np.ndarray,
        reasons: np.ndarray,
        *,
        files: bool = False,
        clear_ids: list[np.ndarray] | None = None,
    ) -> None:
        """One input's rows, made a chunk at a time from a second pass over its records (the
        per-row strings, ids and hashed ids, of a whole large input never exist at once).
        `files`: a folder's files, named NAME/PATH, without a row number. `clear_ids`: also
        collect the included rows' ids in clear."""
        table = scan.table
        id_name = table.column(id_col) if id_col else None
        cols = [*([id_name] if id_name else []), *(["path"] if files else [])]
        name = table.name
        at = 0
        for frame, rows in table.chunks(list(dict.fromkeys(cols))):
            b = at + len(frame)
            if b > scan.n:
                at = b
                break
            ids = frame[id_name] if id_name else rows.astype(str)
            self.append(
                pd.DataFrame(
                    {
                        # A file's path names the patient as often as its id does: pseudonymized alike.
                        "source": [f"{name}/{hasher.path(str(p))}" for p in frame["path"]] if files else name,
                        "row": "" if files else rows.to_numpy(),
                        "id": [hasher(str(i)) for i in ids],
                        "status": np.where(included[at:b], "included", "excluded"),
                        "reason": reasons[at:b],
                    },
                    index=pd.RangeIndex(at, b),
                )
            )
            if clear_ids is not None:
                clear_ids.append(ids.to_numpy(dtype=object)[included[at:b]])
            at = b
        if at != scan.n:
            raise InputError(
                f"changed while being read ({scan.n} records, then {at if at < scan.n else 'more'}).",
                file=str(table.path),
                hint="Audit a copy that nothing writes to.",
            )

    def frame(self) -> pd.DataFrame:
        if self.spool is not None:
            return pd.DataFrame(columns=list(MANIFEST_COLUMNS))
        return pd.concat(self.frames, ignore_index=True)


def build_cohort(
    spec: CohortSpec, hasher: IdHasher, *, manifest_spool: ManifestSpool | None = None
) -> Cohort:
    """Read, validate and join the inputs; raise InputError for bad input (exit code 2).

    Two passes over every input, a chunk of rows at a time: the first keeps per row only a
    digest of the id and the parsed values used; the ids are matched as integer codes; the
    second makes the manifest's rows. No per-row string of a whole input is held, so memory
    stays flat as cohorts grow. `manifest_spool`: write manifest.csv's rows there part by
    part (and leave `manifest` an empty frame).
    """
    needed = list(dict.fromkeys(spec.attributes + [a for parts in spec.intersections for a in parts]))
    pred = spec.predictions if isinstance(spec.predictions, Table) else read_header(spec.predictions)
    files = spec.files
    demo = read_header(spec.demographics) if spec.demographics else None
    lab = read_header(spec.labels) if spec.labels else None
    # (detect_id_column checks that every table, the predictions included, has id_col)
    id_name = alias_id_columns(
        spec.id_column, {"predictions": pred, "demographics": demo, "labels": lab, "dicom": files}
    )
    id_col = detect_id_column(
        [t for t in (pred, demo, lab, files) if t is not None], id_name, spec.id_candidates
    )

    # Columns and their sources.
    label_table = lab or pred
    cluster = cluster_source(spec.cluster_column, id_col, [t for t in (demo, lab, pred) if t is not None])
    finding_cols: list[FindingColumns] | None = None
    class_cols: list[ClassColumns] | None = None
    if spec.findings is not None:
        finding_cols = resolve_findings(
            spec.findings, label_table, pred, score_map=spec.finding_scores,
            exclude={
                c for c in (id_col, id_col and label_table.column(id_col), cluster and cluster[1], *needed, *ID_CANDIDATES) if c
            },
        )  # fmt: skip
        label_col, score, has_scores = "", ("", "score"), True
    else:
        label_col = label_table.column(
            spec.label_column, argument="label_column", or_file=None if lab else "labels"
        )
        if spec.multiclass:  # classes, labels and probability sums checked before the join
            from fairaudit.cohort.classes import check_labels, check_sums, resolve_classes

            class_cols = resolve_classes(label_table, label_col, pred, spec.class_scores)
            check_labels(label_table, label_col, class_cols)
            check_sums(pred, class_cols, spec.score_scale == "percent")
            score, has_scores = ("", "score"), True
        else:
            score, has_scores = _score_source(spec, pred)
    attr_table = demo or pred
    if not needed:
        raise InputError(
            f"no {arg('attributes')} given: name at least one demographic column to audit by.",
            argument="attributes",
        )
    attr_cols: dict[str, tuple[Table, str]] = {}
    for a in dict.fromkeys([*needed, *spec.strata]):  # --within columns are found as attributes are
        if files is not None and a.startswith("dicom:") and files.has(a):  # from the DICOM headers
            attr_cols[a] = (files, files.column(a))
        elif attr_table.has(a) or demo is None or not pred.has(a):
            # Not found anywhere: the error names the demographics file, where it belongs.
            attr_cols[a] = (
                attr_table,
                attr_table.column(a, argument="attributes" if a in needed else "within"),
            )
        else:
            attr_cols[a] = (pred, pred.column(a, argument="attributes" if a in needed else "within"))

    # Identifier columns are refused as attributes before any value is read: the reports
    # name every group (fairaudit.cohort.identifiers).
    refuse_identifier_attributes(
        needed,
        id_column=id_col,
        cluster_columns=(spec.cluster_column, *CLUSTER_CANDIDATES, cluster and cluster[1]),
    )

    # First pass (values validated; errors name file, column and row): the labels' file
    # first, then the predictions, the demographics and the files.
    def parse_of(t: Table) -> list[tuple[str, str]]:
        if finding_cols is not None:
            out = [(f.label, "finding") for f in finding_cols] if t is label_table else []
            if t is pred:
                out += [(f.score, "score") for f in finding_cols if (f.score, "score") not in out]
        elif class_cols is not None:  # class names or integers: read as text
            out = [(label_col, "text")] if t is label_table else []
            if t is pred:
                out += [(c.score, "score") for c in class_cols if (c.score, "score") not in out]
        else:
            out = [(label_col, "label")] if t is label_table else []
            if t is pred:
                out.append(score)
        texts = [col for tab, col in attr_cols.values() if tab is t]
        if cluster is not None and cluster[0] is t:
            texts.append(cluster[1])
        return out + [(col, "text") for col in dict.fromkeys(texts) if (col, "text") not in out]

    scans = {
        id(t): _scan(t, id_col, parse_of(t), spec.positive_label, spec.score_scale == "percent")
        for t in (lab, pred, demo, files)
        if t is not None
    }
    binned = {a: cuts for a, cuts in spec.bins.items() if not a.startswith("dicom:")}
    for a in binned:
        if a not in attr_cols:
            raise InputError(
                f"{arg('bins')} {a}=...: {a} is not among the audited attributes "
                f"(name it with {arg('attributes')} or {arg('intersections')}).",
                argument="bins",
            )
    for a, (table, col) in attr_cols.items():  # before the join and the statistics
        if a in binned or a not in needed:
            continue  # at most len(edges) + 1 groups; a --within column names no group in a report
        sc = scans[id(table)]
        n_groups = sum(1 for v in sc.texts[col][1] if not is_missing(v))
        check_group_count(a, n_groups, sc.n, spec.max_groups, file=table.name)
    p_scan = scans[id(pred)]
    # Each other input, with the reason a prediction row gets when it has no row there.
    no_row = [
        (demo, f"no row in {demo.name if demo else ''} (demographics)"),
        (lab, f"no row in {lab.name if lab else ''} (labels)"),
        (files, "no readable DICOM file with this id (see the files' rows in the manifest)"),
    ]
    others = [(scans[id(t)], why) for t, why in no_row if t is not None]
    codes, n_ids = join_codes([p_scan.digest, *(o.digest for o, _ in others)])
    for sc in scans.values():
        sc.digest = np.empty((0, 2), dtype=np.uint64)
    pred_codes, other_codes = codes[0], codes[1:]
    n = p_scan.n

    reasons = [""]  # reason codes: 0 is none
    reason = np.zeros(n, dtype=np.int64)

    def code(why: str) -> int:
        if why not in reasons:
            reasons.append(why)
        return reasons.index(why)

    def mark(mask: np.ndarray, why: str | np.ndarray) -> None:
        free = mask & (reason == 0)
        reason[free] = code(why) if isinstance(why, str) else why[free]

    if id_col is not None:
        mark(p_scan.id_missing, f"missing {id_col}")
        mark(np.bincount(pred_codes, minlength=n_ids)[pred_codes] > 1, f"duplicate id in {pred.name}")

    # Row of each other input, per prediction row: the first with the same id (-1: none).
    where: dict[int, np.ndarray] = {}
    counts_of: list[np.ndarray] = []  # rows per id code, in each other input
    for (other, missing), oc in zip(others, other_codes, strict=True):
        first, count = first_rows(oc, n_ids)
        counts_of.append(count)
        pos = first[pred_codes]
        why = np.zeros(n, dtype=np.int64)
        why[pos < 0] = code(missing)
        why[count[pred_codes] > 1] = code(f"duplicate id in {other.table.name}")
        mark(why != 0, why)
        where[id(other.table)] = pos

    def numbers_of(table: Table, key: tuple[str, str]) -> np.ndarray:
        values = scans[id(table)].numbers[key]
        if table is pred:
            return values
        pos = where[id(table)]
        out = np.full(n, np.nan)
        out[pos >= 0] = values[pos[pos >= 0]]
        return out

    def text_of(table: Table, col: str) -> tuple[np.ndarray, np.ndarray]:
        """Per prediction row, a code into the returned distinct texts (-1, the last: "",
        where there is no row)."""
        codes_, values = scans[id(table)].texts[col]
        lookup = np.array([*values, ""], dtype=object)
        if table is pred:
            return codes_, lookup
        pos = where[id(table)]
        out = np.full(n, -1, dtype=np.int64)
        out[pos >= 0] = codes_[pos[pos >= 0]]
        return out, lookup

    status = None
    if finding_cols is not None:
        raw = [numbers_of(label_table, (f.label, "finding")) for f in finding_cols]
        f_scores = [p_scan.numbers[(f.score, "score")] for f in finding_cols]
        status = status_matrix(raw, f_scores, spec.uncertain)
        mark((status != 0).all(axis=1), "no finding with both a label and a score")
        labels = scores = np.empty(0)
    elif class_cols is not None:
        from fairaudit.cohort.classes import class_index

        label_codes, label_lookup = text_of(label_table, label_col)
        labels = class_index(label_lookup, class_cols)[label_codes]
        mark(np.isnan(labels), "missing label")
        class_p = np.column_stack([p_scan.numbers[(c.score, "score")] for c in class_cols])
        mark(np.isnan(class_p).any(axis=1), "missing score")
        scores = np.zeros(n)
    else:
        labels = numbers_of(label_table, (label_col, "label"))
        mark(np.isnan(labels), "missing label")
        scores = p_scan.numbers[score]
        mark(np.isnan(scores), "missing score" if has_scores else "missing prediction")

    attr_values: dict[str, np.ndarray] = {}
    binned_records: list[dict[str, Any]] = []
    for a, (table, col) in attr_cols.items():
        row_codes, lookup = text_of(table, col)
        # A group is named by at most NAME_LIMIT characters (a longer value: its start and a
        # digest), in results.json as in the reports: one huge cell cannot multiply through
        # every comparison and table (docs/reports.md, "What a value may add to a report").
        lookup = np.array([cap(v) for v in lookup], dtype=object)
        if a in binned:
            cuts = binned[a]
            k = getattr(cuts, "k", None)  # --bins COLUMN=quantiles:k
            if k is not None:
                cuts = _quantile_edges(a, lookup, row_codes[reason == 0], k)
            lookup, record = _binned(a, lookup, cuts)
            if k is not None:
                record["quantiles"] = k
            binned_records.append(record)
        missing = np.array([is_missing(v) for v in lookup], dtype=bool)[row_codes]
        vals = lookup[row_codes]
        # Missing: its own group with --missing-as-group, else out of this attribute's
        # analyses only (docs/statistics.md, "Missing values").
        vals[missing] = MISSING_GROUP if spec.missing_as_group and a in needed else ABSENT
        attr_values[a] = vals

    included = reason == 0
    findings: list[Finding] | None = None
    if finding_cols is not None and status is not None:
        findings = _findings(finding_cols, raw, f_scores, status, included, spec.uncertain)
    # Reasons counted in the order first met, as the rows are.
    ex_codes, first_at = np.unique(reason[~included], return_index=True)
    tally = np.bincount(reason[~included], minlength=len(reasons))
    counts = {reasons[c]: int(tally[c]) for c in ex_codes[np.argsort(first_at)]}
    for why, k in sorted(counts.items()):
        log.warning("excluded %d of %d rows of %s: %s", k, n, pred.name, why)
    reason_text = np.array(reasons, dtype=object)

    manifest = _ManifestParts(manifest_spool)
    clear: list[np.ndarray] | None = [] if spec.keep_clear_ids else None
    row_reasons = reason_text[reason]
    if status is not None and finding_cols is not None:  # which findings leave an included record out
        notes = status_notes(status, [f.name for f in finding_cols])
        row_reasons = np.where(included, notes, row_reasons)
    row_reasons = absent_notes(row_reasons, included, {a: ~present(attr_values[a]) for a in spec.attributes})
    manifest.add_part(hasher, p_scan, id_col, included, row_reasons, clear_ids=clear)
    excluded = [{"reason": f"{pred.name}: {why}", "count": int(k)} for why, k in sorted(counts.items())]
    # The prediction ids, and those included, by code: for all the other inputs.
    used = np.zeros(n_ids, dtype=bool)
    used[pred_codes[included]] = True
    predicted = np.zeros(n_ids, dtype=bool)
    predicted[pred_codes] = True
    del pred_codes
    for (other, _), oc, count in zip(others, other_codes, counts_of, strict=True):
        name = other.table.name
        status = used[oc]
        text = [
            "",
            "no prediction for this id",
            f"duplicate id in {name}",
            "its prediction row was excluded (see that row)",
        ]
        why = np.zeros(len(oc), dtype=np.int64)
        why[~predicted[oc]] = 1
        why[count[oc] > 1] = 2
        why[(why == 0) & ~status] = 3
        orphan, dups = int((why == 1).sum()), int((why == 2).sum())
        if orphan:
            log.warning("%d rows of %s have no prediction", orphan, name)
            excluded.append({"reason": f"{name}: no prediction for this id", "count": orphan})
        if dups:
            excluded.append({"reason": f"{name}: duplicate id", "count": dups})
        manifest.add_part(
            hasher, other, id_col, status, np.array(text, dtype=object)[why], files=other.table is files
        )

    if spec.files_manifest is not None and len(spec.files_manifest):
        manifest.append(pseudonymize_sources(spec.files_manifest.loc[:, list(MANIFEST_COLUMNS)], hasher))
        for why, k in spec.files_manifest["reason"].value_counts().sort_index().items():
            excluded.append({"reason": f"{files.name if files else 'DICOM files'}: {why}", "count": int(k)})

    merged = (
        _merge_small({a: attr_values[a] for a in needed}, included, spec.merge_below)
        if spec.merge_below > 0
        else []
    )  # strata are never pooled: pooling them would mix what --within holds apart
    attributes: dict[str, np.ndarray] = {}
    for a in spec.attributes:
        attributes[a] = attr_values[a][included].astype(str)
    for parts in spec.intersections:
        attributes[intersection_name(parts)] = combine(
            [attr_values[p][included] for p in parts], INTERSECTION_SEP
        )
    absent = {a: int(np.sum(~present(v))) for a, v in attributes.items()}
    absent = {a: k for a, k in absent.items() if k}
    for a, k in absent.items():
        log.warning("%d included records have no %s: they stay in the audit, out of its groups only", k, a)

    clusters, cluster_missing = None, 0
    if cluster is not None:
        row_codes, lookup = text_of(*cluster)
        missing = np.array([is_missing(v) for v in lookup], dtype=bool)[row_codes]
        codes_in = np.where(missing, -1, row_codes)[included]
        cluster_missing = int((codes_in < 0).sum())
        # A record without a patient id is a patient of its own.
        codes_in[codes_in < 0] = len(lookup) + np.arange(cluster_missing)
        clusters = codes_in
        if cluster_missing:
            log.warning(
                "%d included records have no %s: each is resampled as a patient of its own",
                cluster_missing, cluster[1],
            )  # fmt: skip

    if not included.any():
        raise InputError(
            f"no row of {pred.name} can be audited: every row was excluded "
            f"({'; '.join(f'{k} x {w}' for w, k in counts.items())}). See the reasons above.",
            file=pred.name,
        )
    return Cohort(
        labels=labels[included].astype(np.int64) if findings is None else np.empty(0, dtype=np.int64),
        scores=scores[included] if findings is None else np.empty(0),
        has_scores=has_scores,
        attributes=attributes,
        manifest=manifest.frame(),
        n_records=n,
        excluded=excluded,
        id_column=id_col,
        ids=None if clear is None else np.concatenate(clear) if clear else np.empty(0, dtype=str),
        clusters=clusters,
        cluster_column=None if cluster is None else cluster[1],
        cluster_missing=cluster_missing,
        binned=binned_records,
        merged=merged,
        label_source=None if findings else {"input": "labels" if lab else "predictions", "column": label_col},
        score_source=None
        if findings or class_cols
        else {"input": "predictions", "column": score[0], "kind": score[1]},
        findings=findings,
        n_rows=int(included.sum()) if findings is not None else None,
        absent=absent,
        strata={c: attr_values[c][included].astype(str) for c in spec.strata},
        classes=class_cols,
        class_scores=None if class_cols is None else class_p[included],
    )


#: The inputs `--id-column ROLE=COLUMN` may name.
ID_ROLES = ("predictions", "demographics", "labels", "dicom")


def parse_id_columns(value: str | None) -> dict[str, str] | None:
    """`--id-column predictions=img,demographics=sop_uid` as {role: column}; None for one name."""
    if value is None or "=" not in value:
        return None
    out: dict[str, str] = {}
    for part in value.split(","):
        role, sep, column = part.partition("=")
        role, column = role.strip().lower(), column.strip()
        if not sep or role not in ID_ROLES or not column:
            raise InputError(
                f"{arg('id_column')} '{value}': give one column name, or ROLE=COLUMN pairs separated by commas "
                f"with ROLE one of {', '.join(ID_ROLES)} (e.g. predictions=img,demographics=sop_uid).",
                argument="id_column",
            )
        out[role] = column
    return out


def alias_id_columns(value: str | None, tables: dict[str, Table | None]) -> str | None:
    """The join key's name: `value` itself, or, for ROLE=COLUMN pairs, the predictions' column
    (else the first named), each other named file's column aliased to that name. A file not
    named keeps the name (it must have such a column)."""
    mapping = parse_id_columns(value)
    if mapping is None:
        return value
    for role, column in mapping.items():
        table = tables.get(role)
        if table is None:
            raise InputError(
                f"{arg('id_column')} {role}={column}: no {role} input is given to this audit.",
                argument="id_column",
            )
        table.column(column, argument="id_column")  # present (else the error lists the columns)
    name = mapping.get("predictions") or next(iter(mapping.values()))
    for role, column in mapping.items():
        table = tables[role]
        assert table is not None
        actual = table.column(column)
        if actual != name:
            table.aliases[name] = actual
    return name


def _score_source(spec: CohortSpec, pred: Table) -> tuple[tuple[str, str], bool]:
    """The predictions' score column (kind "score"), else its 0/1 prediction column; and
    whether there are scores."""
    if pred.has(spec.score_column) or spec.score_column_given:
        return (pred.column(spec.score_column, argument="score_column"), "score"), True
    if pred.has(spec.prediction_column):
        column = pred.column(spec.prediction_column, argument="prediction_column")
        log.warning(
            "%s has 0/1 predictions ('%s') and no score column: auroc, auprc, brier, ece and squared_calibration_error will be null.",
            pred.name,
            column,
        )
        return (column, "prediction"), False
    cols = ", ".join(repr(c) for c in pred.columns)
    raise InputError(
        f"no score column '{spec.score_column}' and no prediction column "
        f"'{spec.prediction_column}' (columns: {cols}).",
        file=pred.name,
        column=spec.score_column,
        hint=f"Pass {arg('score_column')} NAME (probabilities) or {arg('prediction_column')} NAME (0/1).",
        argument="score_column",
    )


def _findings(
    columns: list[FindingColumns],
    raw: list[np.ndarray],
    scores: list[np.ndarray],
    status: np.ndarray,
    included: np.ndarray,
    policy: str,
) -> list[Finding]:
    """Each finding over the included records: uncertain labels mapped by --uncertain,
    NaN where the record is not in the finding's analysis (its status says why)."""
    out = []
    for j, f in enumerate(columns):
        labels, _ = apply_uncertain(raw[j][included], policy)
        st = status[included, j]
        keep = st == 0
        out.append(
            Finding(
                name=f.name,
                label_column=f.label,
                score_column=f.score,
                labels=np.where(keep, labels, np.nan),
                scores=np.where(keep, scores[j][included], np.nan),
                n_uncertain=int(np.sum(raw[j][included] == -1.0)),
                n_no_label=int(np.sum(st == 2)),
                n_no_score=int(np.sum(st == 3)),
            )
        )
    return out


def pseudonymize_sources(frame: pd.DataFrame, hasher: IdHasher) -> pd.DataFrame:
    """Manifest rows of files ("LABEL/PATH" sources) with each PATH pseudonymized by
    `hasher` (in clear with --keep-ids): folder and file names can name the patient."""
    if hasher.keep_ids or frame.empty:
        return frame
    label_path = frame["source"].astype(str).str.partition("/")
    sources = [
        f"{label}/{hasher.path(path)}" if sep else label
        for label, sep, path in zip(label_path[0], label_path[1], label_path[2], strict=True)
    ]
    return frame.assign(source=sources)


#: The column a patient id is found in when --cluster-column is not given.
CLUSTER_CANDIDATES = ("patient_id",)


def cluster_source(
    requested: str | None, id_col: str | None, tables: list[Table]
) -> tuple[Table, str] | None:
    """Where the patient of each record is read: (table, column), or None for none.

    `requested` None: the first table (demographics, labels, predictions) with a
    `patient_id` column, unless that column is the join key (one record per patient).
    "none": off. A named column must exist in one of the tables.
    """
    if requested is not None and requested.strip().lower() == "none":
        return None
    names = [requested] if requested is not None else list(CLUSTER_CANDIDATES)
    for name in names:
        for t in tables:
            if t.has(name):
                col = t.column(name)
                if id_col is not None and col.lower() == id_col.lower():
                    if requested is not None:
                        raise InputError(
                            f"{arg('cluster_column')} {requested} is the join key ({id_col}): every record "
                            "would be a patient of its own.",
                            column=requested,
                            hint="Name the column that holds each record's patient, or pass "
                            f"{arg('cluster_column')} none.",
                            argument="cluster_column",
                        )
                    return None
                return t, col
    if requested is not None:
        where = "; ".join(f"{t.name}: {', '.join(repr(c) for c in t.columns)}" for t in tables)
        raise InputError(
            f"{arg('cluster_column')} {requested}: no such column in the demographics, labels or predictions ({where}).",
            column=requested,
            hint=f"Name the column that holds each record's patient id, or pass {arg('cluster_column')} none.",
            argument="cluster_column",
        )
    return None
