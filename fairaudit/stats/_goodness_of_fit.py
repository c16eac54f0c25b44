"""Does the audited sample's make-up match the intended population? One goodness-of-fit test
per attribute (docs/reports.md, "Who is in the data").

Pearson's chi-square (scipy.stats.chisquare) when every expected count is at least 5
(Cochran's rule); below that the exact multinomial test, its p-value the total probability of
every table no more likely than the one observed (with two groups, the two-sided binomial
test), enumerated when there are at most EXACT_TABLES tables, else estimated from MONTE_CARLO
seeded draws.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["EXACT_TABLES", "MIN_EXPECTED", "MONTE_CARLO", "GoodnessOfFit", "goodness_of_fit"]

MIN_EXPECTED = 5.0
EXACT_TABLES = 200_000
MONTE_CARLO = 100_000
# Tables whose probability is within this relative tolerance of the observed one count as
# "as likely" (floating-point ties), as R's and scipy's exact tests do.
_TIES = 1e-7


@dataclass(frozen=True)
class GoodnessOfFit:
    """One test: its name, statistic (Pearson's X², also for the exact tests), df and p."""

    test: str  # chi2_goodness_of_fit | exact_multinomial | monte_carlo_multinomial
    statistic: float
    df: int
    p_value: float


def _compositions(n: int, k: int) -> np.ndarray:
    """Every table of k non-negative counts summing to n (stars and bars), one per row."""
    rows = []
    for bars in itertools.combinations(range(n + k - 1), k - 1):
        edges = (-1, *bars, n + k - 1)
        rows.append([edges[i + 1] - edges[i] - 1 for i in range(k)])
    return np.asarray(rows, dtype=np.int64)


def goodness_of_fit(observed: Sequence[int], shares: Sequence[float], seed: int = 0) -> GoodnessOfFit:
    """Test counts `observed` against the expected `shares` (positive, summing to 1)."""
    counts = np.asarray(observed, dtype=np.int64)
    p = np.asarray(shares, dtype=float)
    p = p / p.sum()
    n, k = int(counts.sum()), len(counts)
    expected = n * p
    statistic = float(((counts - expected) ** 2 / expected).sum()) if n else 0.0
    df = k - 1
    if n == 0 or k < 2:
        return GoodnessOfFit("chi2_goodness_of_fit", statistic, df, 1.0)
    if expected.min() >= MIN_EXPECTED:
        result = stats.chisquare(counts, expected)
        return GoodnessOfFit("chi2_goodness_of_fit", float(result.statistic), df, float(result.pvalue))
    observed_p = stats.multinomial.pmf(counts, n, p)
    if math.comb(n + k - 1, k - 1) <= EXACT_TABLES:
        tables = _compositions(n, k)
        probabilities = stats.multinomial.pmf(tables, n, p)
        p_value = float(probabilities[probabilities <= observed_p * (1 + _TIES)].sum())
        return GoodnessOfFit("exact_multinomial", statistic, df, min(1.0, p_value))
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, p, size=MONTE_CARLO)
    as_extreme = int((stats.multinomial.pmf(draws, n, p) <= observed_p * (1 + _TIES)).sum())
    return GoodnessOfFit("monte_carlo_multinomial", statistic, df, (as_extreme + 1) / (MONTE_CARLO + 1))
