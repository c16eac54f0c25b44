"""junit.xml for CI systems: one testcase per gate check.

A failed check is a <failure>, an inconclusive one a <skipped> with the reason (a
<failure> under decide = "evidence_of_fairness", where inconclusive checks fail the
gate), and a check on a small group (which never decides the gate) is <skipped> too, so
CI dashboards show exactly which checks decided the release.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any


def _fmt(est: Mapping[str, Any] | None) -> str:
    if not est or est.get("value") is None:
        return "undefined" + (f" ({est.get('reason')})" if est and est.get("reason") else "")
    ci = est.get("ci")
    text = f"{est['value']:.4g}"
    if ci and ci[0] is not None and ci[1] is not None:
        text += f" [{ci[0]:.4g}, {ci[1]:.4g}]"
    return text


def render_junit(results: Mapping[str, Any]) -> str:
    """The gate's checks as a JUnit XML document (an empty suite when there is no gate)."""
    gate = results.get("gate") or {"checks": []}
    checks = gate.get("checks", [])
    strict = gate.get("decide") == "evidence_of_fairness"
    suite = ET.Element("testsuite", name="fairaudit.gate", tests=str(len(checks)))
    failures = skipped = 0
    for c in checks:
        name = f"{c['attribute']}:{c['group']}:{c['metric']}:{c['rule']}"
        case = ET.SubElement(suite, "testcase", classname=f"fairaudit.{c['attribute']}", name=name)
        msg = (
            f"{c['rule']} on {c['metric']} for {c['attribute']}={c['group']} vs "
            f"{c.get('reference', 'reference')}: observed {_fmt(c.get('observed'))}, bound {c['bound']}"
        )
        if not c.get("decides", True):
            ET.SubElement(case, "skipped", message=f"{msg}; {c.get('note', 'does not decide the gate')}")
            skipped += 1
        elif c["status"] == "fail":
            ET.SubElement(case, "failure", message=msg, type="fairness_gate").text = msg
            failures += 1
        elif c["status"] == "inconclusive" and strict:
            why = (
                f"{msg}; inconclusive ({c.get('note', 'the interval straddles the bound')}), and the policy "
            )
            why += "asks for evidence of fairness"
            ET.SubElement(case, "failure", message=why, type="fairness_gate_inconclusive").text = why
            failures += 1
        elif c["status"] == "inconclusive":
            ET.SubElement(case, "skipped", message=f"{msg}; inconclusive: {c.get('note', '')}")
            skipped += 1
    suite.set("failures", str(failures))
    suite.set("skipped", str(skipped))
    suite.set("errors", "0")
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
