"""`fairaudit augment-check`: flags in, library call (fairaudit.augment), exit code out (0 done, 2 bad input)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fairaudit.cli import _common as opt

if TYPE_CHECKING:
    from fairaudit.workflows.augment_check import AugmentCheckOutcome

HELP = (
    "Robustness audit per demographic group: apply physics-informed augmentations of the modality "
    "(x-ray, CT, MRI, ultrasound; optionally geometric ones) to every image and report how each "
    "group's image statistics shift and, with --model and labels or masks, how much each group's "
    "performance degrades under each augmentation family, with bootstrap intervals and a test of "
    "whether the degradation differs between groups."
)


def augment_check(
    ctx: typer.Context,
    dicom_dir: opt.DicomDir,
    modality: Annotated[str, typer.Option("--modality", help="xray, ct, mri or ultrasound.")],
    demographics: opt.Demographics,
    attribute: opt.Attributes,
    out: opt.Out,
    strength: Annotated[str, typer.Option("--strength", help="mild, moderate or aggressive.")] = "moderate",
    geometric: Annotated[
        bool, typer.Option("--geometric", help="Add the geometric family (rotation, shift, scale, elastic).")
    ] = False,
    flip: Annotated[bool, typer.Option("--flip", help="Allow flips in the geometric family.")] = False,
    n_augment: Annotated[int, typer.Option("--n-augment", help="Draws per image and family.")] = 5,
    seed: opt.Seed = 0,
    model: opt.Model = None,
    labels: opt.Labels = None,
    label_column: opt.LabelColumn = "label",
    masks: opt.Masks = None,
    mask_labels: opt.MaskLabels = None,
    id_column: opt.IdColumn = None,
    device: opt.Device = "auto",
    trust_model: opt.TrustModel = False,
    batch_size: opt.BatchSize = 32,
    bootstrap: opt.Bootstrap = 1000,
    ci_level: opt.CiLevel = 0.95,
    correction: opt.Correction = "holm",
    min_group_size: opt.MinGroupSize = 30,
    max_images: Annotated[
        int | None, typer.Option("--max-images", help="Check only the first N usable images (a quick look).")
    ] = None,
    workers: opt.Workers = None,
    scheduler: opt.Scheduler = None,
    follow_symlinks: opt.FollowSymlinks = False,
    max_pixels: opt.MaxPixels = opt.MAX_PIXELS,
    max_file_size: opt.MaxFileSize = opt.MAX_FILE_SIZE,
    fmt: opt.Formats = "html,md,json",
    keep_ids: opt.KeepIds = False,
    salt: opt.Salt = None,
    quiet: opt.Quiet = False,
) -> None:
    def call() -> AugmentCheckOutcome:
        opt.check_out(out, {"dicom_dir": dicom_dir, "masks": masks})
        from fairaudit.workflows.augment_check import AugmentCheckRequest, run_augment_check

        req = AugmentCheckRequest(
            dicom_dir=dicom_dir,
            out=out,
            modality=modality,
            demographics=demographics,
            attributes=list(attribute),
            strength=strength.lower(),
            geometric=geometric,
            flip=flip,
            n_augment=n_augment,
            id_column=id_column,
            model=model,
            labels=labels,
            label_column=label_column,
            masks=masks,
            mask_labels=mask_labels,
            device=device,
            trust_model=trust_model,
            batch_size=batch_size,
            max_images=max_images,
            **opt.request_options(ctx.params),
        )
        from fairaudit import cluster

        with cluster.connect(scheduler), opt.following_links(follow_symlinks):
            return run_augment_check(req)

    outcome = opt.run_or_exit(call)
    if not quiet:
        from rich.console import Console

        from fairaudit.report.augment_terminal import print_augment_summary

        print_augment_summary(_headline(outcome.results), outcome.results, Console())
        report = outcome.files.get("html") or outcome.files.get("md") or outcome.files.get("json")
        if report is not None:
            opt.print_report_path(report)


def _headline(r: Mapping[str, Any]) -> str:
    from rich.markup import escape

    return (
        f"Checked {r['inputs']['n_checked']} of {r['inputs']['n_files']} files under "
        f"{escape(', '.join(r['config']['families']))} ({escape(r['config']['strength'])})."
    )
