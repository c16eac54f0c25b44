"""report.html's layout (issue 23, points 5 and 6): a 40-group attribute lists its worst
groups first and folds the rest, forest plots are sorted by estimate, curve plots are square,
distributions are scaled to the data, and the print header's CSS string cannot be broken out of.

The expected orders are computed here from the numbers (sorted by hand), not read back from
the code under test.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from fairaudit.report import plots
from fairaudit.report.html import MAX_FOREST_ROWS, render_html
from fairaudit.report.layout import SHOWN_GROUPS, css_string, harm, rank_groups

from _helpers.results import est, group, make_results, make_segmentation_results

N_GROUPS = 40


def _forty_groups() -> tuple[dict, list[tuple[str, float]]]:
    """make_results() with race replaced by 40 hospitals, tpr drawn from a seeded generator."""
    results = make_results()
    rng = np.random.default_rng(23)
    tprs = np.round(rng.uniform(0.55, 0.95, N_GROUPS), 3)
    names = [f"hospital {i:02d}" for i in range(N_GROUPS)]
    race = results["attributes"][1]
    race["name"] = "site"
    race["reference"] = names[0]
    race["groups"] = [
        group(
            name,
            100,
            30,
            False,
            est(float(t), float(t) - 0.05, float(t) + 0.05),
            est(0.1, 0.05, 0.15),
            est(0.9, 0.85, 0.95),
        )
        for name, t in zip(names, tprs, strict=True)
    ]
    race["comparisons"] = []
    race.pop("summary", None)
    return results, list(zip(names, tprs.tolist(), strict=True))


def _section(html: str, heading: str) -> str:
    start = html.index(heading)
    end = html.find("<section", start)
    return html[start : end if end > 0 else len(html)]


def test_forty_groups_worst_first_rest_folded() -> None:
    results, groups = _forty_groups()
    html = render_html(results)
    site = _section(html, "<h2>Attribute: site")
    reference, others = groups[0], groups[1:]
    worst = [name for name, _ in sorted(others, key=lambda g: g[1])]  # tpr: lower is worse
    shown = re.search(r'<table class="screen-only">(.*?)</table>', site, re.S).group(1)
    names = re.findall(r'<td class="name">(hospital \d\d)', shown)
    assert names == [reference[0], *worst[: SHOWN_GROUPS - 1]]
    folded = re.search(r"<details class=\"screen-only\"><summary>The other (\d+) groups", site)
    assert folded and int(folded.group(1)) == N_GROUPS - SHOWN_GROUPS
    # The forest plot of tpr draws the reference and the worst, sorted by estimate (highest first).
    forest = next(
        s for s in re.findall(r'<svg class="forest".*?</svg>', site, re.S) if "Forest plot of tpr" in s
    )
    drawn = re.findall(r">(hospital \d\d) \(n=", forest)
    expected = {reference[0], *worst[: MAX_FOREST_ROWS - 1]}
    assert set(drawn) == expected
    by_name = dict(groups)
    assert [by_name[n] for n in drawn] == sorted((by_name[n] for n in expected), reverse=True)


def test_harm_direction() -> None:
    assert harm("tpr", 0.7, 0.8) == pytest.approx(0.1)  # lower sensitivity is worse
    assert harm("fpr", 0.2, 0.1) == pytest.approx(0.1)  # more false positives are worse
    assert harm("hd95", 3.0, 5.0) == pytest.approx(-2.0)  # a smaller distance is better
    assert harm("selection_rate", 0.2, 0.3) == pytest.approx(0.1)  # no direction: the size
    assert harm("tpr", None, 0.8) is None
    ranked = rank_groups(
        [
            {"name": "a", "is_ref": False, "values": {"fpr": est(0.3)}},
            {"name": "r", "is_ref": True, "values": {"fpr": est(0.1)}},
            {"name": "b", "is_ref": False, "values": {"fpr": est(None)}},
            {"name": "c", "is_ref": False, "values": {"fpr": est(0.5)}},
        ],
        "fpr",
    )
    assert [g["name"] for g in ranked] == ["r", "c", "a", "b"]


@pytest.mark.parametrize("title", ['a "quoted" title', "x\\</style><script>alert(1)</script>", "line\nbreak"])
def test_css_string_cannot_break_out(title: str) -> None:
    text = str(css_string(title))
    inner = text[1:-1]
    assert text.startswith('"') and text.endswith('"')
    assert not any(c in inner for c in '"<>\n') and "\\\\" not in inner
    # CSS unescapes \HHHHHH to the character: the same text comes back.
    assert re.sub(r"\\([0-9a-f]{6})", lambda m: chr(int(m.group(1), 16)), inner) == title


def _axes_box(svg: str) -> tuple[float, float]:
    """Width and height of the main axes' background (matplotlib's first 'patch' in the axes)."""
    path = re.search(
        r'<g id="[^"]*axes_1">\s*<g id="[^"]*patch_2">\s*<path d="M ([\d.]+) ([\d.]+)\s*L ([\d.]+) ([\d.]+)\s*L ([\d.]+) ([\d.]+)',
        svg,
    )
    x0, y0, x1, _, _, y2 = (float(v) for v in path.groups())
    return abs(x1 - x0), abs(y2 - y0)


def test_roc_and_calibration_are_square_with_intervals() -> None:
    roc = {"fpr": [0.0, 0.02, 0.1, 1.0], "tpr": [0.0, 0.9, 0.97, 1.0]}
    reliability = {"mean_score": [0.1, 0.3, 0.5, 0.7, 0.9], "observed": [0.1, 0.35, 0.5, 0.6, 0.95],
                   "ci": [[0.02, 0.3], [0.2, 0.5], [0.3, 0.7], [0.4, 0.8], [0.8, 0.99]], "count": [20] * 5}  # fmt: skip
    groups = [
        {
            "name": "A",
            "n": 100,
            "is_ref": True,
            "roc": roc,
            "reliability": reliability,
            "values": {"auroc": est(0.97)},
        },
        {"name": "B", "n": 100, "roc": roc, "reliability": reliability, "values": {"auroc": est(0.95)}},
    ]
    svg, _ = plots.roc_svg("site", groups)
    width, height = _axes_box(str(svg))
    assert width == pytest.approx(height, rel=0.01)
    assert "AUROC 0.970" in str(svg) and "zoom" in str(svg)  # curves in the corner get an inset
    svg, _ = plots.calibration_svg("site", groups)
    width, height = _axes_box(str(svg))
    assert width == pytest.approx(height, rel=0.01)
    # Five points per group, each with a whisker (an errorbar line collection).
    assert str(svg).count('id="f') > 0 and len(re.findall(r'<g id="[^"]*LineCollection_\d+">', str(svg))) == 2


def test_distribution_axis_is_scaled_to_the_data() -> None:
    results = make_segmentation_results()
    edges = list(np.linspace(0.90, 0.97, 21))
    for attribute in results["attributes"]:
        for g in attribute["groups"]:
            g["distributions"] = {
                "dice": {"n": 10, "edges": edges, "counts": [1] * 10 + [0] * 10, "quantiles": {"0.5": 0.92}}
            }
    html = render_html(results)
    svg = re.search(r'<svg class="plot"[^>]*aria-label="dice distributions.*?</svg>', html, re.S).group(0)
    ticks = [float(t.replace("\u2212", "-")) for t in re.findall(r">(\d\.\d+)</text>", svg)]
    assert ticks and min(ticks) >= 0.89 and max(ticks) <= 0.94  # the data sit in [0.90, 0.935]
