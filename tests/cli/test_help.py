"""`--help` shows every "[default: ...]" hint (rich markup would swallow an unescaped one)."""

from __future__ import annotations

import re

import pytest
import typer

from fairaudit.cli.main import app

from _helpers import cli

SUBCOMMANDS = ("audit", "normalize", "augment-check", "train", "report", "sample-data")


def _help_text(*args: str) -> str:
    result = cli.invoke([*args, "--help"], env={"NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    # Rich draws the options as a table: drop the borders, join wrapped help lines.
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())


def test_audit_help_shows_defaults():
    text = _help_text("audit")
    for hint in (
        "[default: score]",
        "[default: the --bootstrap count]",
        "[default: CPU count]",
        "[default: auroc; dice for segmentation]",
        "default: its quartiles",
        "(probability in [0, 1])",
    ):
        assert hint in text, hint


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_default_hint_in_help_strings_is_shown(name):
    command = typer.main.get_command(app)
    sub = command.commands[name]  # type: ignore[attr-defined]
    hints = [
        re.sub(r"\\\[", "[", hint)
        for param in sub.params
        for hint in re.findall(r"\\?\[default:[^\]]*\]", getattr(param, "help", None) or "")
    ]
    text = _help_text(name)
    for hint in hints:
        assert cli.flat(hint) in text, (name, hint)
