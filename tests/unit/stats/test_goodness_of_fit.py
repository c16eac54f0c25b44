"""The reference-population test (docs/reports.md, "Who is in the data") against scipy: the
chi-square goodness of fit equals scipy.stats.chisquare, the exact multinomial test with two
groups equals scipy's two-sided binomial test, and with three groups a hand enumeration."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from fairaudit.stats import _goodness_of_fit as gof


def test_large_counts_are_scipys_chisquare() -> None:
    observed, shares = [144, 75, 101], [0.6, 0.2, 0.2]
    result = gof.goodness_of_fit(observed, shares)
    expected = stats.chisquare(observed, np.array(shares) * sum(observed))
    assert result.test == "chi2_goodness_of_fit"
    assert result.statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-12)
    assert result.df == 2
    # by hand: expected 192, 64, 64 -> X² = 48²/192 + 11²/64 + 37²/64 = 35.28125
    assert result.statistic == pytest.approx(35.28125)


@pytest.mark.parametrize("k, n, p", [(3, 8, 0.5), (1, 12, 0.3), (7, 9, 0.2), (0, 6, 0.5)])
def test_two_groups_exact_is_the_two_sided_binomial_test(k: int, n: int, p: float) -> None:
    result = gof.goodness_of_fit([k, n - k], [p, 1 - p])
    assert result.test == "exact_multinomial"
    assert result.p_value == pytest.approx(stats.binomtest(k, n, p).pvalue, rel=1e-9)


def test_three_groups_exact_is_a_hand_enumeration() -> None:
    observed, shares = (1, 5, 0), (0.2, 0.3, 0.5)
    n = sum(observed)
    p_obs = stats.multinomial.pmf(observed, n, shares)
    total = 0.0
    for a in range(n + 1):
        for b in range(n + 1 - a):
            p = stats.multinomial.pmf([a, b, n - a - b], n, shares)
            if p <= p_obs * (1 + 1e-7):
                total += p
    result = gof.goodness_of_fit(observed, shares)
    assert result.test == "exact_multinomial"
    assert result.p_value == pytest.approx(total, rel=1e-9)


def test_too_many_tables_go_to_a_seeded_monte_carlo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gof, "EXACT_TABLES", 10)
    monkeypatch.setattr(gof, "MONTE_CARLO", 20_000)
    observed, shares = (1, 5, 0), (0.2, 0.3, 0.5)
    first = gof.goodness_of_fit(observed, shares, seed=3)
    assert first.test == "monte_carlo_multinomial"
    assert first == gof.goodness_of_fit(observed, shares, seed=3)
    monkeypatch.setattr(gof, "EXACT_TABLES", 10**6)
    exact = gof.goodness_of_fit(observed, shares).p_value
    assert abs(first.p_value - exact) < 4 * np.sqrt(exact * (1 - exact) / 20_000) + 1e-4
