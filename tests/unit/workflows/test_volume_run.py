"""plan_volumes: which files of a folder become volumes for a 3D model run, and why the rest do not.

The expected grouping is written down from how the files were made (series UIDs, positions),
not taken from the code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fairaudit.io.dicom import iter_outcomes
from fairaudit.workflows.volume_run import NOT_A_VOLUME, plan_volumes
from tests._helpers.dicom import write_dicom

ORIENTATION = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]


def _series(root: Path, name: str, uid: str, z: list[float]) -> list[str]:
    paths = []
    for k, pos in enumerate(z):
        rel = f"{name}/s{k}.dcm"
        write_dicom(
            root / rel, np.full((4, 5), k, np.int16), modality="CT", SeriesInstanceUID=uid,
            ImagePositionPatient=[0.0, 0.0, pos], ImageOrientationPatient=ORIENTATION, PixelSpacing=[0.5, 0.5],
        )  # fmt: skip
        paths.append(rel)
    return paths


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    _series(tmp_path, "good", "1.2.1", [3.0, 1.0, 2.0])  # files out of position order
    _series(tmp_path, "gap", "1.2.2", [0.0, 1.0, 5.0])  # non-uniform spacing
    write_dicom(tmp_path / "xray.dcm", np.zeros((4, 4), np.uint16), modality="DX")
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def _headers(root: Path) -> list:
    return list(iter_outcomes(root, header_only=True, workers=1, progress=False))


def test_series_become_volumes_in_slice_order_and_the_rest_have_reasons(folder: Path) -> None:
    planned, excluded = plan_volumes(_headers(folder), "series_instance_uid", None)
    assert [(v.key, v.kind, v.paths) for v in planned] == [
        ("1.2.1", "series", ["good/s1.dcm", "good/s2.dcm", "good/s0.dcm"])  # z = 1, 2, 3
    ]
    reasons = dict(excluded)
    assert reasons["xray.dcm"] == f"excluded: {NOT_A_VOLUME}"
    assert all(
        reasons[f"gap/s{k}.dcm"].startswith("failed: series: non-uniform slice spacing") for k in range(3)
    )
    assert reasons["notes.txt"].startswith("skipped")


def test_a_series_is_not_named_by_one_file_s_uid(folder: Path) -> None:
    planned, excluded = plan_volumes(_headers(folder), "sop_instance_uid", None)
    assert planned == []
    assert "name volumes by series_instance_uid" in dict(excluded)["good/s0.dcm"]
