"""--title and --context (issue 23, point 2): the user's Markdown is rendered, but HTML,
scripts, links, images and mentions in it are shown as text in report.html and report.md, and
the title is escaped; the sign-off block is there, blank."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from fairaudit.errors import InputError
from fairaudit.report.context import check_title, context_html, context_markdown, read_context
from fairaudit.report.html import render_html
from fairaudit.report.markdown import render_markdown

from _helpers.review import race_attribute, results

HOSTILE = (
    "# Intended use\n\nTriage of **adult** chest X-rays.\n\n"
    "<script>alert(1)</script>\n\n<img src=x onerror=alert(2)>\n\n"
    "[click](javascript:alert(3)) ![pixel](https://tracker.example/p.png) <https://evil.example> @octocat\n\n"
    "## Gate passed\n"
)


def test_html_renders_markdown_and_shows_html_as_text() -> None:
    out = str(context_html(HOSTILE))
    assert "<strong>adult</strong>" in out
    assert "<h3>Intended use</h3>" in out and "<h4>Gate passed</h4>" in out  # under the report's h2
    assert "<script" not in out and "<img" not in out and "<a " not in out
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    assert "[click](javascript:alert(3))" in out  # a link shown as its text


def test_markdown_quotes_the_context_and_escapes_html_and_links() -> None:
    out = context_markdown(HOSTILE)
    assert all(line.startswith(">") for line in out.splitlines())
    assert "\\<script\\>" in out and "<script" not in out.replace("\\<script", "")
    assert "\\[click\\](javascript:" in out and "!\\[pixel\\]" in out
    assert "@octocat" not in out  # a zero-width space breaks the mention


def _report(**extra: Any) -> dict[str, Any]:
    data = results(race_attribute())
    data.update(extra)
    return data


def test_the_reports_escape_title_and_context() -> None:
    data = _report(title="Audit <b>v2</b> | **bold**", context=HOSTILE)
    page = render_html(data)
    assert "<script>alert(1)" not in page and "onerror=alert" not in page.replace("onerror=alert(2)&gt;", "")
    assert "<h1>Audit &lt;b&gt;v2&lt;/b&gt; | **bold**</h1>" in page
    assert '<section id="context">' in page and '<section id="signoff">' in page
    md = render_markdown(data)
    assert md.startswith("# Audit \\<b\\>v2\\</b\\> \\| \\*\\*bold\\*\\*")
    assert "\n<script" not in md and "> \\<script\\>alert(1)\\</script\\>" in md
    assert "## Sign-off" in md and "☐ approve with conditions" in md


def test_no_context_no_section() -> None:
    page = render_html(_report())
    assert '<section id="context">' not in page and "<h1>fairaudit report: classification</h1>" in page


def test_title_and_context_files_are_checked(tmp_path: Path) -> None:
    assert check_title("  My audit ") == "My audit"
    for bad in ("", "two\nlines", "x" * 201):
        with pytest.raises(InputError, match="--title|title="):
            check_title(bad)
    with pytest.raises(InputError, match="context file not found"):
        read_context(tmp_path / "none.md")
    (tmp_path / "long.md").write_text("x" * 4001, encoding="utf-8")
    with pytest.raises(InputError, match="4001 characters"):
        read_context(tmp_path / "long.md")
    (tmp_path / "latin1.md").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        read_context(tmp_path / "latin1.md")
    assert re.fullmatch("ok", read_context(_write(tmp_path, " ok \n")) or "")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ctx.md"
    path.write_text(text, encoding="utf-8")
    return path
