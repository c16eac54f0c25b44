"""The multi-label audit (`--findings`): the cohort's findings -> MultiLabelResult -> AuditReport.

The steps of fairaudit.workflows.predictions after the join, once per finding where a
single-label audit does them once (threshold, curves, power), and one gate over every
finding's checks (docs/multilabel.md).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from fairaudit.errors import InputError, arg
from fairaudit.workflows.core import base_config, run_stats

if TYPE_CHECKING:
    from fairaudit.cohort.join import Cohort
    from fairaudit.gate import GatePolicy
    from fairaudit.results import AuditReport
    from fairaudit.stats import AuditConfig
    from fairaudit.workflows.predictions import AuditRequest

log = logging.getLogger(__name__)


def _thresholds(req: AuditRequest, cohort: Cohort) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
    """Each finding's threshold chosen by --threshold-policy on its own records (none: {})."""
    if not req.threshold_policy:
        return {}, {}
    from fairaudit.workflows.thresholds import pick_threshold

    thresholds, selections = {}, {}
    for f in cohort.findings or []:
        keep = f.usable
        sel = pick_threshold(
            req.threshold_policy, f.labels[keep].astype(np.int64), f.scores[keep], has_scores=True,
            calibration_set=None, label_column=f.label_column, score_column=f.score_column,
        )  # fmt: skip
        thresholds[f.name] = float(sel["threshold"])
        selections[f.name] = sel
    return thresholds, selections


#: The finding whose fpr is the underdiagnosis rate, when --no-finding-column is not given.
NO_FINDING = "No Finding"


def _no_finding(req: AuditRequest, names: list[str]) -> str | None:
    """The audited finding that says "no finding" (--no-finding-column, else one named like
    No Finding / no_finding), whose fpr is the underdiagnosis rate; None when absent."""
    wanted = req.no_finding_column or NO_FINDING
    from fairaudit.io.tables import squashed

    match = [n for n in names if squashed(n) == squashed(wanted)]
    if match:
        return match[0]
    if req.no_finding_column is not None:
        raise InputError(
            f"{arg('no_finding_column')} {req.no_finding_column}: not among the audited findings "
            f"({', '.join(names)}).",
            hint=f"Name it in {arg('findings')} too, or pass {arg('findings')} all.",
            argument="no_finding_column",
        )
    return None


def build_multilabel_report(
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
    """The audit of every finding of `cohort` as one AuditReport, nothing written."""

    from fairaudit.results import AuditReport, assemble
    from fairaudit.stats._curves import attach_curves
    from fairaudit.stats._multilabel import run_findings
    from fairaudit.stats._power import attach_power

    findings = cohort.findings or []
    if req.calibration_set is not None:
        raise InputError(
            f"{arg('calibration_set')} and {arg('findings')} do not go together (yet): each finding's "
            f"threshold is chosen on its own audited records with {arg('threshold_policy')}.",
            argument="calibration_set",
        )
    for f in findings:
        if not f.usable.any():
            raise InputError(
                f"finding '{f.name}': no record has both a label and a score ({f.n_uncertain} uncertain, "
                f"{f.n_no_label} without a label, {f.n_no_score} without a score).",
                column=f.label_column,
                hint=f"Leave it out of {arg('findings')}, or count uncertain labels with {arg('uncertain')} "
                "negative or positive.",
                argument="findings",
            )
    no_finding = _no_finding(req, [f.name for f in findings])
    thresholds, selections = _thresholds(req, cohort)
    log.info("auditing %d findings on %d of %d records", len(findings), cohort.n_included, cohort.n_records)
    result = run_stats(
        lambda: run_findings(
            findings,
            cohort.attributes,
            cfg,
            references=references,
            clusters=cohort.clusters,
            thresholds=thresholds,
            threshold_selections=selections,
            no_finding=no_finding,
        )  # fmt: skip
    )
    if req.within:
        from dataclasses import replace

        from fairaudit.stats._strata import attach_within

        for f, audit in zip(findings, result.findings, strict=True):
            keep = f.usable
            run_stats(
                lambda f=f, audit=audit, keep=keep: attach_within(
                    audit.result,
                    f.labels[keep].astype(np.int64),
                    f.scores[keep],
                    {a: np.asarray(v)[keep] for a, v in cohort.attributes.items()},
                    {c: np.asarray(v)[keep] for c, v in cohort.strata.items()},
                    replace(cfg, threshold=audit.threshold),
                    clusters=None if cohort.clusters is None else np.asarray(cohort.clusters)[keep],
                )
            )
    body = result.to_dict()
    config = base_config(
        body, id_column=cohort.id_column, cluster_column=cohort.cluster_column,
        cluster_missing=cohort.cluster_missing, unit=req.unit,
    )  # fmt: skip
    from fairaudit.cohort.join import parse_id_columns

    if parse_id_columns(req.id_column):
        config["id_columns"] = parse_id_columns(req.id_column)
    requested = req.findings or ()
    config["findings"] = {
        "requested": "all" if requested == ("all",) else list(requested),
        "uncertain": req.uncertain,
        "n": len(findings),
    }
    config["threshold_policy"] = req.threshold_policy or "fixed"
    from fairaudit.workflows.predictions import (
        attach_cohort_inputs,
        attach_provenance,
        audit_inputs,
        without_timings,
    )

    inputs = audit_inputs(req, cohort, config, dicom_files)
    report = AuditReport(
        assemble(
            command=req.command, body=body, config=config, inputs=inputs, model=without_timings(req.model)
        ),
        result=result,
        manifest=spool,
    )
    report.attach_gate(policy)
    attach_cohort_inputs(report, cohort, dicom_records)
    for block, f, audit in zip(report.data["findings"], findings, result.findings, strict=True):
        keep = f.usable
        attach_curves(
            block, f.labels[keep].astype(np.int64), f.scores[keep],
            {a: np.asarray(v)[keep] for a, v in cohort.attributes.items()}, audit.threshold, True,
        )  # fmt: skip
        attach_power({"config": config, "attributes": block["attributes"]})
    attach_provenance(report, req, spool)
    return report
