"""`fairaudit report`: re-render the reports of a saved results.json, without recomputing anything.

An archived audit stays readable: results.json holds every number, interval, curve and
the gate's verdict, and the renderers take nothing else.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

HELP = (
    "Re-render report.html, report.md and junit.xml from a saved results.json (no data, no "
    "recomputation). Exit code 1 when the recorded gate did not pass (failed, or inconclusive "
    "under on_inconclusive = fail), as `audit` gives."
)
log = logging.getLogger(__name__)

_FORMATS = ("html", "md", "json", "junit")


def load_results(path: Path) -> dict:
    """Read and validate a results.json; every problem is an InputError naming the file."""
    from fairaudit.errors import InputError
    from fairaudit.schema import READABLE_VERSIONS, validate_results

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("results file not found.", file=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot be read: {exc}.", file=str(path)) from None
    try:
        results = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"is not valid JSON ({exc.msg} at line {exc.lineno}).", file=str(path)) from None
    if not isinstance(results, dict):
        raise InputError("is not a fairaudit results.json (expected a JSON object).", file=str(path))
    version = results.get("schema_version")
    if version not in READABLE_VERSIONS:
        raise InputError(
            f"has schema_version {version!r}; this fairaudit reads versions {', '.join(READABLE_VERSIONS)}.",
            file=str(path),
            hint="Re-render it with the fairaudit version that wrote it (results['fairaudit_version']).",
        )
    try:
        validate_results(results)
    except ValueError as exc:
        raise InputError(f"is not a valid results.json: {exc}.", file=str(path)) from None
    return results


def report(
    results_json: Annotated[Path, typer.Argument(help="A results.json written by `fairaudit audit`.")],
    fmt: Annotated[
        str, typer.Option("--format", help="Reports to write: any of html,md,json,junit.")
    ] = "html,md,junit",
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Output folder (default: the folder of RESULTS_JSON)."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No terminal summary.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print results.json to standard output.")] = False,
) -> None:
    from rich.console import Console
    from rich.markup import escape

    from fairaudit.errors import InputError

    err = Console(stderr=True)
    try:
        formats = tuple(f.strip().lower() for f in fmt.split(",") if f.strip())
        bad = [f for f in formats if f not in _FORMATS]
        if bad or not formats:
            raise InputError(
                f"--format: unknown format(s) {', '.join(bad) or '(none)'}; choose from {', '.join(_FORMATS)}."
            )
        results = load_results(results_json)
        out_dir = out if out is not None else results_json.parent
        if "json" in formats and (out_dir / "results.json").resolve() == results_json.resolve():
            formats = tuple(f for f in formats if f != "json")  # never rewrite the archive in place
        from fairaudit._util.atomic import output_set
        from fairaudit.report.writers import write_reports

        files = {}
        if formats:
            # Beside the results.json read, the reports are re-rendered from it: the same run, so
            # they replace their namesakes and nothing else is removed. Elsewhere, one new set.
            in_place = out_dir.resolve() == results_json.resolve().parent
            with output_set(out_dir, protect=[results_json], in_place=in_place) as outs:
                files = write_reports(results, outs.staging, formats)
            files = {k: outs.final(p) for k, p in files.items()}
    except InputError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None

    if json_out:
        from fairaudit.report.writers import results_to_json

        sys.stdout.write(results_to_json(results))
    elif not quiet:
        from fairaudit.report import print_summary

        print_summary(results, Console())
    if not json_out:
        for path in files.values():
            err.print(f"Wrote {escape(str(path))}")
    # `passed` is the exit code in both schema versions: a version-2 gate sets it from the
    # outcome and on_inconclusive, a version-1 gate meant "did not fail" (docs/ci.md).
    gate = results.get("gate")
    raise typer.Exit(1 if gate is not None and not gate.get("passed", True) else 0)
