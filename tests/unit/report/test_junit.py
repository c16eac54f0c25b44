"""junit.xml: one testcase per gate check, failures and skips where CI systems look for them."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from fairaudit.report.junit import render_junit

from _helpers.results import XSS, make_results


def _suite(results):
    root = ET.fromstring(render_junit(results).encode("utf-8"))
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    return suite


def _outcome(case) -> str:
    if case.find("failure") is not None:
        return "failure"
    if case.find("skipped") is not None:
        return "skipped"
    return "passed"


def test_one_testcase_per_check_and_counts_agree():
    results = make_results()
    suite = _suite(results)
    cases = suite.findall("testcase")
    checks = results["gate"]["checks"]
    assert len(cases) == len(checks) == int(suite.get("tests"))
    outcomes = [_outcome(c) for c in cases]
    # fail -> failure; pass -> passed; inconclusive -> skipped; small group -> skipped.
    assert outcomes == ["failure", "passed", "skipped", "skipped"]
    assert int(suite.get("failures")) == outcomes.count("failure")
    assert int(suite.get("skipped")) == outcomes.count("skipped")
    assert suite.get("errors") == "0"
    failure = cases[0].find("failure")
    assert "0.067" in failure.get("message") and "bound 0.05" in failure.get("message")
    assert failure.text == failure.get("message")
    # The hostile group name survives as text in the XML (parsed back intact).
    assert any(XSS in c.get("name") for c in cases)


def test_evidence_of_fairness_turns_inconclusive_into_failures():
    results = make_results()
    results["gate"]["decide"] = "evidence_of_fairness"
    outcomes = [_outcome(c) for c in _suite(results).findall("testcase")]
    # The small group's check still never decides: it stays skipped.
    assert outcomes == ["failure", "passed", "failure", "skipped"]


def test_no_gate_gives_an_empty_suite():
    results = make_results()
    results["gate"] = None
    suite = _suite(results)
    assert suite.get("tests") == "0" and suite.findall("testcase") == []
