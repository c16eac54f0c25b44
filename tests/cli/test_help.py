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


@pytest.mark.parametrize("name", [*SUBCOMMANDS, None])
def test_switches_show_no_value_in_help(name):
    """Issue 23: a switch showed "<bool>", and `--quiet true` was then refused."""
    assert "<bool>" not in _help_text(*([name] if name else []))


def test_report_quiet_prints_nothing(tmp_path):
    """Issue 23: `report --quiet` printed a "Wrote" line per file."""
    from _helpers.paths import SAMPLE

    out = tmp_path / "a"
    res = cli.invoke(["audit", "--predictions", str(SAMPLE / "predictions.csv"), "--demographics",
                      str(SAMPLE / "demographics.csv"), "--attribute", "sex", "--bootstrap", "50", "-q",
                      "--out", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    res = cli.invoke(["report", str(out / "results.json"), "--out", str(tmp_path / "r"), "-q"])
    assert res.exit_code == 0 and res.output.strip() == "", res.output
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["junit.xml", "report.html", "report.md"]
