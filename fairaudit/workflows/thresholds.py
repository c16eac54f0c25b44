"""--threshold-policy for a run: read the calibration set (if any) and choose the one
threshold for all groups with fairaudit.stats._thresholds (docs/statistics.md)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from fairaudit.errors import InputError, arg
from fairaudit.stats._thresholds import ThresholdPolicyError, choose_threshold, parse_policy

log = logging.getLogger(__name__)


def read_calibration_set(
    path: Path | str, label_column: str, score_column: str
) -> tuple[np.ndarray, np.ndarray]:
    """(labels, scores) of a calibration CSV; rows missing either are skipped (logged)."""
    from fairaudit.io.tables import parse_binary, parse_score, read_table

    table = read_table(path)
    label_col = table.column(label_column, argument="label_column")
    score_col = table.column(score_column, argument="score_column")
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
                f"{arg('threshold_policy')} {policy} needs scores, but the predictions are 0/1: "
                f"pass a score column or a fixed {arg('threshold')}.",
                argument="threshold_policy",
            )
        where = "audited set"
    try:
        choice = choose_threshold(labels, scores, policy)
    except ThresholdPolicyError as exc:
        raise InputError(f"{exc} (on the {where}).") from None
    log.info("threshold %s chosen on the %s: %.6g", policy, where, choice.threshold)
    return {"chosen_on": where, **choice.to_dict()}
