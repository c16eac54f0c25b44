"""The group value of a record whose attribute is missing (docs/statistics.md, "Missing values").

Such a record stays in the audit: in the overall analysis and in every attribute's analysis
that does not need the missing value; only the groups of that attribute (and of the
intersections it is part of) leave it out. Without `--missing-as-group` the join gives it
this value (it starts with a NUL, which no group name of a CSV file starts with), and the
statistics skip it as a group.
"""

from __future__ import annotations

import numpy as np

ABSENT = "\x00absent"


def present(values: np.ndarray) -> np.ndarray:
    """True where a record has a value of the attribute (a group it belongs to)."""
    return np.asarray(values).astype(str) != ABSENT


def combine(parts: list[np.ndarray], sep: str) -> np.ndarray:
    """An intersection's group per record (`sep`-joined), ABSENT where any part is."""
    combined = parts[0].astype(object)
    for p in parts[1:]:
        combined = combined + sep + p.astype(object)
    known = np.logical_and.reduce([present(p) for p in parts])
    return np.where(known, combined, ABSENT).astype(str)


def absent_notes(reasons: np.ndarray, included: np.ndarray, lacking: dict[str, np.ndarray]) -> np.ndarray:
    """manifest.csv's reason of each included record, with a note of the attributes it lacks
    (`lacking`: attribute -> True where the record has no value): which groups leave it out,
    "not in: sex groups (missing sex)", after any note already there."""
    out = np.asarray(reasons, dtype=object).copy()
    if not any(m.any() for m in lacking.values()):
        return out
    for i in np.flatnonzero(np.asarray(included) & np.logical_or.reduce(list(lacking.values()))):
        note = "not in: " + "; ".join(f"{a} groups (missing {a})" for a, m in lacking.items() if m[i])
        out[i] = f"{out[i]}; {note}" if out[i] else note
    return out
