"""`fairaudit normalize`: flags in, library call (fairaudit.preprocess), exit code out (0 done, 2 bad input)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fairaudit.cli import _common as opt

if TYPE_CHECKING:
    from fairaudit.workflows.normalize import NormalizeOutcome

HELP = (
    "Normalize the images of a DICOM folder (CLAHE, percentile, z-score or robust z-score; optional "
    "log transform, per-site statistics, resampling and resizing) into OUT_DIR as float32 .npy files "
    "with JSON sidecars of the exact (invertible) parameters and PNG previews, and report how each "
    "demographic group's image statistics change, with bootstrap intervals and tests. Inputs are "
    "never modified."
)


def normalize(
    ctx: typer.Context,
    dicom_dir: opt.DicomDir,
    out: opt.Out,
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
    demographics: opt.OptionalDemographics = None,
    attribute: opt.OptionalAttributes = None,
    id_column: opt.IdColumn = None,
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
    bootstrap: opt.Bootstrap = 1000,
    ci_level: opt.CiLevel = 0.95,
    correction: opt.Correction = "holm",
    min_group_size: opt.MinGroupSize = 30,
    seed: opt.Seed = 0,
    workers: opt.Workers = None,
    scheduler: opt.Scheduler = None,
    follow_symlinks: opt.FollowSymlinks = False,
    max_pixels: opt.MaxPixels = opt.MAX_PIXELS,
    max_file_size: opt.MaxFileSize = opt.MAX_FILE_SIZE,
    no_previews: Annotated[bool, typer.Option("--no-previews", help="Do not write PNG previews.")] = False,
    fmt: opt.Formats = "html,md,json",
    keep_ids: opt.KeepIds = False,
    salt: opt.Salt = None,
    quiet: opt.Quiet = False,
) -> None:
    def call() -> NormalizeOutcome:
        from fairaudit.preprocess._spatial import parse_shape
        from fairaudit.workflows.normalize import NormalizeRequest, run_normalize

        req = NormalizeRequest(
            dicom_dir=dicom_dir,
            out=out,
            method=method,
            log_transform=log_transform,
            clip_limit=clip_limit,
            per_site=per_site,
            site_column=site_column,
            target_shape=parse_shape(target_shape),
            target_spacing=parse_shape(target_spacing, "target_spacing", floats=True),
            keep_aspect=keep_aspect,
            align_to=align_to,
            demographics=demographics,
            attributes=list(attribute or []),
            id_column=id_column,
            roi=roi,
            site_normalizer=site_normalizer,
            previews=not no_previews,
            **opt.request_options(ctx.params),
        )
        from fairaudit import cluster

        with cluster.connect(scheduler), opt.following_links(follow_symlinks):
            return run_normalize(req)

    outcome = opt.run_or_exit(call)
    if not quiet:
        opt.print_summary(_headline(outcome.results, out), outcome.results, outcome.files)


def _headline(r: Mapping[str, Any], out: Path) -> str:
    from rich.markup import escape

    return (
        f"Normalized {r['inputs']['n_normalized']} of {r['inputs']['n_files']} files "
        f"({escape(r['config']['method'])}) into {escape(str(out))}."
    )
