"""The short terminal summary (issue 23, point 7): at most 30 lines at 80 columns in a CI log
(CliRunner's stdout is not a terminal), no line over 80 characters, no interval split across
lines, the key findings, the gate and the report's path; `-v` adds the tables. augment-check
prints a short table where round-off shows as 0.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from fairaudit._util.formatting import fmt_sig
from fairaudit.report.augment_terminal import print_augment_summary
from fairaudit.report.key_findings import key_finding_sentences
from fairaudit.report.terminal_brief import MAX_LINES, wrap

from _helpers import cli
from _helpers.paths import EXAMPLE_POLICY, SAMPLE

INTERVAL = re.compile(r"\[-?\d+\.\d+, -?\d+\.\d+\]")


def test_wrap_keeps_intervals_whole() -> None:
    text = "tpr F − M = 0.061 [-0.089, 0.214], p 0.371 (adj. 1.00); across groups chi-square p 0.366"
    for width in range(30, 90):
        lines = wrap(text, width, "Key:", indent=2)
        assert all(len(line) <= width for line in lines), (width, lines)
        joined = " ".join(line.strip() for line in lines)
        assert "[-0.089, 0.214]" in joined and "(adj. 1.00)" in joined
        assert " ".join(joined.split()) == "Key: " + text
    assert wrap("x" * 50, 20, "", indent=2)[0] == "x" * 20  # a unit longer than a line is cut


@pytest.fixture(scope="module")
def audited(tmp_path_factory) -> tuple[Path, str, str]:
    """The README's demo attributes on the sample predictions, at 80 columns, with and without -v."""
    out = tmp_path_factory.mktemp("brief") / "out"
    args = ["audit", "--predictions", SAMPLE / "predictions.csv", "--demographics", SAMPLE / "demographics.csv",
            "--attribute", "sex", "--attribute", "race", "--intersect", "sex,race", "--gate", EXAMPLE_POLICY,
            "--bootstrap", "200", "--permutations", "200", "--format", "json", "--out", out]  # fmt: skip
    brief = cli.invoke(args, columns=80)
    assert brief.exit_code in (0, 1), brief.output
    verbose = cli.invoke(
        ["report", out / "results.json", "--format", "md", "--out", out / "v", "-v"], columns=80
    )
    assert verbose.exit_code in (0, 1), verbose.output
    return out, brief.output, verbose.output


def test_brief_summary_fits_a_ci_log(audited) -> None:
    out, text, _ = audited
    lines = text.splitlines()
    assert len(lines) <= MAX_LINES + 1  # the summary, and the "Report:" line on stderr
    assert max(len(line) for line in lines) <= 80
    assert "\x1b[" not in text  # not a terminal: plain text
    assert lines[0].startswith("Verdict: gate ")
    # The first key finding in plain words, and every interval whole on one line.
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    first = key_finding_sentences(results)[0]  # the sentence report.md and report.html show
    assert "Key findings:" in text and " ".join(first.split()) in " ".join(text.split())
    for line in lines:
        assert line.count("[") == line.count("]"), line
    assert "Report: " in text and "results.json" in text
    assert "┃" not in text  # no tables by default


def test_verbose_prints_the_tables(audited) -> None:
    _, brief, verbose = audited
    assert "┃ group" in verbose and "Significant comparisons" in verbose
    assert "Key findings:" in verbose  # the short summary follows the tables
    assert len(verbose.splitlines()) > len(brief.splitlines())


def test_augment_check_table_shows_round_off_as_zero() -> None:
    assert (
        fmt_sig(-1.1102230246251565e-16) == "0" and fmt_sig(1e-9) == "1e-09" and fmt_sig(0.00012) == "0.00012"
    )
    tiny = {"value": 0.0, "ci": [-1.1102230246251565e-16, 1.1102230246251565e-16]}
    results = {
        "attributes": [
            {
                "name": "race",
                "image_statistics": [
                    {"family": "noise", "statistic": "std", "test": {"significant": True}},
                    {"family": "grid", "statistic": "mean", "test": {"significant": False}},
                ],
                "performance": {
                    "main_metric": "auroc",
                    "metric_results": [
                        {
                            "metric": "auroc",
                            "families": [
                                {
                                    "family": "noise",
                                    "degradation": {"A": tiny, "B": {"value": 0.042, "ci": [0.01, 0.08]}},
                                    "test": {"p_adjusted": 0.012},
                                },  # fmt: skip
                                {
                                    "family": "grid",
                                    "degradation": {"A": tiny, "B": tiny},
                                    "test": {"p_adjusted": 1.0},
                                },
                            ],
                        }
                    ],
                },
            }
        ]
    }
    console = Console(record=True, width=80, force_terminal=False)
    print_augment_summary("Checked 36 of 36 files.", results, console)
    text = console.export_text()
    assert "e-16" not in text and "0 [0, 0]" in text
    assert "0.042 [0.01, 0.08]" in text and "0.012" in text
    lines = text.splitlines()
    assert len(lines) <= 8 and max(len(line) for line in lines) <= 80
    noise = next(line for line in lines if line.startswith("noise"))
    assert " B " in f" {noise} " and noise.rstrip().endswith("std")


def test_findings_where_the_gate_failed_come_first() -> None:
    """The brief has room for a few key findings: an attribute whose deciding gate check
    failed comes before a significant difference elsewhere, which comes before the rest."""
    from fairaudit.report.terminal_brief import _sentences

    from _helpers.review import race_attribute, results

    significant = race_attribute(p_adjusted=0.01, significant=True)
    quiet = {**race_attribute(), "name": "site"}
    other = {**race_attribute(), "name": "sex"}
    data = results(other, significant, quiet)
    data["gate"] = {
        "checks": [
            {"attribute": "site", "group": "C", "metric": "tpr", "status": "fail", "decides": True},
            {"attribute": "sex", "group": "C", "metric": "tpr", "status": "fail", "decides": False},
        ]
    }
    order = [s.split(" = ")[0].rsplit(" ", 1)[-1] for s in _sentences(data, {})]
    assert order == ["site", "race", "sex"]
