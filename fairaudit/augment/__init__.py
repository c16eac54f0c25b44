"""Physics-informed and geometric augmentations with recorded, reproducible parameters.

    import numpy as np
    from fairaudit.augment import Geometric, modality_transforms

    rng = np.random.default_rng(0)
    for family, t in modality_transforms("xray", "moderate").items():
        res = t(image, rng)            # res.image, res.mask, res.records
        again, _ = t.apply(image, res.records[0].params)   # the same image

numpy and scipy only (no torch). See fairaudit.augment._physics for what each effect does.
"""

from fairaudit.augment._base import (
    STRENGTHS,
    Augmented,
    Compose,
    Composite,
    Record,
    Transform,
    check_strength,
)
from fairaudit.augment._geometric import Geometric
from fairaudit.augment._physics import (
    FAMILIES,
    MODALITIES,
    CtCupping,
    CtMetal,
    CtRings,
    CtStarvation,
    MriBiasField,
    MriGibbs,
    MriMotion,
    MriRician,
    UsAttenuation,
    UsShadowing,
    UsSpeckle,
    XrayExposure,
    XrayGrid,
    XrayNoise,
    XrayScatter,
    bias_field,
    modality_transforms,
    portable_xray,
)

__all__ = [
    "FAMILIES",
    "MODALITIES",
    "STRENGTHS",
    "Augmented",
    "Compose",
    "Composite",
    "CtCupping",
    "CtMetal",
    "CtRings",
    "CtStarvation",
    "Geometric",
    "MriBiasField",
    "MriGibbs",
    "MriMotion",
    "MriRician",
    "Record",
    "Transform",
    "UsAttenuation",
    "UsShadowing",
    "UsSpeckle",
    "XrayExposure",
    "XrayGrid",
    "XrayNoise",
    "XrayScatter",
    "bias_field",
    "check_strength",
    "modality_transforms",
    "portable_xray",
]
