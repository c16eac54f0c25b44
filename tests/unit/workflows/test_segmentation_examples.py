"""Example cases (fairaudit.workflows.segmentation_examples): the median case, the slice with
the most foreground along the coarsest axis, the contour colours, checked by hand."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from fairaudit.workflows.segmentation_examples import (
    MAX_SIDE,
    contour_png,
    example_slice,
    group_examples,
    median_case,
    slice_axis,
)


def test_median_case_is_the_lower_median_ignoring_nan() -> None:
    assert median_case(np.array([0.9, 0.1, np.nan, 0.5, 0.7])) == 3  # sorted 0.1, 0.5, 0.7, 0.9 -> 0.5
    assert median_case(np.array([0.2, 0.8, 0.4])) == 2
    assert median_case(np.array([np.nan])) is None


def test_volume_cut_at_the_slice_with_most_truth_along_the_coarsest_axis() -> None:
    truth = np.zeros((6, 10, 12), bool)
    truth[2, 2:8, 2:9] = True  # 42 voxels in slice 2
    truth[4, 3:5, 3:5] = True  # 4 in slice 4
    pred = np.roll(truth, 1, axis=2)
    assert slice_axis(truth.shape, (3.0, 0.8, 0.8)) == 0 and slice_axis(truth.shape, (1, 1, 1)) == 0
    t2, p2, sp = example_slice(truth, pred, (3.0, 0.8, 0.8))
    assert np.array_equal(t2, truth[2]) and np.array_equal(p2, pred[2]) and sp == (0.8, 0.8)
    # The coarsest axis last (a NIfTI in RAS+): cut along it.
    t2, _, sp = example_slice(np.moveaxis(truth, 0, 2), np.moveaxis(pred, 0, 2), (0.8, 0.8, 3.0))
    assert np.array_equal(t2, truth[2]) and sp == (0.8, 0.8)


def test_contour_colours_and_square_millimetres() -> None:
    truth = np.zeros((20, 20), bool)
    truth[5:15, 5:15] = True
    pred = np.zeros_like(truth)
    pred[5:15, 8:18] = True
    png, w, h = contour_png(truth, pred, (2.0, 1.0))  # rows 2 mm apart: twice as tall as wide
    assert (w, h) == (MAX_SIDE // 2, MAX_SIDE)
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    small = rgb[::8, ::4]  # back to one value per mask pixel (nearest-neighbour upscaling)
    assert tuple(small[5, 8]) == (255, 255, 255)  # the top edge, on both contours
    assert tuple(small[10, 5]) == (43, 131, 186)  # truth's left edge only
    assert tuple(small[10, 17]) == (253, 174, 97)  # prediction's right edge only
    assert tuple(small[0, 0]) == (24, 24, 24)


def test_group_examples_per_attribute() -> None:
    masks = {i: (np.eye(8, dtype=bool), np.eye(8, dtype=bool), None) for i in range(4)}
    dice = np.array([0.9, 0.5, 0.7, np.nan])
    out = group_examples(dice, {"sex": np.array(["F", "F", "M", "M"])}, masks.get)
    assert [(e["group"], e["dice"]) for e in out["sex"]] == [
        ("F", pytest.approx(0.5)),
        ("M", pytest.approx(0.7)),
    ]
    assert base64.b64decode(out["sex"][0]["png"]).startswith(b"\x89PNG")
