"""Spatial standardization: resampling, aspect-preserving resize, landmark and rigid registration."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage import data
from skimage.transform import AffineTransform, SimilarityTransform, rotate, warp

from fairaudit.errors import InputError
from fairaudit.preprocess import (
    align_landmarks,
    align_rigid,
    parse_shape,
    register_rigid,
    resample_to_spacing,
    resize_to_shape,
    restore_shape,
)


@pytest.fixture(scope="module")
def camera() -> np.ndarray:
    return data.camera()[::4, ::4].astype(np.float64) / 255.0  # 128 x 128


def test_parse_shape() -> None:
    assert parse_shape("256x256") == (256, 256)
    assert parse_shape("0.5x0.7", floats=True) == (0.5, 0.7)
    assert parse_shape(None) is None
    with pytest.raises(InputError, match="target_shape="):
        parse_shape("256xabc")


def test_resample_to_spacing_keeps_field_of_view() -> None:
    img = np.zeros((100, 60), np.float32)
    out, rec = resample_to_spacing(img, (0.5, 1.0), (1.0, 0.5))
    assert out.shape == (50, 120)
    assert rec["output_spacing"] == pytest.approx([1.0, 0.5])
    vol, rec3 = resample_to_spacing(np.zeros((10, 20, 20)), (2.0, 1.0, 1.0), (1.0, 2.0, 2.0))
    assert vol.shape == (20, 10, 10)


def test_resize_keep_aspect_pads_centred() -> None:
    img = np.ones((50, 100), np.float32)
    out, rec = resize_to_shape(img, (64, 64), pad_value=0.0)
    assert out.shape == (64, 64)
    assert rec["resized_shape"] == [32, 64] and rec["pad"] == [[16, 16], [0, 0]]
    assert out[:16].max() == 0 and out[16:48].min() == pytest.approx(1.0) and out[48:].max() == 0


def test_resize_crop_and_no_aspect() -> None:
    img = np.arange(50 * 100, dtype=np.float32).reshape(50, 100)
    out, rec = resize_to_shape(img, (64, 64), fit="crop")
    assert out.shape == (64, 64) and rec["resized_shape"] == [64, 128] and rec["crop"][1] == [32, 96]
    out2, _ = resize_to_shape(img, (64, 64), keep_aspect=False)
    assert out2.shape == (64, 64)
    vol, _ = resize_to_shape(np.ones((20, 40, 40)), (32, 32, 32))
    assert vol.shape == (32, 32, 32)


def test_restore_shape_inverts_pad_geometry() -> None:
    rng = np.random.default_rng(0)
    img = ndimage.gaussian_filter(rng.random((40, 80)), 3)
    out, rec = resize_to_shape(img, (80, 80))
    back = restore_shape(out, rec)
    assert back.shape == img.shape
    assert np.abs(back - img).max() < 0.02


def test_mask_resize_stays_label_valued() -> None:
    mask = np.zeros((50, 70), np.uint8)
    mask[10:30, 20:50] = 2
    out, _ = resize_to_shape(mask, (64, 64), order=0)
    assert set(np.unique(out)) <= {0, 2} and out.dtype == np.uint8


@pytest.mark.parametrize("kind", ["similarity", "affine"])
def test_landmark_alignment_recovers_known_transform(camera: np.ndarray, kind: str) -> None:
    cls = SimilarityTransform if kind == "similarity" else AffineTransform
    true = (
        SimilarityTransform(scale=1.1, rotation=np.deg2rad(8), translation=(4, -6))
        if kind == "similarity"
        else AffineTransform(scale=(1.1, 0.95), rotation=np.deg2rad(5), shear=0.1, translation=(3, 2))
    )
    assert isinstance(true, cls)
    # the image is the template seen through `true` (template xy -> image xy)
    moving = warp(camera, true.inverse, preserve_range=True)
    tmpl_pts = np.array(
        [[30.0, 30.0], [30.0, 90.0], [90.0, 40.0], [100.0, 100.0], [64.0, 64.0]]
    )  # (row, col)
    img_pts = true(tmpl_pts[:, ::-1])[:, ::-1]
    aligned, rec = align_landmarks(moving, img_pts, tmpl_pts, kind=kind)
    assert rec["residual_rms"] < 1e-6
    np.testing.assert_allclose(rec["matrix_template_to_image_xy"], true.params, atol=1e-8)
    inner = (slice(30, 100), slice(30, 100))
    before = np.abs(moving[inner] - camera[inner]).mean()
    assert np.abs(aligned[inner] - camera[inner]).mean() < 0.3 * before


def test_landmarks_need_enough_points(camera: np.ndarray) -> None:
    with pytest.raises(InputError, match="at least 3"):
        align_landmarks(camera, np.zeros((2, 2)), np.zeros((2, 2)), kind="affine")


@pytest.mark.parametrize("angle,shift", [(12.0, (5.0, -3.0)), (-27.0, (-7.5, 9.25))])
def test_rigid_registration_recovers_shift_and_rotation(camera: np.ndarray, angle, shift) -> None:
    # built with skimage's rotate and scipy's shift, independent of the code under test
    moving = ndimage.shift(rotate(camera, angle, order=1), shift, order=1)
    res = register_rigid(moving, camera)
    assert abs(res.angle_deg - angle) < 1.0
    assert np.hypot(res.shift[0] - shift[0], res.shift[1] - shift[1]) < 1.0
    aligned = align_rigid(moving, res)
    inner = (slice(40, 88), slice(40, 88))
    before = np.abs(moving[inner] - camera[inner]).mean()
    assert np.abs(aligned[inner] - camera[inner]).mean() < 0.3 * before


def test_restore_shape_after_crop_and_resample() -> None:
    rng = np.random.default_rng(1)
    img = ndimage.gaussian_filter(rng.random((60, 90)), 4)
    out, rec = resize_to_shape(img, (60, 60), fit="crop")
    back = restore_shape(out, rec)
    assert back.shape == img.shape
    kept = slice(
        int(90 * rec["crop"][1][0] / rec["resized_shape"][1]) + 2,
        int(90 * rec["crop"][1][1] / rec["resized_shape"][1]) - 2,
    )
    assert np.abs(back[:, kept] - img[:, kept]).max() < 0.02
    res, rec2 = resample_to_spacing(img, (1.0, 1.0), (0.5, 0.5))
    assert res.shape == (120, 180)
    assert np.abs(restore_shape(res, rec2) - img).max() < 0.02
