"""Geometric augmentation applied identically to an image and its mask.

One transform draws a rotation, a translation, an isotropic scaling, optional flips (off
by default: anatomy has a side) and an elastic deformation (a random displacement on a
coarse grid of control points, upsampled with cubic splines, as TorchIO's
RandomElasticDeformation), composes them into one coordinate map, and samples the image
with linear interpolation and the mask with nearest neighbour, so labels stay labels and
stay aligned with the image. In-plane (the last two axes); a volume's slices share it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import ndimage

from fairaudit.augment._base import Transform, subseed


class Geometric(Transform):
    name = "geometric"
    family = "geometric"
    intensity = False
    RANGES = {
        "mild": {"degrees": 5.0, "translation": 0.03, "scale": 0.05, "elastic_px": 1.0},
        "moderate": {"degrees": 10.0, "translation": 0.06, "scale": 0.1, "elastic_px": 2.0},
        "aggressive": {"degrees": 20.0, "translation": 0.1, "scale": 0.2, "elastic_px": 4.0},
    }

    def __init__(
        self,
        strength: str = "moderate",
        *,
        flip: bool = False,
        elastic: bool = True,
        control_points: int = 7,
        **overrides: Any,
    ) -> None:
        super().__init__(strength, **overrides)
        self.flip = flip
        self.elastic = elastic
        self.control_points = control_points

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        r = self.ranges
        h, w = shape[-2:]
        p: dict[str, Any] = {
            "angle_deg": float(rng.uniform(-r["degrees"], r["degrees"])),
            "shift": [float(rng.uniform(-r["translation"], r["translation"]) * n) for n in (h, w)],
            "scale": float(rng.uniform(1 - r["scale"], 1 + r["scale"])),
            "flip": [bool(rng.random() < 0.5), bool(rng.random() < 0.5)] if self.flip else [False, False],
            "elastic_px": float(r["elastic_px"]) if self.elastic else 0.0,
            "control_points": self.control_points,
        }
        p["seed"] = subseed(rng)
        return p

    def coordinates(self, shape: tuple[int, ...], p: Mapping[str, Any]) -> np.ndarray:
        """(2, H, W) input coordinates sampled for each output pixel of the plane."""
        h, w = shape[-2:]
        centre = np.array([(h - 1) / 2, (w - 1) / 2])
        rr, cc = np.mgrid[0:h, 0:w].astype(np.float64)
        out = np.stack([rr - centre[0] - p["shift"][0], cc - centre[1] - p["shift"][1]])
        t = -np.deg2rad(p["angle_deg"])  # counter-clockwise on screen, as skimage.transform.rotate
        rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]) / p["scale"]
        coords = np.einsum("ij,jhw->ihw", rot, out) + centre[:, None, None]
        if p["flip"][0]:
            coords[0] = (h - 1) - coords[0]
        if p["flip"][1]:
            coords[1] = (w - 1) - coords[1]
        if p["elastic_px"] > 0:
            g = np.random.default_rng(p["seed"])
            k = int(p["control_points"])
            grid = g.normal(0.0, p["elastic_px"], size=(2, k, k))
            grid[:, [0, -1], :] = 0.0  # edges fixed: no content pulled in from outside
            grid[:, :, [0, -1]] = 0.0
            disp = np.stack(
                [ndimage.zoom(d, (h / k, w / k), order=3, mode="nearest", grid_mode=True) for d in grid]
            )
            coords = coords + disp[:, :h, :w]
        return coords

    def apply(
        self, image: np.ndarray, params: Mapping[str, Any], mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        x = np.asarray(image)
        coords = self.coordinates(x.shape, params)
        fill = float(np.min(x))

        def sample(a: np.ndarray, order: int, cval: float) -> np.ndarray:
            if a.ndim == 2:
                return ndimage.map_coordinates(a, coords, order=order, mode="constant", cval=cval)
            return np.stack(
                [ndimage.map_coordinates(s, coords, order=order, mode="constant", cval=cval) for s in a]
            )

        out = sample(x.astype(np.float64), 1, fill).astype(
            np.float32 if x.dtype != np.float64 else np.float64
        )
        m = None
        if mask is not None:
            if mask.shape != x.shape:
                raise ValueError(f"mask shape {mask.shape} differs from image shape {x.shape}")
            m = sample(np.asarray(mask), 0, 0).astype(mask.dtype)
        return out, m
