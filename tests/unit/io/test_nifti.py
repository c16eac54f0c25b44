"""NIfTI volumes (fairaudit.io.nifti, docs/nifti.md): files built here with nibabel, the
independent answer nibabel's own `as_closest_canonical` and header zooms."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from fairaudit.io import nifti
from fairaudit.io.dicom import iter_outcomes
from fairaudit.io.nifti import (
    NiftiError,
    read_volume,
    same_geometry,
    sniff,
    strip_suffix,
    volume_info,
)

SPACING = (0.8, 0.7, 2.5)


def _labels(shape: tuple[int, int, int] = (10, 12, 6), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 3, shape).astype(np.uint8)


def _affine(origin: tuple[float, float, float] = (-4.0, -5.0, -6.0)) -> np.ndarray:
    affine = np.diag([*SPACING, 1.0])
    affine[:3, 3] = origin
    return affine


def _flipped(data: np.ndarray, affine: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """The same volume stored with `axis` reversed: same world position of every voxel."""
    flipped = affine.copy()
    flipped[:3, axis] = -affine[:3, axis]
    flipped[:3, 3] = affine[:3, 3] + affine[:3, axis] * (data.shape[axis] - 1)
    return np.flip(data, axis).copy(), flipped


def _save(path: Path, data: np.ndarray, affine: np.ndarray, version: int = 1) -> Path:
    cls = nib.Nifti1Image if version == 1 else nib.Nifti2Image
    nib.save(cls(data, affine), str(path))
    return path


def test_suffixes_and_content(tmp_path: Path) -> None:
    assert strip_suffix("a/case_1.nii.gz") == "a/case_1"
    assert strip_suffix("CASE.NII") == "CASE"
    assert strip_suffix("case.png") is None
    plain = _save(tmp_path / "a.nii", _labels(), _affine())
    packed = _save(tmp_path / "b.nii.gz", _labels(), _affine(), version=2)
    renamed = tmp_path / "no_suffix"
    renamed.write_bytes(packed.read_bytes())
    for path in (plain, packed, renamed):
        with path.open("rb") as fh:
            assert sniff(fh) == "nifti"
    not_nifti = tmp_path / "text.nii.gz"
    not_nifti.write_bytes(gzip.compress(b"hello" * 200))
    with not_nifti.open("rb") as fh:
        assert sniff(fh) is None
    with pytest.raises(NiftiError, match="not a NIfTI file") as err:
        read_volume(not_nifti)
    assert err.value.status == "skipped"


@pytest.mark.parametrize("version", [1, 2])
def test_spacing_is_the_header_zooms(tmp_path: Path, version: int) -> None:
    path = _save(tmp_path / "v.nii.gz", _labels().astype(np.int16), _affine(), version)
    info = volume_info(path)
    assert info.spacing == pytest.approx(nib.load(str(path)).header.get_zooms()[:3], abs=1e-6)
    assert info.version == version
    assert info.orientation == "RAS"


def test_permuted_axes_match_nibabel_canonical(tmp_path: Path) -> None:
    data = _labels()
    affine = _affine()
    stored = data.transpose(2, 0, 1).copy()  # (S, R, A) storage
    perm = np.zeros((4, 4))
    perm[:3, 0], perm[:3, 1], perm[:3, 2] = affine[:3, 2], affine[:3, 0], affine[:3, 1]
    perm[:3, 3], perm[3, 3] = affine[:3, 3], 1.0
    path = _save(tmp_path / "p.nii.gz", stored, perm)
    array, info = read_volume(path, raw=True)
    canon = nib.as_closest_canonical(nib.load(str(path)))
    np.testing.assert_array_equal(array, np.asanyarray(canon.dataobj))
    np.testing.assert_array_equal(array, data)
    assert info.spacing == pytest.approx(canon.header.get_zooms()[:3], abs=1e-6)
    np.testing.assert_allclose(info.affine, canon.affine, atol=1e-6)
    assert info.orientation == "SRA"


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_flipped_affine_is_reoriented_and_matches(tmp_path: Path, axis: int) -> None:
    data = _labels()
    ras = _save(tmp_path / "ras.nii.gz", data, _affine())
    flipped_data, flipped_affine = _flipped(data, _affine(), axis)
    flipped = _save(tmp_path / "flip.nii", flipped_data, flipped_affine)
    a, ia = read_volume(ras, raw=True)
    b, ib = read_volume(flipped, raw=True)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(b, np.asanyarray(nib.as_closest_canonical(nib.load(str(flipped))).dataobj))
    assert same_geometry(ia, ib) == ""
    assert ib.orientation != "RAS"


def test_geometry_mismatches_have_reasons(tmp_path: Path) -> None:
    a = volume_info(_save(tmp_path / "a.nii.gz", _labels(), _affine()))
    shifted = volume_info(_save(tmp_path / "b.nii.gz", _labels(), _affine((-4.0, -5.0, -3.5))))
    smaller = volume_info(_save(tmp_path / "c.nii.gz", _labels((10, 12, 5)), _affine()))
    assert "affines differ by up to 2.5 mm" in same_geometry(a, shifted)
    assert same_geometry(a, smaller).startswith("shapes differ: 10 x 12 x 6 and 10 x 12 x 5")
    # float32 round-off in a header written by another tool is no mismatch
    nudged = volume_info(_save(tmp_path / "d.nii.gz", _labels(), _affine((-4.00001, -5.0, -6.0))))
    assert same_geometry(a, nudged) == ""


def test_float_image_reads_as_float32(tmp_path: Path) -> None:
    data = np.random.default_rng(1).normal(size=(6, 5, 4)).astype(np.float64)
    array, info = read_volume(_save(tmp_path / "f.nii.gz", data, _affine()))
    assert array.dtype == np.float32
    np.testing.assert_allclose(array, data.astype(np.float32))
    assert info.dtype == "float64"


def _header_only(path: Path, shape: tuple[int, ...], compress: bool) -> Path:
    """A NIfTI header declaring `shape` (int16) and not a single voxel after it."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.int16)
    raw = header.binaryblock + b"\x00" * 4
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


def test_hostile_declared_sizes_are_refused_before_reading(tmp_path: Path, monkeypatch) -> None:
    # A bomb: 60 bytes of gzip that declare 4096^3 voxels. Refused from the header alone.
    bomb = _header_only(tmp_path / "bomb.nii.gz", (4096, 4096, 4096), compress=True)
    assert bomb.stat().st_size < 200
    called = []
    monkeypatch.setattr(nifti._Volume, "array", lambda *a, **k: called.append(1))
    with pytest.raises(NiftiError, match="too large: 4096 x 4096 x 4096 voxels"):
        read_volume(bomb, max_voxels=2**28)
    # Within max_voxels but more bytes than max_file_size allows once inflated.
    big = _header_only(tmp_path / "big.nii.gz", (512, 512, 64), compress=True)
    with pytest.raises(NiftiError, match="declares 33554432 bytes, more than max_file_size 1000000"):
        read_volume(big, max_file_size=1_000_000)
    # Uncompressed: declared dims against the file size.
    short = _header_only(tmp_path / "short.nii", (64, 64, 64), compress=False)
    with pytest.raises(
        NiftiError, match="truncated file: the header declares 524640 bytes, the file has 352"
    ):
        volume_info(short)
    assert not called


def test_damaged_files_are_refused_with_a_reason(tmp_path: Path) -> None:
    good = _save(tmp_path / "good.nii.gz", _labels((30, 30, 30)), _affine())
    raw = good.read_bytes()
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(NiftiError, match="truncated or damaged NIfTI data"):
        read_volume(cut)
    four_d = _save(tmp_path / "t.nii.gz", np.zeros((4, 4, 4, 3), np.int16), _affine())
    with pytest.raises(NiftiError, match="4-D NIfTI"):
        volume_info(four_d)
    pair = tmp_path / "pair.hdr"
    header = nib.Nifti1Header()
    header["magic"] = b"ni1"
    pair.write_bytes(header.binaryblock)
    with pytest.raises(NiftiError, match=r"\.hdr/\.img pair"):
        volume_info(pair)
    # A single 2-D slice reads as a volume of one slice.
    flat, info = read_volume(_save(tmp_path / "flat.nii", np.ones((5, 4), np.uint8), _affine()), raw=True)
    assert flat.shape == (5, 4, 1) and info.shape == (5, 4, 1)


def test_scaled_voxels_equal_nibabel(tmp_path: Path) -> None:
    img = nib.Nifti1Image(np.arange(60, dtype=np.int16).reshape(5, 4, 3), _affine())
    img.header.set_slope_inter(0.5, -3.0)
    path = tmp_path / "scaled.nii.gz"
    nib.save(img, str(path))
    array, _ = read_volume(path)
    np.testing.assert_allclose(array, nib.load(str(path)).get_fdata(), rtol=1e-6)
    raw, _ = read_volume(path, raw=True)
    np.testing.assert_allclose(raw, np.asanyarray(nib.load(str(path)).dataobj))


def test_big_endian_header_is_read(tmp_path: Path) -> None:
    data = _labels().astype(">i2")
    path = tmp_path / "be.nii"
    nib.save(nib.Nifti1Image(data, _affine(), nib.Nifti1Header(endianness=">")), str(path))
    assert struct.unpack(">i", path.read_bytes()[:4])[0] == 348
    array, _ = read_volume(path, raw=True)
    np.testing.assert_array_equal(array, data.astype(np.int16))


def test_folder_read_skips_a_corrupt_file_among_good_ones(tmp_path: Path) -> None:
    """The image-folder reader (fairaudit.io.dicom) reads NIfTI by content, in workers as
    serially; a cut .nii.gz is one failed outcome with its reason, never fatal."""
    for k in range(5):
        flipped = k % 2 == 1
        data, affine = _labels(seed=k).astype(np.int16), _affine()
        if flipped:
            data, affine = _flipped(data, affine, 0)
        _save(tmp_path / f"case_{k}.nii.gz", data, affine)
    raw = (tmp_path / "case_0.nii.gz").read_bytes()
    (tmp_path / "case_9.nii.gz").write_bytes(raw[: len(raw) - 40])
    (tmp_path / "notes.txt").write_text("not an image")
    serial = list(iter_outcomes(tmp_path, header_only=False, workers=1, progress=False))
    parallel = list(iter_outcomes(tmp_path, header_only=False, workers=2, progress=False))
    status = {o.path: (o.status, o.reason) for o in serial}
    assert status["case_9.nii.gz"][0] == "failed"
    assert "truncated or damaged NIfTI data" in status["case_9.nii.gz"][1]
    assert status["notes.txt"][0] == "skipped"
    for k in range(5):
        assert status[f"case_{k}.nii.gz"] == ("ok", "")
    for a, b in zip(serial, parallel, strict=True):
        assert (a.path, a.status, a.file_format) == (b.path, b.status, b.file_format)
        if a.image is not None:
            np.testing.assert_array_equal(a.image, b.image)
            np.testing.assert_allclose(a.affine, b.affine)
            assert a.spacing == pytest.approx(SPACING, abs=1e-6)
            expected = nib.as_closest_canonical(nib.load(str(tmp_path / a.path))).get_fdata()
            np.testing.assert_array_equal(a.image, expected.astype(np.float32))
    headers = {o.path: o for o in iter_outcomes(tmp_path, header_only=True, workers=1, progress=False)}
    assert headers["case_1.nii.gz"].volume_shape == (10, 12, 6)
    assert headers["case_1.nii.gz"].image is None


def test_path_ids_strip_both_nifti_suffixes() -> None:
    import pandas as pd

    from fairaudit.cohort.dicom_files import PathIds
    from fairaudit.io.tables import table_from_frame

    table = table_from_frame(pd.DataFrame({"path": ["a/case_1", "case_2"]}), "d.csv")
    ids = PathIds.from_tables([table], "path")
    assert ids(["a/case_1.nii.gz", "case_2.nii", "case_3.nii.gz"]) == ["a/case_1", "case_2", "case_3.nii.gz"]


def test_concatenated_gzip_members_read_as_nibabel_does(tmp_path: Path) -> None:
    """A .nii.gz written as two gzip members (as `cat a.gz b.gz` makes) is one stream."""
    plain = _save(tmp_path / "plain.nii", _labels((20, 18, 7)).astype(np.int16), _affine())
    raw = plain.read_bytes()
    two = tmp_path / "two.nii.gz"
    two.write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:]))
    array, _ = read_volume(two, raw=True)
    np.testing.assert_array_equal(array, np.asanyarray(nib.as_closest_canonical(nib.load(str(two))).dataobj))


def test_inflating_stops_at_the_declared_size(tmp_path: Path) -> None:
    """A stream that inflates far past what its header declares (64 MiB of zeros after the
    voxels) is read without inflating the rest: peak memory stays near the volume's size."""
    import tracemalloc
    import zlib

    data = _labels((32, 32, 16)).astype(np.int16)
    raw = _save(tmp_path / "v.nii", data, _affine()).read_bytes()
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [packer.compress(raw)]
    zeros = bytes(2**20)
    parts += [packer.compress(zeros) for _ in range(64)]
    parts.append(packer.flush())
    padded = tmp_path / "padded.nii.gz"
    padded.write_bytes(b"".join(parts))
    assert padded.stat().st_size < 2**20
    tracemalloc.start()
    try:
        array, _ = read_volume(padded, raw=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(array, data)
    assert peak < 8 * 2**20


@pytest.mark.parametrize("slot_bytes", [8 * 2**20, 128 * 2**10])
def test_large_volumes_come_back_from_workers_unchanged(tmp_path: Path, monkeypatch, slot_bytes: int) -> None:
    """Volumes above the shared-memory size travel from the workers in their own memory
    order (docs/nifti.md), in the parent's slots or, when larger, in blocks of their own;
    each equals nibabel's canonical array, flipped and permuted ones included."""
    from fairaudit.io.dicom import _parallel

    monkeypatch.setattr(_parallel, "_SLOT_BYTES", slot_bytes)
    base = np.random.default_rng(3).integers(-500, 500, (48, 40, 36)).astype(np.int16)
    _save(tmp_path / "a.nii.gz", base, _affine())
    _save(tmp_path / "b.nii.gz", *_flipped(base, _affine(), 0))
    permuted = _affine()[:, [1, 0, 2, 3]]
    _save(tmp_path / "c.nii.gz", base.transpose(1, 0, 2).copy(), permuted)
    outcomes = list(iter_outcomes(tmp_path, header_only=False, workers=2, progress=False))
    assert [o.status for o in outcomes] == ["ok"] * 3
    for o in outcomes:
        expected = nib.as_closest_canonical(nib.load(str(tmp_path / o.path))).get_fdata()
        np.testing.assert_array_equal(o.image, expected.astype(np.float32))
        assert o.image.flags.writeable
