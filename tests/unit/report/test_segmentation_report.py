"""The segmentation report (issue 22, point 5): units, the fairness summaries in the verdict,
its own Methods, example cases; user strings escaped. Numbers are read back from
results.json and formatted by hand; the example images are decoded with PIL."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import ndimage

from fairaudit.workflows.segmentation import SegmentationRequest, audit_segmentation

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

EVIL = "<script>alert(1)</script>|**x**"
N = 24


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("segrep")
    (root / "t").mkdir()
    (root / "p").mkdir()
    rows = []
    yy, xx = np.mgrid[:32, :40]
    for i in range(N):
        truth = ((yy - 15) ** 2 + (xx - 18 - i % 4) ** 2) <= (7 + i % 3) ** 2
        group = ["plain", EVIL][i % 2]
        pred = ndimage.binary_erosion(truth, iterations=1 + (i % 2)) if i % 3 else np.roll(truth, 1, axis=1)
        np.save(root / "t" / f"c{i}.npy", truth.astype(np.uint8))
        np.save(root / "p" / f"c{i}.npy", pred.astype(np.uint8))
        rows.append({"patient_id": f"c{i}", "grp": group})
    pd.DataFrame(rows).to_csv(root / "demo.csv", index=False)
    out = root / "out"
    audit_segmentation(
        SegmentationRequest(
            masks=root / "t", pred_masks=root / "p", attributes=["grp"], out=out, demographics=root / "demo.csv",
            spacing=(0.5, 0.7), nsd_tolerance_mm=1.5, bootstrap=100, min_group_size=5, progress=False, workers=1,
            formats=("json", "md", "html"), cluster_column="none", keep_ids=True,
        )
    )  # fmt: skip
    return out


def test_units_summaries_and_methods_in_the_html(audited: Path) -> None:
    html = (audited / "report.html").read_text(encoding="utf-8")
    r = json.loads((audited / "results.json").read_text(encoding="utf-8"))
    for header in ("hd95 (mm)", "assd (mm)", "nsd (≤ 1.5 mm)"):
        assert f"<th>{header}</th>" in html, header
    s = r["attributes"][0]["segmentation_summary"]
    verdict = html[
        html.index('id="verdict"') : html.index("Key findings") if "Key findings" in html else None
    ]
    for key in ("skewed_error_ratio", "es_dice", "sd_group_means"):
        value, (lo, hi) = s[key]["value"], s[key]["ci"]
        assert f"{value:.3f} [{lo:.3f}, {hi:.3f}]" in verdict, key
    assert "ES-Dice" in verdict and "skewed error ratio" in verdict
    methods = html[html.index('id="methods"') : html.index('id="overall"')]
    assert "compute_surface_dice" in methods and "permutation test" in methods and "Welch" in methods
    assert "1.5 mm" in methods
    assert "Fisher" not in methods and "DeLong" not in methods and "ECE" not in methods


def test_example_cases_are_the_median_dice_case_of_each_group(audited: Path) -> None:
    html = (audited / "report.html").read_text(encoding="utf-8")
    r = json.loads((audited / "results.json").read_text(encoding="utf-8"))
    cases = pd.read_csv(audited / "segmentation_cases.csv", dtype={"id": str})
    demo = {f"c{i}": ["plain", EVIL][i % 2] for i in range(N)}
    examples = r["attributes"][0]["segmentation_examples"]
    assert sorted(e["group"] for e in examples) == sorted({"plain", EVIL})
    for e in examples:
        dice = np.sort(cases[cases["id"].map(demo) == e["group"]]["dice"].to_numpy())
        assert e["dice"] == pytest.approx(dice[(dice.size - 1) // 2])  # the lower median
        image = Image.open(io.BytesIO(base64.b64decode(e["png"])))
        assert image.format == "PNG" and image.size == (e["width"], e["height"]) and max(image.size) <= 160
        colours = {tuple(c) for c in np.asarray(image.convert("RGB")).reshape(-1, 3)}
        assert (43, 131, 186) in colours or (255, 255, 255) in colours  # the truth's contour
    assert len(re.findall(r'<img src="data:image/png;base64,', html)) == len(examples)
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)
    assert not any(re.search(rf"\bc{i}\b", text) for i in range(N))  # no id, even with --keep-ids


def test_user_strings_are_escaped(audited: Path) -> None:
    html = (audited / "report.html").read_text(encoding="utf-8")
    md = (audited / "report.md").read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert "<script>alert(1)</script>" not in md
    assert "| SER [CI] |" in md and "nsd (≤ 1.5 mm)" in md and "hd95 (mm)" in md
