"""Per-group validation metrics with intervals (numpy only).

Classification uses fairaudit.stats.run_audit on the validation predictions (the same
metrics, bootstrap and tests as an audit). Segmentation reports the per-group mean of
per-case Dice (fairaudit.stats._segmentation.dice_batch, the audit's dice) with a seeded
percentile bootstrap interval.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def bootstrap_mean_ci(
    values: np.ndarray, *, n_resamples: int = 2000, ci_level: float = 0.95, seed: int = 0
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean (None for fewer than 2 values)."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return None
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_resamples, len(values)))
    means = values[idx].mean(axis=1)
    alpha = (1 - ci_level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def _estimate(values: np.ndarray, n_resamples: int, ci_level: float, seed: int) -> dict[str, Any]:
    if len(values) == 0:
        return {"value": None, "ci": None, "reason": "no cases"}
    ci = bootstrap_mean_ci(values, n_resamples=n_resamples, ci_level=ci_level, seed=seed)
    return {"value": float(np.mean(values)), "ci": None if ci is None else list(ci)}


def segmentation_validation(
    dice: np.ndarray,
    attributes: dict[str, np.ndarray],
    *,
    n_resamples: int = 2000,
    ci_level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """{"metric": "dice", "overall": {...}, "attributes": [{"name", "groups": [...]}]}."""
    out: dict[str, Any] = {
        "metric": "dice",
        "ci_method": "percentile bootstrap of the mean",
        "bootstrap": n_resamples,
        "ci_level": ci_level,
        "seed": seed,
        "overall": {"n": int(len(dice)), "metrics": {"dice": _estimate(dice, n_resamples, ci_level, seed)}},
        "attributes": [],
    }
    for k, (name, values) in enumerate(attributes.items()):
        values = np.asarray(values).astype(str)
        groups = []
        for j, g in enumerate(sorted(set(values.tolist()))):
            d = dice[values == g]
            groups.append(
                {
                    "group": g,
                    "n": int(len(d)),
                    "metrics": {"dice": _estimate(d, n_resamples, ci_level, seed + 1000 * (k + 1) + j)},
                }
            )
        out["attributes"].append({"name": name, "groups": groups})
    return out


KEPT_METRICS = ("auroc", "tpr", "tnr", "ppv", "accuracy", "balanced_accuracy", "brier", "ece", "prevalence")


def classification_validation(
    labels: np.ndarray,
    scores: np.ndarray,
    attributes: dict[str, np.ndarray],
    *,
    n_resamples: int = 2000,
    ci_level: float = 0.95,
    seed: int = 0,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """run_audit on the validation predictions, trimmed to the metrics a model card shows."""
    from fairaudit.stats import AuditConfig, run_audit

    cfg = AuditConfig(
        bootstrap=n_resamples,
        ci_level=ci_level,
        seed=seed,
        threshold=threshold,
        min_group_size=30,
        small_reference=True,
    )
    result = run_audit(
        np.asarray(labels).astype(int),
        np.asarray(scores, dtype=float),
        {k: np.asarray(v) for k, v in attributes.items()},
        cfg,
    ).to_dict()

    def trim(metrics: dict[str, Any]) -> dict[str, Any]:
        return {m: metrics[m] for m in KEPT_METRICS if m in metrics}

    out: dict[str, Any] = {
        "ci_method": "score intervals for rates and AUROC, stratified percentile bootstrap for the rest "
        "(fairaudit.stats.run_audit; docs/statistics.md)",
        "bootstrap": n_resamples,
        "ci_level": ci_level,
        "seed": seed,
        "threshold": threshold,
        "overall": {"n": result["overall"]["n"], "metrics": trim(result["overall"]["metrics"])},
        "attributes": [],
    }
    for attr in result["attributes"]:
        out["attributes"].append(
            {
                "name": attr["name"],
                "reference": attr.get("reference"),
                "groups": [
                    {
                        "group": g["group"],
                        "n": g["n"],
                        "n_positive": g.get("n_positive"),
                        "small": g.get("small", False),
                        "metrics": trim(g["metrics"]),
                    }
                    for g in attr["groups"]
                ],
                "comparisons": [
                    {
                        k: c[k]
                        for k in (
                            "metric",
                            "group",
                            "reference",
                            "difference",
                            "p_value",
                            "p_adjusted",
                            "significant",
                        )
                        if k in c
                    }
                    for c in attr.get("comparisons", [])
                    if c.get("metric") in ("auroc", "tpr", "tnr")
                ],
            }
        )
    return out
