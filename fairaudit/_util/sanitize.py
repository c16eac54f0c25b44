"""What a user's string may carry into an output file: each rule written once (docs/reports.md).

Group names, ids and file names come from users' CSV cells and file systems. Before they
reach an output they pass through here:

* control characters, lone surrogates, Unicode noncharacters (U+FFFE, U+FFFF, ...) and
  bidirectional overrides are shown as visible escapes (``\\x1b``, ``\\ufffe``): junit.xml
  stays well-formed XML, and no report or terminal line carries a raw escape sequence;
* a name longer than :data:`NAME_LIMIT` characters is shortened, with a stable digest of
  the full value, so one huge cell cannot blow up a report and two long names stay distinct;
* a CSV cell that a spreadsheet would run as a formula is neutralised as OWASP recommends
  (a leading single quote, the field quoted);
* in Markdown, @mentions, autolinked URLs and issue references are broken with a zero-width
  space, so report.md pasted into a pull request pings and links nobody.

This module imports nothing heavy: the CSV readers and writers use it as well as the reports.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import IO, Any

import pandas as pd

__all__ = [
    "NAME_LIMIT",
    "TEXT_LIMIT",
    "cap",
    "clean_text",
    "csv_cell",
    "display_name",
    "display_results",
    "frame_to_csv",
    "neutralize_md_links",
    "write_csv",
]

#: Longest group or attribute name a report shows in full; longer ones are shortened.
NAME_LIMIT = 64
#: Longest other string (a reason, a note, the command) a report shows in full.
TEXT_LIMIT = 4096
#: Hex digits of the SHA-256 kept in a shortened value.
_DIGEST_HEX = 12

# Characters never written raw: C0 controls but tab, newline and carriage return (which
# each renderer already treats as white space), DEL and C1 controls, lone surrogates, the
# noncharacters (U+FDD0-U+FDEF and the last two code points of every plane; XML 1.0 forbids
# U+FFFE and U+FFFF), and the bidirectional embeddings, overrides and isolates that can make
# a line read differently from what it holds.
_NONCHARACTERS = "".join(chr(plane << 16 | 0xFFFE) + chr(plane << 16 | 0xFFFF) for plane in range(0x11))
_UNSAFE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\u202a-\u202e\u2066-\u2069"
    + _NONCHARACTERS
    + "]"
)
_LINE_BREAKS = re.compile(r"[\t\r\n]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def clean_text(value: Any, *, keep: str = "\t\n\r") -> str:
    """`value` as text with every unsafe character shown as a visible escape (\\x00, \\ufffe).

    Escaping rather than deleting keeps "A\\x00" and "A\\x01" two different groups.
    `keep`: which of tab, newline and carriage return stay raw (the reports' renderers treat
    them as white space). A terminal does not: a carriage return overwrites the line, and a
    newline inside a file name forges a log line, so the CLI escapes them (keep="" for a
    name, "\\t\\n" for a whole message; fairaudit.cli._common).
    """
    text = value if isinstance(value, str) else str(value)
    if _UNSAFE.search(text):
        text = _UNSAFE.sub(_escape, text)
    breaks = "".join(c for c in "\t\n\r" if c not in keep)
    if breaks and any(c in text for c in breaks):
        text = re.sub(f"[{breaks}]", _escape, text)
    return text


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:_DIGEST_HEX]


def cap(value: str, limit: int = NAME_LIMIT, *, original: str | None = None) -> str:
    """`value` if at most `limit` characters, else its start, an ellipsis and a digest.

    The digest (the first 12 hex digits of the SHA-256 of `original`, else of `value`, as
    UTF-8) keeps two long values that share their start distinct, and is the same on every
    run, so a reader can find which input value a shortened name stands for.
    """
    if len(value) <= limit:
        return value
    suffix = f"… {_digest(value if original is None else original)}"
    return value[: max(0, limit - len(suffix))] + suffix


def display_name(value: Any, limit: int = NAME_LIMIT) -> str:
    """A group or attribute name as every report shows it: cleaned, then capped."""
    text = value if isinstance(value, str) else str(value)
    return cap(clean_text(text), limit, original=text)


#: Keys of results.json whose strings are group or attribute names (capped at NAME_LIMIT).
_NAME_KEYS = frozenset(
    {
        "group",
        "reference",
        "worst_group",
        "name",
        "attribute",
        "attributes",
        "small_groups",
        "groups",
        "finding",
        "label_column",
        "score_column",
    }
)


def display_results(value: Any, key: str | None = None) -> Any:
    """A copy of a results dict that every report may show as is: every string cleaned,
    names capped at NAME_LIMIT and other strings at TEXT_LIMIT. results.json itself is
    written from the original (docs/reports.md, "What a value may add to a report")."""
    if isinstance(value, str):
        return display_name(value) if key in _NAME_KEYS else display_name(value, TEXT_LIMIT)
    if isinstance(value, Mapping):
        return {
            (display_name(k) if isinstance(k, str) else k): display_results(
                v, k if isinstance(k, str) else key
            )
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [display_results(v, key) for v in value]
    return value


# --------------------------------------------------------------------------- Markdown

# GitHub turns these into links or notifications even after Markdown backslash escapes
# (its filters run on the rendered text): @user and @org/team mentions, e-mail addresses,
# scheme URLs, www. hosts and #123 issue references.
_MD_MENTION = re.compile(r"@(?=[0-9A-Za-z_])")
_MD_SCHEME = re.compile(r"(?i)(?<=[a-z0-9+.\-]):(?=//)")
_MD_WWW = re.compile(r"(?i)\b(www)(?=\.)")
_MD_ISSUE = re.compile(r"#(?=[0-9])")
_ZWSP = "&#8203;"  # a zero-width space, written as an entity so report.md shows it is there


def neutralize_md_links(text: str) -> str:
    """Break mentions, autolinks and issue references in Markdown text with a zero-width
    space: "@octocat" renders as "@octocat" but pings nobody, "https://x" is not a link."""
    text = _MD_ISSUE.sub("#" + _ZWSP, text)  # first: the entities inserted below hold "#8203"
    text = _MD_MENTION.sub("@" + _ZWSP, text)
    text = _MD_SCHEME.sub(":" + _ZWSP, text)
    return _MD_WWW.sub(r"\1" + _ZWSP, text)


# --------------------------------------------------------------------------- CSV

# OWASP, "CSV Injection": a cell starting with = + - @, a tab or a carriage return (and
# their full-width forms, which some spreadsheets fold) may be run as a formula.
_FORMULA = re.compile("^[=+\\-@\t\r\n\uff1d\uff0b\uff0d\uff20]")
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
_NEEDS_QUOTES = re.compile(r'[,"\r\n]')


def csv_cell(value: Any, *, numeric: bool = False) -> str:
    """One CSV field, quoted where needed; a formula-like cell gets a leading ' and quotes.

    `numeric`: the column holds numbers, so a plain number such as -0.5 stays a number.
    """
    text = "" if value is None else value if isinstance(value, str) else str(value)
    risky = bool(_FORMULA.match(text)) and not (numeric and _NUMBER.match(text))
    if risky:
        text = "'" + text
    if risky or _NEEDS_QUOTES.search(text):
        return '"' + text.replace('"', '""') + '"'
    return text


def _column_fields(column: pd.Series, numeric: bool) -> pd.Series:
    """csv_cell over a column, vectorised (a manifest has a few rows per input file)."""
    if column.dtype.kind == "f":
        text = column.map(lambda v: "" if v != v else repr(float(v)))
    elif column.dtype.kind in "iub":
        text = column.astype(str)
    else:
        text = column.map(lambda v: "" if v is None or (isinstance(v, float) and v != v) else str(v))
    text = text.astype(object)
    if len(text) == 0:
        return text
    risky = text.str.match(_FORMULA).fillna(False).astype(bool)
    if numeric:
        risky &= ~text.str.match(_NUMBER).fillna(False).astype(bool)
    text = text.where(~risky, "'" + text)
    quote = risky | text.str.contains(_NEEDS_QUOTES).fillna(False).astype(bool)
    return text.where(~quote, '"' + text.str.replace('"', '""', regex=False) + '"')


def frame_to_csv(frame: pd.DataFrame, *, header: bool = True, numeric: Iterable[str] = ()) -> str:
    """`frame` as CSV text (no index, "\\n" line ends), every field passed through csv_cell."""
    numbers = set(numeric)
    lines = []
    if header:
        lines.append(",".join(csv_cell(c) for c in frame.columns) + "\n")
    if len(frame) and len(frame.columns):
        fields = [_column_fields(frame.iloc[:, i], c in numbers) for i, c in enumerate(frame.columns)]
        joined = fields[0]
        for f in fields[1:]:
            joined = joined + "," + f
        lines.append("\n".join(joined.tolist()) + "\n")
    return "".join(lines)


def write_csv(
    frame: pd.DataFrame, handle: IO[str], *, header: bool = True, numeric: Iterable[str] = ()
) -> None:
    """Write `frame` to an open text file as frame_to_csv does."""
    handle.write(frame_to_csv(frame, header=header, numeric=numeric))
