"""Threshold policies: pick ONE decision threshold for the whole audit from labelled scores.

`--threshold-policy youden|f1|sensitivity=X|specificity=X` chooses the threshold on the
whole audited set, or on a separate calibration set (`--calibration-set CSV` with id,
label, score). The same threshold then applies to every group: per-group thresholds are
never chosen (they would hide the very disparities an audit looks for).

Candidates are the distinct scores; a case is positive when score >= threshold, as for
a fixed --threshold (and as scikit-learn's roc_curve thresholds). The rules:

- youden: the maximum of Youden's J = tpr - fpr (ties: the largest threshold);
- f1: the maximum of F1 = 2 TP / (2 TP + FP + FN) (ties: the largest threshold);
- sensitivity=X: the largest threshold with tpr >= X (the most specific one that still
  reaches the sensitivity);
- specificity=X: the smallest threshold with tnr >= X (the most sensitive one that
  still reaches the specificity); an InputError when no score reaches it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

POLICIES: tuple[str, ...] = ("youden", "f1", "sensitivity", "specificity")


class ThresholdPolicyError(ValueError):
    """A policy that cannot be applied (bad text, one class only, target not reachable)."""


@dataclass(frozen=True)
class ThresholdPolicy:
    kind: str  # one of POLICIES
    target: float | None = None  # for sensitivity / specificity

    def __str__(self) -> str:
        return self.kind if self.target is None else f"{self.kind}={self.target:g}"


@dataclass(frozen=True)
class ThresholdChoice:
    """The chosen threshold and what it gives on the data it was chosen on."""

    policy: str
    threshold: float
    tpr: float
    fpr: float
    f1: float
    youden_j: float
    n: int
    n_positive: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_policy(text: str) -> ThresholdPolicy:
    """'youden', 'f1', 'sensitivity=0.8' or 'specificity=0.8' (targets in (0, 1])."""
    raw = text.strip().lower()
    kind, sep, value = raw.partition("=")
    kind = kind.strip()
    if kind not in POLICIES:
        raise ThresholdPolicyError(
            f"--threshold-policy '{text}': choose youden, f1, sensitivity=X or specificity=X (X in (0, 1])."
        )
    if kind in ("youden", "f1"):
        if sep:
            raise ThresholdPolicyError(f"--threshold-policy '{text}': {kind} takes no value.")
        return ThresholdPolicy(kind)
    try:
        target = float(value)
    except ValueError:
        target = float("nan")
    if not sep or not 0 < target <= 1:
        raise ThresholdPolicyError(
            f"--threshold-policy '{text}': {kind} needs a target in (0, 1], e.g. {kind}=0.8."
        )
    return ThresholdPolicy(kind, target)


def operating_points(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct scores, descending; TP and FP counts with score >= each of them)."""
    y = np.asarray(labels).astype(np.int64)
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]  # last index of each distinct score
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    return s[last], tp, fp


def choose_threshold(
    labels: np.ndarray, scores: np.ndarray, policy: ThresholdPolicy | str
) -> ThresholdChoice:
    """One threshold for all groups by `policy` (see the module doc for the rules)."""
    if isinstance(policy, str):
        policy = parse_policy(policy)
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.size != scores.size or labels.size == 0:
        raise ThresholdPolicyError(
            "threshold policy: labels and scores must be non-empty and of equal length"
        )
    if not np.all(np.isfinite(scores)):
        raise ThresholdPolicyError("threshold policy: scores must be finite")
    thr, tp, fp = operating_points(labels, scores)
    n_pos = int(tp[-1])
    n_neg = int(fp[-1])
    if n_pos == 0 or n_neg == 0:
        raise ThresholdPolicyError(
            f"threshold policy {policy}: needs both positive and negative cases "
            f"({n_pos} positive, {n_neg} negative)"
        )
    tpr = tp / n_pos
    fpr = fp / n_neg
    f1 = 2 * tp / (2 * tp + fp + (n_pos - tp))
    if policy.kind == "youden":
        i = int(np.argmax(tpr - fpr))  # first maximum = largest threshold (thr descending)
    elif policy.kind == "f1":
        i = int(np.argmax(f1))
    elif policy.kind == "sensitivity":
        ok = np.flatnonzero(tpr >= policy.target - 1e-12)
        i = int(ok[0])  # tpr grows as the threshold falls: the first is the largest threshold
    else:
        ok = np.flatnonzero(1.0 - fpr >= policy.target - 1e-12)
        if ok.size == 0:
            raise ThresholdPolicyError(
                f"threshold policy {policy}: no score threshold reaches specificity {policy.target:g} "
                f"(the best is {1.0 - fpr[0]:.4g})"
            )
        i = int(ok[-1])  # tnr falls as the threshold falls: the last is the smallest threshold
    return ThresholdChoice(
        policy=str(policy),
        threshold=float(thr[i]),
        tpr=float(tpr[i]),
        fpr=float(fpr[i]),
        f1=float(f1[i]),
        youden_j=float(tpr[i] - fpr[i]),
        n=int(labels.size),
        n_positive=n_pos,
    )


def read_calibration_set(
    path: Path | str, label_column: str, score_column: str
) -> tuple[np.ndarray, np.ndarray]:
    """(labels, scores) of a calibration CSV; rows missing either are skipped (logged)."""
    from fairaudit.io.tables import parse_binary, parse_score, read_table

    table = read_table(path)
    label_col = table.column(label_column, option="--label-column")
    score_col = table.column(score_column, option="--score-column")
    labels = parse_binary(table, label_col, "label")
    scores = parse_score(table, score_col)
    ok = labels.notna() & scores.notna()
    if (~ok).any():
        log.warning(
            "%s: %d rows without a label or score are not used to choose the threshold",
            table.name,
            int((~ok).sum()),
        )
    return labels[ok].to_numpy(dtype=np.int64), scores[ok].to_numpy(dtype=np.float64)


def pick_threshold(
    policy_text: str,
    labels: np.ndarray,
    scores: np.ndarray,
    *,
    has_scores: bool = True,
    calibration_set: Path | str | None = None,
    label_column: str = "label",
    score_column: str = "score",
) -> dict[str, Any]:
    """Apply --threshold-policy on the audited set or the calibration set: results.json's record.

    Returns config.threshold_selection: the policy, the threshold, where it was chosen
    (`chosen_on`: "audited set" or "calibration set FILE") and the operating point there.
    Raises InputError for anything the user must fix.
    """
    from fairaudit.errors import InputError

    try:
        policy = parse_policy(policy_text)
    except ThresholdPolicyError as exc:
        raise InputError(str(exc)) from None
    if calibration_set is not None:
        from fairaudit.io.tables import read_table

        header = read_table(calibration_set)
        lab = label_column if header.has(label_column) or not header.has("label") else "label"
        sco = score_column if header.has(score_column) or not header.has("score") else "score"
        labels, scores = read_calibration_set(calibration_set, lab, sco)
        where = f"calibration set {Path(calibration_set).name}"
    else:
        if not has_scores:
            raise InputError(
                f"--threshold-policy {policy} needs scores, but the predictions are 0/1: "
                "pass a score column or a fixed --threshold."
            )
        where = "audited set"
    try:
        choice = choose_threshold(labels, scores, policy)
    except ThresholdPolicyError as exc:
        raise InputError(f"{exc} (on the {where}).") from None
    log.info("threshold %s chosen on the %s: %.6g", policy, where, choice.threshold)
    return {"chosen_on": where, **choice.to_dict()}
