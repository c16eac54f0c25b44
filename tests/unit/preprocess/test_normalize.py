"""Normalization: each method against hand-computed values, exact inverses, padding/ROI, per-site pooling."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats as sps
from skimage.exposure import equalize_adapthist

from fairaudit.errors import InputError
from fairaudit.preprocess import (
    MAD_TO_SD,
    Normalizer,
    NormParams,
    SiteNormalizer,
    fit,
    inverse,
    normalize,
    transform,
)


def _image(seed: int = 0, shape=(64, 48), loc=800.0, scale=150.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (loc + scale * rng.standard_normal(shape)).astype(np.float64)


def test_percentile_maps_p1_p99_to_0_1() -> None:
    x = _image()
    y, p = normalize(x, "percentile")
    lo, hi = np.percentile(x, [1, 99])
    assert p.loc == pytest.approx(lo) and p.scale == pytest.approx(hi - lo)
    assert np.percentile(y, [1, 99]) == pytest.approx([0.0, 1.0], abs=1e-12)


def test_zscore_matches_scipy() -> None:
    x = _image(1)
    y, _ = normalize(x, "zscore")
    np.testing.assert_allclose(y, sps.zscore(x, axis=None), atol=1e-12)


def test_robust_zscore_uses_median_and_scaled_mad() -> None:
    x = _image(2)
    y, p = normalize(x, "robust_zscore")
    assert p.loc == pytest.approx(np.median(x))
    assert p.scale == pytest.approx(sps.median_abs_deviation(x, axis=None, scale=1.0) * MAD_TO_SD)
    assert p.scale == pytest.approx(sps.median_abs_deviation(x, axis=None, scale="normal"), rel=1e-4)
    np.testing.assert_allclose(y, (x - np.median(x)) / p.scale)


@pytest.mark.parametrize("method", ["percentile", "zscore", "robust_zscore"])
@pytest.mark.parametrize("log_transform", [False, True])
def test_round_trip_exact(method: str, log_transform: bool) -> None:
    x = _image(3) + 300.0
    y, p = normalize(x, method, log_transform=log_transform)
    assert y.dtype == np.float64
    back = inverse(y, NormParams.from_dict(p.to_dict()))  # through the sidecar form
    np.testing.assert_allclose(back, x, rtol=0, atol=1e-6)
    # values below the fitted log offset (an unseen image) still round-trip
    z = x - 2000.0
    np.testing.assert_allclose(inverse(transform(z, p), p), z, atol=1e-6)


def test_float32_output_round_trips_to_float32_precision() -> None:
    x = _image(4).astype(np.float32)
    y, p = normalize(x, "zscore")
    assert y.dtype == np.float32
    np.testing.assert_allclose(inverse(y, p), x, rtol=1e-6, atol=1e-6 * float(np.ptp(x)))


def test_log_transform_is_signed_log1p() -> None:
    x = np.array([[1.0, 2.0], [5.0, 11.0]])
    p = fit(x, "zscore", log_transform=True)
    assert p.log_offset == 1.0
    v = np.log1p(x - 1.0)
    np.testing.assert_allclose(transform(x, p), (v - v.mean()) / v.std())


def test_padding_and_roi_pixels_do_not_count() -> None:
    x = _image(5)
    pad = np.zeros(x.shape, bool)
    pad[:, :10] = True
    x_pad = x.copy()
    x_pad[pad] = -2000.0
    p = fit(x_pad, "zscore", padding_mask=pad)
    assert p.loc == pytest.approx(x[~pad].mean()) and p.scale == pytest.approx(x[~pad].std())
    roi = np.zeros(x.shape, bool)
    roi[20:40, 20:40] = True
    p2 = fit(x_pad, "percentile", padding_mask=pad, roi=roi)
    lo, hi = np.percentile(x[20:40, 20:40], [1, 99])
    assert (p2.loc, p2.scale) == pytest.approx((lo, hi - lo))
    # the transform still covers every pixel, padding included, and inverts there too
    np.testing.assert_allclose(inverse(transform(x_pad, p), p), x_pad, atol=1e-6)


def test_constant_image_gets_identity_scale() -> None:
    p = fit(np.full((8, 8), 7.0), "zscore")
    assert p.scale == 1.0 and "no spread" in p.note


def test_clahe_matches_skimage_2d_and_per_slice_3d() -> None:
    x = _image(6, (64, 64))
    y, p = normalize(x, "adaptive_histogram", clip_limit=0.02)
    unit = np.clip((x - x.min()) / np.ptp(x), 0, 1)
    np.testing.assert_allclose(y, equalize_adapthist(unit, clip_limit=0.02), atol=1e-6)
    assert not p.invertible
    with pytest.raises(ValueError):
        inverse(y, p)
    vol = np.stack([_image(7, (48, 48)), _image(8, (48, 48)) * 2])
    yv, _ = normalize(vol, "adaptive_histogram")
    unitv = (vol - vol.min()) / np.ptp(vol)
    np.testing.assert_allclose(yv[1], equalize_adapthist(unitv[1], clip_limit=0.01), atol=1e-6)


def test_bad_method_and_clip_limit() -> None:
    with pytest.raises(InputError, match="method="):
        Normalizer("minmax")
    with pytest.raises(InputError, match="clip_limit="):
        Normalizer("adaptive_histogram", clip_limit=0)


def test_site_pooling_uses_all_images_and_global_fallback(tmp_path) -> None:
    norm = Normalizer("zscore")
    site = SiteNormalizer(norm)
    a1, a2 = _image(10, loc=100), _image(11, loc=300)
    b1 = _image(12, loc=1000, scale=10)
    site.add("A", a1)
    site.add("A", a2)
    site.add("B", b1)
    site.finalize()
    pooled = np.concatenate([a1.ravel(), a2.ravel()])
    pa = site.params_for("A")
    assert (pa.loc, pa.scale) == pytest.approx((pooled.mean(), pooled.std()))
    assert pa.source == "site:A" and pa.n_pixels == pooled.size
    everything = np.concatenate([pooled, b1.ravel()])
    pu = site.params_for("C")
    # pooled values are stored as float32: statistics agree to float32 precision
    assert (pu.loc, pu.scale) == pytest.approx((everything.mean(), everything.std()), rel=1e-6)
    assert pu.source == "global (unseen site)"
    path = site.save(tmp_path / "sites.json")
    loaded = SiteNormalizer.load(path)
    np.testing.assert_allclose(loaded(a1, "A")[0], site(a1, "A")[0])
    np.testing.assert_allclose(loaded(a1, "zzz")[0], site(a1, "zzz")[0])


def test_site_pool_cap_subsamples_without_bias() -> None:
    site = SiteNormalizer(Normalizer("percentile"), pool_cap=5000, seed=1)
    imgs = [_image(20 + k, (50, 50), loc=100 * k) for k in range(4)]
    for im in imgs:
        site.add("S", im)
    site.finalize()
    lo, hi = np.percentile(np.concatenate([i.ravel() for i in imgs]), [1, 99])
    p = site.params_for("S")
    assert p.loc == pytest.approx(lo, abs=25) and p.loc + p.scale == pytest.approx(hi, abs=25)


def test_load_rejects_other_json(tmp_path) -> None:
    f = tmp_path / "x.json"
    f.write_text('{"a": 1}')
    with pytest.raises(InputError, match="not a saved"):
        SiteNormalizer.load(f)


def test_images_without_a_site_count_only_globally() -> None:
    site = SiteNormalizer(Normalizer("zscore"))
    a, b = _image(30, loc=100), _image(31, loc=500)
    site.add("A", a)
    site.add(None, b)
    site.finalize()
    assert set(site.sites) == {"A"}
    both = np.concatenate([a.ravel(), b.ravel()])
    p = site.params_for(None)
    assert p.source == "global (unseen site)"
    assert (p.loc, p.scale) == pytest.approx((both.mean(), both.std()), rel=1e-6)
