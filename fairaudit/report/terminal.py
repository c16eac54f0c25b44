"""The rich terminal summary an ML engineer reads right after `fairaudit audit`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fairaudit._util.formatting import fmt_est, fmt_p
from fairaudit._util.sanitize import display_results
from fairaudit.report._templates import Notes, build_view, order_metrics, test_name

__all__ = ["print_summary"]

logger = logging.getLogger(__name__)

_TERMINAL_METRICS = ("tpr", "fpr", "auroc")
_MAX_OTHER_METRICS = 4
_MAX_SIGNIFICANT = 15
#: Group rows per terminal table (the reference and the largest groups); report.html has all.
_MAX_GROUP_ROWS = 30
#: Below this console width a cell's interval goes on its own line instead of wrapping anywhere.
_NARROW = 110

_STATUS_STYLE = {"pass": "green", "fail": "bold red", "inconclusive": "yellow"}


# How the terminal names each --ci-method (docs/statistics.md).
_CI_WORDS = {
    "score": "score (bootstrap for means)",
    "exact": "exact (bootstrap for means)",
    "percentile": "percentile bootstrap",
    "bca": "BCa bootstrap",
}


def _chosen_metrics(metrics: list[str]) -> list[str]:
    """tpr, fpr and auroc when present, else the first few metrics there are."""
    chosen = [m for m in _TERMINAL_METRICS if m in metrics]
    return chosen or order_metrics(metrics)[:_MAX_OTHER_METRICS]


def _verdict_line(view: Mapping[str, Any]) -> str:
    """One line that says the outcome plainly, with the counts and the exit code."""
    verdict = view["verdict"]
    if verdict["status"] == "none":
        return "[bold]Verdict:[/] [yellow]no gate[/] (no policy given; nothing passed or failed)"
    style = {"passed": "bold green", "failed": "bold red"}.get(verdict["status"], "bold yellow")
    label = {"passed": "gate passed", "failed": "gate failed"}.get(verdict["status"], "gate inconclusive")
    return f"[bold]Verdict:[/] [{style}]{label}[/]: {escape(verdict['text'])}"


def _shown_groups(groups: list[dict]) -> list[dict]:
    """At most _MAX_GROUP_ROWS groups: the reference first in rank, then the largest; table order kept."""
    if len(groups) <= _MAX_GROUP_ROWS:
        return groups

    def size(g: Mapping[str, Any]) -> int:
        return int(g["n"]) if str(g["n"]).isdigit() else 0

    keep = {id(g) for g in sorted(groups, key=lambda g: (not g["is_ref"], -size(g)))[:_MAX_GROUP_ROWS]}
    return [g for g in groups if id(g) in keep]


def _group_table(attribute: Mapping[str, Any], title: str, narrow: bool = False) -> tuple[Table, Notes]:
    """The per-group table; undefined values get a numbered reason listed under it."""
    metrics = _chosen_metrics(attribute["metrics"])
    notes = Notes()
    table = Table(title=title, title_justify="left", header_style="bold")
    longest = max((len(str(g["name"])) + 12 for g in attribute["groups"]), default=8)
    table.add_column("group", overflow="fold", min_width=min(longest, 24))
    table.add_column("n", justify="right", no_wrap=True)
    for metric in metrics:
        table.add_column(escape(metric), overflow="fold", min_width=10)
    for group in _shown_groups(attribute["groups"]):
        label = escape(group["name"])
        if group["is_ref"]:
            label += " [cyan](ref)[/]"
        if group["small"]:
            label += " [yellow](small)[/]"
        cells = []
        for metric in metrics:
            cell = notes.cell(group["values"].get(metric))
            text = escape(cell.text.replace(" [", "\n[", 1) if narrow else cell.text)
            if cell.note is not None:
                text += f" [dim]({cell.note})[/]"
            cells.append(text)
        table.add_row(label, escape(group["n"]), *cells)
    return table, notes


def print_summary(results: Mapping[str, Any], console: Console) -> None:
    """Print verdict, inputs, per-attribute groups, significant comparisons and disparities.

    Every user string (attribute and group names, reasons) is markup-escaped: they come
    from users' CSV files and could otherwise be read as rich markup; control characters
    (ESC could drive the terminal) show as escapes and long names are capped (docs/reports.md).
    """
    results = display_results(results)
    view = build_view(results)
    console.print(_verdict_line(view))

    inputs = view["inputs"]
    excluded = ", ".join(f"{escape(e['reason'])}: {escape(e['count'])}" for e in inputs["excluded"])
    console.print(
        f"[bold]Inputs:[/] {escape(inputs['n_included'])} of {escape(inputs['n_records'])} "
        f"records included" + (f"; excluded: {excluded}" if excluded else "")
    )
    config = view["config"]
    console.print(
        f"[dim]{escape(config['ci_level'])} {escape(_CI_WORDS.get(config['ci_method_key'], config['ci_method']))} intervals "
        f"(B = {escape(config['bootstrap'])}), {escape(config['correction'])} correction, "
        f"threshold {escape(config['threshold'])}"
        + (
            f", resampled by patient ({escape(config['n_clusters'])} patients)"
            if config.get("resampling_unit") == "patient"
            else ""
        )
        + "[/]"
    )
    if view["model"]:
        console.print(f"[bold]Model:[/] {escape(view['model']['name'])}")

    alpha = escape(config["alpha"])
    for attribute in view["attributes"]:
        console.print()
        title = f"[bold]{escape(attribute['name'])}[/] (reference: {escape(attribute['reference'])})"
        table, notes = _group_table(attribute, title, narrow=console.width < _NARROW)
        console.print(table)
        hidden = len(attribute["groups"]) - len(_shown_groups(attribute["groups"]))
        if hidden:
            console.print(f"[dim]  … {hidden} smaller groups not shown (see report.html)[/]")
        for number, reason in notes.items:
            console.print(f"[dim]  ({number}) {escape(reason)}[/]")
        if attribute["small_groups"]:
            names = ", ".join(escape(s) for s in attribute["small_groups"])
            console.print(
                f"[yellow]Too little data (n < {escape(config['min_group_size'])}): {names}; "
                "they do not decide the gate.[/]"
            )

    significant = [
        (attr, comp)
        for attr in results.get("attributes") or []
        for comp in attr.get("comparisons") or []
        if comp.get("significant") is True
    ]
    console.print()
    if significant:
        console.print(f"[bold]Significant comparisons[/] (adjusted p < {alpha}):")
        for attr, comp in significant[:_MAX_SIGNIFICANT]:
            console.print(
                f"  {escape(str(attr.get('name', '')))}: {escape(str(comp.get('metric', '')))} "
                f"{escape(str(comp.get('group', '')))} vs {escape(str(comp.get('reference', '')))}"
                f" difference {escape(fmt_est(comp.get('difference')))}, "
                f"{escape(test_name(comp.get('test')))} "
                f"p adj. {escape(fmt_p(comp.get('p_adjusted')))}"
            )
        if len(significant) > _MAX_SIGNIFICANT:
            console.print(f"  … and {len(significant) - _MAX_SIGNIFICANT} more (see report.html)")
    else:
        console.print(f"[bold]Significant comparisons:[/] none (adjusted p < {alpha})")

    key_power = [r for r in view["power"] if r["metric"] in _TERMINAL_METRICS]
    if key_power:
        parts = ", ".join(f"{escape(r['metric'])} {escape(r['median'])}" for r in key_power)
        console.print(
            f"[dim]Not significant is not the same as equal: the median smallest difference these "
            f"comparisons could detect with 80% power was {parts}.[/]"
        )

    if view["disparities"]:
        if view["disparities"][0].get("kind") == "worst":
            title = "[bold]Per attribute[/] (the group furthest from the reference, and across all groups):"
        else:
            title = (
                "[bold]Largest disparities[/] (largest between-group difference, groups of adequate size):"
            )
        console.print(title)
        for d in view["disparities"]:
            console.print("  " + _headline_line(d))

    baseline = view.get("baseline")
    if baseline:
        widened = [
            r
            for r in baseline["gap_rows"]
            if (r.get("disparity_increase") or {}).get("ci") and r["disparity_increase"]["ci"][0] > 0
        ]
        console.print(
            f"[bold]Release comparison[/] (against {escape(str(baseline['predictions']))}, "
            f"{baseline['n_matched']} paired cases): {len(widened)} gap(s) widened"
        )
        for r in widened[:_MAX_SIGNIFICANT]:
            console.print(
                f"  {escape(str(r['attribute']))}={escape(str(r['group']))} {escape(r['metric'])}: "
                f"gap increase {escape(fmt_est(r['disparity_increase']))}"
            )

    gate = view["gate"]
    if gate:
        _print_gate_checks(console, gate, view["verdict"])


def _headline_line(d: Mapping[str, Any]) -> str:
    """One attribute's headline: the worst signed difference, or (version 1) the range."""
    name = f"{escape(str(d['attribute']))}: {escape(d['metric'])}"
    if d.get("kind") != "worst":
        worst = "" if d.get("worst_group") is None else f", worst group {escape(str(d['worst_group']))}"
        return f"{name} largest difference {escape(d['max_difference'])}{worst}"
    small = " (small)" if d["small"] else ""
    het = (
        f"; across groups {escape(d['heterogeneity_test'])} p {d['heterogeneity_p']}"
        if d["heterogeneity_test"]
        else ""
    )
    return (
        f"{name} {escape(str(d['group']))} − {escape(str(d['reference']))} = {escape(d['difference'])}"
        f"{small}, p {d['p_value']} (adj. {d['p_adjusted']}){het}"
    )


def _check_line(check: Mapping[str, Any]) -> str:
    style = _STATUS_STYLE.get(check["status"], "")
    status = escape(check["status"])
    label = f"[{style}]{status}[/]" if style else status
    note = f"; [dim]{escape(check['note'])}[/]" if check["note"] else ""
    return (
        f"  {label}: {escape(check['rule'])} {escape(check['metric'])} "
        f"{escape(check['attribute'])}={escape(check['group'])} "
        f"bound {escape(check['bound'])}, observed {escape(check['observed'].text)}{note}"
    )


def _print_gate_checks(console: Console, gate: Mapping[str, Any], verdict: Mapping[str, Any]) -> None:
    """The deciding checks that kept the gate from passing: failures first, then the undecided."""
    deciding = [c for c in gate["checks"] if c["decides"]]
    bad = [c for c in deciding if c["status"] == "fail"]
    unsure = [c for c in deciding if c["status"] == "inconclusive"]
    if (
        verdict.get("outcome") == "fail"
        and verdict.get("decide") == "evidence_of_fairness"
        and gate.get("on_inconclusive") is None
    ):
        bad += unsure  # a version-1 results.json: these failed an evidence_of_fairness gate
        unsure = []
    if bad:
        console.print("[bold]Gate checks that did not pass:[/]")
        for check in bad[:_MAX_SIGNIFICANT]:
            console.print(_check_line(check))
    if unsure and verdict.get("outcome") == "inconclusive":
        console.print("[bold]Gate checks that could not decide (the gate is inconclusive):[/]")
        for check in unsure[:_MAX_SIGNIFICANT]:
            console.print(_check_line(check))
        if len(unsure) > _MAX_SIGNIFICANT:
            console.print(f"[dim]  ... and {len(unsure) - _MAX_SIGNIFICANT} more: see report.html[/]")
    elif unsure:
        console.print(f"[dim]{len(unsure)} inconclusive checks: see report.html[/]")
    small = len(gate["checks"]) - len(deciding)
    if small:
        console.print(f"[dim]{small} checks on too little data were reported but do not decide the gate.[/]")


def gate_decide(results: Mapping[str, Any]) -> str | None:
    """The gate's decision rule, if there is a gate."""
    return (results.get("gate") or {}).get("decide")
