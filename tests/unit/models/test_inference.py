"""run_inference: batching and worker processes never change a prediction; failures stay per file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fairaudit.errors import InputError  # noqa: E402
from fairaudit.models.inference import run_inference  # noqa: E402
from fairaudit.models.loading import load_predictor  # noqa: E402

torch.set_num_threads(1)
N = 24


@pytest.fixture(scope="module")
def folder(make_cohort) -> Path:
    root = make_cohort(n=N, size=32, seed=7, name="c")
    (root / "images" / "zz_empty.dcm").write_bytes(b"")
    return root / "images"


class _Picky(torch.nn.Module):
    """Scores the mean intensity; refuses (raises) images whose prepared mean is above `limit`."""

    def __init__(self, limit: float) -> None:
        super().__init__()
        self.limit = limit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3))
        if bool((m > self.limit).any()):
            raise RuntimeError("image too bright for this model")
        return (m * 4 - 2).unsqueeze(1)


def _save(tmp_path: Path, limit: float) -> Path:
    path = tmp_path / f"picky{limit}.pt"
    torch.jit.script(_Picky(limit)).save(str(path))
    return path


def _scores(run) -> dict[str, float]:
    return {rec["path"]: s for rec, s in zip(run.records, run.scores, strict=True)}


def test_batch_size_and_workers_do_not_change_predictions(folder: Path, tmp_path: Path) -> None:
    pred = load_predictor(str(_save(tmp_path, 10.0)), "cpu", trust_model=True)
    runs = [
        run_inference(pred, folder, batch_size=b, workers=w, progress=False)
        for b, w in ((1, 1), (5, 2), (64, 2))
    ]
    first = _scores(runs[0])
    assert len(first) == N
    for run in runs:
        assert run.n_files == N + 1 and run.unreadable == [(u[0], u[1]) for u in runs[0].unreadable]
        got = _scores(run)
        assert got.keys() == first.keys()
        np.testing.assert_allclose([got[k] for k in first], list(first.values()), rtol=1e-6)
    assert runs[0].batches == N and runs[1].batches == 5 and runs[2].batches == 1
    (path, reason) = runs[0].unreadable[0]
    assert path == "zz_empty.dcm" and reason.startswith("skipped")


def test_model_failures_are_per_file_and_total_failure_is_an_input_error(
    folder: Path, tmp_path: Path
) -> None:
    pred = load_predictor(str(_save(tmp_path, 10.0)), "cpu", trust_model=True)
    means = {}
    from fairaudit.io.dicom import read_file, scan

    for p in scan(folder):
        o = read_file(p, folder, header_only=False)
        if o.status == "ok":
            means[o.path] = float(pred.prepare(o.image, o.spacing).mean())
    limit = float(np.median(list(means.values())))
    picky = load_predictor(str(_save(tmp_path, limit)), "cpu", trust_model=True)
    run = run_inference(picky, folder, batch_size=1, workers=1, progress=False)
    refused = {p for p, m in means.items() if m > limit}
    assert refused and set(_scores(run)) == set(means) - refused
    failed = {p: why for p, why in run.unreadable if why.startswith("failed: model")}
    assert set(failed) == refused
    assert all("image too bright" in why for why in failed.values())

    nothing = load_predictor(str(_save(tmp_path, -100.0)), "cpu", trust_model=True)
    with pytest.raises(InputError, match="could not run on any image"):
        run_inference(nothing, folder, batch_size=4, workers=1, progress=False)


def test_records_are_stored_by_column_and_read_back_as_the_dicts_given() -> None:
    """InferenceRun.records keeps columns (memory); reading gives back exactly what was appended,
    with "" where a record lacked a column that others had, and reordering keeps rows whole."""
    from fairaudit.models.inference import Records

    given = [
        {"path": "b/2.dcm", "sop_instance_uid": "1.2"},
        {"path": "a/1.dcm"},
        {"path": "c/3.dcm", "sop_instance_uid": "1.3", "dicom:Manufacturer": "ACME"},
    ]
    records = Records()
    for rec in given:
        records.append(rec)
    names = ["path", "sop_instance_uid", "dicom:Manufacturer"]
    expected = [{n: rec.get(n, "") for n in names} for rec in given]
    assert len(records) == 3 and list(records) == expected
    assert records.column("sop_instance_uid") == ["1.2", "", "1.3"]
    assert records.column("patient_id") == ["", "", ""]
    records.reorder([1, 0, 2])
    assert list(records) == [expected[1], expected[0], expected[2]]
    assert not Records()


def test_records_across_blocks_read_back_whole_in_chunks_and_in_order() -> None:
    """Records are packed a block at a time: a column that first appears late, cells with
    quotes, commas and non-ASCII text, and block boundaries all read back as appended."""
    from fairaudit.models.inference import Records

    n = 2 * Records.BLOCK + 77
    given = []
    for i in range(n):
        rec = {"path": f"d/{i:05d}.dcm", "sop_instance_uid": f'1.2."{i}",é'}
        if i >= Records.BLOCK + 5:
            rec["dicom:Manufacturer"] = f"M{i % 3}"
        given.append(rec)
    records = Records()
    for rec in given:
        records.append(rec)
    names = ["path", "sop_instance_uid", "dicom:Manufacturer"]
    expected = [{k: rec.get(k, "") for k in names} for rec in given]
    assert records.names == names and len(records) == n
    assert list(records) == expected
    assert records.column("dicom:Manufacturer") == [e["dicom:Manufacturer"] for e in expected]
    for rows in (1, Records.BLOCK, 3 * Records.BLOCK):
        chunks = list(records.chunks(["sop_instance_uid", "path"], rows))
        assert [v for c in chunks for v in c["sop_instance_uid"]] == [e["sop_instance_uid"] for e in expected]
        assert all(len(c["path"]) == len(c["sop_instance_uid"]) for c in chunks)
    assert records.is_sorted_by("path") and not records.is_sorted_by("dicom:Manufacturer")
    order = list(range(n))[::-1]
    records.reorder(order)
    assert list(records) == [expected[i] for i in order] and not records.is_sorted_by("path")
