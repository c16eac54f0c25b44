"""`fairaudit audit FOLDER` on PNG and JPEG images (docs/images.md), end to end.

The folders are made here from 40 of sample_data's DICOM files: a copy of the DICOM files,
a lossless 16-bit PNG of each file's decoded values (after the modality LUT, MONOCHROME1
mirrored: what the DICOM reader hands the model), and an 8-bit JPEG. The independent answer
for the PNG run is the DICOM run: the same scores (within 1e-5) and the same results.json
numbers; the JPEG run (lossy) gives close scores. Ids are the path relative to the folder,
with or without the extension, or another column holding it (ChestX-ray14's Image Index).
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from fairaudit.schema import validate_results

from _helpers import cli
from _helpers.paths import SAMPLE

pytest.importorskip("torch")

N = 40
COMMON = ["--label-column", "finding", "--attribute", "sex", "--min-group-size", "5", "--keep-ids"]


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """dcm/, png/ (nested as sample_data), flat/ (one folder, ChestX-ray14-like names), jpg/,
    masks/ (named as flat/), and each image's sop uid, relative stem and labels."""
    from fairaudit.io.dicom import read_file

    root = tmp_path_factory.mktemp("images")
    demo = {r["sop_instance_uid"]: r for r in csv.DictReader((SAMPLE / "demographics.csv").open())}
    labels = {r["sop_instance_uid"]: r["finding"] for r in csv.DictReader((SAMPLE / "labels.csv").open())}
    files = sorted(p for p in (SAMPLE / "images").rglob("*") if p.is_file())[:N]
    cases = []
    for p in files:
        rel = p.relative_to(SAMPLE / "images")
        stem = rel.with_suffix("").as_posix() if rel.suffix == ".dcm" else rel.as_posix()
        image = read_file(p, SAMPLE / "images", header_only=False).image
        assert np.array_equal(image, np.round(image)) and 0 <= image.min() and image.max() < 2**16
        for sub, name in (("dcm", rel.as_posix()), ("png", f"{stem}.png"), ("jpg", f"{stem}.jpg")):
            (root / sub / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, root / "dcm" / rel)
        Image.fromarray(image.astype(np.uint16)).save(root / "png" / f"{stem}.png")
        Image.fromarray(np.round(image / 4095 * 255).astype(np.uint8)).save(
            root / "jpg" / f"{stem}.jpg", quality=95
        )
        uid = str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
        flat_name = f"{len(cases):08d}_000"  # as ChestX-ray14's Image Index: 00000001_000.png
        (root / "flat").mkdir(exist_ok=True)
        (root / "masks").mkdir(exist_ok=True)
        shutil.copy(root / "png" / f"{stem}.png", root / "flat" / f"{flat_name}.png")
        shutil.copy(SAMPLE / "masks" / f"{uid}.png", root / "masks" / f"{flat_name}.png")
        cases.append(
            {"uid": uid, "stem": stem, "flat": flat_name, "sex": demo[uid]["sex"], "finding": labels[uid]}
        )
    _write_csv(root / "demo_uid.csv", ["sop_instance_uid", "sex"], [[c["uid"], c["sex"]] for c in cases])
    _write_csv(
        root / "labels_uid.csv", ["sop_instance_uid", "finding"], [[c["uid"], c["finding"]] for c in cases]
    )
    for form, suffix in (("ext", ".png"), ("noext", "")):
        rows = [[c["stem"] + suffix, c["sex"], c["finding"]] for c in cases]
        _write_csv(root / f"path_{form}.csv", ["path", "sex", "finding"], rows)
    rows = [[c["flat"] + ".png", c["sex"], c["finding"], "x"] for c in cases]
    _write_csv(root / "data_entry.csv", ["Image Index", "sex", "finding", "Follow-up #"], rows)
    _write_csv(root / "demo_flat.csv", ["path", "sex"], [[c["flat"], c["sex"]] for c in cases])
    return {"root": root, "cases": cases}


def _scores(out: Path, key: str = "") -> dict[str, float]:
    with (out / "predictions.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    key = key or next(iter(rows[0]))
    return {r[key]: float(r["score"]) for r in rows}


@pytest.fixture(scope="module")
def dicom_run(folders, tmp_path_factory) -> Path:
    root, out = folders["root"], tmp_path_factory.mktemp("dcm_out")
    res = cli.audit(
        root / "dcm", "--model", cli.CLASSIFIER, "--demographics", root / "demo_uid.csv",
        "--labels", root / "labels_uid.csv", *COMMON, out=out, bootstrap=200, workers=2, quiet=True,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    return out


def _same_numbers(a: dict, b: dict, rel: float = 0.0) -> None:
    """results.json's overall metrics and per-attribute results: equal, or within `rel`."""
    for key in ("overall", "attributes"):
        if rel:
            _close(a[key], b[key], rel, key)
        else:
            assert a[key] == b[key], key
    assert a["inputs"]["n_included"] == b["inputs"]["n_included"] == N


def _close(a: object, b: object, rel: float, where: str) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        assert set(a) == set(b), where
        for k in a:
            _close(a[k], b[k], rel, f"{where}/{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, rel, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert b == pytest.approx(a, rel=rel, abs=1e-12), where
    else:
        assert a == b, where


def test_png_run_equals_the_dicom_run(folders, dicom_run, tmp_path) -> None:
    """Lossless 16-bit PNG of the decoded values: the model sees the same input."""
    root = folders["root"]
    res = cli.audit(
        root / "png", "--model", cli.CLASSIFIER, "--demographics", root / "path_ext.csv",
        "--labels", root / "path_ext.csv", *COMMON, out=tmp_path, bootstrap=200, workers=2, quiet=True,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    dicom, png = _scores(dicom_run), _scores(tmp_path)
    assert len(png) == N
    diff = [abs(dicom[c["uid"]] - png[c["stem"] + ".png"]) for c in folders["cases"]]
    assert max(diff) <= 1e-5, max(diff)
    a, b = cli.read_results(dicom_run), cli.read_results(tmp_path)
    validate_results(b)
    _same_numbers(a, b)
    assert b["config"]["id_column"] == "path"
    with (tmp_path / "manifest.csv").open(encoding="utf-8") as fh:
        files = [r for r in csv.DictReader(fh) if r["source"].startswith("DICOM files/")]
    assert len(files) == N and all(r["status"] == "included" for r in files)
    assert {r["source"] for r in files} == {f"DICOM files/{c['stem']}.png" for c in folders["cases"]}


def test_ids_without_extension_and_a_corrupt_file(folders, dicom_run, tmp_path) -> None:
    """`fixed_1/0007` names `fixed_1/0007.png`; a damaged file and a text file among the
    images are listed in the manifest with their reason, never fatal."""
    root = folders["root"]
    images = tmp_path / "png"
    shutil.copytree(root / "png", images)
    good = next(images.rglob("*.png")).read_bytes()
    (images / "broken.png").write_bytes(good[: len(good) // 3])
    (images / "notes.txt").write_text("not an image\n")
    out = tmp_path / "out"
    res = cli.audit(
        images, "--model", cli.CLASSIFIER, "--demographics", root / "path_noext.csv",
        "--labels", root / "path_noext.csv", *COMMON, out=out, bootstrap=200, workers=2, quiet=True,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    png = _scores(out)
    assert set(png) == {c["stem"] for c in folders["cases"]}  # predictions.csv: the CSVs' form
    dicom = _scores(dicom_run)
    assert max(abs(dicom[c["uid"]] - png[c["stem"]]) for c in folders["cases"]) <= 1e-5
    with (out / "manifest.csv").open(encoding="utf-8") as fh:
        manifest = {r["source"]: r for r in csv.DictReader(fh)}
    assert manifest["DICOM files/broken.png"]["status"] == "excluded"
    assert "truncated or damaged PNG" in manifest["DICOM files/broken.png"]["reason"]
    assert manifest["DICOM files/notes.txt"]["reason"] == "skipped: not a DICOM file"
    r = cli.read_results(out)
    # The damaged file shifts which files share a batch of the model: float rounding only.
    _same_numbers(cli.read_results(dicom_run), r, rel=1e-5)
    assert r["model"]["run"]["n_files"] == N + 2 and r["model"]["run"]["n_unreadable"] == 2


def test_image_index_column_and_jpeg(folders, dicom_run, tmp_path) -> None:
    """ChestX-ray14's layout: one folder, `--id-column "Image Index"` naming 00000001_000.png;
    JPEG (8-bit, lossy) gives scores close to the DICOM run's."""
    root = folders["root"]
    jpg = tmp_path / "jpg"
    res = cli.audit(
        root / "jpg", "--model", cli.CLASSIFIER, "--demographics", root / "path_noext.csv",
        "--labels", root / "path_noext.csv", *COMMON, out=jpg, bootstrap=200, workers=2, quiet=True,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    dicom, scores = _scores(dicom_run), _scores(jpg)
    diff = np.array([abs(dicom[c["uid"]] - scores[c["stem"]]) for c in folders["cases"]])
    # The multi-label classifier's scores are mid-range on subtle findings (issue 21, point 10),
    # where 8-bit lossy JPEG moves them most: measured max 0.091, mean 0.026 (0.02 and 0.002
    # held for the earlier, saturated 0.997-AUROC model).
    assert 0 < diff.max() < 0.15 and diff.mean() < 0.04, (diff.max(), diff.mean())
    flat = tmp_path / "flat"
    res = cli.audit(
        root / "flat", "--model", cli.CLASSIFIER, "--demographics", root / "data_entry.csv",
        "--id-column", "Image Index", *COMMON, out=flat, bootstrap=200, workers=1, quiet=True,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    scores = _scores(flat, "Image Index")
    assert max(abs(dicom[c["uid"]] - scores[c["flat"] + ".png"]) for c in folders["cases"]) <= 1e-5
    assert cli.read_results(flat)["inputs"]["n_included"] == N


def test_refusals_before_or_without_a_crash(folders, tmp_path) -> None:
    root = folders["root"]
    _write_csv(
        tmp_path / "labels.csv",
        ["path", "finding"],
        [[c["stem"] + ".png", c["finding"]] for c in folders["cases"]],
    )
    res = cli.audit(
        root / "png", "--model", cli.CLASSIFIER, "--demographics", root / "path_noext.csv",
        "--labels", tmp_path / "labels.csv", *COMMON, out=tmp_path / "a", quiet=True,
    )  # fmt: skip
    assert res.exit_code == 2
    assert "with the extension in labels.csv" in cli.flat(res.output) and "Traceback" not in res.output
    few = tmp_path / "few"
    few.mkdir()
    for c in folders["cases"][:3]:
        shutil.copy(root / "flat" / f"{c['flat']}.png", few)
    res = cli.audit(
        few, "--model", cli.CLASSIFIER, "--demographics", root / "data_entry.csv", "--id-column", "Image Index",
        *COMMON, "--attribute", "dicom:Manufacturer", out=tmp_path / "b", workers=1, quiet=True,
    )  # fmt: skip
    assert res.exit_code == 2, res.output
    text = cli.flat(res.output)
    assert "--attribute dicom:Manufacturer: no file of the folder has this DICOM attribute" in text
    # A DICOM id found first (ChestX-ray14's Patient ID) names no image: the hint says how.
    rows = [[f"P{i}", c["flat"] + ".png", c["sex"], c["finding"]] for i, c in enumerate(folders["cases"][:3])]
    demo = _write_csv(tmp_path / "demo.csv", ["Patient ID", "Image Index", "sex", "finding"], rows)
    res = cli.audit(
        few, "--model", cli.CLASSIFIER, "--demographics", demo, *COMMON, out=tmp_path / "c", workers=1
    )
    assert res.exit_code == 2, res.output
    assert "Name the images by their path: --id-column path" in cli.flat(res.output)


def _roll(src: Path, dst: Path) -> None:
    dst.mkdir()
    for p in src.iterdir():
        Image.fromarray(np.roll(np.asarray(Image.open(p)), 1, axis=1)).save(dst / p.name)


def test_segmentation_distances_in_pixels(folders, tmp_path) -> None:
    """PNG images carry no spacing: hd95 and assd in pixels, said in results.json and the
    reports; with --spacing 2x2, the same distances in mm are twice as large."""
    root = folders["root"]
    _roll(root / "masks", tmp_path / "pred")
    args = [
        "--task", "segmentation", "--masks", root / "masks", "--pred-masks", tmp_path / "pred",
        "--demographics", root / "demo_flat.csv", "--attribute", "sex", "--min-group-size", "5",
    ]  # fmt: skip
    res = cli.audit(root / "flat", *args, out=tmp_path / "px", bootstrap=100, workers=1, quiet=True)
    assert res.exit_code == 0, res.output
    r = cli.read_results(tmp_path / "px")
    validate_results(r)
    assert r["inputs"]["n_included"] == N
    assert (r["config"]["segmentation"]["distance_unit"], r["config"]["segmentation"]["spacing_source"]) == (
        "pixels",
        "none",
    )
    assert "Distances: hd95 and assd in pixels" in (tmp_path / "px" / "report.md").read_text(encoding="utf-8")
    assert "hd95 and assd in pixels" in (tmp_path / "px" / "report.html").read_text(encoding="utf-8")
    res = cli.audit(
        root / "flat", *args, "--spacing", "2x2", out=tmp_path / "mm", bootstrap=100, workers=1, quiet=True
    )
    assert res.exit_code == 0, res.output
    r = cli.read_results(tmp_path / "mm")
    assert (r["config"]["segmentation"]["distance_unit"], r["config"]["segmentation"]["spacing_source"]) == (
        "mm",
        "--spacing",
    )
    px = np.genfromtxt(tmp_path / "px" / "segmentation_cases.csv", delimiter=",", names=True, dtype=None)
    mm = np.genfromtxt(tmp_path / "mm" / "segmentation_cases.csv", delimiter=",", names=True, dtype=None)
    assert np.nanmax(px["hd95"]) > 0
    np.testing.assert_allclose(mm["hd95"], 2 * px["hd95"])
    np.testing.assert_allclose(mm["dice"], px["dice"])


def test_segmentation_never_mixes_units(folders, tmp_path) -> None:
    """DICOM files (spacing in their header) and PNG images (none) in one folder, without
    --spacing: the DICOM cases in mm, the PNG cases excluded with the reason."""
    root = folders["root"]
    mixed, masks = tmp_path / "mixed", tmp_path / "masks"
    mixed.mkdir()
    masks.mkdir()
    rows = []
    dicoms = sorted(p for p in (root / "dcm").rglob("*") if p.is_file())
    for i, c in enumerate(folders["cases"][:20]):
        src = next(p for p in dicoms if p.relative_to(root / "dcm").as_posix().startswith(c["stem"]))
        if i < 10:
            shutil.copy(src, mixed / f"case{i}.dcm")
        else:
            shutil.copy(root / "flat" / f"{c['flat']}.png", mixed / f"case{i}.png")
        shutil.copy(root / "masks" / f"{c['flat']}.png", masks / f"case{i}.png")
        rows.append([f"case{i}", c["sex"]])
    _write_csv(tmp_path / "demo.csv", ["path", "sex"], rows)
    res = cli.audit(
        mixed, "--task", "segmentation", "--masks", masks, "--pred-masks", masks, "--demographics",
        tmp_path / "demo.csv", "--attribute", "sex", "--min-group-size", "2", out=tmp_path / "out",
        bootstrap=50, workers=1, quiet=True,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    r = cli.read_results(tmp_path / "out")
    assert r["inputs"]["n_included"] == 10
    assert r["config"]["segmentation"]["distance_unit"] == "mm"
    reasons = {e["reason"]: e["count"] for e in r["inputs"]["excluded"]}
    assert any("PNG or JPEG image has no pixel spacing" in k and v == 10 for k, v in reasons.items()), reasons


def test_predictions_joined_with_an_image_folder(folders, dicom_run, tmp_path) -> None:
    """`--predictions` with the image folder: the files are joined by path (here without the
    extension), every one listed in the manifest."""
    root = folders["root"]
    dicom = _scores(dicom_run)
    rows = [[c["stem"], repr(dicom[c["uid"]]), c["finding"], c["sex"]] for c in folders["cases"][:-1]]
    preds = _write_csv(tmp_path / "preds.csv", ["path", "score", "label", "sex"], rows)
    res = cli.audit(
        root / "png", "--predictions", preds, "--attribute", "sex", "--min-group-size", "5",
        out=tmp_path / "out", bootstrap=100, workers=2, quiet=True,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert cli.read_results(tmp_path / "out")["inputs"]["n_included"] == N - 1
    with (tmp_path / "out" / "manifest.csv").open(encoding="utf-8") as fh:
        files = [r for r in csv.DictReader(fh) if r["source"].startswith("DICOM files/")]
    assert len(files) == N and sum(r["status"] == "included" for r in files) == N - 1
