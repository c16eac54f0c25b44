"""The fast resize (fairaudit.preprocess._resize) leaves the bundled models' outputs where
skimage.transform.resize put them: scores within 0.01 (issue 25), masks pixel for pixel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fairaudit.io.dicom import read_file  # noqa: E402
from fairaudit.models import preprocessing  # noqa: E402
from fairaudit.models.loading import load_predictor  # noqa: E402

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[3] / "sample_data" / "images"
N = 48


def _skimage_resize(array: np.ndarray, size: tuple[int, int], *, order: int) -> np.ndarray:
    """The preprocessing's resize as it was: skimage.transform.resize itself."""
    from skimage.transform import resize

    if tuple(array.shape) == tuple(size):
        return array.copy()
    anti = order > 0 and (array.shape[0] > size[0] or array.shape[1] > size[1])
    out = resize(array, size, order=order, mode="edge", anti_aliasing=anti, preserve_range=True)
    return out.astype(array.dtype, copy=False)


def _images(upsample_to: int | None) -> list[np.ndarray]:
    from skimage.transform import resize

    files = sorted(ROOT.rglob("*.dcm"))[:N]
    images = [read_file(f, ROOT, header_only=False).image for f in files]
    if upsample_to is not None:  # a radiograph's size: the large-factor path
        images = [
            resize(im, (upsample_to, upsample_to), order=1, preserve_range=True).astype(np.float32)
            for im in images
        ]
    return images


def _run(predictor, images: list[np.ndarray]) -> np.ndarray:
    batch = np.stack([predictor.prepare(im, None) for im in images])
    return predictor.predict(batch)


@pytest.mark.parametrize("size", [None, 1024])
def test_classifier_scores_within_0_01(size: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    predictor = load_predictor("bundled:cxr_finding_classifier", "cpu")
    images = _images(size)
    fast = _run(predictor, images)
    monkeypatch.setattr(preprocessing, "_resize", _skimage_resize)
    before = _run(predictor, images)
    assert np.abs(fast - before).max() <= 0.01
    assert np.abs(fast - before).max() <= 1e-4  # measured: float rounding only (3e-6)


def test_segmenter_masks_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    predictor = load_predictor("bundled:cxr_lung_segmenter", "cpu")
    images = _images(None)
    fast = [predictor.restore(m, im.shape) for m, im in zip(_run(predictor, images), images, strict=True)]
    monkeypatch.setattr(preprocessing, "_resize", _skimage_resize)
    before = [predictor.restore(m, im.shape) for m, im in zip(_run(predictor, images), images, strict=True)]
    agree = np.mean([np.mean(a == b) for a, b in zip(fast, before, strict=True)])
    assert agree >= 0.9999
