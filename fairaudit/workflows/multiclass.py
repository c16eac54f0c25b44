"""The multi-class audit (`--task multiclass`): the cohort's classes -> MultiClassResult ->
AuditReport.

The steps of fairaudit.workflows.predictions after the join: the model-wide metrics laid out
where a single-label audit has its own (so the reports, the gate and the Python API read
them as they read any audit), each class one-vs-rest and the confusion matrices in
results.json's `multiclass` (docs/multiclass.md).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from fairaudit.errors import InputError, arg
from fairaudit.workflows.core import base_config, run_stats

if TYPE_CHECKING:
    from fairaudit.cohort.join import Cohort
    from fairaudit.gate import GatePolicy
    from fairaudit.results import AuditReport
    from fairaudit.stats import AuditConfig
    from fairaudit.workflows.predictions import AuditRequest

log = logging.getLogger(__name__)


def check_multiclass(req: Any, model: str | None) -> None:
    """The flags that do not go with --task multiclass (yet), refused before any work."""
    clash = [
        (model is not None, "model", "a model run audits one output score (a multi-class model: not yet); "
         "audit its predictions file with one probability column per class"),
        (getattr(req, "findings", None) is not None, "findings", "a multi-label audit is another task"),
        (getattr(req, "positive_label", None) is not None, "positive_label", "the labels are class names"),
        (getattr(req, "threshold", 0.5) != 0.5, "threshold", "the predicted class is the argmax"),
        (bool(getattr(req, "threshold_policy", None)), "threshold_policy", "the predicted class is the argmax"),
        (getattr(req, "calibration_set", None) is not None, "calibration_set", "the predicted class is the argmax"),
        (getattr(req, "baseline_predictions", None) is not None, "baseline_predictions",
         "the release comparison audits binary scores (yet)"),
        (bool(getattr(req, "discover", False)), "discover", "slice discovery ranks binary scores (yet)"),
        (bool(getattr(req, "within", None)), "within", "within-stratum analysis is for binary audits (yet)"),
    ]  # fmt: skip
    for bad, name, why in clash:
        if bad:
            raise InputError(
                f"{arg(name)} and {arg('task')} multiclass do not go together: {why}.", argument=name
            )
    for value in getattr(req, "score_columns", None) or []:
        name, sep, column = str(value).partition("=")
        if not sep or not name.strip() or not column.strip():
            raise InputError(
                f"{arg('score_column')} '{value}': with {arg('task')} multiclass give CLASS=COLUMN (once per "
                "class whose probability column is not named score_CLASS), for example pneumonia=p_pneumonia.",
                argument="score_column",
            )


def class_score_map(req: Any) -> dict[str, str]:
    """`--score-column CLASS=COLUMN` values (checked by check_multiclass) as {class: column}."""
    from fairaudit.cohort.findings import parse_score_map

    return parse_score_map(list(getattr(req, "score_columns", None) or []))


def check_policy(policy: GatePolicy | None) -> None:
    """A gate policy of a multi-class audit names its model-wide metrics only (exit 2 else)."""
    from fairaudit.stats._multiclass import GATE_METRICS

    if policy is None:
        return
    other = [m for m in policy.metrics if m not in GATE_METRICS]
    if other:
        raise InputError(
            f"the gate policy names {', '.join(other)}: a multi-class audit gates on "
            f"{' and '.join(GATE_METRICS)} (docs/multiclass.md).",
            argument="gate",
        )


def build_multiclass_report(
    req: AuditRequest,
    cohort: Cohort,
    cfg: AuditConfig,
    policy: GatePolicy | None,
    spool: Any,
    *,
    references: dict[str, str],
    dicom_files: dict[str, int] | None,
    dicom_records: list[dict[str, Any]],
) -> AuditReport:
    """The multi-class audit of `cohort` as one AuditReport, nothing written."""
    from fairaudit.results import AuditReport, assemble
    from fairaudit.stats._multiclass import run_multiclass
    from fairaudit.stats._power import attach_power
    from fairaudit.workflows.predictions import attach_cohort_inputs, attach_provenance, audit_inputs

    classes = cohort.classes or []
    log.info("auditing %d classes on %d of %d records", len(classes), cohort.n_included, cohort.n_records)
    result = run_stats(
        lambda: run_multiclass(
            cohort.labels,
            cohort.class_scores,
            cohort.attributes,
            cfg,
            classes=[c.name for c in classes],
            score_columns=[c.score for c in classes],
            references=references,
            clusters=cohort.clusters,
            label_column=(cohort.label_source or {}).get("column", ""),
        )
    )
    body = result.summary.to_dict()
    config = base_config(
        body, id_column=cohort.id_column, cluster_column=cohort.cluster_column,
        cluster_missing=cohort.cluster_missing, unit=req.unit,
    )  # fmt: skip
    config["label_column"] = cohort.label_source
    config["multiclass"] = {"n_classes": len(classes), "prediction": "argmax"}
    config["threshold_policy"] = "fixed"
    inputs = audit_inputs(req, cohort, config, dicom_files)
    report = AuditReport(
        assemble(command=req.command, body=body, config=config, inputs=inputs, model=None),
        result=result.summary,
        manifest=spool,
    )
    report.data["multiclass"] = result.block()
    report.attach_gate(policy)
    attach_cohort_inputs(report, cohort, dicom_records)
    attach_power(report.data)
    for block in report.data["multiclass"]["per_class"]:
        attach_power({"config": config, "attributes": block["attributes"]})
    attach_provenance(report, req, spool)
    return report
