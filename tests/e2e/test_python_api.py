"""The Python API (docs/python-api.md): the same numbers as the CLI, views that agree with a
hand count, a gate that writes nothing, and `save` writing the CLI's files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import fairaudit

from _helpers.cli import invoke
from _helpers.paths import EXAMPLE_POLICY, SAMPLE

B = 300  # bootstrap resamples: enough for the percentile intervals of the mean metrics
OPTIONS = dict(attributes=["sex", "race"], intersect=[("sex", "race")], bootstrap=B, seed=3, salt="api-test")


def _cli(out: Path, *extra: object) -> dict:
    args = [
        "audit",
        "--predictions",
        SAMPLE / "predictions.csv",
        "--demographics",
        SAMPLE / "demographics.csv",
    ]
    args += ["--attribute", "sex", "--attribute", "race", "--intersect", "sex,race", "--bootstrap", B]
    args += ["--seed", 3, "--salt", "api-test", "--quiet", "--format", "json,md,junit", "--out", out, *extra]
    result = invoke(args)
    assert result.exit_code in (0, 1), result.output
    return json.loads((out / "results.json").read_text(encoding="utf-8"))


def _strip(results: dict) -> dict:
    return {k: v for k, v in results.items() if k not in ("created", "command")}


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.read_csv(SAMPLE / "predictions.csv"), pd.read_csv(SAMPLE / "demographics.csv")


@pytest.fixture(scope="module")
def report(frames: tuple[pd.DataFrame, pd.DataFrame]) -> fairaudit.AuditReport:
    predictions, demographics = frames
    return fairaudit.audit(predictions, demographics=demographics, **OPTIONS)


def test_to_dict_is_the_cli_results_json(tmp_path: Path) -> None:
    """Paths in, the CLI's results.json out (apart from when and how it was called), with
    --discover and the gate; and `save` writes the CLI's manifest.csv and junit.xml."""
    cli = _cli(tmp_path / "cli", "--discover", "--gate", EXAMPLE_POLICY)
    report = fairaudit.audit(
        str(SAMPLE / "predictions.csv"), demographics=SAMPLE / "demographics.csv", discover=True,
        gate=EXAMPLE_POLICY, **OPTIONS,
    )  # fmt: skip
    assert _strip(report.to_dict()) == _strip(cli)
    assert report.exit_code == 1 and report.passed is False  # the sample gate does not pass
    files = report.save(tmp_path / "api", formats=("json", "md", "junit"))
    for name in ("manifest.csv", "junit.xml"):
        assert (tmp_path / "api" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes(), name
    assert json.loads(files["json"].read_text(encoding="utf-8")) == report.to_dict()


def test_dataframes_give_the_numbers_of_their_csv_files(
    report: fairaudit.AuditReport, tmp_path: Path
) -> None:
    cli = _cli(tmp_path / "cli")
    ours = report.to_dict()
    for key in ("config", "overall", "attributes", "consistency"):
        assert ours[key] == cli[key], key
    assert ours["inputs"] == cli["inputs"]
    assert ours["provenance"]["input_files"] == {}  # DataFrames have no file to hash


def test_by_group_agrees_with_a_hand_count(report: fairaudit.AuditReport, frames) -> None:
    predictions, demographics = frames
    joined = predictions.merge(demographics, on="sop_instance_uid")
    table = report.by_group("race").set_index("group")
    for race, rows in joined.groupby("race"):
        positives = rows[rows["label"] == 1]
        negatives = rows[rows["label"] == 0]
        assert table.loc[race, "n"] == len(rows)
        assert table.loc[race, "n_positive"] == len(positives)
        assert table.loc[race, "tpr"] == pytest.approx(np.mean(positives["score"] >= 0.5))
        assert table.loc[race, "fpr"] == pytest.approx(np.mean(negatives["score"] >= 0.5))
        assert table.loc[race, "tpr_ci_low"] <= table.loc[race, "tpr"] <= table.loc[race, "tpr_ci_high"]
    assert table["reference"].sum() == 1
    assert set(report.by_group("sex×race")["group"]) == {
        f"{s}×{r}" for s, r in joined[["sex", "race"]].drop_duplicates().itertuples(index=False)
    }
    with pytest.raises(KeyError, match="not an audited attribute"):
        report.by_group("age_group")


def test_comparisons_are_group_minus_reference(report: fairaudit.AuditReport) -> None:
    rows = report.comparisons()
    assert len(rows) == sum(len(a["comparisons"]) for a in report.to_dict()["attributes"])
    groups = report.by_group("race").set_index("group")
    ref = groups.index[groups["reference"]][0]
    tpr = rows[(rows["attribute"] == "race") & (rows["metric"] == "tpr")].set_index("group")
    for group in tpr.index:
        expected = groups.loc[group, "tpr"] - groups.loc[ref, "tpr"]
        assert tpr.loc[group, "difference"] == pytest.approx(expected)
        assert tpr.loc[group, "reference"] == ref
    assert (rows["p_adjusted"].dropna() >= rows.loc[rows["p_adjusted"].notna(), "p_value"] - 1e-12).all()


def test_gate_writes_nothing_and_leaves_the_report(report, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    before = report.to_dict()
    outcome = report.gate(EXAMPLE_POLICY)
    assert outcome["outcome"] in ("pass", "fail", "inconclusive")
    assert outcome["decided"] + outcome["undecided"] == len(outcome["checks"]) > 0
    assert report.to_dict() == before and report.gate_outcome is None
    assert list(tmp_path.iterdir()) == []
    # The same judgement as an audit that records the gate.
    recorded = fairaudit.audit(
        SAMPLE / "predictions.csv", demographics=SAMPLE / "demographics.csv", gate=EXAMPLE_POLICY, **OPTIONS
    )
    assert recorded.gate_outcome == outcome


def test_load_reads_a_saved_report_back(report: fairaudit.AuditReport, tmp_path: Path) -> None:
    report.save(tmp_path / "out", formats=("json",))
    loaded = fairaudit.load(tmp_path / "out" / "results.json")
    assert loaded.to_dict() == report.to_dict()
    pd.testing.assert_frame_equal(loaded.by_group("race"), report.by_group("race"))
    with pytest.raises(fairaudit.InputError, match="rerun the audit"):
        loaded.gate(EXAMPLE_POLICY)


def test_bad_input_names_the_argument_and_the_frame(frames) -> None:
    predictions, demographics = frames
    with pytest.raises(fairaudit.InputError) as err:
        fairaudit.audit(predictions, demographics=demographics, attributes=["ethnicity"], bootstrap=B)
    assert "ethnicity" in str(err.value) and "demographics (DataFrame)" in str(err.value)
    bad = predictions.assign(score=predictions["score"] * 100)
    with pytest.raises(fairaudit.InputError, match="predictions \\(DataFrame\\)"):
        fairaudit.audit(bad, demographics=demographics, attributes=["race"], bootstrap=B)


def test_missing_values_in_a_frame_are_missing_as_empty_cells_are(frames, tmp_path: Path) -> None:
    """NaN in a DataFrame is a missing value, as an empty CSV cell is: the record stays in the
    audit and leaves the race groups (issue 21)."""
    predictions, demographics = frames
    holes = demographics.copy()
    holes.loc[holes.index[:7], "race"] = np.nan
    report = fairaudit.audit(predictions, demographics=holes, attributes=["race"], bootstrap=B, seed=1)
    assert report.data["inputs"]["n_included"] == len(predictions)
    assert report.data["inputs"]["missing_attributes"] == {"race": 7}
    assert sum(g["n"] for g in report.data["attributes"][0]["groups"]) == len(predictions) - 7
    csv = tmp_path / "demo.csv"
    holes.to_csv(csv, index=False)
    from_file = fairaudit.audit(predictions, demographics=csv, attributes=["race"], bootstrap=B, seed=1)
    assert from_file.data["attributes"] == report.data["attributes"]


def test_segmentation_from_folders_or_arrays_agree(tmp_path: Path) -> None:
    from PIL import Image

    masks = sorted((SAMPLE / "masks").glob("*.png"))
    preds = {p.stem: np.asarray(Image.open(p)) for p in masks}
    options = dict(
        demographics=SAMPLE / "demographics.csv", attributes=["race"], spacing=(0.5, 0.5), bootstrap=100
    )
    from_folder = fairaudit.audit_segmentation(SAMPLE / "masks", SAMPLE / "masks", **options)
    from_arrays = fairaudit.audit_segmentation(SAMPLE / "masks", preds, **options)
    assert from_folder.task == "segmentation"
    assert from_folder.data["attributes"] == from_arrays.data["attributes"]
    dice = from_folder.by_group("race")["dice"]
    assert np.allclose(dice, 1.0)  # the ground truth against itself
    files = from_folder.save(tmp_path / "seg", formats=("json",))
    cases = pd.read_csv(files["cases"])
    assert len(cases) == from_folder.data["inputs"]["n_included"]


def test_import_stays_light() -> None:
    """`import fairaudit` loads neither pandas nor torch: the API is imported on first use."""
    code = "import sys, fairaudit; print(sorted(m for m in ('pandas', 'torch', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_add_review_records_what_the_cli_flags_record(tmp_path: Path) -> None:
    """AuditReport.add_review = --title, --context and --reference-population: the title and
    context in results.json and report.md, and the share test equal to scipy's chisquare on
    the group counts (by_group) against the reference shares."""
    from scipy import stats

    import fairaudit

    report = fairaudit.audit(
        SAMPLE / "predictions.csv",
        demographics=SAMPLE / "demographics.csv",
        attributes=["sex"],
        bootstrap=100,
    )
    (tmp_path / "ctx.md").write_text("Intended use: triage. <b>not bold</b>\n", encoding="utf-8")
    (tmp_path / "ref.csv").write_text("attribute,group,share\nsex,F,0.6\nsex,M,0.4\n", encoding="utf-8")
    assert report.add_review("Release 2", tmp_path / "ctx.md", tmp_path / "ref.csv") is report
    data = report.to_dict()
    assert data["title"] == "Release 2" and data["context"].startswith("Intended use: triage.")
    counts = report.by_group("sex").set_index("group")["n"]
    n = int(counts.sum())
    expected = stats.chisquare([counts["F"], counts["M"]], [0.6 * n, 0.4 * n])
    [sex] = data["population"]["reference"]["attributes"]
    assert sex["p_value"] == pytest.approx(expected.pvalue, rel=1e-12)
    report.save(tmp_path / "out", formats=("json", "md"))
    md = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert md.startswith("# Release 2") and "<b>not bold</b>" not in md
    with pytest.raises(fairaudit.InputError, match="ref_bad.csv"):
        (tmp_path / "ref_bad.csv").write_text("attribute,group\nsex,F\n", encoding="utf-8")
        report.add_review(reference_population=tmp_path / "ref_bad.csv")
