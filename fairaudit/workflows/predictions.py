"""The classification audit: predictions (+ labels, demographics, DICOM files) -> cohort ->
AuditResult -> AuditReport (the steps of fairaudit.workflows.core).

`build_report` computes without writing (the Python API); `audit_predictions` also writes
the report set into --out (the CLI).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fairaudit.errors import InputError, arg
from fairaudit.workflows.core import (
    AuditOutcome,
    audit_config,
    base_config,
    input_paths,
    load_gate,
    resolve_references,
    run_stats,
    without_timings,
    write_outcome,
)

if TYPE_CHECKING:
    from fairaudit.results import AuditReport

log = logging.getLogger(__name__)


@dataclass
class AuditRequest:
    """Everything an audit of precomputed predictions needs (the CLI flags, typed)."""

    predictions: Any  # Path of the predictions CSV (a model run: its predictions as a Table)
    attributes: list[str]
    out: Path | None  # None: nothing is written (the Python API, build_report)
    demographics: Path | None = None
    labels: Path | None = None
    id_column: str | None = None
    # Records of one patient resample together: None finds `patient_id`, "none" turns it off.
    cluster_column: str | None = None
    label_column: str = "label"
    score_column: str = "score"
    score_column_given: bool = False
    prediction_column: str = "prediction"
    intersections: list[list[str]] = field(default_factory=list)
    references: dict[str, str] = field(default_factory=dict)
    missing_as_group: bool = False
    threshold: float = 0.5
    threshold_policy: str | None = None  # youden, f1, sensitivity=X, specificity=X (one threshold for all)
    calibration_set: Path | None = None  # CSV (id, label, score) to choose it on; default: the audited set
    bootstrap: int = 2000
    permutations: int | None = None
    ci_level: float = 0.95
    ci_method: str = "score"
    correction: str = "holm"
    # The pre-specified primary family; None: the gate policy's metrics (docs/statistics.md).
    primary_metrics: tuple[str, ...] | None = None
    min_group_size: int = 30
    seed: int = 0
    workers: int | None = None
    gate: Path | None = None
    formats: tuple[str, ...] = ("json", "md", "html")
    keep_ids: bool = False
    salt: str | None = None
    command: str = ""
    dicom_dir: Path | None = None  # join predictions to the files of this folder
    unit: str = "image"  # image or series: what one record of the audit is
    progress: bool = True
    bins: dict[str, list[float]] = field(default_factory=dict)  # --bins dicom:KVP=60,80,100
    discover: bool = False  # --discover: rank slices and pairwise intersections (stats._discover)
    discover_metric: str | None = None  # default: auroc (tpr without scores)
    discover_top: int = 10
    # A model run (fairaudit.workflows.model_run): the files it read, so the folder is not scanned again,
    # and the `model` object of results.json.
    files: Any = None  # (Table of readable files, manifest rows of unreadable ones); the rows are dropped after the join
    model: dict[str, Any] | None = None
    baseline_predictions: Path | None = None  # the previous model on the same patients
    max_pixels: int | None = None  # --max-pixels: refuse DICOM files declaring more (None: reader default)
    max_file_size: int | None = None  # --max-file-size: refuse larger DICOM files (None: reader default)
    max_groups: int = 20  # --max-groups: refuse an attribute with more groups (an identifier?); 0: no limit
    # --merge-small-groups: pool each attribute's groups below min_group_size into "other"
    merge_small_groups: bool = False
    positive_label: str | None = None  # --positive-label: the label value that means the finding
    score_scale: str = "probability"  # --score-scale: probability ([0, 1]) or percent ([0, 100])
    trust_model: bool = False  # --trust-model: run a TorchScript --model (it is code, docs/threat-model.md)
    # The set of outputs a model run opened (it writes predictions.csv first); None: the audit opens one.
    outputs: Any = None
    # --findings: a multi-label audit (docs/multilabel.md): ("all",) or the finding columns;
    # every --score-column value as given (FINDING=COLUMN with --findings); --uncertain.
    findings: tuple[str, ...] | None = None
    score_columns: list[str] = field(default_factory=list)
    uncertain: str = "exclude"
    no_finding_column: str | None = None  # --no-finding-column: its fpr is the underdiagnosis rate
    # --within: every comparison again within the strata of these columns, pooled (Mantel-Haenszel
    # for rates; docs/statistics.md, "Confounders"): does a gap survive adjustment for the site?
    within: list[str] = field(default_factory=list)
    # --title, --context, --reference-population, read and checked (fairaudit.report.review_view)
    review: Any = None
    # --task multiclass: class names or integers in the label column, one probability column
    # per class (--score-column CLASS=COLUMN); docs/multiclass.md.
    multiclass: bool = False
    nsd_tolerance_mm: float = 1.0  # --nsd-tolerance-mm: segmentation's NSD tolerance (docs/segmentation.md)
    # --structures 1=liver,2=tumour: segmentation, each label audited on its own (docs/segmentation.md)
    structures: tuple[tuple[int, str], ...] | None = None


def parse_references(values: list[str]) -> dict[str, str]:
    """`--reference ATTR=GROUP` values into a dict (the group may contain '=')."""
    out = {}
    for v in values:
        attr, sep, group = v.partition("=")
        if not sep or not attr.strip():
            raise InputError(
                f"{arg('references')} '{v}': expected ATTR=GROUP, for example sex=F.", argument="references"
            )
        out[attr.strip()] = group
    return out


def parse_intersections(values: list[str]) -> list[list[str]]:
    """`--intersect sex,race` values into lists of attribute names."""
    out = []
    for v in values:
        parts = [p.strip() for p in v.split(",") if p.strip()]
        if len(parts) < 2:
            raise InputError(
                f"{arg('intersections')} '{v}': name two or more attributes separated by commas, e.g. sex,race.",
                argument="intersections",
            )
        out.append(parts)
    return out


def audit_predictions(req: AuditRequest) -> AuditOutcome:
    """Run a complete audit of a predictions CSV and write every output file."""
    from fairaudit._util.atomic import output_set
    from fairaudit.cohort.manifest import ManifestSpool

    # --out is checked (a folder, writable) before the work; the files reach it as one set.
    with output_set(req.out, protect=input_paths(req), shared=req.outputs) as outs, ManifestSpool() as spool:
        return write_outcome(build_report(req, spool), outs, req.formats, req.review)


def build_report(req: AuditRequest, spool: Any) -> AuditReport:
    """The audit of req's predictions as an AuditReport, nothing written; manifest.csv's rows
    go to `spool` (fairaudit.cohort.manifest.ManifestSpool) as the join makes them."""
    from fairaudit._util.memory import release_free_memory
    from fairaudit._util.privacy import IdHasher, use_for_logs
    from fairaudit.cohort.findings import parse_score_map
    from fairaudit.cohort.join import CohortSpec, build_cohort, parse_id_columns
    from fairaudit.io import dicom_attributes as dicom_attrs  # `dicom:KEYWORD` attributes, --bins
    from fairaudit.results import AuditReport, assemble
    from fairaudit.stats import run_audit

    # 1. validate: the policy and the statistics' settings, before any work
    from fairaudit.workflows.audit import check_audit

    check_audit(req)  # which arguments go together, in one place
    policy = load_gate(req.gate, "classification")
    cfg = audit_config(req, policy, threshold=req.threshold, permutations=req.permutations)
    if req.multiclass:
        from fairaudit.workflows.multiclass import check_policy, class_score_map

        check_policy(policy)

    # 2. cohort: the DICOM files (if any) and the join, every row into the manifest
    hasher = IdHasher(req.salt, req.keep_ids)
    use_for_logs(hasher)  # log lines name files as the outputs do
    dicom_wanted = dicom_attrs.requested(
        [*req.attributes, *req.within],
        req.intersections,
        req.bins,
        req.dicom_dir is not None or req.files is not None,
    )
    files = files_manifest = None
    candidates = None
    if req.files is not None:
        from fairaudit.cohort.dicom_files import id_candidates

        files, files_manifest = req.files
        candidates = id_candidates(req.unit)
    elif req.dicom_dir is not None:
        from fairaudit.cohort.dicom_files import id_candidates, scan_dicom_table

        files, files_manifest = scan_dicom_table(
            req.dicom_dir, unit=req.unit, workers=req.workers, progress=req.progress,
            keywords=tuple(a.keyword for a in dicom_wanted), max_pixels=req.max_pixels,
            max_file_size=req.max_file_size,
        )  # fmt: skip
        candidates = id_candidates(req.unit)
        if req.unit == "image":  # a path id matches with or without the extension (docs/images.md)
            from fairaudit.cohort.dicom_files import attach_path_ids

            attach_path_ids(files, req.id_column, [req.predictions, req.demographics, req.labels])
    dicom_records = dicom_attrs.attach(files, dicom_wanted, req.bins, req.salt) if dicom_wanted else []
    spec = CohortSpec(
        predictions=req.predictions,
        attributes=list(req.attributes),
        demographics=req.demographics,
        labels=req.labels,
        id_column=req.id_column,
        label_column=req.label_column,
        score_column=req.score_column,
        prediction_column=req.prediction_column,
        score_column_given=req.score_column_given,
        intersections=req.intersections,
        missing_as_group=req.missing_as_group,
        files=files,
        files_manifest=files_manifest,
        keep_clear_ids=req.baseline_predictions is not None,
        cluster_column=req.cluster_column,
        max_groups=req.max_groups,
        bins=dict(req.bins),
        merge_below=req.min_group_size if req.merge_small_groups else 0,
        positive_label=req.positive_label,
        score_scale=req.score_scale,
        findings=req.findings,
        finding_scores=parse_score_map(req.score_columns) if req.findings is not None else {},
        uncertain=req.uncertain,
        strata=list(req.within),
        multiclass=req.multiclass,
        class_scores=class_score_map(req) if req.multiclass else {},
    )
    if candidates is not None:
        spec.id_candidates = candidates
    # Per-row text is dropped once joined, before the statistics: manifest.csv's rows go to
    # a spool on disk as they are made, and the files' join table is kept as its size.
    cohort = build_cohort(spec, hasher, manifest_spool=spool)
    dicom_files = None if files is None else {"readable": files.count(), "unreadable": len(files_manifest)}
    del spec
    if req.baseline_predictions is None:
        cohort.ids = None  # the ids in clear are needed only to pair a baseline's predictions
    _release_joined(req, files)
    known = list(cohort.attributes)
    references = resolve_references(req.references, known)
    if cohort.classes is not None:
        from fairaudit.workflows.multiclass import build_multiclass_report

        return build_multiclass_report(
            req, cohort, cfg, policy, spool, references=references, dicom_files=dicom_files,
            dicom_records=dicom_records,
        )  # fmt: skip
    if cohort.findings is not None:
        from fairaudit.workflows.multilabel import build_multilabel_report

        return build_multilabel_report(
            req, cohort, cfg, policy, spool, references=references, dicom_files=dicom_files,
            dicom_records=dicom_records,
        )  # fmt: skip
    threshold_selection = None
    if req.threshold_policy or req.calibration_set is not None:
        from dataclasses import replace

        from fairaudit.workflows.thresholds import pick_threshold

        threshold_selection = pick_threshold(
            req.threshold_policy, cohort.labels, cohort.scores, has_scores=cohort.has_scores,
            calibration_set=req.calibration_set, label_column=req.label_column, score_column=req.score_column,
        )  # fmt: skip
        cfg = replace(cfg, threshold=threshold_selection["threshold"])
    threshold = cfg.threshold
    log.info("auditing %d of %d records", cohort.n_included, cohort.n_records)

    # 3. stats
    result = run_stats(
        lambda: run_audit(
            cohort.labels,
            cohort.scores,
            cohort.attributes,
            cfg,
            has_scores=cohort.has_scores,
            references=references,
            clusters=cohort.clusters,
        )  # fmt: skip
    )
    if req.within:
        from fairaudit.stats._strata import attach_within

        run_stats(
            lambda: attach_within(
                result,
                cohort.labels,
                cohort.scores,
                cohort.attributes,
                cohort.strata,
                cfg,
                has_scores=cohort.has_scores,
                clusters=cohort.clusters,
            )
        )
    release_free_memory()  # the statistics' temporaries, before the reports

    # 4. attach: config, inputs, model, baseline, gate, slices, curves, power, provenance
    body = result.to_dict()
    config = base_config(
        body, id_column=cohort.id_column, cluster_column=cohort.cluster_column,
        cluster_missing=cohort.cluster_missing, unit=req.unit,
    )  # fmt: skip
    id_columns = parse_id_columns(req.id_column)
    if id_columns:
        config["id_columns"] = id_columns
    config["label_column"] = cohort.label_source
    config["score_column"] = cohort.score_source
    config["threshold_policy"] = threshold_selection["policy"] if threshold_selection else "fixed"
    if threshold_selection:
        config["threshold_selection"] = threshold_selection
    inputs = audit_inputs(req, cohort, config, dicom_files)
    report = AuditReport(
        assemble(
            command=req.command, body=body, config=config, inputs=inputs, model=without_timings(req.model)
        ),
        result=result,
        manifest=spool,
    )
    if req.baseline_predictions is not None:
        from fairaudit.workflows.baseline import baseline_section

        baseline, baseline_manifest = baseline_section(
            req.baseline_predictions, ids=cohort.ids, id_column=cohort.id_column, labels=cohort.labels,
            scores=cohort.scores, has_scores=cohort.has_scores, attributes=cohort.attributes,
            references={a["name"]: a["reference"] for a in body["attributes"]}, config=config,
            score_column=req.score_column, prediction_column=req.prediction_column, hasher=hasher,
            clusters=cohort.clusters,
        )  # fmt: skip
        report.attach("baseline", baseline)
    else:
        baseline_manifest = None
    report.attach_gate(policy)
    attach_cohort_inputs(report, cohort, dicom_records)
    if req.discover:
        from fairaudit.stats._discover import discover_slices

        base = {a: cohort.attributes[a] for a in dict.fromkeys(req.attributes) if a in cohort.attributes}
        report.attach(
            "discovered",
            run_stats(
                lambda: discover_slices(
                    cohort.labels,
                    cohort.scores,
                    base,
                    cfg,
                    metric=req.discover_metric,
                    top=req.discover_top,
                    has_scores=cohort.has_scores,
                    clusters=cohort.clusters,
                )  # fmt: skip
            ),
        )
    # Curves and power: what the reports need to re-render without the data.
    from fairaudit.stats._curves import attach_curves
    from fairaudit.stats._power import attach_power

    attach_curves(report.data, cohort.labels, cohort.scores, cohort.attributes, threshold, cohort.has_scores)
    attach_power(report.data)
    if baseline_manifest is not None:  # the same text as writing the two frames concatenated
        spool.append(baseline_manifest, header=False)
    attach_provenance(report, req, spool)
    return report


def attach_cohort_inputs(report: AuditReport, cohort: Any, dicom_records: list[dict[str, Any]]) -> None:
    """results.json's `inputs` notes on how the cohort's groups were made: --bins edges,
    --merge-small-groups pools and the `dicom:` attributes read (single-label, multi-label
    and multi-class audits alike)."""
    inputs = report.data["inputs"]
    if cohort.binned:
        inputs["binned_attributes"] = cohort.binned
    if cohort.merged:
        inputs["merged_groups"] = cohort.merged
    if dicom_records:
        inputs["dicom_attributes"] = dicom_records


def attach_provenance(report: AuditReport, req: AuditRequest, spool: Any) -> None:
    """results.json's `provenance`: the sha256 of every input file named (a DataFrame or a
    model run's table has none) and of manifest.csv."""
    from fairaudit.report.provenance import collect_provenance

    paths = {
        "predictions": req.predictions, "demographics": req.demographics, "labels": req.labels,
        "gate_policy": req.gate, "baseline_predictions": req.baseline_predictions,
    }  # fmt: skip
    report.attach(
        "provenance",
        collect_provenance(
            None,
            {k: v if isinstance(v, (str, Path)) else None for k, v in paths.items()},
            manifest_sha256=spool.sha256(),
        ),
    )


def within_config(config: dict[str, Any], inputs: dict[str, Any], strata: dict[str, Any]) -> None:
    """--within in results.json: the stratum columns in `config.within`, and how many included
    records lack a value of each (left out of the within-stratum analysis only) in
    `inputs.missing_strata`."""
    import numpy as np

    from fairaudit._util.absent import present

    config["within"] = list(strata)
    missing = {c: int(np.sum(~present(v))) for c, v in strata.items()}
    if any(missing.values()):
        inputs["missing_strata"] = {c: k for c, k in missing.items() if k}
        for c, k in inputs["missing_strata"].items():
            log.warning(
                "%d included records have no %s: in the audit, out of the within-stratum analysis", k, c
            )


def audit_inputs(
    req: AuditRequest, cohort: Any, config: dict[str, Any], dicom_files: dict[str, int] | None
) -> dict[str, Any]:
    """results.json's `inputs` of a classification audit (single- or multi-label), and the
    --within columns into `config`."""
    inputs: dict[str, Any] = {
        "n_records": cohort.n_records,
        "n_included": cohort.n_included,
        "excluded": cohort.excluded,
        "has_scores": cohort.has_scores,
        "unit": req.unit,
        "dicom_files": dicom_files,
    }
    if cohort.absent:
        inputs["missing_attributes"] = dict(cohort.absent)
    if req.within:
        within_config(config, inputs, cohort.strata)
    return inputs


def _release_joined(req: AuditRequest, files: Any) -> None:
    """Drop the rows of the tables a model run handed over, once joined: the run's records
    and the files' table are held by the cohort now (memory stays flat on large cohorts)."""
    from fairaudit._util.memory import release_free_memory
    from fairaudit.io.tables import Table

    if files is not None and isinstance(files, Table):
        files.frame, files.reader = files.frame.iloc[:0], None
    if isinstance(req.predictions, Table):
        req.predictions.frame, req.predictions.reader = req.predictions.frame.iloc[:0], None
    release_free_memory()  # the join's temporaries, before the statistics fork their workers
