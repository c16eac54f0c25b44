"""Per-image intensity statistics that normalization and augmentation shift.

mean, std (population), p1, p99 (numpy's linear percentiles), entropy (bits, of a
256-bin histogram over the image's own counted range: unchanged by any affine map, so it
moves only under CLAHE, the log transform or augmentation), and noise: Immerkaer's
(1996) estimate of the standard deviation of additive Gaussian noise, from the image
convolved with the 3x3 Laplacian-difference kernel (insensitive to smooth structure),
``sigma = sqrt(pi / 2) / 6 * mean |I * N|`` over pixels whose 3x3 neighbourhood is counted.
3-D images: each statistic over all counted voxels, noise averaged over slices.
"""

from __future__ import annotations

import math

import numpy as np

STATISTICS: tuple[str, ...] = ("mean", "std", "p1", "p99", "entropy", "noise")
_KERNEL = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])


def entropy_bits(values: np.ndarray, bins: int = 256) -> float:
    if values.size == 0:
        return float("nan")
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return 0.0
    counts, _ = np.histogram(values, bins=bins, range=(lo, hi))
    p = counts[counts > 0] / values.size
    return float(-(p * np.log2(p)).sum())


def noise_sigma(image: np.ndarray, keep: np.ndarray | None = None) -> float:
    """Immerkaer's fast noise estimate (2-D; 3-D: mean over slices)."""
    from scipy.ndimage import binary_erosion, convolve

    x = np.asarray(image, dtype=np.float64)
    if x.ndim == 3:
        vals = [
            noise_sigma(s, None if keep is None else k)
            for s, k in zip(x, keep if keep is not None else [None] * len(x), strict=True)
        ]
        vals = [v for v in vals if math.isfinite(v)]
        return float(np.mean(vals)) if vals else float("nan")
    if x.ndim != 2 or min(x.shape) < 3:
        return float("nan")
    resp = np.abs(convolve(x, _KERNEL, mode="reflect"))
    inner = np.zeros(x.shape, dtype=bool)
    inner[1:-1, 1:-1] = True
    if keep is not None:
        inner &= binary_erosion(keep, structure=np.ones((3, 3), dtype=bool), border_value=0)
    if not inner.any():
        return float("nan")
    return float(math.sqrt(math.pi / 2.0) / 6.0 * resp[inner].mean())


def image_statistics(image: np.ndarray, keep: np.ndarray | None = None) -> dict[str, float]:
    """The STATISTICS of the counted pixels (`keep`; all when None)."""
    x = np.asarray(image, dtype=np.float64)
    v = x[keep] if keep is not None else x.ravel()
    if v.size == 0:
        return {k: float("nan") for k in STATISTICS}
    p1, p99 = np.percentile(v, [1.0, 99.0])
    return {
        "mean": float(v.mean()),
        "std": float(v.std()),
        "p1": float(p1),
        "p99": float(p99),
        "entropy": entropy_bits(v),
        "noise": noise_sigma(x, keep),
    }
