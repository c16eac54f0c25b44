"""Small inline SVG charts and PNG data URIs for the normalize and augment-check reports.

Built from numbers and markupsafe-escaped text only, so the templates may mark them safe.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence

import numpy as np
from markupsafe import Markup, escape

from fairaudit._util.formatting import fmt_sig

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def histogram_svg(
    edges: Sequence[float],
    series: Mapping[str, Sequence[float]],
    title: str,
    xlabel: str,
    width: int = 340,
    height: int = 190,
) -> Markup:
    """One density line per group over common bins."""
    e = np.asarray(edges, dtype=float)
    centres = (e[:-1] + e[1:]) / 2
    left, right, top, bottom = 40, 10, 22, 34
    pw, ph = width - left - right, height - top - bottom
    ymax = max([float(np.max(v)) for v in series.values() if len(v)] + [1e-12])
    x0, x1 = float(e[0]), float(e[-1])

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0 or 1.0) * pw

    def sy(y: float) -> float:
        return top + ph - y / ymax * ph

    parts = [
        f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<text x="{left}" y="14" font-size="12" font-weight="600">{escape(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#d0d4d9"/>',
    ]
    for k, (name, ys) in enumerate(series.items()):
        pts = " ".join(f"{sx(float(x)):.1f},{sy(float(y)):.1f}" for x, y in zip(centres, ys, strict=True))
        colour = PALETTE[k % len(PALETTE)]
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{pts}"/>')
        parts.append(
            f'<text x="{left + pw - 4}" y="{top + 12 + 12 * k}" font-size="10" text-anchor="end" '
            f'fill="{colour}">{escape(name)}</text>'
        )
    for x in (x0, (x0 + x1) / 2, x1):
        parts.append(
            f'<text x="{sx(x):.1f}" y="{top + ph + 13}" font-size="9" text-anchor="middle">{fmt_sig(x)}</text>'
        )
    parts.append(
        f'<text x="{left + pw / 2:.1f}" y="{height - 4}" font-size="10" text-anchor="middle">{escape(xlabel)}</text>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))


def interval_svg(
    rows: Sequence[tuple[str, float | None, Sequence[float] | None]],
    title: str,
    xlabel: str,
    width: int = 420,
) -> Markup:
    """Points with interval whiskers, one row per label, a zero line (a forest plot)."""
    vals = [v for _, v, _ in rows if v is not None and math.isfinite(v)]
    vals += [c for _, _, ci in rows if ci for c in ci if c is not None and math.isfinite(c)]
    lo, hi = (min(vals + [0.0]), max(vals + [0.0])) if vals else (-1.0, 1.0)
    if hi - lo < 1e-12:
        lo, hi = lo - 1, hi + 1
    pad = 0.05 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    left, right, top, row_h = 150, 14, 24, 18
    height = top + row_h * len(rows) + 30
    pw = width - left - right

    def sx(x: float) -> float:
        return left + (x - lo) / (hi - lo) * pw

    parts = [
        f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<text x="4" y="14" font-size="12" font-weight="600">{escape(title)}</text>',
        f'<line x1="{sx(0):.1f}" x2="{sx(0):.1f}" y1="{top - 4}" y2="{top + row_h * len(rows)}" stroke="#888" stroke-dasharray="3,3"/>',
    ]
    for k, (label, v, ci) in enumerate(rows):
        y = top + row_h * k + row_h / 2
        colour = PALETTE[k % len(PALETTE)]
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{escape(label)}</text>'
        )
        if ci is not None and all(c is not None and math.isfinite(c) for c in ci):
            parts.append(
                f'<line x1="{sx(ci[0]):.1f}" x2="{sx(ci[1]):.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="{colour}" stroke-width="2"/>'
            )
        if v is not None and math.isfinite(v):
            parts.append(f'<circle cx="{sx(v):.1f}" cy="{y:.1f}" r="3.5" fill="{colour}"/>')
    axis_y = top + row_h * len(rows) + 12
    for x in (lo + pad, (lo + hi) / 2, hi - pad):
        parts.append(
            f'<text x="{sx(x):.1f}" y="{axis_y}" font-size="9" text-anchor="middle">{fmt_sig(x)}</text>'
        )
    parts.append(
        f'<text x="{left + pw / 2:.1f}" y="{axis_y + 14}" font-size="10" text-anchor="middle">{escape(xlabel)}</text>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))


def to_uint8(image: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """2-D view for display: middle slice of a volume, 1st-99th percentile window."""
    x = np.asarray(image, dtype=np.float64)
    if x.ndim == 3:
        x = x[x.shape[0] // 2]
    if lo is None or hi is None:
        lo, hi = (float(v) for v in np.percentile(x, [1, 99]))
    if hi <= lo:
        hi = lo + 1.0
    return (np.clip((x - lo) / (hi - lo), 0, 1) * 255).round().astype(np.uint8)


def png_bytes(
    image: np.ndarray, lo: float | None = None, hi: float | None = None, max_side: int = 0
) -> bytes:
    from PIL import Image

    im = Image.fromarray(to_uint8(image, lo, hi))
    if max_side and max(im.size) > max_side:
        im.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def png_data_uri(
    image: np.ndarray, lo: float | None = None, hi: float | None = None, max_side: int = 160
) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(image, lo, hi, max_side)).decode("ascii")
