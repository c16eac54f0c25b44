"""A segmentation model run's pred_masks/ audited again with --pred-masks (issue 22, point 6).

The bundled lung segmenter runs on a few sample images; its masks, named by the salted
pseudonym of each id and listed in pred_masks/index.csv, are then audited from masks with
the same --salt: the per-case Dice is the model run's, and equals numpy's Dice of the
written PNG against the ground truth. Without the salt, the error says which naming it
expected and shows an example.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

pytest.importorskip("torch")

from _helpers import cli  # noqa: E402
from _helpers.paths import SAMPLE  # noqa: E402

SALT = "reaudit-salt"
N = 12


def _hash(value: str) -> str:
    return hashlib.sha256(SALT.encode() + b"\x00" + value.encode()).hexdigest()[:16]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first N sample images (both sexes), their masks and demographics rows."""
    root = tmp_path_factory.mktemp("few")
    images = pd.read_csv(SAMPLE / "images.csv", dtype=str).head(N)
    for _, row in images.iterrows():
        for rel in (row["path"], row["mask"]):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(SAMPLE / rel, root / rel)
    demo = pd.read_csv(SAMPLE / "demographics.csv", dtype=str)
    demo[demo["sop_instance_uid"].isin(images["sop_instance_uid"])].to_csv(
        root / "demographics.csv", index=False
    )
    return root


def _common(root: Path, out: Path, *salt: str) -> list[str]:
    return ["--task", "segmentation", "--masks", str(root / "masks"), "--mask-labels", "1,2",
            "--demographics", str(root / "demographics.csv"), "--attribute", "sex", "--bootstrap", "20",
            "--min-group-size", "2", "--workers", "1", "--format", "json", *salt, "--quiet",
            "--out", str(out)]  # fmt: skip


@pytest.fixture(scope="module")
def model_run(small: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "out"
    res = cli.invoke(
        ["audit", str(small / "images"), "--model", "bundled:cxr_lung_segmenter", "--device", "cpu",
         *_common(small, out, "--salt", SALT)],
        columns=None,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    return out


def test_pred_masks_are_named_by_pseudonym_and_listed_in_the_index(model_run: Path, small: Path) -> None:
    demo = pd.read_csv(small / "demographics.csv", dtype=str)
    index = pd.read_csv(model_run / "pred_masks" / "index.csv", dtype=str)
    assert list(index.columns) == ["id", "mask", "naming"]
    assert set(index["naming"]) == {"pseudonym"}
    assert sorted(index["id"]) == sorted(_hash(u) for u in demo["sop_instance_uid"])
    assert (index["mask"] == index["id"] + ".png").all()
    assert sorted(p.name for p in (model_run / "pred_masks").glob("*.png")) == sorted(index["mask"])
    for uid in demo["sop_instance_uid"]:  # no raw id in any output file name or in the index
        assert uid not in (model_run / "pred_masks" / "index.csv").read_text(encoding="utf-8")


def test_pred_masks_audited_again_give_the_same_per_case_dice(
    model_run: Path, small: Path, tmp_path: Path
) -> None:
    again = tmp_path / "again"
    # With the images as DICOM_DIR, as in the model run: the same spacing, so every metric matches.
    res = cli.invoke(
        ["audit", str(small / "images"), "--pred-masks", str(model_run / "pred_masks"),
         *_common(small, again, "--salt", SALT)],
        columns=None,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    first = pd.read_csv(model_run / "segmentation_cases.csv", dtype={"id": str}).set_index("id")
    second = pd.read_csv(again / "segmentation_cases.csv", dtype={"id": str}).set_index("id")
    assert len(first) == len(second) == N
    pd.testing.assert_frame_equal(first.sort_index(), second.sort_index())  # dice, ..., nsd
    images = pd.read_csv(small / "demographics.csv", dtype=str)
    truth_rows = pd.read_csv(SAMPLE / "images.csv", dtype=str).set_index("sop_instance_uid")
    for uid in images["sop_instance_uid"].head(4):  # and equals numpy's Dice of the files
        truth = np.isin(np.asarray(Image.open(small / truth_rows.loc[uid, "mask"])), [1, 2])
        pred = np.asarray(Image.open(model_run / "pred_masks" / f"{_hash(uid)}.png")) > 0
        dice = 2 * (truth & pred).sum() / (truth.sum() + pred.sum())
        assert second.loc[_hash(uid), "dice"] == pytest.approx(dice)
    manifest = pd.read_csv(again / "manifest.csv", dtype=str)
    assert not manifest["source"].str.contains("index.csv").any()
    assert (manifest[manifest["source"].str.startswith("pred_masks/")]["status"] == "included").all()


def test_without_the_salt_the_error_names_the_naming_and_an_example(
    model_run: Path, small: Path, tmp_path: Path
) -> None:
    res = cli.invoke(
        ["audit", "--pred-masks", str(model_run / "pred_masks"), *_common(small, tmp_path / "x")],
        columns=None,
    )  # fmt: skip
    text = cli.flat(res.output)
    assert res.exit_code == 2, text
    assert "salted pseudonym" in text and "index.csv" in text and "--salt" in text
    assert "would be listed as '" in text  # one example name, a pseudonym
    demo = pd.read_csv(small / "demographics.csv", dtype=str)
    assert not any(uid in res.output for uid in demo["sop_instance_uid"])
