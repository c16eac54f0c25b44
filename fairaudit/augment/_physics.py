"""Physics-informed intensity augmentations for radiography, CT, MRI and ultrasound.

Each transform simulates one acquisition effect on the unit window u (see _base):

X-ray (projection radiography)
- exposure: detector gain g and a contrast change c about the mean m, ``g (m + c (u - m))``
  (a different mAs and kVp);
- scatter: scatter fraction f adds a low-frequency haze, ``(1 - f) u + f G_s * u`` with a
  wide Gaussian G_s (scatter is a blurred copy of the primary signal), reducing contrast;
- noise: quantum (Poisson) noise at N0 photons per unit signal plus electronic Gaussian
  noise, ``Poisson(N0 u) / N0 + N(0, s_e^2)``; fewer photons, more noise (a portable unit);
- grid: the shadow of anti-scatter grid lamellae, a periodic attenuation along one axis,
  ``u (1 - a (1 + cos(2 pi x / T + phi)) / 2)``.
CT
- cupping: beam hardening darkens the centre of a uniform object, ``u - c (1 - r^2)`` for
  r <= 1 (r: distance from the centre, 1 at the inscribed circle's edge);
- metal: streaks radiating from a metal point, alternating bright and dark, decaying away
  from it, plus the bright metal itself;
- starvation: photon-starvation noise, streaky (correlated along a random direction) and
  stronger where attenuation (u) is high;
- rings: miscalibrated detector elements: concentric rings of random radius and sign.
MRI
- bias_field: a smooth multiplicative field, exp of a random polynomial of degree 3 in the
  plane coordinates (as TorchIO's RandomBiasField);
- motion: a rigid movement during the acquisition: k-space lines acquired after a random
  time come from the moved object (as TorchIO's RandomMotion, one movement);
- gibbs: ringing from k-space truncation: only the central fraction of frequencies kept;
- rician: magnitude of complex Gaussian noise, ``sqrt((u + n1)^2 + n2^2)``.
Ultrasound
- speckle: multiplicative fully developed speckle (Rayleigh amplitude of a correlated
  complex Gaussian field, mean 1), blended with strength k;
- attenuation: depth-dependent loss not fully corrected by time-gain compensation,
  ``u exp(-alpha d)`` with depth d in [0, 1] from the top row (the transducer);
- shadowing: an acoustic shadow below a strong reflector: a band of columns darkened
  below a depth, with soft edges.
Composite (several effects as one family)
- portable (x-ray): a bedside radiograph: under-exposed (gain below 1), scatter as without
  an anti-scatter grid, and the quantum noise of fewer photons, drawn in that order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import ndimage

from fairaudit.augment._base import Composite, Transform, plane_coords, subseed

MODALITIES: tuple[str, ...] = ("xray", "ct", "mri", "ultrasound")


def _plane_filter(u: np.ndarray, sigma: float | tuple[float, float]) -> np.ndarray:
    s = (sigma, sigma) if np.isscalar(sigma) else tuple(sigma)
    return ndimage.gaussian_filter(u, (0.0,) * (u.ndim - 2) + s, mode="reflect")


def _wide_blur(u: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with a wide kernel, fast: block-average by k, blur by sigma / k, upsample.

    A wide blur keeps only low frequencies, which a coarser grid represents; the result
    differs from the direct filter by well under 1 % of the image range (tested)."""
    k = max(1, int(sigma // 4))
    h, w = u.shape[-2:]
    if k == 1:
        return _plane_filter(u, sigma)
    hh, ww = -(-h // k) * k, -(-w // k) * k
    pad = [(0, 0)] * (u.ndim - 2) + [(0, hh - h), (0, ww - w)]
    up = np.pad(u, pad, mode="reflect")
    small = up.reshape(*u.shape[:-2], hh // k, k, ww // k, k).mean(axis=(-3, -1))
    small = _plane_filter(small, sigma / k)
    zoom = (1,) * (u.ndim - 2) + (k, k)
    big = ndimage.zoom(small, zoom, order=1, mode="nearest", grid_mode=True)
    return big[..., :h, :w].astype(u.dtype, copy=False)


# ----------------------------------------------------------------------------- x-ray


class XrayExposure(Transform):
    name = "xray_exposure"
    family = "exposure"
    RANGES = {
        "mild": {"gain": (0.9, 1.1), "contrast": (0.9, 1.1)},
        "moderate": {"gain": (0.75, 1.25), "contrast": (0.75, 1.25)},
        "aggressive": {"gain": (0.5, 1.5), "contrast": (0.5, 1.5)},
    }

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        return {"gain": self.uniform(rng, "gain"), "contrast": self.uniform(rng, "contrast")}

    def _apply(self, u: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
        m = float(u.mean())
        return p["gain"] * (m + p["contrast"] * (u - m))


class XrayScatter(Transform):
    name = "xray_scatter"
    family = "scatter"
    RANGES = {
        "mild": {"fraction": (0.05, 0.15), "width": 0.15},
        "moderate": {"fraction": (0.15, 0.3), "width": 0.15},
        "aggressive": {"fraction": (0.3, 0.5), "width": 0.15},
    }

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        return {
            "fraction": self.uniform(rng, "fraction"),
            "sigma_px": float(self.ranges["width"]) * min(shape[-2:]),
        }

    def _apply(self, u: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
        f = p["fraction"]
        return (1 - f) * u + f * _wide_blur(u, p["sigma_px"])


class XrayNoise(Transform):
    name = "xray_noise"
    family = "noise"
    RANGES = {
        "mild": {"photons": (1500.0, 3000.0), "electronic_sd": (0.001, 0.003)},
        "moderate": {"photons": (300.0, 600.0), "electronic_sd": (0.004, 0.008)},
        "aggressive": {"photons": (60.0, 120.0), "electronic_sd": (0.01, 0.02)},
    }

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        return {
            "photons": self.uniform(rng, "photons"),
            "electronic_sd": self.uniform(rng, "electronic_sd"),
            "seed": subseed(rng),
        }

    def _apply(self, u: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
        g = np.random.default_rng(p["seed"])
        n0 = p["photons"]
        quanta = g.poisson(np.clip(u, 0.0, None) * n0) / n0
        electronic = g.standard_normal(u.shape, dtype=np.float32) * np.float32(p["electronic_sd"])
        return quanta.astype(u.dtype) + electronic + np.minimum(u, 0)


class XrayGrid(Transform):
    name = "xray_grid"
    family = "grid"
    RANGES = {
        "mild": {"amplitude": (0.01, 0.03), "period": (3.0, 6.0)},
        "moderate": {"amplitude": (0.03, 0.07), "period": (3.0, 8.0)},
        "aggressive": {"amplitude": (0.07, 0.15), "period": (4.0, 10.0)},
    }

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        return {
            "amplitude": self.uniform(rng, "amplitude"),
            "period_px": self.uniform(rng, "period"),
            "phase": float(rng.uniform(0, 2 * np.pi)),
            "axis": int(rng.integers(0, 2)),  # 0: lines along rows (vary down the columns), 1: vertical lines
        }

    def _apply(self, u: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
        n = u.shape[-2] if p["axis"] == 0 else u.shape[-1]
        wave = 0.5 * (1 + np.cos(2 * np.pi * np.arange(n) / p["period_px"] + p["phase"]))
        profile = 1 - p["amplitude"] * wave
        return u * (profile[:, None] if p["axis"] == 0 else profile[None, :])


# ----------------------------------------------------------------------------- CT


class CtCupping(Transform):
    name = "ct_cupping"
    family = "cupping"
    RANGES = {
        "mild": {"depth": (0.02, 0.05)},
        "moderate": {"depth": (0.05, 0.1)},
        "aggressive": {"depth": (0.1, 0.2)},
    }

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        return {"depth": self.uniform(rng, "depth")}

    def _apply(self, u: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
        r, c = plane_coords(u.shape)
        r2 = r**2 + c**2
        return u - p["depth"] * np.clip(1 - r2, 0.0, None)


class CtMetal(Transform):
    name = "ct_metal"
    family = "metal"
    RANGES = {
        "mild": {"streaks": (3, 6), "amplitude": (0.05, 0.1)},
        "moderate": {"streaks": (5, 10), "amplitude": (0.1, 0.25)},
        "aggressive": {"streaks": (8, 16), "amplitude": (0.25, 0.5)},
    }

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        lo, hi = self.ranges["streaks"]
        k = int(rng.integers(lo, hi + 1))
        h, w = shape[-2:]
        return {
            "centre": [float(rng.uniform(0.3, 0.7) * (h - 1)), float(rng.uniform(0.3, 0.7) * (w - 1))],
            "angles": sorted(float(a) for a in rng.uniform(0, np.pi, size=k)),
            "signs": [int(s) for s in rng.choice([-1, 1], size=k)],
            "amplitude": self.uniform(rng, "amplitude"),
            "radius_px": float(max(1.5, 0.015 * min(h, w))),
        }

    def _apply(self, u: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
        h, w = u.shape[-2:]
        rr, cc = np.mgrid[0:h, 0:w].astype(np.float64)
        dr, dc = rr - p["centre"][0], cc - p["centre"][1]
        dist = np.hypot(dr, dc)
        length = 0.5 * max(h, w)
        field = np.zeros((h, w))
        for a, s in zip(p["angles"], p["signs"], strict=True):
            across = np.abs(-np.sin(a) * dr + np.cos(a) * dc)  # distance to the line through the centre
            field += s * np.exp(-0.5 * (across / 1.0) ** 2) * np.exp(-dist / length)
        field *= p["amplitude"]
        field[dist <= p["radius_px"]] = 1.5  # the metal itself: far above the soft-tissue window
        return u + field


class CtStarvation(Transform):
    name = "ct_starvation"
    family = "starvation"
    RANGES = {
        "mild": {"sd": (0.01, 0.02)},
        "moderate": {"sd": (0.02, 0.05)},
        "aggressive": {"sd": (0.05, 0.1)},
    }

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        return {"sd": self.uniform(rng, "sd"), "angle_deg": float(rng.uniform(0, 180)), "seed": subseed(rng)}

    def _apply(self, u: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
        g = np.random.default_rng(p["seed"])
        h, w = u.shape[-2:]
        side = int(np.ceil(np.hypot(h, w))) + 2
        white = g.standard_normal((side, side))
        streaky = ndimage.gaussian_filter1d(white, sigma=6.0, axis=1)
        streaky = ndimage.rotate(streaky, p["angle_deg"], reshape=False, order=1, mode="reflect")
        r0, c0 = (side - h) // 2, (side - w) // 2
        streaky = streaky[r0 : r0 + h, c0 : c0 + w]
        streaky /= streaky.std() or 1.0
        return u + p["sd"] * (0.25 + np.clip(u, 0.0, None)) * streaky


class CtRings(Transform):
    name = "ct_rings"
    family = "rings"
    RANGES = {
        "mild": {"rings": (1, 3), "amplitude": (0.01, 0.03)},
        "moderate": {"rings": (3, 6), "amplitude": (0.03, 0.06)},
        "aggressive": {"rings": (5, 10), "amplitude": (0.06, 0.12)},
    }

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        lo, hi = self.ranges["rings"]
        k = int(rng.integers(lo, hi + 1))
        return {
            "radii": [float(r) for r in rng.uniform(0.05, 0.95, size=k)],
            "amplitudes": [
                float(a) for a in rng.uniform(*self.ranges["amplitude"], size=k) * rng.choice([-1, 1], size=k)
            ],
            "width_px": 1.0,
        }

    def _apply(self, u: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
        h, w = u.shape[-2:]
        rr, cc = np.mgrid[0:h, 0:w].astype(np.float64)
        dist = np.hypot(rr - (h - 1) / 2, cc - (w - 1) / 2)
        half = min(h, w) / 2
        field = np.zeros((h, w))
        for r, a in zip(p["radii"], p["amplitudes"], strict=True):
            field += a * np.exp(-0.5 * ((dist - r * half) / p["width_px"]) ** 2)
        return u + field


# ----------------------------------------------------------------------------- MRI


def bias_field(shape: tuple[int, ...], coefficients: list[float], order: int = 3) -> np.ndarray:
    """exp(sum_{i+j<=order} a_ij r^i c^j) on the image plane (r, c in [-1, 1]).

    Coefficients in the order i = 0..order, j = 0..order-i. Evaluated as one matrix product
    R A C^T of the powers of the row and column coordinates (float64)."""
    h, w = shape[-2], shape[-1]
    a = np.zeros((order + 1, order + 1))
    k = 0
    for i in range(order + 1):
        for j in range(order + 1 - i):
            a[i, j] = coefficients[k]
            k += 1
    rows = np.vander(np.linspace(-1.0, 1.0, h), order + 1, increasing=True)
    cols = np.vander(np.linspace(-1.0, 1.0, w), order + 1, increasing=True)
    return np.exp(rows @ a @ cols.T)


class MriBiasField(Transform):
    name = "mri_bias_field"
    family = "bias_field"
    RANGES = {
        "mild": {"coefficients": 0.15},
        "moderate": {"coefficients": 0.3},
        "aggressive": {"coefficients": 0.6},
    }
    ORDER = 3

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        n = (self.ORDER + 1) * (self.ORDER + 2) // 2
        c = float(self.ranges["coefficients"])
        coef = rng.uniform(-c, c, size=n)
        coef[0] = 0.0  # no global gain: the field changes shading, not overall brightness
        return {"order": self.ORDER, "coefficients": [float(v) for v in coef]}

    def _apply(self, u: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
        return u * bias_field(u.shape, p["coefficients"], p["order"]).astype(u.dtype)


class MriMotion(Transform):
    name = "mri_motion"
    family = "motion"
    RANGES = {
        "mild": {"degrees": 2.0, "translation_px": 2.0},
        "moderate": {"degrees": 5.0, "translation_px": 5.0},
        "aggressive": {"degrees": 10.0, "translation_px": 10.0},
    }

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        d, t = float(self.ranges["degrees"]), float(self.ranges["translation_px"])
        return {
            "angle_deg": float(rng.uniform(-d, d)),
            "shift": [float(v) for v in rng.uniform(-t, t, size=2)],
            "time": float(rng.uniform(0.55, 0.85)),  # share of phase-encode lines acquired before the move
            "axis": int(rng.integers(0, 2)),  # phase-encode axis of the plane
        }

    def _apply(self, u: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
        from scipy import fft

        moved = _rigid_plane(u, p["angle_deg"], p["shift"])
        axis = u.ndim - 2 + p["axis"]
        n = u.shape[axis]
        # centre-out acquisition: lines in order of |frequency|; the late ones see the moved object
        order = np.argsort(np.abs(fft.fftfreq(n)), kind="stable")
        late = np.zeros(n, dtype=bool)
        late[order[int(round(p["time"] * n)) :]] = True
        shape = [1] * u.ndim
        shape[axis] = n
        # k-space is linear: mixing lines of F(u) and F(moved) = F(u) + late * F(moved - u)
        k = fft.fft2(moved - u, axes=(-2, -1)) * late.reshape(shape)
        return np.abs(u + fft.ifft2(k, axes=(-2, -1)))


def _rigid_plane(u: np.ndarray, angle_deg: float, shift: list[float]) -> np.ndarray:
    h, w = u.shape[-2:]
    t = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    centre = np.array([(h - 1) / 2, (w - 1) / 2])
    offset = centre - rot @ centre - rot @ np.asarray(shift)
    out = np.empty_like(u)
    for idx in np.ndindex(*u.shape[:-2]):
        ndimage.affine_transform(u[idx], rot, offset=offset, order=1, mode="nearest", output=out[idx])
    return out


class MriGibbs(Transform):
    name = "mri_gibbs"
    family = "gibbs"
    RANGES = {
        "mild": {"keep": (0.7, 0.85)},
        "moderate": {"keep": (0.5, 0.7)},
        "aggressive": {"keep": (0.3, 0.5)},
    }

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        return {"keep": self.uniform(rng, "keep")}

    def _apply(self, u: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
        from scipy import fft

        h, w = u.shape[-2:]
        k = fft.rfft2(u, axes=(-2, -1))
        fr = np.abs(fft.fftfreq(h))[:, None]  # cycles per pixel, 0..0.5
        fc = np.abs(fft.rfftfreq(w))[None, :]
        keep = (fr <= p["keep"] * 0.5) & (fc <= p["keep"] * 0.5)
        return fft.irfft2(k * keep, s=(h, w), axes=(-2, -1))


class MriRician(Transform):
    name = "mri_rician"
    family = "rician"
    RANGES = {
        "mild": {"sd": (0.005, 0.015)},
        "moderate": {"sd": (0.02, 0.04)},
        "aggressive": {"sd": (0.05, 0.08)},
    }

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        return {"sd": self.uniform(rng, "sd"), "seed": subseed(rng)}

    def _apply(self, u: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
        g = np.random.default_rng(p["seed"])
        sd = np.float32(p["sd"])
        n1 = g.standard_normal(u.shape, dtype=np.float32) * sd
        n2 = g.standard_normal(u.shape, dtype=np.float32) * sd
        return np.hypot(u + n1, n2)


# ----------------------------------------------------------------------------- ultrasound


class UsSpeckle(Transform):
    name = "us_speckle"
    family = "speckle"
    RANGES = {
        "mild": {"strength": (0.2, 0.35)},
        "moderate": {"strength": (0.4, 0.6)},
        "aggressive": {"strength": (0.7, 1.0)},
    }

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        return {"strength": self.uniform(rng, "strength"), "correlation_px": 1.0, "seed": subseed(rng)}

    def _apply(self, u: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
        g = np.random.default_rng(p["seed"])
        re = _plane_filter(g.standard_normal(u.shape, dtype=np.float32), p["correlation_px"])
        im = _plane_filter(g.standard_normal(u.shape, dtype=np.float32), p["correlation_px"])
        amp = np.hypot(re, im)
        amp /= amp.mean()
        return u * (1 + p["strength"] * (amp - 1))


class UsAttenuation(Transform):
    name = "us_attenuation"
    family = "attenuation"
    RANGES = {
        "mild": {"alpha": (0.2, 0.5)},
        "moderate": {"alpha": (0.5, 1.0)},
        "aggressive": {"alpha": (1.0, 2.0)},
    }

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        return {"alpha": self.uniform(rng, "alpha")}

    def _apply(self, u: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
        depth = np.linspace(0.0, 1.0, u.shape[-2])[:, None]
        return u * np.exp(-p["alpha"] * depth)


class UsShadowing(Transform):
    name = "us_shadowing"
    family = "shadowing"
    RANGES = {
        "mild": {"darkening": (0.3, 0.5), "width": (0.05, 0.1)},
        "moderate": {"darkening": (0.5, 0.75), "width": (0.08, 0.15)},
        "aggressive": {"darkening": (0.75, 0.95), "width": (0.12, 0.25)},
    }

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        return {
            "darkening": self.uniform(rng, "darkening"),
            "width": self.uniform(rng, "width"),
            "centre": float(rng.uniform(0.2, 0.8)),
            "depth": float(rng.uniform(0.2, 0.6)),
        }

    def _apply(self, u: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
        h, w = u.shape[-2:]
        cols = np.linspace(0.0, 1.0, w)[None, :]
        rows = np.linspace(0.0, 1.0, h)[:, None]
        half = p["width"] / 2
        edge = max(0.01, 0.25 * half)
        across = 1 / (1 + np.exp((np.abs(cols - p["centre"]) - half) / edge))
        below = 1 / (1 + np.exp(-(rows - p["depth"]) / 0.01))
        return u * (1 - p["darkening"] * across * below)


FAMILIES: dict[str, tuple[type[Transform], ...]] = {
    "xray": (XrayExposure, XrayScatter, XrayNoise, XrayGrid),
    "ct": (CtCupping, CtMetal, CtStarvation, CtRings),
    "mri": (MriBiasField, MriMotion, MriGibbs, MriRician),
    "ultrasound": (UsSpeckle, UsAttenuation, UsShadowing),
}


def portable_xray(strength: str = "moderate") -> Composite:
    """A bedside (portable) radiograph: under-exposed, no anti-scatter grid (more scatter), fewer photons."""
    underexposed = {"mild": (0.8, 0.95), "moderate": (0.65, 0.85), "aggressive": (0.5, 0.7)}
    return Composite(
        "portable",
        [XrayExposure(strength, gain=underexposed[strength]), XrayScatter(strength), XrayNoise(strength)],
        strength,
    )


#: Composite families per modality (several effects at once), after the single-effect ones.
COMPOSITES = {"xray": {"portable": portable_xray}}


def modality_transforms(modality: str, strength: str = "moderate") -> dict[str, Transform]:
    """family name -> configured transform, for one modality (single effects, then composites)."""
    from fairaudit.augment._base import check_strength
    from fairaudit.errors import InputError, arg

    m = modality.strip().lower()
    if m not in FAMILIES:
        raise InputError(
            f"{arg('modality')} '{modality}': choose one of {', '.join(MODALITIES)}.", argument="modality"
        )
    strength = check_strength(strength)
    out: dict[str, Transform] = {cls.family: cls(strength) for cls in FAMILIES[m]}
    out.update({name: make(strength) for name, make in COMPOSITES.get(m, {}).items()})
    return out


def describe_params(params: Mapping[str, Any]) -> str:
    """Short human-readable parameter summary for captions."""
    if "steps" in params:
        return "; ".join(describe_params(step["params"]) for step in params["steps"])
    parts = []
    for k, v in params.items():
        if k in ("seed", "window", "coefficients", "angles", "signs", "radii", "amplitudes"):
            continue
        if isinstance(v, float):
            parts.append(f"{k}={v:.3g}")
        elif isinstance(v, int | str):
            parts.append(f"{k}={v}")
    return ", ".join(parts)
