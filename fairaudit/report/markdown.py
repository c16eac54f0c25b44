"""report.md: the GitHub-flavoured Markdown report posted as a pull-request comment."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fairaudit._util.sanitize import display_results
from fairaudit.report._templates import build_view, get_environment, is_multilabel
from fairaudit.report.review_view import review_view
from fairaudit.report.structures_view import structures_view

__all__ = ["MAX_MARKDOWN_CHARS", "render_markdown"]

logger = logging.getLogger(__name__)

#: GitHub refuses comments longer than 65,536 characters; stay clearly below.
MAX_MARKDOWN_CHARS = 65_000

_TRUNCATED = (
    "\n\n**This report was cut short to fit a pull-request comment; "
    "report.html and results.json have everything.**\n"
)


#: Row caps tried in turn, after dropping non-significant comparisons, before cutting.
_ROW_CAPS = (60, 30, 15)


def _render(
    results: Mapping[str, Any], significant_only: bool, max_rows: int | None = None, brief: bool = False
) -> str:
    template = get_environment().get_template("report.md.j2")
    view = build_view(results, significant_only=significant_only, max_rows=max_rows, brief=brief)
    # Key findings, context, population, sign-off and the regulatory appendix (docs/reports.md).
    view.update(review_view(results, "md", brief=brief))
    view.update(structures_view(results))  # --structures: every structure's groups
    return template.render(**view)


def render_markdown(results: Mapping[str, Any], max_chars: int = MAX_MARKDOWN_CHARS) -> str:
    """Render results as Markdown no longer than `max_chars`.

    When too long, comparison rows that are not significant go first (they are the
    bulk and change no conclusion); then long tables are capped, keeping the reference,
    the most significant comparisons and the checks that fail; a multi-label audit then keeps
    only each finding's headline and overall metrics, so that every finding keeps its section
    (14 findings do not fit otherwise); if it is still too long it is cut at a line break
    with a pointer to report.html.
    """
    results = display_results(results)  # controls escaped, long names capped (docs/reports.md)
    text = _render(results, significant_only=False)
    if len(text) <= max_chars:
        return text
    logger.info(
        "report.md is %d characters; leaving out comparisons that are not significant",
        len(text),
    )
    text = _render(results, significant_only=True)
    if len(text) <= max_chars:
        return text
    for cap in _ROW_CAPS:
        text = _render(results, significant_only=True, max_rows=cap)
        if len(text) <= max_chars:
            logger.info("report.md: long tables capped at %d rows", cap)
            return text
    if is_multilabel(results):
        text = _render(results, significant_only=True, max_rows=_ROW_CAPS[-1], brief=True)
        if len(text) <= max_chars:
            logger.info("report.md: each finding's attribute tables left out (report.html has them)")
            return text
    logger.warning("report.md is still %d characters; cutting it at %d", len(text), max_chars)
    budget = max(0, max_chars - len(_TRUNCATED))
    cut = text.rfind("\n", 0, budget)
    return text[: cut if cut > 0 else budget] + _TRUNCATED
