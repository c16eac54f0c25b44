"""junit.xml for CI systems: one testcase per gate check.

In a multi-label audit each check belongs to a finding: its testcase's name, class name and
message start with the finding, so two findings' checks of one group never share a name.

A failed check is a <failure>. An inconclusive check that decides is a <failure> when
the policy's on_inconclusive = "fail" (it keeps the release back), else a <skipped> with
the reason; a check on too little data (which never decides) is <skipped>. When no check
decides at all, one more testcase, "gate:verdict", says so (a <failure> under
on_inconclusive = "fail"), so that a suite of skips never looks green while the exit code
is 1. The suite's <properties> carry the outcome and its counts (docs/ci.md).

A version-1 results.json (no "on_inconclusive") keeps its rule: inconclusive checks are
failures under decide = "evidence_of_fairness", else skipped.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from fairaudit._util.formatting import fmt_sig
from fairaudit._util.sanitize import display_results
from fairaudit.report._templates import check_scope, gate_summary


def _fmt(est: Mapping[str, Any] | None) -> str:
    if not est or est.get("value") is None:
        return "undefined" + (f" ({est.get('reason')})" if est and est.get("reason") else "")
    ci = est.get("ci")
    text = fmt_sig(est["value"], 4)
    if ci and (ci[0] is not None or ci[1] is not None):
        lo, hi = fmt_sig(ci[0], 4, missing="-inf"), fmt_sig(ci[1], 4, missing="inf")
        text += f" [{lo}, {hi}]"
    return text


def _inconclusive_fails(gate: Mapping[str, Any]) -> bool:
    """Whether a deciding inconclusive check keeps the release back."""
    on_inconclusive = gate.get("on_inconclusive")
    if on_inconclusive in ("fail", "pass"):
        return on_inconclusive == "fail"
    return gate.get("decide") == "evidence_of_fairness"  # version 1


def render_junit(results: Mapping[str, Any]) -> str:
    """The gate's checks as a JUnit XML document (an empty suite when there is no gate).

    Every string is passed through display_results first: XML 1.0 cannot carry NUL, ESC or
    U+FFFE even as character references, so they are written as visible escapes.
    """
    results = display_results(results)
    gate = results.get("gate") or {"checks": []}
    checks = gate.get("checks", [])
    strict = _inconclusive_fails(gate)
    suite = ET.Element("testsuite", name="fairaudit.gate")
    failures = skipped = 0
    if results.get("gate"):
        summary = gate_summary(gate)
        props = ET.SubElement(suite, "properties")
        for key in ("outcome", "decided", "undecided", "exit_code"):
            ET.SubElement(props, "property", name=f"gate.{key}", value=str(summary[key]))
        if summary["on_inconclusive"] in ("fail", "pass"):
            ET.SubElement(props, "property", name="gate.on_inconclusive", value=summary["on_inconclusive"])
    for c in checks:
        name = f"{c['attribute']}:{c['group']}:{c['metric']}:{c['rule']}"
        classname = f"fairaudit.{c['attribute']}"
        msg = (
            f"{c['rule']} on {c['metric']} for {c['attribute']}={c['group']} vs "
            f"{c.get('reference', 'reference')}: observed {_fmt(c.get('observed'))}, bound {c['bound']}"
        )
        finding = check_scope(c)
        if (
            finding
        ):  # multi-label or --structures: one check per finding (structure), attribute, group, metric
            name, classname, msg = (
                f"{finding}: {name}",
                f"fairaudit.{finding}.{c['attribute']}",
                f"{finding}: {msg}",
            )
        case = ET.SubElement(suite, "testcase", classname=classname, name=name)
        if not c.get("decides", True):
            ET.SubElement(case, "skipped", message=f"{msg}; {c.get('note', 'does not decide the gate')}")
            skipped += 1
        elif c["status"] == "fail":
            ET.SubElement(case, "failure", message=msg, type="fairness_gate").text = msg
            failures += 1
        elif c["status"] == "inconclusive" and strict:
            why = f"{msg}; inconclusive ({c.get('note') or 'the interval straddles the bound'}), "
            why += (
                "and the policy asks for evidence of fairness"
                if gate.get("on_inconclusive") is None
                else "and the policy's on_inconclusive = fail keeps the release back"
            )
            ET.SubElement(case, "failure", message=why, type="fairness_gate_inconclusive").text = why
            failures += 1
        elif c["status"] == "inconclusive":
            ET.SubElement(case, "skipped", message=f"{msg}; inconclusive: {c.get('note', '')}")
            skipped += 1
    if results.get("gate") and "outcome" in gate and not any(c.get("decides", True) for c in checks):
        # Nothing decided: without this case the suite would be all skips (green) with exit code 1.
        summary = gate_summary(gate)
        case = ET.SubElement(suite, "testcase", classname="fairaudit.gate", name="gate:verdict")
        msg = f"{summary['label']}: no check could decide ({summary['text']})"
        if summary["passed"]:
            ET.SubElement(case, "skipped", message=msg)
            skipped += 1
        else:
            ET.SubElement(case, "failure", message=msg, type="fairness_gate_inconclusive").text = msg
            failures += 1
    suite.set("tests", str(len(suite.findall("testcase"))))
    suite.set("failures", str(failures))
    suite.set("skipped", str(skipped))
    suite.set("errors", "0")
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
