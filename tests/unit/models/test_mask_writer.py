"""Predicted masks restored and written in worker processes (fairaudit.models.mask_writer).

The expected masks are written out by hand: a "stretch" restore by an exact factor of 2
with nearest neighbour is each model-grid pixel repeated 2 x 2 (skimage's order-0 resize
samples input pixel floor(i / 2) for output pixel i).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fairaudit.models.mask_writer import MaskWriter, ModelGridMask

SPEC = {"input_size": [4, 4], "resize": "stretch", "intensity": "percentile", "percentiles": [1.0, 99.0]}


def _maps(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.integers(0, 3, size=(4, 4)) for _ in range(n)]


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_masks_are_restored_by_repetition_and_written_as_png(tmp_path: Path, workers: int) -> None:
    maps = _maps(21)  # more than one chunk of 16, so several tasks
    with MaskWriter(SPEC, workers) as writer:
        for i, m in enumerate(maps):
            writer.add(f"f{i}", tmp_path / f"{i}.png", ModelGridMask(m, (8, 8)))
        assert writer.close() == []
    for i, m in enumerate(maps):
        written = np.asarray(Image.open(tmp_path / f"{i}.png"))
        expected = np.repeat(np.repeat(m, 2, axis=0), 2, axis=1)
        assert written.dtype == np.uint8
        np.testing.assert_array_equal(written, expected)


def test_a_mask_already_on_the_image_grid_is_written_as_it_is(tmp_path: Path) -> None:
    mask = np.zeros((5, 7), dtype=np.int64)
    mask[1:3, 2:6] = 300  # a label above 255: a 16-bit PNG
    writer = MaskWriter(SPEC, 0)
    writer.add("a", tmp_path / "a.png", mask)
    assert writer.close() == []
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "a.png")).astype(np.int64), mask)


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_failures_come_back_with_their_reason_and_the_rest_is_written(tmp_path: Path, workers: int) -> None:
    good, bad_shape = _maps(2)
    writer = MaskWriter(SPEC, workers, chunk=1)
    writer.add("ok", tmp_path / "ok.png", ModelGridMask(good, (8, 8)))
    writer.add("nowhere", tmp_path / "missing-folder" / "x.png", ModelGridMask(good, (8, 8)))
    writer.add("odd", tmp_path / "odd.png", ModelGridMask(bad_shape, (8, -3)))
    failed = dict(writer.close())
    assert set(failed) == {"nowhere", "odd"}
    assert failed["nowhere"].startswith("failed: writing the mask: ")
    assert failed["odd"].startswith("failed: restoring the mask: ")
    assert (tmp_path / "ok.png").exists()
    assert not (tmp_path / "odd.png").exists()
