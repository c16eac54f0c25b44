"""Multi-label audits: one audit per finding, all findings corrected as one family.

A chest X-ray model answers 14 questions at once; auditing each finding in a run of its own
would correct each finding's comparisons as if the others had not been looked at. Here each
finding is audited on the records that have both its label and its score
(fairaudit.cohort.findings), and the p-values of every finding form one primary and one
exploratory family (`adjust_together`), as docs/multilabel.md explains.

Never imports torch or pydicom.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fairaudit.stats._audit import AuditConfig, adjust_together, run_audit
from fairaudit.stats._metrics import METRICS
from fairaudit.stats.result import AuditResult, Comparison

log = logging.getLogger(__name__)

#: The metric each finding's summary row names its worst gap in, when no primary metric is set.
SUMMARY_METRIC = "auroc"
# Underdiagnosis: No Finding predicted for a record with a finding, the fpr of No Finding.
UNDERDIAGNOSIS_METRIC = "fpr"


@dataclass
class FindingAudit:
    """One finding's audit and the account of the records left out of it."""

    name: str
    label_column: str
    score_column: str
    n_uncertain: int
    n_no_label: int
    n_no_score: int
    threshold: float
    result: AuditResult
    threshold_selection: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        body = self.result.to_dict()
        out: dict[str, Any] = {
            "finding": self.name,
            "label_column": self.label_column,
            "score_column": self.score_column,
            "n": self.result.n,
            "n_positive": _n_positive(self.result),
            "n_uncertain": self.n_uncertain,
            "n_no_label": self.n_no_label,
            "n_no_score": self.n_no_score,
            "threshold": self.threshold,
        }
        if self.threshold_selection is not None:
            out["threshold_selection"] = self.threshold_selection
        out.update(overall=body["overall"], attributes=body["attributes"], consistency=body["consistency"])
        return out


def _n_positive(result: AuditResult) -> int:
    prevalence = result.overall.get("prevalence")
    if prevalence is None or prevalence.value is None:
        return 0
    return int(round(prevalence.value * result.n))


@dataclass
class MultiLabelResult:
    """Every finding's audit (the statistics behind a multi-label results.json)."""

    task: str
    config: dict[str, Any]
    n: int
    findings: list[FindingAudit] = field(default_factory=list)
    summary_metric: str = SUMMARY_METRIC
    no_finding: str | None = None  # the finding whose fpr is the underdiagnosis rate

    def finding(self, name: str) -> FindingAudit:
        return next(f for f in self.findings if f.name == name)

    def comparisons(self) -> list[tuple[str, Any, Comparison]]:
        return [(f.name, a, c) for f in self.findings for a, c in f.result.comparisons()]

    def summary(self) -> dict[str, Any]:
        """results.json `findings_summary`: macro averages over findings and, per finding,
        its worst-served group in the summary metric (docs/multilabel.md)."""
        alpha = round(1.0 - float(self.config["ci_level"]), 12)
        macro: dict[str, dict[str, Any]] = {}
        names = list(dict.fromkeys(m for f in self.findings for m in f.result.overall))
        for m in names:
            values = [f.result.overall[m].value for f in self.findings if m in f.result.overall]
            defined = [float(v) for v in values if v is not None and math.isfinite(v)]
            macro[m] = {
                "value": float(np.mean(defined)) if defined else None,
                "n_findings": len(defined),
            }
        rows = []
        for f in self.findings:
            est = f.result.overall.get(self.summary_metric)
            row: dict[str, Any] = {
                "finding": f.name,
                "n": f.result.n,
                "n_positive": _n_positive(f.result),
                "n_uncertain": f.n_uncertain,
                "value": None if est is None else est.to_dict(),
                "worst": None,
            }
            worst = _worst(f.result, self.summary_metric)
            if worst is not None:
                attr, c = worst
                row["worst"] = {
                    "attribute": attr,
                    "group": c.group,
                    "reference": c.reference,
                    "difference": c.difference.to_dict(),
                    "p_adjusted": c.p_adjusted,
                    "significant": bool(c.p_adjusted is not None and c.p_adjusted < alpha),
                    "small": c.small,
                }
            rows.append(row)
        return {
            "metric": self.summary_metric,
            "n_findings": len(self.findings),
            "macro": macro,
            "findings": rows,
        }

    def underdiagnosis(self) -> dict[str, Any] | None:
        """results.json `underdiagnosis`: the No Finding finding's false-positive rate (No
        Finding predicted for a record with a finding; Seyyed-Kalantari et al. 2021) per
        group, with its comparisons and the heterogeneity test (docs/multilabel.md)."""
        if self.no_finding is None:
            return None
        audit = self.finding(self.no_finding)
        res = audit.result
        attributes = []
        for attr in res.attributes:
            omnibus = next((o for o in attr.omnibus if o.metric == UNDERDIAGNOSIS_METRIC), None)
            attributes.append(
                {
                    "name": attr.name,
                    "reference": attr.reference,
                    "groups": [
                        {
                            "group": g.group,
                            "n": g.n - g.n_positive,  # records with a finding: the denominator
                            "small": g.n - g.n_positive < int(self.config.get("min_group_size", 0)),
                            "value": g.metrics[UNDERDIAGNOSIS_METRIC].to_dict(),
                        }
                        for g in attr.groups
                    ],
                    "comparisons": [
                        {k: v for k, v in c.to_dict().items() if k != "metric"}
                        for c in attr.comparisons
                        if c.metric == UNDERDIAGNOSIS_METRIC
                    ],
                    "heterogeneity": None if omnibus is None else omnibus.to_dict(),
                }
            )
        return {
            "finding": self.no_finding,
            "metric": UNDERDIAGNOSIS_METRIC,
            "threshold": audit.threshold,
            "overall": res.overall[UNDERDIAGNOSIS_METRIC].to_dict(),
            "attributes": attributes,
        }

    def to_dict(self) -> dict[str, Any]:
        out = {
            "task": self.task,
            "config": dict(self.config),
            "findings": [f.to_dict() for f in self.findings],
            "findings_summary": self.summary(),
        }
        under = self.underdiagnosis()
        if under is not None:
            out["underdiagnosis"] = under
        return out


def _worst(result: AuditResult, metric: str) -> tuple[str, Comparison] | None:
    """The attribute and comparison of the most harmful signed difference in `metric` over
    all attributes (each attribute's headline, fairaudit.stats.result.MetricSummary): the
    most negative where higher is better, the most positive where lower is, else the largest."""
    from fairaudit.stats._metrics import HIGHER_IS_BETTER

    higher = HIGHER_IS_BETTER.get(metric)
    best: tuple[float, str, Comparison] | None = None
    for attr in result.attributes:
        s = attr.summary.get(metric)
        if s is None or s.worst is None or s.worst.difference.value is None:
            continue
        d = float(s.worst.difference.value)
        harm = abs(d) if higher is None else (-d if higher else d)
        if best is None or harm > best[0]:
            best = (harm, attr.name, s.worst)
    return None if best is None else (best[1], best[2])


def run_findings(
    findings: Sequence[Any],
    attributes: dict[str, np.ndarray],
    cfg: AuditConfig,
    *,
    references: dict[str, str] | None = None,
    clusters: np.ndarray | None = None,
    thresholds: dict[str, float] | None = None,
    threshold_selections: dict[str, dict[str, Any]] | None = None,
    no_finding: str | None = None,
) -> MultiLabelResult:
    """Audit each finding (fairaudit.cohort.findings.Finding: labels and scores with NaN
    where a record is not in its analysis) on its own records, then correct every finding's
    p-values as one family. `thresholds`: a finding's own threshold (a --threshold-policy
    chose it), else cfg.threshold. `no_finding`: the finding whose fpr is the underdiagnosis
    rate (its own section of results.json)."""
    from dataclasses import replace

    out: list[FindingAudit] = []
    config: dict[str, Any] = {}
    for f in findings:
        keep = f.usable
        t = (thresholds or {}).get(f.name, cfg.threshold)
        log.info("finding %s: %d records", f.name, int(keep.sum()))
        result = run_audit(
            f.labels[keep].astype(np.int64),
            f.scores[keep],
            {a: np.asarray(v)[keep] for a, v in attributes.items()},
            replace(cfg, threshold=t),
            references=references,
            clusters=None if clusters is None else np.asarray(clusters)[keep],
            family_factor=len(findings),
            adjust_now=False,
        )
        config = config or dict(result.config)
        config["permutations"] = max(int(config.get("permutations", 0)), int(result.config["permutations"]))
        out.append(
            FindingAudit(
                name=f.name,
                label_column=f.label_column,
                score_column=f.score_column,
                n_uncertain=f.n_uncertain,
                n_no_label=f.n_no_label,
                n_no_score=f.n_no_score,
                threshold=t,
                result=result,
                threshold_selection=(threshold_selections or {}).get(f.name),
            )
        )
    adjust_together([f.result for f in out], cfg)
    metric = next((m for m in cfg.primary_metrics if m in METRICS), None) or SUMMARY_METRIC
    n_rows = int(np.asarray(next(iter(attributes.values()))).size) if attributes else 0
    return MultiLabelResult(
        task="classification",
        config=config,
        n=n_rows,
        findings=out,
        summary_metric=metric,
        no_finding=no_finding,
    )
