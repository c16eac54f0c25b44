"""AuditReport (fairaudit.results): results.json's one assembly, its views and its files,
checked on a hand-built results.json (tests/_helpers/results.py) whose numbers are known."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from fairaudit.errors import InputError
from fairaudit.results import AuditReport, assemble
from fairaudit.schema import SCHEMA_VERSION, validate_results

from _helpers.results import make_results, make_segmentation_results


def test_assemble_lays_out_the_keys_in_schema_order() -> None:
    body = {"task": "classification", "overall": {"n": 3, "metrics": {}}, "attributes": [], "consistency": {}}
    data = assemble(
        command="fairaudit audit ...", body=body, config={"ci_level": 0.95}, inputs={"n": 3}, model=None
    )
    assert list(data) == [
        "schema_version", "fairaudit_version", "created", "command", "task", "config", "inputs", "model",
        "overall", "attributes", "consistency", "gate",
    ]  # fmt: skip
    assert data["schema_version"] == SCHEMA_VERSION and data["gate"] is None


def test_by_group_has_one_row_per_group_with_its_interval() -> None:
    results = make_results()
    report = AuditReport(results)
    attr = results["attributes"][0]
    table = report.by_group(attr["name"])
    assert list(table["group"]) == [g["group"] for g in attr["groups"]]
    for (_, row), g in zip(table.iterrows(), attr["groups"], strict=True):
        assert row["n"] == g["n"] and row["n_positive"] == g["n_positive"]
        assert row["reference"] == (g["group"] == attr["reference"])
        tpr = g["metrics"]["tpr"]
        if tpr["value"] is None:  # undefined: missing in the frame (NaN), with its reason
            assert pd.isna(row["tpr"]) and row["tpr_reason"] == tpr["reason"]
            continue
        assert row["tpr"] == tpr["value"]
        if tpr["ci"] is not None:
            assert (row["tpr_ci_low"], row["tpr_ci_high"]) == tuple(tpr["ci"])
        else:
            assert row["tpr_reason"] == tpr["reason"]


def test_comparisons_flatten_every_row() -> None:
    results = make_results()
    rows = AuditReport(results).comparisons()
    expected = [(a["name"], c["group"], c["metric"]) for a in results["attributes"] for c in a["comparisons"]]
    assert list(zip(rows["attribute"], rows["group"], rows["metric"], strict=True)) == expected
    first = results["attributes"][0]["comparisons"][0]
    assert rows.iloc[0]["difference"] == first["difference"]["value"]
    assert rows.iloc[0]["p_value"] == first["p_value"]


def test_to_dict_is_a_copy() -> None:
    report = AuditReport(make_results())
    data = report.to_dict()
    data["attributes"].clear()
    assert report.to_dict()["attributes"]


@pytest.mark.parametrize(("gate", "code", "passed"), [(None, 0, None), (True, 0, True), (False, 1, False)])
def test_exit_code_follows_the_gate(gate: bool | None, code: int, passed: bool | None) -> None:
    results = make_results()
    results["gate"] = (
        None if gate is None else {**(results.get("gate") or {}), "passed": gate, "outcome": "x"}
    )
    report = AuditReport(results)
    assert report.exit_code == code and report.passed is passed


def test_save_writes_the_set_and_refuses_unknown_formats(tmp_path: Path) -> None:
    results = make_segmentation_results()
    validate_results(results)
    report = AuditReport(
        results, manifest="source,row,id,status,reason\n", companions={"segmentation_cases.csv": "id\n"}
    )
    files = report.save(tmp_path / "out", formats=("json", "md"))
    assert {p.name for p in files.values()} == {
        "results.json",
        "model_card.json",  # goes wherever results.json goes (docs/reports.md)
        "report.md",
        "manifest.csv",
        "segmentation_cases.csv",
    }
    assert json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8")) == results
    with pytest.raises(InputError, match="unknown format"):
        report.save(tmp_path / "other", formats=("pdf",))
    assert not (tmp_path / "other").exists()


def test_a_loaded_report_has_views_but_no_gate(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(make_results()), encoding="utf-8")
    report = AuditReport.load(path)
    assert report.result is None and report.attributes()
    with pytest.raises(InputError, match="rerun the audit"):
        report.gate(Path(__file__).resolve().parents[2] / "fairaudit" / "policies" / "example.toml")
