"""`fairaudit train` end to end on a tiny synthetic cohort (n=40, 32x32)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fairaudit.io.masks import read_label_image  # noqa: E402
from fairaudit.models import load_bundle  # noqa: E402
from fairaudit.models.preprocessing import make_spec, prepare_mask  # noqa: E402
from fairaudit.train.data import load_training_data  # noqa: E402
from fairaudit.train.loop import TrainConfig, train_model  # noqa: E402
from fairaudit.train.split import patient_split, strata_of  # noqa: E402

from _helpers import cli  # noqa: E402

SPEC = make_spec(input_size=[32, 32])


@pytest.fixture(scope="module")
def cohort(make_cohort) -> Path:
    return make_cohort(40, 32, 5)


@pytest.fixture(scope="module")
def clf_data(cohort):
    return load_training_data(
        cohort / "images",
        task="classification",
        demographics=cohort / "demographics.csv",
        labels=cohort / "labels.csv",
        attributes=["race", "sex"],
        spec=SPEC,
        workers=1,
        progress=False,
    )


def _train(data, out: Path, seed: int, **kw) -> Path:
    cfg = TrainConfig(
        task="classification",
        arch_kwargs={"width": 4},
        epochs=2,
        batch_size=8,
        seed=seed,
        device="cpu",
        bootstrap=50,
        **kw,
    )
    return train_model(data, cfg, out, spec=SPEC, attributes=["race", "sex"], show_progress=False).bundle


def _sha(path: Path) -> str:
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


def test_same_seed_same_weights(clf_data, tmp_path: Path) -> None:
    a = _train(clf_data, tmp_path / "a", seed=7)
    b = _train(clf_data, tmp_path / "b", seed=7)
    c = _train(clf_data, tmp_path / "c", seed=8)
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert _sha(a) != _sha(c)


def test_bundle_contents(clf_data, cohort: Path, tmp_path: Path) -> None:
    out = _train(clf_data, tmp_path / "b", seed=0, augment=True, fairness="equalized_odds")
    meta = json.loads((out / "model.json").read_text())
    for key in (
        "format_version",
        "name",
        "version",
        "task",
        "intended_use",
        "architecture",
        "network_data_format",
        "preprocessing",
        "classes",
        "training",
        "data_summary",
        "validation",
        "weights",
    ):
        assert key in meta, key
    assert meta["weights"]["sha256"] == _sha(out)
    assert meta["preprocessing"] == SPEC
    assert meta["classes"] == ["no_finding", "finding"]
    log_lines = (out / "training_log.jsonl").read_text().splitlines()
    assert len(log_lines) == meta["training"]["epochs_run"]
    assert all("val_loss" in json.loads(line) for line in log_lines)
    races = {g["group"] for g in meta["validation"]["attributes"][0]["groups"]}
    assert races <= {"A", "B", "C"}
    assert "auroc" in meta["validation"]["overall"]["metrics"]
    s = meta["data_summary"]
    assert s["n_train"] + s["n_val"] == 40
    # no identifiers in the bundle
    text = (out / "model.json").read_text()
    assert "SYN0" not in text and clf_data.ids[0] not in text
    bundle = load_bundle(out)
    assert bundle.model(torch.zeros(1, 1, 32, 32)).shape == (1, 1)
    manifest = (out / "manifest.csv").read_text().splitlines()
    assert manifest[0] == "source,id,status,reason,split"
    rows = [line.split(",") for line in manifest[1:]]
    included = [r for r in rows if r[2] == "included"]
    assert len(included) == 40 and {r[4] for r in included} == {"train", "validation"}
    assert sum(r[4] == "validation" for r in included) == s["n_val"]
    assert clf_data.ids[0] not in "\n".join(manifest)  # ids are hashed


def test_split_used_is_patient_level(clf_data) -> None:
    tr, va = patient_split(clf_data.patients, strata_of(clf_data.attributes, clf_data.targets), seed=0)
    assert set(clf_data.patients[tr]).isdisjoint(clf_data.patients[va])


def test_mask_foreground_is_lung_including_lesion(cohort: Path) -> None:
    data = load_training_data(
        cohort / "images",
        task="segmentation",
        demographics=cohort / "demographics.csv",
        masks=cohort / "masks",
        attributes=["race"],
        spec=SPEC,
        workers=1,
        progress=False,
    )
    lesion_only = load_training_data(
        cohort / "images",
        task="segmentation",
        demographics=cohort / "demographics.csv",
        masks=cohort / "masks",
        attributes=["race"],
        spec=SPEC,
        mask_labels=(2,),
        workers=1,
        progress=False,
    )
    uid = data.ids[0]
    stored = read_label_image(cohort / "masks" / f"{uid}.png")
    np.testing.assert_array_equal(data.targets[0], prepare_mask((stored >= 1).astype(int), None, SPEC))
    np.testing.assert_array_equal(lesion_only.targets[0], prepare_mask((stored == 2).astype(int), None, SPEC))


def test_cli_segmentation(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "seg"
    res = cli.invoke(
        [
            "train",
            str(cohort / "images"),
            "--task",
            "segmentation",
            "--demographics",
            str(cohort / "demographics.csv"),
            "--masks",
            str(cohort / "masks"),
            "--attribute",
            "race",
            "--out",
            str(out),
            "--epochs",
            "1",
            "--input-size",
            "32x32",
            "--width",
            "4",
            "--depth",
            "2",
            "--augment",
            "--fairness",
            "dice_variance",
            "--device",
            "cpu",
            "--bootstrap",
            "50",
            "--workers",
            "1",
            "-q",
        ],
        columns=None,
    )
    assert res.exit_code == 0, res.output
    bundle = load_bundle(out)
    assert bundle.meta["classes"] == ["background", "lung"]
    assert bundle.model(torch.zeros(1, 1, 32, 32)).shape == (1, 2, 32, 32)
    dice = bundle.meta["validation"]["attributes"][0]["groups"][0]["metrics"]["dice"]
    assert 0 <= dice["value"] <= 1 and dice["ci"][0] <= dice["value"] <= dice["ci"][1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--task", "classification"], "--labels"),
        (["--task", "segmentation", "--fairness", "equalized_odds", "--masks", "MASKS"], "does not apply"),
    ],
)
def test_cli_bad_input(cohort: Path, tmp_path: Path, args: list[str], message: str) -> None:
    args = [a.replace("MASKS", str(cohort / "masks")) for a in args]
    res = cli.invoke(
        ["train", str(cohort / "images"), "--demographics", str(cohort / "demographics.csv"), "--attribute", "race",
         "--out", str(tmp_path / "x"), "--device", "cpu", "-q", *args]
    )  # fmt: skip
    assert res.exit_code == 2
    assert message in res.output


@pytest.mark.parametrize("fairness", ["demographic_parity", "calibration", "adversarial"])
def test_fairness_options_train_and_load(clf_data, tmp_path: Path, fairness: str) -> None:
    cfg = TrainConfig(
        task="classification",
        arch_kwargs={"width": 4},
        epochs=1,
        batch_size=8,
        device="cpu",
        bootstrap=20,
        fairness=fairness,
        fairness_weight=0.5,
    )
    out = train_model(
        clf_data, cfg, tmp_path / fairness, spec=SPEC, attributes=["race", "sex"], show_progress=False
    )
    assert out.meta["training"]["fairness"] == fairness
    assert out.history[0]["train_penalty"] > 0
    bundle = load_bundle(out.bundle)
    assert bundle.model(torch.zeros(2, 1, 32, 32)).shape == (2, 1)
