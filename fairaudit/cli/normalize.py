"""`fairaudit normalize`: flags in, library call (fairaudit.preprocess), exit code out (0 done, 2 bad input)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

HELP = (
    "Normalize the images of a DICOM folder (CLAHE, percentile, z-score or robust z-score; optional "
    "log transform, per-site statistics, resampling and resizing) into OUT_DIR as float32 .npy files "
    "with JSON sidecars of the exact (invertible) parameters and PNG previews, and report how each "
    "demographic group's image statistics change, with bootstrap intervals and tests. Inputs are "
    "never modified."
)


def normalize(
    dicom_dir: Annotated[Path, typer.Argument(help="DICOM folder (read only).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (created if missing).")],
    method: Annotated[
        str, typer.Option("--method", help="adaptive_histogram, percentile, zscore or robust_zscore.")
    ],
    log_transform: Annotated[
        bool, typer.Option("--log-transform", help="Signed log1p of the intensities before normalizing.")
    ] = False,
    clip_limit: Annotated[float, typer.Option("--clip-limit", help="CLAHE clip limit in (0, 1].")] = 0.01,
    per_site: Annotated[
        bool, typer.Option("--per-site", help="Pool the statistics over all images of each site.")
    ] = False,
    site_column: Annotated[
        str, typer.Option("--site-column", help="Site column of --demographics (with --per-site).")
    ] = "site",
    target_shape: Annotated[
        str | None, typer.Option("--target-shape", help="Output shape, e.g. 256x256 (or 64x256x256).")
    ] = None,
    target_spacing: Annotated[
        str | None, typer.Option("--target-spacing", help="Resample to this spacing in mm, e.g. 0.5x0.5.")
    ] = None,
    keep_aspect: Annotated[
        bool,
        typer.Option("--keep-aspect/--no-keep-aspect", help="Keep the aspect ratio (pad) when resizing."),
    ] = True,
    align_to: Annotated[
        Path | None,
        typer.Option(
            "--align-to",
            help="Register each output rigidly (rotation + translation) to this 2-D template "
            "(.npy or DICOM; same shape as the outputs, e.g. with --target-shape).",
        ),
    ] = None,
    demographics: Annotated[
        Path | None, typer.Option("--demographics", help="Demographics CSV (id column + attributes).")
    ] = None,
    attribute: Annotated[
        list[str] | None, typer.Option("--attribute", help="Column to report by (repeatable).")
    ] = None,
    id_column: Annotated[
        str | None,
        typer.Option(
            "--id-column", help="Join key of --demographics; default: sop_instance_uid, ... (auto)."
        ),
    ] = None,
    roi: Annotated[
        Path | None,
        typer.Option("--roi", help="Folder of <id>.png/.npy masks: only pixels inside count in statistics."),
    ] = None,
    site_normalizer: Annotated[
        Path | None,
        typer.Option(
            "--site-normalizer",
            help="Apply a saved site_normalizer.json (from an earlier --per-site run) instead of fitting one.",
        ),
    ] = None,
    bootstrap: Annotated[int, typer.Option("--bootstrap", help="Bootstrap resamples B.")] = 1000,
    ci_level: Annotated[float, typer.Option("--ci-level", help="Confidence level of the intervals.")] = 0.95,
    correction: Annotated[
        str, typer.Option("--correction", help="holm, fdr_bh, bonferroni or none.")
    ] = "holm",
    min_group_size: Annotated[
        int, typer.Option("--min-group-size", help="Groups with fewer images are marked small.")
    ] = 30,
    seed: Annotated[int, typer.Option("--seed", help="Seed of every random draw.")] = 0,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Decoding processes. \\[default: CPU count]")
    ] = None,
    no_previews: Annotated[bool, typer.Option("--no-previews", help="Do not write PNG previews.")] = False,
    fmt: Annotated[
        str, typer.Option("--format", help="Reports to write: any of html,md,json.")
    ] = "html,md,json",
    keep_ids: Annotated[
        bool,
        typer.Option("--keep-ids", help="Name outputs and manifest ids in clear (default: salted hash)."),
    ] = False,
    salt: Annotated[
        str | None,
        typer.Option("--salt", envvar="FAIRAUDIT_SALT", help="Salt for stable hashes across runs."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = False,
) -> None:
    from rich.console import Console
    from rich.markup import escape

    from fairaudit.errors import InputError

    err = Console(stderr=True)
    try:
        from fairaudit.preprocess._reporting import parse_formats
        from fairaudit.preprocess._run import NormalizeRequest, run_normalize
        from fairaudit.preprocess._spatial import parse_shape

        req = NormalizeRequest(
            dicom_dir=dicom_dir,
            out=out,
            method=method,
            log_transform=log_transform,
            clip_limit=clip_limit,
            per_site=per_site,
            site_column=site_column,
            target_shape=parse_shape(target_shape),
            target_spacing=parse_shape(target_spacing, "--target-spacing", floats=True),
            keep_aspect=keep_aspect,
            align_to=align_to,
            demographics=demographics,
            attributes=list(attribute or []),
            id_column=id_column,
            roi=roi,
            site_normalizer=site_normalizer,
            bootstrap=bootstrap,
            ci_level=ci_level,
            correction=correction.lower(),
            min_group_size=min_group_size,
            seed=seed,
            workers=workers,
            keep_ids=keep_ids,
            salt=salt,
            formats=parse_formats(fmt),
            previews=not no_previews,
            progress=not quiet,
            command=" ".join(shlex.quote(a) for a in ["fairaudit", *sys.argv[1:]]),
        )
        outcome = run_normalize(req)
    except InputError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    if not quiet:
        r = outcome.results
        console = Console()
        console.print(
            f"Normalized {r['inputs']['n_normalized']} of {r['inputs']['n_files']} files "
            f"({escape(r['config']['method'])}) into {escape(str(out))}."
        )
        for a in r["attributes"]:
            console.print(f"[bold]{escape(a['name'])}[/]: {escape(a.get('summary', ''))}")
        report = outcome.files.get("html") or outcome.files.get("md") or outcome.files.get("json")
        if report is not None:
            err.print(f"Report: {escape(str(report))}")
