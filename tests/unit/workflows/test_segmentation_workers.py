"""Per-case segmentation metrics in worker processes: the same report as in one process.

The cases (reading both masks, the metrics) go to forked workers in chunks; results,
exclusion reasons and manifest rows must not depend on how many workers there were, and
a worker that dies must not lose or reorder a case.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import ndimage

from fairaudit.workflows import segmentation as seg
from fairaudit.workflows.segmentation import CASES_FILE, SegmentationRequest, build_segmentation_report

pytestmark = [
    pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning", "ignore::RuntimeWarning"),
    pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork"),
]

N = 60


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """60 cases of 64 x 64 lungs: eroded, shifted or empty predictions, and the problems
    the per-case step turns into exclusion reasons (unreadable truth or prediction,
    shapes that differ, a 3-D prediction)."""
    root = tmp_path_factory.mktemp("seg_workers")
    truth_dir, pred_dir = root / "truth", root / "pred"
    truth_dir.mkdir()
    pred_dir.mkdir()
    yy, xx = np.mgrid[:64, :64]
    rows = []
    for i in range(N):
        uid = f"1.2.7.{i}"
        truth = ((yy - 32) / (12 + i % 9)) ** 2 + ((xx - 20 - i % 7) / (8 + i % 5)) ** 2 <= 1
        pred = ndimage.binary_erosion(truth, iterations=1 + i % 3) if i % 2 else np.roll(truth, i % 4, axis=1)
        if i % 11 == 3:
            pred = np.zeros_like(truth)
        if i == 7:
            (truth_dir / f"{uid}.png").write_bytes(b"\x89PNG broken")
        else:
            Image.fromarray(truth.astype(np.uint8)).save(truth_dir / f"{uid}.png")
        if i == 13:
            (pred_dir / f"{uid}.png").write_bytes(b"not a png")
        elif i == 21:
            np.save(pred_dir / f"{uid}.npy", np.zeros((60, 64), np.uint8))  # shapes differ
        elif i == 34:
            np.save(pred_dir / f"{uid}.npy", np.zeros((2, 64, 64), np.uint8))  # 3-D vs 2-D
        else:
            Image.fromarray(pred.astype(np.uint8)).save(pred_dir / f"{uid}.png")
        rows.append({"sop_instance_uid": uid, "site": "ab"[i % 2]})
    demo = root / "demo.csv"
    pd.DataFrame(rows).to_csv(demo, index=False)
    return {"truth": truth_dir, "pred": pred_dir, "demo": demo}


def _report(f: dict[str, Path], workers: int, **kw) -> tuple[str, str, str]:
    """(results.json without its timestamps, manifest.csv, segmentation_cases.csv)."""
    req = SegmentationRequest(
        masks=f["truth"], pred_masks=kw.pop("pred_masks", f["pred"]), attributes=["site"], out=None,
        demographics=f["demo"], bootstrap=50, min_group_size=5, progress=False, salt="golden",
        workers=workers, **kw,
    )  # fmt: skip
    report = build_segmentation_report(req)
    text = re.sub(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "T", json.dumps(report.data, sort_keys=True, default=str)
    )
    return text, report.manifest, report.companions[CASES_FILE]


def test_workers_give_the_serial_report(folders):
    serial = _report(folders, workers=1)
    assert _report(folders, workers=2) == serial
    assert _report(folders, workers=3) == serial
    results, manifest, cases = serial
    reasons = "\n".join(manifest.splitlines())
    assert "ground-truth mask unreadable" in reasons
    assert "predicted mask unreadable" in reasons
    assert "mask shapes differ: ground truth (64, 64), prediction (60, 64)" in reasons
    assert "mask shapes differ: ground truth (64, 64), prediction (2, 64, 64)" in reasons
    assert len(cases.splitlines()) == 1 + N - 4


def test_workers_with_predictions_in_memory(folders):
    """A model run's predictions as arrays: inherited by the workers, not pickled."""
    from fairaudit.io.masks import index_masks, read_mask

    index = index_masks(folders["pred"])
    arrays = {}
    for key, path in index.files.items():
        try:
            arrays[key] = read_mask(path, None).astype(np.uint8)
        except Exception:  # noqa: BLE001 - the unreadable file: left out of the mapping
            continue
    serial = _report(folders, workers=1, pred_masks=arrays)
    assert _report(folders, workers=2, pred_masks=arrays) == serial


def test_a_dead_worker_leaves_its_cases_to_the_parent(folders, monkeypatch, caplog):
    """A worker killed mid-audit (as by the out-of-memory killer): the cases not yet
    returned are measured in this process, the report is unchanged."""
    serial = _report(folders, workers=1)
    parent = os.getpid()
    measure = seg._measure

    def dying(src, case):
        if case.key == "1.2.7.30" and os.getpid() != parent:
            os._exit(1)
        return measure(src, case)

    monkeypatch.setattr(seg, "_measure", dying)
    assert _report(folders, workers=2) == serial
    assert "a worker process died while measuring masks" in caplog.text


def test_workers_environment_variable_and_chunks(folders, monkeypatch):
    """FAIRAUDIT_WORKERS sets the count when the request does not; cases stay in order
    across chunks, and the pool and the inherited sources are gone afterwards."""
    from fairaudit.io.dicom import _parallel

    pools: list[int] = []

    class Recording(_parallel._Pool):
        def __init__(self, workers: int) -> None:
            pools.append(workers)
            super().__init__(workers)

    monkeypatch.setattr(_parallel, "_Pool", Recording)
    monkeypatch.setenv("FAIRAUDIT_WORKERS", "2")
    cases = [seg._Case(i, f"1.2.7.{i}", None, None) for i in range(N) if i not in (7, 13, 21, 34)]
    src = seg._Sources(
        truth_files={c.key: folders["truth"] / f"{c.key}.png" for c in cases},
        pred_files={c.key: folders["pred"] / f"{c.key}.png" for c in cases},
        pred_arrays=None,
        mask_labels=None,
        pred_labels=None,
    )
    parallel = list(seg._measure_all(src, cases, None))
    assert pools == [2]
    assert repr([m[2].values for m in parallel]) == repr([seg._measure(src, c)[2].values for c in cases])
    assert seg._SOURCES is None
    # One chunk's worth of cases, or one worker: no pool at all.
    assert len(list(seg._measure_all(src, cases[: seg._CASES_PER_TASK], None))) == seg._CASES_PER_TASK
    assert len(list(seg._measure_all(src, cases, 1))) == len(cases)
    assert pools == [2]
