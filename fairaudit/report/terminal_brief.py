"""The short terminal summary: at most 30 lines, for a person and for a CI log (issue 23, point 7).

The verdict, the inputs, the key findings in plain words, the gate checks that kept the gate
from passing, and a pointer to the tables (`-v`) and the reports. Lines are wrapped here, not
by rich, so that a number and its interval ("0.061 [-0.089, 0.214]") are never split across
lines at 80 columns; the text is plain (rich drops the styles when stdout is not a terminal).
docs/reports.md, "Terminal".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.markup import escape

from fairaudit._util.formatting import fmt_est, fmt_p

__all__ = ["MAX_LINES", "brief_lines", "print_brief", "wrap"]

#: The default summary never prints more lines than this (the stderr "Report:" line aside).
MAX_LINES = 30
_MAX_CHECKS = 3
_MAX_SLICES = 3
#: The units a line never splits: a word, with any interval in brackets ("[-0.089, 0.214],")
#: or short parenthesis ("(adj. 1.00)") in it kept whole, punctuation attached.
_ATOM = re.compile(r"(?:\[[^\[\]\n]{0,40}\]|\([^()\n]{0,16}\)|\S)+")
_STYLE = {"passed": "bold green", "failed": "bold red", "inconclusive": "bold yellow", "none": "yellow"}


def wrap(text: str, width: int, first: str = "", indent: int = 2) -> list[str]:
    """`first` + `text` in lines of at most `width` characters, continuation lines indented;
    an interval in brackets ("[-0.089, 0.214]") stays whole. A unit longer than a line (a
    long path) is cut at the width, the only case where a line breaks inside a word."""
    atoms = _ATOM.findall(text)
    lines: list[str] = []
    line = first
    room = max(width, indent + 10)
    for atom in atoms:
        candidate = f"{line} {atom}" if line.strip() else line + atom
        if len(candidate) <= room:
            line = candidate
            continue
        if line.strip():
            lines.append(line)
            line = " " * indent + atom
        else:
            line += atom
        while len(line) > room:
            lines.append(line[:room])
            line = " " * indent + line[room:]
    if line.strip() or not lines:
        lines.append(line)
    return [ln.rstrip() for ln in lines]


def _failing(results: Mapping[str, Any]) -> set[tuple[str, str]]:
    """(finding or structure, attribute) of each deciding gate check that failed."""
    from fairaudit.report.blocks import check_block

    gate = results.get("gate") if isinstance(results.get("gate"), Mapping) else {}
    return {
        (str(check_block(c) or ""), str(c.get("attribute", "")))
        for c in gate.get("checks") or []
        if c.get("status") == "fail" and c.get("decides", True) is not False
    }


def _sentences(results: Mapping[str, Any], view: Mapping[str, Any]) -> list[str]:
    """The key-finding sentences (fairaudit.report.key_findings): first those about an
    attribute (of a finding) where the gate failed, then the significant ones (the room runs
    out first for the rest); else the headline lines."""
    try:
        from fairaudit.report.key_findings import key_findings
    except ImportError:  # pragma: no cover - the key findings module ships with the reports
        key_findings = None
    if key_findings is not None:
        failing = _failing(results)
        found = sorted(
            key_findings(results),
            key=lambda k: ((k.finding, k.attribute) not in failing, k.status != "significant"),
        )
        if found:
            return [f"{k.finding}: {k.sentence}" if k.finding else k.sentence for k in found]
    out = []
    for d in view.get("disparities") or []:
        if d.get("kind") == "worst":
            out.append(
                f"{d['attribute']}: {d['metric']} {d['group']} − {d['reference']} = {d['difference']}, "
                f"p {d['p_value']} (adj. {d['p_adjusted']})"
            )
        else:
            out.append(f"{d['attribute']}: {d['metric']} largest difference {d['max_difference']}")
    return out


def _verdict_text(view: Mapping[str, Any]) -> tuple[str, str]:
    verdict = view["verdict"]
    if verdict["status"] == "none":
        return "none", "no gate (no policy given; nothing passed or failed)"
    label = {"passed": "gate passed", "failed": "gate failed"}.get(verdict["status"], "gate inconclusive")
    return verdict["status"], f"{label}: {verdict['text']}"


def _check_text(check: Mapping[str, Any]) -> str:
    finding = f"{check['finding']}: " if check.get("finding") else ""
    return (
        f"{check['status']}: {finding}{check['metric']} {check['attribute']}={check['group']}, "
        f"bound {check['bound']}, observed {check['observed'].text}"
    )


def _gate_block(view: Mapping[str, Any], width: int) -> list[str]:
    """The deciding checks that failed, or (an inconclusive gate) could not decide: a few."""
    gate, verdict = view.get("gate"), view["verdict"]
    if not gate:
        return []
    deciding = [c for c in gate["checks"] if c["decides"]]
    bad = [c for c in deciding if c["status"] == "fail"]
    unsure = [c for c in deciding if c["status"] == "inconclusive"]
    shown, what = (bad, "failed") if bad else (unsure, "could not decide")
    if not shown or (not bad and verdict.get("outcome") != "inconclusive"):
        return []
    lines = wrap(
        f"{len(shown)} deciding check{'' if len(shown) == 1 else 's'} {what}:", width, "Gate:", indent=2
    )
    for check in shown[:_MAX_CHECKS]:
        lines += wrap(_check_text(check), width, "  -", indent=4)
    if len(shown) > _MAX_CHECKS:
        lines.append(f"  … {len(shown) - _MAX_CHECKS} more: the Gate section of report.html")
    return lines


def _discovered_block(discovered: Any, width: int) -> list[str]:
    if not isinstance(discovered, Mapping):
        return []
    slices = discovered.get("slices") or []
    lines = wrap(
        f"{len(slices)} slices served worse than the rest on {discovered.get('metric', '')}, "
        f"{discovered.get('n_significant', 0)} significant after correction",
        width,
        "Discovered:",
    )
    for sl in slices[:_MAX_SLICES]:
        lines += wrap(
            f"{sl.get('slice', '')} (n {sl.get('n')}): difference {fmt_est(sl.get('difference'))}, "
            f"p adj. {fmt_p(sl.get('p_adjusted'))}",
            width,
            f"  {sl.get('rank')}.",
            indent=4,
        )
    return lines


def brief_lines(results: Mapping[str, Any], view: Mapping[str, Any], width: int) -> list[tuple[str, str]]:
    """The summary as (style, line) pairs, at most MAX_LINES; `results` already display-safe."""
    status, verdict = _verdict_text(view)
    head = [(_STYLE.get(status, ""), ln) for ln in wrap(verdict, width, "Verdict:")]
    inputs = view["inputs"]
    config = view["config"]
    facts = f"{inputs['n_included']} of {inputs['n_records']} records included"
    if view.get("model"):
        facts += f"; model {view['model']['name']}"
    facts += f"; {config['ci_level']} intervals, {config['correction']} correction"
    head += [("", ln) for ln in wrap(facts, width, "Inputs:")]
    tail = [("dim", ln) for ln in wrap("-v prints the tables; report.html has every number.", width, "More:")]
    gate = [("", ln) for ln in _gate_block(view, width)]
    found = [("", ln) for ln in _discovered_block(results.get("discovered"), width)]

    room = MAX_LINES - len(head) - len(tail) - len(gate) - len(found) - 1
    sentences = _sentences(results, view)
    findings: list[tuple[str, str]] = []
    for k, sentence in enumerate(sentences):
        lines = wrap(sentence, width, "  -", indent=4)
        left = len(sentences) - k
        # Keep a line for "… n more" unless this is the last sentence.
        if len(findings) + len(lines) + (0 if left == 1 else 1) > room:
            findings.append(("dim", f"  … {left} more key findings: report.md and report.html"))
            break
        findings += [("", ln) for ln in lines]
    title = [("bold", "Key findings:")] if findings else []
    return (head + title + findings + gate + found + tail)[:MAX_LINES]


def print_brief(results: Mapping[str, Any], view: Mapping[str, Any], console: Console) -> None:
    """Print the short summary, one console line per line (no wrapping by rich)."""
    for style, line in brief_lines(results, view, console.width):
        console.print(escape(line), style=style or None, soft_wrap=True, highlight=False)
