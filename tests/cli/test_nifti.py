"""`fairaudit audit` on NIfTI volumes and masks with --structures, and `sample-data
--volumes` (docs/nifti.md), end to end. The independent answers: nibabel's own reading of
the written files, hand-counted Dice, and the exit codes of docs/ci.md."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from fairaudit.schema import validate_results
from fairaudit.workflows.segmentation import SegmentationRequest, build_segmentation_report

from _helpers import cli


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vol")
    res = cli.invoke(
        ["sample-data", str(root), "--volumes", "--n", "12", "--size", "16", "--seed", "3", "-q"]
    )
    assert res.exit_code == 0, res.output
    return root


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_sample_volumes_are_deterministic_anisotropic_and_reoriented(cohort, tmp_path) -> None:
    again = tmp_path / "again"
    assert (
        cli.invoke(
            ["sample-data", str(again), "--volumes", "--n", "12", "--size", "16", "--seed", "3", "-q"]
        ).exit_code
        == 0
    )
    assert _digests(cohort) == _digests(again)
    other = tmp_path / "other"
    assert (
        cli.invoke(
            ["sample-data", str(other), "--volumes", "--n", "12", "--size", "16", "--seed", "4", "-q"]
        ).exit_code
        == 0
    )
    assert _digests(cohort) != _digests(other)
    demo = pd.read_csv(cohort / "demographics.csv")
    assert list(demo.columns) == ["path", "patient_id", "sex", "age_group", "site"]
    assert sorted(p.name for p in (cohort / "masks").iterdir()) == [f"{c}.nii.gz" for c in demo["path"]]
    codes = set()
    for case in demo["path"]:
        img = nib.load(str(cohort / "images" / f"{case}.nii.gz"))
        assert img.header.get_zooms()[:3] == pytest.approx((0.8, 0.8, 2.5))
        codes.add(nib.aff2axcodes(img.affine))
        mask = nib.load(str(cohort / "masks" / f"{case}.nii.gz"))
        np.testing.assert_allclose(mask.affine, img.affine)
        assert set(np.unique(np.asanyarray(mask.dataobj))) <= {0, 1, 2}
    assert codes == {("R", "A", "S"), ("L", "A", "S")}


def test_sample_volumes_planted_error_is_site_c_liver(cohort) -> None:
    """Hand count: Dice per structure on nibabel's canonical arrays, by site."""
    demo = pd.read_csv(cohort / "demographics.csv")
    dice: dict[tuple[str, int], list[float]] = {}
    for case, site in zip(demo["path"], demo["site"], strict=True):
        t = np.asanyarray(
            nib.as_closest_canonical(nib.load(str(cohort / "masks" / f"{case}.nii.gz"))).dataobj
        )
        p = np.asanyarray(
            nib.as_closest_canonical(nib.load(str(cohort / "pred_masks" / f"{case}.nii.gz"))).dataobj
        )
        for label in (1, 2):
            a, b = t == label, p == label
            dice.setdefault((site, label), []).append(2 * (a & b).sum() / (a.sum() + b.sum()))
    liver = {s: np.mean(dice[(s, 1)]) for s in "ABC" if (s, 1) in dice}
    assert liver["C"] < min(v for s, v in liver.items() if s != "C") - 0.05


def test_audit_of_nifti_folder_with_structures(cohort, tmp_path) -> None:
    out = tmp_path / "out"
    res = cli.audit(
        str(cohort / "images"), "--task", "segmentation", "--masks", cohort / "masks", "--pred-masks",
        cohort / "pred_masks", "--demographics", cohort / "demographics.csv", "--id-column", "path",
        "--attribute", "site", "--structures", "1=liver,2=tumour", "--min-group-size", "2", "--keep-ids",
        "--format", "json,md", out=out, bootstrap=50, workers=1, quiet=True,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    r = json.loads((out / "results.json").read_text(encoding="utf-8"))
    validate_results(r)
    assert [s["name"] for s in r["structures"]] == ["liver", "tumour"]
    assert r["config"]["segmentation"]["spacing_source"] == "nifti"
    cases = pd.read_csv(out / "segmentation_cases.csv")
    assert sorted(set(cases["structure"])) == ["liver", "tumour"] and len(cases) == 24
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "## Structures" in md and "### tumour (label 2): 12 cases" in md


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--structures", "1=liver,2"], "each structure is LABEL=NAME"),
        (["--structures", "1=liver", "--mask-labels", "1,2"], "would merge labels into one"),
    ],
)
def test_bad_structures_exit_2_before_any_work(cohort, tmp_path, extra, message) -> None:
    res = cli.audit(
        "--task", "segmentation", "--masks", cohort / "masks", "--pred-masks", cohort / "pred_masks",
        "--demographics", cohort / "demographics.csv", "--id-column", "path", "--attribute", "site",
        *extra, out=tmp_path / "out", quiet=True,
    )  # fmt: skip
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split())
    assert "Traceback" not in res.output
    assert not (tmp_path / "out").exists()


def test_corrupt_mask_among_good_ones_is_reported_not_fatal(cohort, tmp_path) -> None:
    import shutil

    pred = tmp_path / "pred"
    shutil.copytree(cohort / "pred_masks", pred)
    raw = (pred / "case_004.nii.gz").read_bytes()
    (pred / "case_004.nii.gz").write_bytes(raw[: len(raw) // 3])
    report = build_segmentation_report(
        SegmentationRequest(
            masks=cohort / "masks",
            pred_masks=pred,
            attributes=["site"],
            out=None,
            demographics=cohort / "demographics.csv",
            id_column="path",
            bootstrap=50,
            min_group_size=2,
            keep_ids=True,
            workers=1,
            progress=False,
        )  # fmt: skip
    )
    manifest = pd.read_csv(io.StringIO(report.manifest), dtype=str, keep_default_na=False)
    row = manifest[(manifest["source"] == "demographics.csv") & (manifest["id"] == "case_004")].iloc[0]
    assert row["status"] == "excluded"
    assert "truncated or damaged NIfTI" in row["reason"]
    assert report.data["inputs"]["n_included"] == 11


def test_classification_by_id_over_a_nifti_folder(cohort, tmp_path) -> None:
    """Predictions named by the path without .nii.gz join the NIfTI files of the folder."""
    demo = pd.read_csv(cohort / "demographics.csv")
    preds = tmp_path / "preds.csv"
    pd.DataFrame(
        {"path": demo["path"], "label": np.arange(len(demo)) % 2, "score": np.linspace(0.1, 0.9, len(demo))}
    ).to_csv(preds, index=False)
    out = tmp_path / "out"
    res = cli.audit(
        str(cohort / "images"), "--predictions", preds, "--demographics", cohort / "demographics.csv",
        "--id-column", "path", "--attribute", "sex", "--min-group-size", "2", "--keep-ids", "--format", "json",
        out=out, bootstrap=50, workers=1, quiet=True,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    r = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert r["inputs"]["n_included"] == len(demo)
    assert r["inputs"]["dicom_files"] == {"readable": len(demo), "unreadable": 0}
    manifest = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)
    files = manifest[manifest["source"].str.endswith(".nii.gz")]
    assert len(files) == len(demo) and (files["status"] == "included").all()


def test_python_api_structures_mapping(cohort) -> None:
    import fairaudit

    report = fairaudit.audit_segmentation(
        cohort / "masks", cohort / "pred_masks", demographics=cohort / "demographics.csv", attributes="site",
        id_column="path", structures={2: "tumour"}, bootstrap=20, min_group_size=2, workers=1,
    )  # fmt: skip
    assert [(s["label"], s["name"]) for s in report.data["structures"]] == [(2, "tumour")]
    with pytest.raises(fairaudit.InputError, match="would merge labels into one"):
        fairaudit.audit_segmentation(
            cohort / "masks", cohort / "pred_masks", demographics=cohort / "demographics.csv", attributes="site",
            id_column="path", structures="1=liver", mask_labels=[1],
        )  # fmt: skip
