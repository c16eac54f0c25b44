"""Errors that map to exit code 2 with a message naming the file, column and row."""

from __future__ import annotations


class InputError(Exception):
    """Bad input or usage: the CLI prints the message and exits with code 2."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        column: str | None = None,
        row: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.file = file
        self.column = column
        self.row = row
        self.hint = hint
        parts = []
        if file is not None:
            parts.append(str(file))
        if column is not None:
            parts.append(f"column '{column}'")
        if row is not None:
            parts.append(f"row {row}")
        where = ", ".join(parts)
        text = f"{where}: {message}" if where else message
        if hint:
            text = f"{text} {hint}"
        super().__init__(text)
