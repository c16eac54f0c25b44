"""The normalize and augment-check reports (shared by both), written by the audit's writer.

Templates live in templates/ next to the audit's (same Jinja2 environment, so HTML is
autoescaped and undefined names are errors); these reports show numbers with significant
digits (fairaudit._util.formatting.fmt_sig), because image statistics range from 1e-4
(noise) to 1e4 (CT values).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import jinja2

from fairaudit._util.formatting import fmt_est, fmt_p, fmt_sig

if TYPE_CHECKING:
    from fairaudit.report.writers import ReportSet

FORMATS: tuple[str, ...] = ("html", "md", "json")


def est(estimate: Any, digits: int = 4) -> str:
    """An estimate with its interval in significant digits (image statistics vary in scale)."""
    return fmt_est(estimate, digits, fmt_sig)


def pval(value: Any) -> str:
    """A p-value without trailing zeros ('0.05'), as these reports have always shown it."""
    return fmt_p(value, trailing_zeros=False)


def md(value: Any) -> str:
    from fairaudit.report._templates import md_escape

    return md_escape(value)


def environment() -> jinja2.Environment:
    from fairaudit.report._templates import get_environment

    env = get_environment().overlay()
    env.filters["sig"] = fmt_sig
    env.filters["est4"] = est
    env.filters["p"] = pval
    env.filters["mdx"] = md
    return env


def results_header(kind: str, command: str) -> dict[str, Any]:
    """The first keys of normalize.json and augment_check.json (fairaudit.schema.header)."""
    from fairaudit.schema import IMAGE_SCHEMA_VERSION, header

    return header(command, schema_version=IMAGE_SCHEMA_VERSION, kind=kind)


def parse_formats(text: str, allowed: tuple[str, ...] = FORMATS) -> tuple[str, ...]:
    """'html,md' -> ("html", "md"); InputError on a format not in `allowed`, or none at all."""
    from fairaudit.errors import InputError, arg

    formats = tuple(f.strip().lower() for f in text.split(",") if f.strip())
    bad = [f for f in formats if f not in allowed]
    if bad or not formats:
        raise InputError(
            f"{arg('formats')}: unknown format(s) {', '.join(bad) or '(none)'}; choose from {', '.join(allowed)}.",
            argument="formats",
        )
    return formats


def image_reports(json_name: str, template: str, extra: Mapping[str, Any] | None = None) -> ReportSet:
    """What normalize and augment-check write through the one report writer
    (fairaudit.report.writers.write_reports): `json_name`, report.html and report.md, from
    `template`.{html,md}.j2 with the results as `r` and `extra` (the plots) beside them."""
    from fairaudit.report.writers import ReportSet, results_to_json

    env = environment()

    def page(suffix: str) -> Callable[[Mapping[str, Any]], str]:
        return lambda results: env.get_template(f"{template}.{suffix}.j2").render(r=results, **(extra or {}))

    return ReportSet(
        files={"json": json_name, "html": "report.html", "md": "report.md"},
        renderers={"json": results_to_json, "html": page("html"), "md": page("md")},
    )
