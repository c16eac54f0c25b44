"""A hand-made schema-2 results.json for the reviewer's sections (key findings, context,
population, model card; issue 23): race with reference A, C's sensitivity 0.85 against 1.00."""

from __future__ import annotations

from typing import Any


def est(value: float | None, low: float | None = None, high: float | None = None, reason: str = "") -> dict:
    if value is None:
        return {"value": None, "ci": None, "reason": reason or "undefined"}
    return {"value": value, "ci": [low, high]}


def group(name: str, n: int, n_pos: int, tpr: dict, fpr: dict) -> dict[str, Any]:
    return {"group": name, "n": n, "n_positive": n_pos, "small": False, "metrics": {"tpr": tpr, "fpr": fpr}}


def race_attribute(p_adjusted: float = 0.08, significant: bool = False, mdd: dict | None = None) -> dict:
    """race: A (reference) sensitivity 1.00 (0.88–1.00), C 0.85 (0.70–0.94); C − A = −0.15
    (−0.30 to −0.06); fpr B − A = +0.02 with p 0.5 (less evidence, so tpr is chosen)."""
    mdd = (
        mdd
        if mdd is not None
        else {"value": 0.23, "increase": 0.23, "decrease": 0.23, "power": 0.8, "method": "score"}
    )
    tpr_c = {
        "metric": "tpr", "group": "C", "reference": "A", "difference": est(-0.15, -0.30, -0.06),
        "ratio": est(0.85, 0.7, 0.94), "test": "newcombe_score", "p_value": 0.02,
        "p_adjusted": p_adjusted, "significant": significant, "min_detectable_difference": mdd,
    }  # fmt: skip
    fpr_b = {
        "metric": "fpr", "group": "B", "reference": "A", "difference": est(0.02, -0.04, 0.08),
        "ratio": est(1.2, 0.6, 2.0), "test": "newcombe_score", "p_value": 0.5, "p_adjusted": 1.0,
        "significant": False, "min_detectable_difference": {"value": 0.1, "power": 0.9, "method": "score"},
    }  # fmt: skip
    return {
        "name": "race",
        "reference": "A",
        "groups": [
            group("A", 100, 30, est(1.0, 0.88, 1.0), est(0.10, 0.05, 0.18)),
            group("B", 80, 30, est(0.95, 0.80, 0.99), est(0.12, 0.06, 0.22)),
            group("C", 90, 40, est(0.85, 0.70, 0.94), est(0.11, 0.05, 0.20)),
        ],
        "comparisons": [tpr_c, fpr_b],
        "omnibus": [],
        "summary": {
            "tpr": {
                "max_difference": est(0.15, 0.0, 0.3),
                "min_ratio": est(0.85, 0.7, 1.0),
                "worst_group": "C",
                "worst_difference": {
                    "group": "C",
                    "reference": "A",
                    "difference": est(-0.15, -0.30, -0.06),
                    "p_value": 0.02,
                    "p_adjusted": p_adjusted,
                    "small": False,
                },  # fmt: skip
            },
            "fpr": {
                "max_difference": est(0.02, 0.0, 0.08),
                "min_ratio": est(0.83, 0.5, 1.0),
                "worst_group": "B",
                "worst_difference": {
                    "group": "B",
                    "reference": "A",
                    "difference": est(0.02, -0.04, 0.08),
                    "p_value": 0.5,
                    "p_adjusted": 1.0,
                    "small": False,
                },  # fmt: skip
            },
        },
    }


def results(*attributes: dict, correction: str = "holm") -> dict[str, Any]:
    return {
        "schema_version": "2",
        "fairaudit_version": "0.1.0",
        "created": "2026-01-01T00:00:00Z",
        "task": "classification",
        "config": {
            "ci_level": 0.95,
            "correction": correction,
            "min_group_size": 30,
            "threshold": 0.5,
            "bootstrap": 2000,
            "ci_method": "score",
            "seed": 0,
        },  # fmt: skip
        "inputs": {"n_records": 270, "n_included": 270, "excluded": []},
        "model": None,
        "overall": {"n": 270, "metrics": {}},
        "attributes": list(attributes),
        "gate": None,
    }
