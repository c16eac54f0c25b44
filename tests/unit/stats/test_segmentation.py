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
    surface,
)

torch = pytest.importorskip("torch")
monai_metrics = pytest.importorskip("monai.metrics")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")


def _monai(truth: np.ndarray, pred: np.ndarray, spacing) -> dict[str, float]:
    y = torch.from_numpy(truth[None, None].astype(np.float32))
    yp = torch.from_numpy(pred[None, None].astype(np.float32))
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
    ours = case_metrics(truth, pred, spacing)
    ref = _monai(truth, pred, spacing)
    for m in ("dice", "hd95", "assd"):
        assert ours.values[m] == pytest.approx(ref[m], rel=1e-5, abs=1e-5), m


@pytest.mark.parametrize("seed", range(4))
def test_matches_monai_3d_anisotropic(seed):
    rng = np.random.default_rng(100 + seed)
    truth, pred = _random_masks(rng, (12, 24, 20))
    spacing = [2.5, 0.7, 0.9]
    ours = case_metrics(truth, pred, spacing)
    ref = _monai(truth, pred, spacing)
    for m in ("dice", "hd95", "assd"):
        assert ours.values[m] == pytest.approx(ref[m], rel=1e-5, abs=1e-5), m


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
    assert m.values == {"dice": 1.0, "iou": 1.0, "hd95": 0.0, "assd": 0.0, "volume_error": 0.0}
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
