"""Spatial standardization: resampling to a spacing, resize with pad or crop, registration.

Each geometric step returns the record of what it did (shapes, zoom, pad and crop
offsets, transform matrices), so a sidecar states it exactly and `restore_shape` can put
a result back on the input grid. Images interpolate linearly (order 1), masks with
nearest neighbour (order 0), never anti-aliased, so labels stay labels.

Registration to a template:
- landmarks: `align_landmarks` estimates a similarity or affine transform (skimage.transform)
  from corresponding points by least squares and warps the image onto the template grid;
- intensities: `register_rigid` finds the rotation and translation that best map the
  template onto the image. A coarse angle comes from the Fourier-Mellin method (the
  log-polar magnitude spectrum turns rotation into a shift; skimage's
  phase_cross_correlation measures it), the translation from phase correlation, then a
  Powell search refines (angle, shift) on normalized cross-correlation.

Conventions: points and shifts are (row, col) in pixels; angles are degrees
counter-clockwise as in `skimage.transform.rotate`, about the image centre
((rows - 1) / 2, (cols - 1) / 2).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fairaudit.errors import InputError, arg


def parse_shape(text: str | None, argument: str = "target_shape", floats: bool = False) -> tuple | None:
    """'256x256' -> (256, 256); '0.5x0.5' -> (0.5, 0.5) with floats; None/'' -> None.
    `argument`: the argument that gave the text, for messages (fairaudit.errors.arg)."""
    if text is None or not str(text).strip():
        return None
    parts = str(text).lower().replace(",", "x").split("x")
    try:
        vals = tuple(float(p) if floats else int(p) for p in parts)
    except ValueError:
        example = "0.5x0.5" if floats else "256x256"
        raise InputError(
            f"{arg(argument)} '{text}': expected numbers separated by x, e.g. {example}.", argument=argument
        ) from None
    if len(vals) not in (2, 3) or any(v <= 0 for v in vals):
        raise InputError(f"{arg(argument)} '{text}': expected 2 or 3 positive numbers.", argument=argument)
    return vals


# ----------------------------------------------------------------------------- resampling


def _resize(image: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    from fairaudit.preprocess._resize import resize

    anti = order > 0 and any(o < i for o, i in zip(shape, image.shape, strict=True))
    out = resize(image.astype(np.float64) if order > 0 else image, shape, order=order, anti_aliasing=anti)
    return out.astype(image.dtype if order == 0 else np.float32 if image.dtype != np.float64 else np.float64)


def resample_to_spacing(
    image: np.ndarray,
    spacing: Sequence[float],
    target_spacing: Sequence[float],
    *,
    order: int = 1,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Resample to `target_spacing` (mm per pixel along each axis); the field of view is kept."""
    if len(spacing) != image.ndim or len(target_spacing) != image.ndim:
        raise ValueError(f"spacing {spacing} / target {target_spacing} do not match image ndim {image.ndim}")
    shape = tuple(
        max(1, int(round(n * s / t))) for n, s, t in zip(image.shape, spacing, target_spacing, strict=True)
    )
    out = _resize(image, shape, order)
    actual = tuple(n * s / m for n, s, m in zip(image.shape, spacing, shape, strict=True))
    record = {
        "step": "resample",
        "input_shape": list(image.shape),
        "input_spacing": [float(s) for s in spacing],
        "output_shape": list(shape),
        "target_spacing": [float(t) for t in target_spacing],
        "output_spacing": [float(a) for a in actual],
        "order": order,
    }
    return out, record


def resize_to_shape(
    image: np.ndarray,
    target_shape: Sequence[int],
    *,
    keep_aspect: bool = True,
    fit: str = "pad",
    order: int = 1,
    pad_value: float | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Resize to `target_shape` (2-D or 3-D).

    keep_aspect: one zoom factor for every axis; fit="pad" scales the image to fit inside
    and pads (centred) with `pad_value` (default: the image minimum), fit="crop" scales it
    to cover and crops the centre. Without keep_aspect each axis is scaled on its own.
    """
    target = tuple(int(t) for t in target_shape)
    if len(target) != image.ndim:
        raise InputError(
            f"target shape {'x'.join(map(str, target))} has {len(target)} axes; the image has {image.ndim}."
        )
    if fit not in ("pad", "crop"):
        raise ValueError("fit must be 'pad' or 'crop'")
    if keep_aspect:
        ratios = [t / n for t, n in zip(target, image.shape, strict=True)]
        z = min(ratios) if fit == "pad" else max(ratios)
        resized_shape = tuple(
            max(1, min(t, int(round(n * z))) if fit == "pad" else max(t, int(round(n * z))))
            for n, t in zip(image.shape, target, strict=True)
        )
    else:
        resized_shape = target
    resized = _resize(image, resized_shape, order) if resized_shape != image.shape else image.copy()
    fill = float(np.min(image)) if pad_value is None else float(pad_value)
    pad, crop = [], []
    for r, t in zip(resized_shape, target, strict=True):
        extra = t - r
        before = extra // 2 if extra > 0 else 0
        pad.append([before, extra - before] if extra > 0 else [0, 0])
        start = (-extra) // 2 if extra < 0 else 0
        crop.append([start, start + t] if extra < 0 else [0, r])
    out = resized[tuple(slice(a, b) for a, b in crop)]
    if any(p != [0, 0] for p in pad):
        out = np.pad(out, pad, mode="constant", constant_values=fill if order > 0 else 0)
    record = {
        "step": "resize",
        "input_shape": list(image.shape),
        "resized_shape": list(resized_shape),
        "output_shape": list(out.shape),
        "keep_aspect": keep_aspect,
        "fit": fit,
        "pad": pad,
        "crop": crop,
        "pad_value": fill if order > 0 else 0,
        "order": order,
    }
    return out, record


def restore_shape(image: np.ndarray, record: Mapping[str, Any], *, order: int = 1) -> np.ndarray:
    """Undo `resize_to_shape` (or `resample_to_spacing`) geometry: back to the input grid.

    Pixels cropped away come back as the edge values (the information is gone)."""
    if record["step"] == "resample":
        return _resize(image, record["input_shape"], order)
    region = image[
        tuple(slice(a, a + r) for (a, _), r in zip(record["pad"], record["resized_shape"], strict=True))
    ]
    crop = record["crop"]
    if any(c[0] > 0 or c[1] < r for c, r in zip(crop, record["resized_shape"], strict=True)):
        region = np.pad(
            region,
            [[c[0], r - c[1]] for c, r in zip(crop, record["resized_shape"], strict=True)],
            mode="edge",
        )
    return _resize(region, record["input_shape"], order)


# ----------------------------------------------------------------------------- landmarks


def align_landmarks(
    image: np.ndarray,
    moving_points: np.ndarray,
    template_points: np.ndarray,
    *,
    kind: str = "similarity",
    output_shape: Sequence[int] | None = None,
    order: int = 1,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Warp a 2-D image so its landmarks land on the template's (least squares).

    `moving_points`, `template_points`: (K, 2) arrays of (row, col); similarity needs
    K >= 2, affine K >= 3. The record holds the 3x3 matrix mapping template (x, y) to
    image (x, y) coordinates and the residual RMS (template pixels).
    """
    from skimage.transform import AffineTransform, SimilarityTransform, warp

    kinds = {"similarity": (SimilarityTransform, 2), "affine": (AffineTransform, 3)}
    if kind not in kinds:
        raise InputError(f"landmark alignment kind '{kind}': choose similarity or affine.")
    cls, need = kinds[kind]
    src = np.asarray(moving_points, dtype=np.float64)[:, ::-1]  # (row, col) -> (x, y)
    dst = np.asarray(template_points, dtype=np.float64)[:, ::-1]
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < need:
        raise InputError(
            f"{kind} alignment needs at least {need} pairs of (row, col) landmarks of equal count."
        )
    tform = cls.from_estimate(src, dst) if hasattr(cls, "from_estimate") else _estimate(cls, src, dst)
    if not tform:
        raise InputError("the landmarks do not determine a transform (collinear or repeated points).")
    residual = float(np.sqrt(np.mean(np.sum((tform(src) - dst) ** 2, axis=1))))
    shape = tuple(output_shape) if output_shape is not None else image.shape
    out = warp(image.astype(np.float64), tform.inverse, output_shape=shape, order=order, preserve_range=True)
    record = {
        "step": "align_landmarks",
        "kind": kind,
        "matrix_template_to_image_xy": np.linalg.inv(tform.params).tolist(),
        "residual_rms": residual,
        "output_shape": list(shape),
    }
    return out.astype(image.dtype if order == 0 else np.float32), record


def _estimate(cls: Any, src: np.ndarray, dst: np.ndarray) -> Any:
    t = cls()
    return t if t.estimate(src, dst) else None


# ----------------------------------------------------------------------------- rigid registration


@dataclass(frozen=True)
class RigidResult:
    """image ~= the template rotated by `angle_deg` (CCW, about the centre) then shifted by `shift`."""

    angle_deg: float
    shift: tuple[float, float]  # (row, col) pixels
    ncc: float  # normalized cross-correlation at the optimum (overlap only)

    def to_dict(self) -> dict[str, Any]:
        return {"angle_deg": self.angle_deg, "shift": list(self.shift), "ncc": self.ncc}


def _rigid_tform(angle_deg: float, shift: Sequence[float], shape: Sequence[int]) -> Any:
    """skimage transform mapping output (x, y) -> input (x, y): in = R (out - s - c) + c."""
    from skimage.transform import EuclideanTransform

    c = np.array([(shape[1] - 1) / 2.0, (shape[0] - 1) / 2.0])
    s = np.array([shift[1], shift[0]], dtype=np.float64)
    t = math.radians(angle_deg)
    r = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    m = np.eye(3)
    m[:2, :2] = r
    m[:2, 2] = c - r @ (s + c)
    return EuclideanTransform(matrix=m)


def apply_rigid(
    template: np.ndarray, angle_deg: float, shift: Sequence[float], *, order: int = 1
) -> np.ndarray:
    """The template rotated by `angle_deg` and shifted by `shift` (the forward model)."""
    from skimage.transform import warp

    tf = _rigid_tform(angle_deg, shift, template.shape)
    return warp(template.astype(np.float64), tf, order=order, preserve_range=True, mode="constant", cval=0.0)


def align_rigid(image: np.ndarray, result: RigidResult, *, order: int = 1, cval: float = 0.0) -> np.ndarray:
    """Bring `image` onto the template grid by undoing `result` (`cval` where nothing maps)."""
    from skimage.transform import warp

    tf = _rigid_tform(result.angle_deg, result.shift, image.shape)
    return warp(
        image.astype(np.float64), tf.inverse, order=order, preserve_range=True, mode="constant", cval=cval
    ).astype(image.dtype if order == 0 else np.float32)


def _ncc(a: np.ndarray, b: np.ndarray, valid: np.ndarray) -> float:
    x, y = a[valid], b[valid]
    if x.size < 16:
        return -1.0
    x = x - x.mean()
    y = y - y.mean()
    den = math.sqrt(float(np.dot(x, x)) * float(np.dot(y, y)))
    return float(np.dot(x, y) / den) if den > 0 else -1.0


def _score(template: np.ndarray, image: np.ndarray, angle: float, shift: Sequence[float]) -> float:
    from skimage.transform import warp

    tf = _rigid_tform(angle, shift, template.shape)
    moved = warp(template, tf, order=1, preserve_range=True, mode="constant", cval=np.nan)
    valid = np.isfinite(moved)
    return _ncc(moved, image, valid)


def _coarse_angle(template: np.ndarray, image: np.ndarray) -> float:
    """Rotation (mod 180) from the log-polar magnitude spectra (Fourier-Mellin)."""
    from skimage.filters import difference_of_gaussians, window
    from skimage.registration import phase_cross_correlation
    from skimage.transform import warp_polar

    n = min(template.shape)
    spectra = []
    for im in (template, image):
        f = difference_of_gaussians(im, 1, None)
        f = f * window("hann", im.shape)
        spectra.append(np.abs(np.fft.fftshift(np.fft.fft2(f))))
    radius = n // 4
    shape = (360, radius)
    polar = [warp_polar(s, radius=radius, output_shape=shape, scaling="log", order=1) for s in spectra]
    polar = [p[:180] for p in polar]
    shift, _, _ = phase_cross_correlation(polar[0], polar[1], upsample_factor=10, normalization=None)
    return float(shift[0])


def register_rigid(
    image: np.ndarray,
    template: np.ndarray,
    *,
    max_angle: float = 180.0,
    refine: bool = True,
) -> RigidResult:
    """Rotation and translation with image ~= rotate-then-shift(template) (2-D, same shape)."""
    from scipy.optimize import minimize
    from skimage.registration import phase_cross_correlation

    if image.ndim != 2 or image.shape != template.shape:
        raise InputError(
            f"rigid registration needs two 2-D images of one shape, got {image.shape} and {template.shape}."
        )
    tmpl = template.astype(np.float64)
    img = image.astype(np.float64)
    base = _coarse_angle(tmpl, img)
    candidates = {((a + 180.0) % 360.0) - 180.0 for a in (base, -base, base + 180.0, 180.0 - base)}
    candidates = {a for a in candidates if abs(a) <= max_angle + 1.0} or {0.0}
    best: tuple[float, float, tuple[float, float]] | None = None
    for angle in sorted(candidates):
        rotated = apply_rigid(tmpl, angle, (0.0, 0.0))
        shift, _, _ = phase_cross_correlation(img, rotated, upsample_factor=10, normalization=None)
        sh = (float(shift[0]), float(shift[1]))
        score = _score(tmpl, img, angle, sh)
        if best is None or score > best[0]:
            best = (score, angle, sh)
    assert best is not None
    score, angle, sh = best
    if refine:
        res = minimize(
            lambda p: -_score(tmpl, img, p[0], (p[1], p[2])),
            x0=np.array([angle, sh[0], sh[1]]),
            method="Powell",
            options={"xtol": 1e-3, "ftol": 1e-7, "maxfev": 400},
        )
        if -res.fun >= score:
            score, angle, sh = float(-res.fun), float(res.x[0]), (float(res.x[1]), float(res.x[2]))
    return RigidResult(angle_deg=float(((angle + 180.0) % 360.0) - 180.0), shift=sh, ncc=score)
