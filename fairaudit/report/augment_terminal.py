"""augment-check's terminal summary: one short table per attribute (issue 23, point 7).

One row per augmentation family: with a model, the group whose metric drops most and by how
much (with its interval) and the adjusted p of the per-image test across groups; always, the
image statistics that shift differently between groups. Numbers go through fmt_sig, so
round-off below 1e-9 reads "0", not "-1.11e-16". Plain text when stdout is not a terminal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fairaudit._util.formatting import DASH, fmt_est, fmt_p, fmt_sig

__all__ = ["augment_table", "print_augment_summary"]


def _worst_drop(family: Mapping[str, Any]) -> tuple[str, str]:
    """(group, 'drop [CI]') of the largest degradation in a family, dashes when none is defined."""
    defined = {g: e for g, e in (family.get("degradation") or {}).items() if e.get("value") is not None}
    if not defined:
        return DASH, DASH
    group = max(defined, key=lambda g: defined[g]["value"])
    return group, fmt_est(defined[group], 3, fmt_sig)


def augment_table(attribute: Mapping[str, Any]) -> Table:
    """The attribute's table: one row per family."""
    table = Table(
        title=f"[bold]By {escape(str(attribute.get('name', '')))}[/]",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1, 0, 0),
    )
    perf = attribute.get("performance")
    main = None
    if perf:
        main = next((m for m in perf["metric_results"] if m["metric"] == perf["main_metric"]), None)
    families: list[str] = []
    for s in attribute.get("image_statistics") or []:
        if s["family"] not in families:
            families.append(s["family"])
    by_family = {f["family"]: f for f in (main or {}).get("families") or []}
    for f in by_family:
        if f not in families:
            families.append(f)
    table.add_column("family", no_wrap=True)
    if main is not None:
        metric = escape(str(perf["main_metric"]))
        table.add_column("worst group", overflow="fold")
        table.add_column(f"{metric} drop [CI]", no_wrap=True)
        table.add_column("p adj.", justify="right", no_wrap=True)
    table.add_column("image statistics shifting unequally", overflow="fold")
    for family in families:
        shifting = [
            s["statistic"]
            for s in attribute.get("image_statistics") or []
            if s["family"] == family and (s.get("test") or {}).get("significant")
        ]
        cells = [escape(family)]
        if main is not None:
            row = by_family.get(family)
            group, drop = _worst_drop(row) if row else (DASH, DASH)
            p_adj = fmt_p((row or {}).get("test", {}).get("p_adjusted"), trailing_zeros=False)
            cells += [escape(str(group)), escape(drop), escape(p_adj)]
        cells.append(escape(", ".join(shifting)) if shifting else "none")
        table.add_row(*cells)
    return table


def print_augment_summary(headline: str, results: Mapping[str, Any], console: Console) -> None:
    """The headline (rich markup), then each attribute's table."""
    console.print(headline)
    for attribute in results.get("attributes") or []:
        if attribute.get("image_statistics") or attribute.get("performance"):
            console.print(augment_table(attribute))
        else:  # nothing was measured for it (no image has a value of the attribute)
            name, summary = attribute.get("name", ""), attribute.get("summary") or ""
            console.print(f"[bold]{escape(str(name))}[/]: {escape(str(summary))}")
