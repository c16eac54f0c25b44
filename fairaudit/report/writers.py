"""Write the requested report files into the output folder, each one atomically."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from fairaudit._util.atomic import atomic_write_text
from fairaudit.report.html import render_html
from fairaudit.report.junit import render_junit
from fairaudit.report.markdown import render_markdown

__all__ = ["REPORT_FILES", "write_reports"]

logger = logging.getLogger(__name__)

#: Format name -> file name in OUT_DIR (the names are part of the contract).
REPORT_FILES: dict[str, str] = {
    "json": "results.json",
    "md": "report.md",
    "html": "report.html",
    "junit": "junit.xml",
}

#: Formats written elsewhere; accepted here and skipped.
_HANDLED_ELSEWHERE: frozenset[str] = frozenset()


def results_to_json(results: Mapping[str, Any]) -> str:
    """results.json text: NaN/inf raise instead of writing invalid JSON."""
    return json.dumps(results, indent=2, allow_nan=False, ensure_ascii=False) + "\n"


_RENDERERS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "json": results_to_json,
    "md": render_markdown,
    "html": render_html,
    "junit": render_junit,
}


def write_reports(results: Mapping[str, Any], out_dir: Path, formats: Iterable[str]) -> dict[str, Path]:
    """Render and write results.json, report.md and report.html as asked; return name -> path.

    Everything is rendered before anything is written, so a rendering error leaves no
    mix of new and old files.
    """
    wanted = {f.strip().lower() for f in formats}
    unknown = wanted - set(REPORT_FILES) - _HANDLED_ELSEWHERE
    if unknown:
        raise ValueError(
            f"formats: unknown report format(s) {', '.join(sorted(unknown))}; "
            f"choose from {', '.join(sorted(set(REPORT_FILES) | _HANDLED_ELSEWHERE))}"
        )
    rendered = {name: _RENDERERS[name](results) for name in REPORT_FILES if name in wanted}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, text in rendered.items():
        path = out_dir / REPORT_FILES[name]
        atomic_write_text(path, text)
        logger.info("wrote %s", path)
        written[name] = path
    return written
