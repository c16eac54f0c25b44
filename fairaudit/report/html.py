"""report.html: one self-contained page for compliance review (inline CSS and SVG, no JS)."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

from fairaudit.report._templates import build_view, fmt_est, get_environment, key_metrics

__all__ = ["MAX_FOREST_METRICS", "render_html"]

logger = logging.getLogger(__name__)

#: At most this many forest plots per attribute, so the page stays readable.
MAX_FOREST_METRICS = 6

_WIDTH = 680
_LABEL_W = 190
_PLOT_X0 = 200
_PLOT_X1 = 500
_ROW_H = 22
_TOP = 30
_AXIS_H = 30
_LABEL_CHARS = 28


@dataclass(frozen=True)
class ForestRow:
    """One group's point and interval for one metric."""

    name: str
    estimate: Mapping[str, Any] | None
    is_ref: bool = False
    small: bool = False


def _finite(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _point(estimate: Mapping[str, Any] | None) -> tuple[float | None, float | None, float | None]:
    """(value, low, high) as finite floats or None."""
    if not isinstance(estimate, Mapping):
        return None, None, None
    value = _finite(estimate.get("value"))
    ci = estimate.get("ci")
    low = high = None
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        low, high = _finite(ci[0]), _finite(ci[1])
    return value, low, high


def _domain(numbers: Sequence[float]) -> tuple[float, float]:
    """[0, 1] when every number is a proportion, else the data range with a margin."""
    low, high = min(numbers), max(numbers)
    if low >= 0.0 and high <= 1.0:
        return 0.0, 1.0
    span = high - low
    if span <= 0:
        span = max(abs(high), 1.0) * 0.2
        return low - span / 2, high + span / 2
    return low - 0.05 * span, high + 0.05 * span


def _label(row: ForestRow) -> str:
    name = row.name if len(row.name) <= _LABEL_CHARS else row.name[: _LABEL_CHARS - 1] + "…"
    if row.is_ref:
        name += " (ref)"
    if row.small:
        name += " (small)"
    return name


def _forest_svg(metric: str, rows: Sequence[ForestRow], reference: float | None) -> Markup:
    """Draw each group's estimate and interval for one metric as an inline SVG.

    Built from numbers formatted here and text passed through markupsafe.escape, so the
    result is safe to mark as Markup: no user string reaches the page unescaped.
    """
    numbers = [n for row in rows for n in _point(row.estimate) if n is not None]
    if reference is not None:
        numbers.append(reference)
    height = _TOP + _ROW_H * max(len(rows), 1) + _AXIS_H
    title = escape(f"{metric}: each group's estimate and confidence interval")
    parts: list[str] = [
        f'<svg class="forest" width="{_WIDTH}" height="{height}" '
        f'viewBox="0 0 {_WIDTH} {height}" role="img" aria-label="{title}">',
        f"<title>{title}</title>",
        f'<text x="0" y="16" font-weight="bold" font-size="13">{escape(metric)}</text>',
    ]
    if not numbers:
        parts.append(
            f'<text x="{_PLOT_X0}" y="{_TOP + 14}" font-size="12" fill="#555">'
            "no defined values to plot</text></svg>"
        )
        return Markup("".join(parts))

    low, high = _domain(numbers)

    def x(value: float) -> float:
        return _PLOT_X0 + (value - low) / (high - low) * (_PLOT_X1 - _PLOT_X0)

    bottom = _TOP + _ROW_H * len(rows)
    # Axis with five ticks.
    parts.append(
        f'<line x1="{_PLOT_X0}" y1="{bottom + 4}" x2="{_PLOT_X1}" y2="{bottom + 4}" '
        'stroke="#333" stroke-width="1"/>'
    )
    for k in range(5):
        tick = low + k * (high - low) / 4
        tx = x(tick)
        parts.append(
            f'<line x1="{tx:.1f}" y1="{bottom + 4}" x2="{tx:.1f}" y2="{bottom + 8}" stroke="#333"/>'
            f'<text x="{tx:.1f}" y="{bottom + 20}" font-size="11" text-anchor="middle">'
            f"{escape(f'{tick:.3g}')}</text>"
        )
    if reference is not None:
        rx = x(reference)
        parts.append(
            f'<line x1="{rx:.1f}" y1="{_TOP - 4}" x2="{rx:.1f}" y2="{bottom + 4}" '
            'stroke="#777" stroke-width="1" stroke-dasharray="4 3"/>'
        )
    for index, row in enumerate(rows):
        cy = _TOP + _ROW_H * index + _ROW_H / 2
        weight = "bold" if row.is_ref else "normal"
        parts.append(
            f'<text x="{_LABEL_W}" y="{cy + 4:.1f}" font-size="12" text-anchor="end" '
            f'font-weight="{weight}"><title>{escape(row.name)}</title>'
            f"{escape(_label(row))}</text>"
        )
        value, ci_low, ci_high = _point(row.estimate)
        if value is None:
            reason = ""
            if isinstance(row.estimate, Mapping) and row.estimate.get("reason"):
                reason = f": {row.estimate['reason']}"
            parts.append(
                f'<text x="{_PLOT_X0}" y="{cy + 4:.1f}" font-size="11" fill="#555">'
                f"{escape('n/a' + reason)}</text>"
            )
            continue
        colour = "#888" if row.small else "#1a4f8b"
        if ci_low is not None or ci_high is not None:
            x_low = x(ci_low if ci_low is not None else value)
            x_high = x(ci_high if ci_high is not None else value)
            parts.append(
                f'<line x1="{x_low:.1f}" y1="{cy:.1f}" x2="{x_high:.1f}" y2="{cy:.1f}" '
                f'stroke="{colour}" stroke-width="2"/>'
            )
        fill = "#fff" if row.small else colour
        parts.append(
            f'<circle cx="{x(value):.1f}" cy="{cy:.1f}" r="4" fill="{fill}" '
            f'stroke="{colour}" stroke-width="1.5"/>'
            f'<text x="{_PLOT_X1 + 10}" y="{cy + 4:.1f}" font-size="11">'
            f"{escape(fmt_est(row.estimate))}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _forest_plots(attribute: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Forest plots for an attribute's key metrics, from the view's raw estimates."""
    plots = []
    groups = attribute["groups"]
    for metric in key_metrics(attribute["metrics"], MAX_FOREST_METRICS):
        rows = [ForestRow(g["name"], g["values"].get(metric), g["is_ref"], g["small"]) for g in groups]
        reference = next((_point(r.estimate)[0] for r in rows if r.is_ref), None)
        plots.append({"metric": metric, "svg": _forest_svg(metric, rows, reference)})
    return plots


def render_html(results: Mapping[str, Any]) -> str:
    """Render results as one self-contained HTML page (every user string autoescaped)."""
    view = build_view(results)
    for attribute in view["attributes"]:
        attribute["plots"] = _forest_plots(attribute)
    template = get_environment().get_template("report.html.j2")
    return template.render(**view)
