"""Per-case segmentation metrics against MONAI and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from fairaudit.stats._segmentation import (
    REASON_BOTH_EMPTY,
    REASON_PRED_EMPTY,
    REASON_TRUTH_EMPTY,
    case_metrics,
    normalized_surface_dice,
    surface,
    surface_points,
)

torch = pytest.importorskip("torch")
monai_metrics = pytest.importorskip("monai.metrics")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")


def _tensors(truth: np.ndarray, pred: np.ndarray):
    return (
        torch.from_numpy(truth[None, None].astype(np.float32)),
        torch.from_numpy(pred[None, None].astype(np.float32)),
    )


def _monai(truth: np.ndarray, pred: np.ndarray, spacing) -> dict[str, float]:
    y, yp = _tensors(truth, pred)
    hd = monai_metrics.compute_hausdorff_distance(
        yp, y, include_background=True, percentile=95, spacing=spacing
    )
    asd = monai_metrics.compute_average_surface_distance(
        yp, y, include_background=True, symmetric=True, spacing=spacing
    )
    dice = monai_metrics.DiceMetric(include_background=True, reduction="none")(yp, y)
    return {"hd95": float(hd.item()), "assd": float(asd.item()), "dice": float(dice.item())}


def _random_masks(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """A blob and a shifted, eroded or dilated copy (with noise), possibly touching the border."""
    grids = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    centre = [rng.uniform(0.2, 0.8) * s for s in shape]
    radii = [rng.uniform(0.15, 0.45) * s for s in shape]
    r2 = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii, strict=True))
    truth = r2 <= 1.0
    shift = tuple(int(v) for v in rng.integers(-4, 5, size=len(shape)))
    pred = np.roll(truth, shift, axis=tuple(range(len(shape))))
    op = rng.integers(0, 3)
    if op == 1:
        pred = ndimage.binary_erosion(pred, iterations=2)
    elif op == 2:
        pred = ndimage.binary_dilation(pred, iterations=2)
    pred = pred ^ (rng.random(shape) < 0.01)
    return truth, pred


@pytest.mark.parametrize("seed", range(12))
def test_matches_monai_2d_random(seed):
    rng = np.random.default_rng(seed)
    truth, pred = _random_masks(rng, (int(rng.integers(20, 60)), int(rng.integers(20, 60))))
    spacing = [float(rng.uniform(0.2, 3.0)), float(rng.uniform(0.2, 3.0))] if seed % 2 else None
    _assert_like_monai(truth, pred, spacing)


@pytest.mark.parametrize("seed", range(4))
def test_matches_monai_3d_anisotropic(seed):
    rng = np.random.default_rng(100 + seed)
    truth, pred = _random_masks(rng, (12, 24, 20))
    spacing = [2.5, 0.7, 0.9]
    _assert_like_monai(truth, pred, spacing)


def test_hand_computed_squares_anisotropic():
    # Truth: rows 2..5, cols 2..5 (4x4). Prediction: the same square shifted 2 columns right.
    truth = np.zeros((10, 12), bool)
    truth[2:6, 2:6] = True
    pred = np.roll(truth, 2, axis=1)
    m = case_metrics(truth, pred, spacing=(1.0, 0.5))
    # Overlap: 4 rows x 2 cols = 8 of 16 each.
    assert m.values["dice"] == pytest.approx(2 * 8 / 32)
    assert m.values["iou"] == pytest.approx(8 / 24)
    assert m.values["volume_error"] == 0.0
    # Surface of each square: its 12 border pixels. Pred -> truth: pixels in pred columns
    # 4,5 lie on truth's surface or 1 column (0.5 mm) away... computed by brute force below.
    st, sp = np.argwhere(surface(truth)), np.argwhere(surface(pred))
    scale = np.array([1.0, 0.5])
    d = np.sqrt((((sp[:, None, :] - st[None, :, :]) * scale) ** 2).sum(-1))
    d_pt, d_tp = d.min(axis=1), d.min(axis=0)
    assert m.values["hd95"] == pytest.approx(max(np.percentile(d_pt, 95), np.percentile(d_tp, 95)))
    assert m.values["assd"] == pytest.approx(np.concatenate([d_pt, d_tp]).mean())
    # Shifting by 2 columns of 0.5 mm: the farthest surface pixel is 1 mm away.
    assert max(d_pt.max(), d_tp.max()) == pytest.approx(1.0)


def test_identical_masks_and_single_pixel():
    truth = np.zeros((8, 8), bool)
    truth[3, 4] = True
    m = case_metrics(truth, truth.copy(), spacing=(0.5, 0.5))
    assert m.values == {"dice": 1.0, "iou": 1.0, "hd95": 0.0, "assd": 0.0, "volume_error": 0.0, "nsd": 1.0}
    pred = np.zeros_like(truth)
    pred[3, 7] = True  # 3 columns away
    m = case_metrics(truth, pred, spacing=(2.0, 0.5))
    assert m.values["dice"] == 0.0 and m.values["hd95"] == pytest.approx(1.5)
    assert m.values["assd"] == pytest.approx(1.5)


def test_volume_error_is_relative_and_signed():
    truth = np.zeros((10, 10), bool)
    truth[:, :5] = True  # 50 pixels
    pred = np.zeros_like(truth)
    pred[:, :4] = True  # 40 pixels
    m = case_metrics(truth, pred, spacing=(3.0, 0.1))
    assert m.values["volume_error"] == pytest.approx(-0.2)
    assert m.truth_voxels == 50 and m.pred_voxels == 40


def test_empty_masks():
    empty = np.zeros((6, 6), bool)
    full = np.zeros((6, 6), bool)
    full[1:3, 1:3] = True
    both = case_metrics(empty, empty)
    assert both.values["dice"] == 1.0 and both.values["iou"] == 1.0
    assert math.isnan(both.values["hd95"]) and both.reasons["hd95"] == REASON_BOTH_EMPTY
    assert math.isnan(both.values["volume_error"])
    miss = case_metrics(full, empty)
    assert miss.values["dice"] == 0.0 and miss.values["iou"] == 0.0
    assert miss.reasons["assd"] == REASON_PRED_EMPTY and miss.values["volume_error"] == -1.0
    extra = case_metrics(empty, full)
    assert extra.values["dice"] == 0.0 and extra.reasons["hd95"] == REASON_TRUTH_EMPTY
    assert REASON_TRUTH_EMPTY in extra.reasons["volume_error"]
    # MONAI agrees on dice for the non-empty-vs-empty case.
    assert _monai(full, empty, None)["dice"] == pytest.approx(0.0)


def test_bad_shapes_and_spacing():
    a = np.zeros((4, 4), bool)
    with pytest.raises(ValueError, match="shapes differ"):
        case_metrics(a, np.zeros((4, 5), bool))
    with pytest.raises(ValueError, match="spacing"):
        case_metrics(a, a, spacing=(1.0,))
    with pytest.raises(ValueError, match="spacing"):
        case_metrics(a, a, spacing=(1.0, 0.0))


def test_dice_and_its_batch_form_by_hand_and_against_monai():
    """`dice` (augment-check's) and `dice_batch` (training's) equal case_metrics' dice and MONAI's."""
    from fairaudit.stats._segmentation import dice, dice_batch

    truth = np.zeros((4, 6, 6), bool)
    pred = np.zeros((4, 6, 6), bool)
    pred[0, :2, :3] = True  # 6 px
    truth[0, :3, :2] = True  # 6 px, overlap 2x2 = 4
    truth[2, 0, 0] = True  # case 1 empty vs empty; case 2 empty prediction vs 1 px
    truth[3], pred[3] = _random_masks(np.random.default_rng(3), (6, 6))
    batch = dice_batch(truth, pred)
    np.testing.assert_allclose(batch[:3], [2 * 4 / 12, 1.0, 0.0])
    for k in range(4):
        assert dice(truth[k], pred[k]) == batch[k] == case_metrics(truth[k], pred[k]).values["dice"]
    for k in (0, 3):  # MONAI says NaN for empty vs empty, so only the cases with a mask
        assert batch[k] == pytest.approx(_monai(truth[k], pred[k], None)["dice"], abs=1e-6)
    with pytest.raises(ValueError):
        dice(truth[0], pred[0, :3])
    with pytest.raises(ValueError):
        dice_batch(truth, pred[:2])


# ----------------------------------------------------------------------------- full size, NSD


def _monai_nsd(truth: np.ndarray, pred: np.ndarray, spacing, tolerance: float) -> float:
    y, yp = _tensors(truth, pred)
    nsd = monai_metrics.compute_surface_dice(yp, y, [tolerance], include_background=True, spacing=spacing)
    return float(nsd.item())


def _edt_reference(truth: np.ndarray, pred: np.ndarray, spacing) -> tuple[np.ndarray, np.ndarray]:
    """The former method: erosion and exact distance transforms over the union's bounding box."""
    idx = np.nonzero(truth | pred)
    box = tuple(slice(max(int(i.min()) - 1, 0), int(i.max()) + 2) for i in idx)
    t, p = truth[box], pred[box]
    st = t & ~ndimage.binary_erosion(t, border_value=0)
    sp = p & ~ndimage.binary_erosion(p, border_value=0)
    sampling = spacing or [1.0] * truth.ndim
    d_pt = ndimage.distance_transform_edt(~st, sampling=sampling)[sp]
    d_tp = ndimage.distance_transform_edt(~sp, sampling=sampling)[st]
    return d_pt, d_tp


def _lungs(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two lung-like ellipses filling most of a radiograph; the prediction shifted, eroded,
    with a ragged edge."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    truth = np.zeros((size, size), bool)
    for cx in (0.3, 0.7):
        truth |= ((xx - cx) / 0.17) ** 2 + ((yy - 0.5) / 0.36) ** 2 <= 1
    pred = np.roll(truth, (size // 100, -size // 150), axis=(0, 1))
    pred = ndimage.binary_erosion(pred, iterations=max(1, size // 200))
    edge = pred ^ ndimage.binary_dilation(pred, iterations=2)
    return truth, pred | (edge & (rng.random(pred.shape) < 0.3))


def _monai_hd95_double(truth: np.ndarray, pred: np.ndarray, spacing) -> float:
    """hd95 from MONAI's surface distances, with the percentile in double precision:
    compute_hausdorff_distance interpolates in single precision (torch.quantile on
    float32), off by up to about 2e-6 relative with a few hundred distances."""
    from monai.metrics.utils import get_edge_surface_distance

    y, yp = _tensors(truth, pred)
    _, dists, _ = get_edge_surface_distance(yp[0, 0], y[0, 0], spacing=spacing, symmetric=True)
    return max(float(np.percentile(d.numpy().astype(np.float64), 95)) for d in dists)


def _assert_like_monai(truth, pred, spacing, tolerances=(1.0, 2.0)) -> None:
    ours = case_metrics(truth, pred, spacing)
    ref = _monai(truth, pred, spacing)
    for m in ("dice", "hd95", "assd"):
        assert ours.values[m] == pytest.approx(ref[m], rel=5e-6, abs=1e-6), m
    for m in ("dice", "assd"):
        assert ours.values[m] == pytest.approx(ref[m], rel=1e-6, abs=1e-6), m
    hd95 = _monai_hd95_double(truth, pred, spacing)
    assert ours.values["hd95"] == pytest.approx(hd95, rel=1e-6, abs=1e-6)
    for tol in tolerances:
        nsd = normalized_surface_dice(truth, pred, spacing, tol)
        assert nsd == pytest.approx(_monai_nsd(truth, pred, spacing, tol), rel=1e-6, abs=1e-6), tol
        # The audit's nsd (case_metrics, distances shared with hd95 and assd) is the same value.
        assert case_metrics(truth, pred, spacing, nsd_tolerance=tol).values["nsd"] == nsd
    assert ours.values["nsd"] == pytest.approx(_monai_nsd(truth, pred, spacing, 1.0), rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("spacing", [None, [0.139, 0.143], [0.2, 0.2]])
def test_full_size_1024_lungs_match_monai(spacing):
    truth, pred = _lungs(1024)
    _assert_like_monai(truth, pred, spacing)


@pytest.mark.parametrize("seed", range(40))
def test_equal_to_the_distance_transform_method_bit_for_bit(seed):
    """Surface points and nearest neighbours give the very values (same order, same bits)
    as the exact distance transform of the crop, so results.json does not change."""
    rng = np.random.default_rng(500 + seed)
    nd = 3 if seed % 4 == 0 else 2
    shape = tuple(int(v) for v in rng.integers(4, 70 if nd == 2 else 24, size=nd))
    truth, pred = _random_masks(rng, shape)
    spacing = [None, [0.2] * nd, list(rng.uniform(0.1, 3.0, nd))][seed % 3]
    ours = case_metrics(truth, pred, spacing)
    if not truth.any() or not pred.any():
        assert math.isnan(ours.values["hd95"])
        return
    d_pt, d_tp = _edt_reference(truth, pred, spacing)
    assert ours.values["hd95"] == max(np.percentile(d_pt, 95), np.percentile(d_tp, 95))
    assert ours.values["assd"] == np.concatenate([d_pt, d_tp]).mean()


def test_surface_is_the_face_connected_erosion_border():
    rng = np.random.default_rng(7)
    for shape in [(1,), (9,), (1, 1), (5, 7), (30, 40), (6, 9, 8)]:
        for _ in range(5):
            mask = rng.random(shape) < rng.uniform(0.2, 0.9)
            expected = mask & ~ndimage.binary_erosion(mask, border_value=0)
            assert np.array_equal(surface(mask), expected)
            assert np.array_equal(surface_points(mask), np.argwhere(expected))
    assert surface_points(np.zeros((3, 4), bool)).shape == (0, 2)


@pytest.mark.parametrize("seed", range(4))
def test_3d_anisotropic_with_nsd_match_monai(seed):
    rng = np.random.default_rng(300 + seed)
    truth, pred = _random_masks(rng, (14, 30, 26))
    _assert_like_monai(truth, pred, [2.5, 0.7, 0.9], tolerances=(0.0, 1.0, 2.5))


@pytest.mark.parametrize("seed", range(6))
def test_2d_nsd_anisotropic_matches_monai(seed):
    rng = np.random.default_rng(400 + seed)
    truth, pred = _random_masks(rng, (int(rng.integers(20, 80)), int(rng.integers(20, 80))))
    spacing = [float(rng.uniform(0.2, 3.0)), float(rng.uniform(0.2, 3.0))]
    _assert_like_monai(truth, pred, spacing, tolerances=(0.0, 0.5, 1.5, 4.0))


def test_one_pixel_and_border_masks_match_monai():
    one_t = np.zeros((16, 16), bool)
    one_t[0, 0] = True  # a single pixel in the corner
    one_p = np.zeros_like(one_t)
    one_p[5, 9] = True
    _assert_like_monai(one_t, one_p, [0.5, 1.5])
    _assert_like_monai(one_t, one_t.copy(), None)
    # Masks that touch (or fill) the image border: outside the image is background.
    edge_t = np.zeros((20, 24), bool)
    edge_t[:, :9] = True
    edge_p = np.zeros_like(edge_t)
    edge_p[3:, :12] = True
    _assert_like_monai(edge_t, edge_p, [0.8, 0.3])
    full = np.ones((12, 10), bool)
    _assert_like_monai(full, edge_t[:12, :10], [1.0, 2.0])
    vol = np.zeros((6, 8, 8), bool)
    vol[:, :3, :] = True
    _assert_like_monai(vol, np.roll(vol, 2, axis=1), [3.0, 0.5, 0.5])


def test_nsd_at_the_tolerance_counts_as_within():
    """A 3-4-5 offset at 0.2 mm is 1 mm exactly, but 1.0000000000000002 in double
    precision: like MONAI, NSD counts it within a 1 mm tolerance."""
    truth = np.zeros((12, 12), bool)
    truth[2, 2] = True
    pred = np.zeros_like(truth)
    pred[5, 6] = True
    assert normalized_surface_dice(truth, pred, [0.2, 0.2], 1.0) == 1.0
    assert _monai_nsd(truth, pred, [0.2, 0.2], 1.0) == 1.0
    assert normalized_surface_dice(truth, pred, [0.2, 0.2], 0.99) == 0.0


def test_nsd_empty_masks_and_bad_tolerance():
    empty = np.zeros((6, 6), bool)
    full = np.zeros((6, 6), bool)
    full[1:3, 1:3] = True
    assert math.isnan(normalized_surface_dice(empty, empty, None, 1.0))
    assert math.isnan(_monai_nsd(empty, empty, None, 1.0))
    assert normalized_surface_dice(full, empty, None, 1.0) == 0.0 == _monai_nsd(full, empty, None, 1.0)
    assert (
        normalized_surface_dice(empty, full, [1.0, 2.0], 1.0)
        == 0.0
        == _monai_nsd(empty, full, [1.0, 2.0], 1.0)
    )
    assert normalized_surface_dice(full, full, None, 0.0) == 1.0
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="tolerance"):
            normalized_surface_dice(full, full, None, bad)
    with pytest.raises(ValueError, match="spacing"):
        normalized_surface_dice(full, full, [1.0], 1.0)


def test_nsd_by_hand():
    # Truth: a 4x4 square (12 surface pixels); prediction: the same square shifted one
    # column (1.5 mm with this spacing) right. Within 1 mm: only surface pixels that lie on
    # the other surface.
    truth = np.zeros((10, 12), bool)
    truth[2:6, 2:6] = True
    pred = np.roll(truth, 1, axis=1)
    st, sp = np.argwhere(surface(truth)), np.argwhere(surface(pred))
    scale = np.array([1.0, 1.5])
    d = np.sqrt((((sp[:, None, :] - st[None, :, :]) * scale) ** 2).sum(-1))
    for tol in (0.0, 1.0, 1.5, 2.0):
        expected = ((d.min(axis=1) <= tol).sum() + (d.min(axis=0) <= tol).sum()) / (len(sp) + len(st))
        assert normalized_surface_dice(truth, pred, [1.0, 1.5], tol) == pytest.approx(expected)


def _ellipsoid_volumes(seed: int, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """An organ-like ellipsoid and a prediction that is shifted a slice, dilated on one side
    and ragged at the boundary: a 3-D case with surfaces thousands of voxels large."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    truth = (zz / 0.6) ** 2 + (yy / 0.7) ** 2 + (xx / 0.5) ** 2 <= 1
    pred = np.roll(truth, 1, axis=0)
    pred |= ndimage.binary_dilation(pred, iterations=2) & (xx > 0.2)
    edge = pred ^ ndimage.binary_erosion(pred)
    return truth, pred & ~(edge & (rng.random(shape) < 0.3))


@pytest.mark.parametrize(
    ("shape", "spacing"), [((24, 48, 40), [3.0, 0.8, 0.7]), ((20, 36, 36), [0.5, 1.25, 2.0])]
)
def test_3d_volumes_with_anisotropic_spacing_match_monai_compute_functions(shape, spacing):
    """dice, hd95, assd and nsd of case_metrics on 3-D volumes equal MONAI's compute_dice,
    compute_hausdorff_distance(percentile=95), compute_average_surface_distance(symmetric)
    and compute_surface_dice to 1e-6 (hd95: MONAI's percentile in double precision, see
    _monai_hd95_double); nsd at the default tolerance (1 mm) and at 2.5 mm."""
    truth, pred = _ellipsoid_volumes(11, shape)
    y, yp = _tensors(truth, pred)
    ours = case_metrics(truth, pred, spacing)
    assert ours.values["dice"] == pytest.approx(float(monai_metrics.compute_dice(yp, y).item()), abs=1e-6)
    assert ours.values["assd"] == pytest.approx(
        float(monai_metrics.compute_average_surface_distance(yp, y, symmetric=True, spacing=spacing).item()),
        rel=1e-6,
    )
    assert ours.values["hd95"] == pytest.approx(_monai_hd95_double(truth, pred, spacing), rel=1e-6)
    assert ours.values["hd95"] == pytest.approx(
        float(monai_metrics.compute_hausdorff_distance(yp, y, percentile=95, spacing=spacing).item()),
        rel=5e-6,
    )
    assert ours.values["nsd"] == pytest.approx(_monai_nsd(truth, pred, spacing, 1.0), abs=1e-6)
    wide = case_metrics(truth, pred, spacing, nsd_tolerance=2.5).values["nsd"]
    assert wide == pytest.approx(_monai_nsd(truth, pred, spacing, 2.5), abs=1e-6)
    assert 0 < ours.values["nsd"] < wide < 1


def test_nsd_in_case_metrics_empty_conventions_and_bad_tolerance():
    """As MONAI's compute_surface_dice: both empty -> undefined (NaN, with the reason), one
    empty -> 0; a negative tolerance is refused."""
    empty = np.zeros((4, 6, 6), bool)
    full = np.zeros((4, 6, 6), bool)
    full[1:3, 1:4, 2:5] = True
    both = case_metrics(empty, empty, [2.0, 1.0, 1.0])
    assert math.isnan(both.values["nsd"]) and both.reasons["nsd"] == REASON_BOTH_EMPTY
    assert case_metrics(full, empty).values["nsd"] == 0.0 == _monai_nsd(full, empty, None, 1.0)
    assert case_metrics(empty, full).values["nsd"] == 0.0 == _monai_nsd(empty, full, None, 1.0)
    with pytest.raises(ValueError, match="tolerance"):
        case_metrics(full, full, nsd_tolerance=-1.0)
