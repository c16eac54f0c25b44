"""Segmentation audits of NIfTI volumes and masks, and `--structures` (docs/nifti.md,
docs/segmentation.md). The files are built here with nibabel; the independent answers are
hand-counted Dice, MONAI's compute_dice / compute_hausdorff_distance on the canonical
(nibabel as_closest_canonical) arrays with nibabel's zooms, and the manifest reasons."""

from __future__ import annotations

import io
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from fairaudit.errors import InputError
from fairaudit.schema import validate_results
from fairaudit.workflows.segmentation import SegmentationRequest, build_segmentation_report

SPACING = (0.8, 0.8, 2.5)
SHAPE = (20, 18, 8)
N = 12


def _affine(flip: bool = False) -> np.ndarray:
    affine = np.diag([*SPACING, 1.0])
    affine[:3, 3] = (-8.0, -7.0, -10.0)
    if flip:  # axis 0 stored reversed (LAS), the same world positions
        affine[0, 0] = -SPACING[0]
        affine[0, 3] += SPACING[0] * (SHAPE[0] - 1)
    return affine


def _save(path: Path, data: np.ndarray, flip: bool = False, affine: np.ndarray | None = None) -> None:
    stored = data[::-1].copy() if flip else data
    nib.save(nib.Nifti1Image(stored, _affine(flip) if affine is None else affine), str(path))


def _labels(k: int) -> np.ndarray:
    """Label 1 (a box, 'liver') holding label 2 (a smaller box, 'tumour')."""
    truth = np.zeros(SHAPE, np.uint8)
    truth[3 : 15 + k % 3, 4:14, 1:7] = 1
    truth[6:10, 6 : 9 + k % 2, 2:5] = 2
    return truth


def _pred(truth: np.ndarray, k: int, group: str) -> np.ndarray:
    pred = truth.copy()
    liver = ndimage.binary_dilation(truth > 0) if group == "b" else truth > 0
    pred[liver & (pred == 0)] = 1
    pred[np.roll(truth == 2, k // 2 % 2, axis=1)] = 2
    pred[(truth == 2) & ~np.roll(truth == 2, k // 2 % 2, axis=1)] = 1
    return pred


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("nifti")
    for name in ("images", "truth", "pred"):
        (root / name).mkdir()
    rows = []
    for k in range(N):
        group = "ab"[k % 2]
        flip_pred = k % 3 == 0  # the prediction stored in another orientation than the truth
        truth = _labels(k)
        _save(root / "images" / f"case{k}.nii.gz", (truth * 50).astype(np.int16))
        _save(root / "truth" / f"case{k}.nii.gz", truth)
        _save(root / "pred" / f"case{k}.nii.gz", _pred(truth, k, group), flip=flip_pred)
        rows.append({"path": f"case{k}", "group": group})
    # Three unusable cases: a shape mismatch, an affine mismatch, and a cut .nii.gz.
    small = np.zeros((SHAPE[0], SHAPE[1], SHAPE[2] - 1), np.uint8)
    small[2:8, 2:8, 2:5] = 1
    _save(root / "truth" / "shape.nii.gz", _labels(0))
    _save(root / "pred" / "shape.nii.gz", small)
    shifted = _affine()
    shifted[2, 3] += 5.0
    _save(root / "truth" / "moved.nii.gz", _labels(0))
    _save(root / "pred" / "moved.nii.gz", _labels(0), affine=shifted)
    _save(root / "truth" / "cut.nii.gz", _labels(0))
    raw = (root / "truth" / "case0.nii.gz").read_bytes()
    (root / "pred" / "cut.nii.gz").write_bytes(raw[: len(raw) // 2])
    rows += [{"path": p, "group": "a"} for p in ("shape", "moved", "cut")]
    pd.DataFrame(rows).to_csv(root / "demo.csv", index=False)
    return {"root": root, "images": root / "images", "truth": root / "truth", "pred": root / "pred",
            "demo": root / "demo.csv"}  # fmt: skip


def _request(c: dict[str, Path], **kw) -> SegmentationRequest:
    base = dict(
        masks=c["truth"], pred_masks=c["pred"], attributes=["group"], out=None, demographics=c["demo"],
        id_column="path", cluster_column="none", bootstrap=50, min_group_size=2, keep_ids=True,
        workers=1, progress=False,
    )  # fmt: skip
    base.update(kw)
    return SegmentationRequest(**base)


def _cases(report) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(report.companions["segmentation_cases.csv"]), dtype={"id": str})


def _manifest(report) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(report.manifest), dtype=str, keep_default_na=False)


def _canonical(path: Path) -> np.ndarray:
    return np.asanyarray(nib.as_closest_canonical(nib.load(str(path))).dataobj)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.fixture(scope="module")
def plain(cohort):
    return build_segmentation_report(_request(cohort))


@pytest.fixture(scope="module")
def structures(cohort, tmp_path_factory):
    policy = tmp_path_factory.mktemp("gate") / "gate.toml"
    policy.write_text('[gate]\nmetrics = ["dice"]\nmax_abs_difference = 0.05\non_inconclusive = "pass"\n')
    return build_segmentation_report(_request(cohort, structures=((1, "liver"), (2, "tumour")), gate=policy))


def test_nifti_masks_spacing_from_header_and_mismatches_excluded(cohort, plain) -> None:
    report = plain
    data = report.data
    validate_results(data)
    seg = data["config"]["segmentation"]
    assert seg["spacing_source"] == "nifti" and seg["distance_unit"] == "mm"
    assert data["inputs"]["n_included"] == N
    manifest = _manifest(report)
    rows = manifest[manifest["source"] == "demo.csv"].set_index("id")
    assert rows.loc["shape", "reason"].startswith(
        "ground-truth and predicted NIfTI masks do not match: shapes differ: 20 x 18 x 8 and 20 x 18 x 7"
    )
    assert "affines differ by up to 5 mm" in rows.loc["moved", "reason"]
    assert rows.loc["cut", "reason"].startswith("predicted mask truncated or damaged NIfTI data")
    assert (rows.loc[[f"case{k}" for k in range(N)], "status"] == "included").all()
    # Flipped predictions were reoriented: the dice equals the hand count on nibabel's canonical arrays.
    cases = _cases(report).set_index("id")
    for k in range(N):
        truth = _canonical(cohort["truth"] / f"case{k}.nii.gz") > 0
        pred = _canonical(cohort["pred"] / f"case{k}.nii.gz") > 0
        assert cases.loc[f"case{k}", "dice"] == pytest.approx(_dice(truth, pred), abs=1e-12)


def test_hd95_in_mm_and_structure_dice_equal_monai(cohort, plain, structures) -> None:
    """MONAI on nibabel's canonical arrays with nibabel's zooms: hd95 of the union, and each
    structure's Dice."""
    torch = pytest.importorskip("torch")
    metrics = pytest.importorskip("monai.metrics")
    cases = _cases(plain).set_index("id")
    zooms = [float(z) for z in nib.load(str(cohort["truth"] / "case3.nii.gz")).header.get_zooms()[:3]]
    for k in (0, 3):  # case 0's prediction is stored flipped
        y = torch.from_numpy(
            (_canonical(cohort["truth"] / f"case{k}.nii.gz") > 0)[None, None].astype(np.float32)
        )
        yp = torch.from_numpy(
            (_canonical(cohort["pred"] / f"case{k}.nii.gz") > 0)[None, None].astype(np.float32)
        )
        hd95 = float(metrics.compute_hausdorff_distance(yp, y, percentile=95, spacing=zooms).item())
        assert cases.loc[f"case{k}", "hd95"] == pytest.approx(hd95, abs=1e-6)
    by = _cases(structures).set_index(["id", "structure"])
    for k in (0, 5):
        for label, name in ((1, "liver"), (2, "tumour")):
            truth = _canonical(cohort["truth"] / f"case{k}.nii.gz") == label
            pred = _canonical(cohort["pred"] / f"case{k}.nii.gz") == label
            y, yp = (torch.from_numpy(m[None, None]).float() for m in (truth, pred))
            assert by.loc[(f"case{k}", name), "dice"] == pytest.approx(
                float(metrics.compute_dice(yp, y).item()), abs=1e-6
            )


def test_nifti_image_folder_gives_the_grid_and_spacing(cohort, tmp_path) -> None:
    report = build_segmentation_report(_request(cohort, dicom_dir=cohort["images"]))
    assert report.data["config"]["segmentation"]["spacing_source"] == "nifti"
    assert report.data["inputs"]["n_included"] == N
    # A mask on another grid than its image is excluded with the reason.
    images = tmp_path / "images"
    images.mkdir()
    for k in range(N):
        flip = k == 1
        affine = _affine(flip)
        if k == 2:
            affine[0, 3] += 3.0
        nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.int16), affine), str(images / f"case{k}.nii.gz"))
    report = build_segmentation_report(_request(cohort, dicom_dir=images))
    manifest = _manifest(report)
    rows = manifest[manifest["source"] == "demo.csv"].set_index("id")
    assert rows.loc["case1", "status"] == "included"  # a flipped image is the same grid
    assert rows.loc["case2", "reason"].startswith(
        "the ground-truth NIfTI mask does not match its image volume: affines differ by up to 3 mm"
    )


def test_structures_audited_separately_with_per_structure_dice(cohort, structures) -> None:
    report = structures
    data = report.data
    validate_results(data)
    assert [s["name"] for s in data["structures"]] == ["liver", "tumour"]
    assert data["config"]["segmentation"]["structures"] == [
        {"label": 1, "name": "liver"},
        {"label": 2, "name": "tumour"},
    ]
    # The top level is the first structure's audit.
    assert data["overall"] == data["structures"][0]["overall"]
    cases = _cases(report)
    assert set(cases["structure"]) == {"liver", "tumour"} and len(cases) == 2 * N
    by = cases.set_index(["id", "structure"])
    for k in range(N):
        truth = _canonical(cohort["truth"] / f"case{k}.nii.gz")
        pred = _canonical(cohort["pred"] / f"case{k}.nii.gz")
        for label, name in ((1, "liver"), (2, "tumour")):
            expected = _dice(truth == label, pred == label)
            assert by.loc[(f"case{k}", name), "dice"] == pytest.approx(expected, abs=1e-12)
    # The planted boundary error is in group b's liver only.
    liver, tumour = (s["attributes"][0]["groups"] for s in data["structures"])
    liver_dice = {g["group"]: g["metrics"]["dice"]["value"] for g in liver}
    tumour_dice = {g["group"]: g["metrics"]["dice"]["value"] for g in tumour}
    assert liver_dice["b"] < liver_dice["a"] - 0.05
    assert abs(tumour_dice["b"] - tumour_dice["a"]) < 0.05


def test_structures_with_gate_combines_every_structure(structures) -> None:
    report = structures
    gate = report.data["gate"]
    per = {s["name"]: s["gate"] for s in report.data["structures"]}
    assert {c["structure"] for c in gate["checks"]} == {"liver", "tumour"}
    assert len(gate["checks"]) == sum(len(g["checks"]) for g in per.values())
    assert gate["passed"] == all(g["passed"] for g in per.values())
    assert per["liver"]["passed"] is False and gate["passed"] is False
    assert report.exit_code == 1


def test_structures_and_mask_labels_are_refused_together(cohort) -> None:
    from fairaudit.workflows.structures import parse_structures

    assert parse_structures("1=liver, 2=tumour") == ((1, "liver"), (2, "tumour"))
    for bad in ("1=liver,2", "0=background", "x=liver", "1=liver,1=tumour", "1=a,2=A", "1=<b>"):
        with pytest.raises(InputError, match="structures"):
            parse_structures(bad)
    with pytest.raises(InputError, match="would merge labels into one"):
        build_segmentation_report(_request(cohort, structures=((1, "liver"),), mask_labels=(1, 2)))


def test_dicom_series_matches_its_nifti_mask_by_series_uid(tmp_path) -> None:
    """A CT series named by its SeriesInstanceUID is one volume; its NIfTI mask, written as a
    converter writes it ((cols, rows, slices) with the LPS -> RAS affine built by hand here),
    matches; one shifted by a slice, and a NPY mask, are excluded with their reasons. hd95
    equals MONAI's on the DICOM-order arrays with the DICOM spacing (slice, row, col)."""
    from _helpers.dicom import write_dicom

    rows, cols, n_slices = 8, 10, 5
    (tmp_path / "dicom").mkdir()
    (tmp_path / "truth").mkdir()
    (tmp_path / "pred").mkdir()
    demo = []
    truth = np.zeros((n_slices, rows, cols), np.uint8)
    truth[1:4, 2:6, 3:8] = 1
    pred = np.roll(truth, 1, axis=2)  # one column off
    for case in range(3):
        uid = f"1.2.826.0.1.3680043.10.999.{case + 1}"
        for k in range(n_slices):
            write_dicom(
                tmp_path / "dicom" / f"s{case}_{k}.dcm", np.zeros((rows, cols), np.int16), SeriesInstanceUID=uid,
                ImageOrientationPatient=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
                ImagePositionPatient=[-10.0, -20.0, 30.0 + 2.5 * k], PixelSpacing=[0.7, 0.8], SliceThickness=2.5,
            )  # fmt: skip
        affine = np.array([[-0.8, 0, 0, 10.0], [0, -0.7, 0, 20.0], [0, 0, 2.5, 30.0], [0, 0, 0, 1.0]])
        if case == 2:
            np.save(tmp_path / "truth" / f"{uid}.npy", truth)
            np.save(tmp_path / "pred" / f"{uid}.npy", pred)
        else:
            shifted = affine.copy()
            shifted[2, 3] += 2.5 * case  # case 1: one slice off in z
            for folder, m, a in (("truth", truth, shifted), ("pred", pred, shifted)):
                nib.save(
                    nib.Nifti1Image(m.transpose(2, 1, 0).copy(), a), str(tmp_path / folder / f"{uid}.nii.gz")
                )
        demo.append({"series_instance_uid": uid, "group": "a"})
    pd.DataFrame(demo).to_csv(tmp_path / "demo.csv", index=False)
    report = build_segmentation_report(
        SegmentationRequest(
            masks=tmp_path / "truth",
            pred_masks=tmp_path / "pred",
            attributes=["group"],
            out=None,
            demographics=tmp_path / "demo.csv",
            dicom_dir=tmp_path / "dicom",
            id_column="series_instance_uid",
            cluster_column="none",
            bootstrap=20,
            min_group_size=1,
            keep_ids=True,
            workers=1,
            progress=False,
        )  # fmt: skip
    )
    manifest = _manifest(report)
    rows_ = manifest[manifest["source"] == "demo.csv"].set_index("id")
    uids = [d["series_instance_uid"] for d in demo]
    assert rows_.loc[uids[0], "status"] == "included"
    assert "does not match its image volume: affines differ by up to 2.5 mm" in rows_.loc[uids[1], "reason"]
    assert rows_.loc[uids[2], "reason"].startswith("a DICOM series volume is matched with a NIfTI mask only")
    assert report.data["config"]["segmentation"]["spacing_source"] == "dicom"
    torch = pytest.importorskip("torch")
    metrics = pytest.importorskip("monai.metrics")
    y, yp = (torch.from_numpy(m[None, None].astype(np.float32)) for m in (truth, pred))
    hd95 = float(metrics.compute_hausdorff_distance(yp, y, percentile=95, spacing=[2.5, 0.7, 0.8]).item())
    cases = _cases(report).set_index("id")
    assert cases.loc[uids[0], "hd95"] == pytest.approx(hd95, abs=1e-6)
    assert cases.loc[uids[0], "dice"] == pytest.approx(_dice(truth > 0, pred > 0), abs=1e-12)


def test_ids_with_the_nifti_extension_find_masks_named_without_it(cohort, plain, tmp_path) -> None:
    """A demographics id written as the file name (`case3.nii.gz`) finds `case3.nii.gz` in
    the image, mask and prediction folders alike, and the per-case metrics are those of
    the ids written without it (docs/nifti.md, "Ids")."""
    frame = pd.read_csv(cohort["demo"])
    frame["path"] = frame["path"] + ".nii.gz"
    demo = tmp_path / "demo_ext.csv"
    frame.to_csv(demo, index=False)
    report = build_segmentation_report(_request(cohort, demographics=demo, dicom_dir=cohort["images"]))
    ext, bare = _cases(report).set_index("id"), _cases(plain).set_index("id")
    assert report.data["inputs"]["n_included"] == N
    assert sorted(ext.index) == sorted(f"{k}.nii.gz" for k in bare.index)
    for k in bare.index:
        assert ext.loc[f"{k}.nii.gz", "dice"] == pytest.approx(bare.loc[k, "dice"], abs=1e-12)
    manifest = _manifest(report)
    masks = manifest[manifest["source"].str.startswith("masks/case")]
    assert set(masks["status"]) == {"included"}


def test_image_folder_limits_reach_the_scan(cohort, tmp_path) -> None:
    """--max-pixels bounds the image folder of a segmentation audit as it does a model
    run's: a volume above it is excluded with the reason, the others are audited."""
    import shutil

    images = tmp_path / "images"
    shutil.copytree(cohort["images"], images)
    big = np.zeros((SHAPE[0] * 2, SHAPE[1], SHAPE[2]), np.int16)
    nib.save(nib.Nifti1Image(big, _affine()), str(images / "case0.nii.gz"))
    limit = int(np.prod(SHAPE)) + 1
    report = build_segmentation_report(_request(cohort, dicom_dir=images, max_pixels=limit))
    manifest = _manifest(report)
    row = manifest[manifest["source"] == "DICOM files/case0.nii.gz"].iloc[0]
    assert row["status"] == "excluded" and f"max_pixels {limit}" in row["reason"]
    assert report.data["inputs"]["n_included"] == N - 1


def test_every_structure_gets_key_findings_and_model_card_entries(structures) -> None:
    """The reviewer's sections speak of every structure, not only the first (the top level):
    one key finding per structure and attribute, headed by the structure, whose numbers are
    that structure's own group Dice; model_card.json's slices name their structure."""
    import json
    from importlib import resources

    import jsonschema

    from fairaudit.report.key_findings import key_findings
    from fairaudit.report.model_card import render_model_card

    data = structures.data
    found = key_findings(data)
    assert [(k.finding, k.block, k.attribute) for k in found] == [
        ("liver", "structure", "group"),
        ("tumour", "structure", "group"),
    ]
    for k, entry in zip(found, data["structures"], strict=True):
        groups = {g["group"]: g for g in entry["attributes"][0]["groups"]}
        value = groups["b"]["metrics"][k.metric]["value"] if k.metric else None
        if value is not None:
            assert f"{value:.3f}" in k.sentence
    card = json.loads(render_model_card(data))
    schema = json.loads(
        resources.files("fairaudit.schema").joinpath("model_card.schema.json").read_text("utf-8")
    )
    jsonschema.validate(card, schema)
    slices = card["quantitative_analysis"]["slices"]
    assert {s["structure"] for s in slices} == {"liver", "tumour"} and len(slices) == 4
    tumour = {s["group"]: s for s in slices if s["structure"] == "tumour"}
    expected = {
        g["group"]: g["metrics"]["dice"]["value"] for g in data["structures"][1]["attributes"][0]["groups"]
    }
    assert {g: s["metrics"]["dice"]["value"] for g, s in tumour.items()} == pytest.approx(expected)
    assert [k["structure"] for k in card["key_findings"]] == ["liver", "tumour"]


def test_gate_checks_name_their_structure_in_every_report(structures) -> None:
    """A --structures gate holds the same check once per structure: report.md, report.html
    and junit.xml name the structure of each (liver's planted error fails, group b), and
    the verdict says which structure the tables describe."""
    import xml.etree.ElementTree as ET

    from fairaudit.report.html import render_html
    from fairaudit.report.junit import render_junit
    from fairaudit.report.markdown import render_markdown

    data = structures.data
    failed = [c for c in data["gate"]["checks"] if c["status"] == "fail"]
    assert failed and {c["structure"] for c in failed} == {"liver"}
    md = render_markdown(data)
    assert "| structure | rule | metric |" in md
    for c in data["gate"]["checks"]:
        assert f"| {c['structure']} | {c['rule']} | {c['metric']} | {c['attribute']} | {c['group']} |" in md
    assert "- liver: max_abs_difference on dice, group = b" in md
    assert "describe **liver**" in md
    page = render_html(data)
    assert "<th>structure</th><th>rule</th>" in page and "<li>liver: max_abs_difference on dice" in page
    cases = ET.fromstring(render_junit(data)).iter("testcase")
    names = [c.get("name") for c in cases]
    assert len(names) == len(set(names)) == len(data["gate"]["checks"])
    assert {n.split(":")[0] for n in names} == {"liver", "tumour"}
