"""`--attribute dicom:KEYWORD` in a segmentation audit from masks (issue 22, point 5): groups
read from the DICOM headers (by pydicom here), Dice per group by numpy; identifying
keywords and a missing DICOM_DIR refused with exit 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image
from scipy import ndimage

from _helpers import cli
from _helpers.paths import SAMPLE

N = 16


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """N sample images with their masks; predictions eroded more on CR than on DX images."""
    root = tmp_path_factory.mktemp("dcmattr")
    (root / "pred").mkdir()
    images = pd.read_csv(SAMPLE / "images.csv", dtype=str).head(N)
    for _, row in images.iterrows():
        for rel in (row["path"], row["mask"]):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(SAMPLE / rel, root / rel)
        truth = np.asarray(Image.open(SAMPLE / row["mask"])) > 0
        pred = ndimage.binary_erosion(truth, iterations=3 if row["modality"] == "CR" else 1)
        Image.fromarray(pred.astype(np.uint8)).save(root / "pred" / f"{row['sop_instance_uid']}.png")
    demo = pd.read_csv(SAMPLE / "demographics.csv", dtype=str)
    demo[demo["sop_instance_uid"].isin(images["sop_instance_uid"])].to_csv(root / "demo.csv", index=False)
    return root


def _args(root: Path, out: Path, *attributes: str, dicom: bool = True) -> list[str]:
    attrs = [x for a in attributes for x in ("--attribute", a)]
    return ["audit", *([str(root / "images")] if dicom else []), "--task", "segmentation", "--masks",
            str(root / "masks"), "--pred-masks", str(root / "pred"), "--demographics", str(root / "demo.csv"),
            *attrs, "--bootstrap", "50", "--min-group-size", "2", "--workers", "1", "--format", "json",
            "--out", str(out), "-q"]  # fmt: skip


def test_dicom_modality_groups_and_their_dice(cohort: Path, tmp_path: Path) -> None:
    res = cli.invoke(_args(cohort, tmp_path / "out", "dicom:Modality", "sex"), columns=None)
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))
    by_uid = {}
    for rel in pd.read_csv(SAMPLE / "images.csv", dtype=str).head(N)["path"]:
        ds = pydicom.dcmread(cohort / rel, stop_before_pixels=True)
        by_uid[str(ds.SOPInstanceUID)] = str(ds.Modality)
    dice: dict[str, list[float]] = {}
    for uid, modality in by_uid.items():
        truth = np.asarray(Image.open(cohort / "masks" / f"{uid}.png")) > 0
        pred = np.asarray(Image.open(cohort / "pred" / f"{uid}.png")) > 0
        dice.setdefault(modality, []).append(2 * (truth & pred).sum() / (truth.sum() + pred.sum()))
    att = next(a for a in r["attributes"] if a["name"] == "dicom:Modality")
    assert {g["group"]: g["n"] for g in att["groups"]} == {m: len(v) for m, v in dice.items()}
    for g in att["groups"]:
        assert g["metrics"]["dice"]["value"] == pytest.approx(np.mean(dice[g["group"]]))
    assert r["inputs"]["dicom_attributes"] == [
        {"name": "dicom:Modality", "keyword": "Modality", "kind": "category"}
    ]


@pytest.mark.parametrize(
    ("attribute", "dicom", "message"),
    [("dicom:PatientName", True, "dicom:PatientName"), ("dicom:Modality", False, "DICOM")],
)
def test_identifying_keywords_and_no_dicom_folder_are_exit_2(
    cohort: Path, tmp_path: Path, attribute: str, dicom: bool, message: str
) -> None:
    res = cli.invoke(_args(cohort, tmp_path / "x", attribute, dicom=dicom), columns=None)
    assert res.exit_code == 2, res.output
    assert message in cli.flat(res.output)
