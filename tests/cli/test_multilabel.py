"""Multi-label audits (`--findings`, issue 21 point 1) against scikit-learn, statsmodels and
hand counts on the same columns.

A CheXpert-like cohort: three finding columns with 1 / 0 / -1 (uncertain) / blank labels,
a "No Finding" column, scores `score_<finding>` in the predictions (one finding's under
another name), demographics with sex, race, age and patient ids.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import brier_score_loss, recall_score, roc_auc_score
from statsmodels.stats.multitest import multipletests

from fairaudit.schema import validate_results

from _helpers import cli

FINDINGS = ("Atelectasis", "Edema", "Pleural Effusion")


def cohort(tmp: Path, n: int = 240, seed: int = 3) -> dict[str, Path]:
    """Labels, predictions and demographics CSVs of `n` records (2 per patient)."""
    rng = np.random.default_rng(seed)
    ids = [f"img{i:04d}" for i in range(n)]
    labels = {"Path": ids, "view": rng.choice(["AP", "PA"], n)}
    preds = {"Path": ids}
    for j, f in enumerate(FINDINGS):
        y = (rng.random(n) < 0.3 + 0.1 * j).astype(int)
        z = np.where(y == 1, 1.0, -1.0) + rng.normal(0, 1.2, n)
        col = y.astype(object)
        col[rng.random(n) < 0.1] = -1
        col[rng.random(n) < 0.05] = ""
        labels[f] = col
        name = "prob_effusion" if f == "Pleural Effusion" else f"score_{f}"
        preds[name] = np.round(1 / (1 + np.exp(-z)), 4)
    files = {
        "labels": tmp / "labels.csv",
        "predictions": tmp / "predictions.csv",
        "demographics": tmp / "demographics.csv",
    }
    pd.DataFrame(labels).to_csv(files["labels"], index=False)
    pd.DataFrame(preds).to_csv(files["predictions"], index=False)
    pd.DataFrame(
        {
            "Path": ids,
            "patient_id": [f"p{i // 2}" for i in range(n)],
            "sex": rng.choice(["F", "M"], n),
            "age": rng.integers(20, 90, n),
        }
    ).to_csv(files["demographics"], index=False)
    return files


def run(tmp: Path, files: dict[str, Path], *extra: object, code: int | None = 0, effusion: bool = True):
    """The audit of the cohort; `effusion`: name Pleural Effusion's score column (an error
    when that finding is not audited)."""
    mapping = ["--score-column", "Pleural Effusion=prob_effusion"] if effusion else []
    res = cli.audit(
        "--predictions", files["predictions"], "--labels", files["labels"],
        "--demographics", files["demographics"], "--id-column", "Path", "--attribute", "sex",
        *mapping, *extra, out=tmp / "out", bootstrap=200, quiet=True,
    )  # fmt: skip
    assert res.exit_code == code if code is not None else res.exit_code in (0, 1), res.output
    return res


def _frames(files: dict[str, Path]) -> pd.DataFrame:
    lab = pd.read_csv(files["labels"], dtype=str, keep_default_na=False)
    pred = pd.read_csv(files["predictions"])
    demo = pd.read_csv(files["demographics"], dtype={"sex": str})
    return lab.merge(pred, on="Path").merge(demo, on="Path")


def _score_column(f: str) -> str:
    return "prob_effusion" if f == "Pleural Effusion" else f"score_{f}"


@pytest.mark.parametrize("uncertain", ["exclude", "negative", "positive"])
def test_each_finding_equals_sklearn_on_its_own_records(tmp_path: Path, uncertain: str) -> None:
    files = cohort(tmp_path)
    run(tmp_path, files, "--findings", "all", "--uncertain", uncertain)
    r = json.loads((tmp_path / "out" / "results.json").read_text())
    validate_results(r)
    assert "attributes" not in r and [f["finding"] for f in r["findings"]] == list(FINDINGS)
    assert r["config"]["findings"] == {"requested": "all", "uncertain": uncertain, "n": 3}
    df = _frames(files)
    for block in r["findings"]:
        f = block["finding"]
        raw = df[f]
        assert block["n_uncertain"] == int((raw == "-1").sum())
        assert block["n_no_label"] == int((raw == "").sum())
        assert block["score_column"] == _score_column(f)
        y = raw.replace({"-1": {"exclude": "", "negative": "0", "positive": "1"}[uncertain]})
        keep = y != ""
        y, s = y[keep].astype(int).to_numpy(), df.loc[keep, _score_column(f)].to_numpy()
        assert block["n"] == keep.sum() and block["n_positive"] == y.sum()
        m = block["overall"]["metrics"]
        assert m["auroc"]["value"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert m["tpr"]["value"] == pytest.approx(recall_score(y, s >= 0.5), abs=1e-12)
        assert m["brier"]["value"] == pytest.approx(brier_score_loss(y, s), abs=1e-12)
        sex = df.loc[keep, "sex"].to_numpy()
        for g in block["attributes"][0]["groups"]:
            sel = sex == g["group"]
            assert g["n"] == sel.sum()
            assert g["metrics"]["auroc"]["value"] == pytest.approx(roc_auc_score(y[sel], s[sel]), abs=1e-12)


def test_all_findings_are_one_family(tmp_path: Path) -> None:
    """Holm over the tested rows of every finding together (statsmodels), each family
    (primary: the gated metrics; exploratory: the rest) on its own."""
    files = cohort(tmp_path)
    run(tmp_path, files, "--findings", "all", "--primary-metrics", "tpr,auroc")
    r = json.loads((tmp_path / "out" / "results.json").read_text())
    for family in ("primary", "exploratory"):
        rows = [
            c
            for b in r["findings"]
            for a in b["attributes"]
            for c in a["comparisons"]
            if c.get("family") == family and c.get("tested_as") is None and c.get("p_value") is not None
        ]
        assert rows
        expected = multipletests([c["p_value"] for c in rows], method="holm")[1]
        assert [c["p_adjusted"] for c in rows] == pytest.approx(expected.tolist(), abs=1e-12)
    n_primary = sum(
        1
        for b in r["findings"]
        for a in b["attributes"]
        for c in a["comparisons"]
        if c.get("family") == "primary" and c.get("tested_as") is None and c.get("p_value") is not None
    )
    assert n_primary == 3 * 2  # 3 findings x (tpr, auroc) x one comparison (M vs F)


def test_summary_names_each_findings_worst_group(tmp_path: Path) -> None:
    files = cohort(tmp_path)
    run(tmp_path, files, "--findings", "Edema,Atelectasis", effusion=False)
    r = json.loads((tmp_path / "out" / "results.json").read_text())
    s = r["findings_summary"]
    assert s["metric"] == "auroc" and [row["finding"] for row in s["findings"]] == ["Edema", "Atelectasis"]
    values = [b["overall"]["metrics"]["auroc"]["value"] for b in r["findings"]]
    assert s["macro"]["auroc"]["value"] == pytest.approx(np.mean(values), abs=1e-12)
    for row, block in zip(s["findings"], r["findings"], strict=True):
        comp = next(c for c in block["attributes"][0]["comparisons"] if c["metric"] == "auroc")
        assert row["worst"]["group"] == comp["group"]
        assert row["worst"]["difference"]["value"] == pytest.approx(comp["difference"]["value"])


def test_manifest_says_which_findings_leave_a_record_out(tmp_path: Path) -> None:
    files = cohort(tmp_path)
    run(tmp_path, files, "--findings", "all")
    manifest = pd.read_csv(tmp_path / "out" / "manifest.csv", keep_default_na=False)
    rows = manifest[manifest["source"] == "predictions.csv"].reset_index(drop=True)
    df = _frames(files)
    for i in range(len(df)):
        parts = [
            f"{f} ({'uncertain' if df.loc[i, f] == '-1' else 'no label'})"
            for f in FINDINGS
            if df.loc[i, f] in ("-1", "")
        ]
        all_out = len(parts) == len(FINDINGS)
        assert rows.loc[i, "status"] == ("excluded" if all_out else "included")
        if all_out:
            assert rows.loc[i, "reason"] == "no finding with both a label and a score"
        else:
            assert rows.loc[i, "reason"] == ("not in: " + "; ".join(parts) if parts else "")


def test_findings_all_skips_columns_that_are_not_labels(tmp_path: Path) -> None:
    files = cohort(tmp_path)
    run(tmp_path, files, "--findings", "all")
    r = json.loads((tmp_path / "out" / "results.json").read_text())
    assert "view" not in [b["finding"] for b in r["findings"]]


def test_gate_checks_name_their_finding(tmp_path: Path) -> None:
    files = cohort(tmp_path)
    policy = tmp_path / "policy.toml"
    policy.write_text('[gate]\nmetrics = ["auroc"]\nmax_abs_difference = 0.2\n')
    run(tmp_path, files, "--findings", "all", "--gate", policy, code=None)
    gate = json.loads((tmp_path / "out" / "results.json").read_text())["gate"]
    assert {c["finding"] for c in gate["checks"]} == set(FINDINGS)
    assert len(gate["checks"]) == 3  # one non-reference group x one metric per finding


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (("--findings", "Edema,Cardiomegaly"), "no column 'Cardiomegaly'"),
        (("--findings", "Edema", "--uncertain", "maybe"), "--uncertain must be one of"),
        (("--uncertain", "positive"), "--uncertain applies to a multi-label audit"),
        (("--findings", "Edema", "--label-column", "Edema"), "--label-column and --findings"),
        (("--findings", "Edema", "--discover"), "--discover and --findings"),
        (("--findings", "Edema", "--score-column", "Edema"), "FINDING=COLUMN"),
    ],
)
def test_bad_multilabel_input_is_exit_2_naming_it(tmp_path: Path, extra: tuple, expected: str) -> None:
    files = cohort(tmp_path, n=60)
    res = run(tmp_path, files, *extra, code=2, effusion=False)
    assert expected in cli.flat(res.output)
    assert not (tmp_path / "out" / "results.json").exists()


def test_missing_score_column_names_the_finding_and_the_fix(tmp_path: Path) -> None:
    files = cohort(tmp_path, n=60)
    res = cli.audit(
        "--predictions", files["predictions"], "--labels", files["labels"],
        "--demographics", files["demographics"], "--id-column", "Path", "--attribute", "sex",
        "--findings", "all", out=tmp_path / "out", bootstrap=50, quiet=True,
    )  # fmt: skip
    assert res.exit_code == 2
    text = cli.flat(res.output)
    assert "no score column for finding 'Pleural Effusion'" in text
    assert "--score-column Pleural Effusion=COLUMN" in text


def test_a_finding_of_only_uncertain_labels_is_refused_with_the_way_out(tmp_path: Path) -> None:
    files = cohort(tmp_path, n=60)
    lab = pd.read_csv(files["labels"], dtype=str, keep_default_na=False)
    lab["Edema"] = "-1"
    lab.to_csv(files["labels"], index=False)
    res = run(tmp_path, files, "--findings", "Edema,Atelectasis", code=2, effusion=False)
    text = cli.flat(res.output)
    assert (
        "finding 'Edema': no record has both a label and a score (53 uncertain" in text
    )  # 7 rows had no finding
    assert "--uncertain negative or positive" in text
    run(
        tmp_path, files, "--findings", "Edema,Atelectasis", "--uncertain", "negative", effusion=False
    )  # all 0: no positives
    edema = json.loads((tmp_path / "out" / "results.json").read_text())["findings"][0]
    assert edema["n"] == 60 and edema["n_positive"] == 0
    assert edema["overall"]["metrics"]["tpr"]["value"] is None


def test_single_label_audit_is_unchanged_by_the_new_flags(tmp_path: Path) -> None:
    """Without --findings, --score-column still names one score column."""
    files = cohort(tmp_path, n=120)
    res = cli.audit(
        "--predictions", files["predictions"], "--labels", files["labels"],
        "--demographics", files["demographics"], "--id-column", "Path", "--attribute", "sex",
        "--label-column", "Atelectasis", "--score-column", "score_Atelectasis",
        out=tmp_path / "out", bootstrap=50, quiet=True,
    )  # fmt: skip
    # -1 is not a binary label outside a multi-label audit
    assert res.exit_code == 2 and "-1" in cli.flat(res.output)


def _with_no_finding(files: dict[str, Path], name: str = "No Finding") -> pd.DataFrame:
    """Add a No Finding label (1 when no finding is 1) and a score that over-calls it for F."""
    lab = pd.read_csv(files["labels"], dtype=str, keep_default_na=False)
    pred = pd.read_csv(files["predictions"])
    demo = pd.read_csv(files["demographics"])
    rng = np.random.default_rng(7)
    nf = (~lab[list(FINDINGS)].eq("1").any(axis=1)).astype(int)
    z = np.where(nf == 1, 1.0, -1.0) + rng.normal(0, 1.0, len(nf)) + np.where(demo["sex"] == "F", 0.8, 0.0)
    lab[name] = nf
    pred[f"score_{name}"] = np.round(1 / (1 + np.exp(-z)), 4)
    lab.to_csv(files["labels"], index=False)
    pred.to_csv(files["predictions"], index=False)
    return lab.merge(pred, on="Path").merge(demo, on="Path")


def test_underdiagnosis_is_no_findings_fpr_by_hand(tmp_path: Path) -> None:
    """Per group: No Finding predicted (score >= 0.5) among records with a finding (No
    Finding label 0), counted by hand; the comparisons are No Finding's fpr rows."""
    files = cohort(tmp_path)
    df = _with_no_finding(files)
    run(tmp_path, files, "--findings", "all")
    r = json.loads((tmp_path / "out" / "results.json").read_text())
    validate_results(r)
    u = r["underdiagnosis"]
    assert u["finding"] == "No Finding" and u["metric"] == "fpr"
    with_finding = df["No Finding"].astype(str) == "0"
    called = df["score_No Finding"] >= 0.5
    assert u["overall"]["value"] == pytest.approx((called & with_finding).sum() / with_finding.sum())
    for g in u["attributes"][0]["groups"]:
        sel = with_finding & (df["sex"] == g["group"])
        assert g["n"] == sel.sum()
        assert g["value"]["value"] == pytest.approx((called & sel).sum() / sel.sum())
    block = next(b for b in r["findings"] if b["finding"] == "No Finding")
    fpr_rows = [c for c in block["attributes"][0]["comparisons"] if c["metric"] == "fpr"]
    assert [c["p_adjusted"] for c in u["attributes"][0]["comparisons"]] == [c["p_adjusted"] for c in fpr_rows]
    # Its own section in the reports, naming the most underdiagnosed group (by hand: F, whose
    # No Finding score was shifted up).
    rates = {
        g: (called & with_finding & (df["sex"] == g)).sum() / (with_finding & (df["sex"] == g)).sum()
        for g in "FM"
    }
    worst = max(rates, key=rates.get)
    md = (tmp_path / "out" / "report.md").read_text()
    assert "**Underdiagnosis**" in md and f"sex = {worst}" in md and "is underdiagnosed most" in md
    assert 'id="underdiagnosis"' in (tmp_path / "out" / "report.html").read_text()


def test_underdiagnosis_gate_and_its_absence(tmp_path: Path) -> None:
    files = cohort(tmp_path)
    _with_no_finding(files, name="no_finding")
    policy = tmp_path / "policy.toml"
    policy.write_text('[gate]\nmetrics = ["underdiagnosis_rate"]\nmax_abs_difference = 0.5\n')
    run(tmp_path, files, "--findings", "all", "--gate", policy, code=None)
    gate = json.loads((tmp_path / "out" / "results.json").read_text())["gate"]
    assert [(c["finding"], c["metric"], c["attribute"]) for c in gate["checks"]] == [
        ("no_finding", "underdiagnosis_rate", "sex")
    ]
    run(tmp_path, files, "--findings", "Edema", "--gate", policy, code=1, effusion=False)
    gate = json.loads((tmp_path / "out" / "results.json").read_text())["gate"]
    assert gate["outcome"] == "inconclusive" and "No Finding" in gate["checks"][0]["observed"]["reason"]
    res = run(
        tmp_path, files, "--findings", "Edema", "--no-finding-column", "Nothing", code=2, effusion=False
    )
    assert "--no-finding-column Nothing: not among the audited findings" in cli.flat(res.output)
