"""`--baseline-predictions`: compare a release with the previous model on the same patients.

Reads the baseline's predictions, matches them to the audited cases by the audit's id
column, and runs the paired comparison of fairaudit.stats._paired. Its p-values form a
family of their own (the question "did the release change this group?" is not the
question "does this group differ from the reference?"), corrected with the audit's
--correction. Every row of the baseline file is listed in manifest.csv.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fairaudit._util.privacy import IdHasher
from fairaudit.errors import InputError, arg
from fairaudit.io.tables import parse_binary, parse_score, read_table
from fairaudit.stats._multitest import adjust_family

log = logging.getLogger(__name__)


def baseline_section(
    path: Path,
    *,
    ids: np.ndarray,
    id_column: str | None,
    labels: np.ndarray,
    scores: np.ndarray,
    has_scores: bool,
    attributes: dict[str, np.ndarray],
    references: dict[str, str],
    config: dict[str, Any],
    score_column: str,
    prediction_column: str,
    hasher: IdHasher,
    clusters: np.ndarray | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """The results.json `baseline` section and the baseline file's manifest rows."""
    from fairaudit.stats._paired import compare_to_baseline

    table = read_table(path)
    if id_column is None:
        raise InputError(
            f"{arg('baseline_predictions')} needs an id column to match patients; give {arg('id_column')}.",
            file=table.name,
            argument="id_column",
        )
    id_col = table.column(id_column, argument="id_column")
    if table.has(score_column):
        base_scores = parse_score(table, table.column(score_column))
        base_has_scores = True
    elif table.has(prediction_column):
        base_scores = parse_binary(table, table.column(prediction_column), "prediction").astype(float)
        base_has_scores = False
    else:
        cols = ", ".join(repr(c) for c in table.frame.columns)
        raise InputError(
            f"no score column '{score_column}' and no prediction column '{prediction_column}' "
            f"(columns: {cols}).",
            file=table.name,
            hint=f"Use the same column names as the new predictions, or {arg('score_column')}.",
            argument="baseline_predictions",
        )
    base_ids = table.frame[id_col].astype(str)
    dup = base_ids.duplicated(keep=False)
    audited = pd.Index(pd.Series(ids).astype(str))
    in_audit = base_ids.isin(audited)
    usable = in_audit & ~dup & base_scores.notna()
    reason = np.where(
        dup,
        "duplicate id in the baseline",
        np.where(
            ~in_audit,
            "not an audited case (no new prediction, or excluded from the audit)",
            np.where(base_scores.isna(), "missing or invalid baseline score", ""),
        ),
    )
    manifest = pd.DataFrame(
        {
            "source": table.name,
            "row": table.rows.to_numpy(),
            "id": base_ids.map(hasher).to_numpy(),
            "status": np.where(usable, "included", "excluded"),
            "reason": reason,
        }
    )
    lookup = pd.Series(base_scores[usable].to_numpy(), index=base_ids[usable].to_numpy())
    matched_scores = pd.Series(ids).astype(str).map(lookup).to_numpy(dtype=float)
    keep = np.isfinite(matched_scores)
    n_missing = int((~keep).sum())
    if n_missing:
        log.warning(
            "%d audited cases have no baseline prediction in %s: the release comparison uses the other %d",
            n_missing,
            table.name,
            int(keep.sum()),
        )
    if keep.sum() == 0:
        raise InputError(
            f"no audited case has a baseline prediction (matched on '{id_column}').",
            file=table.name,
            hint="The baseline must score the same patients, with the same ids.",
        )
    both_scores = has_scores and base_has_scores
    attrs = compare_to_baseline(
        labels[keep],
        scores[keep],
        matched_scores[keep],
        {k: v[keep] for k, v in attributes.items()},
        references,
        threshold=float(config["threshold"]),
        bootstrap=int(config["bootstrap"]),
        ci_level=float(config["ci_level"]),
        seed=int(config["seed"]),
        min_group_size=int(config["min_group_size"]),
        has_scores=both_scores,
        clusters=clusters[keep] if clusters is not None else None,
    )
    rows = [row for a in attrs for g in a["groups"] for row in g["metrics"].values()]
    alpha = round(1.0 - float(config["ci_level"]), 12)
    adjust_family(rows, str(config.get("correction", "holm")), alpha)
    section = {
        "predictions": table.name,
        "n_matched": int(keep.sum()),
        "n_unmatched": n_missing,
        "method": "paired bootstrap (cases resampled within each group, both models together), "
        "percentile intervals; McNemar (exact) for rates, paired DeLong for auroc, Wilcoxon "
        "signed-rank for brier"
        + (
            "; in groups where a patient has several cases, patients are resampled and tested "
            "(sign-flip test of each patient's discordant predictions for rates, Obuchowski's "
            "clustered variance for auroc, Wilcoxon on each patient's mean Brier difference)"
            if clusters is not None
            else ""
        ),
        "correction": config.get("correction", "holm"),
        "attributes": attrs,
    }
    return section, manifest
