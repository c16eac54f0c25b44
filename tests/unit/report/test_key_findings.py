"""Key findings in plain words (issue 23, point 1): built from a hand-made results.json, each
sentence holds the hand-expected numbers, and the same sentences reach report.md, report.html
and the terminal's function."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest

from fairaudit.report.html import render_html
from fairaudit.report.key_findings import key_finding_sentences, key_findings
from fairaudit.report.markdown import render_markdown

from _helpers.review import est, group, race_attribute, results


def test_the_issue_example_not_significant_with_its_detectable_difference() -> None:
    [sentence] = key_finding_sentences(results(race_attribute()))
    assert sentence.startswith(
        "Sensitivity for race = C is 0.850 (0.700–0.940) against 1.000 (0.880–1.000) for A (the reference)"
    )
    assert "the difference C − A, −0.150 (−0.300 to −0.060)," in sentence
    assert "is not significant after Holm correction (p = 0.0800)" in sentence
    assert "a difference smaller than 0.230 could have been missed (with 80% power)" in sentence


def test_a_significant_difference_says_so_and_no_detectable_difference() -> None:
    [k] = key_findings(results(race_attribute(p_adjusted=0.004, significant=True)))
    assert k.status == "significant" and k.metric == "tpr"
    assert "is significant after Holm correction (p = 0.00400)" in k.sentence
    assert "could have been missed" not in k.sentence


def test_a_harmful_increase_names_the_higher_group_worse() -> None:
    """fpr: higher is worse, so the group above the reference is the worse-served one."""
    attribute = race_attribute()
    del attribute["summary"]["tpr"]  # only fpr left: B − A = +0.02
    [k] = key_findings(results(attribute))
    assert k.sentence.startswith(
        "False-positive rate for race = B is 0.120 (0.060–0.220) against 0.100 (0.050–0.180) for A"
    )
    assert "a difference smaller than 0.100 could have been missed (with 90% power)" in k.sentence


def test_without_correction_and_without_a_detectable_difference() -> None:
    attribute = race_attribute(
        mdd={"value": None, "reason": "too few positives", "power": 0.8, "method": "score"}
    )
    [sentence] = key_finding_sentences(results(attribute, correction="none"))
    assert "is not significant (no correction for multiplicity) (p = 0.0800)" in sentence
    assert "could not be computed (too few positives)" in sentence


def test_an_attribute_with_nothing_to_compare_says_so() -> None:
    one = {"name": "site", "reference": "x", "groups": [group("x", 10, 2, est(0.5, 0.1, 0.9), est(0.1, 0, 0.4))],
           "comparisons": [], "summary": {}}  # fmt: skip
    [k] = key_findings(results(one))
    assert k.status == "insufficient"
    assert k.sentence == "site: no comparison could be made: it has one group."


def test_an_untested_comparison_is_undecided() -> None:
    attribute = race_attribute(p_adjusted=None)  # type: ignore[arg-type]
    attribute["comparisons"][0]["reason"] = "every score tied"
    [k] = key_findings(results(attribute))
    assert k.status == "undecided"
    assert "could not be tested (every score tied)" in k.sentence


def test_every_finding_of_a_multilabel_audit_gets_its_own() -> None:
    data = results()
    data["attributes"] = []
    data["findings"] = [
        {"finding": "Edema", "attributes": [race_attribute()]},
        {"finding": "Effusion", "attributes": [race_attribute(p_adjusted=0.01, significant=True)]},
    ]
    found = key_findings(data)
    assert [(k.finding, k.status) for k in found] == [
        ("Edema", "not_significant"),
        ("Effusion", "significant"),
    ]
    assert key_finding_sentences(data)[0].startswith("Edema: Sensitivity for race = C is 0.850")


@pytest.mark.parametrize("render", [render_markdown, render_html])
def test_the_reports_show_the_same_sentences(render: Any) -> None:
    data = results(race_attribute())
    [sentence] = key_finding_sentences(data)
    text = render(data)
    plain = html.unescape(re.sub(r"\\(.)", r"\1", text))  # Markdown escapes and HTML entities undone
    assert sentence in plain
    assert plain.index("Key findings") < plain.index(sentence)


def test_every_metric_an_audit_reports_has_words() -> None:
    """A key finding names its metric in words, never by its key (`nsd`, `macro_auroc`):
    every metric of the classification, segmentation and multi-class engines has some."""
    from fairaudit.report.key_findings import METRIC_WORDS
    from fairaudit.stats._metrics import METRICS
    from fairaudit.stats._multiclass import CLASS_METRICS, SUMMARY_METRICS
    from fairaudit.stats._segmentation import SEGMENTATION_METRICS

    keys = {*METRICS, *SEGMENTATION_METRICS, *SUMMARY_METRICS, *CLASS_METRICS} - {"prevalence"}
    assert sorted(keys - set(METRIC_WORDS)) == []
    assert all(words and words != key for key, words in METRIC_WORDS.items())


@pytest.mark.parametrize("unit", ["mm", "pixels"])
def test_a_distance_finding_names_its_unit(unit: str) -> None:
    """hd95 (lower is better) in a segmentation audit: the sentence says the unit of every
    number in it, as the tables' headers do (docs/segmentation.md)."""
    attribute = race_attribute()
    del attribute["summary"]["tpr"]
    attribute["summary"]["hd95"] = attribute["summary"].pop("fpr")
    for g in attribute["groups"]:
        g["metrics"]["hd95"] = g["metrics"].pop("fpr")
    for c in attribute["comparisons"]:
        c["metric"] = "hd95" if c["metric"] == "fpr" else c["metric"]
    data = results(attribute)
    data["task"] = "segmentation"
    data["config"]["segmentation"] = {"distance_unit": unit}
    [k] = key_findings(data)
    assert k.sentence.startswith(f"HD95 (in {unit}) for race = B is 0.120 (0.060–0.220) against 0.100")
