"""--title and --context: the user's words about the audit, made safe for every report.

The context (intended use, population, data source and partition) is the user's Markdown.
report.html renders it with markdown-it-py (already installed with rich) with raw HTML,
links, images and autolinks turned off, so `<script>`, `[x](javascript:...)` and remote
images show as text; its headings are moved down under the report's own. report.md quotes it
as a block with HTML, link and image characters escaped and mentions broken, so it cannot
forge a section of the report (docs/reports.md, "Title and context").
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fairaudit._util.sanitize import clean_text, neutralize_md_links
from fairaudit.errors import InputError, arg

__all__ = [
    "MAX_CONTEXT_CHARS",
    "MAX_TITLE_CHARS",
    "check_title",
    "context_html",
    "context_markdown",
    "read_context",
]

#: Longest context a report shows (longer descriptions belong in a document the context cites).
MAX_CONTEXT_CHARS = 4000
MAX_TITLE_CHARS = 200

# Headings of the context start at this level in report.html (the report's sections are h2).
_CONTEXT_HEADING = 3


def check_title(title: str | None) -> str | None:
    """The title, stripped; a usage error (exit 2) when it is empty, multi-line or too long."""
    if title is None:
        return None
    text = title.strip()
    if not text or "\n" in text or "\r" in text or len(text) > MAX_TITLE_CHARS:
        raise InputError(
            f"{arg('title')} must be one line of 1 to {MAX_TITLE_CHARS} characters.", argument="title"
        )
    return text


def read_context(path: Path | str | None) -> str | None:
    """The context file's text (UTF-8 Markdown); a clear error (exit 2) naming the file when it
    cannot be read, is not text, is empty or longer than MAX_CONTEXT_CHARS."""
    if path is None:
        return None
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("context file not found.", file=str(path), argument="context") from None
    except UnicodeDecodeError:
        raise InputError(
            "is not UTF-8 text.",
            file=str(path),
            hint="Save the context as UTF-8 Markdown.",
            argument="context",
        ) from None
    except OSError as exc:
        raise InputError(f"cannot be read ({exc.strerror}).", file=str(path), argument="context") from None
    text = text.strip()
    if not text:
        raise InputError("the context file is empty.", file=str(path), argument="context")
    if len(text) > MAX_CONTEXT_CHARS:
        raise InputError(
            f"the context is {len(text)} characters; keep it under {MAX_CONTEXT_CHARS} (intended use, "
            "population, data source and partition) and cite a longer document from it.",
            file=str(path),
            argument="context",
        )
    return text


def _markdown_it() -> Any:
    """A CommonMark parser with every way out of the page turned off."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.disable(["html_inline", "html_block", "link", "image", "autolink", "reference"])
    md.enable("table")
    return md


def context_html(text: Any) -> str:
    """The context as HTML: markdown-it renders it with raw HTML escaped and links and images
    left as text; headings start at h3 (under the report's "Context" h2)."""
    from markupsafe import Markup

    if not text:
        return Markup("")
    md = _markdown_it()
    tokens = md.parse(clean_text(str(text)))
    for token in tokens:
        if token.type in ("heading_open", "heading_close"):
            level = min(6, int(token.tag[1]) + _CONTEXT_HEADING - 1)
            token.tag = f"h{level}"
    return Markup(md.renderer.render(tokens, md.options, {}))


_MD_UNSAFE = re.compile(r"([\\<>&\[\]!`])")


def context_markdown(text: Any) -> str:
    """The context as a Markdown block quote: emphasis, lists and tables kept; HTML, links,
    images, code spans and mentions shown as text; every line quoted so that nothing in it
    reads as a section of the report."""
    if not text:
        return ""
    lines = clean_text(str(text)).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    quoted = [neutralize_md_links(_MD_UNSAFE.sub(r"\\\1", line)) for line in lines]
    return "\n".join(f"> {line}" if line else ">" for line in quoted)
