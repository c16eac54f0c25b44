"""Intensity normalization with recorded, invertible parameters.

Every method is an affine map of the (optionally log-transformed) intensities,
``y = (f(x) - loc) / scale``, except CLAHE, whose output depends on local histograms.
The parameters of each transform are a `NormParams` record: enough to redo it exactly
and, for the affine methods, to invert it (``f^-1(y * scale + loc)``).

The log transform is the signed ``log1p`` about an offset c (the smallest counted value
at fit time): ``f(x) = sign(x - c) * log1p(|x - c|)``. It is monotonic and exactly
invertible for every real x, so an image from an unseen site with values below c still
round-trips (a plain ``log1p(x - c)`` would give NaN there).

Which pixels count: PixelPaddingValue pixels (the decoder's ``padding_mask``) never do,
and with a region-of-interest mask only pixels inside it do. The transform itself is
applied to every pixel, so the output has the input's shape and inverts everywhere.

Computation is in float64; `transform` returns float64 for float64 input and float32
otherwise (what the CLI writes).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fairaudit.errors import InputError, arg

METHODS: tuple[str, ...] = ("adaptive_histogram", "percentile", "zscore", "robust_zscore")
INVERTIBLE: frozenset[str] = frozenset({"percentile", "zscore", "robust_zscore"})
MAD_TO_SD = 1.4826  # consistency constant: 1.4826 x MAD estimates the SD of a normal sample
DEFAULT_PERCENTILES = (1.0, 99.0)
DEFAULT_CLIP_LIMIT = 0.01
# Values kept per site when pooling pixels for quantiles; beyond it each image contributes
# a seeded uniform subsample in proportion to its counted pixels.
POOL_CAP = 2**25


@dataclass(frozen=True)
class NormParams:
    """The exact parameters of one normalization (a sidecar holds `to_dict()`)."""

    method: str
    loc: float
    scale: float
    log_transform: bool = False
    log_offset: float = 0.0
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES
    clip_limit: float | None = None
    kernel_size: int | None = None
    nbins: int = 256
    n_pixels: int = 0  # counted pixels the statistics came from
    source: str = "image"  # "image" | "site:<name>" | "global" | "global (unseen site)"
    note: str = ""

    @property
    def invertible(self) -> bool:
        return self.method in INVERTIBLE

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["percentiles"] = list(self.percentiles)
        d["invertible"] = self.invertible
        return d

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> NormParams:
        keys = {f for f in NormParams.__dataclass_fields__}
        kw = {k: v for k, v in d.items() if k in keys}
        if "percentiles" in kw:
            kw["percentiles"] = tuple(float(v) for v in kw["percentiles"])
        return NormParams(**kw)


def check_method(method: str) -> str:
    m = method.strip().lower()
    if m not in METHODS:
        raise InputError(
            f"{arg('method')} '{method}': choose one of {', '.join(METHODS)}.", argument="method"
        )
    return m


def counted(image: np.ndarray, padding_mask: np.ndarray | None, roi: np.ndarray | None) -> np.ndarray:
    """Boolean mask of the pixels statistics may use: not padding, inside the ROI."""
    keep = np.ones(image.shape, dtype=bool)
    if padding_mask is not None:
        if padding_mask.shape != image.shape:
            raise ValueError(f"padding mask shape {padding_mask.shape} != image shape {image.shape}")
        keep &= ~padding_mask.astype(bool)
    if roi is not None:
        if roi.shape != image.shape:
            raise ValueError(f"ROI mask shape {roi.shape} != image shape {image.shape}")
        keep &= roi.astype(bool)
    return keep


def signed_log(x: np.ndarray, offset: float) -> np.ndarray:
    d = np.asarray(x, dtype=np.float64) - offset
    return np.sign(d) * np.log1p(np.abs(d))


def signed_exp(y: np.ndarray, offset: float) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    return np.sign(y) * np.expm1(np.abs(y)) + offset


def _location_scale(
    values: np.ndarray, method: str, percentiles: tuple[float, float]
) -> tuple[float, float, str]:
    """(loc, scale, note) of counted values; a zero scale becomes 1 with a note."""
    if values.size == 0:
        return 0.0, 1.0, "no counted pixels: identity"
    if method == "percentile":
        lo, hi = np.percentile(values, percentiles)
        loc, scale = float(lo), float(hi - lo)
    elif method == "zscore":
        loc, scale = float(values.mean()), float(values.std())
    elif method == "robust_zscore":
        med = float(np.median(values))
        loc, scale = med, MAD_TO_SD * float(np.median(np.abs(values - med)))
    else:  # adaptive_histogram: rescale min..max to 0..1 before CLAHE
        lo, hi = float(values.min()), float(values.max())
        loc, scale = lo, hi - lo
    if not math.isfinite(scale) or scale <= 0:
        return loc, 1.0, "no spread among counted pixels: scale set to 1"
    return loc, scale, ""


def fit_values(
    values: np.ndarray,
    method: str,
    *,
    log_transform: bool = False,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    clip_limit: float = DEFAULT_CLIP_LIMIT,
    kernel_size: int | None = None,
    source: str = "image",
) -> NormParams:
    """Parameters from a flat array of counted intensities (one image or a pooled site)."""
    method = check_method(method)
    v = np.asarray(values, dtype=np.float64).ravel()
    offset = float(v.min()) if (log_transform and v.size) else 0.0
    if log_transform:
        v = signed_log(v, offset)
    loc, scale, note = _location_scale(v, method, percentiles)
    clahe = method == "adaptive_histogram"
    return NormParams(
        method=method,
        loc=loc,
        scale=scale,
        log_transform=log_transform,
        log_offset=offset,
        percentiles=tuple(float(p) for p in percentiles),
        clip_limit=float(clip_limit) if clahe else None,
        kernel_size=kernel_size if clahe else None,
        n_pixels=int(v.size),
        source=source,
        note=note,
    )


def fit(
    image: np.ndarray,
    method: str,
    *,
    padding_mask: np.ndarray | None = None,
    roi: np.ndarray | None = None,
    **kwargs: Any,
) -> NormParams:
    """Parameters of one image from its counted pixels (padding never, ROI only when given)."""
    keep = counted(image, padding_mask, roi)
    return fit_values(np.asarray(image)[keep], method, **kwargs)


def _clahe(unit: np.ndarray, p: NormParams) -> np.ndarray:
    from skimage.exposure import equalize_adapthist

    clipped = np.clip(unit, 0.0, 1.0)
    kw = {"clip_limit": p.clip_limit, "nbins": p.nbins, "kernel_size": p.kernel_size}
    if clipped.ndim == 2:
        return equalize_adapthist(clipped, **kw)
    if clipped.ndim == 3:  # per slice: slices of a volume can differ in anatomy and exposure
        return np.stack([equalize_adapthist(s, **kw) for s in clipped])
    raise ValueError(f"adaptive_histogram needs a 2-D or 3-D image, got shape {unit.shape}")


def transform(image: np.ndarray, params: NormParams) -> np.ndarray:
    """Apply recorded parameters to every pixel."""
    x = np.asarray(image)
    out_dtype = np.float64 if x.dtype == np.float64 else np.float32
    v = signed_log(x, params.log_offset) if params.log_transform else x.astype(np.float64)
    y = (v - params.loc) / params.scale
    if params.method == "adaptive_histogram":
        y = _clahe(y, params)
    return y.astype(out_dtype, copy=False)


def inverse(normalized: np.ndarray, params: NormParams) -> np.ndarray:
    """Undo an affine normalization exactly (float64 out); CLAHE has no inverse."""
    if not params.invertible:
        raise ValueError(f"method {params.method} is not invertible (its output depends on local histograms)")
    v = np.asarray(normalized, dtype=np.float64) * params.scale + params.loc
    return signed_exp(v, params.log_offset) if params.log_transform else v


def normalize(
    image: np.ndarray,
    method: str,
    *,
    padding_mask: np.ndarray | None = None,
    roi: np.ndarray | None = None,
    **kwargs: Any,
) -> tuple[np.ndarray, NormParams]:
    """Fit on one image and transform it: (normalized image, parameters)."""
    params = fit(image, method, padding_mask=padding_mask, roi=roi, **kwargs)
    return transform(image, params), params


@dataclass
class Normalizer:
    """A configured method (MONAI style: parameters in the constructor, callable on an image)."""

    method: str
    log_transform: bool = False
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES
    clip_limit: float = DEFAULT_CLIP_LIMIT
    kernel_size: int | None = None

    def __post_init__(self) -> None:
        self.method = check_method(self.method)
        lo, hi = self.percentiles
        if not 0 <= lo < hi <= 100:
            raise InputError(f"percentiles must satisfy 0 <= low < high <= 100, got {self.percentiles}.")
        if not 0 < self.clip_limit <= 1:
            raise InputError(
                f"{arg('clip_limit')} must be in (0, 1], got {self.clip_limit}.", argument="clip_limit"
            )

    def options(self) -> dict[str, Any]:
        return {
            "log_transform": self.log_transform,
            "percentiles": self.percentiles,
            "clip_limit": self.clip_limit,
            "kernel_size": self.kernel_size,
        }

    def fit_values(self, values: np.ndarray, source: str = "image") -> NormParams:
        return fit_values(values, self.method, source=source, **self.options())

    def __call__(
        self, image: np.ndarray, padding_mask: np.ndarray | None = None, roi: np.ndarray | None = None
    ) -> tuple[np.ndarray, NormParams]:
        keep = counted(image, padding_mask, roi)
        params = self.fit_values(np.asarray(image)[keep])
        return transform(image, params), params


@dataclass
class SiteNormalizer:
    """Per-site normalization: statistics pooled over all of a site's images.

    `add(site, image, padding_mask, roi)` for every image, then `finalize()`; a site seen
    in fitting gets its pooled parameters, an unseen one (or None) the global parameters
    (every added image pooled, including those without a site). Saved and loaded as JSON (`save`, `load`).
    """

    normalizer: Normalizer
    seed: int = 0
    pool_cap: int = POOL_CAP
    sites: dict[str, NormParams] = field(default_factory=dict)
    global_params: NormParams | None = None
    _pools: dict[str, list[np.ndarray]] = field(default_factory=dict, repr=False)
    _counts: dict[str, int] = field(default_factory=dict, repr=False)
    _n_images: dict[str, int] = field(default_factory=dict)
    _rng: np.random.Generator | None = field(default=None, repr=False)

    def add(
        self,
        site: str | None,
        image: np.ndarray,
        padding_mask: np.ndarray | None = None,
        roi: np.ndarray | None = None,
    ) -> None:
        """Pool an image's counted pixels into its site (None: the global statistics only)."""
        values = np.asarray(image, dtype=np.float64)[counted(image, padding_mask, roi)]
        self._pools.setdefault(site, []).append(values.astype(np.float32))
        self._counts[site] = self._counts.get(site, 0) + values.size
        if site is not None:
            self._n_images[site] = self._n_images.get(site, 0) + 1

    def _pooled(self, parts: Iterable[np.ndarray], total: int) -> np.ndarray:
        parts = list(parts)
        if total <= self.pool_cap:
            return np.concatenate(parts) if parts else np.empty(0)
        if self._rng is None:
            self._rng = np.random.default_rng(self.seed)
        share = self.pool_cap / total
        return np.concatenate(
            [p[self._rng.random(p.size) < share] for p in parts]
        )  # each value kept with the same probability: an unbiased sample of the pool

    def finalize(self) -> SiteNormalizer:
        for site, parts in self._pools.items():
            if site is None:
                continue
            self.sites[site] = self.normalizer.fit_values(
                self._pooled(parts, self._counts[site]), source=f"site:{site}"
            )
        everything = [p for parts in self._pools.values() for p in parts]
        self.global_params = self.normalizer.fit_values(
            self._pooled(everything, sum(self._counts.values())), source="global"
        )
        self._pools.clear()
        return self

    def params_for(self, site: str | None) -> NormParams:
        if self.global_params is None:
            raise RuntimeError("SiteNormalizer.finalize() must run before params_for()")
        if site is not None and site in self.sites:
            return self.sites[site]
        d = self.global_params.to_dict()
        d["source"] = "global (unseen site)"
        return NormParams.from_dict(d)

    def __call__(self, image: np.ndarray, site: str | None) -> tuple[np.ndarray, NormParams]:
        p = self.params_for(site)
        return transform(image, p), p

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "fairaudit.site_normalizer",
            "version": 1,
            "method": self.normalizer.method,
            "options": {**self.normalizer.options(), "percentiles": list(self.normalizer.percentiles)},
            "n_images": dict(self._n_images),
            "sites": {k: v.to_dict() for k, v in self.sites.items()},
            "global": self.global_params.to_dict() if self.global_params else None,
        }

    def save(self, path: Path | str) -> Path:
        path = Path(path)
        from fairaudit._util.atomic import atomic_write_bytes

        atomic_write_bytes(
            path, (json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n").encode("utf-8")
        )
        return path

    @staticmethod
    def load(path: Path | str) -> SiteNormalizer:
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read a saved site normalizer: {exc}", file=str(path)) from None
        if d.get("kind") != "fairaudit.site_normalizer":
            raise InputError("is not a saved fairaudit site normalizer.", file=str(path))
        opts = d["options"]
        norm = Normalizer(
            method=d["method"],
            log_transform=bool(opts["log_transform"]),
            percentiles=tuple(opts["percentiles"]),
            clip_limit=float(opts["clip_limit"]),
            kernel_size=opts.get("kernel_size"),
        )
        out = SiteNormalizer(norm)
        out.sites = {k: NormParams.from_dict(v) for k, v in d["sites"].items()}
        out.global_params = NormParams.from_dict(d["global"]) if d.get("global") else None
        out._n_images = dict(d.get("n_images", {}))
        return out
