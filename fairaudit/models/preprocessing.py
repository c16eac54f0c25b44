"""Image and mask preprocessing shared by training and inference (numpy only, no torch).

The spec dict is stored in model.json under "preprocessing", so a bundle carries exactly
what its weights were trained on and inference can never drift from it:

    {"input_size": [64, 64],          # (H', W') the network sees
     "resize": "stretch",             # "stretch" (each axis to size) | "letterbox" (pad to square first)
     "intensity": "percentile",       # "percentile" | "minmax" | "zscore" | "none"
     "percentiles": [1.0, 99.0],      # for "percentile": clip to these, scale to [0, 1]
     "channels": 1,                   # the single grey channel repeated C times
     "highpass_sigma": None}          # a number: append one high-pass channel (below)

With "highpass_sigma" set, one more channel is appended after the grey ones:
(x - gaussian_filter(x, sigma)) * highpass_gain on the network grid, the local contrast that
makes small focal findings (a lesion among ribs) stand out from the broad anatomy; a
classifier learns from it in a few epochs where it plateaus for many on the grey image alone.

Images arrive as fairaudit.io.dicom decodes them (float32 (H, W), MONOCHROME1 already
mirrored). Spacing is accepted for a future physical-size resampling and recorded only.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

DEFAULT_SPEC: dict[str, Any] = {
    "input_size": [64, 64],
    "resize": "stretch",
    "intensity": "percentile",
    "percentiles": [1.0, 99.0],
    "channels": 1,
    "highpass_sigma": None,
    "highpass_gain": 10.0,
}
RESIZE_MODES = ("stretch", "letterbox")
INTENSITY_MODES = ("percentile", "minmax", "zscore", "none")


def make_spec(**overrides: Any) -> dict[str, Any]:
    """A complete spec: DEFAULT_SPEC updated with `overrides`, validated."""
    spec = {**DEFAULT_SPEC, **overrides}
    return _validated(spec)


#: The largest network input side a spec may ask for: a model's input is a few hundred
#: pixels a side, and a bundle from elsewhere must not make inference allocate gigabytes.
MAX_INPUT_SIDE = 8192


def _whole(value: Any) -> int | None:
    """`value` as an int when it is a whole number (64 or 64.0; not True, "64" or 64.5)."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        return None
    if not math.isfinite(float(value)) or not float(value).is_integer():
        return None
    return int(value)


def _real(value: Any) -> bool:
    """Whether `value` is a finite number (not a bool)."""
    return (
        not isinstance(value, bool | np.bool_)
        and isinstance(value, numbers.Real)
        and math.isfinite(float(value))
    )


def _validated(spec: dict[str, Any]) -> dict[str, Any]:
    """`spec` completed from DEFAULT_SPEC and checked; ValueError naming the key otherwise
    (a bundle's model.json comes from elsewhere: a wrong value must be a message, not a
    crash in the middle of inference)."""
    if spec is not None and not isinstance(spec, dict):
        raise ValueError(f"preprocessing must be an object of settings, not {type(spec).__name__}.")
    full = {**DEFAULT_SPEC, **(spec or {})}
    size = full["input_size"]
    if _whole(size) is not None:
        size = [size, size]
    sides = [_whole(s) for s in size] if isinstance(size, list | tuple) else []
    if len(sides) != 2 or any(s is None or not 1 <= s <= MAX_INPUT_SIDE for s in sides):
        raise ValueError(
            f"preprocessing input_size must be [H, W], two whole numbers from 1 to {MAX_INPUT_SIDE}, "
            f"not {_shown(size)}."
        )
    full["input_size"] = [int(sides[0]), int(sides[1])]  # type: ignore[arg-type]
    pct = full["percentiles"]
    if full["intensity"] == "percentile" and not (
        isinstance(pct, list | tuple)
        and len(pct) == 2
        and all(_real(q) for q in pct)
        and 0 <= pct[0] < pct[1] <= 100
    ):
        raise ValueError(
            f"preprocessing percentiles must be [low, high] with 0 <= low < high <= 100, not {_shown(pct)}."
        )
    if full["resize"] not in RESIZE_MODES:
        raise ValueError(
            f"preprocessing resize must be one of {', '.join(RESIZE_MODES)}, not {full['resize']!r}."
        )
    if full["intensity"] not in INTENSITY_MODES:
        raise ValueError(
            f"preprocessing intensity must be one of {', '.join(INTENSITY_MODES)}, not {full['intensity']!r}."
        )
    channels = _whole(full["channels"])
    if channels is None or not 1 <= channels <= 16:
        raise ValueError(
            f"preprocessing channels must be a whole number from 1 to 16, not {_shown(full['channels'])}."
        )
    full["channels"] = channels
    for key in ("highpass_sigma", "highpass_gain"):
        value = full[key]
        if value is None and key == "highpass_sigma":
            continue
        if not _real(value):
            raise ValueError(f"preprocessing {key} must be a number, not {_shown(value)}.")
        full[key] = float(value)
    if full["highpass_sigma"] is not None and full["highpass_sigma"] <= 0:
        raise ValueError(f"preprocessing highpass_sigma must be positive, not {full['highpass_sigma']}.")
    return full


def _shown(value: Any) -> str:
    """A value for a message, at most 60 characters (a model.json may hold anything)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def output_channels(spec: dict[str, Any]) -> int:
    """Number of channels prepare_image returns for `spec`."""
    spec = _validated(spec)
    return spec["channels"] + (spec["highpass_sigma"] is not None)


def _letterbox_geometry(shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """(pad_top, pad_bottom, pad_left, pad_right) that make `shape` square."""
    h, w = shape
    side = max(h, w)
    top = (side - h) // 2
    left = (side - w) // 2
    return top, side - h - top, left, side - w - left


def _resize(array: np.ndarray, size: tuple[int, int], *, order: int) -> np.ndarray:
    """skimage.transform.resize(mode="edge", preserve_range=True, anti-aliased when shrinking),
    computed as two small matrix products (fairaudit.preprocess._resize)."""
    from fairaudit.preprocess._resize import resize

    anti_alias = order > 0 and (array.shape[0] > size[0] or array.shape[1] > size[1])
    return resize(array, size, order=order, anti_aliasing=anti_alias).astype(array.dtype, copy=False)


def _geometry(array: np.ndarray, spec: dict[str, Any], *, order: int, fill: float) -> np.ndarray:
    if spec["resize"] == "letterbox":
        top, bottom, left, right = _letterbox_geometry(array.shape)
        array = np.pad(array, ((top, bottom), (left, right)), mode="constant", constant_values=fill)
    return _resize(array, tuple(spec["input_size"]), order=order)


def _intensity(image: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    mode = spec["intensity"]
    if mode == "none":
        return image
    if mode == "zscore":
        std = float(image.std())
        return (image - float(image.mean())) / (std if std > 0 else 1.0)
    if mode == "percentile":
        low, high = np.percentile(image, spec["percentiles"])
    else:  # minmax
        low, high = float(image.min()), float(image.max())
    scale = float(high - low)
    if scale <= 0:
        return np.zeros_like(image)
    return np.clip((image - low) / scale, 0.0, 1.0)


def prepare_image(image: np.ndarray, spacing: tuple[float, float] | None, spec: dict[str, Any]) -> np.ndarray:
    """(H, W) image -> (C, H', W') float32 network input: intensity first, then geometry.

    Intensity statistics are taken on the original grid (before resampling blurs them).
    """
    spec = _validated(spec)
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"prepare_image expects a 2D (H, W) image, got shape {image.shape}.")
    scaled = _intensity(image, spec).astype(np.float32, copy=False)
    fill = float(scaled.min()) if scaled.size else 0.0
    out = _geometry(scaled, spec, order=1, fill=fill).astype(np.float32, copy=False)
    channels = [out] * spec["channels"]
    if spec["highpass_sigma"] is not None:
        from scipy.ndimage import gaussian_filter

        channels.append((out - gaussian_filter(out, spec["highpass_sigma"])) * spec["highpass_gain"])
    return np.stack(channels).astype(np.float32, copy=False)


def model_input(image: np.ndarray, spacing: tuple[float, ...] | None, spec: dict[str, Any]) -> np.ndarray:
    """A decoded image as a model takes it: `prepare_image` of the (row, col) spacing, contiguous."""
    sp = None if spacing is None else (float(spacing[-2]), float(spacing[-1]))
    return np.ascontiguousarray(prepare_image(np.asarray(image, dtype=np.float32), sp, spec))


def prepare_mask(mask: np.ndarray, spacing: tuple[float, float] | None, spec: dict[str, Any]) -> np.ndarray:
    """(H, W) integer label map -> (H', W') on the network grid (nearest neighbour)."""
    spec = _validated(spec)
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"prepare_mask expects a 2D (H, W) mask, got shape {mask.shape}.")
    return _geometry(mask.astype(np.int64), spec, order=0, fill=0).astype(np.int64, copy=False)


def restore_mask(label_map: np.ndarray, original_shape: tuple[int, int], spec: dict[str, Any]) -> np.ndarray:
    """(H', W') predicted label map -> (H, W) on the original grid (inverse geometry, nearest)."""
    spec = _validated(spec)
    label_map = np.asarray(label_map).astype(np.int64)
    h, w = int(original_shape[0]), int(original_shape[1])
    if spec["resize"] == "letterbox":
        top, bottom, left, right = _letterbox_geometry((h, w))
        side = max(h, w)
        square = _resize(label_map, (side, side), order=0)
        return square[top : top + h, left : left + w]
    return _resize(label_map, (h, w), order=0)
