"""`fairaudit report`: re-render the reports of a saved results.json, without recomputing anything.

An archived audit stays readable: results.json holds every number, interval, curve and
the gate's verdict, and the renderers take nothing else.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from fairaudit.cli import _common as opt

HELP = (
    "Re-render report.html, report.md and junit.xml from a saved results.json into --out (by "
    "default the folder of RESULTS_JSON), with no data and no recomputation. Exit code 1 when the recorded gate did not pass (failed, or inconclusive "
    "under on_inconclusive = fail), as `audit` gives."
)
log = logging.getLogger(__name__)


def report(
    results_json: Annotated[Path, typer.Argument(help="A results.json written by `fairaudit audit`.")],
    fmt: opt.Formats = "html,md,junit",
    out: opt.OptionalOut = None,
    title: opt.Title = None,
    context: opt.ContextFile = None,
    reference_population: opt.ReferencePopulation = None,
    quiet: opt.Quiet = False,
    verbose: opt.Verbose = False,
    json_out: opt.JsonOut = False,
) -> None:
    """Read the results.json, write the reports asked for; the exit code is the recorded gate's."""

    def call() -> tuple[dict[str, Any], dict[str, Path]]:
        from fairaudit.report.image_reports import parse_formats
        from fairaudit.report.loading import load_results

        formats = parse_formats(fmt, opt.REPORT_FORMATS)

        results = load_results(results_json)
        from fairaudit.report.review_view import apply_review, load_review

        # --title, --context, --reference-population: the reports (and a results.json written
        # elsewhere) carry them; the archive itself is never rewritten (docs/reports.md).
        apply_review(results, load_review(title, context, reference_population))
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
                files = write_reports(results, outs.staging, formats)  # json brings model_card.json
            files = {k: outs.final(p) for k, p in files.items()}
        return results, files

    results, files = opt.run_or_exit(call)
    if json_out:
        from fairaudit.report.writers import results_to_json

        sys.stdout.write(results_to_json(results))
    elif not quiet:
        from rich.console import Console

        from fairaudit.report import print_summary

        print_summary(results, Console(), verbose=verbose)
    if not json_out and not quiet:
        from rich.console import Console
        from rich.markup import escape

        for path in files.values():
            Console(stderr=True).print(f"Wrote {escape(str(path))}")
    # `passed` is the exit code in both schema versions: a version-2 gate sets it from the
    # outcome and on_inconclusive, a version-1 gate meant "did not fail" (docs/ci.md).
    gate = results.get("gate")
    raise typer.Exit(1 if gate is not None and not gate.get("passed", True) else 0)
