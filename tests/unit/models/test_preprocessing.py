"""Preprocessing: intensity against numpy, geometry inverse, no torch import."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from fairaudit.models.preprocessing import make_spec, prepare_image, prepare_mask, restore_mask


def test_percentile_scaling_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(100, 20, size=(16, 16)).astype(np.float32)
    out = prepare_image(image, None, make_spec(input_size=[16, 16], percentiles=[2.0, 98.0]))
    lo, hi = np.percentile(image, [2, 98])
    assert out.shape == (1, 16, 16)
    np.testing.assert_allclose(out[0], np.clip((image - lo) / (hi - lo), 0, 1), atol=1e-6)


def test_channels_and_size() -> None:
    image = np.arange(112 * 90, dtype=np.float32).reshape(112, 90)
    out = prepare_image(image, (0.2, 0.2), make_spec(input_size=[64, 48], channels=3))
    assert out.shape == (3, 64, 48) and out.dtype == np.float32
    assert np.array_equal(out[0], out[2])


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
def test_mask_restore_inverts_upsampling(resize: str) -> None:
    rng = np.random.default_rng(1)
    mask = rng.integers(0, 3, size=(20, 20))
    spec = make_spec(input_size=[40, 40], resize=resize)
    up = prepare_mask(mask, None, spec)
    assert set(np.unique(up)) <= {0, 1, 2}
    np.testing.assert_array_equal(restore_mask(up, mask.shape, spec), mask)


def test_letterbox_restore_non_square() -> None:
    mask = np.zeros((30, 20), dtype=int)
    mask[5:25, 4:16] = 1
    spec = make_spec(input_size=[60, 60], resize="letterbox")
    up = prepare_mask(mask, None, spec)
    assert up[:, :10].max() == 0  # the padding columns are background
    np.testing.assert_array_equal(restore_mask(up, mask.shape, spec), mask)


def test_bad_spec() -> None:
    with pytest.raises(ValueError, match="resize"):
        make_spec(resize="crop")


def test_no_torch_import() -> None:
    code = "import sys, fairaudit.models.preprocessing, fairaudit.models; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_highpass_channel_matches_scipy() -> None:
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(2)
    image = rng.normal(size=(24, 24)).astype(np.float32)
    spec = make_spec(input_size=[24, 24], intensity="none", highpass_sigma=2.0, highpass_gain=5.0)
    out = prepare_image(image, None, spec)
    assert out.shape == (2, 24, 24)
    np.testing.assert_allclose(out[0], image, atol=1e-6)
    np.testing.assert_allclose(out[1], (image - gaussian_filter(image, 2.0)) * 5.0, atol=1e-5)
