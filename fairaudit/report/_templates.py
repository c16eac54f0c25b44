"""Jinja2 environment and the one view of results.json that every report renders.

Numbers are formatted by fairaudit._util.formatting (the one formatter, shared with the
image reports and the gate), so the Markdown, HTML and terminal reports show the same
numbers the same way. The view keeps user strings raw: each renderer escapes them for
its own medium (HTML autoescape, :func:`md_escape`, rich.markup.escape).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import jinja2

from fairaudit._util.formatting import DASH, fmt_ci, fmt_est, fmt_level, fmt_num, fmt_p, is_number
from fairaudit._util.sanitize import clean_text, display_name, neutralize_md_links
from fairaudit.report.baseline_view import baseline_view
from fairaudit.report.blocks import check_block
from fairaudit.report.segmentation_view import segmentation_view

logger = logging.getLogger(__name__)


#: Display order for metric columns; metrics not listed follow in first-seen order.
METRIC_ORDER: tuple[str, ...] = (
    "tpr",
    "fnr",
    "tnr",
    "fpr",
    "ppv",
    "npv",
    "selection_rate",
    "prevalence",
    "accuracy",
    "balanced_accuracy",
    "auroc",
    "auprc",
    "brier",
    "ece",
    "squared_calibration_error",
    "dice",
    "iou",
    "hd95",
    "assd",
    "nsd",
    "volume_error",
)

#: Metrics shown first where space is short (terminal, forest plots).
KEY_METRICS: tuple[str, ...] = (
    "tpr",
    "fpr",
    "auroc",
    "ppv",
    "balanced_accuracy",
    "ece",
    "dice",
    "iou",
    "hd95",
    "assd",
    "nsd",
    "volume_error",
)

TEST_NAMES: dict[str, str] = {
    "fisher_exact": "Fisher exact",
    "fisher": "Fisher exact",
    "delong": "DeLong",
    "mann_whitney_u": "Mann-Whitney U",
    "mannwhitneyu": "Mann-Whitney U",
    "mann_whitney": "Mann-Whitney U",
    "permutation": "permutation",
    "chi2": "chi-square",
    "chi_square": "chi-square",
    "chi2_contingency": "chi-square",
    "chi2_rao_scott": "Rao-Scott chi-square",
    "kruskal": "Kruskal-Wallis",
    "kruskal_wallis": "Kruskal-Wallis",
    "delong_chi2": "DeLong chi-square",
    "mcnemar": "McNemar (exact)",
    "delong_paired": "paired DeLong",
    "newcombe_score": "Newcombe score (inverted interval)",
    "mover_exact": "exact MOVER (inverted interval)",
    "auroc_score_mover": "AUROC score MOVER (inverted interval)",
    "auroc_score_chi2": "AUROC score chi-square",
    "welch_anova": "Welch ANOVA",
    "anova": "one-way ANOVA",
    "wilcoxon": "Wilcoxon signed-rank",
    "mcnemar_patients": "McNemar by patient (sign-flip)",
    "obuchowski_paired": "paired Obuchowski (patients)",
    "wilcoxon_patients": "Wilcoxon signed-rank on patient means",
    "obuchowski": "Obuchowski (patients)",
    "wald_patients": "Wald z by patient",
    "cochran_mantel_haenszel": "Cochran-Mantel-Haenszel",
    "cochran_mantel_haenszel_rao_scott": "Cochran-Mantel-Haenszel (Rao-Scott, patients)",
    "stratified_permutation": "stratified permutation",
}

CORRECTION_NAMES: dict[str, str] = {
    "holm": "Holm",
    "fdr_bh": "Benjamini-Hochberg (false discovery rate)",
    "bonferroni": "Bonferroni",
    "none": "none",
}

CI_METHOD_NAMES: dict[str, str] = {
    "score": "score (modified Wilson, Newcombe, Koopman; AUROC score interval; betting interval for brier; logit, Wald or bootstrap for other means)",
    "exact": "exact (Clopper-Pearson and MOVER; AUROC score interval; betting interval for brier; logit, Wald or bootstrap for other means)",
    "percentile": "percentile bootstrap",
    "bca": "BCa bootstrap",
}

#: Metric columns of the Markdown group tables (a pull-request comment is narrow).
MD_GROUP_METRICS = 6


# --------------------------------------------------------------------------- environment


class _TraversableLoader(jinja2.BaseLoader):
    """Load templates from an importlib Traversable, so a zipped install works too."""

    def __init__(self, root: Traversable) -> None:
        self.root = root

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str | None, Any]:
        node = self.root
        for part in template.split("/"):
            if part in ("", ".", ".."):
                raise jinja2.TemplateNotFound(template)
            node = node.joinpath(part)
        if not node.is_file():
            raise jinja2.TemplateNotFound(template)
        filename = str(node) if isinstance(node, Path) else None
        return node.read_text(encoding="utf-8"), filename, lambda: True


def templates_root() -> Traversable:
    """Where the report templates are: inside the wheel, else the source checkout's templates/."""
    try:
        packaged = resources.files("fairaudit").joinpath("templates")
        if packaged.is_dir():
            return packaged
    except (ModuleNotFoundError, FileNotFoundError):  # pragma: no cover - defensive
        pass
    return Path(__file__).resolve().parents[2] / "templates"


@lru_cache(maxsize=1)
def get_environment() -> jinja2.Environment:
    """The shared Jinja2 environment: HTML autoescaped, undefined names are errors."""
    env = jinja2.Environment(
        loader=_TraversableLoader(templates_root()),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html", "htm", "html.j2", "xml"),
            default_for_string=False,
            default=False,
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["md"] = md_escape
    env.filters["num"] = fmt_num
    env.filters["pval"] = fmt_p
    env.filters["est"] = fmt_est
    env.filters["test_name"] = test_name
    env.filters["finding"] = finding_name
    env.filters["css_string"] = _css_string  # @page margin boxes of report.html (report/layout.py)
    return env


def _css_string(value: Any) -> Any:
    from fairaudit.report.layout import css_string

    return css_string(value)


# --------------------------------------------------------------------------- formatting

_MD_ALWAYS = re.compile(r"([\\`*\[\]<>|#&~!])")
_MD_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")


def md_escape(value: Any) -> str:
    """Make any string literal text in GitHub Markdown, including inside table cells.

    Newlines become spaces (a table row is one line), `|` becomes `\\|`, and HTML and
    emphasis characters are backslash-escaped so a group named `<script>` shows as text.
    Control characters show as escapes, and @mentions, URLs and #123 link and ping nobody.
    """
    text = re.sub(r"[\r\n\t]+", " ", clean_text(value))
    text = _MD_ALWAYS.sub(r"\\\1", text)
    # An underscore inside a word never starts emphasis in GFM; keep `balanced_accuracy` readable.
    # Mentions and autolinks survive backslash escapes on GitHub: break them (docs/reports.md).
    return neutralize_md_links(_MD_UNDERSCORE.sub(r"\\_", text))


def test_name(name: Any) -> str:
    """A readable name for a test id; unknown ids are shown as given."""
    if name is None:
        return DASH
    return TEST_NAMES.get(str(name).lower(), str(name))


def order_metrics(names: Iterable[str]) -> list[str]:
    """Known metrics in the canonical order, then the rest as first seen."""
    seen: list[str] = []
    for name in names:
        if name not in seen:
            seen.append(name)
    known = [m for m in METRIC_ORDER if m in seen]
    return known + [m for m in seen if m not in METRIC_ORDER]


def key_metrics(names: Iterable[str], limit: int) -> list[str]:
    """The metrics worth showing where space is short: KEY_METRICS first, then the rest."""
    ordered = order_metrics(names)
    first = [m for m in KEY_METRICS if m in ordered]
    return (first + [m for m in ordered if m not in first])[:limit]


# --------------------------------------------------------------------------- the view


@dataclass
class Cell:
    """One formatted estimate; `note` numbers the reason when the value is undefined."""

    text: str
    note: int | None = None
    reason: str | None = None


@dataclass
class Notes:
    """Numbers each distinct reason for an undefined value, so tables stay narrow."""

    reasons: list[str] = field(default_factory=list)

    def cell(self, estimate: Any) -> Cell:
        """Format an estimate; a null value gets a dash and a numbered reason."""
        if isinstance(estimate, Mapping) and estimate.get("value") is not None:
            return Cell(fmt_est(estimate))
        reason = None
        if isinstance(estimate, Mapping):
            reason = estimate.get("reason")
        reason = str(reason) if reason else "not available"
        return Cell(DASH, self.number(reason), reason)

    def number(self, reason: str) -> int:
        if reason not in self.reasons:
            self.reasons.append(reason)
        return self.reasons.index(reason) + 1

    @property
    def items(self) -> list[tuple[int, str]]:
        return list(enumerate(self.reasons, start=1))


def _abs_value(estimate: Any) -> float:
    if isinstance(estimate, Mapping) and is_number(estimate.get("value")):
        value = float(estimate["value"])
        if math.isfinite(value):
            return abs(value)
    return -1.0


#: Metrics whose differences are in other units than a proportion; each family is ranked apart.
_UNIT_FAMILIES: tuple[tuple[str, ...], ...] = (("hd95", "assd"), ("volume_error",))


def _largest_disparities(attribute: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per family of comparable units, the summary metric with the largest |max_difference|.

    Differences in mm (hd95) and in Dice points cannot be ranked against each other, so a
    segmentation audit gets one row for the overlap metrics and one per distance family.
    """
    summary = attribute.get("summary") or {}
    other = {m for family in _UNIT_FAMILIES for m in family}
    families = [
        [m for m in summary if m not in other],
        *[[m for m in f if m in summary] for f in _UNIT_FAMILIES],
    ]
    rows = [_largest_disparity(attribute, family) for family in families if family]
    return [r for r in rows if r]


def _largest_disparity(
    attribute: Mapping[str, Any], metrics: Iterable[str] | None = None
) -> dict[str, Any] | None:
    """The summary metric with the largest |max_difference| for one attribute."""
    summary = attribute.get("summary") or {}
    best: tuple[float, str] | None = None
    for metric in order_metrics(summary if metrics is None else metrics):
        size = _abs_value(summary[metric].get("max_difference"))
        if size >= 0 and (best is None or size > best[0]):
            best = (size, metric)
    if best is None:
        return None
    entry = summary[best[1]]
    return {
        "attribute": attribute.get("name", ""),
        "metric": best[1],
        "max_difference": fmt_est(entry.get("max_difference")),
        "min_ratio": fmt_est(entry.get("min_ratio")),
        "worst_group": entry.get("worst_group"),
    }


# Rows that repeat another's test (fnr, tnr) or are not tested (prevalence) never headline.
_NOT_HEADLINED = frozenset({"fnr", "tnr", "prevalence"})


def _headline(attribute: Mapping[str, Any], primary: Iterable[str]) -> list[dict[str, Any]]:
    """Per family of comparable units, the worst group's signed difference to the reference.

    The metric shown is the one whose worst comparison has the most evidence (smallest
    unadjusted p), among the primary metrics when there are any; beside it the heterogeneity
    test across all groups (docs/statistics.md, "The headline"). Version 1 results and audits
    without these summaries fall back to the largest between-group difference.
    """
    summary = attribute.get("summary") or {}
    if not any(isinstance(s, Mapping) and s.get("worst_difference") for s in summary.values()):
        return [{**d, "kind": "range"} for d in _largest_disparities(attribute)]
    primary = set(primary)
    other = {m for family in _UNIT_FAMILIES for m in family}
    rows = []
    for family in ([m for m in summary if m not in other], *_UNIT_FAMILIES):
        names = [
            m
            for m in family
            if m in summary
            and m not in _NOT_HEADLINED
            and (summary[m].get("worst_difference") or {}).get("difference", {}).get("value") is not None
        ]
        if primary and any(m in primary for m in names):
            names = [m for m in names if m in primary]
        if not names:
            continue

        def evidence(m: str) -> tuple[float, float]:
            worst = summary[m]["worst_difference"]
            p = worst.get("p_value")
            return (1.0 if p is None else float(p), -abs(float(worst["difference"]["value"])))

        metric = min(order_metrics(names), key=evidence)
        worst = summary[metric]["worst_difference"]
        het = summary[metric].get("heterogeneity") or {}
        rows.append(
            {
                "kind": "worst",
                "attribute": attribute.get("name", ""),
                "metric": metric,
                "group": worst.get("group"),
                "reference": worst.get("reference"),
                "difference": fmt_est(worst.get("difference")),
                "p_value": fmt_p(worst.get("p_value")),
                "p_adjusted": fmt_p(worst.get("p_adjusted")),
                "small": bool(worst.get("small")),
                "heterogeneity_test": test_name(het.get("test")) if het.get("test") else "",
                "heterogeneity_p": fmt_p(het.get("p_value")) if het.get("test") else "",
                "max_difference": fmt_est(summary[metric].get("max_difference")),
            }
        )
    return rows


def _consistency_view(consistency: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """results.json's `consistency` (schema 2) for the Methods section; None for version 1."""
    if not consistency:
        return None
    return {
        "rows": fmt_num(consistency.get("rows")),
        "agree": fmt_num(consistency.get("agree")),
        "disagreements": [
            {
                "finding": str(d.get("finding") or ""),
                "attribute": str(d.get("attribute", "")),
                "metric": str(d.get("metric", "")),
                "group": str(d.get("group", "")),
                "test": test_name(d.get("test")),
                "p_value": fmt_p(d.get("p_value")),
                "ci": fmt_ci(d.get("ci")),
            }
            for d in consistency.get("disagreements") or []
        ],
    }


def gate_summary(gate: Mapping[str, Any]) -> dict[str, Any]:
    """The gate's outcome and counts, the same in every report (docs/ci.md, "The verdict").

    A version-1 results.json has no "outcome": it is derived from "passed" (which then
    meant "no deciding check failed") and the counts from the checks.
    """
    checks = gate.get("checks") or []
    deciding = [c for c in checks if c.get("decides", True) is not False]
    n_pass = sum(1 for c in deciding if c.get("status") == "pass")
    n_fail = sum(1 for c in deciding if c.get("status") == "fail")
    passed = bool(gate.get("passed"))
    outcome = gate.get("outcome")
    if outcome not in ("pass", "fail", "inconclusive"):
        outcome = "pass" if passed else "fail"
    decided = gate.get("decided")
    undecided = gate.get("undecided")
    if not isinstance(decided, int) or not isinstance(undecided, int):
        decided, undecided = n_pass + n_fail, len(checks) - n_pass - n_fail
    on_inconclusive = gate.get("on_inconclusive")
    exit_code = 0 if passed else 1
    text = (
        f"{len(checks)} checks, {decided} decided ({n_pass} pass, {n_fail} fail), {undecided} undecided; "
        f"exit code {exit_code}"
    )
    if outcome == "inconclusive" and on_inconclusive in ("fail", "pass"):
        text += f" (on_inconclusive = {on_inconclusive})"
    label = {"pass": "Gate passed", "fail": "Gate failed", "inconclusive": "Gate inconclusive"}[outcome]
    return {
        "outcome": outcome,
        "passed": passed,
        "status": {"pass": "passed", "fail": "failed", "inconclusive": "inconclusive"}[outcome],
        "label": label,
        "decided": decided,
        "undecided": undecided,
        "decided_pass": n_pass,
        "decided_fail": n_fail,
        "on_inconclusive": on_inconclusive,
        "exit_code": exit_code,
        "text": text,
    }


def _verdict(results: Mapping[str, Any]) -> dict[str, Any]:
    gate = results.get("gate")
    if not gate:
        return {
            "status": "none",
            "label": "No gate",
            "counts": {},
            "failed": [],
            "inconclusive": [],
            "n_checks": 0,
        }
    checks = gate.get("checks") or []
    counts = {s: sum(1 for c in checks if c.get("status") == s) for s in ("pass", "fail", "inconclusive")}
    # Each check named by its finding or structure (the templates show `finding`).
    checks = [{**c, "finding": check_scope(c) or None} for c in checks]
    failed = [c for c in checks if c.get("status") == "fail" and c.get("decides", True) is not False]
    summary = gate_summary(gate)
    # What kept an inconclusive gate from passing: its deciding checks that did not decide.
    unsure = [c for c in checks if c.get("status") == "inconclusive" and c.get("decides", True) is not False]
    return {
        **summary,
        "counts": counts,
        "failed": failed,
        "inconclusive": unsure if summary["outcome"] == "inconclusive" else [],
        "n_checks": len(checks),
        "decide": gate.get("decide"),
    }


def _group_rows(attribute: Mapping[str, Any], metrics: list[str], notes: Notes) -> list[dict]:
    reference = attribute.get("reference")
    rows = []
    for group in attribute.get("groups") or []:
        group_metrics = group.get("metrics") or {}
        rows.append(
            {
                "name": str(group.get("group", "")),
                "n": fmt_num(group.get("n")),
                "n_positive": fmt_num(group.get("n_positive")),
                "small": bool(group.get("small")),
                "is_ref": group.get("group") == reference,
                "cells": [
                    notes.cell(group_metrics[m]) if m in group_metrics else Cell(DASH) for m in metrics
                ],
                "values": {m: group_metrics.get(m) for m in metrics},
                "confusion": _confusion(group.get("confusion")),
                "roc": ((group.get("curves") or {}).get("roc")) or None,
                "calibration": ((group.get("curves") or {}).get("calibration")) or None,
                "reliability": ((group.get("curves") or {}).get("reliability")) or None,
                "distributions": {
                    str(k): v for k, v in (group.get("distributions") or {}).items() if _is_histogram(v)
                },
            }
        )
    return rows


def _confusion(value: Any) -> dict[str, str] | None:
    if not isinstance(value, Mapping) or not all(k in value for k in ("tp", "fp", "tn", "fn")):
        return None
    return {k: fmt_num(value[k]) for k in ("tp", "fp", "tn", "fn")}


def _is_histogram(value: Any) -> bool:
    """A stored per-case distribution: edges and counts of matching lengths."""
    if not isinstance(value, Mapping):
        return False
    edges, counts = value.get("edges"), value.get("counts")
    return (
        isinstance(edges, list)
        and isinstance(counts, list)
        and len(edges) == len(counts) + 1
        and len(counts) > 0
        and all(is_number(e) for e in edges)
        and all(is_number(c) for c in counts)
    )


def fmt_mdd(value: Any) -> Cell:
    """The smallest detectable difference of a comparison, or a dash with the reason."""
    if not isinstance(value, Mapping):
        return Cell(DASH)
    if value.get("value") is None:
        return Cell(DASH, None, str(value.get("reason") or "not available"))
    text = fmt_num(value["value"])
    up, down = value.get("increase"), value.get("decrease")
    if is_number(down) and up is None and "increase" in value:
        return Cell(f"{text} ↓ only")
    if is_number(up) and down is None and "decrease" in value:
        return Cell(f"{text} ↑ only")
    return Cell(text)


def _comparison_rows(
    attribute: Mapping[str, Any], notes: Notes, significant_only: bool
) -> tuple[list[dict], int]:
    rows = []
    hidden = 0
    for comp in attribute.get("comparisons") or []:
        if significant_only and comp.get("significant") is not True:
            hidden += 1
            continue
        p_note = None
        if comp.get("p_value") is None and comp.get("reason"):
            p_note = notes.number(str(comp["reason"]))
        significant = comp.get("significant")
        rows.append(
            {
                "metric": str(comp.get("metric", "")),
                "group": str(comp.get("group", "")),
                "reference": str(comp.get("reference", "")),
                "difference": notes.cell(comp.get("difference")),
                "ratio": notes.cell(comp.get("ratio")),
                "test": test_name(comp.get("test")),
                "p": fmt_p(comp.get("p_value")),
                "p_note": p_note,
                "p_adjusted": fmt_p(comp.get("p_adjusted")),
                "significant": {True: "yes", False: "no"}.get(significant, DASH),
                "is_significant": significant is True,
                "_p": comp.get("p_adjusted"),
                "note": str(comp["note"]) if comp.get("note") else "",
                "mdd": fmt_mdd(comp.get("min_detectable_difference")),
            }
        )
    return rows, hidden


#: How the within-stratum difference was pooled, as the report says it (--within).
_WITHIN_METHODS: dict[str, str] = {
    "mantel_haenszel_sato": "Mantel–Haenszel",
    "stratified_bootstrap_percentile": "stratum-weighted",
}


def _clear(estimate: Any) -> bool:
    """Whether an estimate's interval excludes 0."""
    ci = estimate.get("ci") if isinstance(estimate, Mapping) else None
    return bool(ci) and ((is_number(ci[0]) and ci[0] > 0) or (is_number(ci[1]) and ci[1] < 0))


def within_verdict(crude: Any, within: Any, label: str) -> str:
    """What the pooled within-stratum difference says of the crude gap, in plain words: the
    share of the gap left once the strata of `label` are held apart (ESTIMATE dicts; when
    neither interval excludes 0 there is no clear gap to share out)."""
    c = crude.get("value") if isinstance(crude, Mapping) else None
    w = within.get("value") if isinstance(within, Mapping) else None
    if not is_number(w):
        return (
            f"no stratum of {label} holds the cases the metric needs in both groups, so the gap "
            f"cannot be compared within {label}"
        )
    if not is_number(c):
        return f"the crude difference is undefined, so there is no gap to set it beside within {label}"
    if not (_clear(crude) or _clear(within)) or (float(c) == 0.0 and float(w) == 0.0):
        return f"no clear gap, crude or within {label}"
    if float(c) == 0.0:
        return f"no crude gap, but one within {label}"
    share = float(w) / float(c)
    if share < -0.5:
        return f"the gap reverses within {label}"
    if share <= 0.5:
        return f"most of the gap goes with {label}"
    if share < 0.8:
        return f"part of the gap goes with {label}"
    if share <= 1.25:
        return f"the gap holds within {label}: it does not go with {label}"
    return f"the gap is larger within {label}"


def _within_row(comp: Mapping[str, Any], label: str, notes: Notes | None = None) -> dict[str, Any]:
    """One comparison beside its pooled within-stratum difference."""
    within = comp.get("within") or {}
    diff = within.get("difference") or {}
    p_note = None
    if notes is not None and within.get("p_value") is None and within.get("reason"):
        p_note = notes.number(str(within["reason"]))
    return {
        "metric": str(comp.get("metric", "")),
        "group": str(comp.get("group", "")),
        "reference": str(comp.get("reference", "")),
        "crude": fmt_est(comp.get("difference")),
        "crude_cell": notes.cell(comp.get("difference")) if notes is not None else None,
        "within": fmt_est(diff),
        "within_cell": notes.cell(diff) if notes is not None else None,
        "method": _WITHIN_METHODS.get(
            str(diff.get("method")),
            "stratum-weighted" if within.get("test") == "stratified_permutation" else "Mantel–Haenszel",
        ),
        "n_strata": fmt_num(within.get("n_strata")),
        "n_strata_used": fmt_num(within.get("n_strata_used")),
        "test": test_name(within.get("test")),
        "p": fmt_p(within.get("p_value")),
        "p_note": p_note,
        "verdict": within_verdict(comp.get("difference"), diff, label),
    }


def _within_views(attribute: Mapping[str, Any]) -> tuple[list[dict], list[dict], Notes]:
    """--within: the headline comparisons beside their within-stratum differences (the worst
    group of each key metric, and of the headline's metric), and every comparison with the
    notes of its undefined values (report.html)."""
    notes = Notes()
    rows = [c for c in attribute.get("comparisons") or [] if isinstance(c.get("within"), Mapping)]
    if not rows:
        return [], [], notes
    label = " × ".join(str(s) for s in rows[0]["within"].get("strata") or [])
    summary = attribute.get("summary") or {}
    by_key = {(str(c.get("metric")), str(c.get("group"))): c for c in rows}
    metrics = [m for m in key_metrics(summary, len(summary)) if m not in _NOT_HEADLINED]
    headline = [h["metric"] for h in _headline(attribute, ()) if h.get("kind") == "worst"]
    chosen = []
    for m in [*[m for m in headline if m in metrics], *[m for m in KEY_METRICS if m in metrics]]:
        group = ((summary.get(m) or {}).get("worst_difference") or {}).get("group")
        comp = by_key.get((m, str(group)))
        if comp is not None and comp not in chosen:
            chosen.append(comp)
    return [_within_row(c, label) for c in chosen], [_within_row(c, label, notes) for c in rows], notes


def _as_int_if_whole(value: Any) -> Any:
    """Degrees of freedom arrive as floats from scipy; show 2.0 as 2."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _omnibus_rows(attribute: Mapping[str, Any], notes: Notes) -> list[dict]:
    rows = []
    for omni in attribute.get("omnibus") or []:
        p_note = None
        if omni.get("p_value") is None and omni.get("reason"):
            p_note = notes.number(str(omni["reason"]))
        rows.append(
            {
                "metric": str(omni.get("metric", "")),
                "test": test_name(omni.get("test")),
                "statistic": fmt_num(omni.get("statistic")),
                "df": fmt_num(_as_int_if_whole(omni.get("df"))),
                "p": fmt_p(omni.get("p_value")),
                "p_note": p_note,
            }
        )
    return rows


def _summary_rows(attribute: Mapping[str, Any], notes: Notes) -> list[dict]:
    summary = attribute.get("summary") or {}
    return [
        {
            "metric": metric,
            "max_difference": notes.cell(summary[metric].get("max_difference")),
            "min_ratio": notes.cell(summary[metric].get("min_ratio")),
            "worst_group": summary[metric].get("worst_group"),
        }
        for metric in order_metrics(summary)
    ]


def _gate_view(gate: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not gate:
        return None
    notes = Notes()
    checks = []
    for check in gate.get("checks") or []:
        decides = check.get("decides", True) is not False
        note = str(check["note"]) if check.get("note") else ""
        if not decides and not note:
            note = "does not decide the gate"
        checks.append(
            {
                "finding": check_scope(check),
                "rule": str(check.get("rule", "")),
                "metric": str(check.get("metric", "")),
                "attribute": str(check.get("attribute", "")),
                "group": DASH if check.get("group") is None else str(check["group"]),
                "bound": fmt_num(check.get("bound")),
                "observed": notes.cell(check.get("observed")),
                "status": str(check.get("status", "")),
                "decides": decides,
                "note": note,
            }
        )
    return {
        **gate_summary(gate),
        "decide": gate.get("decide"),
        "checks": checks,
        "has_findings": any(c["finding"] for c in checks),
        # The column's header: a --structures gate names structures, a multi-label one findings.
        "scope_label": "structure"
        if any(c.get("structure") for c in gate.get("checks") or [])
        else "finding",
        "notes": notes.items,
    }


def _provenance_view(results: Mapping[str, Any]) -> dict[str, Any]:
    """Hashes and versions, formatted; absent pieces (an old results.json) are left out."""
    prov = results.get("provenance") or {}
    files = []
    for role, entry in (prov.get("input_files") or {}).items():
        if isinstance(entry, Mapping) and entry.get("sha256"):
            files.append(
                {"role": str(role), "name": str(entry.get("name", "")), "sha256": str(entry["sha256"])}
            )
    libraries = [(str(k), str(v)) for k, v in (prov.get("libraries") or {}).items()]
    return {
        "manifest_sha256": str(prov["manifest_sha256"]) if prov.get("manifest_sha256") else "",
        "files": files,
        "libraries": libraries,
        "platform": str(prov.get("platform") or ""),
    }


def _power_view(attributes: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per metric: how many comparisons were not significant, and what they could have detected.

    `attributes`: every attribute block of the audit (of every finding, in a multi-label one).
    """
    by_metric: dict[str, list[float]] = {}
    for attribute in attributes:
        for comp in attribute.get("comparisons") or []:
            mdd = comp.get("min_detectable_difference")
            if comp.get("significant") is True or not isinstance(mdd, Mapping):
                continue
            value = mdd.get("value")
            if is_number(value):
                by_metric.setdefault(str(comp.get("metric", "")), []).append(float(value))
    rows = []
    for metric in order_metrics(by_metric):
        values = sorted(by_metric[metric])
        rows.append(
            {
                "metric": metric,
                "n": len(values),
                "min": fmt_num(values[0]),
                "median": fmt_num(values[len(values) // 2]),
                "max": fmt_num(values[-1]),
            }
        )
    return rows


def _p_order(row: Mapping[str, Any]) -> tuple[int, float]:
    """Sort key: most significant first, rows without a p-value last."""
    p = row.get("_p")
    return (0, float(p)) if is_number(p) else (1, 0.0)


def _cap_groups(groups: list[dict], keep_names: set[str], max_rows: int) -> tuple[list[dict], int]:
    """The reference, the groups named in the kept comparisons, then the largest; table order kept."""
    if len(groups) <= max_rows:
        return groups, 0

    def size(g: Mapping[str, Any]) -> int:
        return int(g["n"]) if str(g["n"]).isdigit() else 0

    ranked = sorted(groups, key=lambda g: (not g["is_ref"], g["name"] not in keep_names, -size(g)))
    kept = {id(g) for g in ranked[:max_rows]}
    return [g for g in groups if id(g) in kept], len(groups) - max_rows


def _cap_checks(gate: dict[str, Any] | None, max_rows: int) -> None:
    """Keep the checks that decide against the release first (fail, then inconclusive)."""
    if not gate or len(gate["checks"]) <= max_rows:
        if gate:
            gate["checks_hidden"] = 0
        return
    rank = {"fail": 0, "inconclusive": 1}
    ordered = sorted(gate["checks"], key=lambda c: (not c["decides"], rank.get(c["status"], 2)))
    gate["checks_hidden"] = len(ordered) - max_rows
    gate["checks"] = ordered[:max_rows]


# --------------------------------------------------------------------------- multi-label

#: What each `--uncertain` choice does with an uncertain (-1) label, in the reports' words.
UNCERTAIN_WORDS: dict[str, str] = {
    "exclude": "left out of the finding's analysis",
    "negative": "counted as negative",
    "positive": "counted as positive",
}
#: The name CheXpert's authors gave each choice (Irvin et al. 2019).
UNCERTAIN_SCHEMES: dict[str, str] = {"exclude": "U-Ignore", "negative": "U-Zeros", "positive": "U-Ones"}


def finding_name(value: Any) -> str:
    """A finding's name as every report shows it: cleaned and capped like an attribute name.

    Finding names are column headers of the user's labels file, so they get the treatment of
    group and attribute names (display_results caps other strings only at TEXT_LIMIT);
    "" where nothing names a finding (a single-label audit).
    """
    return "" if value is None else display_name(value)


def check_scope(check: Mapping[str, Any]) -> str:
    """What a gate check is about beyond its attribute, as the reports name it: its finding
    (multi-label) or its structure (`--structures`, whose checks are otherwise alike); ""."""
    return finding_name(check_block(check))


def is_multilabel(results: Mapping[str, Any]) -> bool:
    """Whether results.json is a multi-label audit: a `findings` list where a single-label one
    has `overall` and `attributes` at the top."""
    return isinstance(results.get("findings"), list)


def finding_blocks(results: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The blocks laid out like a single-label audit: each finding's, or the results itself."""
    if not is_multilabel(results):
        return [results]
    return [f for f in results.get("findings") or [] if isinstance(f, Mapping)]


# --------------------------------------------------------------------------- the view


def _attribute_views(
    block: Mapping[str, Any], *, significant_only: bool, max_rows: int | None, tests_used: list[str]
) -> list[dict[str, Any]]:
    """The per-attribute tables of one audit block (a single-label audit, or one finding)."""
    attributes = []
    for attribute in block.get("attributes") or []:
        notes = Notes()
        metric_names: list[str] = []
        for group in attribute.get("groups") or []:
            metric_names.extend((group.get("metrics") or {}).keys())
        metrics = order_metrics(metric_names)
        groups = _group_rows(attribute, metrics, notes)
        comparisons, hidden = _comparison_rows(attribute, notes, significant_only)
        groups_hidden = 0
        if max_rows is not None:
            if len(comparisons) > max_rows:
                comparisons = sorted(comparisons, key=_p_order)
                hidden += len(comparisons) - max_rows
                comparisons = comparisons[:max_rows]
            groups, groups_hidden = _cap_groups(groups, {c["group"] for c in comparisons}, max_rows)
        for comp in attribute.get("comparisons") or []:
            name = test_name(comp.get("test"))
            if comp.get("test") and name not in tests_used:
                tests_used.append(name)
        for omni in attribute.get("omnibus") or []:
            name = test_name(omni.get("test"))
            if omni.get("test") and name not in tests_used:
                tests_used.append(name)
        small = attribute.get("small_groups")
        if small is None:
            small = [g["name"] for g in groups if g["small"]]
        within, within_all, within_notes = _within_views(attribute)
        attributes.append(
            {
                "name": str(attribute.get("name", "")),
                "reference": str(attribute.get("reference", "")),
                "metrics": metrics,
                "key_index": [metrics.index(m) for m in key_metrics(metrics, MD_GROUP_METRICS)],
                "groups": groups,
                "comparisons": comparisons,
                "n_comparisons": len(attribute.get("comparisons") or []),
                "comparisons_hidden": hidden,
                "groups_hidden": groups_hidden,
                "omnibus": _omnibus_rows(attribute, notes),
                "summary": _summary_rows(attribute, notes),
                "small_groups": [str(s) for s in small],
                "notes": notes,
                "within": within,  # --within: the headline comparisons (templates/_analysis.*.j2)
                "within_all": within_all,
                "within_notes": within_notes,
            }
        )
    return attributes


def _analysis_view(
    block: Mapping[str, Any],
    *,
    primary: Iterable[str],
    threshold: str,
    finding: str = "",
    significant_only: bool,
    max_rows: int | None,
    tests_used: list[str],
) -> dict[str, Any]:
    """What a single-label report shows of its audit, for one block with `overall`,
    `attributes` and `consistency`: the results itself, or one finding of a multi-label audit.

    The templates lay it out with one include (templates/_analysis.*.j2), so a finding's
    section is the single-label report's analysis, not a copy of it.
    """
    primary = tuple(primary)
    overall = block.get("overall") or {}
    overall_notes = Notes()
    overall_metrics = order_metrics((overall.get("metrics") or {}).keys())
    return {
        "finding": finding,
        "threshold": threshold,
        "overall": {
            "n": fmt_num(overall.get("n")),
            "metrics": overall_metrics,
            "cells": [overall_notes.cell(overall["metrics"][m]) for m in overall_metrics],
            "notes": overall_notes,
        },
        "attributes": _attribute_views(
            block, significant_only=significant_only, max_rows=max_rows, tests_used=tests_used
        ),
        "attributes_left_out": 0,
        "disparities": [d for a in block.get("attributes") or [] for d in _headline(a, primary)],
        "significant": [
            {
                "finding": finding,
                "attribute": str(attribute.get("name", "")),
                "metric": str(comp.get("metric", "")),
                "group": str(comp.get("group", "")),
                "reference": str(comp.get("reference", "")),
                "difference": fmt_est(comp.get("difference")),
                "test": test_name(comp.get("test")),
                "p_adjusted": fmt_p(comp.get("p_adjusted")),
            }
            for attribute in block.get("attributes") or []
            for comp in attribute.get("comparisons") or []
            if comp.get("significant") is True
        ],
    }


def _pooled_consistency(findings: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, Any] | None:
    """Every finding's `consistency` as one (rows and agreements summed), for the Methods."""
    rows = agree = 0
    disagreements: list[dict[str, Any]] = []
    seen = False
    for name, block in findings:
        consistency = block.get("consistency")
        if not isinstance(consistency, Mapping) or not consistency:
            continue
        seen = True
        rows += int(consistency.get("rows") or 0)
        agree += int(consistency.get("agree") or 0)
        disagreements += [{**d, "finding": name} for d in consistency.get("disagreements") or []]
    return {"rows": rows, "agree": agree, "disagreements": disagreements} if seen else None


def _underdiagnosis_sentence(a: Mapping[str, Any], comps: Mapping[str, Mapping[str, Any]]) -> str:
    """The attribute's most underdiagnosed group in plain words, against the reference (or,
    when the reference is the most underdiagnosed, against the least), with the comparison's
    difference and whether it is significant after correction."""
    rates = {
        str(g.get("group")): (g.get("value") or {}).get("value")
        for g in a.get("groups") or []
        if (g.get("value") or {}).get("value") is not None
    }
    if len(rates) < 2:
        return ""
    ref = str(a.get("reference"))
    high = max(rates, key=lambda g: rates[g])
    other = ref if high != ref else min(rates, key=lambda g: rates[g])
    comp = comps.get(high if high != ref else other)
    if comp is None or (comp.get("difference") or {}).get("value") is None:
        return ""
    name = finding_name(a.get("name"))
    verdict = "significant" if comp.get("significant") else "not significant"
    versus = f"{finding_name(other)}{' (the reference)' if other == ref else ''}"
    head = f"{name} = {finding_name(high)}{' (the reference)' if high == ref else ''}"
    return (
        f"{head} is underdiagnosed most: {fmt_num(rates[high])} of its records with a finding are called "
        f"No Finding, against {fmt_num(rates[other])} for {versus}; the difference "
        f"{finding_name(comp.get('group'))} − {finding_name(ref)} of {fmt_est(comp.get('difference'))} is "
        f"{verdict} after correction."
    )


def _underdiagnosis_view(results: Mapping[str, Any], alpha: float) -> dict[str, Any] | None:
    """results.json `underdiagnosis` as the reports' section: per attribute each group's rate
    of No Finding predicted for a record with a finding, its difference to the reference, and
    the plain-words sentence on the most underdiagnosed group (docs/multilabel.md)."""
    under = results.get("underdiagnosis")
    if not isinstance(under, Mapping):
        return None
    attributes = []
    for a in under.get("attributes") or []:
        comps = {str(c.get("group")): c for c in a.get("comparisons") or []}
        rows = []
        for g in a.get("groups") or []:
            name = str(g.get("group"))
            c = comps.get(name) or {}
            rows.append(
                {
                    "group": finding_name(name),
                    "is_ref": name == str(a.get("reference")),
                    "n": fmt_num(g.get("n")),
                    "small": bool(g.get("small")),
                    "rate": fmt_est(g.get("value")),
                    "difference": fmt_est(c.get("difference")) if c else "",
                    "p_adjusted": fmt_p(c.get("p_adjusted")) if c else "",
                    "significant": bool(c.get("significant")),
                }
            )
        sentence = _underdiagnosis_sentence(a, comps)
        het = a.get("heterogeneity") or {}
        attributes.append(
            {
                "name": finding_name(a.get("name")),
                "reference": finding_name(a.get("reference")),
                "rows": rows,
                "sentence": sentence,
                "heterogeneity": fmt_p(het.get("p_value")) if het else "",
            }
        )
    return {
        "finding": finding_name(under.get("finding")),
        "threshold": fmt_num(under.get("threshold"), 3),
        "overall": fmt_est(under.get("overall")),
        "attributes": attributes,
        "alpha": alpha,
    }


def _findings_summary_view(
    results: Mapping[str, Any], findings: list[dict[str, Any]], config: Mapping[str, Any]
) -> dict[str, Any]:
    """The Findings table: per finding its summary metric and worst-served group, then the
    macro average (results.json `findings_summary`); and what the Methods say of the audit."""
    summary = results.get("findings_summary") or {}
    metric = str(summary.get("metric") or "")
    notes = Notes()
    anchors = {f["name"]: f["anchor"] for f in findings}
    source = summary.get("findings")
    if not isinstance(source, list):  # no summary written: the findings' own counts, no worst
        source = [
            {**f, "value": ((f.get("overall") or {}).get("metrics") or {}).get(metric), "worst": None}
            for f in finding_blocks(results)
        ]
    rows = []
    for row in source:
        name = finding_name(row.get("finding"))
        worst = row.get("worst")
        worst_view = None
        if isinstance(worst, Mapping):
            significant = worst.get("significant")
            worst_view = {
                "attribute": str(worst.get("attribute", "")),
                "group": str(worst.get("group", "")),
                "reference": str(worst.get("reference", "")),
                "difference": notes.cell(worst.get("difference")),
                "p_adjusted": fmt_p(worst.get("p_adjusted")),
                "significant": {True: "yes", False: "no"}.get(significant, DASH),
                "is_significant": significant is True,
                "small": bool(worst.get("small")),
            }
        rows.append(
            {
                "finding": name,
                "anchor": anchors.get(name, ""),
                "n": fmt_num(row.get("n")),
                "n_positive": fmt_num(row.get("n_positive")),
                "n_uncertain": fmt_num(row.get("n_uncertain")),
                "value": notes.cell(row.get("value")),
                "worst": worst_view,
            }
        )
    macro = summary.get("macro") or {}
    entry = macro.get(metric) if isinstance(macro.get(metric), Mapping) else {}
    fconfig = config.get("findings") or {}
    requested = fconfig.get("requested")
    uncertain = str(fconfig.get("uncertain") or "")
    n_findings = fconfig.get("n") if isinstance(fconfig.get("n"), int) else len(findings)
    thresholds = {f.get("threshold") for f in finding_blocks(results)}
    return {
        "n_findings": fmt_num(n_findings),
        "requested_all": requested == "all",
        "requested": ", ".join(finding_name(r) for r in requested) if isinstance(requested, list) else "",
        "uncertain": uncertain,
        "uncertain_text": UNCERTAIN_WORDS.get(uncertain, uncertain),
        "uncertain_scheme": UNCERTAIN_SCHEMES.get(uncertain, ""),
        "metric": metric,
        "rows": rows,
        "macro": {
            "value": fmt_num(entry.get("value")),
            "n_findings": fmt_num(entry.get("n_findings")),
            "all": entry.get("n_findings") == len(rows),
        },
        "macro_metrics": order_metrics(str(m) for m in macro),
        "thresholds_differ": len(thresholds) > 1,
        "notes": notes,
    }


def build_view(
    results: Mapping[str, Any],
    *,
    significant_only: bool = False,
    max_rows: int | None = None,
    brief: bool = False,
) -> dict[str, Any]:
    """Turn a results dict into the formatted view the templates lay out.

    `significant_only` drops comparison rows that are not significant, and `max_rows`
    caps every long table (groups, comparisons, gate checks), for the length-limited
    Markdown report; the counts dropped are kept so the report can say so. A multi-label
    audit gets the same analysis per finding (`findings`), each capped on its own, and the
    summary across findings (`multilabel`); its top-level `attributes` are empty. `brief`
    (multi-label only, the Markdown report's last resort before cutting): each finding keeps
    its headline and overall metrics, and its attribute tables are left out and counted.
    """
    config = results.get("config") or {}
    inputs = results.get("inputs") or {}
    ci_level = config.get("ci_level")
    primary = config.get("primary_metrics") or ()
    tests_used: list[str] = []
    options = {"significant_only": significant_only, "max_rows": max_rows, "tests_used": tests_used}

    findings: list[dict[str, Any]] = []
    multilabel = None
    if is_multilabel(results):
        named = [(finding_name(b.get("finding")), b) for b in finding_blocks(results)]
        for index, (name, block) in enumerate(named, start=1):
            selection = block.get("threshold_selection")
            analysis = _analysis_view(
                block, primary=primary, threshold=fmt_num(block.get("threshold"), 3), finding=name, **options
            )
            if brief:
                analysis["attributes_left_out"] = len(analysis["attributes"])
                analysis["attributes"] = []
            findings.append(
                {
                    **analysis,
                    "name": name,
                    "index": index,
                    "anchor": f"finding-{index}",
                    "label_column": finding_name(block.get("label_column")),
                    "score_column": finding_name(block.get("score_column")),
                    "n": fmt_num(block.get("n")),
                    "n_positive": fmt_num(block.get("n_positive")),
                    "n_uncertain": fmt_num(block.get("n_uncertain")),
                    "n_no_label": fmt_num(block.get("n_no_label")),
                    "n_no_score": fmt_num(block.get("n_no_score")),
                    "threshold_policy": str(selection.get("policy") or "")
                    if isinstance(selection, Mapping)
                    else "",
                    "consistency": _consistency_view(block.get("consistency")),
                }
            )
        multilabel = _findings_summary_view(results, findings, config)
        analysis = _analysis_view({}, primary=primary, threshold="", **options)
        analysis["significant"] = [s for f in findings for s in f["significant"]]
        consistency = _consistency_view(_pooled_consistency(named))
        attribute_names = list(dict.fromkeys(a["name"] for f in findings for a in f["attributes"]))
    else:
        analysis = _analysis_view(
            results, primary=primary, threshold=fmt_num(config.get("threshold"), 3), **options
        )
        consistency = _consistency_view(results.get("consistency"))
        attribute_names = [a["name"] for a in analysis["attributes"]]

    from fairaudit.report.multiclass_view import multiclass_view

    multiclass = multiclass_view(results, _analysis_view, primary, options)  # templates/_multiclass.*.j2
    gate_view = _gate_view(results.get("gate"))
    if gate_view is not None:
        gate_view["checks_hidden"] = 0
        if max_rows is not None:
            _cap_checks(gate_view, max_rows)
    model = results.get("model")
    return {
        "meta": {
            "schema_version": str(results.get("schema_version", "")),
            "fairaudit_version": str(results.get("fairaudit_version", "")),
            "created": str(results.get("created", "")),
            "task": str(results.get("task", "")),
            "command": str(results["command"]) if results.get("command") else "",
            "title": str(results["title"]) if results.get("title") else "",  # --title (docs/reports.md)
        },
        "verdict": _verdict(results),
        "consistency": consistency,
        "inputs": {
            "n_records": fmt_num(inputs.get("n_records")),
            "n_included": fmt_num(inputs.get("n_included")),
            "excluded": [
                {"reason": str(e.get("reason", "")), "count": fmt_num(e.get("count"))}
                for e in inputs.get("excluded") or []
            ],
        },
        "config": {
            "bootstrap": fmt_num(config.get("bootstrap")),
            "ci_level": fmt_level(ci_level),
            "alpha": fmt_num(1 - ci_level, 3) if is_number(ci_level) else DASH,
            "ci_method": CI_METHOD_NAMES.get(str(config.get("ci_method")), str(config.get("ci_method")))
            if results.get("task") != "segmentation"  # its means: percentile (or BCa) bootstrap only
            else CI_METHOD_NAMES["bca" if config.get("ci_method") == "bca" else "percentile"],
            "ci_method_key": str(config.get("ci_method")),
            "correction": CORRECTION_NAMES.get(str(config.get("correction")), str(config.get("correction"))),
            "threshold": fmt_num(config.get("threshold"), 3),
            "threshold_policy": str(config["threshold_policy"]) if config.get("threshold_policy") else "",
            "seed": DASH if config.get("seed") is None else str(config.get("seed")),
            "min_group_size": fmt_num(config.get("min_group_size")),
            "primary_metrics": ", ".join(str(m) for m in config.get("primary_metrics") or ()),
            "permutations": fmt_num(config["permutations"]) if "permutations" in config else "",
            "resampling_unit": str(config.get("resampling_unit") or ""),
            "cluster_column": str(config.get("cluster_column") or ""),
            "n_clusters": fmt_num(config.get("n_clusters")) if config.get("n_clusters") is not None else "",
            "cluster_missing": fmt_num(config.get("cluster_missing"))
            if config.get("cluster_missing")
            else "",
        },
        "model": (
            {
                "name": str(model.get("name", "")),
                "sha256": str(model.get("sha256") or DASH),
                "details": [
                    (str(k), str(v))
                    for k, v in model.items()
                    if k not in ("name", "sha256")
                    and isinstance(v, (str, int, float))
                    and not isinstance(v, bool)
                ],
            }
            if isinstance(model, Mapping)
            else None
        ),
        # The analysis of a single-label audit (a multi-label one: empty, and in `findings`).
        "analysis": analysis,
        "overall": analysis["overall"],
        "attributes": analysis["attributes"],
        "disparities": analysis["disparities"],
        "significant": analysis["significant"],
        "findings": findings,
        "multilabel": multilabel,
        "multiclass": multiclass,
        "underdiagnosis": _underdiagnosis_view(
            results, round(1.0 - float(ci_level), 12) if is_number(ci_level) else 0.05
        ),
        "attribute_names": attribute_names,
        "gate": gate_view,
        "provenance": _provenance_view(results),
        "power": _power_view(a for block in finding_blocks(results) for a in block.get("attributes") or []),
        "discovered": results.get("discovered"),  # --discover: templates/_discovered.*.j2
        "baseline": baseline_view(results.get("baseline")),  # templates/_baseline.*.j2
        "tests_used": tests_used,
        "significant_only": significant_only,
        "within": _within_config(results),
        "distances": distances_text(config),
        "segmentation": segmentation_view(results),  # templates/_segmentation_*.j2
    }


def distances_text(config: Mapping[str, Any]) -> str:
    """A segmentation audit's unit of hd95 and assd, for every report ("" for other audits):
    pixels when the images give no spacing (PNG or JPEG without one, docs/images.md)."""
    seg = config.get("segmentation")
    if not isinstance(seg, Mapping) or not seg.get("distance_unit"):
        return ""
    tol, unit = seg.get("nsd_tolerance"), seg.get("nsd_tolerance_unit") or seg.get("distance_unit")
    nsd = (
        f"; nsd: the share of both surfaces within {float(tol):g} {unit} of the other"
        if is_number(tol)
        else ""
    )
    if seg.get("distance_unit") == "pixels":
        return f"hd95 and assd in pixels (the images give no pixel spacing and none was given){nsd}"
    given = {"dicom": "from the DICOM files", "nifti": "from the NIfTI headers"}.get(
        seg.get("spacing_source"), "as given"
    )
    return f"hd95 and assd in mm (pixel spacing {given}){nsd}"


def _within_config(results: Mapping[str, Any]) -> dict[str, Any] | None:
    """--within in the Inputs and Methods: the stratum columns and the records without one."""
    columns = (results.get("config") or {}).get("within")
    if not columns:
        return None
    missing = (results.get("inputs") or {}).get("missing_strata") or {}
    return {
        "label": " × ".join(str(c) for c in columns),
        "missing": ", ".join(f"{fmt_num(k)} without {c}" for c, k in missing.items()),
        "permutations": fmt_num(
            (results.get("config") or {}).get(
                "permutations_requested", (results.get("config") or {}).get("permutations")
            )
        ),
    }
