"""report.html: one self-contained page for compliance review (inline CSS and SVG, no JS).

Every plot (forest, ROC, calibration, distributions) is drawn by fairaudit.report.plots with
matplotlib's Agg backend; this module picks what to draw and renders the template.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fairaudit._util.sanitize import display_results
from fairaudit.report._templates import build_view, get_environment, key_metrics
from fairaudit.report.review_view import review_view
from fairaudit.report.structures_view import structures_view

__all__ = ["MAX_FOREST_METRICS", "MAX_FOREST_ROWS", "render_html"]

logger = logging.getLogger(__name__)

#: At most this many forest plots per attribute, so the page stays readable.
MAX_FOREST_METRICS = 6
#: At most this many groups per forest plot (the reference and the worst served on its metric);
#: the tables have all.
MAX_FOREST_ROWS = 20


def _forest_groups(groups: Sequence[Mapping[str, Any]], metric: str) -> list[Mapping[str, Any]]:
    """The reference and the groups served worst on `metric`, at most MAX_FOREST_ROWS."""
    if len(groups) <= MAX_FOREST_ROWS:
        return list(groups)
    from fairaudit.report.layout import rank_groups

    return rank_groups(list(groups), metric)[:MAX_FOREST_ROWS]  # type: ignore[arg-type]


def _by_estimate(row: Any) -> tuple[int, float]:
    """Sort key of a forest row: defined values first, highest first."""
    from fairaudit.report.plots import estimate_value

    value = estimate_value(row.estimate)
    return (1, 0.0) if value is None else (0, -value)


def _plot_name(attribute: Mapping[str, Any], finding: str) -> str:
    """What a plot is of: the attribute, and in a multi-label audit its finding too, so that
    plots of one attribute in two findings get different labels and element ids."""
    return f"{attribute['name']} in finding {finding}" if finding else attribute["name"]


def _forest_plots(
    attribute: Mapping[str, Any], ci_level: str, finding: str = "", only: tuple[str, ...] | None = None
) -> list[dict[str, Any]]:
    """Forest plots (matplotlib) for an attribute's key metrics (or `only` these), from the
    view's raw estimates.

    matplotlib is imported only here and in _curve_plots, when report.html is written.
    """
    from fairaudit.report import plots

    significant = {(c["metric"], c["group"]) for c in attribute["comparisons"] if c["is_significant"]}
    out = []
    for metric in only or key_metrics(attribute["metrics"], MAX_FOREST_METRICS):
        rows = [
            plots.ForestRow(
                name=g["name"],
                estimate=g["values"].get(metric),
                n=g["n"],
                is_ref=g["is_ref"],
                small=g["small"],
                significant=(metric, g["name"]) in significant,
            )
            for g in _forest_groups(attribute["groups"], metric)
        ]
        # Sorted by estimate, highest first (undefined last; ties keep table order), so the
        # eye reads the ranking off the plot (issue 23).
        rows.sort(key=_by_estimate)
        svg = plots.forest_svg(_plot_name(attribute, finding), metric, rows, ci_level)
        out.append({"metric": metric, "svg": svg})
    return out


def _curve_plots(attribute: dict[str, Any], finding: str = "") -> list[dict[str, Any]]:
    """ROC and calibration (classification) and per-case distributions (segmentation).

    matplotlib is imported only here, and only when some group has stored curves.
    """
    groups = attribute["groups"]
    has_curves = any(g["roc"] or g["calibration"] for g in groups)
    dist_metrics = [m for m in ("dice", "iou") if any(m in g["distributions"] for g in groups)]
    if not has_curves and not dist_metrics:
        return []
    from fairaudit.report import plots

    name = _plot_name(attribute, finding)
    out = []
    for kind, drawn in (
        ("roc", plots.roc_svg(name, groups)),
        ("calibration", plots.calibration_svg(name, groups)),
    ):
        if drawn is not None:
            out.append({"kind": kind, "svg": drawn[0], "left_out": drawn[1]})
    for metric in dist_metrics[:1]:  # dice when stored, else iou
        dist_rows = [{**g, "dist": g["distributions"].get(metric)} for g in groups]
        drawn = plots.distribution_svg(name, metric, dist_rows)
        if drawn is not None:
            out.append({"kind": f"{metric} distribution", "svg": drawn[0], "left_out": drawn[1]})
    return out


def _rank(attribute: dict[str, Any], disparities: Sequence[Mapping[str, Any]]) -> None:
    """Worst-served groups first on the attribute's headline metric; past SHOWN_GROUPS the
    rest are folded (`groups_shown`, `groups_folded`; docs/reports.md, "Length")."""
    from fairaudit.report.layout import SHOWN_GROUPS, rank_groups

    metric = next((d["metric"] for d in disparities if d["attribute"] == attribute["name"]), None)
    if metric not in attribute["metrics"]:
        metric = next((m for m in ("tpr", "auroc", "dice") if m in attribute["metrics"]), None)
    ranked = rank_groups(attribute["groups"], metric) if len(attribute["groups"]) > SHOWN_GROUPS else []
    attribute["rank_metric"] = metric if ranked else None
    attribute["groups_shown"] = ranked[:SHOWN_GROUPS] if ranked else attribute["groups"]
    attribute["groups_folded"] = ranked[SHOWN_GROUPS:]


def _across(attribute: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Omnibus tests and the disparity summary joined by metric, one table instead of two
    (the summary's order, then omnibus-only metrics)."""
    omnibus = {r["metric"]: r for r in attribute.get("omnibus") or []}
    rows = [
        {"metric": s["metric"], "summary": s, "omnibus": omnibus.pop(s["metric"], None)}
        for s in attribute.get("summary") or []
    ]
    return rows + [{"metric": m, "summary": None, "omnibus": r} for m, r in omnibus.items()]


def render_html(results: Mapping[str, Any]) -> str:
    """Render results as one self-contained HTML page (every user string autoescaped)."""
    view = build_view(display_results(results))  # controls escaped, long names capped (docs/reports.md)
    view.update(review_view(display_results(results), "html"))  # key findings, context, population ...
    view.update(structures_view(display_results(results)))  # --structures: every structure's groups
    # A single-label audit's attributes, or every finding's (a multi-label audit).
    # A multi-class audit's classes (one-vs-rest) are laid out as findings are.
    analyses = [view["analysis"], *view["findings"], *((view.get("multiclass") or {}).get("per_class") or [])]
    # A multi-label report draws, per finding and attribute, one forest plot (the summary
    # metric) and no curves: matplotlib takes about 0.2 s a plot, and 14 findings drew
    # hundreds (the curves stay in results.json; docs/reports.md).
    summary_metric = (
        view["multilabel"]["metric"] if view["multilabel"] else "auroc" if view.get("multiclass") else None
    )
    for analysis in analyses:
        for attribute in analysis["attributes"]:
            only = (
                (summary_metric,) if analysis["finding"] and summary_metric in attribute["metrics"] else None
            )
            attribute["plots"] = _forest_plots(
                attribute, view["config"]["ci_level"], analysis["finding"], only
            )
            attribute["curve_plots"] = [] if analysis["finding"] else _curve_plots(attribute)
            attribute["forest_left_out"] = max(0, len(attribute["groups"]) - MAX_FOREST_ROWS)
            _rank(attribute, analysis.get("disparities") or [])
            attribute["across"] = _across(attribute)
    template = get_environment().get_template("report.html.j2")
    return template.render(**view)
