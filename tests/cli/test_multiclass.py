"""Multi-class audits (`--task multiclass`, issue 21 point 3) against scikit-learn and
statsmodels on the same rows, bad inputs, the gate and the reports.

A three-class cohort: class names in the label column (one of them markup, to see it
escaped), a probability column per class (one under another name, mapped with
--score-column CLASS=COLUMN), demographics with sex and patient ids (two records each).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    recall_score,
    roc_auc_score,
)
from statsmodels.stats.multitest import multipletests

from fairaudit.schema import validate_results

from _helpers import cli

CLASSES = ("normal", "pneumonia", "<b>viral</b>")
COLUMNS = {"normal": "score_normal", "pneumonia": "p_pneumonia", "<b>viral</b>": "score_<b>viral</b>"}


def cohort(tmp: Path, n: int = 300, seed: int = 5) -> dict[str, Path]:
    """Labels, predictions (rows summing to 1) and demographics CSVs of `n` records."""
    rng = np.random.default_rng(seed)
    ids = [f"img{i:04d}" for i in range(n)]
    y = rng.integers(0, len(CLASSES), n)
    logits = rng.normal(0, 1, (n, len(CLASSES)))
    logits[np.arange(n), y] += 1.3
    p = np.exp(logits)
    p = np.round(p / p.sum(axis=1, keepdims=True), 4)
    p[:, -1] = np.round(1.0 - p[:, :-1].sum(axis=1), 4)
    files = {k: tmp / f"{k}.csv" for k in ("labels", "predictions", "demographics")}
    pd.DataFrame({"id": ids, "dx": [CLASSES[i] for i in y]}).to_csv(files["labels"], index=False)
    pd.DataFrame({"id": ids, **{COLUMNS[c]: p[:, j] for j, c in enumerate(CLASSES)}}).to_csv(
        files["predictions"], index=False
    )
    pd.DataFrame(
        {"id": ids, "patient_id": [f"p{i // 2}" for i in range(n)], "sex": rng.choice(["F", "M"], n)}
    ).to_csv(files["demographics"], index=False)
    return files


def run(files: dict[str, Path], out: Path, *extra: object, code: int = 0, quiet: bool = True):
    res = cli.audit(
        "--task", "multiclass", "--predictions", files["predictions"], "--labels", files["labels"],
        "--label-column", "dx", "--demographics", files["demographics"], "--id-column", "id",
        "--attribute", "sex", "--score-column", "pneumonia=p_pneumonia", *extra,
        out=out, bootstrap=200, quiet=quiet,
    )  # fmt: skip
    assert res.exit_code == code, res.output
    return res


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], Path, dict]:
    tmp = tmp_path_factory.mktemp("multiclass")
    files = cohort(tmp)
    policy = tmp / "policy.toml"
    policy.write_text('[gate]\nmetrics = ["accuracy", "balanced_accuracy"]\nmax_abs_difference = 0.3\n')
    res = run(files, tmp / "out", "--gate", policy, "--format", "json,md,html", "-v", quiet=False)
    (tmp / "terminal.txt").write_text(res.output)
    return files, tmp / "out", json.loads((tmp / "out" / "results.json").read_text())


def _frame(files: dict[str, Path], classes: list[str]) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The joined rows, their class indices and probabilities in results.json's class order."""
    lab = pd.read_csv(files["labels"], dtype=str)
    pred = pd.read_csv(files["predictions"], dtype={"id": str})
    demo = pd.read_csv(files["demographics"], dtype=str)
    df = lab.merge(pred, on="id").merge(demo, on="id")
    y = df["dx"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    p = df[[COLUMNS[c] for c in classes]].to_numpy(dtype=float)
    return df, y, p


def test_classes_and_layout(audited: tuple) -> None:
    _, _, res = audited
    validate_results(res)
    mc = res["multiclass"]
    # --score-column CLASS=COLUMN first, then score_CLASS columns in the file's order
    assert mc["classes"] == ["pneumonia", "normal", "<b>viral</b>"]
    assert mc["score_columns"]["pneumonia"] == "p_pneumonia"
    assert [b["class"] for b in mc["per_class"]] == mc["classes"]
    assert set(res["overall"]["metrics"]) == {"accuracy", "balanced_accuracy", "macro_fpr", "macro_auroc"}
    assert set(mc["per_class"][0]["overall"]["metrics"]) == {
        "tpr", "fnr", "tnr", "fpr", "ppv", "npv", "prevalence", "auroc"
    }  # fmt: skip
    for est in res["attributes"][0]["groups"][0]["metrics"].values():
        assert est["ci"][0] <= est["value"] <= est["ci"][1]
    assert res["config"]["resampling_unit"] == "patient"


def test_model_wide_metrics_match_sklearn(audited: tuple) -> None:
    files, _, res = audited
    df, y, p = _frame(files, res["multiclass"]["classes"])
    pred = p.argmax(axis=1)
    k = p.shape[1]
    rows = [
        (
            "overall",
            np.ones(len(df), bool),
            res["overall"]["metrics"],
            res["multiclass"]["confusion"]["overall"],
        )
    ]
    conf_groups = {g["group"]: g for g in res["multiclass"]["confusion"]["attributes"][0]["groups"]}
    for g in res["attributes"][0]["groups"]:
        rows.append((g["group"], (df["sex"] == g["group"]).to_numpy(), g["metrics"], conf_groups[g["group"]]))
    for name, m, metrics, conf in rows:
        yy, pp, pr = y[m], p[m], pred[m]
        assert metrics["accuracy"]["value"] == pytest.approx(accuracy_score(yy, pr)), name
        assert metrics["balanced_accuracy"]["value"] == pytest.approx(balanced_accuracy_score(yy, pr)), name
        assert metrics["macro_auroc"]["value"] == pytest.approx(
            roc_auc_score(yy, pp, multi_class="ovr", average="macro", labels=list(range(k)))
        ), name
        cm = confusion_matrix(yy, pr, labels=list(range(k)))
        assert conf["counts"] == cm.tolist(), name
        np.testing.assert_allclose(
            conf["normalized"], confusion_matrix(yy, pr, labels=list(range(k)), normalize="true")
        )
        fpr = [(cm[:, j].sum() - cm[j, j]) / (cm.sum() - cm[j].sum()) for j in range(k)]
        assert metrics["macro_fpr"]["value"] == pytest.approx(np.mean(fpr)), name


def test_one_vs_rest_metrics_match_sklearn(audited: tuple) -> None:
    files, _, res = audited
    df, y, p = _frame(files, res["multiclass"]["classes"])
    pred = p.argmax(axis=1)
    for j, block in enumerate(res["multiclass"]["per_class"]):
        for g in block["attributes"][0]["groups"]:
            m = (df["sex"] == g["group"]).to_numpy()
            yj, pj = (y[m] == j).astype(int), (pred[m] == j).astype(int)
            assert g["metrics"]["tpr"]["value"] == pytest.approx(recall_score(yj, pj))
            assert g["metrics"]["fpr"]["value"] == pytest.approx(1 - recall_score(yj, pj, pos_label=0))
            assert g["metrics"]["auroc"]["value"] == pytest.approx(roc_auc_score(yj, p[m, j]))
            assert g["n_positive"] == int(yj.sum())


def test_one_family_over_every_block(audited: tuple) -> None:
    """Every tested comparison (model-wide and per class) is corrected together, per family."""
    _, _, res = audited
    blocks = [res, *res["multiclass"]["per_class"]]
    rows = [c for b in blocks for a in b["attributes"] for c in a["comparisons"]]
    primary = {c["metric"] for c in rows if c.get("family") == "primary"}
    assert primary == {"accuracy", "balanced_accuracy"}
    for family in ("primary", "exploratory"):
        tested = [
            c for c in rows if c.get("family") == family and "tested_as" not in c and c["p_value"] is not None
        ]
        expected = multipletests([c["p_value"] for c in tested], method="holm")[1]
        np.testing.assert_allclose([c["p_adjusted"] for c in tested], expected)
    assert len([c for c in rows if c.get("family") == "exploratory"]) > 10


def test_gate_on_model_wide_metrics(audited: tuple) -> None:
    _, _, res = audited
    checks = res["gate"]["checks"]
    assert {c["metric"] for c in checks} == {"accuracy", "balanced_accuracy"}
    assert all(c["status"] in ("pass", "fail", "inconclusive") for c in checks)


def test_reports_have_a_section_per_class_and_escape_names(audited: tuple) -> None:
    _, out, res = audited
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    for name in ("normal", "pneumonia"):
        assert f"## Class: {name} (one-vs-rest)" in md
        assert f"<h2>Class: {name} (one-vs-rest)</h2>" in html
    assert "## Confusion matrices" in md and 'id="confusion"' in html
    assert "<b>viral</b>" not in html and "&lt;b&gt;viral&lt;/b&gt;" in html
    assert "<b>viral</b>" not in md
    counts = res["multiclass"]["confusion"]["overall"]["counts"]
    assert f"**{counts[0][0]}**" in md  # the diagonal in bold


def test_who_is_in_the_data_speaks_of_classes(audited: tuple) -> None:
    """The population table of a multi-class report: one prevalence column per class (its share
    of the group's records), and nothing about findings (docs/reports.md, "Who is in the data")."""
    _, out, res = audited
    html = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    section = html.split('<section id="population">', 1)[1].split("</section>", 1)[0]
    md_section = md.split("## Who is in the data", 1)[1].split("\n## ", 1)[0]
    assert "finding" not in section and "finding" not in md_section
    assert "each class's prevalence" in section and "prevalence per class" in md_section
    for name in res["multiclass"]["classes"]:
        escaped = name.replace("<", "&lt;").replace(">", "&gt;")
        assert f"<th>prevalence: {escaped}</th>" in section


def test_cli_terminal_summary(audited: tuple) -> None:
    _, out, _ = audited
    text = (out.parent / "terminal.txt").read_text()
    assert "Classes" in text and "Confusion matrix" in text
    assert "predicted class: the argmax" in text


# ----------------------------------------------------------------------------- bad input: exit 2


def _rewrite(path: Path, change) -> Path:  # noqa: ANN001
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    change(frame)
    out = path.with_name("bad_" + path.name)
    frame.to_csv(out, index=False)
    return out


def test_unknown_class_in_labels_names_the_row(audited: tuple, tmp_path: Path) -> None:
    files, _, _ = audited
    bad = _rewrite(files["labels"], lambda f: f.__setitem__("dx", f["dx"].where(f.index != 6, "flu")))
    res = run({**files, "labels": bad}, tmp_path / "out", code=2)
    assert "column 'dx', row 8: label 'flu' is not one of the classes" in res.output
    assert not (tmp_path / "out").exists()


def test_missing_probability_column(audited: tuple, tmp_path: Path) -> None:
    files, _, _ = audited
    bad = _rewrite(files["predictions"], lambda f: f.pop("score_normal"))
    res = run({**files, "predictions": bad}, tmp_path / "out", code=2)
    assert "label 'normal' is not one of the classes" in res.output
    assert "score_normal" in res.output  # the column to add
    res = run(files, tmp_path / "out", "--score-column", "normal=nope", code=2)
    assert "column 'nope'" in res.output


def test_probabilities_not_summing_to_one_name_the_row(audited: tuple, tmp_path: Path) -> None:
    files, _, _ = audited
    bad = _rewrite(
        files["predictions"],
        lambda f: f.__setitem__("score_normal", f["score_normal"].where(f.index != 3, "0.999")),
    )
    res = run({**files, "predictions": bad}, tmp_path / "out", code=2)
    assert "row 5: the probabilities of the 3 classes" in res.output
    assert "not 1 (within 0.001)" in res.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--threshold", "0.3"], "--threshold and --task multiclass do not go together"),
        (["--discover"], "--discover and --task multiclass do not go together"),
        (["--within", "patient_id"], "--within and --task multiclass do not go together"),
        (["--score-column", "score"], "--score-column 'score': with --task multiclass give CLASS=COLUMN"),
    ],
)
def test_flags_that_do_not_go_with_multiclass(
    audited: tuple, tmp_path: Path, extra: list[str], message: str
) -> None:
    files, _, _ = audited
    res = run(files, tmp_path / "out", *extra, code=2)
    assert message in res.output


def test_model_run_refused_and_policy_metric_checked(audited: tuple, tmp_path: Path) -> None:
    files, _, _ = audited
    res = cli.audit(
        "DIR", "--model", "bundled:x", "--task", "multiclass", "--attribute", "sex", out=tmp_path / "o"
    )
    assert res.exit_code == 2 and "--model and --task multiclass do not go together" in res.output
    policy = tmp_path / "policy.toml"
    policy.write_text('[gate]\nmetrics = ["tpr"]\nmax_abs_difference = 0.1\n')
    res = run(files, tmp_path / "out", "--gate", policy, code=2)
    assert "a multi-class audit gates on accuracy and balanced_accuracy" in res.output


def test_python_api(audited: tuple) -> None:
    import fairaudit

    files, _, res = audited
    report = fairaudit.audit(
        str(files["predictions"]), labels=str(files["labels"]), label_column="dx",
        demographics=str(files["demographics"]), id_column="id", attributes="sex", task="multiclass",
        score_columns={"pneumonia": "p_pneumonia"}, bootstrap=20,
    )  # fmt: skip
    data = report.to_dict()
    assert data["multiclass"]["classes"] == res["multiclass"]["classes"]
    assert data["overall"]["metrics"]["accuracy"]["value"] == res["overall"]["metrics"]["accuracy"]["value"]
    assert set(report.by_group("sex")["group"]) == {"F", "M"}
