"""`fairaudit augment-check` end to end: image-statistic shifts, and model degradation per group."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from fairaudit.io.dicom import read_file
from fairaudit.stats._segmentation import dice

from _helpers import cli


@pytest.fixture(scope="module")
def cohort(make_cohort) -> Path:
    return make_cohort(36, 40, 5)


def _run(cohort: Path, out: Path, *extra: str):
    args = ["augment-check", str(cohort / "images"), "--demographics", str(cohort / "demographics.csv"),
            "--attribute", "race", "--n-augment", "2", "--bootstrap", "200", "--workers", "1", "-q",
            "--out", str(out), *extra]  # fmt: skip
    return cli.invoke(args, columns=None, catch_exceptions=False)


def _strip(r: dict) -> dict:
    r = dict(r)
    r.pop("created")
    r.pop("command")
    return r


def test_image_statistics_shift_is_seeded_and_recorded(cohort: Path, tmp_path: Path) -> None:
    res = _run(cohort, tmp_path / "a", "--modality", "xray", "--geometric")
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "a" / "augment_check.json").read_text())
    assert r["config"]["families"] == ["exposure", "scatter", "noise", "grid", "portable", "geometric"]
    assert r["inputs"]["n_checked"] == 36 and r["model"] is None
    race = r["attributes"][0]
    noise = [s for s in race["image_statistics"] if s["family"] == "noise" and s["statistic"] == "noise"][0]
    assert all(e["value"] > 0 for e in noise["groups"].values())  # added noise raises the noise estimate
    assert noise["test"]["test"] == "kruskal_wallis" and "p_adjusted" in noise["test"]
    lines = (tmp_path / "a" / "augment_records.jsonl").read_text().splitlines()
    assert len(lines) == 36 * 6 * 2
    assert {json.loads(x)["family"] for x in lines} == set(r["config"]["families"])
    html = (tmp_path / "a" / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 6 and "<script" not in html
    again = _run(cohort, tmp_path / "b", "--modality", "xray", "--geometric")
    assert again.exit_code == 0
    assert _strip(json.loads((tmp_path / "b" / "augment_check.json").read_text())) == _strip(r)
    other = _run(cohort, tmp_path / "c", "--modality", "xray", "--geometric", "--seed", "1")
    r2 = json.loads((tmp_path / "c" / "augment_check.json").read_text())
    assert r2["attributes"][0]["image_statistics"] != race["image_statistics"]
    assert other.exit_code == 0


@pytest.mark.parametrize("modality", ["ct", "mri", "ultrasound"])
def test_other_modalities_run(cohort: Path, tmp_path: Path, modality: str) -> None:
    res = _run(cohort, tmp_path / modality, "--modality", modality, "--strength", "mild", "--max-images", "12",
               "--format", "json")  # fmt: skip
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / modality / "augment_check.json").read_text())
    assert r["inputs"]["n_checked"] == 12 and not (tmp_path / modality / "report.html").exists()


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--modality", "pet"], "--modality"),
        (["--modality", "xray", "--strength", "extreme"], "--strength"),
        (["--modality", "xray", "--labels", "x.csv"], "--model"),
        (["--modality", "xray", "--model", "bundled:nope"], "ground truth"),
    ],
)
def test_bad_input_exits_2(cohort: Path, tmp_path: Path, extra, message) -> None:
    res = _run(cohort, tmp_path / "o", *extra)
    assert res.exit_code == 2 and message in res.output


# --------------------------------------------------------------------------- with a model


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    torch = pytest.importorskip("torch")

    class Brightness(torch.nn.Module):
        def forward(self, x):
            return (20.0 * (x.mean(dim=(1, 2, 3)) - 0.45)).unsqueeze(1)

    class Threshold(torch.nn.Module):
        def forward(self, x):
            fg = 10.0 * (x[:, :1] - 0.5)
            return torch.cat([torch.zeros_like(fg), fg], dim=1)

    root = tmp_path_factory.mktemp("models")
    out = {}
    for name, module, task in (("cls", Brightness(), "classification"), ("seg", Threshold(), "segmentation")):
        path = root / f"{name}.pt"
        with warnings.catch_warnings():  # torch flags TorchScript as deprecated; it is what users have
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.script(module).save(str(path))
        Path(str(path) + ".json").write_text(json.dumps({"task": task, "output": "logits"}))
        out[name] = path
    return out


def _decoded(cohort: Path):
    demo = pd.read_csv(cohort / "demographics.csv", dtype=str)
    race = dict(zip(demo.sop_instance_uid, demo.race, strict=True))
    for p in sorted((cohort / "images").rglob("*")):
        o = read_file(p, cohort / "images", header_only=False)
        if o.status == "ok":
            uid = o.header["SOPInstanceUID"]
            yield uid, race[uid], o


def test_classifier_degradation_per_group(cohort: Path, tmp_path: Path, models) -> None:
    from fairaudit.models.loading import load_predictor

    res = _run(cohort, tmp_path / "m", "--modality", "xray", "--trust-model", "--model", str(models["cls"]),
               "--labels", str(cohort / "labels.csv"), "--label-column", "finding")  # fmt: skip
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "m" / "augment_check.json").read_text())
    assert r["model"]["task"] == "classification" and len(r["model"]["sha256"]) == 64
    perf = r["attributes"][0]["performance"]
    auc = next(m for m in perf["metric_results"] if m["metric"] == "auroc")
    # independent: the clean AUROC per group from the predictor and sklearn
    pred = load_predictor(str(models["cls"]), "cpu", trust_model=True)
    labels = pd.read_csv(cohort / "labels.csv", dtype=str)
    y = dict(zip(labels.sop_instance_uid, labels.finding.astype(int), strict=True))
    by: dict[str, tuple[list, list]] = {}
    for uid, g, o in _decoded(cohort):
        s = float(pred.predict(pred.prepare(o.image, o.spacing)[None])[0])
        by.setdefault(g, ([], []))[0].append(y[uid])
        by[g][1].append(s)
    for g, (yy, ss) in by.items():
        expected = roc_auc_score(yy, ss) if len(set(yy)) == 2 else None
        got = auc["clean"][g]["value"]
        assert (got is None and expected is None) or got == pytest.approx(expected)
    for f in auc["families"]:
        for g, e in f["degradation"].items():
            c, a = auc["clean"][g]["value"], f["augmented"][g]["value"]
            if c is not None and a is not None:
                assert e["value"] == pytest.approx(c - a)
        assert f["test"]["per_case"] == "brier_increase"
    html = (tmp_path / "m" / "report.html").read_text()
    assert "Degradation of auroc" in html


def test_segmentation_degradation_per_group(cohort: Path, tmp_path: Path, models) -> None:
    from fairaudit.models.loading import load_predictor

    res = _run(cohort, tmp_path / "s", "--modality", "xray", "--geometric", "--trust-model", "--model", str(models["seg"]),
               "--masks", str(cohort / "masks"))  # fmt: skip
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "s" / "augment_check.json").read_text())
    perf = r["attributes"][0]["performance"]
    d = perf["metric_results"][0]
    assert d["metric"] == "dice" and perf["per_case"] == "dice_decrease"
    pred = load_predictor(str(models["seg"]), "cpu", trust_model=True)
    from fairaudit.io.masks import read_mask

    by: dict[str, list[float]] = {}
    for uid, g, o in _decoded(cohort):
        lm = pred.predict(pred.prepare(o.image, o.spacing)[None])[0]
        truth = read_mask(cohort / "masks" / f"{uid}.png")
        by.setdefault(g, []).append(dice(truth, pred.restore(lm, o.image.shape) != 0))
    for g, vals in by.items():
        assert d["clean"][g]["value"] == pytest.approx(np.mean(vals))
    assert {f["family"] for f in d["families"]} == set(r["config"]["families"])


def test_escaped_groups_and_no_identifiers(cohort: Path, tmp_path: Path) -> None:
    demo = pd.read_csv(cohort / "demographics.csv", dtype=str)
    demo.loc[demo.index[:10], "race"] = "<img src=x onerror=alert(1)>"
    demo.to_csv(tmp_path / "demo.csv", index=False)
    args = ["augment-check", str(cohort / "images"), "--modality", "ultrasound", "--demographics",
            str(tmp_path / "demo.csv"), "--attribute", "race", "--n-augment", "1", "--bootstrap", "100",
            "--out", str(tmp_path / "o"), "-q"]  # fmt: skip
    res = cli.invoke(args, columns=None, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    html = (tmp_path / "o" / "report.html").read_text()
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    text = "".join(p.read_text() for p in (tmp_path / "o").iterdir())
    for value in list(demo.patient_id) + list(demo.sop_instance_uid):
        assert value not in text


def test_bundled_classifier_on_the_sample_cohort(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from fairaudit.models.bundle import list_bundled

    if "cxr_finding_classifier" not in list_bundled():
        pytest.skip("the bundled classifier is not built (make models)")
    args = ["augment-check", *cli.model_run_args(), "--modality", "xray", "--attribute", "race", "--n-augment", "1",
            "--bootstrap", "200",
            "--max-images", "60", "--format", "json", "--out", str(tmp_path / "o"), "-q"]  # fmt: skip
    res = cli.invoke(args, columns=None, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "o" / "augment_check.json").read_text())
    assert r["model"]["name"] == "cxr_finding_classifier" and r["inputs"]["n_checked"] == 60
    assert {f["family"] for f in r["attributes"][0]["performance"]["metric_results"][0]["families"]} == set(
        r["config"]["families"]
    )
