"""report.html, report.md and `fairaudit report` on a real audit of the sample cohort.

Checks are against independent facts: the manifest's sha256 from hashlib on the written
file, the curves against the data, byte-identical re-rendering, escaping of hostile names
in matplotlib's SVG, the Markdown length bound with hundreds of groups.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from fairaudit.report import render_html, render_markdown
from fairaudit.report.markdown import MAX_MARKDOWN_CHARS
from fairaudit.schema import validate_results
from fairaudit.workflows.predictions import AuditRequest, audit_predictions

from _helpers import cli
from _helpers.paths import ROOT, SAMPLE
from _helpers.results import make_results, make_segmentation_results, md_cells, md_tables


@pytest.fixture(scope="module")
def audit(tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("audit") / "out"
    audit_predictions(
        AuditRequest(
            predictions=SAMPLE / "predictions.csv",
            demographics=SAMPLE / "demographics.csv",
            attributes=["sex", "race"],
            intersections=[["sex", "race"]],
            bootstrap=200,
            permutations=200,
            gate=ROOT / "fairaudit" / "policies" / "example.toml",
            formats=("json", "html", "md", "junit"),
            out=out,
            command="fairaudit audit --predictions sample_data/predictions.csv",
            progress=False,
        )
    )
    return out, json.loads((out / "results.json").read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------- results.json additions


def test_results_have_curves_power_and_provenance(audit):
    out, results = audit
    validate_results(results)
    prov = results["provenance"]
    assert prov["manifest_sha256"] == hashlib.sha256((out / "manifest.csv").read_bytes()).hexdigest()
    pred = hashlib.sha256((SAMPLE / "predictions.csv").read_bytes()).hexdigest()
    assert prov["input_files"]["predictions"] == {"name": "predictions.csv", "sha256": pred}
    for lib in ("numpy", "scipy", "statsmodels", "pandas"):
        assert prov["libraries"][lib]
    for attribute in results["attributes"]:
        for group in attribute["groups"]:
            conf = group["confusion"]
            assert conf["tp"] + conf["fn"] == group["n_positive"]
            assert sum(conf.values()) == group["n"]
            assert sum(group["curves"]["calibration"]["count"]) == group["n"]
            roc = group["curves"]["roc"]
            assert len(roc["fpr"]) <= 101 and roc["tpr"][-1] == 1.0
            # The ROC area from the stored points is the group's AUROC (few ties here).
            area = sum(
                (f1 - f0) * (t1 + t0) / 2
                for f0, f1, t0, t1 in zip(
                    roc["fpr"], roc["fpr"][1:], roc["tpr"], roc["tpr"][1:], strict=False
                )
            )
            assert area == pytest.approx(group["metrics"]["auroc"]["value"], abs=0.01)
        for comp in attribute["comparisons"]:
            mdd = comp["min_detectable_difference"]
            assert mdd["power"] == 0.8
            assert mdd["value"] is None or mdd["value"] > 0


def test_no_patient_identifiers_in_reports(audit):
    out, _ = audit
    ids = [line.split(",")[1] for line in (SAMPLE / "demographics.csv").read_text().splitlines()[1:]]
    for name in ("results.json", "report.html", "report.md", "junit.xml"):
        text = (out / name).read_text(encoding="utf-8")
        assert not any(pid in text for pid in ids[:50]), name


# ----------------------------------------------------------------------------- HTML


def test_html_has_every_section_and_plot(audit):
    out, results = audit
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.count('<svg class="plot"') == 2 * 3  # ROC and calibration per attribute
    assert html.count('<svg class="forest"') == 6 * 3
    for text in (
        results["provenance"]["manifest_sha256"],
        "statsmodels " + results["provenance"]["libraries"]["statsmodels"],
        "fairaudit audit --predictions sample_data/predictions.csv",
        "Confusion counts",
        "detectable difference",
        "80% power",
        "Proxies",
        "Holm",
        "2000" if results["config"]["bootstrap"] == 2000 else "200 bootstrap resamples",
    ):
        assert text in html, text
    assert not re.search(r"https?://", html)
    assert "xmlns" not in html and "<script" not in html.lower()
    ids = re.findall(r'\sid="([^"]+)"', html)
    assert len(ids) == len(set(ids)), "duplicate element ids on the page"


def test_html_is_deterministic(audit):
    out, results = audit
    assert render_html(results) == render_html(copy.deepcopy(results))
    assert render_html(results) == (out / "report.html").read_text(encoding="utf-8")


def test_hostile_names_in_matplotlib_plots(audit):
    _, results = audit
    results = copy.deepcopy(results)
    groups = results["attributes"][0]["groups"]
    groups[0]["group"] = "<script>alert(1)</script>"
    groups[1]["group"] = "_hidden $x^2$ & co"
    html = render_html(results)
    plot = re.search(r'<svg class="plot".*?</svg>', html, re.S).group(0)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in plot and "<script" not in plot
    # A leading underscore would hide a legend entry; $...$ would be read as mathtext.
    assert "_hidden $x^2$ &amp; co" in plot
    forest = re.search(r'<svg class="forest".*?</svg>', html, re.S).group(0)
    assert ">&lt;script&gt;alert(1)&lt;/script&gt; (n=" in forest and "<script" not in forest
    assert ">_hidden $x^2$ &amp; co (n=" in forest


def test_many_groups_render_fast_and_capped(audit):
    _, results = audit
    results = copy.deepcopy(results)
    attribute = results["attributes"][2]
    template = attribute["groups"][1]
    for i in range(60):
        extra = copy.deepcopy(template)
        extra["group"] = f"g{i:02d}"
        attribute["groups"].append(extra)
    start = time.perf_counter()
    html = render_html(results)
    elapsed = time.perf_counter() - start
    assert elapsed < 20, elapsed  # a few seconds on one core; generous for shared CI machines
    assert "more groups are not drawn" in html
    forest = re.findall(r'<svg class="forest".*?</svg>', html, re.S)
    points = [len(re.findall(r'<g id="[^"]*-point-\d+">', svg)) for svg in forest]
    assert max(points) == 20  # 62 groups in the intersection, 20 drawn (the reference and the worst)
    assert re.search(
        r"the reference and the 11 served worst on \w+ first .*; the other \d+ are folded below", html
    )


def test_segmentation_distributions_render():
    results = make_segmentation_results()
    for attribute in results["attributes"]:
        for i, group in enumerate(attribute["groups"]):
            counts = [0] * 20
            counts[15 - i] = 5
            counts[17] = 10
            group["distributions"] = {
                "dice": {
                    "n": 15,
                    "edges": [k / 20 for k in range(21)],
                    "counts": counts,
                    "quantiles": {"0.5": 0.85},
                }
            }
    validate_results(results)
    html = render_html(results)
    assert html.count('<svg class="plot"') == 2
    assert "dice distributions by group of sex" in html
    assert "Per-case distributions" in html


def test_old_results_without_additions_render():
    results = make_results()  # no curves, provenance or power: an archived version-1 file
    html = render_html(results)
    assert '<svg class="plot"' not in html and "Data and provenance" in html
    assert "Confusion counts" not in html


# ----------------------------------------------------------------------------- Markdown


def _many_groups(n: int) -> dict[str, Any]:
    results = make_results()
    attribute = results["attributes"][0]
    attribute["name"] = "sex×race×age"
    base_group = attribute["groups"][1]
    base_comps = [c for c in attribute["comparisons"] if c["group"] == "M"]
    for i in range(n):
        group = copy.deepcopy(base_group)
        group["group"] = f"group {i:03d} | <b>x</b>"
        attribute["groups"].append(group)
        for comp in base_comps:
            comp = copy.deepcopy(comp)
            comp["group"] = group["group"]
            comp["significant"] = i % 3 == 0
            attribute["comparisons"].append(comp)
            results["gate"]["checks"].append(
                {**results["gate"]["checks"][0], "group": group["group"], "status": "inconclusive"}
            )
    return results


@pytest.mark.parametrize("n_groups", [300, 1000])
def test_markdown_stays_under_the_comment_limit(n_groups):
    results = _many_groups(n_groups)
    md = render_markdown(results)
    assert len(md) <= MAX_MARKDOWN_CHARS
    assert md.startswith("# fairaudit report") and "Gate failed" in md.split("\n\n")[1]
    assert "report.html" in md
    assert "<b>" not in md
    assert "more groups are left out" in md
    for table in md_tables(md):
        width = len(md_cells(table[0]))
        assert all(len(md_cells(row)) == width for row in table)
    # The failing check is kept ahead of the inconclusive ones.
    assert "**fail**" in md


def test_markdown_details_blocks_are_balanced(audit):
    out, _ = audit
    md = (out / "report.md").read_text(encoding="utf-8")
    assert md.count("<details>") == md.count("</details>") > 0
    assert "detectable (80% power)" in md


# ----------------------------------------------------------------------------- fairaudit report


def test_report_command_rerenders_identically(audit, tmp_path):
    out, _ = audit
    result = cli.invoke(
        ["report", str(out / "results.json"), "--format", "html,md,junit", "--out", str(tmp_path), "-q"],
        columns=None,
    )
    assert result.exit_code == 1  # the recorded gate did not pass (planted disparity for race C)
    for name in ("report.html", "report.md", "junit.xml"):
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes(), name


def test_report_command_default_out_and_json(audit, tmp_path):
    out, results = audit
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "results.json").write_text(
        (out / "results.json").read_text(encoding="utf-8"), encoding="utf-8"
    )
    result = cli.invoke(
        ["report", str(archive / "results.json"), "--format", "md,json", "--json"], columns=None
    )
    assert result.exit_code == 1
    assert json.loads(result.stdout) == results
    assert sorted(p.name for p in archive.iterdir()) == ["report.md", "results.json"]


def test_report_command_bad_inputs(tmp_path):
    assert cli.invoke(["report", str(tmp_path / "missing.json")], columns=None).exit_code == 2
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    result = cli.invoke(["report", str(bad)], columns=None)
    # rich wraps the message at the terminal width, wherever the temporary path's length puts it
    assert result.exit_code == 2 and "not valid JSON" in cli.flat(result.output)
    future = tmp_path / "future.json"
    future.write_text(json.dumps({**make_results(), "schema_version": "3"}), encoding="utf-8")
    result = cli.invoke(["report", str(future)], columns=None)
    assert result.exit_code == 2 and "schema_version" in result.output
    broken = make_results()
    del broken["attributes"][0]["groups"][0]["n"]
    (tmp_path / "broken.json").write_text(json.dumps(broken), encoding="utf-8")
    assert cli.invoke(["report", str(tmp_path / "broken.json")], columns=None).exit_code == 2
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps({**make_results(), "gate": None}), encoding="utf-8")
    result = cli.invoke(["report", str(ok), "--format", "pdf"], columns=None)
    assert result.exit_code == 2
    result = cli.invoke(["report", str(ok), "--format", "html"], columns=None)
    assert result.exit_code == 0 and (tmp_path / "report.html").exists()


# ----------------------------------------------------------------------------- terminal


def test_terminal_summary_verdict_power_and_many_groups(audit):
    from rich.console import Console

    from fairaudit.report import print_summary

    _, results = audit
    results = copy.deepcopy(results)
    attribute = results["attributes"][2]
    for i in range(40):
        extra = copy.deepcopy(attribute["groups"][1])
        extra["group"] = f"g{i:02d}"
        attribute["groups"].append(extra)
    console = Console(record=True, width=80)
    print_summary(results, console, verbose=True)  # the tables (-v)
    text = console.export_text()
    # The verdict says the recorded outcome (pass, fail or inconclusive) with its counts.
    label = {"pass": "passed", "fail": "failed", "inconclusive": "inconclusive"}[results["gate"]["outcome"]]
    assert text.lstrip().startswith(f"Verdict: gate {label}: {len(results['gate']['checks'])} checks, ")
    assert "smaller groups not shown" in text
    assert "could detect with 80% power" in text
    assert "Per attribute" in text and "race: tpr" in text
    assert max(len(line) for line in text.splitlines()) <= 80


# ----------------------------------------------------------------------------- forest plots


def _forest_map(svg: str) -> tuple[Any, dict[int, float], dict[int, tuple[float, float]]]:
    """From a forest plot's SVG: pixel-to-value map (from two tick labels), dots and whiskers by row."""
    ticks = re.findall(r'text-anchor: middle[^>]*x="([-\d.]+)"[^>]*>([^<]+)</text>', svg)
    (x0, v0), (x1, v1) = [(float(x), float(v.replace("\u2212", "-"))) for x, v in (ticks[0], ticks[-1])]

    def value(x: float) -> float:
        return v0 + (x - x0) * (v1 - v0) / (x1 - x0)

    def uses(gid: str) -> dict[int, list[float]]:
        found = re.findall(rf'<g id="[^"]*-{gid}-(\d+)">(.*?)</g>\s*</g>', svg, re.S)
        return {
            int(i): [value(float(x)) for x in re.findall(r'<use [^>]*x="([-\d.]+)"', body)]
            for i, body in found
        }

    dots = {i: xs[0] for i, xs in uses("point").items()}
    whiskers = {i: (min(xs), max(xs)) for i, xs in uses("ci").items()}
    return value, dots, whiskers


def test_forest_plots_show_the_results_numbers(audit):
    """Every dot and whisker sits where results.json puts it, read back through the axis ticks."""
    _, results = audit
    html = render_html(results)
    svgs = re.findall(r'<svg class="forest".*?</svg>', html, re.S)
    forest = [
        re.search(r'aria-label="Forest plot of (\w+) by group of ([^"]+)"', svg).groups() for svg in svgs
    ]
    assert len(forest) == 6 * 3
    by_name = {a["name"]: a for a in results["attributes"]}
    checked = 0
    for (metric, attribute_name), svg in zip(forest, svgs, strict=True):
        attribute = by_name[attribute_name]
        value, dots, whiskers = _forest_map(svg)
        groups = attribute["groups"]
        assert sorted(dots) == list(range(len(groups)))
        lo, hi = value(0.0), value(1.0)  # the value of one SVG unit, for the rounding tolerance
        tol = 1.5 * abs(hi - lo)
        # Rows are sorted by estimate, highest first (ties in table order).
        ranked = sorted(groups, key=lambda g: -g["metrics"][metric]["value"])
        for i, group in enumerate(ranked):
            estimate = group["metrics"][metric]
            assert dots[i] == pytest.approx(estimate["value"], abs=tol), (metric, group["group"])
            assert whiskers[i][0] == pytest.approx(estimate["ci"][0], abs=tol)
            assert whiskers[i][1] == pytest.approx(estimate["ci"][1], abs=tol)
            # The printed numbers, as a reviewer reads them next to the dot.
            low, high = estimate["ci"]
            assert f"{estimate['value']:.3f} [{low:.3f}, {high:.3f}]" in svg
            label = f"{group['group']} (n={group['n']}"
            assert label in svg.replace("&#215;", "×"), label
            checked += 1
        reference = next(g for g in groups if g["group"] == attribute["reference"])
        line = re.search(r'<g id="[^"]*-reference-line">\s*<path d="M ([-\d.]+) ', svg)
        ref_value = reference["metrics"][metric]["value"]
        assert value(float(line.group(1))) == pytest.approx(ref_value, abs=tol)
        # A significant difference from the reference is starred; nothing else is.
        starred = {c["group"] for c in attribute["comparisons"] if c["metric"] == metric and c["significant"]}
        assert svg.count(" *</text>") == len(starred)
    assert checked == sum(6 * len(a["groups"]) for a in results["attributes"])
