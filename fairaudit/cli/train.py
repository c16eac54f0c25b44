"""`fairaudit train`: train a classifier or segmenter into a model bundle (0 done, 2 bad input).

torch is imported inside the command only: `fairaudit --help` must stay light.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fairaudit.cli import _common as opt

if TYPE_CHECKING:
    from fairaudit.train.loop import TrainResult

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
    dicom_dir: opt.DicomDir,
    out: opt.Out,
    task: opt.Task = "classification",
    demographics: opt.OptionalDemographics = None,
    attribute: opt.OptionalAttributes = None,
    labels: opt.Labels = None,
    label_column: opt.OptionalLabelColumn = None,
    findings: opt.Findings = None,
    masks: opt.Masks = None,
    mask_labels: opt.MaskLabels = None,
    id_column: opt.IdColumn = None,
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
    batch_size: opt.BatchSize = 32,
    lr: Annotated[float, typer.Option("--lr", help="Learning rate (AdamW).")] = 1e-3,
    val_fraction: Annotated[
        float, typer.Option("--val-fraction", help="Share of patients for validation.")
    ] = 0.2,
    bootstrap: opt.Bootstrap = 1000,
    device: opt.Device = "auto",
    seed: opt.Seed = 0,
    workers: opt.Workers = None,
    threads: Annotated[
        int | None, typer.Option("--threads", help="torch CPU threads. \\[default: torch's]")
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Model name in model.json. \\[default: folder name]")
    ] = None,
    follow_symlinks: opt.FollowSymlinks = False,
    max_pixels: opt.MaxPixels = opt.MAX_PIXELS,
    max_file_size: opt.MaxFileSize = opt.MAX_FILE_SIZE,
    quiet: opt.Quiet = False,
) -> None:
    """The flags mapped to a TrainConfig and the data arguments; the library trains."""

    def call() -> TrainResult:
        from fairaudit.errors import InputError

        if demographics is None:
            raise InputError("--demographics is required (the attribute columns and patient ids).")
        opt.check_out(out, {"dicom_dir": dicom_dir, "masks": masks})
        file_limit = opt.max_file_size_bytes(max_file_size)  # a bad size: exit 2 before torch loads
        import torch

        from fairaudit.cohort.findings import parse_findings
        from fairaudit.io.masks import parse_labels
        from fairaudit.models.preprocessing import make_spec
        from fairaudit.train.data import load_training_data
        from fairaudit.train.loop import TrainConfig, architecture_options, train_model

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
        arch, kwargs = architecture_options(
            task, architecture, width=width, depth=depth, pool=pool, dropout=dropout
        )
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
        if findings is not None and fairness != "none":  # refused before any image is read
            raise InputError(
                f"--fairness {fairness}: the fairness penalties train one finding; a multi-label "
                "classifier (--findings) trains with --fairness none.",
                argument="fairness",
            )
        with opt.following_links(follow_symlinks):
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
                findings=parse_findings(findings),
                patient_column=patient_column,
                workers=workers,
                progress=not quiet,
                max_pixels=max_pixels,
                max_file_size=file_limit,
            )
        return train_model(
            data, cfg, out, spec=spec, attributes=list(attribute or []), show_progress=not quiet
        )

    result = opt.run_or_exit(call)
    if not quiet:
        from rich.console import Console

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
    if "findings" in val:  # a multi-label classifier: one overall row per finding
        _print_findings(meta, bundle, console)
        return
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


def _print_findings(meta: dict, bundle: Path, console) -> None:
    from rich.markup import escape
    from rich.table import Table

    tr = meta["training"]
    table = Table(
        title=f"Validation per finding (best epoch {tr['best_epoch']} of {tr['epochs_run']}, "
        f"{tr['seconds']:.0f} s)"
    )
    for column in ("finding", "n"):
        table.add_column(column, justify="left" if column == "finding" else "right")
    for m in ("auroc", "tpr", "tnr"):
        table.add_column(f"{m} [95% CI]", justify="right")
    for f in meta["validation"]["findings"]:
        overall = f["overall"]
        table.add_row(
            escape(f["finding"]),
            str(overall["n"]),
            *[_fmt(overall["metrics"].get(m)) for m in ("auroc", "tpr", "tnr")],
        )
    console.print(table)
    console.print(f"Bundle: {escape(str(bundle))} (weights sha256 {meta['weights']['sha256'][:16]}...)")
