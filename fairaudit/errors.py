"""Errors that map to exit code 2 with a message naming the file, column, row or argument.

A message names an argument by its Python parameter name through `arg` ("label_column"):
`label_column=` when the library is called from Python, `--label-column` while the CLI has
installed its spelling (`argument_spelling`, with the one table in fairaudit.cli._common).
So the library never writes a flag, and the CLI's messages stay in the CLI's words.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


def python_spelling(name: str) -> str:
    """How a Python caller names an argument: `label_column=`."""
    return f"{name}="


# Process-wide, so that a forked worker inherits it: the CLI runs one command per process and
# restores it afterwards (argument_spelling).
_spelling: Callable[[str], str] = python_spelling


def arg(name: str) -> str:
    """Argument `name` (its Python parameter name) as the caller spells it: `name=`, or the CLI's flag."""
    return _spelling(name)


def cli_example(text: str) -> str:
    """`text`, a command-line example for a message, where arguments are spelled as flags (the
    CLI); empty for Python callers, to whom a command line means nothing."""
    return "" if _spelling is python_spelling else text


@contextmanager
def argument_spelling(spell: Callable[[str], str]) -> Iterator[None]:
    """Messages built inside the block spell arguments with `spell` (the CLI: its flags)."""
    global _spelling
    previous, _spelling = _spelling, spell
    try:
        yield
    finally:
        _spelling = previous


class InputError(Exception):
    """Bad input or usage: the CLI prints the message and exits with code 2.

    `argument` is the Python name of the argument at fault, where there is one (the message
    spells it with `arg`).
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        column: str | None = None,
        row: int | None = None,
        hint: str | None = None,
        argument: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.column = column
        self.row = row
        self.hint = hint
        self.argument = argument
        super().__init__(self.text())

    def text(self, name: Callable[[str], str] = str) -> str:
        """The whole message: where (file, column, row), what, and the hint. `name` renders
        the file and column names, which come from a file system or a CSV header: the CLI
        passes an escaping function (fairaudit.cli._common.error_text)."""
        parts = []
        if self.file is not None:
            parts.append(name(str(self.file)))
        if self.column is not None:
            parts.append(f"column '{name(str(self.column))}'")
        if self.row is not None:
            parts.append(f"row {self.row}")
        where = ", ".join(parts)
        text = f"{where}: {self.message}" if where else self.message
        if self.hint:
            text = f"{text} {self.hint}"
        return text
