"""Multi-class audits (`--task multiclass`): which classes there are, where each class's
probability column is, and the checks of labels and probabilities made before the join
(docs/multiclass.md).

The classes come from the predictions' probability columns (`score_CLASS`, `prob_CLASS`,
`CLASS_score`, `CLASS_prob`, or `--score-column CLASS=COLUMN`), in the file's order, which
is also the order that breaks ties of the argmax; without such columns, from the distinct
values of the label column, each with a column named like it. A label that is none of the
classes, or a row whose probabilities do not sum to 1, is an input error naming the row:
a model's class probabilities are a softmax, and a row that is not one is a wrong column
or a wrong file, which renormalising would hide.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from fairaudit.errors import InputError, arg
from fairaudit.io.tables import Table, is_missing, parse_score

log = logging.getLogger(__name__)

#: How far a row's probabilities may sum from 1.
SUM_TOLERANCE = 1e-3
_PREFIXES = ("score_", "prob_", "probability_")
_SUFFIXES = ("_score", "_prob", "_probability")
_MAX_CLASSES = 100  # a label column with more distinct values is not a class label


@dataclass(frozen=True)
class ClassColumns:
    """One class: its name (as the labels spell it, or the column names it) and its
    probability column in the predictions."""

    name: str
    score: str


def class_key(value: str) -> str:
    """The form a class name and a label value are matched in: an integral number as an
    integer ("2", "2.0" -> "2"), other text case-folded."""
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text.casefold()
    if np.isfinite(number) and number == int(number):
        return str(int(number))
    return text.casefold()


def _named_class(column: str) -> str | None:
    """The class a probability column names (score_A, prob_A, A_score, A_prob), else None."""
    low = column.lower()
    for p in _PREFIXES:
        if low.startswith(p) and len(column) > len(p):
            return column[len(p) :]
    for s in _SUFFIXES:
        if low.endswith(s) and len(column) > len(s):
            return column[: -len(s)]
    return None


def _label_values(labels: Table, label_col: str) -> list[str]:
    """The distinct non-blank values of the label column, numbers in numeric order, else text."""
    seen: dict[str, str] = {}
    for frame, _ in labels.chunks([label_col]):
        for v in frame[label_col].astype(str).unique().tolist():
            if not is_missing(v):
                seen.setdefault(class_key(v), v.strip())
        if len(seen) > _MAX_CLASSES:
            raise InputError(
                f"more than {_MAX_CLASSES} distinct labels: not the class labels of a multi-class audit.",
                file=labels.name,
                column=label_col,
                hint=f"Name the label column with {arg('label_column')}.",
                argument="label_column",
            )
    values = list(seen.values())
    try:
        return sorted(values, key=float)
    except ValueError:
        return sorted(values)


def resolve_classes(
    labels: Table, label_col: str, predictions: Table, score_map: dict[str, str]
) -> list[ClassColumns]:
    """The classes and their probability columns: `--score-column CLASS=COLUMN` first (in
    the order given), then every column of the predictions named score_CLASS, prob_CLASS,
    CLASS_score or CLASS_prob (in the file's order); with none of those, the label column's
    distinct values, each with a column named like it."""
    out: list[ClassColumns] = []
    for name, column in score_map.items():
        out.append(ClassColumns(name=name, score=predictions.column(column, argument="score_column")))
    used = {c.score for c in out} | {label_col}
    for column in predictions.columns:
        name = _named_class(column)
        if name is None or column in used or any(class_key(name) == class_key(c.name) for c in out):
            continue
        out.append(ClassColumns(name=name, score=column))
    if not out:
        values = _label_values(labels, label_col)
        for v in values:
            if not predictions.has(v) or (predictions is labels and predictions.column(v) == label_col):
                cols = ", ".join(repr(c) for c in predictions.columns)
                raise InputError(
                    f"no probability column for class '{v}': tried '{v}', 'score_{v}', '{v}_score' "
                    f"(columns: {cols}).",
                    file=predictions.name,
                    hint=f"Name it score_{v}, or give {arg('score_column')} {v}=COLUMN.",
                    argument="score_column",
                )
            out.append(ClassColumns(name=v, score=predictions.column(v)))
    keys = [class_key(c.name) for c in out]
    if len(set(keys)) < len(keys):
        dup = next(c.name for c, k in zip(out, keys, strict=True) if keys.count(k) > 1)
        raise InputError(
            f"two probability columns name class '{dup}'.",
            file=predictions.name,
            hint=f"Give each class its column once with {arg('score_column')} CLASS=COLUMN.",
            argument="score_column",
        )
    if len(out) < 2:
        raise InputError(
            f"a multi-class audit needs a probability column per class; found "
            f"{len(out)} ({', '.join(repr(c.score) for c in out) or 'none'}).",
            file=predictions.name,
            hint=f"Name them score_CLASS, or give {arg('score_column')} CLASS=COLUMN once per class.",
            argument="score_column",
        )
    log.info("multi-class audit: %d classes (%s)", len(out), ", ".join(c.name for c in out))
    return out


def check_labels(labels: Table, label_col: str, classes: list[ClassColumns]) -> None:
    """Every non-blank label is one of the classes; else an error naming the row."""
    keys = {class_key(c.name) for c in classes}
    names = ", ".join(c.name for c in classes)
    for frame, rows in labels.chunks([label_col]):
        values = frame[label_col].astype(str)
        bad = [i for i, v in enumerate(values.tolist()) if not is_missing(v) and class_key(v) not in keys]
        if bad:
            i = bad[0]
            raise InputError(
                f"label '{values.iloc[i]}' is not one of the classes ({names}).",
                file=labels.name,
                column=label_col,
                row=int(rows.iloc[i]),
                hint=f"Add a probability column score_{values.iloc[i]} to the predictions (or name it with "
                f"{arg('score_column')} CLASS=COLUMN), or correct the label.",
                argument="label_column",
            )


def check_sums(predictions: Table, classes: list[ClassColumns], percent: bool = False) -> None:
    """Every row whose probabilities are all present sums to 1 within SUM_TOLERANCE; else an
    error naming the row (a row with a blank probability is excluded later, as "missing score")."""
    cols = [c.score for c in classes]
    for frame, rows in predictions.chunks(cols):
        part = Table(path=predictions.path, frame=frame, rows=rows, label=predictions.name)
        values = np.column_stack([parse_score(part, c, percent).to_numpy(dtype=np.float64) for c in cols])
        total = values.sum(axis=1)
        bad = np.isfinite(total) & (np.abs(total - 1.0) > SUM_TOLERANCE)
        if bad.any():
            i = int(np.argmax(bad))
            raise InputError(
                f"the probabilities of the {len(cols)} classes ({', '.join(cols)}) sum to {total[i]:.4f}, "
                f"not 1 (within {SUM_TOLERANCE:g}).",
                file=predictions.name,
                row=int(rows.iloc[i]),
                hint="Give each class's softmax probability, one column per class (docs/multiclass.md).",
                argument="score_column",
            )


def class_index(values: np.ndarray, classes: list[ClassColumns]) -> np.ndarray:
    """Distinct label texts -> class index (float, NaN where blank); checked by check_labels."""
    lookup = {class_key(c.name): i for i, c in enumerate(classes)}
    return np.array(
        [np.nan if is_missing(str(v)) else float(lookup.get(class_key(str(v)), np.nan)) for v in values],
        dtype=np.float64,
    )
