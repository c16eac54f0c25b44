"""The transform protocol: MONAI-style callables with TorchIO-style records.

A transform holds its configuration (strength and parameter ranges) from its
constructor. Calling it with an image and a seeded ``numpy.random.Generator`` draws the
parameters (`draw`), applies them (`apply`, deterministic) and returns the image, the
mask (if one was passed) and the record of what was drawn. Random fields (noise,
displacements) are not stored: the record holds the integer seed they are drawn from,
so `transform.apply(image, record.params)` reproduces the result exactly. Nothing reads
numpy's global random state.

Intensity effects work (in float32, float64 for float64 input) on the image in a unit window: ``u = (x - lo) / (hi - lo)`` with
lo, hi the 0.5th and 99.5th percentiles of the input (recorded), and map back to the
input's units afterwards, so one strength means the same on 12-bit radiographs, CT
values and 8-bit ultrasound. The last two axes are the image plane; a leading axis (a
volume's slices) is carried along.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from fairaudit.errors import InputError, arg

STRENGTHS: tuple[str, ...] = ("mild", "moderate", "aggressive")


def check_strength(strength: str) -> str:
    s = str(strength).strip().lower()
    if s not in STRENGTHS:
        raise InputError(
            f"{arg('strength')} '{strength}': choose one of {', '.join(STRENGTHS)}.", argument="strength"
        )
    return s


@dataclass(frozen=True)
class Record:
    """What one call drew: enough to reproduce it with `apply`."""

    transform: str
    family: str
    strength: str
    params: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "transform": self.transform,
            "family": self.family,
            "strength": self.strength,
            "params": self.params,
        }


@dataclass
class Augmented:
    image: np.ndarray
    mask: np.ndarray | None
    records: list[Record] = field(default_factory=list)


def subseed(rng: np.random.Generator) -> int:
    """An integer seed for a random field, drawn from the caller's generator (and recorded)."""
    return int(rng.integers(0, 2**63 - 1))


# Above this many values the window is estimated from an evenly strided subsample (the
# recorded window then reproduces the result exactly; percentiles of 2**20 values are
# within a fraction of a grey level of the full ones).
_WINDOW_SAMPLE = 2**20


def unit_window(image: np.ndarray) -> tuple[float, float]:
    flat = np.asarray(image).ravel()
    if flat.size > 2 * _WINDOW_SAMPLE:
        flat = flat[:: flat.size // _WINDOW_SAMPLE]
    lo, hi = np.percentile(flat, [0.5, 99.5])
    lo, hi = float(lo), float(hi)
    if hi <= lo:
        hi = lo + 1.0
    return lo, hi


class Transform:
    """Base class: subclasses set `name`, `family`, `RANGES` and implement `draw` and `_apply`."""

    name: ClassVar[str] = "transform"
    family: ClassVar[str] = "transform"
    intensity: ClassVar[bool] = True
    #: strength -> parameter -> (low, high) range drawn uniformly (or a fixed value)
    RANGES: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    def __init__(self, strength: str = "moderate", **overrides: Any) -> None:
        self.strength = check_strength(strength)
        self.ranges = {**self.RANGES[self.strength], **overrides}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(strength={self.strength!r})"

    def uniform(self, rng: np.random.Generator, key: str) -> float:
        r = self.ranges[key]
        if isinstance(r, tuple | list):
            return float(rng.uniform(r[0], r[1]))
        return float(r)

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        raise NotImplementedError

    def _apply(self, u: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
        raise NotImplementedError

    def apply(
        self, image: np.ndarray, params: Mapping[str, Any], mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Deterministic: the same image and params give the same output."""
        x = np.asarray(image)
        if x.ndim not in (2, 3):
            raise ValueError(f"{self.name}: expected a 2-D image or a 3-D volume, got shape {x.shape}")
        lo, hi = params.get("window") or unit_window(x)
        work = np.float64 if x.dtype == np.float64 else np.float32  # float32 halves memory traffic
        scale = work(hi - lo)
        u = (x.astype(work) - work(lo)) / scale
        out = np.asarray(self._apply(u, params)) * scale + work(lo)
        return out.astype(work, copy=False), mask

    def __call__(
        self, image: np.ndarray, rng: np.random.Generator, mask: np.ndarray | None = None
    ) -> Augmented:
        if not isinstance(rng, np.random.Generator):
            raise TypeError(
                "pass a numpy.random.Generator (np.random.default_rng(seed)); the global state is never used"
            )
        params = self.draw(rng, tuple(np.shape(image)))
        if self.intensity:
            params = {"window": list(unit_window(np.asarray(image))), **params}
        out, m = self.apply(image, params, mask)
        return Augmented(out, m, [Record(self.name, self.family, self.strength, params)])


class Composite(Transform):
    """Several transforms applied in order as one family, recorded as one record of steps.

    `apply(image, record.params)` replays every step, so a composite reproduces like any
    transform. Geometric steps make it non-intensity (masks follow)."""

    def __init__(self, family: str, transforms: list[Transform], strength: str = "moderate") -> None:
        self.strength = check_strength(strength)
        self.family = family  # type: ignore[misc]  # an instance's family, not the class's
        self.name = f"composite_{family}"  # type: ignore[misc]
        self.transforms = list(transforms)
        self.ranges = {t.name: t.ranges for t in self.transforms}
        self.intensity = all(t.intensity for t in self.transforms)  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"Composite({self.family!r}, {self.transforms!r})"

    def apply(
        self, image: np.ndarray, params: Mapping[str, Any], mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        for t, step in zip(self.transforms, params["steps"], strict=True):
            image, mask = t.apply(image, step["params"], mask)
        return image, mask

    def __call__(
        self, image: np.ndarray, rng: np.random.Generator, mask: np.ndarray | None = None
    ) -> Augmented:
        steps = []
        for t in self.transforms:
            res = t(image, rng, mask)
            image, mask = res.image, res.mask
            steps.append(res.records[0].to_dict())
        return Augmented(image, mask, [Record(self.name, self.family, self.strength, {"steps": steps})])


class Compose:
    """Several transforms in order; records concatenate."""

    def __init__(self, transforms: list[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(
        self, image: np.ndarray, rng: np.random.Generator, mask: np.ndarray | None = None
    ) -> Augmented:
        records: list[Record] = []
        for t in self.transforms:
            res = t(image, rng, mask)
            image, mask = res.image, res.mask
            records += res.records
        return Augmented(image, mask, records)

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


def plane_coords(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Row and column coordinates of the image plane in [-1, 1], broadcastable to `shape`."""
    h, w = shape[-2], shape[-1]
    r = np.linspace(-1.0, 1.0, h)[:, None]
    c = np.linspace(-1.0, 1.0, w)[None, :]
    return r, c
