"""`fairaudit train`: train a classifier or segmenter into a model bundle (0 done, 2 bad input).

torch is imported inside the command only: `fairaudit --help` must stay light.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from fairaudit.cli._common import FollowSymlinks, check_out, following_links

HELP = (
    "Train a classifier (finding, from --labels) or a segmenter (from --masks) on a DICOM folder, "
    "with a patient-level split stratified by label and attribute, optional augmentation and "
    "fairness penalty, early stopping, and per-group validation metrics with intervals. Writes a "
    "model bundle (model.safetensors, model.json, training_log.jsonl) that `audit --model` takes."
)
log = logging.getLogger(__name__)


def _parse_size(text: str) -> list[int]:
    from fairaudit.errors import InputError

    try:
        parts = [int(p) for p in text.lower().replace(",", "x").split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 8:
        raise InputError(f"--input-size '{text}': expected HxW (each at least 8), e.g. 64x64.")
    return parts


def train(
    dicom_dir: Annotated[Path, typer.Argument(help="Folder of DICOM images to train on.")],
    out: Annotated[Path, typer.Option("--out", help="Bundle folder to write (created if missing).")],
    task: Annotated[str, typer.Option("--task", help="classification or segmentation.")] = "classification",
    demographics: Annotated[
        Path | None, typer.Option("--demographics", help="Demographics CSV (id, patient_id, attributes).")
    ] = None,
    attribute: Annotated[
        list[str] | None,
        typer.Option("--attribute", help="Attribute to stratify the split and report by (repeatable)."),
    ] = None,
    labels: Annotated[Path | None, typer.Option("--labels", help="Labels CSV (classification).")] = None,
    label_column: Annotated[
        str | None, typer.Option("--label-column", help="0/1 label column. \\[default: label, else finding]")
    ] = None,
    masks: Annotated[
        Path | None, typer.Option("--masks", help="Folder of <id>.png label masks (segmentation).")
    ] = None,
    mask_labels: Annotated[
        str | None,
        typer.Option(
            "--mask-labels", help="Mask values that are foreground, e.g. 2. \\[default: any nonzero]"
        ),
    ] = None,
    id_column: Annotated[
        str | None, typer.Option("--id-column", help="Join key. \\[default: auto-detect]")
    ] = None,
    patient_column: Annotated[
        str | None,
        typer.Option(
            "--patient-column", help="Patient column for the split. \\[default: patient_id, else the id]"
        ),
    ] = None,
    architecture: Annotated[
        str | None,
        typer.Option(
            "--architecture", help="unet | small_cnn | resnet18. \\[default: small_cnn or unet by task]"
        ),
    ] = None,
    width: Annotated[
        int | None,
        typer.Option("--width", help="Base channels of the network. \\[default: per architecture]"),
    ] = None,
    depth: Annotated[int | None, typer.Option("--depth", help="U-Net depth. \\[default: 4]")] = None,
    pool: Annotated[
        str | None,
        typer.Option("--pool", help="Classifier global pooling: avg | max | avgmax. \\[default: avg]"),
    ] = None,
    dropout: Annotated[float, typer.Option("--dropout", help="Dropout probability.")] = 0.0,
    input_size: Annotated[str, typer.Option("--input-size", help="Network input HxW.")] = "64x64",
    resize: Annotated[str, typer.Option("--resize", help="stretch or letterbox.")] = "stretch",
    intensity: Annotated[
        str, typer.Option("--intensity", help="percentile | minmax | zscore | none.")
    ] = "percentile",
    highpass: Annotated[
        float | None,
        typer.Option(
            "--highpass",
            help="Add a high-pass channel (image minus its Gaussian blur of this sigma, in network pixels).",
        ),
    ] = None,
    fairness: Annotated[
        str,
        typer.Option(
            "--fairness",
            help="none | dice_variance | demographic_parity | equalized_odds | calibration | adversarial.",
        ),
    ] = "none",
    fairness_weight: Annotated[float, typer.Option("--fairness-weight", help="Weight of the penalty.")] = 0.1,
    fairness_attribute: Annotated[
        str | None,
        typer.Option("--fairness-attribute", help="Attribute the penalty uses. \\[default: first]"),
    ] = None,
    augment: Annotated[
        bool, typer.Option("--augment/--no-augment", help="Seeded flips, rotations, zoom, intensity, noise.")
    ] = False,
    epochs: Annotated[int, typer.Option("--epochs", help="Maximum number of epochs.")] = 20,
    patience: Annotated[
        int, typer.Option("--patience", help="Early stop after this many epochs without improvement.")
    ] = 5,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Batch size.")] = 32,
    lr: Annotated[float, typer.Option("--lr", help="Learning rate (AdamW).")] = 1e-3,
    val_fraction: Annotated[
        float, typer.Option("--val-fraction", help="Share of patients for validation.")
    ] = 0.2,
    bootstrap: Annotated[
        int, typer.Option("--bootstrap", help="Bootstrap resamples for validation intervals.")
    ] = 1000,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda.")] = "auto",
    seed: Annotated[int, typer.Option("--seed", help="Seed of every random draw.")] = 0,
    workers: Annotated[int | None, typer.Option("--workers", help="DICOM decoding processes.")] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", help="torch CPU threads. \\[default: torch's]")
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Model name in model.json. \\[default: folder name]")
    ] = None,
    follow_symlinks: FollowSymlinks = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = False,
) -> None:
    from rich.console import Console
    from rich.markup import escape

    from fairaudit.errors import InputError

    err = Console(stderr=True)
    try:
        if demographics is None:
            raise InputError("--demographics is required (the attribute columns and patient ids).")
        check_out(out, {"DICOM_DIR": dicom_dir, "--masks": masks})
        import torch

        from fairaudit.io.masks import parse_labels
        from fairaudit.models.preprocessing import make_spec
        from fairaudit.train.data import load_training_data
        from fairaudit.train.loop import TrainConfig, train_model

        if threads:
            torch.set_num_threads(int(threads))
        try:
            spec = make_spec(
                input_size=_parse_size(input_size),
                resize=resize,
                intensity=intensity,
                highpass_sigma=highpass,
            )
        except ValueError as exc:
            raise InputError(str(exc)) from None
        kwargs: dict = {}
        arch = architecture or ("unet" if task == "segmentation" else "small_cnn")
        if arch not in ("unet", "small_cnn", "resnet18"):
            raise InputError(f"--architecture must be unet, small_cnn or resnet18, not '{arch}'.")
        if width is not None:
            kwargs["base_channels" if arch == "unet" else "width"] = width
        if depth is not None:
            if arch != "unet":
                raise InputError("--depth applies to --architecture unet only.")
            kwargs["depth"] = depth
        if dropout:
            kwargs["dropout"] = dropout
        if pool is not None:
            if arch == "unet":
                raise InputError("--pool applies to the classifiers (small_cnn, resnet18) only.")
            kwargs["pool"] = pool
        cfg = TrainConfig(
            task=task,
            architecture=arch,
            arch_kwargs=kwargs,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            fairness=fairness,
            fairness_weight=fairness_weight,
            fairness_attribute=fairness_attribute,
            patience=patience,
            val_fraction=val_fraction,
            augment=augment,
            device=device,
            bootstrap=bootstrap,
            name=name or out.name,
        )
        cfg.validate()
        with following_links(follow_symlinks):
            data = load_training_data(
                dicom_dir,
                task=task,
                demographics=demographics,
                attributes=list(attribute or []),
                spec=spec,
                labels=labels,
                masks=masks,
                mask_labels=parse_labels(mask_labels),
                id_column=id_column,
                label_column=label_column,
                patient_column=patient_column,
                workers=workers,
                progress=not quiet,
            )
        result = train_model(
            data, cfg, out, spec=spec, attributes=list(attribute or []), show_progress=not quiet
        )
    except InputError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    if not quiet:
        _print_summary(result.meta, result.bundle, Console())


def _fmt(est: dict) -> str:
    if est is None or est.get("value") is None:
        return "-"
    ci = est.get("ci")
    return f"{est['value']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def _print_summary(meta: dict, bundle: Path, console) -> None:
    from rich.markup import escape
    from rich.table import Table

    val = meta["validation"]
    metrics = ["dice"] if meta["task"] == "segmentation" else ["auroc", "tpr", "tnr"]
    tr = meta["training"]
    table = Table(
        title=f"Validation (best epoch {tr['best_epoch']} of {tr['epochs_run']}, {tr['seconds']:.0f} s)"
    )
    table.add_column("attribute")
    table.add_column("group")
    table.add_column("n", justify="right")
    for m in metrics:
        table.add_column(f"{m} [95% CI]", justify="right")
    table.add_row(
        "overall", "", str(val["overall"]["n"]), *[_fmt(val["overall"]["metrics"].get(m)) for m in metrics]
    )
    for attr in val["attributes"]:
        for g in attr["groups"]:
            table.add_row(
                escape(attr["name"]),
                escape(g["group"]),
                str(g["n"]),
                *[_fmt(g["metrics"].get(m)) for m in metrics],
            )
    console.print(table)
    console.print(f"Bundle: {escape(str(bundle))} (weights sha256 {meta['weights']['sha256'][:16]}...)")
