"""The one multiple-testing correction (fairaudit.stats._multitest) against statsmodels.

Every family fairaudit corrects (audit comparisons, discovered slices, baseline rows, the
image-group tests of normalize and augment-check) goes through these two functions.
"""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from fairaudit.stats._multitest import adjust_family, adjust_pvalues

P = [0.001, 0.2, None, 0.04, 0.03, None, 0.9, 0.011]


@pytest.mark.parametrize("method", ["holm", "fdr_bh", "bonferroni"])
def test_adjusted_pvalues_equal_statsmodels_over_the_tested_rows(method: str) -> None:
    tested = [p for p in P if p is not None]
    want = iter(multipletests(tested, alpha=0.05, method=method)[1])
    got = adjust_pvalues(P, method, 0.05)
    for p, q in zip(P, got, strict=True):
        assert (q is None) == (p is None)  # untested rows stay out of the family
        if p is not None:
            assert q == pytest.approx(next(want), abs=1e-15)


def test_none_leaves_pvalues_and_caps_at_one() -> None:
    assert adjust_pvalues(P, "none") == P
    assert adjust_pvalues([0.6, 0.7], "bonferroni") == [1.0, 1.0]
    assert adjust_pvalues([None, None], "holm") == [None, None]
    assert adjust_pvalues([], "holm") == []


def test_family_rows_get_adjusted_p_and_significance_in_place() -> None:
    rows = [{"p_value": p} for p in P] + [{}]  # a row without any p_value
    adjust_family(rows, "holm", 0.05)
    tested = np.array([p for p in P if p is not None])
    reject = iter(multipletests(tested, alpha=0.05, method="holm")[0])
    for row in rows:
        assert list(row)[-2:] == ["p_adjusted", "significant"]
        if row.get("p_value") is None:
            assert row["p_adjusted"] is None and row["significant"] is False
        else:
            assert row["significant"] is bool(next(reject))


def test_adjust_family_is_multipletests() -> None:
    tests = [{"p_value": p} for p in (0.01, 0.04, 0.03, 0.5)] + [{"p_value": None}]
    adjust_family(tests, "holm", 0.05)
    ref = multipletests([0.01, 0.04, 0.03, 0.5], alpha=0.05, method="holm")
    assert [t["p_adjusted"] for t in tests[:4]] == pytest.approx(list(ref[1]))
    assert [t["significant"] for t in tests[:4]] == list(ref[0])
    assert tests[4]["p_adjusted"] is None and tests[4]["significant"] is False
