"""--title, --context and --reference-population on `audit` and `report` (issue 23, points 2-4):
recorded in results.json and shown by the reports; a bad file is exit 2 naming it, before
any work."""

from __future__ import annotations

import json
from pathlib import Path

from fairaudit.schema import validate_results

from _helpers.cli import audit, flat, invoke, sample_predictions_args
from _helpers.review import race_attribute, results


def _archive(tmp_path: Path) -> Path:
    path = tmp_path / "archive" / "results.json"
    path.parent.mkdir()
    path.write_text(json.dumps(results(race_attribute())), encoding="utf-8")
    return path


def test_report_adds_title_context_and_reference_population(tmp_path: Path) -> None:
    archive = _archive(tmp_path)
    (tmp_path / "ctx.md").write_text("Intended use: triage. <script>x()</script>", encoding="utf-8")
    (tmp_path / "ref.csv").write_text(
        "attribute,group,share\nrace,A,0.4,\nrace,B,0.3\nrace,C,0.3\n", encoding="utf-8"
    )
    out = tmp_path / "out"
    result = invoke([
        "report", archive, "--out", out, "--format", "json,html,md", "--title", "Release 2 audit",
        "--context", tmp_path / "ctx.md", "--reference-population", tmp_path / "ref.csv", "--quiet",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    written = json.loads((out / "results.json").read_text(encoding="utf-8"))
    validate_results(written)
    assert written["title"] == "Release 2 audit"
    assert written["context"].startswith("Intended use: triage.")
    [race] = written["population"]["reference"]["attributes"]
    assert [g["n"] for g in race["groups"]] == [100, 80, 90]
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<h1>Release 2 audit</h1>" in page and "&lt;script&gt;x()&lt;/script&gt;" in page
    card = json.loads((out / "model_card.json").read_text(encoding="utf-8"))
    assert (
        card["title"] == "Release 2 audit"
        and card["data"]["reference_population"]["attributes"][0]["n"] == 270
    )
    # The archive is never rewritten.
    assert "title" not in json.loads(archive.read_text(encoding="utf-8"))


def test_report_in_place_leaves_the_archive_and_its_card(tmp_path: Path) -> None:
    """In place, results.json and its model_card.json are the archive: only reports are rewritten."""
    archive = _archive(tmp_path)
    result = invoke(["report", archive, "--format", "md,json", "--title", "New", "--quiet"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in archive.parent.iterdir()) == ["report.md", "results.json"]
    assert (archive.parent / "report.md").read_text(encoding="utf-8").startswith("# New")


def test_a_bad_reference_file_is_exit_2_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "ref.csv").write_text("attribute,group,share\nsex,F,lots\n", encoding="utf-8")
    out = tmp_path / "out"
    result = audit(*sample_predictions_args("sex"), "--reference-population", tmp_path / "ref.csv", out=out)
    assert result.exit_code == 2
    text = flat(result.output)
    assert "ref.csv" in text and "column 'share'" in text and "row 2" in text
    assert "Traceback" not in result.output and not out.exists()


def test_a_group_without_a_share_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "ref.csv").write_text("attribute,group,share\nrace,A,1.0\n", encoding="utf-8")
    result = invoke(["report", _archive(tmp_path), "--reference-population", tmp_path / "ref.csv", "-q"])
    assert result.exit_code == 2
    assert "'B', 'C' of 'race' are in the data but have no share" in flat(result.output)


def test_audit_records_title_and_context(tmp_path: Path) -> None:
    (tmp_path / "ctx.md").write_text("# Intended use\n\nAdults only.", encoding="utf-8")
    out = tmp_path / "out"
    result = audit(
        *sample_predictions_args("sex"), "--title", "Sample audit", "--context", tmp_path / "ctx.md",
        out=out, bootstrap=100, quiet=True,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    written = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert written["title"] == "Sample audit" and written["context"] == "# Intended use\n\nAdults only."
    assert "<h1>Sample audit</h1>" in (out / "report.html").read_text(encoding="utf-8")
    assert (out / "model_card.json").is_file()
