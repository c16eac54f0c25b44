"""Preprocessing: intensity normalization and spatial standardization, with recorded parameters.

    from fairaudit.preprocess import Normalizer, SiteNormalizer, inverse, transform

Every step returns the parameters it used (`NormParams`, geometry records), so the
normalize sidecars state exactly what was done and the affine methods can be inverted.
Imports numpy/scipy/skimage only (no torch, no pydicom).
"""

from fairaudit.preprocess._normalize import (
    INVERTIBLE,
    MAD_TO_SD,
    METHODS,
    Normalizer,
    NormParams,
    SiteNormalizer,
    counted,
    fit,
    fit_values,
    inverse,
    normalize,
    transform,
)
from fairaudit.preprocess._spatial import (
    RigidResult,
    align_landmarks,
    align_rigid,
    apply_rigid,
    parse_shape,
    register_rigid,
    resample_to_spacing,
    resize_to_shape,
    restore_shape,
)

__all__ = [
    "INVERTIBLE",
    "MAD_TO_SD",
    "METHODS",
    "NormParams",
    "Normalizer",
    "RigidResult",
    "SiteNormalizer",
    "align_landmarks",
    "align_rigid",
    "apply_rigid",
    "counted",
    "fit",
    "fit_values",
    "inverse",
    "normalize",
    "parse_shape",
    "register_rigid",
    "resample_to_spacing",
    "resize_to_shape",
    "restore_shape",
    "transform",
]
