"""What the reviewer's sections of report.md and report.html show (templates/_key_findings.*,
_context.*, _population.*, _regulatory.*, _signoff.*), and recording --title, --context and
--reference-population in results.json (docs/reports.md).

Kept apart from _templates.build_view, which lays out the statistics: these sections read
the raw results (the context is the user's Markdown, rendered here for each medium).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fairaudit._util.sanitize import clean_text
from fairaudit.report.context import check_title, context_html, context_markdown, read_context
from fairaudit.report.key_findings import key_findings
from fairaudit.report.population import compare_population, population_view, read_reference_population
from fairaudit.report.regulatory import SECTION_TITLES, crossref

__all__ = ["SIGNOFF_DECISIONS", "ReviewInputs", "apply_review", "load_review", "review_view"]

#: The decisions the sign-off block offers.
SIGNOFF_DECISIONS = ("approve", "approve with conditions", "reject")


class ReviewInputs(dict):
    """--title, --context and --reference-population, read and checked (exit 2 on bad input)
    before any work: {"title", "context", "reference_population", "reference_source"}."""


def load_review(
    title: str | None = None,
    context: Path | str | None = None,
    reference_population: Path | str | None = None,
) -> ReviewInputs | None:
    """Read and check the three options; None when none is given."""
    if title is None and context is None and reference_population is None:
        return None
    return ReviewInputs(
        title=check_title(title),
        context=read_context(context),
        reference_population=read_reference_population(reference_population)
        if reference_population is not None
        else None,
        reference_source=str(reference_population) if reference_population is not None else "",
    )


def apply_review(results: dict[str, Any], review: Mapping[str, Any] | None) -> dict[str, Any]:
    """Record the review inputs in `results` (in place, and returned): `title`, `context`,
    and `population.reference` (the goodness-of-fit tests against the reference shares)."""
    if not review:
        return results
    if review.get("title"):
        results["title"] = review["title"]
    if review.get("context"):
        results["context"] = review["context"]
    shares = review.get("reference_population")
    if shares:
        population = dict(results.get("population") or {})
        population["reference"] = compare_population(
            results, shares, str(review.get("reference_source") or "")
        )
        results["population"] = population
    return results


def review_view(results: Mapping[str, Any], medium: str, brief: bool = False) -> dict[str, Any]:
    """The sections' view for `medium` ("html" or "md"): key findings, title, context (rendered
    for the medium), population table, regulatory cross-reference and sign-off decisions.
    `brief` (report.md's last resort before cutting): the cross-reference as one line."""
    context = results.get("context")
    findings = key_findings(results)
    multilabel = any(k.finding for k in findings)
    return {
        "report_title": clean_text(str(results["title"]), keep="") if results.get("title") else "",
        "key_findings": [
            {"finding": k.finding, "attribute": k.attribute, "status": k.status, "sentence": k.sentence}
            for k in findings
        ],
        "key_findings_multilabel": multilabel,
        # Per finding, in results.json's order (Jinja's groupby would sort them by name).
        "key_findings_by_finding": [
            (
                name,
                [
                    {"attribute": k.attribute, "status": k.status, "sentence": k.sentence}
                    for k in findings
                    if k.finding == name
                ],
            )
            for name in dict.fromkeys(k.finding for k in findings)
        ],
        "context_html": context_html(context) if medium == "html" and context else "",
        "context_md": context_markdown(context) if medium == "md" and context else "",
        "has_context": bool(context),
        "population": population_view(results),
        "regulatory": crossref(results),
        "regulatory_brief": brief,
        "section_titles": SECTION_TITLES,
        "signoff_decisions": SIGNOFF_DECISIONS,
    }
