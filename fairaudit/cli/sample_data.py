"""`fairaudit sample-data`: write the synthetic chest-radiograph cohort (0 done, 2 bad input)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fairaudit.cli import _common as opt

if TYPE_CHECKING:
    from fairaudit.sample.cohort import CohortFiles

HELP = (
    "Generate a synthetic chest-radiograph cohort with a planted site/race disparity: DICOM files "
    "(CR and DX, 12-bit, some MONOCHROME1, some RLE or JPEG-LS), lung and lesion masks (PNG), "
    "demographics.csv, labels.csv, findings.csv (CheXpert-style labels of five findings and No Finding), "
    "predictions.csv of a simulated model (or, with --model, that model's scores: one score_<class> "
    "column per output), images.csv and README.md."
)


def sample_data(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the cohort into (created if missing).")],
    n: Annotated[
        int | None,
        typer.Option(
            "--n", help="Number of images (default 400) or, with --volumes, of volumes (default 60).", min=1
        ),
    ] = None,
    size: Annotated[
        int | None,
        typer.Option(
            "--size",
            help="Image width and height in pixels (32..2048, default 256); with --volumes the in-plane "
            "size in voxels (16..256, default 48; size // 3 slices).",
        ),
    ] = None,
    seed: opt.Seed = 0,
    volumes: Annotated[
        bool,
        typer.Option(
            "--volumes",
            help="Write a 3-D segmentation cohort instead: NIfTI images and liver/tumour masks "
            "(.nii.gz, 0.8x0.8x2.5 mm), a simulated model's masks with a planted site-C boundary "
            "error, and demographics.csv (docs/nifti.md).",
        ),
    ] = False,
    workers: opt.Workers = None,
    model: opt.Model = None,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace an earlier cohort's images, masks, CSVs and README."),
    ] = False,
    quiet: opt.Quiet = False,
) -> None:
    """Generate the cohort (with a progress bar unless --quiet) and summarize it."""
    from rich.console import Console

    if volumes and model is not None:
        from fairaudit.errors import InputError

        opt.run_or_exit(
            lambda: _refuse(
                InputError("--model scores the chest radiographs; --volumes writes no model scores.")
            )
        )
    if volumes:
        _volumes(out_dir, n, size, seed, overwrite, quiet)
        return
    n = 400 if n is None else n
    size = 256 if size is None else size

    def call() -> CohortFiles:
        from fairaudit.sample.cohort import generate_cohort

        scorer = None
        if model is not None:  # torch only on this path
            from fairaudit.workflows.sample_scores import model_predictions as scorer

        if quiet:
            return generate_cohort(
                out_dir, n, size, seed, overwrite=overwrite, workers=workers, model=model, scorer=scorer
            )
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        bar = Progress(
            TextColumn("Rendering"),
            BarColumn(),
            MofNCompleteColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        task = bar.add_task("images", total=n)

        def progress(done: int, _total: int) -> None:
            # Started at the first image, after the worker processes are forked: forking
            # while the bar's refresh thread holds a lock could hang a worker.
            if not bar.live.is_started:
                bar.start()
            bar.update(task, completed=done)

        try:
            return generate_cohort(
                out_dir,
                n,
                size,
                seed,
                overwrite=overwrite,
                progress=progress,
                workers=workers,
                model=model,
                scorer=scorer,
            )
        finally:
            if bar.live.is_started:
                bar.stop()

    files = opt.run_or_exit(call)
    if not quiet:
        _print_summary(files, Console())


def _volumes(out_dir: Path, n: int | None, size: int | None, seed: int, overwrite: bool, quiet: bool) -> None:
    """`--volumes`: the 3-D NIfTI cohort (fairaudit.sample.volumes), summarized unless --quiet."""
    from rich.console import Console
    from rich.markup import escape

    from fairaudit.sample.volumes import generate_volumes

    files = opt.run_or_exit(
        lambda: generate_volumes(
            out_dir, 60 if n is None else n, 48 if size is None else size, seed, overwrite=overwrite
        )
    )
    if quiet:
        return
    console = Console()
    shape = " x ".join(map(str, files.shape))
    sites = ", ".join(f"{s} {c}" for s, c in files.by_site.items())
    console.print(f"Synthetic 3-D cohort: {files.n} volumes of {shape} voxels; cases by site: {sites}.")
    for label, path in (
        ("images", files.images),
        ("masks", files.masks),
        ("pred_masks", files.pred_masks),
        ("demographics", files.demographics),
        ("README", files.readme),
    ):
        console.print(f"  {label:<13} {escape(str(path))}")


def _print_summary(files, console) -> None:  # files: CohortFiles
    from rich.markup import escape
    from rich.table import Table

    s = files.summary
    table = Table(title=f"Synthetic cohort: {s['n_images']} images, {s['n_patients']} patients")
    table.add_column("site")
    table.add_column("images", justify="right")
    table.add_column(f"{s.get('model') or 'simulated model'} TPR @0.5", justify="right")
    for site, count in s["by_site"].items():
        tpr = s.get("tpr_at_0.5_by_site", {}).get(site)
        table.add_row(site, str(count), "-" if tpr is None else f"{tpr:.2f}")
    console.print(table)
    share = ", ".join(
        f"{race} {'-' if v is None else f'{100 * v:.0f}%'}" for race, v in s["portable_share_by_race"].items()
    )
    ts = s["transfer_syntax"]
    console.print(f"Portable share by race: {share}; findings {s['findings']} of {s['n_images']}.")
    console.print(
        f"Storage: {s['photometric']['MONOCHROME1']} MONOCHROME1; {ts['rle_lossless']} RLE, "
        f"{ts['jpeg_ls_lossless']} JPEG-LS, {ts['explicit_vr_little_endian']} uncompressed."
    )
    root = files.out_dir
    for label, path in (
        ("DICOM", root / "images"),
        ("masks", root / "masks"),
        ("demographics", files.demographics),
        ("labels", files.labels),
        ("findings", files.findings),
        ("predictions", files.predictions),
        ("index", files.index),
        ("README", files.readme),
    ):
        console.print(f"  {label:<13} {escape(str(path))}")


def _refuse(exc: Exception) -> None:
    raise exc
