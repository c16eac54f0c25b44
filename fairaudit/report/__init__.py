"""Reports rendered from one results dict: results.json, Markdown, HTML and the terminal.

Every renderer takes the results.json structure (fairaudit/schema/results.schema.json) and
nothing else, so a saved results.json can be re-rendered later.
"""

from fairaudit.report.html import render_html
from fairaudit.report.markdown import render_markdown
from fairaudit.report.terminal import print_summary
from fairaudit.report.writers import REPORT_FILES, write_reports

__all__ = ["REPORT_FILES", "print_summary", "render_html", "render_markdown", "write_reports"]
