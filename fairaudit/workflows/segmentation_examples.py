"""Per-group example cases of a segmentation audit: a small image of ground-truth and
predicted contours, for the reports (docs/segmentation.md, "Example cases").

Why: a mean Dice does not show what a group's segmentations look like. Each group gets its
median-Dice case (the lower median: a real case, not an average), cut at the slice with the
most ground-truth foreground for volumes (along the axis of the coarsest spacing, the
acquisition's slice axis, else the first), drawn as contours only, no image intensities (an
image can carry burned-in text) and no id. The PNG (at most 160 pixels a side, base64) goes
into results.json so that `fairaudit report` redraws the same reports.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fairaudit._util.absent import ABSENT

#: The longest side of an example image, in pixels.
MAX_SIDE = 160
_BACKGROUND = (24, 24, 24)
_TRUTH_FILL = (30, 62, 80)
_TRUTH = (43, 131, 186)  # blue
_PRED = (253, 174, 97)  # orange
_BOTH = (255, 255, 255)


def median_case(values: np.ndarray) -> int | None:
    """Index of the median case of `values` (the lower one for an even count; NaN ignored)."""
    ok = np.flatnonzero(np.isfinite(values))
    if ok.size == 0:
        return None
    order = ok[np.argsort(values[ok], kind="stable")]
    return int(order[(order.size - 1) // 2])


def slice_axis(shape: Sequence[int], spacing: Sequence[float] | None) -> int:
    """The axis a volume is cut along: the coarsest spacing (the slices), else the first."""
    if spacing is None or len(set(float(s) for s in spacing)) == 1:
        return 0
    return int(np.argmax(np.asarray(spacing, dtype=float)))


def example_slice(
    truth: np.ndarray, pred: np.ndarray, spacing: Sequence[float] | None
) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """The 2-D masks to draw and their pixel spacing (rows, cols): the masks themselves, or
    for a volume the slice with the most ground-truth voxels (predicted when the truth is empty)."""
    truth, pred = np.asarray(truth, bool), np.asarray(pred, bool)
    sp = tuple(float(s) for s in spacing) if spacing is not None else (1.0,) * truth.ndim
    while truth.ndim > 2:
        axis = slice_axis(truth.shape, sp)
        others = tuple(a for a in range(truth.ndim) if a != axis)
        counts = truth.sum(axis=others) if truth.any() else pred.sum(axis=others)
        k = int(np.argmax(counts))
        truth, pred = np.take(truth, k, axis=axis), np.take(pred, k, axis=axis)
        sp = tuple(s for a, s in enumerate(sp) if a != axis)
    if truth.ndim == 1:
        truth, pred, sp = truth[None], pred[None], (1.0, *sp)
    return truth, pred, (sp[0], sp[1])


def _pool(mask: np.ndarray, factor: int) -> np.ndarray:
    """`mask` shrunk by `factor` per axis: a pixel is set when any it covers is."""
    if factor <= 1:
        return mask
    h, w = mask.shape
    padded = np.zeros((-(-h // factor) * factor, -(-w // factor) * factor), bool)
    padded[:h, :w] = mask
    return padded.reshape(padded.shape[0] // factor, factor, padded.shape[1] // factor, factor).any(
        axis=(1, 3)
    )


def _edges(mask: np.ndarray) -> np.ndarray:
    from fairaudit.stats._segmentation import surface

    return surface(mask)


def contour_png(truth: np.ndarray, pred: np.ndarray, spacing: tuple[float, float]) -> tuple[bytes, int, int]:
    """PNG bytes of the two masks' contours (truth blue over a dark fill, prediction orange,
    white where they coincide), with square pixels in mm; and its width and height."""
    from PIL import Image

    h_mm, w_mm = truth.shape[0] * spacing[0], truth.shape[1] * spacing[1]
    scale = MAX_SIDE / max(h_mm, w_mm)
    out_h, out_w = max(1, round(h_mm * scale)), max(1, round(w_mm * scale))
    # Shrink large masks before tracing, so contours stay visible (one pixel wide) once drawn.
    factor = max(1, int(max(truth.shape[0] / out_h, truth.shape[1] / out_w)))
    t, p = _pool(truth, factor), _pool(pred, factor)
    et, ep = _edges(t), _edges(p)
    rgb = np.empty((*t.shape, 3), np.uint8)
    rgb[:] = _BACKGROUND
    rgb[t] = _TRUTH_FILL
    rgb[et] = _TRUTH
    rgb[ep] = _PRED
    rgb[et & ep] = _BOTH
    image = Image.fromarray(rgb).resize((out_w, out_h), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue(), out_w, out_h


def group_examples(
    dice: np.ndarray,
    attributes: Mapping[str, np.ndarray],
    read: Any,
) -> dict[str, list[dict[str, Any]]]:
    """Per attribute, each group's median-Dice case drawn: {"group", "dice", "png" (base64),
    "width", "height", "slice": "the slice with the most foreground" | ""}. `read(i)` gives
    case i's (truth, pred, spacing), or None when it cannot be read again."""
    out: dict[str, list[dict[str, Any]]] = {}
    drawn: dict[int, dict[str, Any] | None] = {}
    for name, labels in attributes.items():
        labels = np.asarray(labels).astype(str)
        rows = []
        for group in sorted(set(labels.tolist()) - {ABSENT}):
            members = np.flatnonzero(labels == group)
            k = median_case(dice[members])
            if k is None:
                continue
            i = int(members[k])
            if i not in drawn:
                drawn[i] = _draw(read(i))
            if drawn[i] is not None:
                rows.append({"group": group, "dice": float(dice[i]), **drawn[i]})  # type: ignore[dict-item]
        out[name] = rows
    return out


def _draw(masks: tuple[np.ndarray, np.ndarray, Sequence[float] | None] | None) -> dict[str, Any] | None:
    if masks is None:
        return None
    truth, pred, spacing = masks
    volume = np.ndim(truth) > 2
    t2, p2, sp2 = example_slice(truth, pred, spacing)
    png, width, height = contour_png(t2, p2, sp2)
    return {
        "png": base64.b64encode(png).decode("ascii"),
        "width": width,
        "height": height,
        "slice": "the slice with the most foreground" if volume else "",
    }
