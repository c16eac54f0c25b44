"""fairaudit.preprocess._resize against skimage.transform.resize, the definition it replaces."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.transform import resize as sk_resize

from fairaudit.preprocess._resize import _axis_matrix, resize

SHAPES = [
    ((112, 112), (64, 64)),  # the sample cohort into the bundled models
    ((1024, 1024), (64, 64)),  # a radiograph
    ((301, 257), (64, 64)),  # odd, non-square, non-integer factors
    ((64, 64), (1024, 1024)),  # a predicted label map back onto its image
    ((100, 130), (256, 64)),  # one axis up, one down
    ((7, 5), (3, 9)),
    ((40, 50, 30), (20, 25, 60)),  # a volume (normalize resamples them)
]


@pytest.mark.parametrize(("shape", "out"), SHAPES)
def test_linear_equals_skimage(shape: tuple[int, ...], out: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    image = (rng.random(shape) * 4095).astype(np.float32)
    anti = any(o < i for o, i in zip(out, shape, strict=True))
    want = sk_resize(image, out, order=1, mode="edge", anti_aliasing=anti, preserve_range=True)
    got = resize(image, out, order=1, anti_aliasing=anti)
    assert got.shape == out and got.dtype == np.float32
    # float32 products against scipy's float32 passes: agreement to float32 rounding
    np.testing.assert_allclose(got, want, rtol=0, atol=4095 * 2e-6)
    # and the output stays within the input's range, as skimage clips it
    assert got.min() >= image.min() and got.max() <= image.max()


@pytest.mark.parametrize(("shape", "out"), SHAPES)
def test_nearest_equals_skimage_exactly(shape: tuple[int, ...], out: tuple[int, ...]) -> None:
    labels = np.random.default_rng(1).integers(0, 4, size=shape).astype(np.int64)
    want = sk_resize(labels, out, order=0, mode="edge", anti_aliasing=False, preserve_range=True)
    got = resize(labels, out, order=0, anti_aliasing=False)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, want.astype(np.int64))


def test_float64_stays_float64_and_matches() -> None:
    image = np.random.default_rng(2).random((90, 70))
    want = sk_resize(image, (30, 20), order=1, mode="edge", anti_aliasing=True, preserve_range=True)
    got = resize(image, (30, 20), order=1, anti_aliasing=True)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_axis_matrix_is_scipys_filter_then_zoom() -> None:
    """The filter's rows built for the used inputs only equal filtering a whole identity."""
    from scipy import ndimage

    for n_in, n_out in ((1024, 64), (3000, 64), (65, 64), (1000, 7)):
        factor = n_in / n_out
        full = ndimage.gaussian_filter1d(np.eye(n_in), (factor - 1) / 2, axis=0, mode="nearest")
        want = ndimage.zoom(full, (1 / factor, 1.0), order=1, mode="nearest", grid_mode=True)
        np.testing.assert_allclose(_axis_matrix(n_in, n_out, 1, True), want, rtol=0, atol=1e-15)
        # each row is a weighted mean: weights sum to 1
        np.testing.assert_allclose(_axis_matrix(n_in, n_out, 1, True).sum(axis=1), 1.0, atol=1e-12)


def test_same_shape_is_a_copy_and_bad_shapes_are_refused() -> None:
    image = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = resize(image, (3, 4), order=1, anti_aliasing=True)
    assert out is not image and np.array_equal(out, image)
    with pytest.raises(ValueError, match="cannot resize"):
        resize(image, (3,), order=1, anti_aliasing=True)
    with pytest.raises(ValueError, match="order"):
        resize(image, (2, 2), order=3, anti_aliasing=True)
