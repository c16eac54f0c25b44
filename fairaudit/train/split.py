"""Patient-level train/validation split, stratified by label and attribute.

Every image of a patient goes to the same side. Patients are grouped into strata (label
x attribute groups; for segmentation, attribute groups only) by their first image; within
each stratum a seeded shuffle sends round(fraction * n) patients to validation (at least
one when the stratum has two or more). scikit-learn's StratifiedGroupKFold would do
similar, but scikit-learn is not a runtime dependency.
"""

from __future__ import annotations

import numpy as np


def patient_split(
    patients: np.ndarray,
    strata: np.ndarray,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices) over cases; no patient on both sides."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, not {val_fraction}.")
    patients = np.asarray(patients).astype(str)
    strata = np.asarray(strata).astype(str)
    first: dict[str, str] = {}
    for p, s in zip(patients, strata, strict=True):
        first.setdefault(p, s)
    by_stratum: dict[str, list[str]] = {}
    for p in sorted(first):
        by_stratum.setdefault(first[p], []).append(p)
    rng = np.random.default_rng(seed)
    val_patients: set[str] = set()
    for stratum in sorted(by_stratum):
        members = by_stratum[stratum]
        order = rng.permutation(len(members))
        k = int(round(val_fraction * len(members)))
        if len(members) >= 2:
            k = min(max(k, 1), len(members) - 1)
        val_patients.update(members[i] for i in order[:k])
    is_val = np.array([p in val_patients for p in patients])
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def strata_of(attributes: dict[str, np.ndarray], labels: np.ndarray | None) -> np.ndarray:
    """One stratum name per case: label (when given) and every attribute's group."""
    parts = [np.asarray(v).astype(str) for v in attributes.values()]
    if labels is not None:
        parts.insert(0, np.asarray(labels).astype(int).astype(str))
    if not parts:
        raise ValueError("no strata: pass labels or attributes")
    out = parts[0]
    for p in parts[1:]:
        out = np.char.add(np.char.add(out, "|"), p)
    return out
