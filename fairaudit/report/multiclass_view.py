"""A multi-class audit (results.json `multiclass`) as the report templates lay it out: one
section per class (the single-label analysis of its one-vs-rest block) and the confusion
matrices, overall and per group (templates/_multiclass.*.j2, docs/multiclass.md).

Class names are user strings (the labels' values or the predictions' column names): they are
cleaned and capped like group names here, and escaped by each medium's template.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fairaudit._util.formatting import DASH, fmt_num

#: A confusion matrix's cells shown per group before the report points to results.json.
MAX_MATRIX_CLASSES = 20


def _share(value: Any) -> str:
    return DASH if not isinstance(value, (int, float)) else f"{100.0 * float(value):.1f}%"


def matrix_view(block: Mapping[str, Any], classes: list[str]) -> dict[str, Any]:
    """One confusion matrix: per true class its counts and row shares, by predicted class."""
    counts = block.get("counts") or []
    normalized = block.get("normalized") or []
    rows = []
    for i, name in enumerate(classes):
        c = counts[i] if i < len(counts) else []
        s = normalized[i] if i < len(normalized) else []
        rows.append(
            {
                "name": name,
                "n": fmt_num(sum(int(v) for v in c)),
                "cells": [
                    {
                        "count": fmt_num(c[j] if j < len(c) else None),
                        "share": _share(s[j] if j < len(s) else None),
                        "diagonal": i == j,
                    }
                    for j in range(len(classes))
                ],
            }
        )
    return {"n": fmt_num(block.get("n")), "rows": rows}


def multiclass_view(
    results: Mapping[str, Any], analysis_of: Any, primary: Any, options: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The view of results.json's `multiclass` (None for other audits). `analysis_of` is
    fairaudit.report._templates._analysis_view, applied to each class's block."""
    from fairaudit.report._templates import finding_name

    section = results.get("multiclass")
    if not isinstance(section, Mapping):
        return None
    classes = [finding_name(c) for c in section.get("classes") or []]
    per_class = []
    for index, block in enumerate(section.get("per_class") or [], start=1):
        if not isinstance(block, Mapping):
            continue
        name = finding_name(block.get("class"))
        analysis = analysis_of(block, primary=primary, threshold="argmax", finding=name, **options)
        per_class.append(
            {
                **analysis,
                "name": name,
                "index": index,
                "anchor": f"class-{index}",
                "score_column": finding_name(block.get("score_column")),
                "n": fmt_num(block.get("n")),
                "n_positive": fmt_num(block.get("n_positive")),
            }
        )
    confusion = section.get("confusion") or {}
    shown = len(classes) <= MAX_MATRIX_CLASSES
    groups = []
    if shown:
        for attribute in confusion.get("attributes") or []:
            for g in attribute.get("groups") or []:
                groups.append(
                    {
                        "attribute": finding_name(attribute.get("name")),
                        "group": finding_name(g.get("group")),
                        **matrix_view(g, classes),
                    }
                )
    return {
        "classes": classes,
        "n_classes": len(classes),
        "label_column": finding_name(section.get("label_column")),
        "per_class": per_class,
        "overall": matrix_view(confusion.get("overall") or {}, classes) if shown else None,
        "groups": groups,
        "matrices_shown": shown,
        "significant": [s for c in per_class for s in c["significant"]],
    }
