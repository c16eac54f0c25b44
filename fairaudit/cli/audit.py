"""`fairaudit audit`: flags in, library call, exit code out (0 done, 1 gate failed or
inconclusive under on_inconclusive = "fail", 2 bad input)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fairaudit.cli import _common as opt

if TYPE_CHECKING:
    from fairaudit.workflows.core import AuditOutcome

HELP = (
    "Audit a model's predictions per demographic group: metrics with bootstrap intervals, "
    "differences and ratios to a reference group, significance tests corrected for multiple "
    "comparisons, an optional CI gate, and results.json / report.md / report.html / manifest.csv."
)


def audit(
    dicom_dir: opt.OptionalDicomDir = None,
    out: opt.Out = Path("fairaudit_out"),
    predictions: Annotated[
        Path | None,
        typer.Option("--predictions", help="CSV of precomputed predictions: id, label, score."),
    ] = None,
    demographics: opt.OptionalDemographics = None,
    attribute: opt.OptionalAttributes = None,
    task: opt.Task = "classification",
    model: opt.Model = None,
    labels: opt.Labels = None,
    label_column: opt.LabelColumn = "label",
    score_column: Annotated[
        list[str] | None,
        typer.Option(
            "--score-column",
            help="Score column (probability in [0, 1]). With --findings: FINDING=COLUMN, once per "
            "finding whose score column is not named FINDING or score_FINDING. \\[default: score]",
        ),
    ] = None,
    findings: opt.Findings = None,
    uncertain: Annotated[
        str,
        typer.Option(
            "--uncertain",
            help="With --findings, what a label of -1 (uncertain) becomes: exclude (from that "
            "finding), negative or positive (CheXpert's U-Ignore, U-Zeros, U-Ones).",
        ),
    ] = "exclude",
    no_finding_column: Annotated[
        str | None,
        typer.Option(
            "--no-finding-column",
            metavar="NAME",
            help="With --findings, the finding that says no finding is present (default: one "
            "named No Finding): its false-positive rate per group is the underdiagnosis rate.",
        ),
    ] = None,
    prediction_column: Annotated[
        str,
        typer.Option(
            "--prediction-column", help="0/1 prediction column, used when there is no score column."
        ),
    ] = "prediction",
    masks: opt.Masks = None,
    pred_masks: Annotated[Path | None, typer.Option("--pred-masks", help="Predicted masks folder.")] = None,
    mask_labels: opt.MaskLabels = None,
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
    nsd_tolerance_mm: Annotated[
        float,
        typer.Option(
            "--nsd-tolerance-mm",
            min=0.0,
            help="Segmentation: the tolerance of the normalized surface Dice (nsd), in mm (in pixels "
            "when the distances are).",
        ),
    ] = 1.0,
    structures: Annotated[
        str | None,
        typer.Option(
            "--structures",
            metavar="LABEL=NAME,...",
            help="Segmentation of multi-label masks: audit each structure on its own, e.g. "
            "1=liver,2=tumour (not with --mask-labels).",
        ),
    ] = None,
    id_column: opt.IdColumn = None,
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
    within: Annotated[
        list[str] | None,
        typer.Option(
            "--within",
            metavar="COLUMN",
            help="Also compare each group with the reference within each stratum of COLUMN (e.g. site) "
            "and pool the strata (Mantel-Haenszel for rates): does a gap survive adjustment? "
            "Repeatable (strata: the combinations). A sensitivity analysis, outside the correction.",
        ),
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
    bootstrap: opt.Bootstrap = 2000,
    permutations: Annotated[
        int | None,
        typer.Option(
            "--permutations",
            help="Permutations for the brier, auprc, ece and squared_calibration_error tests (and "
            "balanced_accuracy under percentile / bca), raised where needed so the smallest p can "
            "pass the first corrected threshold. \\[default: the --bootstrap count]",
        ),
    ] = None,
    ci_level: opt.CiLevel = 0.95,
    ci_method: Annotated[
        str,
        typer.Option(
            "--ci-method",
            help="score (Wilson/Newcombe/Koopman score intervals for rates, a score interval for AUROC, "
            "the bootstrap for means), exact (Clopper-Pearson for rates), or percentile / bca "
            "(the bootstrap for every metric). See docs/statistics.md.",
        ),
    ] = "score",
    correction: opt.Correction = "holm",
    primary_metrics: Annotated[
        str | None,
        typer.Option(
            "--primary-metrics",
            help="Comma-separated metrics of the pre-specified primary family, corrected on their "
            "own; the other comparisons form the exploratory family. \\[default: the --gate "
            "policy's metrics, else none]",
        ),
    ] = None,
    min_group_size: opt.MinGroupSize = 30,
    seed: opt.Seed = 0,
    device: opt.Device = "auto",
    batch_size: opt.OptionalBatchSize = None,
    workers: opt.Workers = None,
    scheduler: opt.Scheduler = None,
    max_pixels: opt.MaxPixels = opt.MAX_PIXELS,
    max_file_size: opt.MaxFileSize = opt.MAX_FILE_SIZE,
    max_groups: Annotated[
        int,
        typer.Option(
            "--max-groups",
            min=0,
            help="Refuse (exit 2, before any model runs) an attribute with more groups than this, or "
            "nearly one group per row: it looks like an identifier, and the reports name every group. "
            "0: no limit. Bin a numeric column with --bins, pool rare groups with --merge-small-groups.",
        ),
    ] = 20,
    positive_label: Annotated[
        str | None,
        typer.Option(
            "--positive-label",
            metavar="VALUE",
            help="The label value that means the finding is present (e.g. malignant); the one other "
            "value of the label column is 0. Without it labels are 0/1 (or yes/no, true/false).",
        ),
    ] = None,
    score_scale: Annotated[
        str,
        typer.Option("--score-scale", help="probability (scores in [0, 1]) or percent (in [0, 100])."),
    ] = "probability",
    merge_small_groups: Annotated[
        bool,
        typer.Option(
            "--merge-small-groups",
            help="Pool each attribute's groups with fewer records than --min-group-size into one "
            "group 'other' (many small sites or hospitals), before intersections are formed.",
        ),
    ] = False,
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
    fmt: opt.Formats = "html,md,json",
    keep_ids: opt.KeepIds = False,
    trust_model: opt.TrustModel = False,
    follow_symlinks: opt.FollowSymlinks = False,
    salt: opt.Salt = None,
    unit: Annotated[
        str, typer.Option("--unit", help="With DICOM_DIR: one record per image or per series.")
    ] = "image",
    bins: Annotated[
        list[str] | None,
        typer.Option(
            "--bins",
            help="Cut points of a numeric attribute: a CSV column (age=40,65: groups < 40, [40, 65), "
            ">= 65) or a dicom: attribute (dicom:KVP=60,80,100; default: its quartiles). Repeatable.",
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
            help="Metric --discover ranks on: auroc, brier or a rate (tpr, fpr, ...); dice, iou, hd95, assd, "
            "volume_error or nsd in a segmentation audit. \\[default: auroc; dice for segmentation]",
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
    title: opt.Title = None,
    context: opt.ContextFile = None,
    reference_population: opt.ReferencePopulation = None,
    quiet: opt.Quiet = False,
    verbose: opt.Verbose = False,
    json_out: opt.JsonOut = False,
) -> None:
    """The flags mapped to an AuditRequest and the model and mask arguments; the library
    checks them (fairaudit.workflows.audit) and runs the audit; the outcome rendered here."""

    def call() -> AuditOutcome:
        from fairaudit.cohort.findings import parse_findings
        from fairaudit.io.dicom_attributes import parse_bins
        from fairaudit.report.image_reports import parse_formats
        from fairaudit.report.review_view import load_review
        from fairaudit.workflows.audit import run_audit
        from fairaudit.workflows.predictions import AuditRequest, parse_intersections, parse_references
        from fairaudit.workflows.structures import check_structures, parse_structures

        review = load_review(title, context, reference_population)  # read and checked before any work
        parsed_structures = parse_structures(structures)
        check_structures(parsed_structures, mask_labels, pred_mask_labels)
        req = AuditRequest(
            predictions=predictions,
            attributes=list(attribute or []),
            out=out,
            demographics=demographics,
            labels=labels,
            id_column=id_column,
            cluster_column=cluster_column,
            label_column=label_column,
            score_column=score_column[-1] if score_column and not findings else "score",
            score_column_given=bool(score_column) and not findings,
            score_columns=list(score_column or []),
            findings=parse_findings(findings),
            uncertain=uncertain.lower(),
            no_finding_column=no_finding_column,
            prediction_column=prediction_column,
            intersections=parse_intersections(list(intersect or [])),
            references=parse_references(list(reference or [])),
            within=list(dict.fromkeys(w.strip() for w in within or [])),
            missing_as_group=missing_as_group,
            threshold=threshold,
            threshold_policy=threshold_policy,
            calibration_set=calibration_set,
            bootstrap=bootstrap,
            permutations=permutations,
            ci_level=ci_level,
            ci_method=ci_method.lower(),
            correction=correction.lower(),
            primary_metrics=_names(primary_metrics),
            min_group_size=min_group_size,
            seed=seed,
            workers=workers,
            gate=gate,
            baseline_predictions=baseline_predictions,
            formats=parse_formats(fmt, opt.REPORT_FORMATS),
            keep_ids=keep_ids,
            trust_model=trust_model,
            salt=salt,
            command=opt.command_line(),
            dicom_dir=dicom_dir,
            unit=unit.lower(),
            progress=not quiet and not json_out,
            bins=parse_bins(list(bins or [])),
            discover=discover,
            discover_metric=discover_metric.lower() if discover_metric else None,
            discover_top=discover_top,
            max_pixels=max_pixels,
            max_file_size=opt.max_file_size_bytes(max_file_size),
            max_groups=max_groups,
            merge_small_groups=merge_small_groups,
            positive_label=positive_label,
            score_scale=score_scale.lower(),
            nsd_tolerance_mm=nsd_tolerance_mm,
            structures=parsed_structures,
            review=review,
        )
        return run_audit(
            req, task=task, model=model, device=device, batch_size=batch_size, masks=masks,
            pred_masks=pred_masks, mask_labels=mask_labels, pred_mask_labels=pred_mask_labels,
            spacing=spacing, resume=resume, cache_dir=cache_dir, scheduler=scheduler,
            follow_symlinks=follow_symlinks,
        )  # fmt: skip

    outcome = opt.run_or_exit(call)
    if json_out:
        from fairaudit.report.writers import results_to_json

        sys.stdout.write(results_to_json(outcome.results))
    elif not quiet:
        from rich.console import Console

        from fairaudit.report import print_summary

        print_summary(outcome.results, Console(), verbose=verbose)
    if not json_out:
        report = outcome.files.get("html") or outcome.files.get("md") or outcome.files["json"]
        opt.print_report_path(report)
    raise typer.Exit(outcome.exit_code)


def _names(text: str | None) -> tuple[str, ...] | None:
    """--primary-metrics auroc,TPR -> ("auroc", "tpr"); None when not given."""
    if text is None:
        return None
    return tuple(m.strip().lower() for m in text.split(",") if m.strip())
