"""Rendering a hand-built results dict: schema, HTML escaping, Markdown tables, terminal."""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from fairaudit.report import print_summary, render_html, render_markdown, write_reports
from fairaudit.report._templates import md_escape
from fairaudit.report.markdown import MAX_MARKDOWN_CHARS
from fairaudit.schema import load_schema, validate_results

XSS = "<script>alert(1)</script>"
PIPE = "A|B"


def est(value: float | None, low: float | None = None, high: float | None = None, reason=None):
    """An ESTIMATE as DESIGN.md defines it."""
    if value is None:
        return {"value": None, "ci": None, "reason": reason or "undefined"}
    return {"value": value, "ci": [low, high]}


def group(name: str, n: int, n_pos: int, small: bool, tpr, fpr, auroc) -> dict[str, Any]:
    return {
        "group": name,
        "n": n,
        "n_positive": n_pos,
        "n_negative": n - n_pos,
        "small": small,
        "metrics": {"tpr": tpr, "fpr": fpr, "auroc": auroc},
    }


def comparison(metric, name, ref, diff, ratio, test, p, p_adj, significant, **extra):
    row = {
        "metric": metric,
        "group": name,
        "reference": ref,
        "difference": diff,
        "ratio": ratio,
        "test": test,
        "p_value": p,
        "p_adjusted": p_adj,
        "significant": significant,
    }
    row.update(extra)
    return row


def make_results() -> dict[str, Any]:
    """Two attributes; hostile group names; a null metric; a small group; a mixed gate."""
    sex_groups = [
        group("F", 420, 120, False, est(0.812, 0.790, 0.833), est(0.101, 0.080, 0.125),
              est(0.902, 0.881, 0.920)),
        group("M", 380, 110, False, est(0.745, 0.701, 0.788), est(0.143, 0.112, 0.171),
              est(0.871, 0.845, 0.896)),
        group(XSS, 12, 0, True, est(None, reason="no positive cases (TP+FN = 0)"),
              est(0.167, 0.0, 0.417), est(None, reason="only one class in the group")),
    ]  # fmt: skip
    race_groups = [
        group("White", 500, 140, False, est(0.801, 0.770, 0.830), est(0.110, 0.090, 0.131),
              est(0.895, 0.875, 0.913)),
        group(PIPE, 312, 90, False, est(0.760, 0.710, 0.806), est(0.130, 0.098, 0.160),
              est(0.880, 0.851, 0.905)),
    ]  # fmt: skip
    return {
        "schema_version": "1",
        "fairaudit_version": "0.1.0",
        "created": "2024-05-01T12:00:00Z",
        "command": "fairaudit audit --predictions preds.csv --attribute sex --attribute race",
        "task": "classification",
        "config": {
            "bootstrap": 2000,
            "ci_level": 0.95,
            "ci_method": "percentile",
            "seed": 0,
            "threshold": 0.5,
            "min_group_size": 30,
            "correction": "holm",
            "permutations": 1000,
            "threshold_policy": "fixed",
            "id_column": "patient_id",
        },
        "inputs": {
            "n_records": 830,
            "n_included": 812,
            "excluded": [
                {"reason": "no matching demographics row", "count": 11},
                {"reason": "missing score", "count": 7},
            ],
        },
        "model": {"name": "bundled:cxr-densenet", "sha256": "ab" * 32},
        "overall": {
            "n": 812,
            "metrics": {
                "tpr": est(0.780, 0.752, 0.806),
                "fpr": est(0.121, 0.104, 0.139),
                "auroc": est(0.888, 0.873, 0.902),
            },
        },
        "attributes": [
            {
                "name": "sex",
                "reference": "F",
                "small_groups": [XSS],
                "groups": sex_groups,
                "comparisons": [
                    comparison(
                        "tpr",
                        "M",
                        "F",
                        est(-0.067, -0.118, -0.016),
                        est(0.917, 0.858, 0.980),
                        "fisher_exact",
                        0.0004,
                        0.0024,
                        True,
                    ),
                    comparison(
                        "fpr",
                        "M",
                        "F",
                        est(0.042, 0.005, 0.079),
                        est(1.416, 1.050, 1.850),
                        "fisher_exact",
                        0.031,
                        0.124,
                        False,
                    ),
                    comparison(
                        "auroc",
                        "M",
                        "F",
                        est(-0.031, -0.064, 0.002),
                        est(0.966, 0.930, 1.002),
                        "delong",
                        0.068,
                        0.204,
                        False,
                    ),
                    comparison(
                        "tpr",
                        XSS,
                        "F",
                        est(None, reason="no positive cases (TP+FN = 0)"),
                        est(None, reason="no positive cases (TP+FN = 0)"),
                        "fisher_exact",
                        None,
                        None,
                        False,
                        reason="no positive cases (TP+FN = 0)",
                        note="small group",
                    ),
                ],  # fmt: skip
                "omnibus": [
                    {
                        "metric": "tpr",
                        "test": "chi2",
                        "p_value": 0.0011,
                        "statistic": 10.9,
                        "df": 1,
                    },
                    {
                        "metric": "auroc",
                        "test": "kruskal",
                        "p_value": None,
                        "reason": "one group has a single class",
                    },
                ],  # fmt: skip
                "summary": {
                    "tpr": {
                        "max_difference": est(0.067, 0.016, 0.118),
                        "min_ratio": est(0.917, 0.858, 0.980),
                        "worst_group": "M",
                    },
                    "fpr": {
                        "max_difference": est(0.066, 0.010, 0.300),
                        "min_ratio": est(0.706, 0.540, 0.952),
                        "worst_group": XSS,
                    },
                },  # fmt: skip
            },
            {
                "name": "race",
                "reference": "White",
                "small_groups": [],
                "groups": race_groups,
                "comparisons": [
                    comparison(
                        "tpr",
                        PIPE,
                        "White",
                        est(-0.041, -0.099, 0.017),
                        est(0.949, 0.879, 1.022),
                        "fisher_exact",
                        0.21,
                        0.42,
                        False,
                    ),
                    comparison(
                        "auroc",
                        PIPE,
                        "White",
                        est(-0.015, -0.050, 0.020),
                        est(0.983, 0.944, 1.023),
                        "delong",
                        0.41,
                        0.41,
                        False,
                    ),
                ],  # fmt: skip
                "omnibus": [{"metric": "tpr", "test": "chi2", "p_value": 0.21}],
                "summary": {
                    "tpr": {
                        "max_difference": est(0.041, 0.0, 0.099),
                        "min_ratio": est(0.949, 0.879, 1.022),
                        "worst_group": PIPE,
                    },
                },  # fmt: skip
            },
        ],
        "gate": {
            "passed": False,
            "decide": "no_evidence_of_harm",
            "policy": {"metrics": ["tpr", "auroc"], "max_abs_difference": 0.05},
            "checks": [
                {
                    "rule": "max_abs_difference",
                    "metric": "tpr",
                    "attribute": "sex",
                    "group": "M",
                    "bound": 0.05,
                    "observed": est(0.067, 0.051, 0.118),
                    "status": "fail",
                    "decides": True,
                },
                {
                    "rule": "max_abs_difference",
                    "metric": "auroc",
                    "attribute": "race",
                    "group": PIPE,
                    "bound": 0.05,
                    "observed": est(0.015, 0.0, 0.040),
                    "status": "pass",
                    "decides": True,
                },
                {
                    "rule": "min_ratio",
                    "metric": "tpr",
                    "attribute": "race",
                    "group": PIPE,
                    "bound": 0.8,
                    "observed": est(0.949, 0.790, 0.990),
                    "status": "inconclusive",
                    "decides": True,
                },
                {
                    "rule": "max_abs_difference",
                    "metric": "tpr",
                    "attribute": "sex",
                    "group": XSS,
                    "bound": 0.05,
                    "observed": est(None, reason="no positive cases (TP+FN = 0)"),
                    "status": "inconclusive",
                    "decides": False,
                    "note": "small group (n < 30): does not decide the gate",
                },
            ],  # fmt: skip
        },
    }


@pytest.fixture()
def results() -> dict[str, Any]:
    data = make_results()
    # Exactly what a reader of results.json gets back.
    return json.loads(json.dumps(data, allow_nan=False))


# ----------------------------------------------------------------------------- schema


def test_schema_is_draft_2020_12_and_valid(results):
    schema = load_schema()
    assert schema["$schema"].endswith("/2020-12/schema")
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(schema)
    validate_results(results)


def test_no_gate_and_no_model_validate(results):
    results["gate"] = None
    results["model"] = None
    validate_results(results)


def test_nan_fails_validation(results):
    results["attributes"][0]["groups"][0]["metrics"]["tpr"]["value"] = float("nan")
    with pytest.raises(ValueError, match=r"\$\.attributes\[0\]\.groups\[0\]\.metrics\.tpr\.value"):
        validate_results(results)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (("config", "bootstrap"), r"bootstrap"),
        (("attributes", 0, "groups", 1, "n"), r"\$\.attributes\[0\]\.groups\[1\]"),
        (("attributes", 1, "comparisons", 0, "p_adjusted"), r"\$\.attributes\[1\]\.comparisons"),
        (("gate", "checks", 0, "status"), r"\$\.gate"),
        (("schema_version",), r"schema_version"),
    ],
)
def test_missing_required_key_fails_validation(results, path, expected):
    node = results
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]
    with pytest.raises(ValueError, match=expected):
        validate_results(results)


def test_null_value_without_reason_fails_validation(results):
    del results["attributes"][0]["groups"][2]["metrics"]["tpr"]["reason"]
    with pytest.raises(ValueError, match=r"reason"):
        validate_results(results)


def test_builtin_validator_agrees_without_jsonschema(results):
    from fairaudit.schema import _MiniValidator

    validator = _MiniValidator(load_schema())
    assert validator.first_error(results) is None
    broken = copy.deepcopy(results)
    del broken["attributes"][0]["groups"][1]["n"]
    path, message = validator.first_error(broken)
    assert path == "$.attributes[0].groups[1]" and "'n'" in message
    broken = copy.deepcopy(results)
    broken["gate"]["checks"][0]["status"] = "maybe"
    assert validator.first_error(broken)[0] == "$.gate.checks[0].status"


# ----------------------------------------------------------------------------- HTML


def test_html_escapes_user_strings(results):
    html = render_html(results)
    assert XSS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html.lower()
    assert "A|B" in html


def test_html_is_self_contained(results):
    html = render_html(results)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "http://" not in html and "https://" not in html
    assert '<link rel="stylesheet"' not in html
    assert "<style>" in html and "@media print" in html


def test_html_sections_and_numbers(results):
    html = render_html(results)
    for heading in ("Verdict", "Data and provenance", "Methods", "Limitations", "Gate"):
        assert f">{heading}</h2>" in html
    assert html.index(">Verdict</h2>") < html.index(">Data and provenance</h2>") < html.index(">Methods</h2>")
    for word in ("Fisher exact", "DeLong", "Mann-Whitney U", "permutation", "Kruskal-Wallis"):
        assert word in html
    assert "Gate failed" in html
    assert "0.812 [0.790, 0.833]" in html
    assert "too little data" in html
    assert "no positive cases (TP+FN = 0)" in html
    assert html.count("<svg") == 3 * 2  # tpr, fpr, auroc for each attribute
    # The forest plots escape their labels too.
    svgs = re.findall(r"<svg.*?</svg>", html, re.S)
    assert any("&lt;script&gt;" in s for s in svgs)


# ----------------------------------------------------------------------------- Markdown


def _cells(line: str) -> list[str]:
    """Split a GFM table row on unescaped pipes."""
    inner = line.strip()
    assert inner.startswith("|") and inner.endswith("|"), line
    return re.split(r"(?<!\\)\|", inner[1:-1])


def _tables(md: str) -> list[list[str]]:
    tables: list[list[str]] = []
    current: list[str] = []
    for line in md.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    return tables


def test_markdown_tables_are_rectangular(results):
    md = render_markdown(results)
    tables = _tables(md)
    assert len(tables) >= 7  # overall, 2x groups, 2x comparisons, 2x omnibus, gate
    for table in tables:
        width = len(_cells(table[0]))
        assert re.fullmatch(r"\|(\s*-+:?\s*\|)+", table[1]), table[1]
        for row in table:
            assert len(_cells(row)) == width, row


def test_markdown_content(results):
    md = render_markdown(results)
    lines = md.splitlines()
    assert lines[0].startswith("# ")
    verdict = next(line for line in lines[1:] if line.strip())
    assert "Gate failed" in verdict
    assert "A\\|B" in md
    assert XSS not in md
    for attribute in results["attributes"]:
        for g in attribute["groups"]:
            assert md_escape(g["group"]) in md
            for estimate in g["metrics"].values():
                if estimate["value"] is not None:
                    lo, hi = estimate["ci"]
                    assert f"{estimate['value']:.3f} [{lo:.3f}, {hi:.3f}]" in md
    assert "(ref)" in md and "(small)" in md
    assert "— (1)" in md and "no positive cases (TP+FN = 0)" in md
    assert "<0.001" in md and "0.00240" in md
    assert "Largest disparities" in md
    assert "bootstrap B = 2000" in md and "holm" in md.lower()
    assert "bundled:cxr-densenet" in md


def test_markdown_length_limit_drops_nonsignificant_first(results):
    sex = results["attributes"][0]
    filler = sex["comparisons"][1]
    sex["comparisons"].extend(copy.deepcopy(filler) for _ in range(1000))
    full = render_markdown(results, max_chars=10**9)
    assert len(full) > MAX_MARKDOWN_CHARS
    md = render_markdown(results)
    assert len(md) <= MAX_MARKDOWN_CHARS
    assert "report.html" in md
    # The significant comparison survives; the filler does not.
    assert "| tpr | M | F |" in md
    assert md.count("| fpr | M | F |") == 0
    for table in _tables(md):
        width = len(_cells(table[0]))
        assert all(len(_cells(row)) == width for row in table)


def test_markdown_hard_trim(results):
    md = render_markdown(results, max_chars=1500)
    assert len(md) <= 1500
    assert "report.html" in md


# ----------------------------------------------------------------------------- terminal


def test_terminal_summary(results):
    console = Console(record=True, width=120)
    print_summary(results, console)
    text = console.export_text()
    assert "gate failed" in text
    assert XSS in text  # shown literally, not swallowed as markup
    assert "A|B" in text
    assert "0.812 [0.790, 0.833]" in text
    assert "(ref)" in text and "(small)" in text


def test_terminal_summary_no_gate_and_markup_names(results):
    results["gate"] = None
    results["attributes"][1]["groups"][1]["group"] = "[bold red]x[/]"
    console = Console(record=True, width=120)
    print_summary(results, console)
    text = console.export_text()
    assert "no gate" in text
    assert "[bold red]x[/]" in text


# ----------------------------------------------------------------------------- writers


def test_write_reports(tmp_path: Path, results):
    written = write_reports(results, tmp_path / "out", {"json", "md", "html", "junit"})
    assert set(written) == {"json", "md", "html", "junit"}
    assert written["json"].name == "results.json"
    import xml.etree.ElementTree as ET

    suite = ET.parse(written["junit"]).getroot().find("testsuite")
    assert len(suite.findall("testcase")) == len(results["gate"]["checks"])
    assert json.loads(written["json"].read_text(encoding="utf-8")) == results
    assert XSS in written["json"].read_text(encoding="utf-8")
    assert written["md"].read_text(encoding="utf-8") == render_markdown(results)
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_write_reports_rejects_nan_and_unknown_format(tmp_path: Path, results):
    results["overall"]["metrics"]["tpr"]["value"] = float("nan")
    with pytest.raises(ValueError):
        write_reports(results, tmp_path, {"json"})
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="pdf"):
        write_reports(results, tmp_path, {"pdf"})


def test_validate_without_jsonschema(monkeypatch, results):
    monkeypatch.setitem(sys.modules, "jsonschema", None)  # import now raises ImportError
    validate_results(results)
    del results["inputs"]["n_included"]
    with pytest.raises(ValueError, match=r"\$\.inputs: 'n_included' is a required property"):
        validate_results(results)


def make_segmentation_results() -> dict[str, Any]:
    """Segmentation: no n_positive, distances outside [0, 1], no model, no gate."""
    results = make_results()
    results["task"] = "segmentation"
    results["config"]["threshold"] = None
    results["model"] = None
    results["gate"] = None
    results["overall"]["metrics"] = {"dice": est(0.81, 0.79, 0.83), "hd95": est(4.2, 3.1, 5.6)}
    for attribute in results["attributes"]:
        attribute["comparisons"] = [
            comparison("hd95", g["group"], attribute["reference"], est(1.5, 0.2, 2.9),
                       est(1.4, 1.05, 1.8), "mann_whitney_u", 0.02, 0.04, True)
            for g in attribute["groups"] if g["group"] != attribute["reference"]
        ]  # fmt: skip
        attribute["omnibus"] = [
            {"metric": "dice", "test": "kruskal", "p_value": 0.3, "statistic": 2.4, "df": 2.0}
        ]
        attribute["summary"] = {
            "hd95": {"max_difference": est(1.5, 0.2, 2.9), "min_ratio": est(0.7, 0.5, 0.95),
                     "worst_group": attribute["groups"][1]["group"]},
        }  # fmt: skip
        for i, g in enumerate(attribute["groups"]):
            g["n_positive"] = None
            g.pop("n_negative")
            g["metrics"] = {
                "dice": est(0.8 - 0.02 * i, 0.75 - 0.02 * i, 0.85 - 0.02 * i),
                "hd95": est(3.0 + i, 2.0 + i, 4.5 + i)
                if i < 2
                else est(None, reason="empty predicted mask in every case"),
            }
    return json.loads(json.dumps(results, allow_nan=False))


def test_segmentation_results_render():
    results = make_segmentation_results()
    validate_results(results)
    html = render_html(results)
    assert html.count("<svg") == 2 * 2  # dice and hd95 per attribute
    assert "Mann-Whitney U" in html and "No gate" in html
    md = render_markdown(results)
    assert "**No gate**" in md and "Model:" not in md
    assert "4.000 [3.000, 5.500]" in md
    assert "| dice | Kruskal-Wallis | 2.400 | 2 | 0.300 |" in md
    for table in _tables(md):
        width = len(_cells(table[0]))
        assert all(len(_cells(row)) == width for row in table)
    console = Console(record=True, width=120)
    print_summary(results, console)
    text = console.export_text()
    assert "no gate" in text and "dice" in text and "hd95" in text


def test_forest_svg_maps_values_and_escapes():
    from fairaudit.report.plots import ForestRow, forest_svg

    rows = [
        ForestRow("ref", est(2.0, 1.0, 3.0), n=40, is_ref=True),
        ForestRow('"><b>x</b> $a$', est(10.0, 8.0, 12.0), n=12, small=True),
        ForestRow("none", est(None, reason="empty mask"), n=35),
        ForestRow("worse", est(6.0, 5.0, 7.0), n=50, significant=True),
    ]
    svg = str(forest_svg("site", "hd95", rows, "95%"))
    assert svg.startswith('<svg class="forest"')
    assert 'aria-label="Forest plot of hd95 by group of site"' in svg
    assert "<b>" not in svg and "&lt;b&gt;x&lt;/b&gt; $a$ (n=12, small)</text>" in svg  # text, no mathtext
    assert ">ref (n=40, ref)</text>" in svg and "<script" not in svg and "http" not in svg

    def dot_x(i: int) -> float:
        body = re.search(rf'-point-{i}">(.*?)</g>\s*</g>', svg, re.S).group(1)
        return float(re.search(r'<use [^>]*x="([-\d.]+)"', body).group(1))

    assert dot_x(0) < dot_x(3) < dot_x(1)  # 2 < 6 < 10 on one axis
    assert "-point-2" not in svg and ">n/a: empty mask</text>" in svg and ">n/a</text>" in svg
    # Open dot for the small group: white fill; the reference line at the reference's dot.
    small = re.search(r'-point-1">(.*?)</g>\s*</g>', svg, re.S).group(1)
    assert "fill: #ffffff" in small
    line_x = float(re.search(r'-reference-line">\s*<path d="M ([-\d.]+) ', svg).group(1))
    assert line_x == pytest.approx(dot_x(0), abs=0.01)
    assert ">6.000 [5.000, 7.000] *</text>" in svg and ">10.000 [8.000, 12.000]</text>" in svg
    assert forest_svg("site", "hd95", rows, "95%") == forest_svg("site", "hd95", list(rows), "95%")
