"""Multi-label audits (`--findings`): which columns are findings, where their scores are, and
what an uncertain label becomes (docs/multilabel.md).

Chest X-ray label files (CheXpert, MIMIC-CXR, NIH ChestX-ray14) hold one column per finding:
1 present, 0 absent, -1 uncertain (CheXpert, MIMIC-CXR) and blank for not mentioned. Each
finding is audited on the records that have both a label and a score for it, so a blank or
an uncertain label of one finding never removes a record from another's analysis.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from fairaudit.errors import InputError, arg
from fairaudit.io.tables import BINARY_WORDS, UNCERTAIN, Table, is_missing

log = logging.getLogger(__name__)

#: --uncertain: CheXpert's U-Ignore (exclude), U-Zeros (negative) and U-Ones (positive).
UNCERTAIN_POLICIES: tuple[str, ...] = ("exclude", "negative", "positive")
ALL = "all"
# Per record and finding, why the record is not in that finding's analysis.
OK, IS_UNCERTAIN, NO_LABEL, NO_SCORE = 0, 1, 2, 3
_WHY = {IS_UNCERTAIN: "uncertain", NO_LABEL: "no label", NO_SCORE: "no score"}
# Columns never taken as findings by `--findings all` (scores and predictions of a finding).
_SCORE_PREFIXES = ("score_", "prob_", "pred_", "prediction_")
_SCORE_SUFFIXES = ("_score", "_prob", "_pred", "_prediction")


@dataclass(frozen=True)
class FindingColumns:
    """One finding: its name, its label column and its score column (in the predictions)."""

    name: str
    label: str
    score: str


@dataclass
class Finding:
    """One finding's labels and scores over the cohort's included records (NaN: not in its
    analysis), and how many records each reason kept out."""

    name: str
    label_column: str
    score_column: str
    labels: np.ndarray  # float: 1, 0 or NaN
    scores: np.ndarray  # float in [0, 1] or NaN
    n_uncertain: int
    n_no_label: int
    n_no_score: int

    @property
    def usable(self) -> np.ndarray:
        return np.isfinite(self.labels) & np.isfinite(self.scores)


def parse_findings(value: str | None) -> tuple[str, ...] | None:
    """`--findings all` or `--findings A,B,C` (None: a single-label audit)."""
    if value is None:
        return None
    names = tuple(dict.fromkeys(p.strip() for p in value.split(",") if p.strip()))
    if not names:
        raise InputError(
            f"{arg('findings')} '{value}': name the finding columns (A,B,C) or pass all.",
            argument="findings",
        )
    if ALL in (n.lower() for n in names) and len(names) > 1:
        raise InputError(
            f"{arg('findings')} '{value}': 'all' takes every finding column; do not list others with it.",
            argument="findings",
        )
    return (ALL,) if names[0].lower() == ALL else names


def parse_score_map(values: list[str]) -> dict[str, str]:
    """`--score-column FINDING=COLUMN` values (multi-label audits) into a dict."""
    out: dict[str, str] = {}
    for v in values:
        finding, sep, column = v.partition("=")
        if not sep or not finding.strip() or not column.strip():
            raise InputError(
                f"{arg('score_column')} '{v}': with {arg('findings')} give FINDING=COLUMN, for example "
                "Edema=prob_edema.",
                argument="score_column",
            )
        out[finding.strip()] = column.strip()
    return out


def _label_like(values: set[str]) -> bool:
    """Whether a column's distinct values are those of a finding's label (0, 1, -1, yes/no ...)."""
    seen = False
    for v in values:
        if is_missing(v):
            continue
        seen = True
        text = v.strip().lower()
        if text in BINARY_WORDS:
            continue
        try:
            if float(text) not in (0.0, 1.0, UNCERTAIN):
                return False
        except ValueError:
            return False
    return seen


def _is_score_name(column: str) -> bool:
    low = column.lower()
    return low in ("score", "prediction") or low.startswith(_SCORE_PREFIXES) or low.endswith(_SCORE_SUFFIXES)


def finding_candidates(table: Table, exclude: set[str]) -> list[str]:
    """`--findings all`: the columns of `table` outside `exclude` whose every value is a
    finding label (0, 1, -1, yes/no, true/false, blank), in the file's order. Other columns
    (age, view, a path) are skipped and logged."""
    folded = {c.lower() for c in exclude}
    cols = [c for c in table.columns if c.lower() not in folded and not _is_score_name(c)]
    distinct: dict[str, set[str]] = {c: set() for c in cols}
    alive = set(cols)
    for frame, _ in table.chunks(cols):
        for c in list(alive):
            distinct[c].update(frame[c].astype(str).unique().tolist())
            if len(distinct[c]) > 16 or not _label_like(distinct[c]):
                alive.discard(c)
        if not alive:
            break
    found = [c for c in cols if c in alive and _label_like(distinct[c])]
    skipped = [c for c in cols if c not in found]
    if skipped:
        log.info(
            "%s all: %d column(s) are not finding labels, skipped: %s",
            arg("findings"),
            len(skipped),
            ", ".join(skipped),
        )
    if not found:
        raise InputError(
            f"{arg('findings')} all: no column of this file holds finding labels (0, 1, -1 or blank).",
            file=table.name,
            hint=f"Name the finding columns with {arg('findings')} A,B,C.",
            argument="findings",
        )
    return found


def resolve_findings(
    requested: tuple[str, ...],
    labels: Table,
    predictions: Table,
    *,
    exclude: set[str],
    score_map: dict[str, str],
) -> list[FindingColumns]:
    """Each finding's label column (in `labels`) and score column (in `predictions`): the
    one given by `--score-column FINDING=COLUMN`, else a column named FINDING (when the
    labels are another file), `score_FINDING` or `FINDING_score`."""
    names = finding_candidates(labels, exclude) if requested == (ALL,) else list(requested)
    unknown = [f for f in score_map if not any(f.lower() == n.lower() for n in names)]
    if unknown:
        raise InputError(
            f"{arg('score_column')} {unknown[0]}=...: {unknown[0]} is not among the audited findings "
            f"({', '.join(names)}).",
            argument="score_column",
        )
    out: list[FindingColumns] = []
    for name in names:
        label = labels.column(name, argument="findings")
        given = next((c for f, c in score_map.items() if f.lower() == name.lower()), None)
        if given is not None:
            score = predictions.column(given, argument="score_column")
        else:
            tries = ([name] if labels is not predictions else []) + [f"score_{name}", f"{name}_score"]
            score = next((predictions.column(t) for t in tries if predictions.has(t)), None)
            if score is None:
                cols = ", ".join(repr(c) for c in predictions.columns)
                raise InputError(
                    f"no score column for finding '{name}': tried {', '.join(repr(t) for t in tries)} "
                    f"(columns: {cols}).",
                    file=predictions.name,
                    hint=f"Name it with {arg('score_column')} {name}=COLUMN.",
                    argument="score_column",
                )
        out.append(FindingColumns(name=label, label=label, score=score))
    scores = [f.score for f in out]
    if len(set(scores)) < len(scores):
        dup = next(s for s in scores if scores.count(s) > 1)
        raise InputError(
            f"two findings take their scores from the same column '{dup}'.",
            file=predictions.name,
            hint=f"Give each finding its score column with {arg('score_column')} FINDING=COLUMN.",
            argument="score_column",
        )
    return out


def apply_uncertain(labels: np.ndarray, policy: str) -> tuple[np.ndarray, int]:
    """Labels with -1 made NaN (exclude), 0 (negative) or 1 (positive); and how many were -1."""
    uncertain = labels == UNCERTAIN
    out = labels.copy()
    out[uncertain] = {"exclude": np.nan, "negative": 0.0, "positive": 1.0}[policy]
    return out, int(uncertain.sum())


def status_matrix(raw_labels: list[np.ndarray], scores: list[np.ndarray], policy: str) -> np.ndarray:
    """(records, findings) uint8: OK or why the record is not in that finding's analysis."""
    out = np.zeros((raw_labels[0].size if raw_labels else 0, len(raw_labels)), dtype=np.uint8)
    for j, (lab, sc) in enumerate(zip(raw_labels, scores, strict=True)):
        out[np.isnan(sc), j] = NO_SCORE
        out[np.isnan(lab), j] = NO_LABEL
        if policy == "exclude":
            out[lab == UNCERTAIN, j] = IS_UNCERTAIN
    return out


def status_notes(status: np.ndarray, names: list[str]) -> np.ndarray:
    """Per record, the manifest's note of the findings whose analysis leaves it out ("" when
    none): "not in: Edema (uncertain); Pneumonia (no label)". One string per distinct
    pattern, so 100,000 records cost a few."""
    if status.size == 0:
        return np.full(status.shape[0], "", dtype=object)
    patterns, inverse = np.unique(status, axis=0, return_inverse=True)
    texts = []
    for row in patterns:
        parts = [f"{names[j]} ({_WHY[int(c)]})" for j, c in enumerate(row) if c != OK]
        texts.append("not in: " + "; ".join(parts) if parts else "")
    return np.array(texts, dtype=object)[np.asarray(inverse).ravel()]
