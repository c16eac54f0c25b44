"""Running a segmentation model on a volume: a 3D model by sliding windows, a 2D one slice by slice.

Why here and not in the 2D path: a volume does not fit the per-file batching of
fairaudit.models.inference (one file, one image), and a 3D model needs windows rather
than a resize to a fixed input size. model.json (or a model file's `<file>.json`) says
which (docs/models.md, "3D models and volumes"):

    {"spatial_dims": 3, "roi_size": [64, 96, 96], "sw_overlap": 0.25,
     "sw_blend": "gaussian", "sw_batch_size": 4}          # a 3D model
    {"slice_axis": 0}                                    # a 2D model, slice by slice

Axes are those of fairaudit's volume arrays: a DICOM series is (slices, rows, cols), so
slice_axis 0 runs the model on each acquired slice. numpy only here; the model's own
forward runs wherever it was loaded (CPU or CUDA).
"""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from fairaudit.errors import InputError
from fairaudit.models.sliding_window import BLEND_MODES, DEFAULT_SIGMA_SCALE, sliding_window_inference

if TYPE_CHECKING:
    from pathlib import Path

    from fairaudit.models.loading import Predictor

#: The keys of model.json this module reads (documented in docs/models.md).
VOLUME_KEYS = (
    "spatial_dims",
    "roi_size",
    "sw_overlap",
    "sw_blend",
    "sw_batch_size",
    "sw_sigma_scale",
    "slice_axis",
)
#: The largest window side: a model.json from elsewhere must not make a run allocate gigabytes a window.
MAX_ROI_SIDE = 1024


@dataclass(frozen=True)
class VolumeConfig:
    """How a model runs on a volume: sliding windows (spatial_dims 3) or slice by slice."""

    spatial_dims: int = 2
    roi_size: tuple[int, ...] | None = None
    sw_overlap: float = 0.25
    sw_blend: str = "gaussian"
    sw_batch_size: int = 4
    sw_sigma_scale: float = DEFAULT_SIGMA_SCALE
    slice_axis: int | None = None

    @property
    def mode(self) -> str:
        """ "sliding_window" (3D model) or "slices" (2D model, slice by slice)."""
        return "sliding_window" if self.spatial_dims == 3 else "slices"

    def describe(self) -> dict[str, Any]:
        """The `model.volume` object of results.json."""
        out = asdict(self) | {"mode": self.mode}
        if self.mode == "slices":
            for key in ("roi_size", "sw_overlap", "sw_blend", "sw_batch_size", "sw_sigma_scale"):
                out.pop(key)
        else:
            out.pop("slice_axis")
            out["roi_size"] = list(self.roi_size or ())
        return out


def _whole(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value).is_integer():
        return None
    return int(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(float(value)):
        return None
    return float(value)


def volume_config(meta: dict[str, Any], source: Path | str | None = None) -> VolumeConfig | None:
    """The volume settings of a model.json / sidecar (`meta`), checked; None for a plain 2D
    model. A wrong value is an InputError naming the file and the key, before any image is read."""
    where = None if source is None else str(source)
    if not any(meta.get(k) is not None for k in VOLUME_KEYS):
        return None

    def bad(key: str, what: str, quoted: bool = True) -> InputError:
        return InputError(
            f"{key} {what}, not {str(meta.get(key))[:60]!r}." if quoted else f"{key} {what}.",
            file=where,
            column=key,
            hint="Fix the model's model.json (or <file>.json); the keys are in docs/models.md, '3D models and volumes'.",
        )

    dims = _whole(meta.get("spatial_dims", 2))
    if dims not in (2, 3):
        raise bad("spatial_dims", "must be 2 (a 2D model) or 3 (a 3D model)")
    if dims == 3:
        if meta.get("slice_axis") is not None:
            raise bad(
                "slice_axis",
                "is for 2D models run slice by slice; a 3D model (spatial_dims 3) takes none",
                False,
            )
        if str(meta.get("task", "segmentation")) != "segmentation":
            raise bad("spatial_dims", "3 is supported for segmentation models only", False)
        roi = meta.get("roi_size")
        sides = [_whole(r) for r in roi] if isinstance(roi, list | tuple) else []
        if len(sides) != 3 or any(s is None or not 1 <= s <= MAX_ROI_SIDE for s in sides):
            raise bad(
                "roi_size", f"must be three whole numbers from 1 to {MAX_ROI_SIDE} (the window, in voxels)"
            )
        overlap = _number(meta.get("sw_overlap", 0.25))
        if overlap is None or not 0 <= overlap < 1:
            raise bad("sw_overlap", "must be a number >= 0 and < 1")
        blend = meta.get("sw_blend", "gaussian")
        if blend not in BLEND_MODES:
            raise bad("sw_blend", f"must be one of {', '.join(BLEND_MODES)}")
        batch = _whole(meta.get("sw_batch_size", 4))
        if batch is None or not 1 <= batch <= 256:
            raise bad("sw_batch_size", "must be a whole number from 1 to 256")
        sigma = _number(meta.get("sw_sigma_scale", DEFAULT_SIGMA_SCALE))
        if sigma is None or sigma <= 0:
            raise bad("sw_sigma_scale", "must be a positive number")
        pre = meta.get("preprocessing") or {}
        if isinstance(pre, dict) and pre.get("highpass_sigma") is not None:
            raise bad("spatial_dims", "3 takes no preprocessing highpass_sigma (a 2D filter)", False)
        return VolumeConfig(3, tuple(int(s) for s in sides), overlap, str(blend), batch, sigma)  # type: ignore[arg-type]
    axis = _whole(meta.get("slice_axis"))
    if meta.get("slice_axis") is None:
        return None  # sliding-window keys on a 2D model: nothing to do on volumes
    if axis not in (0, 1, 2):
        raise bad("slice_axis", "must be 0, 1 or 2 (the volume axis the slices are taken along)")
    if str(meta.get("task", "segmentation")) != "segmentation":
        raise bad("slice_axis", "is supported for segmentation models only", False)
    return VolumeConfig(slice_axis=axis)


def prepare_volume(volume: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """(D, H, W) volume -> (C, D, H, W) float32 input of a 3D model: the spec's intensity
    rule over the whole volume, the grey channel repeated `channels` times (a view, no copy).
    The grid is kept: windows, not a resize, fit the volume to the model."""
    from fairaudit.models.preprocessing import _intensity, _validated

    spec = _validated(spec)
    scaled = _intensity(np.asarray(volume, dtype=np.float32), spec).astype(np.float32, copy=False)
    return np.broadcast_to(scaled[None], (spec["channels"], *scaled.shape))


def label_volume(raw: np.ndarray, output: str) -> np.ndarray:
    """(K, *spatial) blended outputs -> label map: argmax over K, or one channel above 0
    (logits) / 0.5 (probabilities). uint8 (uint16 beyond 255 classes) to keep volumes small."""
    dtype = np.uint8 if raw.shape[0] <= 256 else np.uint16
    if raw.shape[0] == 1:
        return (raw[0] > (0.5 if output == "probabilities" else 0.0)).astype(dtype)
    return raw.argmax(axis=0).astype(dtype)


def predict_volume(
    predictor: Predictor,
    volume: np.ndarray,
    spacing: tuple[float, ...] | None = None,
    *,
    batch_size: int = 32,
) -> np.ndarray:
    """The predicted label volume, on `volume`'s own (D, H, W) grid (see the module doc).

    3D model: sliding windows over the prepared volume (fairaudit.models.sliding_window).
    2D model: each slice along `slice_axis` prepared as a 2D image (the same preprocessing
    as a 2D file), predicted `batch_size` slices at a time, restored to the slice's grid and
    stacked back in place.
    """
    config = predictor.volume
    volume = np.asarray(volume)
    if config is None:
        raise ValueError("the model's model.json names no spatial_dims 3 or slice_axis: it runs on 2D images")
    if volume.ndim != 3:
        raise ValueError(f"a volume must be 3-D, this one has shape {volume.shape}")
    if config.mode == "sliding_window":
        raw = sliding_window_inference(
            prepare_volume(volume, predictor.spec),
            predictor.forward_raw,
            config.roi_size or (),
            overlap=config.sw_overlap,
            mode=config.sw_blend,
            sw_batch_size=config.sw_batch_size,
            sigma_scale=config.sw_sigma_scale,
        )
        return label_volume(raw, predictor.output)
    return _slice_by_slice(predictor, volume, spacing, int(config.slice_axis or 0), batch_size)


def _slice_by_slice(
    predictor: Predictor, volume: np.ndarray, spacing: tuple[float, ...] | None, axis: int, batch_size: int
) -> np.ndarray:
    from fairaudit.models.preprocessing import model_input

    moved = np.moveaxis(volume, axis, 0)  # a view: slice i is moved[i]
    plane = None if spacing is None else tuple(float(s) for i, s in enumerate(spacing) if i != axis)
    out = np.zeros(volume.shape, dtype=np.uint16)
    target = np.moveaxis(out, axis, 0)
    for first in range(0, moved.shape[0], max(1, int(batch_size))):
        stop = min(first + max(1, int(batch_size)), moved.shape[0])
        batch = np.stack([model_input(moved[i], plane, predictor.spec) for i in range(first, stop)])
        for i, labels in zip(range(first, stop), predictor.predict(batch), strict=True):
            target[i] = predictor.restore(labels, moved.shape[1:])
    return out.astype(np.uint8) if out.size == 0 or out.max() < 256 else out
