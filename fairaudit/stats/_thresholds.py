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
from typing import Any

import numpy as np

from fairaudit.errors import arg

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
            f"{arg('threshold_policy')} '{text}': choose youden, f1, sensitivity=X or specificity=X (X in (0, 1])."
        )
    if kind in ("youden", "f1"):
        if sep:
            raise ThresholdPolicyError(f"{arg('threshold_policy')} '{text}': {kind} takes no value.")
        return ThresholdPolicy(kind)
    try:
        target = float(value)
    except ValueError:
        target = float("nan")
    if not sep or not 0 < target <= 1:
        raise ThresholdPolicyError(
            f"{arg('threshold_policy')} '{text}': {kind} needs a target in (0, 1], e.g. {kind}=0.8."
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
