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

from _helpers.results import XSS, est, make_results, make_segmentation_results, md_cells, md_tables


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


def test_markdown_tables_are_rectangular(results):
    md = render_markdown(results)
    tables = md_tables(md)
    assert len(tables) >= 7  # overall, 2x groups, 2x comparisons, 2x omnibus, gate
    for table in tables:
        width = len(md_cells(table[0]))
        assert re.fullmatch(r"\|(\s*-+:?\s*\|)+", table[1]), table[1]
        for row in table:
            assert len(md_cells(row)) == width, row


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
    for table in md_tables(md):
        width = len(md_cells(table[0]))
        assert all(len(md_cells(row)) == width for row in table)


def test_markdown_hard_trim(results):
    md = render_markdown(results, max_chars=1500)
    assert len(md) <= 1500
    assert "report.html" in md


# ----------------------------------------------------------------------------- terminal


def test_terminal_summary(results):
    console = Console(record=True, width=120)
    print_summary(results, console, verbose=True)  # the tables (-v)
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
    print_summary(results, console, verbose=True)  # the tables (-v)
    text = console.export_text()
    assert "no gate" in text
    assert "[bold red]x[/]" in text


# ----------------------------------------------------------------------------- writers


def test_write_reports(tmp_path: Path, results):
    written = write_reports(results, tmp_path / "out", {"json", "md", "html", "junit"})
    assert set(written) == {"json", "md", "html", "junit", "model_card"}  # the card goes with results.json
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
    for table in md_tables(md):
        width = len(md_cells(table[0]))
        assert all(len(md_cells(row)) == width for row in table)
    console = Console(record=True, width=120)
    print_summary(results, console, verbose=True)  # the tables (-v)
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
