"""Parallel, streaming reading: same outcomes as serial, in sorted order, bounded memory.

Files are generated here (small, quick to write): images, non-DICOM files and broken
ones, so every status goes through the worker processes.
"""

from __future__ import annotations

import multiprocessing
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import RLELossless, generate_uid

import fairaudit.io.dicom._parallel as parallel_module
from fairaudit.io.dicom import DecodeOptions, FileOutcome, iter_outcomes, read_file

from _helpers.dicom import dicom_dataset, save_dicom

needs_fork = pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="worker processes need fork"
)


def _write(path: Path, i: int, size: int = 16, rle: bool = False) -> None:
    pixels = ((np.arange(size * size, dtype=np.uint16) * (i + 1)) % 4096).reshape(size, size)
    ds = dicom_dataset(
        pixels, sop_uid=generate_uid(entropy_srcs=["sop", str(i)]), bits_stored=12,
        SeriesInstanceUID=generate_uid(entropy_srcs=["series", str(i % 3)]), PatientID=f"P{i}",
        StudyInstanceUID=None, PatientName=None, PatientBirthDate=None,
        RescaleSlope=1, RescaleIntercept=-1024, PixelSpacing=[0.5, 0.5],
    )  # fmt: skip
    if rle:
        ds.compress(RLELossless)
    save_dicom(ds, path)


def make_tree(root: Path, n: int, *, extras: bool = True) -> Path:
    """n DICOM files in nested folders, plus a text file, a truncated and a broken one."""
    for i in range(n):
        folder = root / f"s{i % 3}" / f"sub{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        _write(folder / f"im{i:04d}", i, rle=(i % 5 == 0))
    if extras:
        (root / "README.txt").write_text("not an image\n")
        data = (root / "s0" / "sub0" / "im0000").read_bytes()
        (root / "s1" / "cut.dcm").write_bytes(data[:-50])
        (root / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"garbage")
        os.symlink(root / "missing", root / "s2" / "dangling")
    return root


def _same(a: list[FileOutcome], b: list[FileOutcome]) -> None:
    assert [o.path for o in a] == [o.path for o in b]
    for x, y in zip(a, b, strict=True):
        assert (x.status, x.reason, x.header, x.spacing) == (y.status, y.reason, y.header, y.spacing)
        if x.image is None:
            assert y.image is None
        else:
            np.testing.assert_array_equal(x.image, y.image)


@needs_fork
@pytest.mark.parametrize("header_only", [False, True])
def test_parallel_equals_serial_in_sorted_order(tmp_path: Path, header_only: bool) -> None:
    root = make_tree(tmp_path / "data", 40)
    serial = list(iter_outcomes(root, header_only=header_only, workers=1, progress=False))
    par = list(iter_outcomes(root, header_only=header_only, workers=2, progress=False))
    _same(serial, par)
    assert len(par) == 44
    paths = [o.path for o in par]
    assert paths == sorted(paths, key=lambda p: p.split("/"))
    by_path = {o.path: o for o in par}
    assert by_path["README.txt"].status == "skipped"
    assert by_path["broken.dcm"].status == "failed"
    assert by_path["s1/cut.dcm"].status == "failed" and "truncated" in by_path["s1/cut.dcm"].reason
    assert (by_path["s2/dangling"].status, by_path["s2/dangling"].reason) == (
        "skipped",
        "broken symbolic link",
    )
    ok = [o for o in par if o.status == "ok"]
    assert len(ok) == 40
    if not header_only:
        direct = read_file(root / ok[3].path, root, header_only=False)
        np.testing.assert_array_equal(ok[3].image, direct.image)


def _peak_bytes(root: Path, workers: int) -> int:
    tracemalloc.start()
    try:
        count = 0
        for outcome in iter_outcomes(root, header_only=True, workers=workers, progress=False):
            count += outcome.status == "ok"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


@needs_fork
@pytest.mark.xdist_group("measured")  # bounds time or memory: never beside another such test
def test_streaming_memory_does_not_grow_with_the_number_of_files(tmp_path: Path) -> None:
    small = make_tree(tmp_path / "small", 200, extras=False)
    large = make_tree(tmp_path / "large", 800, extras=False)
    _peak_bytes(small, 2)  # warm up imports and caches
    peak_small = _peak_bytes(small, 2)
    peak_large = _peak_bytes(large, 2)
    # Each header outcome is ~2 kB: keeping 600 more would add > 1 MB.
    assert peak_large < peak_small + 300_000, (peak_small, peak_large)


@needs_fork
def test_closing_early_stops_the_workers(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "data", 60, extras=False)
    stream = iter_outcomes(root, header_only=False, workers=2, progress=False)
    first = [next(stream) for _ in range(3)]
    stream.close()
    assert all(o.status == "ok" for o in first)
    assert multiprocessing.active_children() == []


def _crashing_read_file(path, root, *, header_only, options):
    if Path(path).name == "im0007":
        os._exit(1)  # a decoder crash takes the worker process with it
    return read_file(path, root, header_only=header_only, options=options)


@needs_fork
def test_a_crashing_worker_fails_only_its_file(tmp_path: Path, monkeypatch) -> None:
    root = make_tree(tmp_path / "data", 24, extras=False)
    monkeypatch.setattr(parallel_module, "read_file", _crashing_read_file)
    outcomes = list(iter_outcomes(root, header_only=False, workers=2, progress=False))
    assert len(outcomes) == 24
    failed = [o for o in outcomes if o.status == "failed"]
    assert [o.path for o in failed] == ["s1/sub1/im0007"]
    assert "worker process died" in failed[0].reason
    monkeypatch.undo()
    expected = list(iter_outcomes(root, header_only=False, workers=1, progress=False))
    _same([o for o in outcomes if o.status == "ok"], [o for o in expected if o.path != "s1/sub1/im0007"])


@needs_fork
def test_progress_bar_streams_the_same_outcomes(tmp_path: Path, monkeypatch, capsys) -> None:
    root = make_tree(tmp_path / "data", 12, extras=False)
    quiet = list(iter_outcomes(root, header_only=True, workers=2, progress=True))  # stderr not a tty
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(parallel_module, "_is_terminal", lambda: True)
    shown = list(iter_outcomes(root, header_only=True, workers=2, progress=True))
    _same(quiet, shown)


@needs_fork
def test_full_shared_memory_falls_back_to_the_pipe(tmp_path: Path, monkeypatch) -> None:
    root = make_tree(tmp_path / "data", 10, extras=False)
    expected = list(iter_outcomes(root, header_only=False, workers=1, progress=False))
    monkeypatch.setattr(parallel_module, "_new_block", lambda size: None)
    _same(expected, list(iter_outcomes(root, header_only=False, workers=2, progress=False)))


@needs_fork
def test_large_images_travel_in_blocks_of_their_own(tmp_path: Path, monkeypatch) -> None:
    root = make_tree(tmp_path / "data", 6, extras=False)
    expected = list(iter_outcomes(root, header_only=False, workers=1, progress=False))
    monkeypatch.setattr(parallel_module, "_SLOT_BYTES", 512)  # smaller than any image (1 kB)
    monkeypatch.setattr(parallel_module, "_SHARED_MIN_BYTES", 256)
    created: list[str] = []
    new_block = parallel_module._new_block

    def recording(size: int):
        block = new_block(size)
        if block is not None:
            created.append(block.name)
        return block

    unpack = parallel_module._unpack

    def recording_unpack(value, block, keep):
        if isinstance(value, parallel_module._Shared):
            created.append(value.name)  # a worker's own block
        return unpack(value, block, keep)

    monkeypatch.setattr(parallel_module, "_new_block", recording)
    monkeypatch.setattr(parallel_module, "_unpack", recording_unpack)
    _same(expected, list(iter_outcomes(root, header_only=False, workers=2, progress=False)))
    assert len(created) >= 6 + 1  # a slot or more, and a block of its own per image (6)
    # Every block, the parent's slots and the workers' own, is unlinked: none is left.
    from multiprocessing import shared_memory

    for name in created:
        with pytest.raises(FileNotFoundError):
            shared_memory.SharedMemory(name=name)


def test_options_reach_the_workers(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "data", 6, extras=False)
    outcomes = list(
        iter_outcomes(
            root, header_only=False, options=DecodeOptions(max_pixels=100), workers=2, progress=False
        )
    )
    assert {o.status for o in outcomes} == {"failed"}
    assert all("max_pixels" in o.reason for o in outcomes)


def test_serial_fallback_and_single_file_root(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "data", 3, extras=False)
    one = root / "s0" / "sub0" / "im0000"
    (outcome,) = iter_outcomes(one, header_only=False, workers=4, progress=False)
    assert outcome.path == "im0000" and outcome.status == "ok"
    assert list(iter_outcomes(tmp_path / "empty_dir_missing", header_only=True, progress=False))[
        0
    ].status == ("failed")


@needs_fork
def test_prepare_runs_in_the_workers_and_equals_preparing_here(tmp_path: Path, monkeypatch) -> None:
    """A model run's preprocessing (issue 25): the workers hand back the model's input, the
    same arrays and failure reasons as preparing each decoded image in this process, and no
    decoded image crosses into the parent (no shared-memory slot is taken)."""
    from fairaudit.models.blocks import InputPreparer
    from fairaudit.models.preprocessing import make_spec, model_input

    root = make_tree(tmp_path / "t", 14)
    _write(root / "s0" / "big.dcm", 99, size=1024)  # BLAS-sized: one thread in the workers, more here
    spec = make_spec(input_size=[64, 64], highpass_sigma=1.0)
    prepare = InputPreparer(spec)
    taken: list[int] = []
    real_take = parallel_module._Slots.take
    monkeypatch.setattr(parallel_module._Slots, "take", lambda self: taken.append(1) or real_take(self))
    fields = [(o.path, o.status, o.reason, o.source_shape, o.image) for o in iter_outcomes(
        root, header_only=False, workers=2, progress=False, prepare=prepare, ahead=8
    )]  # fmt: skip
    assert not taken
    serial = list(iter_outcomes(root, header_only=False, workers=1, progress=False))
    assert [f[0] for f in fields] == [o.path for o in serial]
    for (_, status, reason, shape, x), o in zip(fields, serial, strict=True):
        assert status == o.status and (reason == o.reason or status == "ok")
        if o.status == "ok":
            assert shape == o.image.shape
            np.testing.assert_array_equal(x, model_input(o.image, o.spacing, spec))
            assert x.shape == (2, 64, 64)
    # a file the preprocessing refuses fails alone, with the reason the model run reported before
    bad = InputPreparer(make_spec(input_size=[8, 8]))
    one = read_file(root / "s0" / "big.dcm", root, header_only=False)
    one.image = np.zeros((2, 3, 4), np.float32)
    out = bad(one)
    assert (out.status, out.reason, out.image) == ("failed", "not a 2-D image (shape (2, 3, 4))", None)
