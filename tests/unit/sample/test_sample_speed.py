"""The fast paths of `fairaudit sample-data` (issue 25) change no byte: tiled phantom
drawing against evaluating every feature on every pixel, the row/column bilinear zoom
against scipy's, pylibjpeg-rle against pydicom's RLE encoder, and 1 worker against several."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, RLELossless
from scipy import ndimage

from fairaudit.sample import phantom

from _helpers import cli


def digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_bytes_with_one_or_several_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 80 pixels: not a whole number of tiles; 2 images per worker task, so 4 tasks.
    args = ["--n", "8", "--size", "80", "--seed", "4", "-q"]
    monkeypatch.setenv("FAIRAUDIT_WORKERS", "1")
    one = tmp_path / "one" / "cohort"
    assert cli.invoke(["sample-data", str(one), *args]).exit_code == 0
    monkeypatch.delenv("FAIRAUDIT_WORKERS")
    runs = {}
    for workers in ("2", "3"):
        out = tmp_path / f"w{workers}" / "cohort"
        r = cli.invoke(["sample-data", str(out), *args, "--workers", workers])
        assert r.exit_code == 0, r.output
        runs[workers] = digests(out)
    assert len(runs["2"]) == 8 * 2 + 6  # images, masks and six files (findings.csv among them)
    assert digests(one) == runs["2"] == runs["3"]


def test_bad_worker_counts_are_refused_before_anything_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "cohort"
    assert (
        cli.invoke(["sample-data", str(out), "--n", "2", "--size", "32", "-q", "--workers", "1"]).exit_code
        == 0
    )
    before = digests(out)
    r = cli.invoke(
        ["sample-data", str(out), "--n", "2", "--size", "32", "-q", "--overwrite", "--workers", "0"]
    )
    assert r.exit_code == 2 and "--workers must be at least 1" in r.output
    monkeypatch.setenv("FAIRAUDIT_WORKERS", "none")
    r = cli.invoke(["sample-data", str(out), "--n", "2", "--size", "32", "-q", "--overwrite"])
    assert r.exit_code == 2 and "FAIRAUDIT_WORKERS" in r.output
    assert digests(out) == before


def _case(seed: int, site: str, lesion: bool, rotation: float | None = None):
    rng = np.random.default_rng(seed)
    a = phantom.draw_anatomy(rng)
    les = phantom.draw_lesion(rng) if lesion else None
    e = phantom.draw_exposure(phantom.SITES[site], rng)
    if rotation is not None:  # far beyond the sites' positioning: tiles cut the features obliquely
        e = replace(e, rotation_deg=rotation, shift_x=0.15)
    return a, les, phantom.SITES[site], e


@pytest.mark.parametrize(
    ("size", "seed", "site", "lesion", "rotation"),
    [
        (33, 1, "fixed_1", True, None),
        (64, 2, "portable", True, None),
        (100, 3, "fixed_2", False, 25.0),
        (256, 4, "portable", True, -40.0),
        (512, 5, "fixed_1", True, None),
    ],
)
def test_tiled_drawing_has_the_bits_of_drawing_everything_everywhere(
    size: int, seed: int, site: str, lesion: bool, rotation: float | None
) -> None:
    a, les, s, e = _case(seed, site, lesion, rotation)
    x, y = phantom._grid(size, e)
    fast = phantom.mu_map(a, s, les, x, y)
    full = phantom.mu_map(a, s, les, x, y, skip_tiles=False)
    for f, g in zip(fast, full, strict=True):
        assert f.shape == (size, size) and f.dtype == g.dtype
        assert f.tobytes() == g.tobytes()
    assert full[1].any() and full[0].max() > 2.0  # lung fields, and a body to draw
    assert full[2].any() == lesion


def test_mu_map_on_a_single_pixel_matches_the_image() -> None:
    """render's contrast-to-noise ratio evaluates mu on a 1 x 1 array."""
    a, les, s, e = _case(7, "fixed_2", True)
    x, y = phantom._grid(96, e)
    mu, _, _ = phantom.mu_map(a, s, les, x, y)
    for i, j in ((0, 0), (40, 30), (95, 95), (50, 70)):
        one, _, _ = phantom.mu_map(a, s, les, x[i : i + 1, j : j + 1], y[i : i + 1, j : j + 1])
        assert one.tobytes() == mu[i : i + 1, j : j + 1].tobytes()


@pytest.mark.parametrize("size", [32, 33, 48, 63, 64, 100, 112, 128, 256, 1024])
def test_zoom_linear_is_scipys_zoom(size: int) -> None:
    small = np.random.default_rng(size).random((64, 64)) * 3.0
    ref = ndimage.zoom(small, size / 64.0, order=1, mode="nearest", grid_mode=True)[:size, :size]
    mine = phantom._zoom_linear(small, size)
    assert mine.shape == ref.shape and mine.tobytes() == ref.tobytes()


def _rle(pixels: np.ndarray, plugin: str) -> bytes:
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.tobytes()
    ds.compress(RLELossless, pixels, encoding_plugin=plugin, generate_instance_uid=False)
    return ds.PixelData


def test_rle_encoder_writes_pydicoms_bytes() -> None:
    """Runs of every length around the 128-byte packet limits, literals, and a rendered image."""
    rng = np.random.default_rng(0)
    values: list[int] = []
    while len(values) < 40 * 300:
        length = int(
            rng.choice([1, 1, 2, 2, 3, 127, 128, 129, 130, 255, 256, 257, int(rng.integers(1, 400))])
        )
        values += [int(rng.integers(0, int(rng.choice([2, 4, 4096]))))] * length
    runs = np.array(values[: 40 * 300], dtype="<u2").reshape(40, 300)
    a, les, s, e = _case(3, "portable", True)
    image = phantom.render(a, les, s, e, 128, np.random.default_rng(1)).pixels
    for pixels in (runs, image, np.zeros((7, 5), dtype="<u2")):
        assert _rle(pixels, "pylibjpeg") == _rle(pixels, "pydicom")
