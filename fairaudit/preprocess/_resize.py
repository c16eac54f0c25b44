"""Resizing as skimage.transform.resize does it, at the cost of two small matrix products.

`skimage.transform.resize(image, shape, order, mode="edge", anti_aliasing=...,
preserve_range=True)` is a Gaussian anti-aliasing filter (sigma = (factor - 1) / 2 per
axis) followed by `scipy.ndimage.zoom(..., grid_mode=True)`. Both are linear and act on
each axis separately, so the whole resize of an (H, W) image to (H', W') is
`R_h @ image @ R_w.T` with an (H', H) and a (W', W) matrix. Built once per pair of sizes
(by applying scipy's own filter and zoom to an identity matrix, so the weights are
scipy's) and cached, the resize of a 1024 x 1024 radiograph to 64 x 64 is one BLAS product
of (64 x 1024) by (1024 x 1024): a few milliseconds, where the full-image Gaussian took
about 54 ms (docs/models.md, "Preprocessing"). Results equal skimage's up to float
rounding (tests/unit/preprocess/test_resize.py).

Nearest-neighbour resizing (order 0: masks, label maps) has one 1 per matrix row, so it is
done as indexing with the row and column each output pixel takes (1.4 ms to restore a
64 x 64 label map to 1024 x 1024).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

#: Matrices kept (per axis, input and output length, order, filter): the sizes of a cohort.
_CACHE_SIZE = 64


@lru_cache(maxsize=_CACHE_SIZE)
def _axis_matrix(n_in: int, n_out: int, order: int, anti_alias: bool, dtype: str = "f8") -> np.ndarray:
    """The (n_out, n_in) matrix of one axis: zoom(order) after the Gaussian filter.

    The zoom's matrix is scipy's zoom of an identity (n_out x n_in values); the filter's rows
    are only built for the (at most 2 n_out) inputs the zoom reads, from scipy's own kernel
    with the edge rule ("nearest": an index beyond the ends takes the end's value), so a
    3000-pixel axis costs milliseconds, not the seconds of filtering a 3000 x 3000 identity.
    """
    from scipy import ndimage

    factor = n_in / n_out
    zoom = ndimage.zoom(
        np.eye(n_in, dtype=np.float64), (1 / factor, 1.0), order=order, mode="nearest", grid_mode=True
    )
    if zoom.shape != (n_out, n_in):  # zoom rounds the output length: it never should differ here
        raise ValueError(f"cannot resize an axis of {n_in} to {n_out}")
    if anti_alias and factor > 1:
        weights = _gaussian_weights((factor - 1) / 2)
        radius = len(weights) // 2
        used = np.flatnonzero(zoom.any(axis=0))
        rows = np.zeros((len(used), n_in))
        cols = np.clip(used[:, None] + np.arange(-radius, radius + 1)[None, :], 0, n_in - 1)
        np.add.at(
            rows, (np.repeat(np.arange(len(used)), len(weights)), cols.ravel()), np.tile(weights, len(used))
        )
        zoom = zoom[:, used] @ rows
    out = zoom.astype(dtype)
    out.setflags(write=False)
    return out


def _gaussian_weights(sigma: float) -> np.ndarray:
    """scipy.ndimage.gaussian_filter1d's kernel for `sigma` (truncate 4), read off its
    response to a unit impulse so the weights are exactly scipy's."""
    from scipy import ndimage

    radius = int(4.0 * sigma + 0.5)
    impulse = np.zeros(2 * radius + 1)
    impulse[radius] = 1.0
    return ndimage.gaussian_filter1d(impulse, sigma, mode="constant")[::-1]


@lru_cache(maxsize=_CACHE_SIZE)
def _axis_index(n_in: int, n_out: int) -> np.ndarray:
    """For order 0: the input index each of the n_out outputs takes."""
    index = np.argmax(_axis_matrix(n_in, n_out, 0, False), axis=1)
    index.setflags(write=False)
    return index


def resize(image: np.ndarray, shape: Sequence[int], *, order: int, anti_aliasing: bool) -> np.ndarray:
    """`image` resized to `shape`, as skimage.transform.resize with mode="edge" and
    preserve_range=True (order 1 clips to the input's range, as skimage does).

    Order 0 keeps the dtype; order 1 computes in the image's float type (float32 for
    float32 and integers up to 16 bits, else float64).
    """
    if order not in (0, 1):
        raise ValueError(f"order must be 0 or 1, not {order}")
    shape = tuple(int(s) for s in shape)
    if len(shape) != image.ndim or any(s < 1 for s in shape):
        raise ValueError(f"cannot resize an image of shape {image.shape} to {shape}")
    if shape == image.shape:
        return image.copy()
    if order == 0:  # one gather per axis: twice as fast as one np.ix_ gather at 1024 x 1024
        out = image
        for axis, (n, m) in enumerate(zip(image.shape, shape, strict=True)):
            if n != m:
                out = out[(slice(None),) * axis + (_axis_index(n, m),)]
        return out
    dtype = np.float32 if image.dtype in (np.float32, np.float16) or image.itemsize <= 2 else np.float64
    out = np.asarray(image, dtype=dtype)
    low, high = (out.min(), out.max()) if out.size else (0, 0)
    for axis, (n, m) in enumerate(zip(image.shape, shape, strict=True)):
        if n == m:
            continue
        matrix = _axis_matrix(n, m, 1, anti_aliasing, np.dtype(dtype).str)
        out = np.moveaxis(np.tensordot(matrix, out, axes=([1], [axis])), 0, axis)
    return np.clip(out, low, high, out=np.ascontiguousarray(out))
