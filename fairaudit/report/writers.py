"""Write the requested report files into the output folder, each one atomically.

The one report writer of every command: the audit's results.json, report.md, report.html
and junit.xml (`AUDIT_REPORTS`), and normalize's and augment-check's JSON and reports
(`fairaudit.report.image_reports.image_reports`) differ only in their `ReportSet`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fairaudit._util.atomic import atomic_write_text
from fairaudit.report.html import render_html
from fairaudit.report.junit import render_junit
from fairaudit.report.markdown import render_markdown
from fairaudit.report.model_card import MODEL_CARD_FILE, render_model_card

__all__ = ["AUDIT_REPORTS", "REPORT_FILES", "ReportSet", "results_to_json", "write_reports"]

logger = logging.getLogger(__name__)

#: Format name -> file name in OUT_DIR (the names are part of the contract).
REPORT_FILES: dict[str, str] = {
    "json": "results.json",
    "md": "report.md",
    "html": "report.html",
    "junit": "junit.xml",
    "model_card": MODEL_CARD_FILE,  # written with results.json (docs/reports.md, "model_card.json")
}

#: Formats written elsewhere; accepted here and skipped.
_HANDLED_ELSEWHERE: frozenset[str] = frozenset()


def results_to_json(results: Mapping[str, Any]) -> str:
    """results.json text: NaN/inf raise instead of writing invalid JSON."""
    return json.dumps(results, indent=2, allow_nan=False, ensure_ascii=False) + "\n"


@dataclass(frozen=True)
class ReportSet:
    """What a command can write: format -> file name (in writing order) and format -> renderer."""

    files: Mapping[str, str]
    renderers: Mapping[str, Callable[[Mapping[str, Any]], str]]


AUDIT_REPORTS = ReportSet(
    files=REPORT_FILES,
    renderers={
        "json": results_to_json,
        "md": render_markdown,
        "html": render_html,
        "junit": render_junit,
        "model_card": render_model_card,
    },
)


def write_reports(
    results: Mapping[str, Any], out_dir: Path, formats: Iterable[str], reports: ReportSet = AUDIT_REPORTS
) -> dict[str, Path]:
    """Render and write the requested formats of `reports` (the audit's by default); return
    format -> path.

    Everything is rendered before anything is written, so a rendering error leaves no
    mix of new and old files; each file is written atomically (fairaudit._util.atomic).
    """
    wanted = {f.strip().lower() for f in formats}
    if "json" in wanted and "model_card" in reports.files:
        wanted.add("model_card")  # the model card goes wherever results.json goes
    unknown = wanted - set(reports.files) - _HANDLED_ELSEWHERE
    if unknown:
        raise ValueError(
            f"formats: unknown report format(s) {', '.join(sorted(unknown))}; "
            f"choose from {', '.join(sorted(set(reports.files) | _HANDLED_ELSEWHERE))}"
        )
    rendered = {name: reports.renderers[name](results) for name in reports.files if name in wanted}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, text in rendered.items():
        path = out_dir / reports.files[name]
        atomic_write_text(path, text)
        logger.info("wrote %s", path)
        written[name] = path
    return written
