"""`fairaudit augment-check`: flags in, library call (fairaudit.augment), exit code out (0 done, 2 bad input)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

HELP = (
    "Robustness audit per demographic group: apply physics-informed augmentations of the modality "
    "(x-ray, CT, MRI, ultrasound; optionally geometric ones) to every image and report how each "
    "group's image statistics shift and, with --model and labels or masks, how much each group's "
    "performance degrades under each augmentation family, with bootstrap intervals and a test of "
    "whether the degradation differs between groups."
)


def augment_check(
    dicom_dir: Annotated[Path, typer.Argument(help="DICOM folder (read only).")],
    modality: Annotated[str, typer.Option("--modality", help="xray, ct, mri or ultrasound.")],
    demographics: Annotated[Path, typer.Option("--demographics", help="Demographics CSV (id + attributes).")],
    attribute: Annotated[list[str], typer.Option("--attribute", help="Column to report by (repeatable).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (created if missing).")],
    strength: Annotated[str, typer.Option("--strength", help="mild, moderate or aggressive.")] = "moderate",
    geometric: Annotated[
        bool, typer.Option("--geometric", help="Add the geometric family (rotation, shift, scale, elastic).")
    ] = False,
    flip: Annotated[bool, typer.Option("--flip", help="Allow flips in the geometric family.")] = False,
    n_augment: Annotated[int, typer.Option("--n-augment", help="Draws per image and family.")] = 5,
    seed: Annotated[int, typer.Option("--seed", help="Seed of every random draw.")] = 0,
    model: Annotated[
        str | None,
        typer.Option("--model", help="bundled:NAME, a bundle folder, a TorchScript or an ONNX file."),
    ] = None,
    labels: Annotated[
        Path | None, typer.Option("--labels", help="CSV of 0/1 labels per id (classification models).")
    ] = None,
    label_column: Annotated[str, typer.Option("--label-column", help="Label column of --labels.")] = "label",
    masks: Annotated[
        Path | None, typer.Option("--masks", help="Folder of <id>.png masks (segmentation models).")
    ] = None,
    mask_labels: Annotated[
        str | None, typer.Option("--mask-labels", help="Mask values that count as foreground, e.g. 1,2.")
    ] = None,
    id_column: Annotated[
        str | None,
        typer.Option(
            "--id-column", help="Join key; default: sop_instance_uid, study_instance_uid, ... (auto)."
        ),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda (model runs).")] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Inference batch size.")] = 32,
    bootstrap: Annotated[int, typer.Option("--bootstrap", help="Bootstrap resamples B.")] = 1000,
    ci_level: Annotated[float, typer.Option("--ci-level", help="Confidence level of the intervals.")] = 0.95,
    correction: Annotated[
        str, typer.Option("--correction", help="holm, fdr_bh, bonferroni or none.")
    ] = "holm",
    min_group_size: Annotated[
        int, typer.Option("--min-group-size", help="Groups with fewer images are marked small.")
    ] = 30,
    max_images: Annotated[
        int | None, typer.Option("--max-images", help="Check only the first N usable images (a quick look).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Decoding processes. \\[default: CPU count]")
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="Reports to write: any of html,md,json.")
    ] = "html,md,json",
    keep_ids: Annotated[
        bool, typer.Option("--keep-ids", help="Manifest ids in clear (default: salted hash).")
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
        from fairaudit.augment._check import AugmentCheckRequest, run_augment_check
        from fairaudit.preprocess._reporting import parse_formats

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
            seed=seed,
            id_column=id_column,
            model=model,
            labels=labels,
            label_column=label_column,
            masks=masks,
            mask_labels=mask_labels,
            device=device,
            batch_size=batch_size,
            bootstrap=bootstrap,
            ci_level=ci_level,
            correction=correction.lower(),
            min_group_size=min_group_size,
            workers=workers,
            keep_ids=keep_ids,
            salt=salt,
            formats=parse_formats(fmt),
            progress=not quiet,
            command=" ".join(shlex.quote(a) for a in ["fairaudit", *sys.argv[1:]]),
            max_images=max_images,
        )
        outcome = run_augment_check(req)
    except InputError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    if not quiet:
        r = outcome.results
        console = Console()
        console.print(
            f"Checked {r['inputs']['n_checked']} of {r['inputs']['n_files']} files under "
            f"{escape(', '.join(r['config']['families']))} ({escape(r['config']['strength'])})."
        )
        for a in r["attributes"]:
            console.print(f"[bold]{escape(a['name'])}[/]: {escape(a.get('summary') or '')}")
        report = outcome.files.get("html") or outcome.files.get("md") or outcome.files.get("json")
        if report is not None:
            err.print(f"Report: {escape(str(report))}")
