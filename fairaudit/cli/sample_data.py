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
    "demographics.csv, labels.csv, predictions.csv of a simulated model, images.csv and README.md."
)


def sample_data(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the cohort into (created if missing).")],
    n: Annotated[int, typer.Option("--n", help="Number of images.", min=1)] = 400,
    size: Annotated[int, typer.Option("--size", help="Image width and height in pixels (32..2048).")] = 256,
    seed: opt.Seed = 0,
    workers: opt.Workers = None,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace an earlier cohort's images, masks, CSVs and README."),
    ] = False,
    quiet: opt.Quiet = False,
) -> None:
    """Generate the cohort (with a progress bar unless --quiet) and summarize it."""
    from rich.console import Console

    def call() -> CohortFiles:
        from fairaudit.sample.cohort import generate_cohort

        if quiet:
            return generate_cohort(out_dir, n, size, seed, overwrite=overwrite, workers=workers)
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
                out_dir, n, size, seed, overwrite=overwrite, progress=progress, workers=workers
            )
        finally:
            if bar.live.is_started:
                bar.stop()

    files = opt.run_or_exit(call)
    if not quiet:
        _print_summary(files, Console())


def _print_summary(files, console) -> None:  # files: CohortFiles
    from rich.markup import escape
    from rich.table import Table

    s = files.summary
    table = Table(title=f"Synthetic cohort: {s['n_images']} images, {s['n_patients']} patients")
    table.add_column("site")
    table.add_column("images", justify="right")
    table.add_column("simulated model TPR @0.5", justify="right")
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
        ("predictions", files.predictions),
        ("index", files.index),
        ("README", files.readme),
    ):
        console.print(f"  {label:<13} {escape(str(path))}")
