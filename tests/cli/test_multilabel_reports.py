"""Every report of a multi-label audit (`fairaudit audit --findings`): a section per finding, the
summary across findings, findings named in the gate checks, junit.xml and the terminal, and
finding names escaped like every other user string.

One small synthetic cohort (300 records, 3 findings, one named with HTML, Markdown and rich
markup characters) is audited once per module. The expectations are the numbers in the
results.json the run wrote (what the renderers must show) and counts taken from the rows here.
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from fairaudit._util.formatting import fmt_est, fmt_num
from fairaudit.report._templates import md_escape
from fairaudit.report.markdown import render_markdown
from fairaudit.schema import validate_results

from _helpers import cli
from _helpers.results import make_results, md_cells, md_tables
from _helpers.tables import write_csv

N = 300
#: A finding column named to break every medium: an HTML tag, rich markup, a mention, a pipe.
HOSTILE = "<img src=x>[bold]@octocat|"
FINDINGS = ("Edema", "Pleural Effusion", HOSTILE)


@dataclass
class Run:
    """The audit's output folder, its terminal output and exit code, and the rows written."""

    out: Path
    stdout: str
    exit_code: int
    labels: dict[str, list[str]]  # finding -> the label cells as written ("1", "0", "-1", "")
    results: dict[str, Any]


def _cohort(root: Path) -> tuple[Path, Path, Path, dict[str, list[str]]]:
    """Deterministic rows: sex alternates, race cycles A, A, B, C; each finding has positives,
    negatives, uncertain (-1) and blank labels at fixed positions, and scores that track the
    label less well for race C (so some gaps show)."""
    ids = [f"img{i:04d}" for i in range(N)]
    sex = ["FM"[i % 2] for i in range(N)]
    race = ["AABC"[i % 4] for i in range(N)]
    labels: dict[str, list[str]] = {}
    scores: dict[str, list[float]] = {}
    for j, name in enumerate(FINDINGS):
        cells, column = [], []
        for i in range(N):
            k = (i * (7 + 2 * j) + 3 * j) % 20
            cell = "1" if k < 6 else "0"
            if k == 19 - j:
                cell = "-1"
            if (i + j) % 23 == 0:
                cell = ""
            label = 1 if cell == "1" else 0
            noise = ((i * 37 + 11 * j) % 41 - 20) / 50
            spread = 0.8 if race[i] == "C" else 0.35
            column.append(round(min(1.0, max(0.0, 0.35 + 0.3 * label + spread * noise)), 3))
            cells.append(cell)
        labels[name], scores[name] = cells, column
    label_csv = write_csv(
        root / "labels.csv",
        ["Path", *FINDINGS],
        [[ids[i], *(labels[f][i] for f in FINDINGS)] for i in range(N)],
    )
    pred_csv = write_csv(
        root / "predictions.csv",
        ["Path", *(f"score_{f}" for f in FINDINGS)],
        [[ids[i], *(scores[f][i] for f in FINDINGS)] for i in range(N)],
    )
    demo_csv = write_csv(
        root / "demographics.csv", ["Path", "sex", "race"], [[ids[i], sex[i], race[i]] for i in range(N)]
    )
    return label_csv, pred_csv, demo_csv, labels


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    root = tmp_path_factory.mktemp("multilabel")
    label_csv, pred_csv, demo_csv, labels = _cohort(root)
    policy = root / "gate.toml"
    policy.write_text('[gate]\nmetrics = ["tpr", "auroc"]\nmax_abs_difference = 0.05\n', encoding="utf-8")
    out = root / "out"
    res = cli.audit(
        "--predictions", pred_csv, "--labels", label_csv, "--demographics", demo_csv,
        "--id-column", "Path", "--attribute", "sex", "--attribute", "race", "--findings", "all",
        "--gate", policy, "--format", "json,md,html,junit", "-v",  # -v: the tables (issue 23)
        bootstrap=100, out=out,
    )  # fmt: skip
    assert res.exit_code in (0, 1), res.output
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    validate_results(results)
    return Run(out=out, stdout=res.stdout, exit_code=res.exit_code, labels=labels, results=results)


def _md(run: Run) -> str:
    return (run.out / "report.md").read_text(encoding="utf-8")


def _html(run: Run) -> str:
    return (run.out / "report.html").read_text(encoding="utf-8")


def _summary_table(md: str) -> list[list[str]]:
    """The Findings table of report.md (header: finding, n, ...), as cells."""
    (table,) = [t for t in md_tables(md) if [c.strip() for c in md_cells(t[0])[:2]] == ["finding", "n"]]
    return [[c.strip() for c in md_cells(line)] for line in table[2:]]


def _worst_text(worst: dict[str, Any]) -> str:
    return f"{worst['attribute']} = {worst['group']} vs {worst['reference']}"


# --------------------------------------------------------------------------- results.json


def test_results_count_each_findings_rows_as_written(run: Run) -> None:
    """The numbers every report shows come from here: check them against the rows first."""
    by_name = {f["finding"]: f for f in run.results["findings"]}
    assert list(by_name) == list(FINDINGS)
    for name, cells in run.labels.items():
        block = by_name[name]
        assert block["n_uncertain"] == cells.count("-1")
        assert block["n_no_label"] == cells.count("")
        assert block["n"] == cells.count("1") + cells.count("0")  # --uncertain exclude (the default)
        assert block["n_positive"] == cells.count("1")
    assert run.results["config"]["findings"] == {"requested": "all", "uncertain": "exclude", "n": 3}
    assert {c["finding"] for c in run.results["gate"]["checks"]} == set(FINDINGS)


# --------------------------------------------------------------------------- report.md


def test_markdown_summary_lists_each_finding_with_its_worst_group(run: Run) -> None:
    summary = run.results["findings_summary"]
    rows = _summary_table(_md(run))
    assert len(rows) == len(FINDINGS) + 1  # and the macro average
    for row, entry in zip(rows, summary["findings"], strict=False):
        block = next(f for f in run.results["findings"] if f["finding"] == entry["finding"])
        assert row[0] == md_escape(entry["finding"])
        assert row[1:4] == [str(block["n"]), str(block["n_positive"]), str(block["n_uncertain"])]
        assert row[4] == fmt_est(entry["value"])
        if entry["worst"] is None:
            assert row[5] == "—"
        else:
            assert row[5].removesuffix(" (small)") == md_escape(_worst_text(entry["worst"]))
            assert row[6] == fmt_est(entry["worst"]["difference"])
            assert row[8].strip("*") == ("yes" if entry["worst"]["significant"] else "no")
    macro = summary["macro"][summary["metric"]]["value"]
    assert "macro average" in rows[-1][0]
    assert rows[-1][4] == fmt_num(macro)
    values = [f["value"]["value"] for f in summary["findings"] if f["value"]["value"] is not None]
    assert math.isclose(macro, sum(values) / len(values))  # what "macro" means, by hand


def test_markdown_has_a_section_per_finding_with_its_attributes(run: Run) -> None:
    md = _md(run)
    headings = re.findall(r"^## Finding: (.*)$", md, re.M)
    assert headings == [md_escape(f) for f in FINDINGS]
    sections = re.split(r"^## Finding: .*$", md, flags=re.M)[1:]
    for section, block in zip(sections, run.results["findings"], strict=True):
        assert f"{block['n']} records audited, {block['n_positive']} positive" in section
        assert f"{block['n_uncertain']} uncertain labels" in section
        assert re.findall(r"^### (.*)$", section, re.M) == [a["name"] for a in block["attributes"]]
        assert f"**Overall** (n = {block['overall']['n']})" in section
    assert md.index("**Findings**") < md.index("## Inputs") < md.index("## Finding: ") < md.index("## Gate")


def test_markdown_methods_line_and_gate_table_name_the_findings(run: Run) -> None:
    md = _md(run)
    assert "a multi-label audit of 3 findings" in md
    assert "--uncertain exclude" in md
    assert "corrected as one family" in md
    (gate,) = [t for t in md_tables(md) if "rule" in md_cells(t[0])[1]]
    assert md_cells(gate[0])[0].strip() == "finding"
    shown = {md_cells(line)[0].strip() for line in gate[2:]}
    assert shown <= {md_escape(f) for f in FINDINGS} and shown


def test_markdown_keeps_every_finding_when_cut_to_length(run: Run) -> None:
    """Past the row caps, each finding keeps its heading, headline and overall metrics."""
    full = render_markdown(run.results, max_chars=10**7)
    short = render_markdown(run.results, max_chars=len(full) // 3)
    assert len(short) <= len(full) // 3
    assert re.findall(r"^## Finding: (.*)$", short, re.M) == [md_escape(f) for f in FINDINGS]
    assert "attributes are left out here to keep this comment short" in short
    assert "This report was cut short" not in short


# --------------------------------------------------------------------------- report.html


class _Sections(HTMLParser):
    """Text of each <h2>, the ids of <section>s, and the rows of the Findings table."""

    def __init__(self) -> None:
        super().__init__()
        self.h2: list[str] = []
        self.ids: list[str] = []
        self.rows: list[list[str]] = []
        self._h2: list[str] | None = None
        self._in_findings = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "section":
            self.ids.append(dict(attrs).get("id") or "")
            self._in_findings = self.ids[-1] == "findings"
        elif tag == "h2":
            self._h2 = []
        elif tag == "tr" and self._in_findings:
            self.rows.append([])
        elif tag == "td" and self._in_findings:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2" and self._h2 is not None:
            self.h2.append("".join(self._h2))
            self._h2 = None
        elif tag == "td" and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None
        elif tag == "section":
            self._in_findings = False

    def handle_data(self, data: str) -> None:
        if self._h2 is not None:
            self._h2.append(data)
        if self._cell is not None:
            self._cell.append(data)


def test_html_has_a_section_per_finding_and_the_summary(run: Run) -> None:
    page = _Sections()
    page.feed(_html(run))
    assert [h.removeprefix("Finding: ") for h in page.h2 if h.startswith("Finding: ")] == list(FINDINGS)
    assert "findings" in page.ids
    for i, block in enumerate(run.results["findings"], start=1):
        assert f"finding-{i}" in page.ids
        for j in range(1, len(block["attributes"]) + 1):
            assert f"finding-{i}-attribute-{j}" in page.ids
    assert len(page.ids) == len(set(page.ids))  # one id per section, across findings
    rows = [r for r in page.rows if r]
    for row, entry in zip(rows, run.results["findings_summary"]["findings"], strict=False):
        assert row[0] == entry["finding"]
        if entry["worst"] is not None:
            assert row[5].removesuffix("small") == _worst_text(entry["worst"])
    assert rows[len(FINDINGS)][0] == "macro average"


def test_html_plots_of_one_attribute_in_two_findings_get_their_own_ids(run: Run) -> None:
    html = _html(run)
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids))
    assert 'aria-label="Forest plot of tpr by group of sex in finding Edema"' in html


# --------------------------------------------------------------------------- junit.xml


def test_junit_names_the_finding_of_every_check(run: Run) -> None:
    suite = ET.parse(run.out / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    checks = run.results["gate"]["checks"]
    assert len(cases) == len(checks) == int(suite.get("tests", "-1"))
    for case, check in zip(cases, checks, strict=True):
        expected = (
            f"{check['finding']}: {check['attribute']}:{check['group']}:{check['metric']}:{check['rule']}"
        )
        assert case.get("name") == expected
        assert case.get("classname") == f"fairaudit.{check['finding']}.{check['attribute']}"
    failures = [c for c in cases if c.find("failure") is not None]
    assert all(c.find("failure").get("message", "").split(": ")[0] in FINDINGS for c in failures)


# --------------------------------------------------------------------------- terminal


def test_terminal_has_a_line_per_finding(run: Run) -> None:
    out = run.stdout
    summary = run.results["findings_summary"]
    assert "Multi-label audit of 3 findings" in out
    for entry in summary["findings"]:
        (line,) = [ln for ln in out.splitlines() if ln.startswith(entry["finding"])]
        assert fmt_est(entry["value"]) in line
        assert str(entry["n"]) in line
        if entry["worst"] is not None:
            worst = entry["worst"]
            assert f"{worst['attribute']}={worst['group']} vs {worst['reference']}" in line
            assert fmt_est(worst["difference"]) in line
            assert line.rstrip().endswith("yes" if worst["significant"] else "no")
    assert "macro average" in out


def test_terminal_gate_lines_name_the_finding(run: Run) -> None:
    failed = [c for c in run.results["gate"]["checks"] if c["decides"] and c["status"] == "fail"]
    lines = [ln.strip() for ln in run.stdout.splitlines() if ln.strip().startswith("fail: ")]
    assert len(lines) == min(len(failed), 15)
    for line, check in zip(lines, failed, strict=False):
        assert line.startswith(f"fail: {check['finding']}: {check['rule']} {check['metric']}")


def test_terminal_keeps_within_80_columns(run: Run) -> None:
    res = cli.invoke(
        ["report", run.out / "results.json", "--out", run.out.parent / "narrow", "-v"], columns=80
    )
    table = res.stdout.split("Findings (", 1)[1].split("macro average", 1)[0]
    assert max(len(line) for line in table.splitlines()) <= 80


# --------------------------------------------------------------------------- escaping


def test_finding_names_are_escaped_in_every_report(run: Run) -> None:
    md, html = _md(run), _html(run)
    junit = (run.out / "junit.xml").read_text(encoding="utf-8")
    assert "<img" not in html and "&lt;img src=x&gt;[bold]@octocat|" in html
    assert not re.search(r"(?<!\\)<img", md) and "@octocat" not in md  # the mention pings nobody
    assert md_escape(HOSTILE) in md and "\\<img src=x\\>\\[bold\\]@&#8203;octocat\\|" in md
    assert "<img" not in junit and "&lt;img src=x&gt;[bold]@octocat|: " in junit
    assert HOSTILE in run.stdout  # rich markup shown as text, not applied


# --------------------------------------------------------------------------- `fairaudit report`


def test_report_command_renders_the_same_reports(run: Run) -> None:
    again = run.out.parent / "again"
    res = cli.invoke(["report", run.out / "results.json", "--out", again, "-v"])
    assert res.exit_code == run.exit_code, res.output
    for name in ("report.md", "report.html", "junit.xml"):
        assert (again / name).read_text(encoding="utf-8") == (run.out / name).read_text(encoding="utf-8")
    assert [ln for ln in res.stdout.splitlines() if ln.startswith(FINDINGS[0])] == [
        ln for ln in run.stdout.splitlines() if ln.startswith(FINDINGS[0])
    ]


def test_single_label_reports_have_no_finding_sections() -> None:
    md = render_markdown(make_results())
    assert "## Finding" not in md and "**Findings**" not in md and "Multi-label" not in md


# --------------------------------------------------------------------------- printing


def test_printed_report_keeps_each_finding_to_its_forest_plots(run: Run, tmp_path: Path) -> None:
    """Printed on A4 by headless Chromium (issue 23, point 5): each finding's section keeps its
    forest plots and leaves its per-group tables, comparisons and omnibus tests to the screen."""
    import shutil
    import subprocess

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed; `make test` installs it (Makefile target `browser`)")
    html = _html(run)
    assert html.count('class="finding"') == len(FINDINGS)
    css = html.split("</style>", 1)[0]
    assert "section.finding details.detail, section.finding .finding-headline" in css
    pdf = tmp_path / "report.pdf"
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={tmp_path / 'p'}",
         "--no-pdf-header-footer", f"--print-to-pdf={pdf}", (run.out / "report.html").as_uri()],
        capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    pages = len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf.read_bytes()))
    assert 1 <= pages <= 8  # 7 (3 findings, 2 attributes); 13 with every finding's tables printed
