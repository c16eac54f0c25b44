"""The "Structures" section of report.md and report.html (`--structures`, docs/segmentation.md).

Why: the rest of a report describes the top level of results.json, which with
--structures is the first structure's audit; this section puts every structure's groups
side by side, so a tumour served worse than the liver is seen in the report, not only in
results.json.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: The metrics shown per structure (the rest are in results.json).
METRICS = ("dice", "hd95", "nsd")


def _cell(estimate: Any) -> str:
    if not isinstance(estimate, Mapping) or estimate.get("value") is None:
        return "n/a"
    text = f"{float(estimate['value']):.3f}"
    ci = estimate.get("ci")
    if isinstance(ci, list | tuple) and len(ci) == 2 and None not in ci:
        text += f" [{float(ci[0]):.3f}, {float(ci[1]):.3f}]"
    return text


def structures_view(results: Mapping[str, Any]) -> dict[str, Any]:
    """{"structures": [...]} for the templates: per structure, its rows (attribute, group,
    n, one cell per metric); {"structures": None} without --structures."""
    entries = results.get("structures")
    if not entries:
        return {"structures": None}
    unit = ((results.get("config") or {}).get("segmentation") or {}).get("distance_unit") or "mm"
    out = []
    for entry in entries:
        rows = []
        for attribute in entry.get("attributes") or []:
            for group in attribute.get("groups") or []:
                metrics = group.get("metrics") or {}
                rows.append(
                    {
                        "attribute": str(attribute.get("name", "")),
                        "group": str(group.get("group", "")),
                        "is_ref": group.get("group") == attribute.get("reference"),
                        "n": group.get("n"),
                        "cells": [_cell(metrics.get(m)) for m in METRICS],
                    }
                )
        gate = entry.get("gate")
        out.append(
            {
                "name": str(entry.get("name", "")),
                "label": entry.get("label"),
                "n_included": entry.get("n_included"),
                "overall": [
                    _cell(((entry.get("overall") or {}).get("metrics") or {}).get(m)) for m in METRICS
                ],
                "rows": rows,
                "gate": None if not gate else ("passed" if gate.get("passed") else "did not pass"),
            }
        )
    headers = [f"{m} ({unit})" if m == "hd95" else m for m in METRICS]
    return {"structures": {"entries": out, "headers": headers, "first": out[0]["name"]}}
