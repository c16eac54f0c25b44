"""Every flag more than one command takes, declared once; exit handling; the argument spelling.

One definition per flag keeps its spelling and help text the same in every command
(tests/cli/test_flags.py checks it). Typer reads a parameter's `Annotated[...]` metadata, so
each alias below is a whole flag; the default stays in the command's signature. Where
commands differ in type (required in one, optional in another) two aliases share one
`typer.Option`, so the flag and its help are still written once. Flags only one command
takes stay in its module. Only typer and the standard library are imported here (`--help`
must stay light); rich and the library are imported when a command runs.

Errors and log lines are rendered here too (`run_or_exit`, `EscapingFormatter`): the one
place where names from files and CSV headers are escaped for the terminal.

`FLAGS` maps the library's argument names to these flags: messages the library raises
(fairaudit.errors.arg) are spelled with it while a command runs (`run_or_exit`).
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:
    from fairaudit.errors import InputError

T = TypeVar("T")

_DICOM_DIR = typer.Argument(
    help="DICOM folder, read only: the images to read, DICOM, PNG or JPEG files recognized by their "
    "content (with audit --predictions: the files the predictions are joined with by id, "
    "SOPInstanceUID, ..., or path).",
)
DicomDir = Annotated[Path, _DICOM_DIR]
OptionalDicomDir = Annotated[Path | None, _DICOM_DIR]
_OUT = typer.Option("--out", help="Output folder (created if missing).")
Out = Annotated[Path, _OUT]
OptionalOut = Annotated[Path | None, _OUT]
_DEMOGRAPHICS = typer.Option(
    "--demographics",
    help="Demographics CSV: an id column and the attribute columns (audit: not needed when "
    "--predictions holds them).",
)
Demographics = Annotated[Path, _DEMOGRAPHICS]
OptionalDemographics = Annotated[Path | None, _DEMOGRAPHICS]
_ATTRIBUTE = typer.Option(
    "--attribute", help="Demographic column to report by (repeatable; train also stratifies its split by it)."
)
Attributes = Annotated[list[str], _ATTRIBUTE]
OptionalAttributes = Annotated[list[str] | None, _ATTRIBUTE]
Task = Annotated[
    str,
    typer.Option(
        "--task",
        help="classification or segmentation; audit also takes multiclass (class names or integers "
        "in the label column, one probability column per class; docs/multiclass.md).",
    ),
]
Model = Annotated[
    str | None,
    typer.Option("--model", help="bundled:NAME, a bundle folder, a TorchScript or an ONNX file."),
]
Findings = Annotated[
    str | None,
    typer.Option(
        "--findings",
        metavar="all|A,B,C",
        help="Multi-label: these finding columns of the labels (all: every column of 0/1/-1 labels). "
        "audit: each finding audited on its own, corrected as one family; train: one sigmoid output "
        "per finding, -1 and blank left out of its loss.",
    ),
]
Labels = Annotated[
    Path | None, typer.Option("--labels", help="CSV of the 0/1 ground-truth label per id (classification).")
]
_LABEL_COLUMN = typer.Option(  # the default written out: train's (None) means "label, else finding"
    "--label-column",
    help="The 0/1 label column. \\[default: label; train: label, else finding]",
    show_default=False,
)
LabelColumn = Annotated[str, _LABEL_COLUMN]
OptionalLabelColumn = Annotated[str | None, _LABEL_COLUMN]
Masks = Annotated[
    Path | None,
    typer.Option("--masks", help="Folder of ground-truth masks, <id>.png or <id>.npy (segmentation)."),
]
MaskLabels = Annotated[
    str | None,
    typer.Option(
        "--mask-labels",
        help="Mask values that count as foreground, e.g. 1,2 or 2. \\[default: any nonzero value]",
    ),
]
IdColumn = Annotated[
    str | None,
    typer.Option(
        "--id-column",
        help="Join key; default: auto-detect (sop_instance_uid, study_instance_uid, patient_id, path). "
        "Named differently per file (audit): predictions=img,demographics=sop_uid[,labels=...].",
    ),
]
Bootstrap = Annotated[int, typer.Option("--bootstrap", help="Bootstrap resamples B.")]
CiLevel = Annotated[float, typer.Option("--ci-level", help="Confidence level of the intervals.")]
Correction = Annotated[str, typer.Option("--correction", help="holm, fdr_bh, bonferroni or none.")]
MinGroupSize = Annotated[
    int, typer.Option("--min-group-size", help="Groups smaller than this are marked small.")
]
Seed = Annotated[int, typer.Option("--seed", help="Seed of every random draw.")]
Device = Annotated[str, typer.Option("--device", help="auto, cpu or cuda (where the model runs).")]
_BATCH_SIZE = typer.Option("--batch-size", help="Images per batch (inference or training).")
BatchSize = Annotated[int, _BATCH_SIZE]
OptionalBatchSize = Annotated[int | None, _BATCH_SIZE]
Workers = Annotated[int | None, typer.Option("--workers", help="Worker processes. \\[default: CPU count]")]
Formats = Annotated[
    str,
    typer.Option("--format", help="Reports to write: any of html,md,json (audit and report: also junit)."),
]
KeepIds = Annotated[
    bool,
    typer.Option(
        "--keep-ids", help="Ids in clear in manifest.csv and output names (default: salted hashes)."
    ),
]
Salt = Annotated[
    str | None,
    typer.Option("--salt", envvar="FAIRAUDIT_SALT", help="Salt for stable id hashes across runs."),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print results.json to standard output.")]
Verbose = Annotated[
    bool,
    typer.Option(
        "--verbose",
        "-v",
        help="Print the tables (groups, comparisons, disparities, gate checks) before the short summary.",
    ),
]
# The reviewer's view of a report (docs/reports.md, "Title and context", "Who is in the data").
Title = Annotated[
    str | None,
    typer.Option("--title", metavar="TEXT", help="Title of the reports (one line), kept in results.json."),
]
ContextFile = Annotated[
    Path | None,
    typer.Option(
        "--context",
        metavar="FILE.md",
        help="Markdown: intended use, population, data source and partition; shown in the reports "
        "with HTML and links as text, recorded in results.json.",
    ),
]
ReferencePopulation = Annotated[
    Path | None,
    typer.Option(
        "--reference-population",
        metavar="FILE.csv",
        help="The intended population's make-up (columns attribute, group, share): each attribute's "
        "groups are compared with it and tested (chi-square, or exact multinomial for small counts).",
    ),
]
TrustModel = Annotated[
    bool,
    typer.Option(
        "--trust-model",
        help="Run a TorchScript --model: it is a program that can read and write files, so only "
        "for a file from someone you trust (ONNX and safetensors bundles need no trust).",
    ),
]
Scheduler = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        help="Run decoding, preprocessing and inference on a Dask cluster: tcp://HOST:PORT of an "
        "existing scheduler, or local:N for a LocalCluster of N workers (pip install 'fairaudit-imaging\\[dask]').",
    ),
]
FollowSymlinks = Annotated[
    bool,
    typer.Option(
        "--follow-symlinks",
        help="Follow symbolic links that lead out of the DICOM folder or a mask folder (default: each "
        "is skipped and listed in manifest.csv). Links within the folder are never needed: their "
        "targets are read anyway.",
    ),
]
# The reader's limits: every command that reads a DICOM folder takes them, with the same
# defaults as fairaudit.io.dicom.DecodeOptions (docs/threat-model.md, "DICOM files").
MAX_PIXELS = 2**28
MAX_FILE_SIZE = "2GB"
MaxPixels = Annotated[
    int,
    typer.Option(
        "--max-pixels",
        min=1,
        help="Refuse (exclude, from the header, before decoding) a DICOM, PNG or JPEG file declaring more than "
        "Rows x Columns x frames x samples values: bounds the memory one file can take.",
    ),
]
MaxFileSize = Annotated[
    str,
    typer.Option(
        "--max-file-size",
        metavar="SIZE",
        help="Exclude, from its size and before reading it, a DICOM, PNG or JPEG file larger than this "
        "(bytes, or e.g. 500MB, 2GB): bounds the time one file can take.",
    ),
]

#: Reports `audit` and `report` write (normalize and augment-check: html, md, json).
REPORT_FORMATS = ("html", "md", "json", "junit")

#: The library's argument names (fairaudit.errors.arg, InputError.argument) whose flag is not
#: `--` and the name with dashes: with flag() below, the one table from Python names to flags.
FLAGS: dict[str, str] = {
    "attributes": "--attribute",
    "intersections": "--intersect",
    "references": "--reference",
    "formats": "--format",
    "dicom_dir": "DICOM_DIR",
}


class _SwitchesTakeNoValue:
    """A switch takes no value, so its help shows none (Typer wrote "<bool>", and a user who
    then typed `--quiet true` got "unexpected extra argument"); --help included."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # type: ignore[misc]
        for p in params:
            if getattr(p, "is_flag", False) and getattr(p, "metavar", "") is None:
                p.metavar = ""
        return params


class SwitchGroup(_SwitchesTakeNoValue, typer.core.TyperGroup):
    """The `fairaudit` group, whose --version and --help are switches too."""


class OnceCommand(_SwitchesTakeNoValue, typer.core.TyperCommand):
    """A command whose single-valued options may be given once: a second `--label-column`
    used to replace the first silently, so an audit ran on another column than the user
    read in their own command line (issue 21). Repeatable options (`--attribute`) and
    switches are not counted. A usage error (exit 2) names the option."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        from typer._click.exceptions import UsageError

        once: dict[str, str] = {}
        takes_value: set[str] = set()
        for p in self.params:
            if not isinstance(p, typer.core.TyperOption) or p.is_flag or p.count:
                continue
            names = [*p.opts, *p.secondary_opts]
            takes_value.update(names)
            if not p.multiple:
                once.update((n, names[0]) for n in names)
        seen: set[str] = set()
        skip = False
        for token in args:
            if skip:
                skip = False
                continue
            if token == "--":
                break
            name = token.split("=", 1)[0]
            if name in once:
                if once[name] in seen:
                    raise UsageError(
                        f"{once[name]} is given more than once: give it once (only the last would count).",
                        ctx=ctx,
                    )
                seen.add(once[name])
            skip = name in takes_value and "=" not in token
        return super().parse_args(ctx, args)


def flag(name: str) -> str:
    """The flag (or argument) the CLI spells the library's argument `name` with."""
    return FLAGS.get(name) or "--" + name.replace("_", "-")


#: Flags that say where the work ran, not what it computed (the results do not depend on
#: them): left out of the recorded command, so that a run on a Dask cluster or with another
#: number of worker processes writes the same results.json as one on this machine.
_PLACEMENT_FLAGS = ("--scheduler", "--workers")
#: Flags whose value is a secret: recorded as `--salt <set>`. With the salt, anyone holding
#: results.json could test a guessed patient id against the manifest's pseudonyms
#: (docs/threat-model.md).
_SECRET_FLAGS = ("--salt",)
SECRET_SHOWN = "<set>"


def command_line(argv: list[str] | None = None) -> str:
    """The command as typed, for the provenance in the results JSON (without --scheduler,
    --workers, and with the value of --salt withheld)."""
    args = list(sys.argv[1:] if argv is None else argv)
    kept: list[str] = []
    skip = secret = False
    for arg in args:
        if skip:
            skip = False
            continue
        if secret:
            secret = False
            kept.append(SECRET_SHOWN)
            continue
        if arg in _PLACEMENT_FLAGS:
            skip = True
            continue
        if arg.startswith(tuple(f + "=" for f in _PLACEMENT_FLAGS)):
            continue
        if arg in _SECRET_FLAGS:
            secret = True
        elif arg.startswith(tuple(f + "=" for f in _SECRET_FLAGS)):
            arg = arg.split("=", 1)[0] + "=" + SECRET_SHOWN
        kept.append(arg)
    return " ".join(shlex.quote(a) for a in ["fairaudit", *kept])


def max_file_size_bytes(text: str) -> int:
    """--max-file-size 500MB (or bytes) in bytes; InputError (exit 2) naming the flag otherwise."""
    from fairaudit._util.sizes import parse_size
    from fairaudit.errors import InputError

    try:
        return parse_size(text)
    except ValueError as exc:
        raise InputError(f"--max-file-size: {exc}.", argument="max_file_size") from None


def request_options(params: Mapping[str, Any]) -> dict[str, Any]:
    """The shared flags (click's ctx.params) as CohortRequest fields; InputError on a bad --format
    or --max-file-size."""
    from fairaudit.report.image_reports import parse_formats

    return {
        "max_pixels": params["max_pixels"],
        "max_file_size": max_file_size_bytes(params["max_file_size"]),
        "bootstrap": params["bootstrap"],
        "ci_level": params["ci_level"],
        "correction": params["correction"].lower(),
        "min_group_size": params["min_group_size"],
        "seed": params["seed"],
        "workers": params["workers"],
        "keep_ids": params["keep_ids"],
        "salt": params["salt"],
        "formats": parse_formats(params["fmt"]),
        "progress": not params["quiet"],
        "command": command_line(),
    }


def following_links(follow: bool) -> AbstractContextManager[None]:
    """Walks of the DICOM folder follow links out of it only with --follow-symlinks
    (fairaudit.io.dicom._scan; nothing is imported without the flag)."""
    if not follow:
        return nullcontext()
    from fairaudit.io.dicom._scan import following_symlinks

    return following_symlinks(True)


def check_out(out: Path, folders: Mapping[str, Path | None]) -> None:
    """InputError (exit 2, before any work) when --out is inside an input folder (fairaudit._util.safe_paths).

    `folders`: the library's argument name -> input folder."""
    from fairaudit._util.safe_paths import check_output_location

    check_output_location({"out": out}, folders=folders)


def run_or_exit(call: Callable[[], T]) -> T:
    """Run the library call with its messages spelling arguments as flags; bad input ends with
    its message on stderr and exit code 2.

    A command that takes --workers has FAIRAUDIT_WORKERS checked here, before the call: the
    variable is otherwise read where a pool starts, after the model ran or files were written
    (docs/ci.md, "Exit codes"). The message is escaped here, the one place errors are shown:
    a file or column name cannot put a terminal escape sequence on stderr (error_text)."""
    from rich.console import Console
    from rich.markup import escape

    from fairaudit.errors import InputError, argument_spelling

    try:
        with argument_spelling(flag):
            if _takes_workers():
                from fairaudit._util.workers import env_workers

                env_workers()
            return call()
    except InputError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {escape(error_text(exc))}")
        raise typer.Exit(2) from None


def _takes_workers() -> bool:
    """Whether the running command declares --workers (so it starts worker pools)."""
    from typer._click.globals import get_current_context

    ctx = get_current_context(silent=True)
    return ctx is not None and "workers" in ctx.params


def error_text(exc: InputError) -> str:
    """An InputError as the terminal shows it: the file and column names with every control
    character, line break and bidi override as a visible escape (they come from a file system
    or a CSV header), and the rest without raw control characters or carriage returns
    (fairaudit._util.sanitize.clean_text; docs/threat-model.md, "User strings in outputs")."""
    from fairaudit._util.sanitize import clean_text

    return clean_text(exc.text(lambda name: clean_text(name, keep="")), keep="\t\n")


class EscapingFormatter(logging.Formatter):
    """Log records with control characters shown as escapes: the handler of the CLI's log
    (fairaudit.cli.main) formats through it, the one place log lines are rendered. Arguments
    (file names, column names) are escaped whole, line breaks included, so a name cannot
    forge or overwrite a log line; the rest keeps its newlines (docs/threat-model.md)."""

    def format(self, record: logging.LogRecord) -> str:
        from fairaudit._util.sanitize import clean_text

        shown = logging.makeLogRecord(record.__dict__)  # the record itself goes on unchanged
        shown.args = _escaped_args(record.args, clean_text)
        return clean_text(super().format(shown), keep="\t\n")


def _escaped_args(args: Any, clean: Callable[..., str]) -> Any:
    """A record's arguments with each text (a str or a path) escaped whole; numbers unchanged."""
    if isinstance(args, Mapping):
        return {k: _escaped_arg(v, clean) for k, v in args.items()}
    if isinstance(args, tuple):
        return tuple(_escaped_arg(v, clean) for v in args)
    return args


def _escaped_arg(value: Any, clean: Callable[..., str]) -> Any:
    if isinstance(value, (str, os.PathLike)):
        return clean(os.fspath(value), keep="")
    return value


def print_summary(headline: str, results: Mapping[str, Any], files: Mapping[str, Path]) -> None:
    """The headline (rich markup) and each attribute's summary on stdout; where the report is, on stderr."""
    from rich.console import Console
    from rich.markup import escape

    console = Console()
    console.print(headline)
    for a in results["attributes"]:
        console.print(f"[bold]{escape(a['name'])}[/]: {escape(a.get('summary') or '')}")
    report = files.get("html") or files.get("md") or files.get("json")
    if report is not None:
        print_report_path(report)


def print_report_path(report: Path) -> None:
    """Where the report is, on stderr (escaped: a folder named o_[/]x is not markup, and a
    control character in it is shown as an escape)."""
    from rich.console import Console
    from rich.markup import escape

    from fairaudit._util.sanitize import clean_text

    Console(stderr=True).print(f"Report: {escape(clean_text(str(report), keep=''))}")
