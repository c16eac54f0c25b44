"""A hand-built results.json (classification and segmentation) and Markdown table readers,
for the report, junit, gate and curve tests."""

from __future__ import annotations

import json
import re
from typing import Any

XSS = "<script>alert(1)</script>"


PIPE = "A|B"


def est(value: float | None, low: float | None = None, high: float | None = None, reason=None):
    """An ESTIMATE as docs/statistics.md ("Metrics") defines it."""
    if value is None:
        return {"value": None, "ci": None, "reason": reason or "undefined"}
    return {"value": value, "ci": [low, high]}


def group(name: str, n: int, n_pos: int, small: bool, tpr, fpr, auroc) -> dict[str, Any]:
    return {
        "group": name,
        "n": n,
        "n_positive": n_pos,
        "n_negative": n - n_pos,
        "small": small,
        "metrics": {"tpr": tpr, "fpr": fpr, "auroc": auroc},
    }


def comparison(metric, name, ref, diff, ratio, test, p, p_adj, significant, **extra):
    row = {
        "metric": metric,
        "group": name,
        "reference": ref,
        "difference": diff,
        "ratio": ratio,
        "test": test,
        "p_value": p,
        "p_adjusted": p_adj,
        "significant": significant,
    }
    row.update(extra)
    return row


def make_results() -> dict[str, Any]:
    """Two attributes; hostile group names; a null metric; a small group; a mixed gate."""
    sex_groups = [
        group("F", 420, 120, False, est(0.812, 0.790, 0.833), est(0.101, 0.080, 0.125),
              est(0.902, 0.881, 0.920)),
        group("M", 380, 110, False, est(0.745, 0.701, 0.788), est(0.143, 0.112, 0.171),
              est(0.871, 0.845, 0.896)),
        group(XSS, 12, 0, True, est(None, reason="no positive cases (TP+FN = 0)"),
              est(0.167, 0.0, 0.417), est(None, reason="only one class in the group")),
    ]  # fmt: skip
    race_groups = [
        group("White", 500, 140, False, est(0.801, 0.770, 0.830), est(0.110, 0.090, 0.131),
              est(0.895, 0.875, 0.913)),
        group(PIPE, 312, 90, False, est(0.760, 0.710, 0.806), est(0.130, 0.098, 0.160),
              est(0.880, 0.851, 0.905)),
    ]  # fmt: skip
    return {
        "schema_version": "1",
        "fairaudit_version": "0.1.0",
        "created": "2024-05-01T12:00:00Z",
        "command": "fairaudit audit --predictions preds.csv --attribute sex --attribute race",
        "task": "classification",
        "config": {
            "bootstrap": 2000,
            "ci_level": 0.95,
            "ci_method": "percentile",
            "seed": 0,
            "threshold": 0.5,
            "min_group_size": 30,
            "correction": "holm",
            "permutations": 1000,
            "threshold_policy": "fixed",
            "id_column": "patient_id",
        },
        "inputs": {
            "n_records": 830,
            "n_included": 812,
            "excluded": [
                {"reason": "no matching demographics row", "count": 11},
                {"reason": "missing score", "count": 7},
            ],
        },
        "model": {"name": "bundled:cxr-densenet", "sha256": "ab" * 32},
        "overall": {
            "n": 812,
            "metrics": {
                "tpr": est(0.780, 0.752, 0.806),
                "fpr": est(0.121, 0.104, 0.139),
                "auroc": est(0.888, 0.873, 0.902),
            },
        },
        "attributes": [
            {
                "name": "sex",
                "reference": "F",
                "small_groups": [XSS],
                "groups": sex_groups,
                "comparisons": [
                    comparison(
                        "tpr",
                        "M",
                        "F",
                        est(-0.067, -0.118, -0.016),
                        est(0.917, 0.858, 0.980),
                        "fisher_exact",
                        0.0004,
                        0.0024,
                        True,
                    ),
                    comparison(
                        "fpr",
                        "M",
                        "F",
                        est(0.042, 0.005, 0.079),
                        est(1.416, 1.050, 1.850),
                        "fisher_exact",
                        0.031,
                        0.124,
                        False,
                    ),
                    comparison(
                        "auroc",
                        "M",
                        "F",
                        est(-0.031, -0.064, 0.002),
                        est(0.966, 0.930, 1.002),
                        "delong",
                        0.068,
                        0.204,
                        False,
                    ),
                    comparison(
                        "tpr",
                        XSS,
                        "F",
                        est(None, reason="no positive cases (TP+FN = 0)"),
                        est(None, reason="no positive cases (TP+FN = 0)"),
                        "fisher_exact",
                        None,
                        None,
                        False,
                        reason="no positive cases (TP+FN = 0)",
                        note="small group",
                    ),
                ],  # fmt: skip
                "omnibus": [
                    {
                        "metric": "tpr",
                        "test": "chi2",
                        "p_value": 0.0011,
                        "statistic": 10.9,
                        "df": 1,
                    },
                    {
                        "metric": "auroc",
                        "test": "kruskal",
                        "p_value": None,
                        "reason": "one group has a single class",
                    },
                ],  # fmt: skip
                "summary": {
                    "tpr": {
                        "max_difference": est(0.067, 0.016, 0.118),
                        "min_ratio": est(0.917, 0.858, 0.980),
                        "worst_group": "M",
                    },
                    "fpr": {
                        "max_difference": est(0.066, 0.010, 0.300),
                        "min_ratio": est(0.706, 0.540, 0.952),
                        "worst_group": XSS,
                    },
                },  # fmt: skip
            },
            {
                "name": "race",
                "reference": "White",
                "small_groups": [],
                "groups": race_groups,
                "comparisons": [
                    comparison(
                        "tpr",
                        PIPE,
                        "White",
                        est(-0.041, -0.099, 0.017),
                        est(0.949, 0.879, 1.022),
                        "fisher_exact",
                        0.21,
                        0.42,
                        False,
                    ),
                    comparison(
                        "auroc",
                        PIPE,
                        "White",
                        est(-0.015, -0.050, 0.020),
                        est(0.983, 0.944, 1.023),
                        "delong",
                        0.41,
                        0.41,
                        False,
                    ),
                ],  # fmt: skip
                "omnibus": [{"metric": "tpr", "test": "chi2", "p_value": 0.21}],
                "summary": {
                    "tpr": {
                        "max_difference": est(0.041, 0.0, 0.099),
                        "min_ratio": est(0.949, 0.879, 1.022),
                        "worst_group": PIPE,
                    },
                },  # fmt: skip
            },
        ],
        "gate": {
            "passed": False,
            "decide": "no_evidence_of_harm",
            "policy": {"metrics": ["tpr", "auroc"], "max_abs_difference": 0.05},
            "checks": [
                {
                    "rule": "max_abs_difference",
                    "metric": "tpr",
                    "attribute": "sex",
                    "group": "M",
                    "bound": 0.05,
                    "observed": est(0.067, 0.051, 0.118),
                    "status": "fail",
                    "decides": True,
                },
                {
                    "rule": "max_abs_difference",
                    "metric": "auroc",
                    "attribute": "race",
                    "group": PIPE,
                    "bound": 0.05,
                    "observed": est(0.015, 0.0, 0.040),
                    "status": "pass",
                    "decides": True,
                },
                {
                    "rule": "min_ratio",
                    "metric": "tpr",
                    "attribute": "race",
                    "group": PIPE,
                    "bound": 0.8,
                    "observed": est(0.949, 0.790, 0.990),
                    "status": "inconclusive",
                    "decides": True,
                },
                {
                    "rule": "max_abs_difference",
                    "metric": "tpr",
                    "attribute": "sex",
                    "group": XSS,
                    "bound": 0.05,
                    "observed": est(None, reason="no positive cases (TP+FN = 0)"),
                    "status": "inconclusive",
                    "decides": False,
                    "note": "small group (n < 30): does not decide the gate",
                },
            ],  # fmt: skip
        },
    }


def md_cells(line: str) -> list[str]:
    """Split a GFM table row on unescaped pipes."""
    inner = line.strip()
    assert inner.startswith("|") and inner.endswith("|"), line
    return re.split(r"(?<!\\)\|", inner[1:-1])


def md_tables(md: str) -> list[list[str]]:
    tables: list[list[str]] = []
    current: list[str] = []
    for line in md.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    return tables


def make_segmentation_results() -> dict[str, Any]:
    """Segmentation: no n_positive, distances outside [0, 1], no model, no gate."""
    results = make_results()
    results["task"] = "segmentation"
    results["config"]["threshold"] = None
    results["model"] = None
    results["gate"] = None
    results["overall"]["metrics"] = {"dice": est(0.81, 0.79, 0.83), "hd95": est(4.2, 3.1, 5.6)}
    for attribute in results["attributes"]:
        attribute["comparisons"] = [
            comparison("hd95", g["group"], attribute["reference"], est(1.5, 0.2, 2.9),
                       est(1.4, 1.05, 1.8), "mann_whitney_u", 0.02, 0.04, True)
            for g in attribute["groups"] if g["group"] != attribute["reference"]
        ]  # fmt: skip
        attribute["omnibus"] = [
            {"metric": "dice", "test": "kruskal", "p_value": 0.3, "statistic": 2.4, "df": 2.0}
        ]
        attribute["summary"] = {
            "hd95": {"max_difference": est(1.5, 0.2, 2.9), "min_ratio": est(0.7, 0.5, 0.95),
                     "worst_group": attribute["groups"][1]["group"]},
        }  # fmt: skip
        for i, g in enumerate(attribute["groups"]):
            g["n_positive"] = None
            g.pop("n_negative")
            g["metrics"] = {
                "dice": est(0.8 - 0.02 * i, 0.75 - 0.02 * i, 0.85 - 0.02 * i),
                "hd95": est(3.0 + i, 2.0 + i, 4.5 + i)
                if i < 2
                else est(None, reason="empty predicted mask in every case"),
            }
    return json.loads(json.dumps(results, allow_nan=False))
