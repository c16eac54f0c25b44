"""Forest, ROC, calibration and distribution plots as inline SVG, drawn with matplotlib's Agg backend.

Imported only when report.html is written (matplotlib costs a few hundred milliseconds).
Output is deterministic (fixed hash salt, no date) and safe to inline: matplotlib escapes
text in SVG, mathtext is switched off for user strings, and the XML prologue, metadata and
namespace URLs are stripped so the page references nothing outside itself. Element ids
get a per-figure prefix so that several figures on one page never share an id.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import logging
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from markupsafe import Markup, escape  # noqa: E402

from fairaudit._util.formatting import fmt_num  # noqa: E402

__all__ = [
    "MAX_CURVE_GROUPS",
    "MIN_BIN_COUNT",
    "ForestRow",
    "calibration_svg",
    "distribution_svg",
    "estimate_value",
    "forest_svg",
    "roc_svg",
]

logger = logging.getLogger(__name__)

#: At most this many groups get a line in one ROC or calibration plot (the largest ones).
MAX_CURVE_GROUPS = 8
#: Calibration bins with fewer cases are not drawn (their rate is mostly noise).
MIN_BIN_COUNT = 5
_LABEL_CHARS = 30
#: Forest plots: group labels longer than this are shortened (the tables show the full name).
_FOREST_LABEL_CHARS = 32
_FOREST_REASON_CHARS = 44
_FOREST_ROW_IN = 0.27
_INK, _SIGNIFICANT, _SMALL, _MUTED = "#1a4f8b", "#c2410c", "#6b7280", "#555555"

#: What each metric measures, for the forest plot titles.
METRIC_TITLES: dict[str, str] = {
    "tpr": "true positive rate (sensitivity)",
    "fnr": "false negative rate (missed findings)",
    "tnr": "true negative rate (specificity)",
    "fpr": "false positive rate",
    "ppv": "positive predictive value (precision)",
    "npv": "negative predictive value",
    "selection_rate": "share predicted positive",
    "prevalence": "share with the finding",
    "accuracy": "accuracy",
    "balanced_accuracy": "mean of tpr and tnr",
    "auroc": "area under the ROC curve",
    "auprc": "average precision",
    "brier": "Brier score (lower is better)",
    "ece": "expected calibration error (lower is better)",
    "squared_calibration_error": "debiased squared calibration error (lower is better; may be below 0)",
    "dice": "Dice overlap",
    "iou": "intersection over union",
    "hd95": "95th percentile Hausdorff distance (lower is better)",
    "assd": "average symmetric surface distance (lower is better)",
    "volume_error": "relative volume error",
    "nsd": "normalized surface Dice at the tolerance",
}

_RC = {
    "svg.fonttype": "none",
    "svg.hashsalt": "fairaudit",
    "font.size": 9,
    "axes.titlesize": 10,
    "legend.fontsize": 8,
    "figure.dpi": 72,
    "text.usetex": False,
    "axes.prop_cycle": matplotlib.cycler(
        color=["#1a4f8b", "#c2410c", "#15803d", "#7e22ce", "#b91c1c", "#0e7490", "#a16207", "#4b5563"]
    ),
}


def _label(name: str, n: Any = None, ref: bool = False) -> str:
    """A legend label: shortened, never read as mathtext, never hidden (leading '_')."""
    text = name if len(name) <= _LABEL_CHARS else name[: _LABEL_CHARS - 1] + "…"
    text = text.replace("$", r"\$")
    if text.startswith("_"):
        text = "\u200b" + text
    extra = []
    if n is not None:
        extra.append(f"n={n}")
    if ref:
        extra.append("ref")
    return f"{text} ({', '.join(extra)})" if extra else text


_PROLOGUE = re.compile(r"^.*?(?=<svg)", re.S)
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)
_XMLNS = re.compile(r'\s+xmlns(:\w+)?="[^"]*"')
_IDS = re.compile(r'(id="|href="#|url\(#)([^")]+)')


def _to_svg(fig: Any, title: str, css_class: str = "plot", tight: bool = True) -> Markup:
    """Serialize a figure to an inline <svg> element (see the module docstring).

    The id prefix comes from the title (unique per plot on a page), so the same results
    give the same page, byte for byte.
    """
    buf = io.StringIO()
    with warnings.catch_warnings():
        # Text stays text in the SVG (svg.fonttype none): the browser draws any script with its own
        # fonts, so matplotlib's missing-glyph warnings (for layout only) are noise here.
        warnings.filterwarnings("ignore", message=r"Glyph .* missing from font", category=UserWarning)
        fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight" if tight else None)
    plt.close(fig)
    text = _PROLOGUE.sub("", buf.getvalue(), count=1)
    text = _METADATA.sub("", text)
    text = _XMLNS.sub("", text)
    prefix = "f" + hashlib.sha256(title.encode("utf-8")).hexdigest()[:10] + "-"
    text = _IDS.sub(lambda m: m.group(1) + prefix + m.group(2), text)
    text = text.replace("<svg ", f'<svg class="{css_class}" role="img" aria-label="{escape(title)}" ', 1)
    return Markup(text.strip())


def _size(group: Mapping[str, Any]) -> int:
    text = str(group.get("n", ""))
    return int(text) if text.isdigit() else 0


def _chosen(groups: Sequence[Mapping[str, Any]], key: str) -> tuple[list[Mapping[str, Any]], int]:
    """The reference and the largest other groups that have `key`; how many were left out."""
    having = [g for g in groups if g.get(key)]
    ordered = sorted(having, key=lambda g: (not g.get("is_ref"), g.get("small", False), -_size(g)))
    return ordered[:MAX_CURVE_GROUPS], max(0, len(having) - MAX_CURVE_GROUPS)


def _unit_square(title: str) -> tuple[Any, Any]:
    """A curve plot on [0, 1]², square (equal aspect), with the dashed diagonal (chance, or
    perfect calibration); the legend goes below the axes so it never hides a curve."""
    # No constrained layout: the axes keep their square and the tight bounding box takes in the
    # legend below (constrained layout shrank the axes to nothing for eight groups).
    fig, ax = plt.subplots(figsize=(3.6, 3.6))
    ax.plot([0, 1], [0, 1], color="#999", lw=0.8, ls="--")
    ax.set_aspect("equal", adjustable="box")
    ax.set_title(title, loc="left")
    ax.grid(alpha=0.3)
    ax.set_xticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    return fig, ax


def _legend_below(fig: Any, ax: Any, handles: list[Any], labels: list[str]) -> None:
    """The legend under the axes, two columns when there are more than four groups."""
    ax.legend(
        handles,
        labels,
        loc="upper left",
        bbox_to_anchor=(0.0, -0.16),
        ncols=2 if len(labels) > 4 else 1,
        frameon=False,
        borderaxespad=0.0,
    )


def _auroc_text(group: Mapping[str, Any]) -> str | None:
    """The group's AUROC as a legend label shows it ('AUROC 0.912'), when the view has it."""
    value = _point((group.get("values") or {}).get("auroc"))[0]
    return None if value is None else f"AUROC {fmt_num(value)}"


#: ROC inset: drawn when every curve reaches this sensitivity by this false positive rate, so
#: the curves that differ only in the upper-left corner are told apart there.
_INSET_FPR, _INSET_TPR = 0.2, 0.8


def _reaches_corner(roc: Mapping[str, Any]) -> bool:
    return any(f <= _INSET_FPR and t >= _INSET_TPR for f, t in zip(roc["fpr"], roc["tpr"], strict=True))


def _corner_inset(ax: Any, chosen: Sequence[Mapping[str, Any]]) -> None:
    """A zoom on fpr [0, 0.2] x tpr [0.8, 1] in the lower right, the curves drawn again."""
    inset = ax.inset_axes((0.42, 0.1, 0.54, 0.54))
    for line, g in zip(ax.get_lines()[1:], chosen, strict=True):
        inset.plot(
            g["roc"]["fpr"],
            g["roc"]["tpr"],
            color=line.get_color(),
            lw=line.get_linewidth(),
            ls=line.get_linestyle(),
        )
    inset.set(xlim=(0, _INSET_FPR), ylim=(_INSET_TPR, 1.0))
    inset.set_xticks([0, 0.1, 0.2])
    inset.set_yticks([0.8, 0.9, 1.0])
    inset.tick_params(labelsize=7, length=2)
    inset.grid(alpha=0.3)
    inset.set_title("zoom", fontsize=7, loc="left", pad=2)
    ax.indicate_inset_zoom(inset, edgecolor="#888")


def roc_svg(attribute: str, groups: Sequence[Mapping[str, Any]]) -> tuple[Markup, int] | None:
    """ROC curve per group (stored points) on a square axis, with the chance diagonal; None
    without curves. The legend (below the axes) gives each group's n and AUROC.

    `groups` items: name, n, is_ref, small, roc ({fpr, tpr} or None), values (auroc, optional).
    """
    chosen, left_out = _chosen(groups, "roc")
    if not chosen:
        return None
    with plt.rc_context(_RC):
        fig, ax = _unit_square("ROC by group")
        handles = []
        for g in chosen:
            (line,) = ax.plot(
                g["roc"]["fpr"],
                g["roc"]["tpr"],
                lw=2.0 if g.get("is_ref") else 1.3,
                ls=":" if g.get("small") else "-",
                drawstyle="default",
            )
            handles.append(line)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="false positive rate", ylabel="true positive rate")
        if all(_reaches_corner(g["roc"]) for g in chosen):
            _corner_inset(ax, chosen)
        labels = []
        for g in chosen:
            label = _label(g["name"], g.get("n"), g.get("is_ref"))
            auroc = _auroc_text(g)
            labels.append(f"{label}, {auroc}" if auroc else label)
        _legend_below(fig, ax, handles, labels)
        return _to_svg(fig, f"ROC curves by group of {attribute}"), left_out


def _reliability_points(g: Mapping[str, Any]) -> list[tuple[float, float, float | None, float | None]]:
    """(mean score, observed rate, interval low, high) per bin: the equal-count bins with their
    Wilson intervals when results.json has them, else (older files) the equal-width bins of
    at least MIN_BIN_COUNT cases, without intervals."""
    rel = g.get("reliability")
    if isinstance(rel, Mapping) and rel.get("mean_score"):
        cis = rel.get("ci") or [None] * len(rel["mean_score"])
        return [
            (float(s), float(y), *(tuple(ci) if ci else (None, None)))
            for s, y, ci in zip(rel["mean_score"], rel["observed"], cis, strict=True)
        ]
    cal = g.get("calibration") or {}
    return [
        (float(s), float(y), None, None)
        for s, y, c in zip(
            cal.get("mean_score", []), cal.get("mean_label", []), cal.get("count", []), strict=True
        )
        if c >= MIN_BIN_COUNT and s is not None and y is not None
    ]


def calibration_svg(attribute: str, groups: Sequence[Mapping[str, Any]]) -> tuple[Markup, int] | None:
    """Reliability diagram per group on a square axis: observed positive rate against mean
    score in equal-count bins, each point with its Wilson interval; None without bins."""
    having = [{**g, "calibration": g.get("reliability") or g.get("calibration")} for g in groups]
    chosen, left_out = _chosen(having, "calibration")
    if not chosen:
        return None
    with plt.rc_context(_RC):
        fig, ax = _unit_square("Calibration by group")
        handles = []
        for k, g in enumerate(chosen):
            pts = _reliability_points(g)
            # Points of several groups in one bin would hide each other's whiskers: a small
            # sideways offset per group (at most 0.008, well inside a bin) keeps each visible.
            shift = (k - (len(chosen) - 1) / 2) * min(0.008, 0.03 / max(len(chosen), 1))
            xs = [p[0] + shift for p in pts]
            (line,) = ax.plot(
                xs,
                [p[1] for p in pts],
                lw=2.0 if g.get("is_ref") else 1.2,
                ls=":" if g.get("small") else "-",
                marker="o",
                markersize=3.5,
            )
            lows = [p[1] - p[2] if p[2] is not None else 0.0 for p in pts]
            highs = [p[3] - p[1] if p[3] is not None else 0.0 for p in pts]
            if any(p[2] is not None for p in pts):
                ax.errorbar(
                    xs,
                    [p[1] for p in pts],
                    yerr=[lows, highs],
                    fmt="none",
                    ecolor=line.get_color(),
                    elinewidth=0.9,
                    capsize=2,
                    alpha=0.75,
                )
            handles.append(line)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean score in bin", ylabel="observed positive rate")
        _legend_below(fig, ax, handles, [_label(g["name"], g.get("n"), g.get("is_ref")) for g in chosen])
        return _to_svg(fig, f"Calibration curves by group of {attribute}"), left_out


def _data_range(chosen: Sequence[Mapping[str, Any]]) -> tuple[float, float]:
    """The x range of the groups' histograms: from the lowest bin with a case to the end of
    the highest, with a 5% margin (older files have empty bins over all of [0, 1])."""
    lows, highs = [], []
    for g in chosen:
        edges, counts = g["dist"]["edges"], g["dist"]["counts"]
        used = [i for i, c in enumerate(counts) if c]
        if used:
            lows.append(edges[used[0]])
            highs.append(edges[used[-1] + 1])
    if not lows:
        return 0.0, 1.0
    lo, hi = min(lows), max(highs)
    pad = 0.05 * (hi - lo) if hi > lo else 0.05
    return lo - pad, hi + pad


def distribution_svg(
    attribute: str, metric: str, groups: Sequence[Mapping[str, Any]]
) -> tuple[Markup, int] | None:
    """Per-case distribution (histogram) of a segmentation metric, one small panel per group,
    the x axis scaled to where the values are (not [0, 1]) and bars as densities, so groups
    binned over different ranges compare.

    `groups` items: name, n, is_ref, small, dist ({edges, counts, quantiles?}).
    """
    chosen, left_out = _chosen(groups, "dist")
    if not chosen:
        return None
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(
            len(chosen), 1, figsize=(5.2, 0.55 + 0.62 * len(chosen)), sharex=True, squeeze=False
        )
        for ax, g in zip(axes[:, 0], chosen, strict=True):
            edges, counts = g["dist"]["edges"], g["dist"]["counts"]
            total = sum(counts) or 1
            widths = [b - a for a, b in itertools.pairwise(edges)]
            colour = "#888" if g.get("small") else "#1a4f8b"
            heights = [c / total / w if w > 0 else 0.0 for c, w in zip(counts, widths, strict=True)]
            ax.bar(edges[:-1], heights, width=widths, align="edge", color=colour, lw=0)
            median = (g["dist"].get("quantiles") or {}).get("0.5")
            if isinstance(median, (int, float)):
                ax.axvline(median, color="#c2410c", lw=1.2)
            ax.set_yticks([])
            for side in ("top", "right", "left"):
                ax.spines[side].set_visible(False)
            ax.text(
                0.0,
                0.95,
                _label(g["name"], g["dist"].get("n", g.get("n")), g.get("is_ref")),
                transform=ax.transAxes,
                va="top",
                fontsize=8,
            )
        axes[-1, 0].set_xlabel(f"{metric} per case (orange line: median)")
        axes[-1, 0].set_xlim(*_data_range(chosen))
        axes[0, 0].set_title(f"{metric} per case by group", loc="left")
        return _to_svg(fig, f"{metric} distributions by group of {attribute}"), left_out


# ----------------------------------------------------------------------------- forest plots


@dataclass(frozen=True)
class ForestRow:
    """One group's estimate of one metric (an ESTIMATE mapping, or None when not computed)."""

    name: str
    estimate: Mapping[str, Any] | None
    n: Any = None
    is_ref: bool = False
    small: bool = False
    significant: bool = False


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


def estimate_value(estimate: Mapping[str, Any] | None) -> float | None:
    """An estimate's finite value, or None (undefined, or not computed)."""
    return _point(estimate)[0]


def _estimate_text(estimate: Mapping[str, Any] | None) -> str:
    """'0.812 [0.790, 0.833]' (as the tables print it), or 'n/a'."""
    value, low, high = _point(estimate)
    if value is None:
        return "n/a"
    if low is None and high is None:
        return fmt_num(value)
    return f"{fmt_num(value)} [{fmt_num(low)}, {fmt_num(high)}]"


def _forest_label(row: ForestRow) -> str:
    name = row.name if len(row.name) <= _FOREST_LABEL_CHARS else row.name[: _FOREST_LABEL_CHARS - 1] + "…"
    extra = [f"n={row.n}"] if row.n not in (None, "", "—") else []
    if row.is_ref:
        extra.append("ref")
    if row.small:
        extra.append("small")
    return f"{name} ({', '.join(extra)})" if extra else name


def _forest_limits(numbers: Sequence[float]) -> tuple[float, float]:
    """The data range with a margin, kept inside [0, 1] when every number is a proportion."""
    low, high = min(numbers), max(numbers)
    span = high - low
    pad = 0.08 * span if span > 0 else max(abs(high) * 0.1, 0.05)
    lo, hi = low - pad, high + pad
    if low >= 0.0:
        lo = max(lo, 0.0)
    if high <= 1.0 and low >= 0.0:
        hi = min(hi, 1.0)
    return lo, hi


def _text_in(text: str, size: float) -> float:
    """Rough width of a text in inches (DejaVu Sans averages about 0.6 em per character)."""
    return len(text) * size * 0.6 / 72


def forest_svg(attribute: str, metric: str, rows: Sequence[ForestRow], ci_level: str = "CI") -> Markup:
    """Each group's estimate (dot) and interval (whisker) of one metric, groups down the y axis.

    The reference group's value is a dashed vertical line and its dot a diamond; small groups
    have open grey dots; a significant difference from the reference (adjusted p) is an orange
    dot and a '*'. An undefined value is written as 'n/a' with its reason. Every estimate and
    interval is also printed at the right, so the figure reads without the tables.
    The layout is fixed in inches (no tight bounding box: that would draw every figure twice).
    Element ids (after the page prefix): point-i and ci-i for row i, reference-line.
    """
    n = max(len(rows), 1)
    labels = [_forest_label(row) for row in rows]
    values = [
        _estimate_text(row.estimate)
        + (" *" if row.significant and _point(row.estimate)[0] is not None else "")
        for row in rows
    ]
    header = f"estimate [{ci_level} CI]"
    title = metric + (f": {METRIC_TITLES[metric]}" if metric in METRIC_TITLES else "")
    label_in = max([_text_in(t, 9) for t in labels] + [0.5]) + 0.12
    # Room for a ' *' on every row keeps an attribute's plots equally wide in the grid.
    value_in = max([_text_in(t + " *", 8) for t in values] + [_text_in(header, 7.5)]) + 0.12
    plot_in, top_in, bottom_in = 2.5, 0.5, 0.32
    width = max(label_in + plot_in + value_in, _text_in(title, 10) + 0.1)
    height = _FOREST_ROW_IN * n + top_in + bottom_in
    reference = next((_point(r.estimate)[0] for r in rows if r.is_ref), None)
    numbers = [v for r in rows for v in _point(r.estimate) if v is not None]
    if reference is not None:
        numbers.append(reference)
    with plt.rc_context(_RC):
        fig = plt.figure(figsize=(width, height))
        ax = fig.add_axes(
            (label_in / width, bottom_in / height, plot_in / width, _FOREST_ROW_IN * n / height)
        )
        ax.set_ylim(n - 0.5, -0.5)
        ax.set_yticks([])
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
        ax.spines["bottom"].set_color("#888")
        ax.tick_params(axis="x", colors="#333", labelsize=8, length=3)
        ax.grid(axis="x", color="#e5e7eb", lw=0.6)
        ax.set_axisbelow(True)
        at = ax.get_yaxis_transform()  # x in axes fraction, y in rows
        left, right = -0.08 / plot_in, 1 + 0.08 / plot_in
        if numbers:
            ax.set_xlim(*_forest_limits(numbers))
            ax.xaxis.get_major_formatter().set_useOffset(False)
        else:
            ax.set_xlim(0, 1)
            ax.set_xticks([])
            ax.text(
                0.5,
                (n - 1) / 2,
                "no defined values to plot",
                ha="center",
                va="center",
                color=_MUTED,
                fontsize=8,
                transform=at,
            )
        if reference is not None:
            ax.axvline(reference, color="#777", lw=1.0, ls=(0, (4, 3)), zorder=1, gid="reference-line")
        for i, row in enumerate(rows):
            if i % 2 == 0:
                ax.axhspan(i - 0.5, i + 0.5, color="#f5f7f9", lw=0, zorder=0)
            value, low, high = _point(row.estimate)
            ax.text(
                left,
                i,
                labels[i],
                ha="right",
                va="center",
                parse_math=False,
                transform=at,
                fontweight="bold" if row.is_ref else "normal",
                color=_SMALL if row.small else "#1b1b1b",
            )
            ax.text(
                right,
                i,
                values[i],
                ha="left",
                va="center",
                fontsize=8,
                parse_math=False,
                transform=at,
                color=_MUTED if value is None else "#1b1b1b",
            )
            if value is None:
                reason = str((row.estimate or {}).get("reason") or "not computed")
                if len(reason) > _FOREST_REASON_CHARS:
                    reason = reason[: _FOREST_REASON_CHARS - 1] + "…"
                ax.text(
                    0.02,
                    i,
                    f"n/a: {reason}",
                    ha="left",
                    va="center",
                    fontsize=7.5,
                    style="italic",
                    color=_MUTED,
                    parse_math=False,
                    transform=at,
                )
                continue
            colour = _SMALL if row.small else _SIGNIFICANT if row.significant else _INK
            if low is not None or high is not None:
                ax.plot(
                    [value if low is None else low, value if high is None else high],
                    [i, i],
                    color=colour,
                    lw=1.6,
                    solid_capstyle="butt",
                    marker="|",
                    markersize=6,
                    zorder=2,
                    gid=f"ci-{i}",
                    clip_on=False,  # a cap or dot at exactly 0 or 1 is drawn whole
                )
            ax.plot(
                [value],
                [i],
                marker="D" if row.is_ref else "o",
                markersize=6 if row.is_ref else 5.5,
                color=colour,
                markerfacecolor="white" if row.small else colour,
                markeredgewidth=1.4,
                lw=0,
                zorder=3,
                gid=f"point-{i}",
                clip_on=False,
            )
        ax.text(left, -0.55, "group", ha="right", va="bottom", fontsize=7.5, color=_MUTED, transform=at)
        ax.text(
            right,
            -0.55,
            header,
            ha="left",
            va="bottom",
            fontsize=7.5,
            color=_MUTED,
            parse_math=False,
            transform=at,
        )
        fig.text(
            0.05 / width,
            1 - 0.06 / height,
            title,
            ha="left",
            va="top",
            fontsize=10,
            fontweight="bold",
            parse_math=False,
        )
        return _to_svg(
            fig, f"Forest plot of {metric} by group of {attribute}", css_class="forest", tight=False
        )
