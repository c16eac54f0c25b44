"""The regulatory cross-reference: the items of regulatory.toml (FDA draft guidance, EU AI Act
Art. 10, CLAIM 2024, TRIPOD+AI) each with the report sections that answer it, or "not covered
by this audit" and what would be needed (docs/reports.md, "Regulatory cross-reference").

The items live in one data file shipped in the package, so they can be updated without code;
whether an item is covered depends only on results.json (a context, a reference population).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from typing import Any

__all__ = ["COVERED", "NOT_COVERED", "PARTLY", "SECTION_TITLES", "crossref", "load_items"]

COVERED = "covered"
PARTLY = "partly covered"
NOT_COVERED = "not covered by this audit"

#: The report's sections as the appendix names them (ids of report.html).
SECTION_TITLES: dict[str, str] = {
    "key-findings": "Key findings",
    "context": "Context",
    "population": "Who is in the data",
    "verdict": "Verdict",
    "attributes": "Attribute tables",
    "methods": "Methods",
    "limitations": "Limitations",
    "gate": "Gate",
    "signoff": "Sign-off",
    "data": "Data and provenance",
}

_REQUIRED = ("id", "framework", "source", "date", "reference", "paraphrase", "sections", "covered", "needed")


@lru_cache(maxsize=1)
def load_items() -> tuple[dict[str, Any], tuple[dict[str, Any], ...]]:
    """regulatory.toml's `meta` and items, checked: every key present, every section known."""
    text = resources.files("fairaudit.report").joinpath("regulatory.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    items = tuple(data.get("item") or ())
    for item in items:
        missing = [k for k in _REQUIRED if k not in item]
        unknown = [s for s in item.get("sections", ()) if s not in SECTION_TITLES]
        if missing or unknown:  # a packaging error, caught by the tests
            raise ValueError(
                f"regulatory.toml item {item.get('id')}: missing {missing}, unknown sections {unknown}"
            )
    return dict(data.get("meta") or {}), items


def _has_reference(results: Mapping[str, Any]) -> bool:
    population = results.get("population")
    return isinstance(population, Mapping) and isinstance(population.get("reference"), Mapping)


def crossref(results: Mapping[str, Any]) -> dict[str, Any]:
    """results.json's cross-reference: per item its status for this audit, the sections that
    answer it (only those this report has) and what would be needed where it is not covered."""
    meta, items = load_items()
    present = {"context": bool(results.get("context")), "reference_population": _has_reference(results)}
    has_gate = results.get("gate") is not None
    rows = []
    for item in items:
        rule = str(item["covered"])
        if rule == "always":
            status = COVERED
        elif rule == "partly":
            status = PARTLY
        else:
            met = PARTLY if item.get("when_met") == "partly" else COVERED
            status = met if present.get(rule, False) else NOT_COVERED
        sections = [s for s in item["sections"] if s != "gate" or has_gate]
        sections = [s for s in sections if s != "context" or present["context"]]
        if status == NOT_COVERED:
            sections = [s for s in sections if s not in ("context",)]
        rows.append(
            {
                "id": item["id"],
                "framework": item["framework"],
                "source": item["source"],
                "date": item["date"],
                "reference": item["reference"],
                "paraphrase": item["paraphrase"],
                "status": status,
                "sections": sections,
                "needed": item["needed"] if status != COVERED else "",
                "checked": item.get("checked", ""),
            }
        )
    return {
        "version": str(meta.get("version", "")),
        "disclaimer": str(meta.get("disclaimer", "")),
        "items": rows,
    }
