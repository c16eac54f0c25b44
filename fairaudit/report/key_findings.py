"""Key findings in plain words: per attribute (and per finding of a multi-label audit, per
structure of a `--structures` segmentation audit) the worst-served group, both values with
intervals, the difference, whether it survives the correction and what could have been
missed (docs/reports.md, "Key findings").

Every sentence is filled in from results.json's numbers by the fixed wording below (no free
text is generated), so report.md, report.html and the terminal say the same thing, and
`fairaudit report` says it again from an archived results.json.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from fairaudit._util.formatting import fmt_num, fmt_p, is_number
from fairaudit.report.blocks import result_blocks
from fairaudit.stats._metrics import HIGHER_IS_BETTER
from fairaudit.stats._segmentation import SEGMENTATION_HIGHER_IS_BETTER

__all__ = ["METRIC_WORDS", "KeyFinding", "key_finding_sentences", "key_findings"]

#: A metric as a sentence names it.
METRIC_WORDS: dict[str, str] = {
    "tpr": "Sensitivity",
    "fnr": "False-negative rate",
    "tnr": "Specificity",
    "fpr": "False-positive rate",
    "ppv": "Positive predictive value",
    "npv": "Negative predictive value",
    "selection_rate": "Selection rate",
    "accuracy": "Accuracy",
    "balanced_accuracy": "Balanced accuracy",
    "auroc": "AUROC",
    "auprc": "Average precision",
    "brier": "Brier score",
    "ece": "Expected calibration error",
    "squared_calibration_error": "Squared calibration error",
    "dice": "Dice",
    "iou": "IoU",
    "hd95": "HD95",
    "assd": "ASSD",
    "volume_error": "Relative volume error",
    "nsd": "Normalized surface Dice",
    "macro_fpr": "Macro-averaged false-positive rate",
    "macro_auroc": "Macro-averaged AUROC",
}

_DIRECTION: dict[str, bool | None] = {**HIGHER_IS_BETTER, **SEGMENTATION_HIGHER_IS_BETTER}

#: Rows that repeat another's test (fnr, tnr) or are not tested (prevalence) are never chosen.
_NOT_CHOSEN = frozenset({"fnr", "tnr", "prevalence"})

_CORRECTIONS = {"holm": "Holm", "fdr_bh": "Benjamini-Hochberg", "bonferroni": "Bonferroni"}

_MINUS = "\u2212"

#: A version-1 results.json's metric for its key finding: the first of these it has.
_LEGACY_ORDER = (
    "tpr",
    "fpr",
    "auroc",
    "ppv",
    "balanced_accuracy",
    "dice",
    "iou",
    "hd95",
    "assd",
    "volume_error",
)


@dataclass(frozen=True)
class KeyFinding:
    """One plain-words sentence. `status`: significant, not_significant, undecided (no
    test could be run) or insufficient (nothing to compare)."""

    finding: str  # the finding (multi-label) or structure (--structures) it is about, or ""
    attribute: str
    metric: str
    status: str
    sentence: str
    block: str = ""  # "finding", "structure" or "" (fairaudit.report.blocks)


def _num(value: Any) -> str:
    """A number with the tables' three decimals and a true minus sign."""
    return fmt_num(value).replace("-", _MINUS)


def _interval(ci: Any) -> str:
    """(0.700–0.940), or (−0.300 to −0.060) where a bound is negative; "" without one."""
    if not isinstance(ci, (list, tuple)) or len(ci) != 2 or not all(is_number(c) for c in ci):
        return ""
    sep = " to " if min(ci) < 0 else "–"
    return f" ({_num(ci[0])}{sep}{_num(ci[1])})"


def _value(estimate: Any) -> str:
    """'0.850 (0.700–0.940)', or 'undefined (reason)'."""
    if not isinstance(estimate, Mapping) or estimate.get("value") is None:
        reason = estimate.get("reason") if isinstance(estimate, Mapping) else None
        return f"undefined ({reason})" if reason else "undefined"
    return _num(estimate["value"]) + _interval(estimate.get("ci"))


def _p_text(p: Any) -> str:
    text = fmt_p(p)
    return f"p < {text[1:]}" if text.startswith("<") else f"p = {text}"


def _choose_metric(summary: Mapping[str, Any], primary: Iterable[str]) -> str | None:
    """The metric whose worst comparison has the most evidence (smallest unadjusted p, then the
    largest |difference|), among the primary metrics when the attribute has any; the rule of
    the report's per-attribute headline (docs/statistics.md, "The headline")."""
    names = [
        m
        for m, s in summary.items()
        if m not in _NOT_CHOSEN
        and isinstance(s, Mapping)
        and ((s.get("worst_difference") or {}).get("difference") or {}).get("value") is not None
    ]
    chosen_primary = [m for m in names if m in set(primary)]
    names = chosen_primary or names
    if not names:
        return None

    def evidence(m: str) -> tuple[float, float]:
        worst = summary[m]["worst_difference"]
        p = worst.get("p_value")
        return (1.0 if not is_number(p) else float(p), -abs(float(worst["difference"]["value"])))

    return min(names, key=evidence)


def _group_metric(attribute: Mapping[str, Any], group: str, metric: str) -> Any:
    for g in attribute.get("groups") or []:
        if str(g.get("group")) == group:
            return (g.get("metrics") or {}).get(metric)
    return None


def _comparison(attribute: Mapping[str, Any], metric: str, group: str) -> Mapping[str, Any]:
    for c in attribute.get("comparisons") or []:
        if c.get("metric") == metric and str(c.get("group")) == group:
            return c
    return {}


def _missed(comparison: Mapping[str, Any]) -> str:
    """What the test could have missed: the detectable difference at its own level and power."""
    mdd = comparison.get("min_detectable_difference")
    if not isinstance(mdd, Mapping):
        return "; how large a difference could have been missed was not computed"
    if mdd.get("value") is None:
        reason = mdd.get("reason") or "not available"
        return f"; how large a difference could have been missed could not be computed ({reason})"
    power = mdd.get("power")
    power_text = f" (with {fmt_num(float(power) * 100, 0)}% power)" if is_number(power) else ""
    up, down = mdd.get("increase"), mdd.get("decrease")
    group, reference = comparison.get("group"), comparison.get("reference")
    if "increase" in mdd and is_number(down) and up is None:
        return (
            f"; a gap of {group} below {reference} smaller than {_num(down)} could have been missed"
            f"{power_text}, and a gap above it could not be detected at all"
        )
    if "decrease" in mdd and is_number(up) and down is None:
        return (
            f"; a gap of {group} above {reference} smaller than {_num(up)} could have been missed"
            f"{power_text}, and a gap below it could not be detected at all"
        )
    return f"; a difference smaller than {_num(mdd['value'])} could have been missed{power_text}"


#: Metrics measured in the audit's distance unit (config.segmentation.distance_unit).
_DISTANCES = frozenset({"hd95", "assd"})


def _attribute_finding(
    attribute: Mapping[str, Any],
    finding: str,
    primary: Iterable[str],
    correction: str,
    min_group_size: Any,
    distance_unit: str = "",
) -> KeyFinding:
    name = str(attribute.get("name", ""))
    summary = attribute.get("summary") or {}
    metric = _choose_metric(summary, primary)
    if metric is None and not any(
        isinstance(s, Mapping) and "worst_difference" in s for s in summary.values()
    ):
        legacy = _legacy_finding(attribute, finding)  # schema version 1: no worst comparison
        if legacy is not None:
            return legacy
    if metric is None:
        groups = len(attribute.get("groups") or [])
        why = (
            "it has one group"
            if groups < 2
            else "no difference to the reference is defined (too little data, or a metric undefined in every group)"
        )
        return KeyFinding(finding, name, "", "insufficient", f"{name}: no comparison could be made: {why}.")
    worst = summary[metric]["worst_difference"]
    group, reference = str(worst.get("group")), str(worst.get("reference"))
    g_est, r_est = _group_metric(attribute, group, metric), _group_metric(attribute, reference, metric)
    diff = worst.get("difference") or {}
    higher = _DIRECTION.get(metric)
    # The worse-served of the two, first; without a direction, the compared group first.
    group_worse = True
    if higher is not None and is_number(diff.get("value")):
        group_worse = (float(diff["value"]) < 0) if higher else (float(diff["value"]) > 0)
    (worse, worse_est), (other, other_est) = (
        ((group, g_est), (reference, r_est)) if group_worse else ((reference, r_est), (group, g_est))
    )

    def label(g: str) -> str:
        return f"{g} (the reference)" if g == reference else g

    words = METRIC_WORDS.get(metric, metric)
    if metric in _DISTANCES and distance_unit:  # every number of the sentence is in this unit
        words = f"{words} (in {distance_unit})"
    subject = f"{words} for {name} = {label(worse)} is {_value(worse_est)} against {_value(other_est)} for {label(other)}"
    diff_text = f"the difference {group} {_MINUS} {reference}, {_value(diff)},"
    comp = _comparison(attribute, metric, group)
    p_adj = worst.get("p_adjusted", comp.get("p_adjusted"))
    significant = comp.get("significant") if comp else None
    corrected = (
        f"after {_CORRECTIONS[correction]} correction"
        if correction in _CORRECTIONS
        else "(no correction for multiplicity)"
    )
    if not is_number(p_adj):
        reason = comp.get("reason") or "no test could be run"
        status = "undecided"
        verdict = f"{diff_text} could not be tested ({reason})"
    elif significant is True:
        status = "significant"
        verdict = f"{diff_text} is significant {corrected} ({_p_text(p_adj)})"
    else:
        status = "not_significant"
        verdict = f"{diff_text} is not significant {corrected} ({_p_text(p_adj)}){_missed(comp)}"
    small = ""
    if worst.get("small"):
        small = (
            f" A group is small here (the metric's denominator is below {fmt_num(min_group_size)}): "
            "its comparisons decide the gate only where their intervals prove a breach."
        )
    if higher is None:
        verdict += (
            " (this metric has no better direction: the group furthest from the reference is named first)"
        )
    return KeyFinding(finding, name, metric, status, f"{subject}; {verdict}.{small}")


def _legacy_finding(attribute: Mapping[str, Any], finding: str) -> KeyFinding | None:
    """A version-1 results.json: the largest between-group difference, said as such."""
    name = str(attribute.get("name", ""))
    summary = attribute.get("summary") or {}
    rows = [
        (m, s)
        for m, s in summary.items()
        if m not in _NOT_CHOSEN
        and isinstance(s, Mapping)
        and is_number((s.get("max_difference") or {}).get("value"))
    ]
    if not rows:
        return None
    # Differences in mm and in rate points do not rank against each other: the first metric of
    # the reports' usual order (sensitivity, AUROC, Dice, ...) that has a difference.
    order = {m: i for i, m in enumerate(_LEGACY_ORDER)}
    metric, entry = min(rows, key=lambda r: order.get(r[0], len(order)))
    words = METRIC_WORDS.get(metric, metric)
    worst = f" (worst group {entry['worst_group']})" if entry.get("worst_group") is not None else ""
    return KeyFinding(
        finding,
        name,
        metric,
        "undecided",
        f"{words} for {name}: the largest difference between groups is {_value(entry['max_difference'])}{worst}; "
        "this results.json (schema version 1) does not say which comparison has the most evidence, "
        "so see the comparisons table for the tests.",
    )


def key_findings(results: Mapping[str, Any]) -> list[KeyFinding]:
    """One KeyFinding per attribute of a single-label audit, or per finding (multi-label) or
    structure (`--structures`) and attribute, in results.json's order."""
    config = results.get("config") or {}
    primary = tuple(config.get("primary_metrics") or ())
    correction = str(config.get("correction") or "")
    min_size = config.get("min_group_size")
    segmentation = config.get("segmentation")
    unit = str(segmentation.get("distance_unit") or "") if isinstance(segmentation, Mapping) else ""
    out = []
    for block in result_blocks(results):
        for attribute in block.data.get("attributes") or []:
            k = _attribute_finding(attribute, block.name, primary, correction, min_size, unit)
            out.append(replace(k, block=block.kind))
    return out


def key_finding_sentences(results: Mapping[str, Any]) -> list[str]:
    """The key findings as lines of text, for the terminal (a multi-label audit's prefixed with
    the finding): the same sentences report.md and report.html show."""
    return [f"{k.finding}: {k.sentence}" if k.finding else k.sentence for k in key_findings(results)]
