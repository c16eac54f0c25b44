"""Rendering and writing of the normalize and augment-check reports (shared by both).

Templates live in templates/ next to the audit's (same Jinja2 environment, so HTML is
autoescaped and undefined names are errors); this module adds number formatting with
significant digits, because image statistics range from 1e-4 (noise) to 1e4 (CT values).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jinja2

FORMATS: tuple[str, ...] = ("html", "md", "json")
DASH = "—"


def sig(value: Any, digits: int = 4) -> str:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return DASH
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return DASH
    if value == 0:
        return "0"
    return f"{value:.{digits}g}"


def est(estimate: Any, digits: int = 4) -> str:
    if not isinstance(estimate, Mapping) or estimate.get("value") is None:
        return DASH
    text = sig(estimate["value"], digits)
    ci = estimate.get("ci")
    return f"{text} [{sig(ci[0], digits)}, {sig(ci[1], digits)}]" if ci else text


def pval(value: Any) -> str:
    if value is None:
        return DASH
    return "<0.001" if value < 0.001 else f"{value:.3g}"


def md(value: Any) -> str:
    from fairaudit.report._templates import md_escape

    return md_escape(value)


def environment() -> jinja2.Environment:
    from fairaudit.report._templates import get_environment

    env = get_environment().overlay()
    env.filters["sig"] = sig
    env.filters["est4"] = est
    env.filters["p"] = pval
    env.filters["mdx"] = md
    return env


def results_header(kind: str, command: str) -> dict[str, Any]:
    """The first keys of normalize.json and augment_check.json."""
    import datetime as _dt

    from fairaudit._version import __version__

    return {
        "schema_version": "1",
        "kind": kind,
        "fairaudit_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "command": command,
    }


def parse_formats(text: str) -> tuple[str, ...]:
    from fairaudit.errors import InputError

    formats = tuple(f.strip().lower() for f in text.split(",") if f.strip())
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise InputError(
            f"--format: unknown format(s) {', '.join(bad) or '(none)'}; choose from {', '.join(FORMATS)}."
        )
    return formats


def write_outputs(
    results: Mapping[str, Any],
    out: Path,
    json_name: str,
    template: str,
    formats: Iterable[str],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """results JSON, report.html and report.md, each written atomically (all rendered first)."""
    from fairaudit._util.atomic import atomic_write_text

    env = environment()
    wanted = set(formats)
    rendered: dict[str, tuple[str, str]] = {}
    if "json" in wanted:
        rendered["json"] = (
            json_name,
            json.dumps(results, indent=2, allow_nan=False, ensure_ascii=False) + "\n",
        )
    ctx = {"r": results, **(extra or {})}
    if "html" in wanted:
        rendered["html"] = ("report.html", env.get_template(f"{template}.html.j2").render(**ctx))
    if "md" in wanted:
        rendered["md"] = ("report.md", env.get_template(f"{template}.md.j2").render(**ctx))
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for key, (name, text) in rendered.items():
        atomic_write_text(out / name, text)
        files[key] = out / name
    return files
