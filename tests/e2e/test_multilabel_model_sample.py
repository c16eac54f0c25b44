"""The bundled multi-label classifier on sample_data (issue 21, points 1 and 10).

It runs once and audits every finding of findings.csv; its per-finding AUROC is that of a
realistic model (between 0.75 and 0.92: computed here with scikit-learn on the scores the
run wrote, labels 1/0 only), its outputs are the columns model.json's classes name, and
sample_data/predictions.csv holds the same scores in its score_<class> columns (written
by `fairaudit sample-data --model`). The underdiagnosis rate of race C is checked by hand from the same scores.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

pytest.importorskip("torch")

from _helpers import cli  # noqa: E402
from _helpers.paths import SAMPLE  # noqa: E402

MODEL = "bundled:cxr_finding_classifier"
ID = "sop_instance_uid"


def _classes() -> list[str]:
    from fairaudit.models.bundle import BUNDLED_DIR

    return json.loads((BUNDLED_DIR / "cxr_finding_classifier" / "model.json").read_text())["classes"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, pd.DataFrame]:
    out = tmp_path_factory.mktemp("multi") / "audit"
    res = cli.invoke(
        ["audit", str(SAMPLE / "images"), "--model", MODEL, "--labels", str(SAMPLE / "findings.csv"),
         "--findings", "all", "--demographics", str(SAMPLE / "demographics.csv"), "--attribute", "race",
         "--bootstrap", "100", "--seed", "0", "--device", "cpu", "--keep-ids", "--quiet", "--out", str(out)],
        columns=None,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    return json.loads((out / "results.json").read_text()), pd.read_csv(
        out / "predictions.csv", dtype={ID: str}
    )


def test_classes_drive_the_outputs_and_every_finding_is_audited(run: tuple[dict, pd.DataFrame]) -> None:
    results, preds = run
    classes = _classes()
    assert len(classes) >= 6 and "No Finding" in classes
    assert results["model"]["multilabel"] is True
    assert results["model"]["output_columns"] == {c: f"score_{c}" for c in classes}
    assert [f["finding"] for f in results["findings"]] == classes  # findings.csv's columns, in order
    assert [c for c in preds.columns if c.startswith("score_")] == [f"score_{c}" for c in classes]
    # sample_data/predictions.csv was written by the same model on the same files.
    sample = pd.read_csv(SAMPLE / "predictions.csv", dtype={ID: str}).set_index(ID)
    mine = preds.set_index(ID).loc[sample.index]
    for c in classes:
        np.testing.assert_allclose(mine[f"score_{c}"], sample[f"score_{c}"], atol=2e-6)


def test_per_finding_auroc_is_realistic(run: tuple[dict, pd.DataFrame]) -> None:
    results, preds = run
    labels = pd.read_csv(SAMPLE / "findings.csv", dtype={ID: str}).set_index(ID)
    joined = preds.set_index(ID).join(labels, how="inner")
    assert len(joined) == 320
    for block in results["findings"]:
        name = block["finding"]
        known = joined[joined[name].isin([0, 1])]
        auc = roc_auc_score(known[name].astype(int), known[f"score_{name}"])
        assert 0.75 <= auc <= 0.92, (name, auc)
        assert block["overall"]["metrics"]["auroc"]["value"] == pytest.approx(auc, abs=1e-9)
        assert block["n_uncertain"] == int((joined[name] == -1).sum())


def test_effusion_is_underdiagnosed_for_race_c(run: tuple[dict, pd.DataFrame]) -> None:
    """The planted underdiagnosis: portable (supine AP) effusions are a faint haze and race C is
    imaged there most. The underdiagnosis rate by hand: among records labelled No Finding = 0,
    the share with P(No Finding) >= the threshold."""
    results, preds = run
    demo = pd.read_csv(SAMPLE / "demographics.csv", dtype={ID: str}).set_index(ID)
    labels = pd.read_csv(SAMPLE / "findings.csv", dtype={ID: str}).set_index(ID)
    joined = preds.set_index(ID).join(labels, how="inner").join(demo, how="inner")
    under = results["underdiagnosis"]
    t = under["threshold"]
    race = next(a for a in under["attributes"] if a["name"] == "race")
    rates = {}
    for g in race["groups"]:
        sick = joined[(joined["race"] == g["group"]) & (joined["No Finding"] == 0)]
        rates[g["group"]] = float((sick["score_No Finding"] >= t).mean())
        assert g["n"] == len(sick)
        assert g["value"]["value"] == pytest.approx(rates[g["group"]], abs=1e-12)
    # The planted underdiagnosis of effusion for race C: fewer effusions called, and a lower AUROC.
    eff = joined[joined["Effusion"].isin([0, 1])]
    tpr = {
        r: float((eff[(eff["race"] == r) & (eff["Effusion"] == 1)]["score_Effusion"] >= t).mean())
        for r in "AC"
    }
    auc = {
        r: roc_auc_score(eff[eff["race"] == r]["Effusion"], eff[eff["race"] == r]["score_Effusion"])
        for r in "AC"
    }
    assert tpr["C"] < tpr["A"] - 0.3 and auc["C"] < auc["A"] - 0.15


def test_single_label_finding_is_one_minus_no_finding(tmp_path: Path) -> None:
    out = tmp_path / "single"
    res = cli.invoke(
        [*("audit", str(SAMPLE / "images"), "--model", MODEL, "--labels", str(SAMPLE / "labels.csv")),
         *("--label-column", "finding", "--demographics", str(SAMPLE / "demographics.csv")),
         *("--attribute", "race", "--bootstrap", "50", "--device", "cpu", "--keep-ids", "-q", "--out", str(out))],
        columns=None,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    assert results["model"]["score_output"] == "1 - No Finding"
    preds = pd.read_csv(out / "predictions.csv")
    np.testing.assert_allclose(preds["score"], 1 - preds["score_No Finding"], atol=1e-12)
    # A label column naming no output is refused before the model runs (no predictions.csv).
    edema = tmp_path / "edema.csv"
    pd.read_csv(SAMPLE / "labels.csv").rename(columns={"finding": "Edema"}).to_csv(edema, index=False)
    bad = tmp_path / "bad"
    res = cli.invoke(
        [*("audit", str(SAMPLE / "images"), "--model", MODEL, "--labels", str(edema)),
         *("--label-column", "Edema", "--demographics", str(SAMPLE / "demographics.csv")),
         *("--attribute", "race", "-q", "--out", str(bad))],
        columns=None,
    )  # fmt: skip
    assert res.exit_code == 2 and "none is named Edema" in cli.flat(res.output)
    assert not (bad / "predictions.csv").exists()
