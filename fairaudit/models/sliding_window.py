"""Sliding-window inference over a volume, as MONAI's `sliding_window_inference` does it.

Why our own: MONAI is a bench and test dependency, not a runtime one, and a model run
needs only this much of it. The windows, their order, the padding of a volume smaller
than the window and the importance map (constant, or Gaussian with sigma = 0.125 of the
window side, clamped below at its smallest positive value or 1e-3) are MONAI's
(monai.data.utils.dense_patch_slices, compute_importance_map); tests/unit/models/
test_sliding_window.py checks the output against MONAI's on the same model to 1e-5.

The model is any `forward(batch) -> batch` on numpy arrays (N, C, *roi) -> (N, K, *roi)
that runs wherever the model lives (CPU or CUDA: the blending is done here in numpy, so the
result does not depend on the device beyond the model's own arithmetic). Memory: the
output (K, *volume) and one weight map (*volume) in float32, plus one batch of windows;
windows are copied into a reused buffer, never the volume (docs/models.md, "3D models and volumes").
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np

BLEND_MODES = ("constant", "gaussian")
DEFAULT_SIGMA_SCALE = 0.125


def scan_interval(
    image_size: Sequence[int], roi_size: Sequence[int], overlap: Sequence[float]
) -> tuple[int, ...]:
    """The step between windows per axis: int(roi * (1 - overlap)), at least 1; the whole
    axis when the window spans it (monai.inferers.utils._get_scan_interval)."""
    out = []
    for size, roi, o in zip(image_size, roi_size, overlap, strict=True):
        if roi == size:
            out.append(int(roi))
        else:
            out.append(max(int(roi * (1 - o)), 1))
    return tuple(out)


def window_starts(
    image_size: Sequence[int], roi_size: Sequence[int], overlap: Sequence[float]
) -> list[tuple[int, ...]]:
    """The first corner of every window, in MONAI's order (the last axis fastest); the
    last window on each axis is moved back to end at the border (dense_patch_slices).
    `image_size` is at least `roi_size` on every axis (pad first)."""
    steps = scan_interval(image_size, roi_size, overlap)
    per_axis = []
    for size, roi, step in zip(image_size, roi_size, steps, strict=True):
        num = int(math.ceil(float(size) / step))
        last = next((d for d in range(num) if d * step + roi >= size), None)
        count = last + 1 if last is not None else 1
        per_axis.append([i * step - max(i * step + roi - size, 0) for i in range(count)])
    return [tuple(int(s) for s in starts) for starts in itertools.product(*per_axis)]


def importance_map(
    roi_size: Sequence[int], mode: str = "gaussian", sigma_scale: float = DEFAULT_SIGMA_SCALE
) -> np.ndarray:
    """The weight of each voxel of a window's output, float32 (monai compute_importance_map):
    1 everywhere ("constant"), or a separable Gaussian centred on the window with sigma =
    sigma_scale x side, clamped below at max(its minimum, 1e-3) so that no voxel weighs 0."""
    if mode == "constant":
        return np.ones(tuple(int(r) for r in roi_size), dtype=np.float32)
    if mode != "gaussian":
        raise ValueError(f"blending must be one of {', '.join(BLEND_MODES)}, not {mode!r}")
    weights: np.ndarray | None = None
    for side in roi_size:
        sigma = float(side) * float(sigma_scale)
        x = np.arange(-(side - 1) / 2.0, (side - 1) / 2.0 + 1, dtype=np.float32)
        g = np.exp(x**2 / np.float32(-2 * sigma**2)).astype(np.float32)
        weights = g if weights is None else weights[..., None] * g
    assert weights is not None
    floor = max(float(weights.min()), 1e-3)
    return np.maximum(weights, np.float32(floor)).astype(np.float32)


def pad_widths(image_size: Sequence[int], roi_size: Sequence[int]) -> list[tuple[int, int]]:
    """Per axis (before, after): the padding that makes a volume smaller than the window as
    large as it, half before (rounded down) and the rest after, as MONAI pads."""
    out = []
    for size, roi in zip(image_size, roi_size, strict=True):
        diff = max(int(roi) - int(size), 0)
        out.append((diff // 2, diff - diff // 2))
    return out


def sliding_window_inference(
    volume: np.ndarray,
    forward: Callable[[np.ndarray], np.ndarray],
    roi_size: Sequence[int],
    *,
    overlap: float | Sequence[float] = 0.25,
    mode: str = "gaussian",
    sw_batch_size: int = 4,
    sigma_scale: float = DEFAULT_SIGMA_SCALE,
    cval: float = 0.0,
) -> np.ndarray:
    """The blended model output (K, *spatial) float32 for `volume` (C, *spatial).

    Windows of `roi_size` at MONAI's positions run through `forward` `sw_batch_size` at a
    time; each window's output is weighted by the importance map, summed, and divided by
    the summed weights. A volume smaller than the window is padded with `cval` (as MONAI's
    constant padding) and the output cropped back.
    """
    volume = np.asarray(volume, dtype=np.float32)
    dims = volume.ndim - 1
    roi = tuple(int(r) for r in roi_size)
    if len(roi) != dims:
        raise ValueError(f"roi_size {list(roi)} has {len(roi)} axes but the volume has {dims} spatial axes")
    if any(r < 1 for r in roi):
        raise ValueError(f"roi_size {list(roi)} must be positive on every axis")
    overlaps = tuple(float(o) for o in overlap) if isinstance(overlap, Sequence) else (float(overlap),) * dims
    if len(overlaps) != dims or any(not 0 <= o < 1 for o in overlaps):
        raise ValueError(f"overlap must be >= 0 and < 1 (one value or one per axis), not {overlap}")
    if sw_batch_size < 1:
        raise ValueError(f"sw_batch_size must be at least 1, not {sw_batch_size}")
    original = volume.shape[1:]
    pads = pad_widths(original, roi)
    if any(b or a for b, a in pads):
        volume = np.pad(volume, [(0, 0), *pads], mode="constant", constant_values=cval)
    size = volume.shape[1:]
    starts = window_starts(size, roi, overlaps)
    weight = importance_map(roi, mode, sigma_scale)
    count = np.zeros(size, dtype=np.float32)
    for s in starts:
        count[_window(s, roi)] += weight
    out: np.ndarray | None = None
    buffer = np.empty((min(sw_batch_size, len(starts)), volume.shape[0], *roi), dtype=np.float32)
    for first in range(0, len(starts), sw_batch_size):
        group = starts[first : first + sw_batch_size]
        batch = buffer[: len(group)]
        for i, s in enumerate(group):
            batch[i] = volume[(slice(None), *_window(s, roi))]
        pred = np.asarray(forward(batch), dtype=np.float32)
        if pred.ndim != dims + 2 or pred.shape[0] != len(group) or tuple(pred.shape[2:]) != roi:
            raise ValueError(
                f"the model returned shape {tuple(pred.shape)} for windows of shape {tuple(batch.shape)}: "
                "a sliding-window model must return (N, K, *roi_size)"
            )
        if out is None:
            out = np.zeros((pred.shape[1], *size), dtype=np.float32)
        for i, s in enumerate(group):
            out[(slice(None), *_window(s, roi))] += pred[i] * weight
    assert out is not None
    out /= count
    if any(b or a for b, a in pads):
        out = out[(slice(None), *(slice(b, b + n) for (b, _), n in zip(pads, original, strict=True)))]
        out = np.ascontiguousarray(out)
    return out


def _window(start: Sequence[int], roi: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(s, s + r) for s, r in zip(start, roi, strict=True))
