"""Issue 19, points 7, 9 and 12: what a hostile cell may carry into an output.

Each test builds the hostile input itself and reads the outputs back with a parser that is
not ours: xml.etree and xml.dom.minidom for junit.xml, the csv module for the CSV files,
markdown-it (CommonMark) for report.md, html.parser for report.html. The size tests run the
CLI in a subprocess and bound its time and peak memory (docs/reports.md).
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
import xml.dom.minidom
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from fairaudit._util.sanitize import (
    NAME_LIMIT,
    cap,
    clean_text,
    csv_cell,
    display_name,
    display_results,
    frame_to_csv,
)
from fairaudit.report.junit import render_junit

from _helpers import cli
from _helpers.tables import write_csv

#: Characters XML 1.0 cannot carry (even as references), and ones a terminal would obey.
HOSTILE_NAMES = ["A\x00nul", "B\x1b[31mred\x1b[0m", "C\ufffe", "D\uffff", "E\x07\x08\x7f\x9b"]
#: Raw characters no report may hold (tab, newline and carriage return are allowed).
RAW_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff]")
MENTIONS_AND_LINKS = ["@octocat", "@github/security", "https://evil.example/p?q=1", "www.evil.example", "#12"]
FORMULAS = ["=1+1", '=HYPERLINK("http://evil.example","x")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A2)"]


def _rows(names: list[str], n: int = 100, ids: list[str] | None = None) -> list[list[object]]:
    """Cases over `names` (each group has both labels), scores well separated."""
    out = []
    for i in range(n):
        ident = ids[i] if ids is not None and i < len(ids) else f"c{i}"
        out.append(
            [ident, i % 2, round(0.2 + 0.5 * (i % 2) + 0.01 * (i % 7), 3), names[(i // 2) % len(names)]]
        )
    return out


def _audit(*args: str) -> tuple[int, str]:
    result = cli.audit(*args, "--min-group-size", "5", bootstrap=50, workers=1, columns=None)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.output


def _gate(path: Path) -> Path:
    path.write_text('[gate]\nmetrics = ["tpr"]\nmax_abs_difference = 0.05\n', encoding="utf-8")
    return path


# --------------------------------------------------------------------------- point 7


@pytest.mark.parametrize(
    "char", ["\x00", "\x1b", "\ufffe", "\uffff", "\ud800", "\U0010ffff", "\u202e", "\x85"]
)
def test_clean_text_shows_unsafe_characters_as_escapes(char: str) -> None:
    text = clean_text(f"a{char}b")
    assert char not in text and text.startswith("a\\") and text.endswith("b")
    ET.fromstring(f"<x a='{text}'>{text}</x>")  # well-formed XML, as attribute and as text
    assert clean_text("a\x00b") != clean_text("a\x01b")  # two groups stay two groups
    assert clean_text("Zoë\tok\n患者") == "Zoë\tok\n患者"  # white space and letters untouched


def test_junit_with_hostile_group_names_parses_back() -> None:
    checks = [
        {"rule": "max_abs_difference", "metric": "tpr", "attribute": "grp\x00", "group": name,
         "reference": "R\x1b", "bound": 0.05, "status": "fail", "observed": {"value": 0.2, "ci": [0.1, 0.3]}}
        for name in HOSTILE_NAMES
    ]  # fmt: skip
    results = {"gate": {"checks": checks, "passed": False, "outcome": "fail", "decided": 5, "undecided": 0}}
    text = render_junit(results)
    root = ET.fromstring(text.encode("utf-8"))
    xml.dom.minidom.parseString(text.encode("utf-8"))  # a second parser agrees
    names = [case.get("name") for case in root.iter("testcase")]
    assert names == [f"grp\\x00:{clean_text(n)}:tpr:max_abs_difference" for n in HOSTILE_NAMES]
    assert not RAW_CONTROL.search(text)


def test_hostile_group_names_in_every_output(tmp_path: Path) -> None:
    """junit.xml parses; report.md, report.html and the terminal carry no raw control character;
    results.json keeps the names exactly (JSON escapes them)."""
    preds = write_csv(tmp_path / "p.csv", ["id", "label", "score", "grp"], _rows(HOSTILE_NAMES))
    out = tmp_path / "out"
    code, output = _audit("--predictions", str(preds), "--attribute", "grp", "--id-column", "id",
                          "--gate", str(_gate(tmp_path / "gate.toml")), "--out", str(out),
                          "--format", "json,md,html,junit")  # fmt: skip
    assert code in (0, 1), output
    root = ET.parse(out / "junit.xml").getroot()
    xml.dom.minidom.parse(str(out / "junit.xml"))
    # One testcase per group but the reference (the first name: the groups are the same size).
    groups = {case.get("name").split(":")[1] for case in root.iter("testcase")}
    assert groups == {clean_text(n) for n in HOSTILE_NAMES[1:]}
    for name in ("report.md", "report.html", "junit.xml"):
        assert not RAW_CONTROL.search((out / name).read_text(encoding="utf-8")), name
    assert not RAW_CONTROL.search(output), "terminal output"
    assert "\\x1b" in (out / "report.html").read_text(encoding="utf-8")  # shown, not dropped
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert {g["group"] for g in results["attributes"][0]["groups"]} == set(HOSTILE_NAMES)


# What a terminal obeys: every control character but tab and newline (a carriage return
# overwrites the line), and the bidi embeddings, overrides and isolates.
RAW_ON_TERMINAL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ufffe\uffff]")
HOSTILE_FILE = "p\x1b[31mred\u202eevil\r.csv"
HOSTILE_COLUMN = "sex\x1b[31m\u202e"


def _stderr_of(args: list[str], cwd: Path) -> tuple[int, str]:
    """The CLI in a child process (the real log handler and error rendering): exit code, stderr."""
    proc = cli.run_module(args, cwd=cwd, env={"COLUMNS": "400", "FAIRAUDIT_WORKERS": "1"}, timeout=300)
    return proc.returncode, proc.stderr


def test_file_and_column_names_in_log_lines_are_escaped(tmp_path: Path) -> None:
    """Issue 19 leftover: a warning names the file and the column as given; the log handler
    shows their ESC, carriage return and bidi override as escapes."""
    rows = [
        [f"c{i}", i % 2, "" if i == 3 else 0.2 + 0.5 * (i % 2), "" if i == 5 else "FM"[i % 2]]
        for i in range(60)
    ]
    write_csv(tmp_path / HOSTILE_FILE, ["id", "label", "score", HOSTILE_COLUMN], rows)
    code, err = _stderr_of(["audit", "--predictions", HOSTILE_FILE, "--attribute", HOSTILE_COLUMN,
                            "--bootstrap", "20", "--out", "out", "-q"], tmp_path)  # fmt: skip
    assert code == 0, err
    assert "missing score" in err and "included records have no" in err  # the two warnings were logged
    assert not RAW_ON_TERMINAL.search(err), repr(err)
    assert "p\\x1b[31mred\\u202eevil\\x0d.csv" in err and "sex\\x1b[31m\\u202e" in err


def test_file_and_column_names_in_error_messages_are_escaped(tmp_path: Path) -> None:
    """The InputError names the file, the column and the row: shown with escapes, exit 2."""
    rows = [[f"c{i}", i % 2, 7 if i == 3 else 0.5, "FM"[i % 2]] for i in range(60)]
    write_csv(tmp_path / HOSTILE_FILE, ["id", "label", HOSTILE_COLUMN, "sex"], rows)
    code, err = _stderr_of(["audit", "--predictions", HOSTILE_FILE, "--score-column", HOSTILE_COLUMN,
                            "--attribute", "sex", "--bootstrap", "20", "--out", "out", "-q"], tmp_path)  # fmt: skip
    assert code == 2, err
    assert "Traceback" not in err and "is outside [0, 1]" in err
    assert not RAW_ON_TERMINAL.search(err), repr(err)
    assert "p\\x1b[31mred\\u202eevil\\x0d.csv, column 'sex\\x1b[31m\\u202e', row 5:" in cli.flat(err)
    assert not (tmp_path / "out" / "results.json").exists()


def test_an_input_error_keeps_its_text_for_python_callers() -> None:
    """The escaping is the CLI's: str() of the error (the Python API) keeps the names as given."""
    from fairaudit.cli._common import error_text
    from fairaudit.errors import InputError

    exc = InputError("bad.", file="a\nb\x1b.csv", column="c\u202e", row=3, hint="Fix it.")
    assert str(exc) == "a\nb\x1b.csv, column 'c\u202e', row 3: bad. Fix it."
    assert error_text(exc) == "a\\x0ab\\x1b.csv, column 'c\\u202e', row 3: bad. Fix it."


# --------------------------------------------------------------------------- point 9


@pytest.mark.parametrize("cell", FORMULAS + ["\tx", "\rx", "\uff1dSUM(A1)"])
def test_formula_cells_are_neutralised(cell: str) -> None:
    field = csv_cell(cell)
    assert field.startswith("\"'")  # quoted, with a leading single quote
    assert next(csv.reader(io.StringIO(field))) == ["'" + cell]


def test_numbers_in_numeric_columns_stay_numbers() -> None:
    frame = pd.DataFrame({"id": ["-0.5", "a,b", 'q"'], "score": ["-0.5", "0.25", "=1"], "row": [2, 3, 4]})
    text = frame_to_csv(frame, numeric=("score", "row"))
    rows = list(csv.reader(io.StringIO(text)))
    assert rows == [["id", "score", "row"], ["'-0.5", "-0.5", "2"], ["a,b", "0.25", "3"], ['q"', "'=1", "4"]]
    assert pd.read_csv(io.StringIO(text))["row"].tolist() == [2, 3, 4]
    plain = pd.DataFrame({"a": ["x", ""], "b": [1.5, float("nan")]})
    assert frame_to_csv(plain) == plain.to_csv(index=False)  # ordinary cells as pandas writes them


def test_manifest_neutralises_formula_ids_and_file_names(tmp_path: Path) -> None:
    """--keep-ids puts ids in clear into manifest.csv, and the source column names the input
    file: neither may be read as a formula by a spreadsheet."""
    name = '=HYPERLINK("evil")+1.csv'
    preds = write_csv(tmp_path / name, ["id", "label", "score", "grp"], _rows(["A", "B"], ids=FORMULAS))
    out = tmp_path / "out"
    code, output = _audit("--predictions", str(preds), "--attribute", "grp", "--id-column", "id",
                          "--keep-ids", "--out", str(out))  # fmt: skip
    assert code == 0, output
    text = (out / "manifest.csv").read_text(encoding="utf-8")
    records = list(csv.reader(io.StringIO(text)))
    header, body = records[0], records[1:]
    assert len(body) == 100
    for record in body:
        for column, cell in zip(header, record, strict=True):
            if column != "row":
                assert not cell or cell[0] not in "=+-@\t\r", (column, cell)
    assert {r[header.index("source")] for r in body} == {"'" + name}
    assert {r[header.index("id")] for r in body[:5]} == {"'" + f for f in FORMULAS}
    assert '"\'=HYPERLINK(""evil"")+1.csv"' in text  # quoted, as OWASP recommends
    assert all(r[header.index("row")].isdigit() for r in body)


class _Text(HTMLParser):
    """The text nodes and link targets of an HTML page (what GitHub's filters look at)."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.append(dict(attrs).get("href") or "")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_report_md_breaks_mentions_and_autolinks(tmp_path: Path) -> None:
    preds = write_csv(tmp_path / "p.csv", ["id", "label", "score", "grp"], _rows(MENTIONS_AND_LINKS))
    out = tmp_path / "out"
    code, output = _audit("--predictions", str(preds), "--attribute", "grp", "--id-column", "id",
                          "--out", str(out), "--format", "json,md")  # fmt: skip
    assert code == 0, output
    markdown = (out / "report.md").read_text(encoding="utf-8")
    from markdown_it import MarkdownIt

    parser = _Text()
    parser.feed(MarkdownIt("commonmark").enable("table").render(markdown))
    text = "".join(parser.text)
    assert parser.links == []
    assert "octocat" in text and "evil.example" in text  # still shown
    assert not re.search(r"@[0-9A-Za-z]", text)  # no mention
    assert not re.search(r"(?i)https?://|www\.", text)  # no autolink (GFM's extended autolinks)
    assert not re.search(r"#[0-9]", text)  # no issue reference
    assert not re.search(r"@[0-9A-Za-z]|https?://|www\.", markdown)


# --------------------------------------------------------------------------- point 12


def test_display_names_are_capped_with_a_stable_digest() -> None:
    a, b = "x" * 200 + "a", "x" * 200 + "b"
    assert len(display_name(a)) == NAME_LIMIT and display_name(a) != display_name(b)
    assert display_name(a) == display_name(a) == cap(a)
    assert display_name("short") == "short"
    view = display_results({"attributes": [{"name": "g" * 10_000, "groups": [{"group": a, "n": 3}]}]})
    assert len(view["attributes"][0]["name"]) == NAME_LIMIT
    assert view["attributes"][0]["groups"][0] == {"group": display_name(a), "n": 3}


def _run_measured(args: list[str], cwd: Path) -> tuple[int, float, int, str]:
    """The CLI in a subprocess: exit code, seconds, the child's peak resident KiB, output."""
    command = ["audit", *args, "--bootstrap", "50", "--workers", "1", "-q"]
    proc, seconds, peak = cli.run_measured(command, cwd=cwd)
    return proc.returncode, seconds, peak, proc.stdout[-2000:] + proc.stderr[-2000:]


#: Bounds with a wide margin over what a shared two-core machine measured (docs/reports.md):
#: before the fix one 10-million-character cell took 56 s and 3.3 GB.
MAX_SECONDS = 45
MAX_PEAK_KIB = 1_000_000


@pytest.mark.xdist_group("measured")  # bounds time or memory: never beside another such test
def test_a_ten_million_character_group_cell(tmp_path: Path) -> None:
    huge = "x" * 10_000_000
    rows = _rows(["A", "B"])
    rows[0][3] = huge
    preds = write_csv(tmp_path / "p.csv", ["id", "label", "score", "grp"], rows)
    out = tmp_path / "out"
    code, seconds, peak, output = _run_measured(
        ["--predictions", str(preds), "--attribute", "grp", "--id-column", "id", "--min-group-size", "1",
         "--out", str(out), "--format", "json,md,html"], tmp_path)  # fmt: skip
    assert code == 0, output
    assert seconds < MAX_SECONDS and peak < MAX_PEAK_KIB, (seconds, peak)
    for name in ("report.md", "report.html", "results.json"):
        assert (out / name).stat().st_size < 2_000_000, name
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    names = {g["group"] for g in results["attributes"][0]["groups"]}
    assert names == {"A", "B", cap(huge)} and len(cap(huge)) == NAME_LIMIT
    assert cap(huge) in (out / "report.html").read_text(encoding="utf-8")


@pytest.mark.xdist_group("measured")  # bounds time or memory: never beside another such test
def test_a_csv_of_twenty_thousand_columns(tmp_path: Path) -> None:
    extra = [f"x{i}" for i in range(19_996)]
    rows = [[*r, *([""] * len(extra))] for r in _rows(["A", "B"], n=40)]
    preds = write_csv(tmp_path / "wide.csv", ["id", "label", "score", "grp", *extra], rows)
    out = tmp_path / "out"
    code, seconds, peak, output = _run_measured(
        ["--predictions", str(preds), "--attribute", "grp", "--id-column", "id", "--out", str(out),
         "--format", "json"], tmp_path)  # fmt: skip
    assert code == 0, output
    assert seconds < MAX_SECONDS and peak < MAX_PEAK_KIB, (seconds, peak)
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["overall"]["n"] == 40
    manifest = list(csv.DictReader(io.StringIO((out / "manifest.csv").read_text(encoding="utf-8"))))
    assert [r["row"] for r in manifest] == [str(i) for i in range(2, 42)]


def test_wide_file_blank_rows_are_told_from_the_whole_line(tmp_path: Path) -> None:
    """Parsing only the used columns keeps the rule: a row is blank when its whole line is."""
    from fairaudit.io.tables import read_table

    extra = [f"x{i}" for i in range(40)]
    lines = [
        "id,grp," + ",".join(extra),
        "a,F," + "," * 39,
        "," * 41,
        ",," + "note" + "," * 39,
        "b,M," + "," * 39,
    ]
    path = tmp_path / "w.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    table = read_table(path, keep=["id", "grp"])
    assert table.rows.tolist() == [2, 4, 5]
    assert table.frame.to_dict("records") == [
        {"id": "a", "grp": "F"},
        {"id": "", "grp": ""},
        {"id": "b", "grp": "M"},
    ]


def test_long_reference_given_in_full_is_found(tmp_path: Path) -> None:
    long = "L" * 300
    preds = write_csv(tmp_path / "p.csv", ["id", "label", "score", "grp"], _rows(["A", long]))
    out = tmp_path / "out"
    code, output = _audit("--predictions", str(preds), "--attribute", "grp", "--id-column", "id",
                          "--reference", f"grp={long}", "--out", str(out), "--format", "json")  # fmt: skip
    assert code == 0, output
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["attributes"][0]["reference"] == cap(long)


def test_sanitize_imports_nothing_heavy() -> None:
    code = "import sys, fairaudit._util.sanitize; print(any(m in sys.modules for m in ('torch', 'jinja2', 'matplotlib')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
