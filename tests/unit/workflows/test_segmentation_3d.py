"""3-D segmentation audits: NPY volumes with anisotropic spacing, nsd at --nsd-tolerance-mm,
ES-Dice in results.json; the per-case values checked against MONAI's compute functions."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from fairaudit.schema import validate_results

from _helpers import cli

torch = pytest.importorskip("torch")
monai_metrics = pytest.importorskip("monai.metrics")
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")

SPACING = (2.5, 0.8, 0.8)


def _volume(i: int) -> np.ndarray:
    zz, yy, xx = np.mgrid[:10, :24, :24]
    r = 6 + i % 3
    return ((zz - 5) / 4.0) ** 2 + ((yy - 12 - i % 2) ** 2 + (xx - 12) ** 2) / r**2 <= 1


@pytest.fixture(scope="module")
def volumes(tmp_path_factory) -> dict[str, Path]:
    """16 volumes; group 'b' predictions dilated by a voxel (a boundary error), 'a' shifted a slice."""
    root = tmp_path_factory.mktemp("vol")
    (root / "truth").mkdir()
    (root / "pred").mkdir()
    rows = []
    for i in range(16):
        truth = _volume(i)
        group = "ab"[i % 2]
        pred = ndimage.binary_dilation(truth) if group == "b" else np.roll(truth, 1, axis=0)
        np.save(root / "truth" / f"case{i}.npy", truth.astype(np.uint8))
        np.save(root / "pred" / f"case{i}.npy", pred.astype(np.uint8))
        rows.append({"patient_id": f"case{i}", "group": group})
    pd.DataFrame(rows).to_csv(root / "demo.csv", index=False)
    return {"root": root, "truth": root / "truth", "pred": root / "pred", "demo": root / "demo.csv"}


def _audit(v: dict[str, Path], out: Path, *extra: str, formats: str = "json,md,html"):
    return cli.invoke(["audit", "--task", "segmentation", "--masks", str(v["truth"]), "--pred-masks",
        str(v["pred"]), "--demographics", str(v["demo"]), "--attribute", "group", "--id-column", "patient_id",
        "--cluster-column", "none", "--spacing", "x".join(map(str, SPACING)), "--bootstrap", "100",
        "--min-group-size", "5", "--keep-ids", "--workers", "1", "--format", formats, "--out", str(out),
        "-q", *extra], columns=None)  # fmt: skip


def _monai(truth: np.ndarray, pred: np.ndarray, tolerance: float) -> dict[str, float]:
    y = torch.from_numpy(truth[None, None].astype(np.float32))
    yp = torch.from_numpy(pred[None, None].astype(np.float32))
    sp = list(SPACING)
    return {
        "dice": float(monai_metrics.compute_dice(yp, y).item()),
        "assd": float(
            monai_metrics.compute_average_surface_distance(yp, y, symmetric=True, spacing=sp).item()
        ),
        "hd95": float(monai_metrics.compute_hausdorff_distance(yp, y, percentile=95, spacing=sp).item()),
        "nsd": float(monai_metrics.compute_surface_dice(yp, y, [tolerance], spacing=sp).item()),
    }


def test_3d_audit_nsd_per_case_equals_monai_and_the_tolerance_is_recorded(volumes, tmp_path):
    out = tmp_path / "out"
    res = _audit(volumes, out, "--nsd-tolerance-mm", "1.5")
    assert res.exit_code == 0, res.output
    r = json.loads((out / "results.json").read_text(encoding="utf-8"))
    validate_results(r)
    seg = r["config"]["segmentation"]
    assert seg["nsd_tolerance"] == 1.5 and seg["nsd_tolerance_unit"] == "mm" and seg["distance_unit"] == "mm"
    with open(out / "segmentation_cases.csv", newline="", encoding="utf-8") as fh:
        cases = {row["id"]: row for row in csv.DictReader(fh)}
    assert len(cases) == 16
    for i in (0, 1, 6, 11):
        truth = np.load(volumes["truth"] / f"case{i}.npy").astype(bool)
        pred = np.load(volumes["pred"] / f"case{i}.npy").astype(bool)
        ref = _monai(truth, pred, 1.5)
        row = cases[f"case{i}"]
        for m in ("dice", "assd", "nsd"):
            assert float(row[m]) == pytest.approx(ref[m], rel=1e-6, abs=1e-6), (i, m)
        assert float(row["hd95"]) == pytest.approx(ref["hd95"], rel=5e-6)  # MONAI: float32 percentile
    # Per group: nsd like the other metrics (a mean with an interval, a test); ES-Dice beside SER and SD.
    att = r["attributes"][0]
    b = next(g for g in att["groups"] if g["group"] == "b")
    nsd_b = np.mean([float(c["nsd"]) for k, c in cases.items() if int(k[4:]) % 2 == 1])
    assert b["metrics"]["nsd"]["value"] == pytest.approx(nsd_b) and b["metrics"]["nsd"]["ci"]
    assert any(c["metric"] == "nsd" and c["p_value"] is not None for c in att["comparisons"])
    summary = att["segmentation_summary"]
    dice = {
        g: np.mean([float(c["dice"]) for k, c in cases.items() if "ab"[int(k[4:]) % 2] == g]) for g in "ab"
    }
    overall = np.mean([float(c["dice"]) for c in cases.values()])
    assert summary["es_dice"]["value"] == pytest.approx(
        overall / (1 + sum(abs(d - overall) for d in dice.values()))
    )
    for key in ("es_dice", "skewed_error_ratio", "sd_group_means"):
        assert summary[key]["ci"] is not None, key


def test_default_tolerance_is_1_mm_and_a_bad_tolerance_is_exit_2(volumes, tmp_path):
    res = _audit(volumes, tmp_path / "ok", formats="json")
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "ok" / "results.json").read_text(encoding="utf-8"))
    assert r["config"]["segmentation"]["nsd_tolerance"] == 1.0
    bad = _audit(volumes, tmp_path / "bad", "--nsd-tolerance-mm", "-1", formats="json")
    assert bad.exit_code == 2 and "--nsd-tolerance-mm" in cli.flat(bad.output)
    assert not (tmp_path / "bad" / "results.json").exists()


def test_python_api_takes_the_tolerance_and_classification_refuses_it(volumes, tmp_path):
    import fairaudit

    report = fairaudit.audit_segmentation(
        volumes["truth"], volumes["pred"], demographics=volumes["demo"], attributes="group",
        id_column="patient_id", cluster_column="none", spacing=SPACING, nsd_tolerance_mm=2.0, bootstrap=20,
        min_group_size=5, workers=1,
    )  # fmt: skip
    assert report.data["config"]["segmentation"]["nsd_tolerance"] == 2.0
    res = cli.invoke(["audit", "--predictions", str(volumes["demo"]), "--demographics", str(volumes["demo"]),
        "--attribute", "group", "--nsd-tolerance-mm", "2", "--out", str(tmp_path / "c")], columns=None)  # fmt: skip
    assert res.exit_code == 2 and "--task segmentation" in cli.flat(res.output)
