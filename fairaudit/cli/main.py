"""The `fairaudit` command. Kept import-light: `fairaudit --help` loads no numpy or torch."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from fairaudit._version import __version__
from fairaudit.cli import audit as audit_cmd
from fairaudit.cli import augment_check as augment_check_cmd
from fairaudit.cli import normalize as normalize_cmd
from fairaudit.cli import report as report_cmd
from fairaudit.cli import sample_data as sample_cmd
from fairaudit.cli import train as train_cmd
from fairaudit.cli._common import OnceCommand, SwitchGroup

app = typer.Typer(
    name="fairaudit",
    help="Audit medical-imaging AI models for fairness: per-group metrics with intervals, tests and a CI gate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    cls=SwitchGroup,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fairaudit {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit."),
    ] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More log detail (-vv for debug).")
    ] = 0,
) -> None:
    """fairaudit: fairness audits for medical-imaging AI."""
    from rich.console import Console
    from rich.logging import RichHandler

    from fairaudit.cli._common import EscapingFormatter

    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = RichHandler(console=Console(stderr=True), show_path=False, markup=False, rich_tracebacks=False)
    # File and column names reach log lines as given: shown with escapes (docs/threat-model.md).
    handler.setFormatter(EscapingFormatter("%(message)s", datefmt="[%X]"))
    logging.basicConfig(level=level, handlers=[handler], force=True)


app.command("audit", help=audit_cmd.HELP, cls=OnceCommand)(audit_cmd.audit)
app.command("sample-data", help=sample_cmd.HELP, cls=OnceCommand)(sample_cmd.sample_data)
app.command("report", help=report_cmd.HELP, cls=OnceCommand)(report_cmd.report)
app.command("train", help=train_cmd.HELP, cls=OnceCommand)(train_cmd.train)
app.command("normalize", help=normalize_cmd.HELP, cls=OnceCommand)(normalize_cmd.normalize)
app.command("augment-check", help=augment_check_cmd.HELP, cls=OnceCommand)(augment_check_cmd.augment_check)


INTERNAL_ERROR = 3
INTERRUPTED = 130


def _interrupted() -> None:
    from rich.console import Console
    from rich.markup import escape

    from fairaudit._util.interrupt import summary
    from fairaudit.cli._common import flag
    from fairaudit.errors import argument_spelling

    with argument_spelling(flag):
        line = summary()
    Console(stderr=True).print(f"[bold yellow]{escape(line)}[/] (exit code 130)", highlight=False)


def main() -> None:
    """Console-script entry point.

    An unexpected exception exits with code 3, never 1: CI gates read 1 as "the fairness
    gate failed", and a crash must not be mistaken for a verdict. Ctrl-C (SIGINT) exits
    with 130 (Typer's mapping of KeyboardInterrupt) after one line on what finished.
    """
    try:
        app()
    except KeyboardInterrupt:  # raised outside Typer's own handling (e.g. while importing)
        _interrupted()
        raise SystemExit(INTERRUPTED) from None
    except SystemExit as exc:
        if exc.code == INTERRUPTED:
            _interrupted()
        raise
    except Exception:
        from rich.console import Console

        Console(stderr=True).print_exception(show_locals=False)
        Console(stderr=True).print(
            "[bold red]internal error[/]: fairaudit crashed (exit code 3); please report it with the trace above."
        )
        raise SystemExit(INTERNAL_ERROR) from None
