"""The rich terminal summary an ML engineer reads right after `fairaudit audit`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fairaudit._util.formatting import DASH, fmt_est, fmt_p
from fairaudit._util.sanitize import display_results
from fairaudit.errors import arg
from fairaudit.report._templates import Cell, Notes, build_view, order_metrics

__all__ = ["print_summary", "print_tables"]

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


def _findings_table(view: Mapping[str, Any], narrow: bool) -> tuple[Table, Notes]:
    """A multi-label audit's findings, one row each: n, the summary metric with its interval,
    the worst-served group with its difference, adjusted p and whether it is significant; then
    the macro average. Below `_NARROW` columns a row takes two lines (intervals and the
    reference on the second), so that the table keeps within 80 columns; no borders, for room."""
    summary = view["multilabel"]
    metric = escape(summary["metric"])
    notes = Notes()
    table = Table(
        title=f"[bold]Findings[/] ({metric}; worst-served group: furthest from its reference)",
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        padding=(0, 1, 0, 0),
        pad_edge=False,
    )
    longest = max((len(r["finding"]) for r in summary["rows"]), default=8)
    table.add_column("finding", overflow="fold", min_width=min(longest, 16))
    table.add_column("n", justify="right", no_wrap=True)
    table.add_column(f"{metric} [CI]", overflow="fold", min_width=10)
    table.add_column("worst group", overflow="fold", min_width=8)
    table.add_column("difference [CI]", overflow="fold", min_width=10)
    table.add_column("p adj.", justify="right", no_wrap=True)
    table.add_column("sig.", no_wrap=True)
    split = "\n" if narrow else " "

    def text(cell: Cell) -> str:
        shown = escape(cell.text.replace(" [", split + "[", 1))
        if cell.note is not None:
            shown += f" [dim]({notes.number(cell.reason or 'not available')})[/]"
        return shown

    for row in summary["rows"]:
        worst = row["worst"]
        cells = [DASH, DASH, DASH, DASH]
        if worst is not None:
            group = (
                f"{escape(worst['attribute'])}={escape(worst['group'])}{split}vs {escape(worst['reference'])}"
            )
            if worst["small"]:
                group += f"{split}[yellow](small)[/]"
            significant = "[bold red]yes[/]" if worst["is_significant"] else escape(worst["significant"])
            cells = [group, text(worst["difference"]), escape(worst["p_adjusted"]), significant]
        table.add_row(escape(row["finding"]), escape(row["n"]), text(row["value"]), *cells)
    macro = summary["macro"]
    label = "macro average" + ("" if macro["all"] else f" ({escape(macro['n_findings'])} findings)")
    table.add_section()
    table.add_row(f"[bold]{label}[/]", "", escape(macro["value"]), "", "", "", "")
    return table, notes


def print_summary(results: Mapping[str, Any], console: Console, verbose: bool = False) -> None:
    """The short summary (at most 30 lines: verdict, inputs, key findings, the gate checks
    that kept it from passing; fairaudit.report.terminal_brief); with `verbose`, the tables
    first (print_tables). Every user string is escaped as print_tables says."""
    from fairaudit.report.terminal_brief import print_brief

    if verbose:
        print_tables(results, console)
        console.print()
    shown = display_results(results)
    print_brief(shown, build_view(shown), console)
    structures = [str(s.get("name", "")) for s in shown.get("structures") or []]
    if structures:  # --structures: the lines above are the first structure's (docs/segmentation.md)
        console.print(
            f"[dim]Structures: {escape(structures[0])} (above), {escape(', '.join(structures[1:]) or '-')}: "
            "every structure's groups in report.md and report.html (Structures).[/]"
        )


def print_tables(results: Mapping[str, Any], console: Console) -> None:
    """Print verdict, inputs, per-attribute groups, significant comparisons and disparities.

    A multi-label audit gets one row per finding (its summary metric and worst-served group)
    in place of the per-attribute tables, which report.html and report.md have per finding.

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
        + (
            "thresholds per finding"
            if view["multilabel"] and view["multilabel"]["thresholds_differ"]
            else "predicted class: the argmax"
            if view.get("multiclass")
            else f"threshold {escape(config['threshold'])}"
        )
        + (
            f", resampled by patient ({escape(config['n_clusters'])} patients)"
            if config.get("resampling_unit") == "patient"
            else ""
        )
        + "[/]"
    )
    if view["multilabel"]:
        summary = view["multilabel"]
        console.print(
            f"[dim]Multi-label audit of {escape(summary['n_findings'])} findings; {arg('uncertain')} "
            f"{escape(summary['uncertain'])}"
            + (f" ({escape(summary['uncertain_scheme'])})" if summary["uncertain_scheme"] else "")
            + f": uncertain labels {escape(summary['uncertain_text'])}; "
            "the comparisons of all findings corrected as one family.[/]"
        )
    if view["model"]:
        console.print(f"[bold]Model:[/] {escape(view['model']['name'])}")
    if view.get("distances"):  # a segmentation audit: the unit of hd95 and assd
        console.print(f"[dim]Distances: {escape(view['distances'])}[/]")

    alpha = escape(config["alpha"])
    if view["multilabel"]:
        console.print()
        table, notes = _findings_table(view, narrow=console.width < _NARROW)
        console.print(table)
        for number, reason in notes.items:
            console.print(f"[dim]  ({number}) {escape(reason)}[/]")
    if view["underdiagnosis"]:
        under = view["underdiagnosis"]
        console.print()
        console.print(
            f"[bold]Underdiagnosis[/] ({escape(under['finding'])} called for a record with a finding): "
            f"{escape(under['overall'])} overall"
        )
        for a in under["attributes"]:
            if a["sentence"]:
                console.print(f"  {escape(a['sentence'])}")
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
                "they decide the gate only where an interval proves a breach.[/]"
            )

    if view.get("multiclass"):  # each class one-vs-rest and the confusion matrix
        from fairaudit.report.terminal_multiclass import print_multiclass

        print_multiclass(console, view["multiclass"])
    significant = view["significant"]  # every finding's, each naming it, in a multi-label audit
    if view.get("multiclass"):  # and every class's, each naming it
        significant = significant + view["multiclass"]["significant"]
    console.print()
    if significant:
        console.print(f"[bold]Significant comparisons[/] (adjusted p < {alpha}):")
        for comp in significant[:_MAX_SIGNIFICANT]:
            finding = f"{escape(comp['finding'])}: " if comp["finding"] else ""
            console.print(
                f"  {finding}{escape(comp['attribute'])}: {escape(comp['metric'])} "
                f"{escape(comp['group'])} vs {escape(comp['reference'])}"
                f" difference {escape(comp['difference'])}, "
                f"{escape(comp['test'])} "
                f"p adj. {escape(comp['p_adjusted'])}"
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

    _print_discovered(console, display_results(results).get("discovered"))

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
    finding = f"{escape(check['finding'])}: " if check["finding"] else ""
    return (
        f"  {label}: {finding}{escape(check['rule'])} {escape(check['metric'])} "
        f"{escape(check['attribute'])}={escape(check['group'])} "
        f"bound {escape(check['bound'])}, observed {escape(check['observed'].text)}{note}"
    )


def _print_discovered(console: Console, discovered: Mapping[str, Any] | None) -> None:
    """--discover: the slices served worst (at most five), each with its difference to the
    rest and adjusted p-value (issue 23: the terminal said nothing of them)."""
    if not isinstance(discovered, Mapping):
        return
    slices = discovered.get("slices") or []
    metric = escape(str(discovered.get("metric", "")))
    console.print(
        f"[bold]Discovered slices[/] ({metric}, served worse than the rest): {len(slices)} listed of "
        f"{discovered.get('n_tested', 0)} tested, {discovered.get('n_significant', 0)} significant after correction"
    )
    for sl in slices[:5]:
        console.print(
            f"  {sl.get('rank')}. {escape(str(sl.get('slice', '')))} (n {sl.get('n')}): "
            f"difference {escape(fmt_est(sl.get('difference')))}, p adj. {escape(fmt_p(sl.get('p_adjusted')))}"
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
