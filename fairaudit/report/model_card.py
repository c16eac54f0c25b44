"""model_card.json: the report's content for machines, written beside results.json.

Model-card style (Mitchell et al., "Model Cards for Model Reporting", 2019; the FDA draft
guidance's model card): the model, the data and who is in it, per-slice metrics with their
intervals, the key findings, the limitations and the regulatory cross-reference. Every
number is copied from results.json (nothing is recomputed), so `fairaudit report` writes the
same card again; the keys are in fairaudit/schema/model_card.schema.json and docs/reports.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fairaudit.report.blocks import Block, result_blocks
from fairaudit.report.key_findings import key_findings
from fairaudit.report.population import counts_block
from fairaudit.report.regulatory import crossref

__all__ = ["MODEL_CARD_FILE", "MODEL_CARD_VERSION", "model_card", "render_model_card"]

MODEL_CARD_FILE = "model_card.json"
MODEL_CARD_VERSION = "1"


def _estimate(value: Any) -> dict[str, Any]:
    """An ESTIMATE as the card holds it: value, interval and method (reason when undefined)."""
    if not isinstance(value, Mapping):
        return {"value": None, "ci": None, "reason": "not computed"}
    out: dict[str, Any] = {"value": value.get("value"), "ci": value.get("ci")}
    if value.get("method"):
        out["method"] = value["method"]
    if value.get("value") is None:
        out["reason"] = value.get("reason") or "undefined"
    return out


def _named(block: Block, row: dict[str, Any]) -> dict[str, Any]:
    """`row` led by the finding or structure it belongs to (none for a one-block audit)."""
    return {block.kind: block.name, **row} if block.kind else row


def _slices(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for block in result_blocks(results):
        for attribute in block.data.get("attributes") or []:
            for g in attribute.get("groups") or []:
                row: dict[str, Any] = {
                    "attribute": attribute.get("name"),
                    "group": g.get("group"),
                    "is_reference": g.get("group") == attribute.get("reference"),
                    "n": g.get("n"),
                    "small": bool(g.get("small")),
                    "metrics": {m: _estimate(e) for m, e in (g.get("metrics") or {}).items()},
                }
                out.append(_named(block, row))
    return out


def _comparisons(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each attribute's headline comparison (the key finding's), with its test."""
    out = []
    for block in result_blocks(results):
        for attribute in block.data.get("attributes") or []:
            summary = attribute.get("summary") or {}
            one = {**results, "findings": None, "structures": None, "attributes": [attribute]}
            for k in key_findings(one):
                if not k.metric or "worst_difference" not in (summary.get(k.metric) or {}):
                    continue  # nothing to compare, or a version-1 results.json
                worst = summary[k.metric]["worst_difference"]
                comp = next(
                    (
                        c
                        for c in attribute.get("comparisons") or []
                        if c.get("metric") == k.metric and c.get("group") == worst.get("group")
                    ),
                    {},
                )
                row = {
                    "attribute": attribute.get("name"),
                    "metric": k.metric,
                    "group": worst.get("group"),
                    "reference": worst.get("reference"),
                    "difference": _estimate(worst.get("difference")),
                    "p_value": worst.get("p_value"),
                    "p_adjusted": worst.get("p_adjusted"),
                    "significant": comp.get("significant"),
                    "min_detectable_difference": (comp.get("min_detectable_difference") or {}).get("value"),
                }
                out.append(_named(block, row))
    return out


def _population(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    missing = (results.get("inputs") or {}).get("missing_attributes") or {}
    out = []
    for attribute in counts_block(results).get("attributes") or []:
        groups = attribute.get("groups") or []
        total = sum(int(g.get("n") or 0) for g in groups)
        out.append(
            {
                "attribute": attribute.get("name"),
                "n": total,
                "missing": int(missing.get(attribute.get("name")) or 0),
                "groups": [
                    {
                        "group": g.get("group"),
                        "n": g.get("n"),
                        "share": (int(g.get("n") or 0) / total) if total else None,
                        "n_positive": g.get("n_positive"),
                    }
                    for g in groups
                ],
            }
        )
    return out


def _limitations(results: Mapping[str, Any]) -> list[str]:
    config = results.get("config") or {}
    names = [str(a.get("name")) for b in result_blocks(results) for a in b.data.get("attributes") or []]
    small = sorted(
        {
            f"{a.get('name')}={s}"
            for b in result_blocks(results)
            for a in b.data.get("attributes") or []
            for s in a.get("small_groups") or []
        }
    )
    out = [
        f"Only the recorded attributes were audited ({', '.join(dict.fromkeys(names)) or 'none'}); "
        "unrecorded attributes and their proxies (site, scanner) are not seen.",
        "A comparison that is not significant is not evidence of equal performance: see each key "
        "finding's detectable difference.",
        "The metrics take the reference labels as the truth; label errors that differ by group are inherited.",
        "The numbers describe this data set; they carry to another population, site or scanner only "
        "as far as it resembles this one.",
    ]
    if small:
        out.append(
            f"Groups below the minimum size ({config.get('min_group_size')}) are shown but decide nothing: "
            + ", ".join(small)
            + "."
        )
    if results.get("task") == "classification":
        out.append(f"Threshold-dependent rates depend on the threshold ({config.get('threshold')}).")
    return out


def model_card(results: Mapping[str, Any]) -> dict[str, Any]:
    """The model card of an audit, from its results.json content."""
    config = results.get("config") or {}
    inputs = results.get("inputs") or {}
    model = results.get("model")
    gate = results.get("gate")
    population = results.get("population") if isinstance(results.get("population"), Mapping) else {}
    blocks = result_blocks(results)
    return {
        "model_card_version": MODEL_CARD_VERSION,
        "fairaudit_version": results.get("fairaudit_version"),
        "created": results.get("created"),
        "title": results.get("title"),
        "model": (
            {"name": model.get("name"), "sha256": model.get("sha256")} if isinstance(model, Mapping) else None
        ),
        "task": results.get("task"),
        "intended_use": results.get("context"),
        "data": {
            "n_records": inputs.get("n_records"),
            "n_included": inputs.get("n_included"),
            "excluded": list(inputs.get("excluded") or []),
            "population": _population(results),
            "reference_population": population.get("reference"),
        },
        "evaluation": {
            "ci_level": config.get("ci_level"),
            "ci_method": config.get("ci_method"),
            "correction": config.get("correction"),
            "threshold": config.get("threshold"),
            "min_group_size": config.get("min_group_size"),
        },
        "quantitative_analysis": {
            "overall": [
                _named(
                    b,
                    {
                        "n": (b.data.get("overall") or {}).get("n"),
                        "metrics": {
                            m: _estimate(e)
                            for m, e in ((b.data.get("overall") or {}).get("metrics") or {}).items()
                        },
                    },
                )
                for b in blocks
            ],
            "slices": _slices(results),
            "comparisons": _comparisons(results),
        },
        "key_findings": [
            {
                **({k.block or "finding": k.finding} if k.finding else {}),
                "attribute": k.attribute,
                "metric": k.metric or None,
                "status": k.status,
                "sentence": k.sentence,
            }
            for k in key_findings(results)
        ],  # fmt: skip
        "gate": (
            {"outcome": gate.get("outcome"), "passed": gate.get("passed")}
            if isinstance(gate, Mapping)
            else None
        ),
        "limitations": _limitations(results),
        "regulatory_crossref": crossref(results),
    }


def render_model_card(results: Mapping[str, Any]) -> str:
    """model_card.json's text (NaN and infinity refused, as in results.json)."""
    return json.dumps(model_card(results), indent=2, allow_nan=False, ensure_ascii=False) + "\n"
