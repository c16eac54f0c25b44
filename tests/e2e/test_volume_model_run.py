"""`fairaudit audit VOLUMES --model M --task segmentation`: a 3D model on DICOM series and NIfTI
volumes, a 2D model slice by slice.

The model is a 1x1x1 convolution whose answer is known (foreground where the raw value
exceeds 100), so the expected masks are computed here with numpy from the voxels as
written, the slices in position order, and the Dice from those masks by hand.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
nib = pytest.importorskip("nibabel")

from fairaudit.schema import validate_results  # noqa: E402
from tests._helpers import cli  # noqa: E402
from tests._helpers.dicom import write_dicom  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
SHAPE = (6, 12, 10)  # slices, rows, cols
SPACING = (2.5, 0.8, 0.7)


class _Threshold3D(torch.nn.Module):
    """Logit x - 100: foreground where the raw value is above 100."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1] - 100.0


class _Threshold2D(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([100.0 - x[:, :1], x[:, :1] - 100.0], dim=1)


def _volume(i: int) -> np.ndarray:
    """A box that differs slice by slice (so a wrong slice order shows), value 300 on 0."""
    v = np.zeros(SHAPE, dtype=np.int16)
    v[1 : 2 + i % 4, 2:9, 3 : 3 + 1 + i] = 300
    v[0, 0, 0] = 300  # one voxel on the first slice only
    return v


def _model(tmp_path: Path, **keys: object) -> Path:
    path = tmp_path / "thr3d.onnx"
    axes = {0: "n", 2: "d", 3: "h", 4: "w"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Threshold3D(), (torch.zeros(1, 1, 4, 8, 8),), str(path), input_names=["image"],
            output_names=["logits"], dynamic_axes={"image": axes, "logits": axes}, dynamo=False,
        )  # fmt: skip
    meta = {"task": "segmentation", "classes": ["background", "box"], "preprocessing": {"intensity": "none"}}
    meta |= {"spatial_dims": 3, "roi_size": [4, 8, 8], "sw_overlap": 0.25, "sw_blend": "gaussian"} | keys
    Path(str(path) + ".json").write_text(json.dumps(meta))
    return path


def _dice(truth: np.ndarray, pred: np.ndarray) -> float:
    return 2 * float((truth & pred).sum()) / float(truth.sum() + pred.sum())


def _series_cohort(root: Path, n: int = 6) -> tuple[Path, Path, Path, dict[str, np.ndarray]]:
    """n CT series (files named against the slice order), truth masks <series_uid>.npy with one
    voxel of every second case wrong, demographics by series_instance_uid."""
    from pydicom.uid import generate_uid

    images, masks = root / "images", root / "masks"
    masks.mkdir(parents=True)
    rows, expected = [], {}
    for i in range(n):
        uid, study = generate_uid(), generate_uid()
        v = _volume(i)
        for k in range(SHAPE[0]):
            write_dicom(
                images / f"case{i}" / f"slice{SHAPE[0] - k:02d}.dcm", v[k], modality="CT",
                SeriesInstanceUID=uid, StudyInstanceUID=study, ImagePositionPatient=[0.0, 0.0, 10.0 + SPACING[0] * k],
                ImageOrientationPatient=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0], PixelSpacing=[SPACING[1], SPACING[2]],
                InstanceNumber=k + 1, Manufacturer="VendorB" if i % 3 == 0 else "VendorA",
            )  # fmt: skip
        pred = v > 100
        truth = pred.copy()
        if i % 2:
            truth[4, 10, 8] = True  # one voxel the model misses
        np.save(masks / f"{uid}.npy", truth.astype(np.uint8))
        expected[uid] = pred
        rows.append({"series_instance_uid": uid, "sex": "F" if i % 2 else "M"})
    demo = root / "demo.csv"
    pd.DataFrame(rows).to_csv(demo, index=False)
    return images, masks, demo, expected


def _run(images: Path, model: Path, masks: Path, demo: Path, out: Path, *extra: str) -> object:
    return cli.invoke(
        ["audit", str(images), "--model", str(model), "--task", "segmentation", "--masks", str(masks),
         "--demographics", str(demo), "--attribute", "sex", "--bootstrap", "20", "--min-group-size", "2",
         "--workers", "1", "--keep-ids", "--quiet", "--out", str(out), *extra],
        columns=None,
    )  # fmt: skip


def test_a_3d_model_runs_on_dicom_series(tmp_path: Path) -> None:
    images, masks, demo, expected = _series_cohort(tmp_path)
    out = tmp_path / "out"
    res = _run(images, _model(tmp_path), masks, demo, out)
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    validate_results(results)
    assert results["model"]["volume"]["mode"] == "sliding_window"
    assert results["model"]["run"]["n_volumes"] == len(expected)
    assert results["config"]["segmentation"]["distance_unit"] == "mm"
    cases = pd.read_csv(out / "segmentation_cases.csv", dtype={"id": str}).set_index("id")
    for uid, pred in expected.items():
        written = np.load(out / "pred_masks" / f"{uid}.npy")
        np.testing.assert_array_equal(written.astype(bool), pred)  # (slices, rows, cols), position order
        truth = np.load(masks / f"{uid}.npy").astype(bool)
        assert cases.loc[uid, "dice"] == pytest.approx(_dice(truth, pred))
    manifest = pd.read_csv(out / "manifest.csv", dtype=str)
    files = manifest[manifest["source"].str.startswith("DICOM files/")]
    assert len(files) == len(expected) * SHAPE[0] and (files["status"] == "included").all()
    # The written masks audit again (--pred-masks) to the same Dice.
    again = cli.invoke(
        ["audit", "--task", "segmentation", "--masks", str(masks), "--pred-masks", str(out / "pred_masks"),
         "--demographics", str(demo), "--attribute", "sex", "--spacing", "2.5x0.8x0.7", "--bootstrap", "20",
         "--min-group-size", "2", "--workers", "1", "--id-column", "series_instance_uid", "--keep-ids",
         "--quiet", "--out", str(tmp_path / "again")],
        columns=None,
    )  # fmt: skip
    assert again.exit_code == 0, again.output
    second = pd.read_csv(tmp_path / "again" / "segmentation_cases.csv", dtype={"id": str}).set_index("id")
    np.testing.assert_allclose(second.loc[cases.index, "dice"], cases["dice"])


def test_resume_on_a_volume_run_says_it_predicts_again(tmp_path: Path) -> None:
    """Segmentation runs keep no prediction cache: --resume is accepted (the command line is
    the same as a classification run's) and says that every volume is predicted again."""
    images, masks, demo, _ = _series_cohort(tmp_path, n=4)
    res = _run(images, _model(tmp_path), masks, demo, tmp_path / "out", "--resume")
    assert res.exit_code == 0, res.output
    assert "--resume: segmentation runs are not cached yet" in " ".join(res.output.split())


def test_dicom_attributes_group_the_series_of_a_volume_run(tmp_path: Path) -> None:
    """`--attribute dicom:Manufacturer` on a 3D model run: each series is grouped by its
    slices' header (cases 0 and 3 are VendorB), as a classification run groups files."""
    images, masks, demo, expected = _series_cohort(tmp_path)
    out = tmp_path / "out"
    res = _run(images, _model(tmp_path), masks, demo, out, "--attribute", "dicom:Manufacturer")
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    validate_results(results)
    attr = next(a for a in results["attributes"] if a["name"] == "dicom:Manufacturer")
    sizes = {g["group"]: g["n"] for g in attr["groups"]}
    assert sorted(sizes.values()) == [2, 4] and len(expected) == 6


@pytest.mark.slow  # the slices themselves: tests/unit/models/test_sliding_window.py; the wiring: the 3D tests
def test_a_2d_model_runs_slice_by_slice_on_series(tmp_path: Path) -> None:
    images, masks, demo, expected = _series_cohort(tmp_path, n=4)
    path = tmp_path / "thr2d.pt"
    torch.jit.script(_Threshold2D()).save(str(path))
    spec = {"input_size": [SHAPE[1], SHAPE[2]], "intensity": "none"}
    Path(str(path) + ".json").write_text(
        json.dumps({"task": "segmentation", "preprocessing": spec, "slice_axis": 0})
    )
    out = tmp_path / "out"
    res = _run(images, path, masks, demo, out, "--trust-model")
    assert res.exit_code == 0, res.output
    for uid, pred in expected.items():
        np.testing.assert_array_equal(np.load(out / "pred_masks" / f"{uid}.npy").astype(bool), pred)


def test_a_3d_model_runs_on_nifti_volumes(tmp_path: Path) -> None:
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    affine = np.diag([0.7, 0.8, 2.5, 1.0])
    rows, expected = [], {}
    for i in range(4):
        v = np.moveaxis(_volume(i), 0, -1)  # (x, y, z) in RAS+
        if i == 1:  # stored with x running right to left: the same grid once reoriented
            flipped = affine.copy()
            flipped[:3, 0] *= -1
            flipped[:3, 3] = affine[:3, 0] * (v.shape[0] - 1)
            nib.save(nib.Nifti1Image(v[::-1].copy(), flipped), images / f"case{i}.nii.gz")
        else:
            nib.save(nib.Nifti1Image(v, affine), images / f"case{i}.nii.gz")
        truth = v > 100
        truth[0, 0, 3] ^= bool(i % 2)
        nib.save(nib.Nifti1Image(truth.astype(np.uint8), affine), masks / f"case{i}.nii.gz")
        expected[f"case{i}"] = (v > 100, truth)
        rows.append({"path": f"case{i}", "sex": "F" if i % 2 else "M"})
    demo = tmp_path / "demo.csv"
    pd.DataFrame(rows).to_csv(demo, index=False)
    out = tmp_path / "out"
    res = _run(images, _model(tmp_path, roi_size=[8, 8, 4]), masks, demo, out, "--id-column", "path")
    assert res.exit_code == 0, res.output
    cases = pd.read_csv(out / "segmentation_cases.csv", dtype={"id": str}).set_index("id")
    for key, (pred, truth) in expected.items():
        written = nib.load(out / "pred_masks" / f"{key}.nii.gz")
        np.testing.assert_array_equal(np.asarray(written.dataobj).astype(bool), pred)
        np.testing.assert_allclose(written.affine, affine, atol=1e-4)  # the canonical grid (float32 header)
        assert cases.loc[key, "dice"] == pytest.approx(_dice(truth, pred))


def test_a_2d_image_folder_with_a_3d_model_is_refused_with_the_reason(tmp_path: Path) -> None:
    images = tmp_path / "images"
    write_dicom(images / "a.dcm", np.zeros((8, 8), np.uint16), modality="DX", SOPInstanceUID="1.2.3")
    masks = tmp_path / "masks"
    masks.mkdir()
    np.save(masks / "1.2.3.npy", np.zeros((8, 8), np.uint8))
    demo = tmp_path / "demo.csv"
    pd.DataFrame([{"sop_instance_uid": "1.2.3", "sex": "F"}]).to_csv(demo, index=False)
    res = _run(images, _model(tmp_path), masks, demo, tmp_path / "out")
    assert res.exit_code == 2, res.output
    text = cli.flat(res.output)
    assert "no volume to run the model on" in text and "runs on volumes" in text
