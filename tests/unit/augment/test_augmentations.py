"""Augmentations: each effect does what it says, against formulas and independent libraries."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.polynomial import polynomial as P
from skimage.transform import rotate

from fairaudit.augment import (
    FAMILIES,
    STRENGTHS,
    CtCupping,
    Geometric,
    MriBiasField,
    MriGibbs,
    MriRician,
    UsAttenuation,
    UsSpeckle,
    XrayExposure,
    XrayGrid,
    XrayNoise,
    bias_field,
    modality_transforms,
)
from fairaudit.augment._physics import CtStarvation
from fairaudit.errors import InputError

ALL = [c for classes in FAMILIES.values() for c in classes]


def ramp(shape=(96, 96)) -> np.ndarray:
    """0..1000 left to right: the unit window is ~[5, 995]."""
    return np.tile(np.linspace(0.0, 1000.0, shape[1]), (shape[0], 1)).astype(np.float64)


def flat(shape=(128, 128), value=500.0) -> np.ndarray:
    """A flat image at `value` with 0 and 1000 bands in the outer columns: the unit window is (0, 1000)."""
    img = np.full(shape, value)
    img[:, :3], img[:, -3:] = 0.0, 1000.0
    return img


IN = (slice(8, -8), slice(8, -8))


def disk(n=96, radius=30) -> np.ndarray:
    rr, cc = np.mgrid[0:n, 0:n]
    return ((rr - n / 2) ** 2 + (cc - n / 2) ** 2 <= radius**2).astype(np.uint8)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.name)
def test_same_seed_same_image_and_record_reproduces(cls) -> None:
    img = ramp() + 50.0 * disk()
    t = cls("moderate")
    a = t(img, np.random.default_rng(7))
    b = t(img, np.random.default_rng(7))
    np.testing.assert_array_equal(a.image, b.image)
    again, _ = t.apply(img, a.records[0].params)
    np.testing.assert_array_equal(again, a.image)
    assert a.records[0].family == cls.family and a.records[0].strength == "moderate"


@pytest.mark.parametrize(
    "cls", [XrayNoise, CtStarvation, MriRician, UsSpeckle, Geometric], ids=lambda c: c.name
)
def test_different_seeds_differ_and_global_state_untouched(cls) -> None:
    img = ramp() + 50.0 * disk()
    np.random.seed(123)
    state = np.random.get_state()[1].copy()
    t = cls("moderate")
    a, b = t(img, np.random.default_rng(1)), t(img, np.random.default_rng(2))
    assert not np.array_equal(a.image, b.image)
    np.testing.assert_array_equal(np.random.get_state()[1], state)
    with pytest.raises(TypeError, match="Generator"):
        t(img, 1)  # type: ignore[arg-type]


def test_strength_is_validated() -> None:
    with pytest.raises(InputError, match="strength="):
        XrayNoise("extreme")
    with pytest.raises(InputError, match="modality="):
        modality_transforms("pet")
    assert set(modality_transforms("ct")) == {"cupping", "metal", "starvation", "rings"}


@pytest.mark.parametrize("cls", [XrayNoise, CtStarvation, MriRician, UsSpeckle], ids=lambda c: c.name)
def test_noise_variance_grows_with_strength(cls) -> None:
    img = flat()
    var = []
    for s in STRENGTHS:
        out = cls(s)(img, np.random.default_rng(0)).image
        var.append(float(np.var(out[IN])))
    assert var[0] < var[1] < var[2]


def test_xray_noise_variance_matches_poisson_plus_gaussian() -> None:
    img = flat((256, 256))
    res = XrayNoise("moderate")(img, np.random.default_rng(3))
    p = res.records[0].params
    lo, hi = p["window"]
    assert (lo, hi) == (0.0, 1000.0)
    u = (res.image[IN] - lo) / (hi - lo)
    u0 = (500.0 - lo) / (hi - lo)
    expected = u0 / p["photons"] + p["electronic_sd"] ** 2
    assert np.var(u) == pytest.approx(expected, rel=0.05)
    assert np.mean(u) == pytest.approx(u0, abs=0.01)


def test_bias_field_is_the_exp_polynomial_and_smooth() -> None:
    t = MriBiasField("aggressive")
    img = flat((128, 96))
    res = t(img, np.random.default_rng(5))
    p = res.records[0].params
    # independent evaluation with numpy's 2-D polynomial
    coef = np.zeros((4, 4))
    k = 0
    for i in range(4):
        for j in range(4 - i):
            coef[i, j] = p["coefficients"][k]
            k += 1
    r, c = np.meshgrid(np.linspace(-1, 1, 128), np.linspace(-1, 1, 96), indexing="ij")
    field = np.exp(P.polyval2d(r, c, coef))
    np.testing.assert_allclose(bias_field((128, 96), p["coefficients"]), field, rtol=1e-12)
    lo, hi = p["window"]
    ratio = (res.image[IN] - lo) / (500.0 - lo)
    np.testing.assert_allclose(ratio, field[IN], rtol=1e-5)
    # smooth: second differences are tiny next to the field's own variation
    assert field.std() > 0.05
    lap = np.abs(np.diff(field, 2, axis=0)).max() + np.abs(np.diff(field, 2, axis=1)).max()
    assert lap < 0.01 * np.ptp(field)
    # low-frequency: almost all power within the 4 lowest frequencies per axis
    spec = np.abs(np.fft.fft2(field - field.mean())) ** 2
    low = spec[:4, :4].sum() + spec[-4:, :4].sum() + spec[:4, -4:].sum() + spec[-4:, -4:].sum()
    assert low / spec.sum() > 0.95


def test_gibbs_rings_at_an_edge() -> None:
    img = np.zeros((64, 64))
    img[:, 32:] = 1000.0
    out = MriGibbs("aggressive")(img, np.random.default_rng(0)).image
    assert out.max() > 1000.0 * 1.05 and out.min() < -1000.0 * 0.05  # overshoot and undershoot


def test_grid_lines_have_the_drawn_period() -> None:
    res = XrayGrid("aggressive")(flat(), np.random.default_rng(2))
    p = res.records[0].params
    inner = res.image[IN]
    profile = inner.mean(axis=1) if p["axis"] == 0 else inner.mean(axis=0)
    spec = np.abs(np.fft.rfft(profile - profile.mean()))
    peak = np.argmax(spec[1:]) + 1
    assert len(profile) / peak == pytest.approx(p["period_px"], rel=0.1)


def test_attenuation_and_exposure_and_cupping_formulas() -> None:
    img = flat((100, 100))
    r = UsAttenuation("moderate")(img, np.random.default_rng(0))
    lo, hi = r.records[0].params["window"]
    u = (r.image - lo) / (hi - lo)
    u0 = (500 - lo) / (hi - lo)
    assert u[-1, 50] / u[1, 50] == pytest.approx(np.exp(-r.records[0].params["alpha"] * 98 / 99), rel=1e-4)
    e = XrayExposure("moderate")(img, np.random.default_rng(0))
    assert u0 > 0 and e.image.mean() != pytest.approx(img.mean())
    assert e.image[50, 50] == pytest.approx(
        1000
        * e.records[0].params["gain"]
        * (img.mean() / 1000 + e.records[0].params["contrast"] * (0.5 - img.mean() / 1000)),
        rel=1e-5,
    )
    c = CtCupping("moderate")(img, np.random.default_rng(0))
    depth = c.records[0].params["depth"]
    assert c.image[50, 50] == pytest.approx(500.0 - 1000 * depth * (1 - (1 / 99) ** 2 * 2), rel=1e-3)
    assert c.image[0, 50] == pytest.approx(500.0, abs=1e-3)  # r >= 1 at the edge: untouched


def test_intensity_transforms_leave_the_mask_alone() -> None:
    m = disk()
    res = XrayNoise("moderate")(ramp(), np.random.default_rng(0), m)
    assert res.mask is m


def test_geometric_mask_stays_binary_and_aligned() -> None:
    m = disk(96, 28)
    m[40:50, 10:30] = 1  # asymmetric part
    img = 100.0 * m
    for seed in range(5):
        res = Geometric("aggressive")(img, np.random.default_rng(seed), m)
        assert set(np.unique(res.mask)) <= {0, 1} and res.mask.dtype == m.dtype
        warped = res.image > 50.0
        inter = np.logical_and(warped, res.mask == 1).sum()
        union = np.logical_or(warped, res.mask == 1).sum()
        assert inter / union > 0.97
        assert not res.records[0].params["flip"][0] and not res.records[0].params["flip"][1]


def test_geometric_identity_and_rotation_match_skimage() -> None:
    img = ramp() + 300.0 * disk()
    ident = Geometric("moderate", degrees=0.0, translation=0.0, scale=0.0, elastic=False)
    np.testing.assert_allclose(ident(img, np.random.default_rng(0)).image, img, atol=1e-3)
    rot = Geometric("moderate", degrees=15.0, translation=0.0, scale=0.0, elastic=False)
    res = rot(img, np.random.default_rng(0))
    angle = res.records[0].params["angle_deg"]
    ref = rotate(img, angle, order=1, preserve_range=True)
    np.testing.assert_allclose(res.image[20:-20, 20:-20], ref[20:-20, 20:-20], atol=1e-2)


def test_flips_when_enabled_and_3d_volume() -> None:
    img = ramp()
    t = Geometric("mild", flip=True, degrees=0.0, translation=0.0, scale=0.0, elastic=False)
    flipped = [t(img, np.random.default_rng(s)) for s in range(8)]
    assert any(r.records[0].params["flip"][1] for r in flipped)
    for r in flipped:
        if r.records[0].params["flip"][1] and not r.records[0].params["flip"][0]:
            np.testing.assert_allclose(r.image, img[:, ::-1], atol=1e-3)
    vol = np.stack([ramp((48, 48))] * 4)
    mask = np.stack([disk(48, 12)] * 4)
    res = Geometric("moderate")(vol, np.random.default_rng(0), mask)
    assert res.image.shape == vol.shape and np.array_equal(res.mask[0], res.mask[3])


def test_wide_blur_matches_direct_gaussian_filter() -> None:
    from scipy import ndimage

    from fairaudit.augment._physics import _wide_blur

    rng = np.random.default_rng(0)
    u = ndimage.gaussian_filter(rng.random((300, 260)), 3) + np.linspace(0, 1, 260)[None, :]
    direct = ndimage.gaussian_filter(u, 40.0, mode="reflect")
    assert np.abs(_wide_blur(u, 40.0) - direct).max() < 0.01 * np.ptp(u)


def test_motion_mixes_kspace_of_the_moved_object() -> None:
    from scipy import ndimage

    from fairaudit.augment import MriMotion

    img = ramp() + 400.0 * disk()
    t = MriMotion("moderate")
    p = {"window": [0.0, 1000.0], "angle_deg": 0.0, "shift": [3.0, -2.0], "axis": 0}
    still, _ = t.apply(img, {**p, "time": 1.0})  # every line before the move: the image itself
    np.testing.assert_allclose(still, img, atol=1e-2)
    moved, _ = t.apply(img, {**p, "time": 0.0})  # every line after: the moved object
    ref = ndimage.shift(img, (3.0, -2.0), order=1, mode="nearest")
    np.testing.assert_allclose(moved[10:-10, 10:-10], ref[10:-10, 10:-10], atol=1e-2)
    half, _ = t.apply(img, {**p, "time": 0.5})  # ghosting: neither
    assert np.abs(half - img).mean() > 1.0 and np.abs(half - ref).mean() > 1.0


def test_portable_composite_reproduces_and_darkens_and_adds_noise() -> None:
    from fairaudit.augment import portable_xray

    img = flat()
    t = portable_xray("moderate")
    res = t(img, np.random.default_rng(4))
    steps = res.records[0].params["steps"]
    assert [s["transform"] for s in steps] == ["xray_exposure", "xray_scatter", "xray_noise"]
    assert 0.65 <= steps[0]["params"]["gain"] <= 0.85
    again, _ = t.apply(img, res.records[0].params)
    np.testing.assert_array_equal(again, res.image)
    assert res.image[IN].mean() < img[IN].mean()
    assert np.var(res.image[IN]) > np.var(XrayExposure("moderate").apply(img, steps[0]["params"])[0][IN])
    assert set(modality_transforms("xray")) == {"exposure", "scatter", "noise", "grid", "portable"}
