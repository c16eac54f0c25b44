"""The release comparison (results.json `baseline`) as rows the report templates print.

Rows are ordered worst first (the largest growth of a gap since the baseline), so the
Markdown can keep the top of the list when a pull-request comment must stay short.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

KEY_METRICS = ("tpr", "fpr", "auroc", "brier", "accuracy", "selection_rate")
MD_MAX_ROWS = 40


def _increase(row: Mapping[str, Any]) -> float:
    inc = row.get("disparity_increase") or {}
    value = inc.get("value")
    return float("-inf") if value is None else float(value)


def baseline_view(section: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Flatten attributes x groups x metrics; None when no baseline was given."""
    if not section:
        return None
    rows = []
    for attr in section.get("attributes") or []:
        for g in attr.get("groups") or []:
            for metric, row in (g.get("metrics") or {}).items():
                rows.append(
                    {
                        "attribute": attr.get("name"),
                        "reference": attr.get("reference"),
                        "group": g.get("group"),
                        "is_reference": g.get("group") == attr.get("reference"),
                        "n": g.get("n"),
                        "small": g.get("small", False),
                        "metric": metric,
                        "key": metric in KEY_METRICS,
                        **row,
                    }
                )
    rows.sort(key=lambda r: (-_increase(r), r["attribute"] or "", r["metric"], r["group"] or ""))
    gaps = [r for r in rows if not r["is_reference"] and r["key"]]
    widened = [
        r
        for r in gaps
        if (r.get("disparity_increase") or {}).get("ci") and r["disparity_increase"]["ci"][0] > 0
    ]
    return {
        **{k: v for k, v in section.items() if k != "attributes"},
        "rows": rows,
        "gap_rows": gaps,
        "gap_rows_md": gaps[:MD_MAX_ROWS],
        "gap_rows_hidden": max(0, len(gaps) - MD_MAX_ROWS),
        "n_widened": len(widened),
        "n_significant": sum(1 for r in rows if r.get("significant")),
    }
