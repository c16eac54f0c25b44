"""Every CSV record must have the header's number of fields (docs/threat-model.md).

pandas pads a short row with empty cells, reads rows one field longer than the header as
an index column (shifting every value one column to the left, so that a message blames
the wrong column), and, reading only some columns (usecols), drops extra fields unseen.
So the field counts are checked here, once per file, before pandas reads the records, and
the first ragged record is named by its spreadsheet row (the header is row 1) and its
field count, never by its values (a value may be a patient identifier).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from fairaudit.errors import InputError

#: How much of the file one step of the byte count holds.
BLOCK_BYTES = 16 << 20


def _ragged(path: Path, row: int, fields: int, expected: int) -> InputError:
    return InputError(
        f"this row has {fields} field{'s' if fields != 1 else ''} where the header has {expected}.",
        file=str(path),
        row=row,
        hint="A separator is missing or extra on that row, or a value holding the separator is not "
        "in double quotes; fix the row so that every row has the header's columns.",
    )


def _plain(part: bytes) -> bool:
    """Lines of `part` are records: no double quote, and no carriage return but in CRLF."""
    return b'"' not in part and part.count(b"\r") == part.count(b"\r\n")


def check_field_counts(path: Path, sep: str, expected: int) -> None:
    """InputError naming the first record whose field count is not `expected`.

    A blank row (only separators and spaces) is allowed, as pandas skips it. Lines are
    counted in blocks of bytes with numpy (a separator is ASCII, so never inside a UTF-8
    character): fast enough to cost less than pandas' own read. From the first block that
    holds a double quote (a quoted value may hold separators and line breaks) or a lone
    carriage return on, the csv module reads the records instead.
    """
    import numpy as np

    delim = ord(sep)
    row = 1  # spreadsheet row of the last record counted (the header is row 1)
    with path.open("rb") as fh:
        first = fh.readline()
        if not _plain(first):
            return _check_records(path, sep, expected, 0, 0)
        offset = len(first)
        carry = b""
        while True:
            block = fh.read(BLOCK_BYTES)
            data = carry + block
            cut = data.rfind(b"\n") + 1 if block else len(data)
            if block and cut == 0:  # a line longer than a block: read on
                carry = data
                continue
            part, carry = data[:cut], data[cut:]
            if not _plain(part):
                return _check_records(path, sep, expected, offset, row)
            if part:
                arr = np.frombuffer(part, dtype=np.uint8)
                ends = np.flatnonzero(arr == 10)
                if not part.endswith(b"\n"):
                    ends = np.append(ends, len(part))
                starts = np.concatenate(([0], ends[:-1] + 1))
                seps = np.flatnonzero(arr == delim)
                fields = np.searchsorted(seps, ends) - np.searchsorted(seps, starts) + 1
                for i in np.flatnonzero(fields != expected):
                    if part[starts[i] : ends[i]].replace(sep.encode(), b"").strip():
                        raise _ragged(path, row + 1 + int(i), int(fields[i]), expected)
                row += len(ends)
                offset += cut
            if not block:
                return None


def _check_records(path: Path, sep: str, expected: int, offset: int, row: int) -> None:
    """check_field_counts with the csv module, from byte `offset` (a record boundary) on;
    `row` is the spreadsheet row of the record before it (0 at the start of the file)."""
    with path.open("rb") as raw:
        raw.seek(offset)
        text = io.TextIOWrapper(raw, encoding="utf-8-sig" if offset == 0 else "utf-8", newline="")
        try:
            for n, record in enumerate(csv.reader(text, delimiter=sep, skipinitialspace=True), row + 1):
                if n > 1 and len(record) != expected and any(cell.strip() for cell in record):
                    raise _ragged(path, n, len(record), expected)
        except UnicodeDecodeError as exc:
            raise InputError(
                f"is not UTF-8 text ({exc.reason}).", file=str(path), hint="Save it as UTF-8 CSV."
            ) from None
        except csv.Error as exc:
            raise InputError(f"cannot be parsed as CSV: {exc}.", file=str(path)) from None
