"""`fairaudit audit --predictions ...` end to end: files, results.json contract, flags, errors.

Most tests call the Typer app in-process (CliRunner); one runs the real console script.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from fairaudit._version import __version__
from fairaudit.schema import validate_results

from _helpers import cli
from _helpers.cli import squash
from _helpers.tables import write_csv

N = 120
SCORE_FREE = ("auroc", "auprc", "brier", "ece", "squared_calibration_error")


def cases(n: int = N) -> list[dict]:
    """Deterministic cases: sex alternates F/M, race in blocks of six (A, B, C, A, ...), 1 in 3
    positive (F at i % 6 == 0, M at i % 6 == 3), imperfect scores. n = 120: F 60 (20 positive),
    M 60 (20 positive); A 42, B 42, C 36, every race 1 in 3 positive."""
    out = []
    for i in range(n):
        label = int(i % 3 == 0)
        base = 0.35 + 0.3 * label
        score = round(min(1.0, max(0.0, base + ((i * 37) % 41 - 20) / 50)), 3)
        out.append(
            {
                "id": f"1.2.840.{i + 1}",
                "label": label,
                "score": score,
                "sex": "FM"[i % 2],
                "race": "ABC"[(i // 6) % 3],
            }
        )
    return out


def split_files(tmp_path: Path, id_col: str = "sop_instance_uid") -> tuple[Path, Path]:
    rows = cases()
    preds = write_csv(
        tmp_path / "preds.csv", [id_col, "label", "score"], [[r["id"], r["label"], r["score"]] for r in rows]
    )
    demo = write_csv(
        tmp_path / "demo.csv", [id_col, "sex", "race"], [[r["id"], r["sex"], r["race"]] for r in rows]
    )
    return preds, demo


def one_file(tmp_path: Path, name: str = "all.csv") -> Path:
    rows = cases()
    return write_csv(
        tmp_path / name,
        ["sop_instance_uid", "label", "score", "sex", "race"],
        [[r["id"], r["label"], r["score"], r["sex"], r["race"]] for r in rows],
    )


def audit(tmp_path: Path, *args: str, out: str = "out"):
    return cli.audit(*args, bootstrap=100, out=tmp_path / out)


def results_of(tmp_path: Path, out: str = "out") -> dict:
    results = json.loads((tmp_path / out / "results.json").read_text(encoding="utf-8"))
    validate_results(results)
    return results


def attr(results: dict, name: str) -> dict:
    (a,) = [a for a in results["attributes"] if a["name"] == name]
    return a


# --- happy path -------------------------------------------------------------------------


def test_happy_path_writes_every_report(tmp_path: Path) -> None:
    preds, demo = split_files(tmp_path)
    res = audit(
        tmp_path,
        "--predictions",
        str(preds),
        "--demographics",
        str(demo),
        "--attribute",
        "sex",
        "--attribute",
        "race",
        "-v",  # the tables too (the default is the short summary)
    )
    assert res.exit_code == 0, res.output
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} == {
        "results.json",
        "model_card.json",
        "report.md",
        "report.html",
        "manifest.csv",
    }

    results = results_of(tmp_path)
    assert results["schema_version"] == "2"
    assert results["fairaudit_version"] == __version__
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", results["created"])
    assert results["task"] == "classification"
    assert results["model"] is None
    assert results["gate"] is None
    assert results["config"]["bootstrap"] == 100
    assert results["config"]["id_column"] == "sop_instance_uid"
    assert results["inputs"]["n_records"] == results["inputs"]["n_included"] == N
    assert results["inputs"]["excluded"] == []
    assert results["overall"]["n"] == N
    assert [a["name"] for a in results["attributes"]] == ["sex", "race"]
    sex = attr(results, "sex")
    assert {g["group"]: g["n"] for g in sex["groups"]} == {"F": 60, "M": 60}
    assert {g["group"]: g["n_positive"] for g in sex["groups"]} == {"F": 20, "M": 20}
    race = attr(results, "race")
    assert {g["group"]: g["n"] for g in race["groups"]} == {"A": 42, "B": 42, "C": 36}
    assert {g["group"]: g["n_positive"] for g in race["groups"]} == {"A": 14, "B": 14, "C": 12}
    assert race["reference"] == "A"  # the largest group (ties: the first in sort order)
    for est in results["overall"]["metrics"].values():
        assert est["value"] is not None and len(est["ci"]) == 2

    manifest = (out / "manifest.csv").read_text(encoding="utf-8").splitlines()
    assert manifest[0] == "source,row,id,status,reason"
    assert len(manifest) == 1 + 2 * N
    assert "1.2.840.1," not in (out / "manifest.csv").read_text(encoding="utf-8")

    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith("<!doctype html")
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=[\"']?(https?:)?//", html)  # self-contained
    assert "race" in (out / "report.md").read_text(encoding="utf-8")
    # The rich terminal summary.
    assert "sex (reference:" in res.stdout and "race (reference:" in res.stdout
    assert "report.html" in squash(res.stderr)


def test_version() -> None:
    res = cli.invoke(["--version"], columns=None)
    assert res.exit_code == 0
    assert res.stdout.strip() == f"fairaudit {__version__}"


def test_demographics_in_the_predictions_file(tmp_path: Path) -> None:
    res = audit(
        tmp_path,
        "--predictions",
        str(one_file(tmp_path)),
        "--attribute",
        "sex",
        "--attribute",
        "race",
        "--quiet",
    )
    assert res.exit_code == 0, res.output
    results = results_of(tmp_path)
    assert results["inputs"]["n_included"] == N
    assert {g["group"] for g in attr(results, "race")["groups"]} == {"A", "B", "C"}
    manifest = (tmp_path / "out" / "manifest.csv").read_text(encoding="utf-8").splitlines()
    assert len(manifest) == 1 + N  # one file, one row each


def test_id_column_flag(tmp_path: Path) -> None:
    preds, demo = split_files(tmp_path, id_col="accession")
    res = audit(tmp_path, "--predictions", str(preds), "--demographics", str(demo), "--attribute", "sex")
    assert res.exit_code == 2
    assert "--id-column" in res.stderr
    assert "accession" in res.stderr  # the columns are listed

    res = audit(
        tmp_path, "--predictions", str(preds), "--demographics", str(demo), "--attribute", "sex",
        "--id-column", "accession", "--quiet",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    results = results_of(tmp_path)
    assert results["config"]["id_column"] == "accession"
    assert results["inputs"]["n_included"] == N


def test_autodetect_prefers_sop_instance_uid_case_insensitively(tmp_path: Path) -> None:
    rows = cases()
    # patient_id is shared by pairs of rows: joining on it would exclude every row as a duplicate.
    preds = write_csv(
        tmp_path / "p.csv",
        ["Patient_ID", "SOP_Instance_UID", "label", "score"],
        [[f"P{i // 2}", r["id"], r["label"], r["score"]] for i, r in enumerate(rows)],
    )
    demo = write_csv(
        tmp_path / "d.csv",
        ["sop_instance_uid", "PATIENT_ID", "Sex"],
        [[r["id"], f"P{i // 2}", r["sex"]] for i, r in enumerate(rows)],
    )
    res = audit(
        tmp_path, "--predictions", str(preds), "--demographics", str(demo), "--attribute", "sex", "--quiet"
    )
    assert res.exit_code == 0, res.output
    results = results_of(tmp_path)
    assert results["config"]["id_column"] == "sop_instance_uid"
    assert results["inputs"]["n_included"] == N
    assert results["inputs"]["excluded"] == []
    assert attr(results, "sex")["name"] == "sex"


def test_patient_id_used_when_it_is_the_only_shared_key(tmp_path: Path) -> None:
    rows = cases()
    preds = write_csv(
        tmp_path / "p.csv",
        ["patient_id", "label", "score"],
        [[r["id"], r["label"], r["score"]] for r in rows],
    )
    demo = write_csv(
        tmp_path / "d.csv",
        ["PatientID_unused", "patient_id", "sex"],
        [["x", r["id"], r["sex"]] for r in rows],
    )
    res = audit(
        tmp_path, "--predictions", str(preds), "--demographics", str(demo), "--attribute", "sex", "--quiet"
    )
    assert res.exit_code == 0, res.output
    assert results_of(tmp_path)["config"]["id_column"] == "patient_id"


@pytest.mark.parametrize("column", ["prediction", "pred01"])
def test_binary_predictions_give_null_score_metrics(tmp_path: Path, column: str) -> None:
    rows = cases()
    preds = write_csv(
        tmp_path / "p.csv",
        ["sop_instance_uid", "label", column, "sex"],
        [[r["id"], r["label"], int(r["score"] >= 0.5), r["sex"]] for r in rows],
    )
    extra = [] if column == "prediction" else ["--prediction-column", column]
    res = audit(tmp_path, "--predictions", str(preds), "--attribute", "sex", *extra, "--quiet")
    assert res.exit_code == 0, res.output
    assert squash("auroc, auprc, brier, ece and squared_calibration_error will be null") in squash(
        res.output
    )  # warned
    results = results_of(tmp_path)
    assert results["inputs"]["has_scores"] is False
    blocks = [results["overall"]["metrics"], *(g["metrics"] for g in attr(results, "sex")["groups"])]
    for metrics in blocks:
        for m in SCORE_FREE:
            assert metrics[m]["value"] is None
            assert metrics[m]["ci"] is None
            assert metrics[m]["reason"]
        assert metrics["tpr"]["value"] is not None
        assert metrics["fpr"]["value"] is not None
    assert not {c["metric"] for c in attr(results, "sex")["comparisons"]} & {"auroc", "brier"}
    # The same file read with --score-column pointing at the 0/1 column gives real AUROCs.
    res = audit(
        tmp_path,
        "--predictions",
        str(preds),
        "--attribute",
        "sex",
        "--score-column",
        column,
        "--quiet",
        out="o2",
    )
    assert res.exit_code == 0, res.output
    assert results_of(tmp_path, "o2")["overall"]["metrics"]["auroc"]["value"] is not None


def test_intersect(tmp_path: Path) -> None:
    res = audit(
        tmp_path, "--predictions", str(one_file(tmp_path)), "--attribute", "sex", "--attribute", "race",
        "--intersect", "sex,race", "--quiet", "--min-group-size", "10",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    results = results_of(tmp_path)
    assert [a["name"] for a in results["attributes"]] == ["sex", "race", "sex×race"]
    inter = attr(results, "sex×race")
    assert {g["group"]: g["n"] for g in inter["groups"]} == {
        "F×A": 21, "M×A": 21, "F×B": 21, "M×B": 21, "F×C": 18, "M×C": 18,
    }  # fmt: skip


def test_reference(tmp_path: Path) -> None:
    preds = one_file(tmp_path)
    res = audit(
        tmp_path, "--predictions", str(preds), "--attribute", "race", "--reference", "race=B", "--quiet"
    )
    assert res.exit_code == 0, res.output
    race = attr(results_of(tmp_path), "race")
    assert race["reference"] == "B"
    assert {c["reference"] for c in race["comparisons"]} == {"B"}
    assert {c["group"] for c in race["comparisons"]} == {"A", "C"}


def test_junit_format(tmp_path: Path) -> None:
    policy = tmp_path / "g.toml"
    policy.write_text(
        '[gate]\nmetrics = ["tpr", "fpr", "auroc"]\nmax_abs_difference = 0.05\nmin_ratio = 0.8\n'
    )
    res = audit(
        tmp_path, "--predictions", str(one_file(tmp_path)), "--attribute", "sex", "--attribute", "race",
        "--format", "html,md,json,junit", "--gate", str(policy), "--quiet",
    )  # fmt: skip
    results = results_of(tmp_path)
    gate = results["gate"]
    assert res.exit_code == (0 if gate["passed"] else 1), res.output
    # 2 comparisons for race + 1 for sex, 3 metrics, 2 rules.
    assert len(gate["checks"]) == 3 * 3 * 2
    root = ET.parse(tmp_path / "out" / "junit.xml").getroot()
    suite = root.find("testsuite")
    cases_ = suite.findall("testcase")
    assert len(cases_) == len(gate["checks"]) == int(suite.get("tests"))
    # A deciding check that fails, or is inconclusive under on_inconclusive = "fail" (the
    # default), is a <failure>: both keep the release back (docs/ci.md).
    failed = [c for c in gate["checks"] if c["decides"] and c["status"] in ("fail", "inconclusive")]
    assert int(suite.get("failures")) == len(failed) == sum(c.find("failure") is not None for c in cases_)
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {"junit.xml", "report.html", "report.md"}


def test_format_subset_still_writes_results_and_manifest(tmp_path: Path) -> None:
    res = audit(
        tmp_path, "--predictions", str(one_file(tmp_path)), "--attribute", "sex", "--format", "md", "--quiet"
    )
    assert res.exit_code == 0, res.output
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "results.json",
        "model_card.json",
        "report.md",
        "manifest.csv",
    }


def test_json_to_stdout(tmp_path: Path) -> None:
    res = audit(tmp_path, "--predictions", str(one_file(tmp_path)), "--attribute", "sex", "--json")
    assert res.exit_code == 0, res.output
    printed = json.loads(res.stdout)
    validate_results(printed)
    assert printed == results_of(tmp_path)


def test_json_to_stdout_stays_parseable_with_warnings(tmp_path: Path) -> None:
    rows = cases()
    preds = write_csv(
        tmp_path / "p.csv",
        ["sop_instance_uid", "label", "score", "sex"],
        [[r["id"], r["label"], "" if i == 0 else r["score"], r["sex"]] for i, r in enumerate(rows)],
    )
    res = audit(tmp_path, "--predictions", str(preds), "--attribute", "sex", "--json")
    assert res.exit_code == 0, res.output
    printed = json.loads(res.stdout)
    assert printed["inputs"]["excluded"] == [{"reason": "p.csv: missing score", "count": 1}]


def test_quiet_prints_no_table(tmp_path: Path) -> None:
    res = audit(tmp_path, "--predictions", str(one_file(tmp_path)), "--attribute", "sex", "--quiet")
    assert res.exit_code == 0, res.output
    assert res.stdout == ""
    assert "reference:" not in res.output
    assert (tmp_path / "out" / "report.html").is_file()


# --- bad input: exit code 2 with file, column and row ---------------------------------


def bad_scores_file(tmp_path: Path, column: str, row: int, value: str) -> Path:
    """one_file with `value` put into `column` at spreadsheet row `row` (header = row 1)."""
    rows = cases()
    header = ["sop_instance_uid", "label", "score", "sex", "race"]
    body = [[r["id"], r["label"], r["score"], r["sex"], r["race"]] for r in rows]
    body[row - 2][header.index(column)] = value
    return write_csv(tmp_path / "bad.csv", header, body)


@pytest.mark.parametrize(
    ("column", "row", "value", "needle"),
    [
        ("label", 7, "2", "binary"),
        ("label", 2, "maybe", "not a number"),
        ("score", 9, "1.5", "outside [0, 1]"),
        ("score", 3, "-0.2", "outside [0, 1]"),
        ("score", 12, "abc", "not a number"),
    ],
)
def test_bad_value_names_file_column_row(
    tmp_path: Path, column: str, row: int, value: str, needle: str
) -> None:
    path = bad_scores_file(tmp_path, column, row, value)
    res = audit(tmp_path, "--predictions", str(path), "--attribute", "sex")
    assert res.exit_code == 2, res.output
    msg = squash(res.stderr)
    assert squash(f"bad.csv, column '{column}', row {row}:") in msg
    assert squash(needle) in msg
    assert squash(f"'{value}'") in msg or value in msg
    assert not (tmp_path / "out" / "results.json").exists()


def test_wrong_score_column_lists_columns(tmp_path: Path) -> None:
    res = audit(
        tmp_path, "--predictions", str(one_file(tmp_path)), "--attribute", "sex", "--score-column", "nope"
    )
    assert res.exit_code == 2
    msg = squash(res.stderr)
    assert "all.csv" in msg and "column'nope'" in msg
    assert squash("'sop_instance_uid', 'label', 'score', 'sex', 'race'") in msg
    assert "--score-column" in msg


def test_wrong_attribute_in_same_file(tmp_path: Path) -> None:
    res = audit(tmp_path, "--predictions", str(one_file(tmp_path)), "--attribute", "ethnicity")
    assert res.exit_code == 2
    msg = squash(res.stderr)
    assert "all.csv" in msg and "column'ethnicity'" in msg and "--attribute" in msg


def test_wrong_attribute_names_the_demographics_file(tmp_path: Path) -> None:
    preds, demo = split_files(tmp_path)
    res = audit(
        tmp_path, "--predictions", str(preds), "--demographics", str(demo), "--attribute", "ethnicity"
    )
    assert res.exit_code == 2
    msg = squash(res.stderr)
    assert "demo.csv" in msg and "column'ethnicity'" in msg
    assert squash("'sex', 'race'") in msg


def test_missing_predictions_file(tmp_path: Path) -> None:
    res = audit(tmp_path, "--predictions", str(tmp_path / "absent.csv"), "--attribute", "sex")
    assert res.exit_code == 2
    assert "absent.csv" in squash(res.stderr)
    assert "notfound" in squash(res.stderr)


def test_no_predictions_flag(tmp_path: Path) -> None:
    res = audit(tmp_path, "--attribute", "sex")
    assert res.exit_code == 2
    assert "--predictions" in res.stderr


def test_unknown_format(tmp_path: Path) -> None:
    res = audit(
        tmp_path, "--predictions", str(one_file(tmp_path)), "--attribute", "sex", "--format", "html,pdf"
    )
    assert res.exit_code == 2
    assert "pdf" in res.stderr and "junit" in res.stderr


def test_unknown_reference_group_names_groups(tmp_path: Path) -> None:
    res = audit(
        tmp_path, "--predictions", str(one_file(tmp_path)), "--attribute", "race", "--reference", "race=Z"
    )
    assert res.exit_code == 2
    msg = squash(res.stderr)
    assert "race=Z" in msg and "A,B,C" in msg


def test_reference_to_unknown_attribute(tmp_path: Path) -> None:
    res = audit(
        tmp_path, "--predictions", str(one_file(tmp_path)), "--attribute", "race", "--reference", "age=old"
    )
    assert res.exit_code == 2
    assert "age" in res.stderr


def test_no_shared_id_column(tmp_path: Path) -> None:
    rows = cases()
    preds = write_csv(
        tmp_path / "p.csv", ["image", "label", "score"], [[r["id"], r["label"], r["score"]] for r in rows]
    )
    demo = write_csv(tmp_path / "d.csv", ["subject", "sex"], [[r["id"], r["sex"]] for r in rows])
    res = audit(tmp_path, "--predictions", str(preds), "--demographics", str(demo), "--attribute", "sex")
    assert res.exit_code == 2
    msg = squash(res.stderr)
    assert "--id-column" in msg
    assert "p.csv" in msg and "d.csv" in msg


def test_id_column_missing_from_one_file(tmp_path: Path) -> None:
    preds, demo = split_files(tmp_path)
    res = audit(
        tmp_path,
        "--predictions",
        str(preds),
        "--demographics",
        str(demo),
        "--attribute",
        "sex",
        "--id-column",
        "accession",
    )
    assert res.exit_code == 2
    msg = squash(res.stderr)
    assert "column'accession'" in msg and "--id-column" in msg


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ('[gate]\nmetrics = ["tpr", "equal_opportunity"]\nmax_abs_difference = 0.05\n', "equal_opportunity"),
        ('[gate]\nmetrics = ["tpr"\n', "TOML"),
        ('[gate]\nmetrics = ["tpr"]\nmin_ratio = 1.2\n', "min_ratio"),
    ],
)
def test_bad_gate_policy(tmp_path: Path, body: str, needle: str) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(body)
    res = audit(
        tmp_path, "--predictions", str(one_file(tmp_path)), "--attribute", "sex", "--gate", str(policy)
    )
    assert res.exit_code == 2
    msg = squash(res.stderr)
    assert "policy.toml" in msg and squash(needle) in msg


@pytest.mark.parametrize(
    "flags",
    [
        ["--ci-level", "95"],
        ["--correction", "sidak"],
        ["--ci-method", "basic"],
        ["--threshold", "2"],
        ["--intersect", "sex"],
    ],
)
def test_bad_settings_exit_2(tmp_path: Path, flags: list[str]) -> None:
    res = audit(tmp_path, "--predictions", str(one_file(tmp_path)), "--attribute", "sex", *flags)
    assert res.exit_code == 2
    assert flags[0] in res.stderr


# --- the real console script ------------------------------------------------------------


def test_console_script(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "fairaudit"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "fairaudit"]
    version = subprocess.run([*cmd, "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0
    assert version.stdout.strip() == f"fairaudit {__version__}"

    preds, demo = split_files(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.run(
        [*cmd, "audit", "--predictions", str(preds), "--demographics", str(demo), "--attribute", "sex",
         "--attribute", "race", "--out", str(out), "--bootstrap", "100", "-v"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "sex (reference:" in proc.stdout  # -v: the tables
    assert {p.name for p in out.iterdir()} == {
        "results.json",
        "model_card.json",
        "report.md",
        "report.html",
        "manifest.csv",
    }
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    validate_results(results)
    assert results["inputs"]["n_included"] == N
    assert results["command"].startswith("fairaudit audit --predictions")

    bad = subprocess.run([*cmd, "audit", "--predictions", str(tmp_path / "absent.csv"), "--attribute", "sex"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 2
    assert "absent.csv" in squash(bad.stderr)


def test_missing_as_group(tmp_path: Path) -> None:
    rows = cases()
    preds = write_csv(
        tmp_path / "p.csv",
        ["sop_instance_uid", "label", "score", "sex"],
        [[r["id"], r["label"], r["score"], "" if i < 5 else r["sex"]] for i, r in enumerate(rows)],
    )
    res = audit(tmp_path, "--predictions", str(preds), "--attribute", "sex", "--quiet", out="dropped")
    assert res.exit_code == 0, res.output
    dropped = results_of(tmp_path, "dropped")
    # Without a sex, a record stays in the audit and leaves the sex groups only (issue 21).
    assert dropped["inputs"]["n_included"] == N and dropped["overall"]["n"] == N
    assert dropped["inputs"]["excluded"] == []
    assert dropped["inputs"]["missing_attributes"] == {"sex": 5}
    sex = dropped["attributes"][0]
    assert sex["n_missing"] == 5 and sum(g["n"] for g in sex["groups"]) == N - 5

    res = audit(
        tmp_path,
        "--predictions",
        str(preds),
        "--attribute",
        "sex",
        "--missing-as-group",
        "--quiet",
        out="kept",
    )
    assert res.exit_code == 0, res.output
    kept = results_of(tmp_path, "kept")
    assert kept["inputs"]["n_included"] == N
    assert kept["inputs"]["excluded"] == []
    groups = {g["group"]: g for g in attr(kept, "sex")["groups"]}
    assert groups["(missing)"]["n"] == 5
    assert groups["(missing)"]["small"] is True


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            ["--label-column", "finding", "--attribute", "nosuch"],
            "demographics.csv, column 'nosuch': no column",
        ),
        (["--label-column", "nosuch", "--attribute", "sex"], "labels.csv, column 'nosuch': no column"),
        (["--label-column", "finding", "--attribute", "sex", "--intersect", "sex,nosuch"], "column 'nosuch'"),
    ],
)
def test_model_run_checks_columns_before_the_model(tmp_path: Path, extra: list[str], expected: str) -> None:
    """A wrong --attribute or --label-column (issue 21) fails before the model is loaded: the
    model named here does not exist, so reaching it would be another error."""
    from _helpers.paths import SAMPLE

    res = cli.invoke(
        ["audit", str(SAMPLE / "images"), "--model", str(tmp_path / "absent.onnx"),
         "--demographics", str(SAMPLE / "demographics.csv"), "--labels", str(SAMPLE / "labels.csv"),
         *extra, "--out", str(tmp_path / "out")]
    )  # fmt: skip
    assert res.exit_code == 2, res.output
    assert squash(expected) in squash(res.output) and "absent.onnx" not in res.output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_id_columns_spelled_the_dicom_way_are_matched(tmp_path: Path) -> None:
    """Issue 21: `SOPInstanceUID` in one file and `sop_instance_uid` in another are one id
    column (case, `_`, `-` and spaces ignored when the match is unique); the audit equals the
    one with the files as shipped."""
    from _helpers.paths import SAMPLE

    preds = (SAMPLE / "predictions.csv").read_text().splitlines()
    preds[0] = preds[0].replace("sop_instance_uid", "SOPInstanceUID")
    (tmp_path / "p.csv").write_text("\n".join(preds) + "\n")
    demo = (SAMPLE / "demographics.csv").read_text().splitlines()
    demo[0] = demo[0].replace("patient_id", "PatientID")
    (tmp_path / "d.csv").write_text("\n".join(demo) + "\n")
    runs = {}
    for name, p, d in (("dicom", tmp_path / "p.csv", tmp_path / "d.csv"),
                       ("plain", SAMPLE / "predictions.csv", SAMPLE / "demographics.csv")):  # fmt: skip
        res = cli.invoke(["audit", "--predictions", str(p), "--demographics", str(d), "--attribute", "sex",
                          "--bootstrap", "50", "--quiet", "--salt", "s", "--out", str(tmp_path / name)])  # fmt: skip
        assert res.exit_code in (0, 1), res.output
        runs[name] = json.loads((tmp_path / name / "results.json").read_text())
    assert runs["dicom"]["attributes"] == runs["plain"]["attributes"]
    assert (
        runs["dicom"]["config"]["resampling_unit"] == runs["plain"]["config"]["resampling_unit"] == "patient"
    )


def test_results_record_the_label_and_score_columns(tmp_path: Path) -> None:
    """Issue 21: results.json says which input and column the labels and scores came from."""
    from _helpers.paths import SAMPLE

    res = cli.invoke(["audit", "--predictions", str(SAMPLE / "predictions.csv"), "--labels",
                      str(SAMPLE / "labels.csv"), "--label-column", "Finding", "--demographics",
                      str(SAMPLE / "demographics.csv"), "--attribute", "sex", "--bootstrap", "50",
                      "--quiet", "--out", str(tmp_path / "o")])  # fmt: skip
    assert res.exit_code in (0, 1), res.output
    config = json.loads((tmp_path / "o" / "results.json").read_text())["config"]
    assert config["label_column"] == {"input": "labels", "column": "finding"}  # the file's spelling
    assert config["score_column"] == {"input": "predictions", "column": "score", "kind": "score"}


def test_bins_cut_a_numeric_csv_column_into_groups(tmp_path: Path) -> None:
    """Issue 21: `--bins age=40,65` on a demographics column (it was refused: only dicom:
    attributes were binned). Groups are counted by hand from the file; a value that is not a
    number is missing (excluded, with the reason); results.json records the edges."""
    import numpy as np
    import pandas as pd

    from _helpers.paths import SAMPLE

    demo = pd.read_csv(SAMPLE / "demographics.csv", dtype=str)
    ages = np.random.default_rng(0).integers(18, 91, size=len(demo))
    demo["age"] = ages.astype(str)
    demo.loc[3, "age"] = "unknown"
    demo.to_csv(tmp_path / "d.csv", index=False)
    res = cli.invoke(["audit", "--predictions", str(SAMPLE / "predictions.csv"), "--demographics",
                      str(tmp_path / "d.csv"), "--attribute", "age", "--intersect", "sex,age", "--bins",
                      "age=40,65", "--bootstrap", "50", "--quiet", "--out", str(tmp_path / "o")])  # fmt: skip
    assert res.exit_code in (0, 1), res.output
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    valid = np.delete(ages, 3)
    want = {"< 40": int((valid < 40).sum()), "[40, 65)": int(((valid >= 40) & (valid < 65)).sum()),
            ">= 65": int((valid >= 65).sum())}  # fmt: skip
    got = {g["group"]: g["n"] for g in results["attributes"][0]["groups"]}
    assert got == want
    # the record whose age is not a number stays in the audit, in no age group (issue 21, point 9)
    assert results["inputs"]["missing_attributes"] == {"age": 1, "sex×age": 1}
    (record,) = results["inputs"]["binned_attributes"]
    assert record["edges"] == [40.0, 65.0] and record["n_unparsable_values"] == 1
    # a --bins target that is not audited, and edges that are not numbers, are usage errors
    for bins, needle in (("site=1,2", "not among the audited attributes"), ("age=a,b", "numbers")):
        res = cli.invoke(["audit", "--predictions", str(SAMPLE / "predictions.csv"), "--demographics",
                          str(tmp_path / "d.csv"), "--attribute", "age", "--bins", bins, "--out",
                          str(tmp_path / "x")])  # fmt: skip
        assert res.exit_code == 2 and squash(needle) in squash(res.output), res.output


def test_quantile_bins_cut_at_the_audited_records_quantiles(tmp_path: Path) -> None:
    """`--bins age=quantiles:4` (issue 21, point 5): edges = numpy's quartiles of the
    records' ages; four groups of about a quarter each, counted by hand."""
    import numpy as np
    import pandas as pd

    from _helpers.paths import SAMPLE

    demo = pd.read_csv(SAMPLE / "demographics.csv", dtype=str)
    ages = np.random.default_rng(1).normal(55, 15, size=len(demo)).round(1)
    demo["age"] = ages.astype(str)
    demo.to_csv(tmp_path / "d.csv", index=False)
    res = cli.invoke(["audit", "--predictions", str(SAMPLE / "predictions.csv"), "--demographics",
                      str(tmp_path / "d.csv"), "--attribute", "age", "--bins", "age=quantiles:4",
                      "--bootstrap", "50", "--quiet", "--out", str(tmp_path / "o")])  # fmt: skip
    assert res.exit_code in (0, 1), res.output
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    (record,) = results["inputs"]["binned_attributes"]
    q = np.quantile(ages, [0.25, 0.5, 0.75])
    assert record["quantiles"] == 4 and record["edges"] == pytest.approx(q.tolist())
    got = {g["group"]: g["n"] for g in results["attributes"][0]["groups"]}
    assert sorted(got.values()) == sorted(
        np.bincount(np.searchsorted(q, ages, side="right"), minlength=4).tolist()
    )
    assert all(abs(n - len(ages) / 4) <= 2 for n in got.values())
    for bins, needle in (("age=quantiles:1", "2 to 20"), ("dicom:KVP=quantiles:3", "CSV columns")):
        res = cli.invoke(["audit", "--predictions", str(SAMPLE / "predictions.csv"), "--demographics",
                          str(tmp_path / "d.csv"), "--attribute", "age", "--bins", bins, "--out",
                          str(tmp_path / "x")])  # fmt: skip
        assert res.exit_code == 2 and squash(needle) in squash(res.output), res.output


def test_merge_small_groups_pools_groups_below_the_minimum(tmp_path: Path) -> None:
    """Issue 21: with many small sites every group is small; --merge-small-groups pools those
    under --min-group-size into 'other' (counts by hand from the file), in intersections too,
    and results.json lists what was pooled."""
    import pandas as pd

    from _helpers.paths import SAMPLE

    demo = pd.read_csv(SAMPLE / "demographics.csv", dtype=str)
    demo["hospital"] = [
        "H01" if i % 2 == 0 else "H02" if i % 4 == 1 else f"H{3 + i % 17:02d}" for i in range(len(demo))
    ]
    demo.to_csv(tmp_path / "d.csv", index=False)
    res = cli.invoke(["audit", "--predictions", str(SAMPLE / "predictions.csv"), "--demographics",
                      str(tmp_path / "d.csv"), "--attribute", "hospital", "--intersect", "sex,hospital",
                      "--merge-small-groups", "--min-group-size", "30", "--bootstrap", "50", "--quiet",
                      "--out", str(tmp_path / "o")])  # fmt: skip
    assert res.exit_code in (0, 1), res.output
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    counts = demo["hospital"].value_counts()
    small = sorted(g for g, k in counts.items() if k < 30)
    want = {g: int(k) for g, k in counts.items() if k >= 30} | {"other": int(counts[small].sum())}
    assert {g["group"]: g["n"] for g in results["attributes"][0]["groups"]} == want
    (record,) = results["inputs"]["merged_groups"]
    assert record["groups"] == small and record["n"] == want["other"] and record["below"] == 30
    inter = next(a for a in results["attributes"] if a["name"] == "sex×hospital")
    assert {g["group"].split("×")[1] for g in inter["groups"]} == set(want)
    res = cli.invoke(["audit", "--pred-masks", str(tmp_path), "--masks", str(tmp_path), "--task", "segmentation",
                      "--demographics", str(tmp_path / "d.csv"), "--attribute", "sex", "--merge-small-groups",
                      "--out", str(tmp_path / "s")])  # fmt: skip
    assert res.exit_code == 2 and squash("classification audits only") in squash(res.output), res.output


def test_a_small_reference_is_said_and_cannot_pass_the_gate(tmp_path: Path) -> None:
    """Issue 21, point 5: with 16 hospitals of 20 records every group is small: the warning
    names the three ways out, every comparison is small, and a gate on them cannot pass."""
    import pandas as pd

    from _helpers.paths import SAMPLE

    demo = pd.read_csv(SAMPLE / "demographics.csv", dtype=str)
    demo["hospital"] = [f"H{i % 16:02d}" for i in range(len(demo))]
    demo.to_csv(tmp_path / "d.csv", index=False)
    policy = tmp_path / "p.toml"
    policy.write_text('[gate]\nmetrics = ["tpr"]\nmax_abs_difference = 0.9\n')
    res = cli.invoke(["audit", "--predictions", str(SAMPLE / "predictions.csv"), "--demographics",
                      str(tmp_path / "d.csv"), "--attribute", "hospital", "--bootstrap", "50", "--gate", str(policy),
                      "--out", str(tmp_path / "o")])  # fmt: skip
    assert res.exit_code == 1, res.output
    text = squash(res.output)
    for needle in ("every group of 'hospital' has fewer than --min-group-size 30 records", "(the largest, 'H00', has 20)",
                   "--merge-small-groups", "--reference hospital=GROUP", "lower --min-group-size"):  # fmt: skip
        assert squash(needle) in text, res.output
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    assert all(g["small"] for g in results["attributes"][0]["groups"])
    assert all("note" in c for c in results["attributes"][0]["comparisons"])  # every comparison small
    assert results["gate"]["outcome"] == "inconclusive" and results["gate"]["decided"] == 0


def test_positive_label_and_percent_scores_read_as_the_0_1_file(tmp_path: Path) -> None:
    """Issue 21, point 4: labels malignant/benign with --positive-label and scores in percent
    with --score-scale percent give the audit of the same file written as 0/1 and [0, 1]."""
    import pandas as pd

    from _helpers.paths import SAMPLE

    preds = pd.read_csv(SAMPLE / "predictions.csv", dtype=str)
    words = preds.assign(label=preds["label"].map({"1": "Malignant", "0": "benign"}),
                         score=(preds["score"].astype(float) * 100).map(repr))  # fmt: skip
    words.to_csv(tmp_path / "w.csv", index=False)
    common = ["--demographics", str(SAMPLE / "demographics.csv"), "--attribute", "sex", "--bootstrap", "50",
              "--quiet", "--salt", "s"]  # fmt: skip
    runs = {}
    for name, extra in (("words", [str(tmp_path / "w.csv"), "--positive-label", "malignant", "--score-scale",
                                   "percent"]), ("plain", [str(SAMPLE / "predictions.csv")])):  # fmt: skip
        res = cli.invoke(["audit", "--predictions", *extra, *common, "--out", str(tmp_path / name)])
        assert res.exit_code in (0, 1), res.output
        runs[name] = json.loads((tmp_path / name / "results.json").read_text())
    for metric in ("tpr", "fpr", "auroc"):
        assert (
            runs["words"]["overall"]["metrics"][metric]["value"]
            == runs["plain"]["overall"]["metrics"][metric]["value"]
        )
    assert runs["words"]["overall"]["metrics"]["brier"]["value"] == pytest.approx(
        runs["plain"]["overall"]["metrics"]["brier"]["value"], abs=1e-12
    )
    # a third label value is refused, naming its row
    words.loc[4, "label"] = "unknown"
    words.to_csv(tmp_path / "w3.csv", index=False)
    res = cli.invoke(["audit", "--predictions", str(tmp_path / "w3.csv"), "--positive-label", "malignant",
                      "--score-scale", "percent", *common, "--out", str(tmp_path / "x")])  # fmt: skip
    assert res.exit_code == 2 and squash("row 6") in squash(res.output), res.output
    assert squash("holds more than two values") in squash(res.output)


def test_masks_named_by_no_id_are_refused_before_the_model_runs(tmp_path: Path, monkeypatch) -> None:
    """Issue 21, point 8: a ground-truth folder whose masks no demographics id names fails
    at once (exit 2, the column and an example named), before the model is loaded."""
    import shutil

    import fairaudit.models.loading as loading

    from _helpers.paths import SAMPLE

    def never(*args, **kwargs):  # the model must not be loaded
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(loading, "load_predictor", never)
    (tmp_path / "masks").mkdir()
    shutil.copy(next((SAMPLE / "masks").glob("*.png")), tmp_path / "masks" / "wrongname.png")
    res = cli.invoke(["audit", str(SAMPLE / "images"), "--task", "segmentation", "--model",
                      "bundled:cxr_lung_segmenter", "--masks", str(tmp_path / "masks"), "--demographics",
                      str(SAMPLE / "demographics.csv"), "--attribute", "race", "--out", str(tmp_path / "o")])  # fmt: skip
    assert res.exit_code == 2, res.output
    assert squash("no mask in --masks is named by an id of the 'sop_instance_uid' column") in squash(
        res.output
    )
    assert squash("e.g. 'wrongname'") in squash(res.output)
    assert not (tmp_path / "o").exists()
