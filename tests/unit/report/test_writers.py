"""The one report writer (fairaudit.report.writers.write_reports) with another command's
ReportSet: normalize's and augment-check's files go through the same code as the audit's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fairaudit.report.image_reports import image_reports
from fairaudit.report.writers import ReportSet, write_reports


def _boom(_results) -> str:
    raise RuntimeError("renderer failed")


def test_a_report_set_writes_only_what_is_asked_under_its_own_names(tmp_path: Path) -> None:
    reports = ReportSet(
        files={"json": "normalize.json", "md": "report.md"},
        renderers={"json": lambda r: json.dumps(r) + "\n", "md": lambda r: f"# {r['kind']}\n"},
    )
    written = write_reports({"kind": "normalize"}, tmp_path / "out", ["MD", " json"], reports)
    assert list(written) == ["json", "md"]  # the set's order
    assert written["json"] == tmp_path / "out" / "normalize.json"
    assert json.loads(written["json"].read_text(encoding="utf-8")) == {"kind": "normalize"}
    assert written["md"].read_text(encoding="utf-8") == "# normalize\n"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["normalize.json", "report.md"]
    with pytest.raises(ValueError, match="junit"):
        write_reports({}, tmp_path / "out", ["junit"], reports)


def test_nothing_is_written_when_a_renderer_fails(tmp_path: Path) -> None:
    reports = ReportSet(
        files={"json": "a.json", "html": "b.html"}, renderers={"json": json.dumps, "html": _boom}
    )
    with pytest.raises(RuntimeError):
        write_reports({"x": 1}, tmp_path, ["json", "html"], reports)
    assert not list(tmp_path.iterdir())


def test_image_reports_name_their_files() -> None:
    reports = image_reports("augment_check.json", "augment_check")
    assert dict(reports.files) == {"json": "augment_check.json", "html": "report.html", "md": "report.md"}
    assert reports.renderers["json"]({"a": 1.5}) == '{\n  "a": 1.5\n}\n'
