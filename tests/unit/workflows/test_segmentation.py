"""Segmentation audits end to end: masks folders -> results.json, manifest, gate, CLI.

Numbers are checked against an independent computation (numpy dice from the PNG files,
MONAI distances with the spacing read by pydicom), never against the code's own output.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import ndimage

from fairaudit.errors import InputError
from fairaudit.schema import validate_results
from fairaudit.workflows.segmentation import SegmentationRequest, audit_segmentation

from _helpers import cli
from _helpers.paths import SAMPLE

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")

N = 48


def _blob(i: int, shape=(24, 24)) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    cy, cx, r = 10 + i % 5, 11 + i % 3, 5 + i % 4
    return (((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r).astype(np.uint8)


@pytest.fixture()
def folders(tmp_path: Path) -> dict[str, Path]:
    """48 cases; site 'b' predictions are eroded (worse). Planted problems at ids 0-5."""
    truth_dir, pred_dir = tmp_path / "truth", tmp_path / "pred"
    truth_dir.mkdir()
    pred_dir.mkdir()
    rows = []
    for i in range(N):
        uid = f"1.2.9.{i}"
        site = "ab"[i % 2]
        truth = _blob(i)
        pred = ndimage.binary_erosion(truth, iterations=2) if site == "b" else np.roll(truth, 1, axis=1)
        if i == 4:  # both empty: dice 1, distances undefined
            truth = np.zeros_like(truth)
            pred = np.zeros_like(truth)
        if i != 1:
            Image.fromarray(truth * 2).save(truth_dir / f"{uid}.png")  # label 2 as foreground
        if i == 2:
            np.save(pred_dir / f"{uid}.npy", np.zeros((20, 24), np.uint8))  # shape mismatch
        elif i == 3:
            (pred_dir / f"{uid}.png").write_bytes(b"\x89PNG broken")
        elif i != 0:
            np.save(pred_dir / f"{uid}.npy", pred.astype(np.uint8))
        rows.append({"sop_instance_uid": uid, "sex": "" if i == 5 else "FM"[(i // 2) % 2], "site": site})
    Image.fromarray(_blob(0) * 2).save(truth_dir / "9.9.9.png")  # no demographics row
    (pred_dir / "notes.txt").write_text("x")
    demo = tmp_path / "demo.csv"
    pd.DataFrame(rows).to_csv(demo, index=False)
    return {"truth": truth_dir, "pred": pred_dir, "demo": demo, "out": tmp_path / "out"}


def _req(f: dict[str, Path], **kw) -> SegmentationRequest:
    base = dict(masks=f["truth"], pred_masks=f["pred"], attributes=["site", "sex"], out=f["out"],
                demographics=f["demo"], bootstrap=200, min_group_size=10, keep_ids=True, progress=False,
                workers=1)  # fmt: skip
    base.update(kw)
    return SegmentationRequest(**base)


def test_folder_audit_numbers_manifest_and_schema(folders):
    outcome = audit_segmentation(_req(folders, spacing=(0.5, 2.0)))
    r = outcome.results
    validate_results(r)
    assert r["task"] == "segmentation" and r["config"]["segmentation"]["distance_unit"] == "mm"
    assert r["inputs"]["n_records"] == N and r["inputs"]["n_included"] == N - 4
    manifest = pd.read_csv(outcome.files["manifest"], dtype=str, keep_default_na=False)
    by_id = manifest[manifest["source"] == "demo.csv"].set_index("id")
    assert "no predicted mask" in by_id.loc["1.2.9.0", "reason"]
    assert "no ground-truth mask" in by_id.loc["1.2.9.1", "reason"]
    assert "shapes differ" in by_id.loc["1.2.9.2", "reason"]
    assert "unreadable" in by_id.loc["1.2.9.3", "reason"]
    assert by_id.loc["1.2.9.4", "status"] == "included"
    # Without a sex, a case stays in the audit and leaves the sex groups only (issue 21).
    assert by_id.loc["1.2.9.5", "status"] == "included"
    assert by_id.loc["1.2.9.5", "reason"] == "not in: sex groups (missing sex)"
    files = manifest[manifest["source"] != "demo.csv"].set_index("source")
    assert files.loc["masks/9.9.9.png", "reason"] == "no demographics row for this id"
    assert "not a mask file" in files.loc["pred_masks/notes.txt", "reason"]
    assert "unreadable" in files.loc["pred_masks/1.2.9.3.png", "reason"]
    assert len(manifest) == N + (N - 1 + 1) + (N - 1 + 1)  # rows + truth files + pred files
    reasons = {e["reason"] for e in r["inputs"]["excluded"]}
    assert "masks: no demographics row for this id" in reasons

    # Independent dice per case, straight from the files, then group means.
    dice = {}
    for uid in by_id.index[by_id["status"] == "included"]:
        t = np.asarray(Image.open(folders["truth"] / f"{uid}.png")) > 0
        p = np.load(folders["pred"] / f"{uid}.npy") > 0
        dice[uid] = 1.0 if t.sum() + p.sum() == 0 else 2 * (t & p).sum() / (t.sum() + p.sum())
    demo = pd.read_csv(folders["demo"], dtype=str).set_index("sop_instance_uid")
    site = r["attributes"][0]
    assert site["name"] == "site"
    for g in site["groups"]:
        expected = np.mean([d for uid, d in dice.items() if demo.loc[uid, "site"] == g["group"]])
        assert g["metrics"]["dice"]["value"] == pytest.approx(expected)
        assert sum(g["distributions"]["dice"]["counts"]) == g["n"]
    # The empty-vs-empty case: dice 1 and null distances in the per-case file.
    cases = pd.read_csv(outcome.files["cases"]).set_index("id")
    assert cases.loc["1.2.9.4", "dice"] == 1.0 and np.isnan(cases.loc["1.2.9.4", "hd95"])
    worse = next(c for c in site["comparisons"] if c["metric"] == "dice")
    assert worse["group"] == "b" and worse["difference"]["value"] < 0
    assert set(site["segmentation_summary"]) >= {"skewed_error_ratio", "sd_group_means"}


def test_distances_against_monai_with_spacing(folders):
    torch = pytest.importorskip("torch")
    from monai.metrics import compute_hausdorff_distance

    outcome = audit_segmentation(_req(folders, spacing=(0.5, 2.0), formats=("json",)))
    cases = pd.read_csv(outcome.files["cases"]).set_index("id")
    for uid in ("1.2.9.6", "1.2.9.7", "1.2.9.10"):
        t = np.asarray(Image.open(folders["truth"] / f"{uid}.png")) > 0
        p = np.load(folders["pred"] / f"{uid}.npy") > 0
        ref = compute_hausdorff_distance(
            torch.from_numpy(p[None, None].astype(np.float32)),
            torch.from_numpy(t[None, None].astype(np.float32)),
            percentile=95,
            spacing=[0.5, 2.0],
        ).item()
        assert cases.loc[uid, "hd95"] == pytest.approx(ref, rel=1e-5)


def test_in_memory_predictions_match_folder(folders):
    from fairaudit.io.masks import index_masks, read_label_image

    index = index_masks(folders["pred"])
    mapping = {}
    for uid, path in index.files.items():
        try:
            mapping[uid] = read_label_image(path)
        except Exception:  # noqa: BLE001 - the broken file is left out of the mapping
            continue
    a = audit_segmentation(_req(folders, formats=("json",))).results
    b = audit_segmentation(
        _req(folders, pred_masks=mapping, out=folders["out"] / "mem", formats=("json",))
    ).results
    assert a["attributes"] == b["attributes"] and a["overall"] == b["overall"]
    assert a["config"]["segmentation"]["distance_unit"] == "pixels"


def test_mask_labels_select_foreground(folders):
    # Truth uses label 2, predictions label 1: with --mask-labels 1 the truth is empty everywhere.
    r = audit_segmentation(_req(folders, mask_labels=(1,), pred_mask_labels=(1,), formats=("json",))).results
    assert r["overall"]["metrics"]["hd95"]["value"] is None
    assert "empty ground-truth mask" in r["overall"]["metrics"]["hd95"]["reason"]
    r = audit_segmentation(_req(folders, mask_labels=(2,), pred_mask_labels=(1,), formats=("json",))).results
    assert r["overall"]["metrics"]["dice"]["value"] > 0.5


def test_gate_on_dice(folders, tmp_path):
    policy = tmp_path / "policy.toml"
    policy.write_text('[gate]\nmetrics = ["dice"]\nmax_abs_difference = 0.02\n', encoding="utf-8")
    outcome = audit_segmentation(_req(folders, gate=policy, attributes=["site"], formats=("json", "junit")))
    gate = outcome.results["gate"]
    dice = [c for c in gate["checks"] if c["metric"] == "dice"]
    assert dice and all(c["status"] == "fail" for c in dice) and outcome.exit_code == 1
    assert gate["outcome"] == "fail"
    validate_results(outcome.results)


def test_gate_with_a_classification_metric_is_a_usage_error(folders, tmp_path):
    # A classification metric in a segmentation audit could never be computed: exit 2 before
    # any mask is read (was: an inconclusive "computed" check).
    policy = tmp_path / "policy.toml"
    policy.write_text('[gate]\nmetrics = ["dice", "tpr"]\nmax_abs_difference = 0.02\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"tpr is a classification metric.*segmentation audit"):
        audit_segmentation(_req(folders, gate=policy, attributes=["site"], formats=("json",)))
    assert not (folders["out"] / "results.json").exists()


def test_nothing_auditable_is_input_error(folders, tmp_path):
    empty_pred = tmp_path / "nopred"
    empty_pred.mkdir()
    np.save(empty_pred / "other.npy", np.zeros((2, 2), np.uint8))
    with pytest.raises(InputError, match="no case can be audited"):
        audit_segmentation(_req(folders, pred_masks=empty_pred))


# ----------------------------------------------------------------------------- sample data, CLI


@pytest.fixture(scope="module")
def sample_pred(tmp_path_factory) -> Path:
    """Predicted masks from sample_data/masks: race C eroded, others shifted or dilated."""
    out = tmp_path_factory.mktemp("pred")
    demo = pd.read_csv(SAMPLE / "demographics.csv", dtype=str).set_index("sop_instance_uid")
    for k, path in enumerate(sorted((SAMPLE / "masks").glob("*.png"))):
        lung = np.asarray(Image.open(path)) > 0
        if demo.loc[path.stem, "race"] == "C":
            pred = ndimage.binary_erosion(lung, iterations=3)
        elif k % 3 == 1:
            pred = np.roll(lung, 2, axis=1)
        else:
            pred = ndimage.binary_dilation(lung)
        Image.fromarray(pred.astype(np.uint8)).save(out / path.name)
    return out


def _spacing_by_uid() -> dict[str, tuple[float, float]]:
    import pydicom

    out = {}
    for path in (SAMPLE / "images").rglob("*"):
        if path.is_file():
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            sp = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
            out[str(ds.SOPInstanceUID)] = (float(sp[0]), float(sp[1]))
    return out


def test_cli_sample_data_with_dicom_spacing(sample_pred, tmp_path):
    torch = pytest.importorskip("torch")
    from monai.metrics import compute_average_surface_distance

    out = tmp_path / "out"
    res = cli.invoke(["audit", str(SAMPLE / "images"), "--task", "segmentation", "--masks", str(SAMPLE / "masks"),
         "--pred-masks", str(sample_pred), "--demographics", str(SAMPLE / "demographics.csv"),
         "--attribute", "race", "--attribute", "sex", "--intersect", "sex,race", "--bootstrap", "200",
         "--keep-ids", "--workers", "1", "--format", "html,md,json", "--out", str(out), "-q"], columns=None)  # fmt: skip
    assert res.exit_code == 0, res.output
    r = json.loads((out / "results.json").read_text(encoding="utf-8"))
    validate_results(r)
    assert r["config"]["segmentation"]["spacing_source"] == "dicom"
    assert r["inputs"]["n_included"] == 320
    with (out / "manifest.csv").open(encoding="utf-8") as fh:
        manifest = list(csv.DictReader(fh))
    assert len(manifest) == 4 * 320 and all(m["status"] == "included" for m in manifest)
    race = next(a for a in r["attributes"] if a["name"] == "race")
    assert race["summary"]["dice"]["worst_group"] == "C"
    assert next(a for a in r["attributes"] if a["name"] == "sex×race")["groups"]
    # assd in mm for a few cases, against MONAI with the spacing pydicom reads.
    spacing = _spacing_by_uid()
    cases = pd.read_csv(out / "segmentation_cases.csv").set_index("id")
    for uid in sorted(spacing)[:4]:
        t = np.asarray(Image.open(SAMPLE / "masks" / f"{uid}.png")) > 0
        p = np.asarray(Image.open(sample_pred / f"{uid}.png")) > 0
        ref = compute_average_surface_distance(
            torch.from_numpy(p[None, None].astype(np.float32)),
            torch.from_numpy(t[None, None].astype(np.float32)),
            symmetric=True,
            spacing=list(spacing[uid]),
        ).item()
        assert cases.loc[uid, "assd"] == pytest.approx(ref, rel=1e-5)
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "dice" in html and "<svg" in html


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--masks", "M"], "add --task segmentation"),
        (["--task", "segmentation", "--masks", "M"], "--pred-masks"),
        (
            ["--task", "segmentation", "--masks", "M", "--pred-masks", "P", "--threshold-policy", "youden"],
            "classification audits only",
        ),  # fmt: skip
        (["--task", "segmentation", "--masks", "M", "--pred-masks", "P", "--spacing", "abc"], "--spacing"),
        (
            ["--task", "segmentation", "--masks", "M", "--pred-masks", "P", "--mask-labels", "0"],
            "--mask-labels",
        ),
        (["--task", "regression"], "--task"),
    ],
)
def test_cli_usage_errors(tmp_path, extra, message):
    (tmp_path / "M").mkdir()
    (tmp_path / "P").mkdir()
    args = [a if a not in ("M", "P") else str(tmp_path / a) for a in extra]
    res = cli.invoke(["audit", *args, "--demographics", str(SAMPLE / "demographics.csv"), "--attribute", "race",
         "--out", str(tmp_path / "out")], columns=None)  # fmt: skip
    assert res.exit_code == 2
    assert message in cli.flat(res.output)


def test_discover_on_dice_finds_the_eroded_group_first(sample_pred, tmp_path):
    """Race C's masks are eroded: searching race, sex and their intersections ranks race=C
    (or a slice of it) first, significant after adjustment; its gap matches a direct mean."""
    out = tmp_path / "out"
    res = cli.invoke(["audit", "--task", "segmentation", "--masks", str(SAMPLE / "masks"),
         "--pred-masks", str(sample_pred), "--demographics", str(SAMPLE / "demographics.csv"),
         "--attribute", "race", "--attribute", "sex", "--discover", "--bootstrap", "200",
         "--keep-ids", "--format", "md,json", "--out", str(out), "-q"], columns=None)  # fmt: skip
    assert res.exit_code == 0, res.output
    r = json.loads((out / "results.json").read_text(encoding="utf-8"))
    validate_results(r)
    d = r["discovered"]
    assert d["metric"] == "dice"
    first = d["slices"][0]
    assert "race=C" in first["slice"] and first["significant"]
    cases = pd.read_csv(out / "segmentation_cases.csv").set_index("id")
    demo = pd.read_csv(SAMPLE / "demographics.csv", dtype=str).set_index("sop_instance_uid")
    race = demo.loc[cases.index, "race"]
    if first["slice"] == "race=C":
        gap = cases["dice"][race == "C"].mean() - cases["dice"][race != "C"].mean()
        assert first["difference"]["value"] == pytest.approx(gap, abs=1e-9)
    assert not any(s["significant"] for s in d["slices"] if "race=C" not in s["slice"] and "sex" in s["slice"]
                   and "race" not in s["slice"])  # fmt: skip
    assert "Discovered slices" in (out / "report.md").read_text(encoding="utf-8")
