"""The one number formatter (fairaudit._util.formatting), against hand-written strings."""

from __future__ import annotations

import math

import pytest

from fairaudit._util.formatting import DASH, fmt_ci, fmt_est, fmt_level, fmt_num, fmt_p, fmt_sig


@pytest.mark.parametrize(
    ("value", "want"),
    [(0.81234, "0.812"), (0.0, "0.000"), (3, "3"), (-0.5, "-0.500"), (None, DASH), (math.nan, DASH),
     (math.inf, DASH), (True, DASH), ("0.5", DASH)],
)  # fmt: skip
def test_fixed_decimals(value, want) -> None:
    assert fmt_num(value) == want


@pytest.mark.parametrize(
    ("value", "digits", "want"),
    [(1234.5678, 4, "1235"), (0.000123456, 4, "0.0001235"), (123456.0, 4, "1.235e+05"), (7, 4, "7"),
     (123456, 4, "123456"), (-0.0, 4, "0"), (0.0, 3, "0"), (2.0 / 3.0, 3, "0.667"), (None, 4, DASH),
     (math.nan, 4, DASH), (False, 4, DASH)],
)  # fmt: skip
def test_significant_digits(value, digits, want) -> None:
    assert fmt_sig(value, digits) == want


def test_missing_value_text_is_the_callers() -> None:
    assert fmt_sig(math.inf, 3, missing="unbounded") == "unbounded"  # the gate's messages
    assert fmt_sig(None, 4, missing="-inf") == "-inf"  # junit.xml's open interval ends


def test_estimates_and_intervals() -> None:
    e = {"value": 0.81234, "ci": [0.79, 0.8333]}
    assert fmt_est(e) == "0.812 [0.790, 0.833]"
    assert fmt_est(e, 2) == "0.81 [0.79, 0.83]"
    assert fmt_est({"value": 1234.6, "ci": [1000.0, 1500.25]}, 4, fmt_sig) == "1235 [1000, 1500]"
    assert fmt_est({"value": 0.81234, "ci": None}) == "0.812"
    assert fmt_est({"value": 0.81234, "ci": [None, None]}) == "0.812"
    assert fmt_est({"value": 0.81234, "ci": [None, 0.9]}) == "0.812 [—, 0.900]"
    assert fmt_est({"value": None, "ci": [0.1, 0.2]}) == fmt_est(None) == DASH
    assert fmt_ci([0.1, 0.25]) == "[0.100, 0.250]"
    assert fmt_ci(None) == fmt_ci([0.1]) == ""


def test_p_values_and_levels() -> None:
    assert fmt_p(0.05) == "0.0500" and fmt_p(1.0) == "1.00"  # the audit's tables keep zeros
    assert fmt_p(0.05, trailing_zeros=False) == "0.05" and fmt_p(1.0, trailing_zeros=False) == "1"
    assert fmt_p(0.0004) == fmt_p(0.0004, trailing_zeros=False) == "<0.001"
    assert fmt_p(0.012345) == "0.0123"
    assert fmt_p(None) == fmt_p(math.nan) == DASH
    assert fmt_level(0.95) == "95%" and fmt_level(0.9) == "90%" and fmt_level(None) == DASH
