"""The audit as a library call: inputs -> cohort -> AuditResult -> gate -> files.

The CLI only parses flags and calls `audit_predictions`; tests call it directly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fairaudit._version import __version__
from fairaudit.errors import InputError

log = logging.getLogger(__name__)

SCHEMA_VERSION = "2"
DEFAULT_FORMATS = ("json", "md", "html")


@dataclass
class AuditRequest:
    """Everything an audit of precomputed predictions needs (the CLI flags, typed)."""

    predictions: Any  # Path of the predictions CSV (a model run: its predictions as a Table)
    attributes: list[str]
    out: Path
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
    formats: tuple[str, ...] = DEFAULT_FORMATS
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
    max_groups: int = 50  # --max-groups: refuse an attribute with more groups (an identifier?); 0: no limit
    trust_model: bool = False  # --trust-model: run a TorchScript --model (it is code, docs/threat-model.md)
    # The set of outputs a model run opened (it writes predictions.csv first); None: the audit opens one.
    outputs: Any = None


@dataclass
class AuditOutcome:
    results: dict[str, Any]
    files: dict[str, Path]
    exit_code: int


def parse_references(values: list[str]) -> dict[str, str]:
    """`--reference ATTR=GROUP` values into a dict (the group may contain '=')."""
    out = {}
    for v in values:
        attr, sep, group = v.partition("=")
        if not sep or not attr.strip():
            raise InputError(f"--reference '{v}': expected ATTR=GROUP, for example sex=F.")
        out[attr.strip()] = group
    return out


def parse_intersections(values: list[str]) -> list[list[str]]:
    """`--intersect sex,race` values into lists of attribute names."""
    out = []
    for v in values:
        parts = [p.strip() for p in v.split(",") if p.strip()]
        if len(parts) < 2:
            raise InputError(
                f"--intersect '{v}': name two or more attributes separated by commas, e.g. sex,race."
            )
        out.append(parts)
    return out


_TIMINGS = ("seconds", "model_seconds", "images_per_second")


def _without_timings(model: dict[str, Any] | None) -> dict[str, Any] | None:
    """The model block without wall-clock timings, which are logged instead: the same inputs and
    seed must give byte-identical results.json (apart from `created`)."""
    run = (model or {}).get("run")
    if not isinstance(run, dict) or not any(k in run for k in _TIMINGS):
        return model
    log.info("model run timings: %s", ", ".join(f"{k} {run[k]}" for k in _TIMINGS if k in run))
    return {**model, "run": {k: v for k, v in run.items() if k not in _TIMINGS}}


def audit_predictions(req: AuditRequest) -> AuditOutcome:
    """Run a complete audit of a predictions CSV and write every output file."""
    from fairaudit._util.atomic import output_set
    from fairaudit.cohort.manifest import ManifestSpool

    # --out is checked (a folder, writable) before the work; the files reach it as one set.
    with output_set(req.out, protect=input_paths(req), shared=req.outputs) as outs, ManifestSpool() as spool:
        return _audit(req, spool, outs)


def input_paths(req: Any) -> list[Any]:
    """The files and folders a run reads: never removed or replaced as a previous run's outputs."""
    names = ("predictions", "demographics", "labels", "calibration_set", "gate", "baseline_predictions")
    names += ("dicom_dir", "masks", "pred_masks")
    return [getattr(req, n, None) for n in names if isinstance(getattr(req, n, None), (str, Path))]


def _audit(req: AuditRequest, spool: Any, outs: Any) -> AuditOutcome:
    """audit_predictions, with manifest.csv's rows spooled to `spool` as the join makes them."""
    from fairaudit._util.memory import release_free_memory
    from fairaudit._util.privacy import IdHasher, use_for_logs
    from fairaudit.cohort.join import CohortSpec, build_cohort, intersection_name
    from fairaudit.gate import apply_gate, check_policy_task, load_policy, primary_family
    from fairaudit.report.writers import write_reports
    from fairaudit.stats import AuditConfig, run_audit

    policy = load_policy(req.gate) if req.gate else None
    if policy is not None:  # a metric the task lacks: exit 2 now, not a gate that cannot decide
        check_policy_task(policy, "classification", req.gate)
    formats = tuple(dict.fromkeys(["json", *req.formats]))
    try:
        cfg = AuditConfig(
            bootstrap=req.bootstrap,
            ci_level=req.ci_level,
            ci_method=req.ci_method,
            seed=req.seed,
            threshold=req.threshold,
            min_group_size=req.min_group_size,
            correction=req.correction,
            permutations=req.permutations,
            primary_metrics=primary_family(req.primary_metrics, policy),
            workers=req.workers,
        )
    except ValueError as exc:
        raise InputError(str(exc)) from None

    hasher = IdHasher(req.salt, req.keep_ids)
    use_for_logs(hasher)  # log lines name files as the outputs do
    from fairaudit.io import dicom_attributes as dicom_attrs  # `dicom:KEYWORD` attributes, --bins

    dicom_wanted = dicom_attrs.requested(
        req.attributes, req.intersections, req.bins, req.dicom_dir is not None or req.files is not None
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
    )
    if candidates is not None:
        spec.id_candidates = candidates
    # Per-row text is dropped once joined, before the statistics: manifest.csv's rows go to
    # a spool on disk as they are made, and the files' join table is kept as its size (a
    # model run hands it over for this call alone).
    cohort = build_cohort(spec, hasher, manifest_spool=spool)
    dicom_files = None if files is None else {"readable": files.count(), "unreadable": len(files_manifest)}
    if files is not None:
        files.frame, files.reader = files.frame.iloc[:0], None
    if not isinstance(req.predictions, (str, Path)) and req.predictions is not None:
        # A model run's table: joined, done (its reader holds the run's records).
        req.predictions.frame, req.predictions.reader = req.predictions.frame.iloc[:0], None
    if req.baseline_predictions is None:
        cohort.ids = None  # the ids in clear are needed only to pair a baseline's predictions
    del spec
    release_free_memory()  # the join's temporaries, before the statistics fork their workers
    known = set(cohort.attributes)
    references = {}
    for attr, group in req.references.items():
        name = attr if attr in known else intersection_name([p.strip() for p in attr.split(",")])
        if name not in known:
            raise InputError(
                f"--reference {attr}={group}: '{attr}' is not an audited attribute ({', '.join(known)})."
            )
        # Named as the cohort names it: a value over NAME_LIMIT characters is capped there.
        from fairaudit._util.sanitize import cap
        from fairaudit.cohort.join import INTERSECTION_SEP

        parts = group.split(INTERSECTION_SEP) if name != attr else [group]
        references[name] = INTERSECTION_SEP.join(cap(p) for p in parts)
    threshold_selection = None
    if req.threshold_policy or req.calibration_set is not None:
        from dataclasses import replace

        from fairaudit.workflows.thresholds import pick_threshold

        if not req.threshold_policy:
            raise InputError("--calibration-set needs --threshold-policy (youden, f1, sensitivity=X, ...).")
        threshold_selection = pick_threshold(
            req.threshold_policy, cohort.labels, cohort.scores, has_scores=cohort.has_scores,
            calibration_set=req.calibration_set, label_column=req.label_column, score_column=req.score_column,
        )  # fmt: skip
        req = replace(req, threshold=threshold_selection["threshold"])
        cfg = replace(cfg, threshold=req.threshold)
    log.info("auditing %d of %d records", cohort.n_included, cohort.n_records)
    try:
        result = run_audit(
            cohort.labels,
            cohort.scores,
            cohort.attributes,
            cfg,
            has_scores=cohort.has_scores,
            references=references,
            clusters=cohort.clusters,
        )
    except ValueError as exc:
        raise InputError(str(exc)) from None
    release_free_memory()  # the statistics' temporaries, before the reports

    body = result.to_dict()
    config = dict(body["config"])
    config["id_column"] = cohort.id_column
    config["cluster_column"] = cohort.cluster_column
    config["cluster_missing"] = cohort.cluster_missing
    if config.get("resampling_unit") == "case":
        config["resampling_unit"] = req.unit
    config["threshold_policy"] = threshold_selection["policy"] if threshold_selection else "fixed"
    if threshold_selection:
        config["threshold_selection"] = threshold_selection
    results: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "fairaudit_version": __version__,
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": req.command,
        "task": body["task"],
        "config": config,
        "inputs": {
            "n_records": cohort.n_records,
            "n_included": cohort.n_included,
            "excluded": cohort.excluded,
            "has_scores": cohort.has_scores,
            "unit": req.unit,
            "dicom_files": dicom_files,
        },
        "model": _without_timings(req.model),
        "overall": body["overall"],
        "attributes": body["attributes"],
        "consistency": body["consistency"],
        "gate": None,
    }
    baseline_manifest = None
    if req.baseline_predictions is not None:
        from fairaudit.workflows.baseline import baseline_section

        results["baseline"], baseline_manifest = baseline_section(
            req.baseline_predictions, ids=cohort.ids, id_column=cohort.id_column, labels=cohort.labels,
            scores=cohort.scores, has_scores=cohort.has_scores, attributes=cohort.attributes,
            references={a["name"]: a["reference"] for a in body["attributes"]}, config=config,
            score_column=req.score_column, prediction_column=req.prediction_column, hasher=hasher,
        )  # fmt: skip
    if policy:
        results["gate"] = apply_gate(result, policy, baseline=results.get("baseline"))
    if dicom_records:
        results["inputs"]["dicom_attributes"] = dicom_records
    if req.discover:
        from fairaudit.stats._discover import discover_slices

        base = {a: cohort.attributes[a] for a in dict.fromkeys(req.attributes) if a in cohort.attributes}
        try:
            results["discovered"] = discover_slices(
                cohort.labels, cohort.scores, base, cfg, metric=req.discover_metric,
                top=req.discover_top, has_scores=cohort.has_scores,
            )  # fmt: skip
        except ValueError as exc:
            raise InputError(str(exc)) from None
    # Curves, power and provenance: what the reports need to re-render without the data.
    from fairaudit.report.provenance import collect_provenance
    from fairaudit.stats._curves import attach_curves
    from fairaudit.stats._power import attach_power

    attach_curves(results, cohort.labels, cohort.scores, cohort.attributes, req.threshold, cohort.has_scores)
    attach_power(results)
    if baseline_manifest is not None:  # the same text as writing the two frames concatenated
        spool.append(baseline_manifest, header=False)
    results["provenance"] = collect_provenance(
        None,
        {"predictions": req.predictions if isinstance(req.predictions, (str, Path)) else None,
         "demographics": req.demographics, "labels": req.labels,
         "gate_policy": req.gate, "baseline_predictions": req.baseline_predictions},
        manifest_sha256=spool.sha256(),
    )  # fmt: skip
    files = write_reports(results, outs.staging, formats)
    files["manifest"] = spool.save(outs.path("manifest.csv"))
    files = {k: outs.final(p) for k, p in files.items()}
    # 1 when the gate does not let the release through: failed, or inconclusive under
    # on_inconclusive = "fail" (docs/ci.md, exit codes).
    code = 1 if results["gate"] is not None and not results["gate"]["passed"] else 0
    return AuditOutcome(results=results, files=files, exit_code=code)
