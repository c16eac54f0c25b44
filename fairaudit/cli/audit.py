"""`fairaudit audit`: flags in, library call, exit code out (0 done, 1 gate failed or
inconclusive under on_inconclusive = "fail", 2 bad input)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from fairaudit import cluster
from fairaudit.cli._common import FollowSymlinks, Scheduler, TrustModel, command_line, following_links

HELP = (
    "Audit a model's predictions per demographic group: metrics with bootstrap intervals, "
    "differences and ratios to a reference group, significance tests corrected for multiple "
    "comparisons, an optional CI gate, and results.json / report.md / report.html / manifest.csv."
)
log = logging.getLogger(__name__)

_FORMATS = ("html", "md", "json", "junit")


def audit(
    dicom_dir: Annotated[
        Path | None,
        typer.Argument(
            help="DICOM folder: the images --model runs on, or the files --predictions are joined "
            "with by id (SOPInstanceUID, ...)."
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Output folder (created if missing).")] = Path(
        "fairaudit_out"
    ),
    predictions: Annotated[
        Path | None,
        typer.Option("--predictions", help="CSV of precomputed predictions: id, label, score."),
    ] = None,
    demographics: Annotated[
        Path | None,
        typer.Option(
            "--demographics",
            help="Demographics CSV (omit when the attributes are in --predictions).",
        ),
    ] = None,
    attribute: Annotated[
        list[str] | None, typer.Option("--attribute", help="Column to audit by (repeatable).")
    ] = None,
    task: Annotated[str, typer.Option("--task", help="classification or segmentation.")] = "classification",
    model: Annotated[
        str | None,
        typer.Option("--model", help="bundled:NAME, a bundle folder, TorchScript or ONNX."),
    ] = None,
    labels: Annotated[
        Path | None, typer.Option("--labels", help="CSV with the ground-truth label per id.")
    ] = None,
    label_column: Annotated[str, typer.Option("--label-column", help="Label column (0/1).")] = "label",
    score_column: Annotated[
        str | None,
        typer.Option("--score-column", help="Score column (probability in [0, 1]). \\[default: score]"),
    ] = None,
    prediction_column: Annotated[
        str,
        typer.Option(
            "--prediction-column", help="0/1 prediction column, used when there is no score column."
        ),
    ] = "prediction",
    masks: Annotated[
        Path | None, typer.Option("--masks", help="Segmentation ground-truth masks folder.")
    ] = None,
    pred_masks: Annotated[Path | None, typer.Option("--pred-masks", help="Predicted masks folder.")] = None,
    mask_labels: Annotated[
        str | None,
        typer.Option(
            "--mask-labels",
            help="Mask values that count as foreground, e.g. 1,2 or 2. \\[default: any nonzero value]",
        ),
    ] = None,
    pred_mask_labels: Annotated[
        str | None,
        typer.Option(
            "--pred-mask-labels", help="Foreground values of the predicted masks. \\[default: --mask-labels]"
        ),
    ] = None,
    spacing: Annotated[
        str | None,
        typer.Option(
            "--spacing",
            help="Pixel spacing in mm (rows x cols, e.g. 0.5x0.5) when DICOM_DIR does not give it; "
            "without either, hd95 and assd are in pixels.",
        ),
    ] = None,
    id_column: Annotated[
        str | None,
        typer.Option(
            "--id-column",
            help="Join key; default: auto-detect (sop_instance_uid, study_instance_uid, patient_id, path).",
        ),
    ] = None,
    cluster_column: Annotated[
        str | None,
        typer.Option(
            "--cluster-column",
            help="Column naming each record's patient: bootstrap and permutation draws take whole patients. "
            "Default: 'patient_id' where an input has it; 'none' treats records as independent.",
        ),
    ] = None,
    intersect: Annotated[
        list[str] | None,
        typer.Option("--intersect", help="Intersectional groups, e.g. sex,race (repeatable)."),
    ] = None,
    reference: Annotated[
        list[str] | None,
        typer.Option("--reference", help="ATTR=GROUP reference group; default: the largest (repeatable)."),
    ] = None,
    missing_as_group: Annotated[
        bool,
        typer.Option(
            "--missing-as-group",
            help="Keep rows with a missing attribute as an explicit '(missing)' group.",
        ),
    ] = False,
    threshold: Annotated[
        float,
        typer.Option("--threshold", help="Decision threshold: positive when score >= threshold."),
    ] = 0.5,
    threshold_policy: Annotated[
        str | None,
        typer.Option(
            "--threshold-policy",
            help="Choose ONE threshold for all groups instead of --threshold: youden, f1, "
            "sensitivity=0.8 or specificity=0.8 (on the audited set, or on --calibration-set).",
        ),
    ] = None,
    calibration_set: Annotated[
        Path | None,
        typer.Option("--calibration-set", help="CSV (id, label, score) to choose --threshold-policy on."),
    ] = None,
    bootstrap: Annotated[int, typer.Option("--bootstrap", help="Bootstrap resamples B.")] = 2000,
    permutations: Annotated[
        int | None,
        typer.Option(
            "--permutations",
            help="Permutations for the brier, auprc, ece and squared_calibration_error tests (and "
            "balanced_accuracy under percentile / bca), raised where needed so the smallest p can "
            "pass the first corrected threshold. \\[default: the --bootstrap count]",
        ),
    ] = None,
    ci_level: Annotated[float, typer.Option("--ci-level", help="Confidence level of the intervals.")] = 0.95,
    ci_method: Annotated[
        str,
        typer.Option(
            "--ci-method",
            help="score (Wilson/Newcombe/Koopman score intervals for rates, a score interval for AUROC, "
            "the bootstrap for means), exact (Clopper-Pearson for rates), or percentile / bca "
            "(the bootstrap for every metric). See docs/statistics.md.",
        ),
    ] = "score",
    correction: Annotated[
        str, typer.Option("--correction", help="holm, fdr_bh, bonferroni or none.")
    ] = "holm",
    primary_metrics: Annotated[
        str | None,
        typer.Option(
            "--primary-metrics",
            help="Comma-separated metrics of the pre-specified primary family, corrected on their "
            "own; the other comparisons form the exploratory family. \\[default: the --gate "
            "policy's metrics, else none]",
        ),
    ] = None,
    min_group_size: Annotated[
        int, typer.Option("--min-group-size", help="Groups with fewer cases are marked small.")
    ] = 30,
    seed: Annotated[int, typer.Option("--seed", help="Seed of every random draw.")] = 0,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda (model runs).")] = "auto",
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="Inference batch size (model runs).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Worker processes. \\[default: CPU count]")
    ] = None,
    scheduler: Scheduler = None,
    max_pixels: Annotated[
        int,
        typer.Option(
            "--max-pixels",
            min=1,
            help="Refuse (exclude, from the header, before decoding) a DICOM file declaring more than "
            "Rows x Columns x frames x samples values: bounds the memory one file can take.",
        ),
    ] = 2**28,
    max_file_size: Annotated[
        str,
        typer.Option(
            "--max-file-size",
            metavar="SIZE",
            help="Exclude, from its size and before reading it, a DICOM file larger than this "
            "(bytes, or e.g. 500MB, 2GB): bounds the time one file can take.",
        ),
    ] = "2GB",
    max_groups: Annotated[
        int,
        typer.Option(
            "--max-groups",
            min=0,
            help="Refuse (exit 2, before any model runs) an attribute with more groups than this, or "
            "nearly one group per row: it looks like an identifier, and the reports name every group. "
            "0: no limit.",
        ),
    ] = 50,
    gate: Annotated[
        Path | None,
        typer.Option(
            "--gate",
            help="Gate policy TOML; exit code 1 when it fails, or is inconclusive (policy on_inconclusive).",
        ),
    ] = None,
    baseline_predictions: Annotated[
        Path | None,
        typer.Option(
            "--baseline-predictions",
            help="The previous model's predictions on the same patients (same id and score columns): "
            "adds each group's change with paired intervals and tests, for the gate's "
            "max_disparity_increase.",
        ),
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="Reports to write: any of html,md,json,junit.")
    ] = "html,md,json",
    keep_ids: Annotated[
        bool,
        typer.Option("--keep-ids", help="Keep ids in clear in manifest.csv (default: salted hash)."),
    ] = False,
    trust_model: TrustModel = False,
    follow_symlinks: FollowSymlinks = False,
    salt: Annotated[
        str | None,
        typer.Option("--salt", envvar="FAIRAUDIT_SALT", help="Salt for stable id hashes across runs."),
    ] = None,
    unit: Annotated[
        str, typer.Option("--unit", help="With DICOM_DIR: one record per image or per series.")
    ] = "image",
    bins: Annotated[
        list[str] | None,
        typer.Option(
            "--bins",
            help="Cut points of a numeric dicom: attribute, e.g. dicom:KVP=60,80,100 (repeatable). "
            "\\[default: quartiles]",
        ),
    ] = None,
    discover: Annotated[
        bool,
        typer.Option(
            "--discover",
            help="Search the groups of the attributes and their pairwise intersections for the slices "
            "where the model does worst (p-values adjusted over the whole search).",
        ),
    ] = False,
    discover_metric: Annotated[
        str | None,
        typer.Option(
            "--discover-metric",
            help="Metric --discover ranks on: auroc, brier or a rate (tpr, fpr, ...); dice, iou, hd95, assd or "
            "volume_error in a segmentation audit. \\[default: auroc; dice for segmentation]",
        ),
    ] = None,
    discover_top: Annotated[
        int, typer.Option("--discover-top", help="Slices --discover reports.", min=1)
    ] = 10,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="With --model: reuse the scores an earlier (interrupted) run cached for the same model "
            "and the same file contents; only the rest is decoded and predicted.",
        ),
    ] = False,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir",
            help="With --model: where scores are cached as they come (content hashes and scores only, "
            "no ids). \\[default: OUT_DIR/.fairaudit-cache]",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No terminal summary.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print results.json to standard output.")] = False,
) -> None:
    from rich.console import Console

    from fairaudit.errors import InputError

    err = Console(stderr=True)
    try:
        segmentation = task == "segmentation" or masks is not None or pred_masks is not None
        if task not in ("classification", "segmentation"):
            raise InputError(f"--task must be classification or segmentation, not '{task}'.")
        if predictions is None and model is None and not segmentation:
            raise InputError(
                "nothing to audit: pass --predictions preds.csv, or DICOM_DIR with --model "
                "(bundled:NAME, a bundle folder, a TorchScript or ONNX file)."
            )
        if model is not None and pred_masks is not None:
            raise InputError("--model and --pred-masks exclude each other: the model makes the masks.")
        if model is None and (resume or cache_dir is not None):
            raise InputError("--resume and --cache-dir apply to a model run: add --model.")
        if segmentation and task != "segmentation":
            raise InputError(
                "--masks and --pred-masks belong to a segmentation audit: add --task segmentation."
            )
        dicom_named = any(a.strip().startswith("dicom:") for a in [*(attribute or []), *(intersect or [])])
        if segmentation and (bins or dicom_named):
            raise InputError(
                "--bins and dicom: attributes are not available for segmentation audits yet; "
                "put the attribute in the demographics CSV."
            )
        if segmentation and baseline_predictions is not None:
            raise InputError("--baseline-predictions is available for classification audits only.")
        _check_counts(bootstrap, permutations)  # before any file is read or model run
        from fairaudit._util.sizes import parse_size

        try:
            max_file_bytes = parse_size(max_file_size)
        except ValueError as exc:
            raise InputError(f"--max-file-size: {exc}.") from None
        formats = tuple(f.strip().lower() for f in fmt.split(",") if f.strip())
        bad = [f for f in formats if f not in _FORMATS]
        if bad or not formats:
            raise InputError(
                f"--format: unknown format(s) {', '.join(bad) or '(none)'}; choose from {', '.join(_FORMATS)}."
            )
        _check_out(out, cache_dir, dicom_dir, masks, pred_masks, model, {
            "--predictions": predictions, "--demographics": demographics, "--labels": labels,
            "--gate": gate, "--calibration-set": calibration_set,
            "--baseline-predictions": baseline_predictions,
        })  # fmt: skip
        from fairaudit.io.dicom_attributes import parse_bins
        from fairaudit.stats._audit import KNOWN_PRIMARY

        primary = None
        if primary_metrics is not None:
            primary = tuple(m.strip().lower() for m in primary_metrics.split(",") if m.strip())
            unknown = [m for m in primary if m not in KNOWN_PRIMARY]
            if unknown:
                raise InputError(
                    f"--primary-metrics: unknown metric(s) {', '.join(unknown)}; known: {', '.join(KNOWN_PRIMARY)}."
                )
        from fairaudit.workflows.predictions import (
            AuditRequest,
            audit_predictions,
            parse_intersections,
            parse_references,
        )

        req = AuditRequest(
            predictions=predictions,
            attributes=list(attribute or []),
            out=out,
            demographics=demographics,
            labels=labels,
            id_column=id_column,
            cluster_column=cluster_column,
            label_column=label_column,
            score_column=score_column or "score",
            score_column_given=score_column is not None,
            prediction_column=prediction_column,
            intersections=parse_intersections(list(intersect or [])),
            references=parse_references(list(reference or [])),
            missing_as_group=missing_as_group,
            threshold=threshold,
            threshold_policy=threshold_policy,
            calibration_set=calibration_set,
            bootstrap=bootstrap,
            permutations=permutations,
            ci_level=ci_level,
            ci_method=ci_method.lower(),
            correction=correction.lower(),
            primary_metrics=primary,
            min_group_size=min_group_size,
            seed=seed,
            workers=workers,
            gate=gate,
            baseline_predictions=baseline_predictions,
            formats=formats,
            keep_ids=keep_ids,
            trust_model=trust_model,
            salt=salt,
            command=command_line(),
            dicom_dir=dicom_dir,
            unit=unit.lower(),
            progress=not quiet and not json_out,
            bins=parse_bins(list(bins or [])),
            discover=discover,
            discover_metric=discover_metric.lower() if discover_metric else None,
            discover_top=discover_top,
            max_pixels=max_pixels,
            max_file_size=max_file_bytes,
            max_groups=max_groups,
        )
        with cluster.connect(scheduler), following_links(follow_symlinks):
            if model is not None:
                from fairaudit.workflows.model_run import audit_with_model

                outcome = audit_with_model(
                    req, model, device=device, batch_size=batch_size, segmentation=segmentation,
                    masks=masks, mask_labels=mask_labels, pred_mask_labels=pred_mask_labels,
                    spacing=spacing, resume=resume, cache_dir=cache_dir,
                )  # fmt: skip
            elif segmentation:
                from fairaudit.workflows.segmentation import audit_segmentation, request_from_audit

                outcome = audit_segmentation(
                    request_from_audit(
                        req, masks=masks, pred_masks=pred_masks, mask_labels=mask_labels,
                        pred_mask_labels=pred_mask_labels, spacing=spacing,
                    )
                )  # fmt: skip
            else:
                outcome = audit_predictions(req)
    except InputError as exc:
        err.print(f"[bold red]error:[/] {_escape(str(exc))}")
        raise typer.Exit(2) from None

    if json_out:
        from fairaudit.report.writers import results_to_json

        sys.stdout.write(results_to_json(outcome.results))
    elif not quiet:
        from fairaudit.report import print_summary

        print_summary(outcome.results, Console())
    if not json_out:
        report = outcome.files.get("html") or outcome.files.get("md") or outcome.files["json"]
        err.print(f"Report: {_escape(str(report))}")  # a folder named o_[/]x is not markup
    raise typer.Exit(outcome.exit_code)


def _check_counts(bootstrap: int, permutations: int | None) -> None:
    """--bootstrap, --permutations and FAIRAUDIT_WORKERS checked before the work, not when
    the statistics (or the worker pool) start after a model run (docs/ci.md, "Exit codes")."""
    from fairaudit._util.workers import env_workers
    from fairaudit.errors import InputError

    for option, value in (("--bootstrap", bootstrap), ("--permutations", permutations)):
        if value is not None and value < 1:
            hint = (
                "The default is 2000."
                if option == "--bootstrap"
                else "Leave it out to use the --bootstrap count."
            )
            raise InputError(f"{option} must be at least 1, got {value}.", hint=hint)
    env_workers()


def _check_out(
    out: Path,
    cache_dir: Path | None,
    dicom_dir: Path | None,
    masks: Path | None,
    pred_masks: Path | None,
    model: str | None,
    files: dict[str, Path | None],
) -> None:
    """--out and --cache-dir outside every input folder, and overwriting no input file (exit 2,
    before any work; fairaudit._util.safe_paths)."""
    from fairaudit._util.safe_paths import check_output_location
    from fairaudit.models.pred_cache import CACHE_DIR
    from fairaudit.report.writers import REPORT_FILES
    from fairaudit.workflows.model_run import PRED_MASKS_DIR, PREDICTIONS_FILE
    from fairaudit.workflows.segmentation import CASES_FILE

    folders = {"DICOM_DIR": dicom_dir, "--masks": masks, "--pred-masks": pred_masks}
    if model is not None and not model.startswith("bundled:"):
        folders["--model"] = Path(model)  # a bundle folder (a model file is no folder: skipped)
    written = {*REPORT_FILES.values(), "manifest.csv", CASES_FILE}
    if model is not None:  # a model run writes these too (--predictions OUT/predictions.csv is fine without)
        written |= {PREDICTIONS_FILE, PRED_MASKS_DIR, CACHE_DIR}
    files = {**files, **folders}  # an input folder at OUT/pred_masks would be written into too
    check_output_location(
        {"--out": out, "--cache-dir": cache_dir}, folders=folders, files=files, written=written
    )


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
