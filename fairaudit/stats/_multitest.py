"""Multiple-testing correction, written once for every family fairaudit reports.

The audit's comparison rows, discovered slices, baseline comparisons and the image-group
tests of normalize and augment-check are each one family (which rows belong to it is the
caller's choice); this module only adjusts the p-values of a family together, with
statsmodels' `multipletests` (docs/statistics.md, "The family of tests").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from statsmodels.stats.multitest import multipletests


def adjust_pvalues(pvalues: Sequence[float | None], method: str, alpha: float = 0.05) -> list[float | None]:
    """The family's adjusted p-values, in order; None where a row was not tested.

    Untested rows (None) are left out of the family, so they do not raise the others'
    adjustment. `method` is a statsmodels name ("holm", "fdr_bh", "bonferroni") or "none"
    (p-values unchanged). Adjusted values are capped at 1, as statsmodels caps them.
    """
    tested = [i for i, p in enumerate(pvalues) if p is not None]
    out: list[float | None] = [None] * len(pvalues)
    if not tested:
        return out
    p = np.array([pvalues[i] for i in tested], dtype=float)
    adjusted = p if method == "none" else multipletests(p, alpha=alpha, method=method)[1]
    for i, q in zip(tested, adjusted, strict=True):
        out[i] = float(min(1.0, q))
    return out


def adjust_family(rows: list[dict[str, Any]], method: str, alpha: float) -> None:
    """Set "p_adjusted" and "significant" on each row dict in place (one family).

    A row without a "p_value" (or with None) gets p_adjusted None and significant False;
    significant means p_adjusted < alpha.
    """
    adjusted = adjust_pvalues([r.get("p_value") for r in rows], method, alpha)
    for r, q in zip(rows, adjusted, strict=True):
        r["p_adjusted"] = q
        r["significant"] = bool(q is not None and q < alpha)
