"""Numbers as every report, summary and message shows them, written once.

Two styles: fixed decimals for metrics that live in [0, 1] (the audit's reports, JUnit
aside), and significant digits for values whose scale varies (image statistics from 1e-4
to 1e4 in normalize and augment-check, chart ticks, the gate's messages). Missing, NaN and
infinite values show as a dash (or what the caller names), never as "nan". Here in _util
because the gate, which may not import fairaudit.report, uses it too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

DASH = "—"


def is_number(value: Any) -> bool:
    """An int or float that is not a bool (JSON numbers after loading)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _not_a_float(value: Any, missing: str) -> str | None:
    """The text of a value no float format applies to (an int as itself; missing, NaN or
    infinite as `missing`), or None for a finite float."""
    if not is_number(value) or (isinstance(value, float) and not math.isfinite(value)):
        return missing
    return str(value) if isinstance(value, int) else None


def fmt_num(value: Any, digits: int = 3) -> str:
    """A number with fixed decimals; integers as integers; missing or NaN as a dash."""
    text = _not_a_float(value, DASH)
    return text if text is not None else f"{value:.{digits}f}"


#: Below this in absolute value a float is round-off (1.11e-16 is 0.5 ulp of 1), shown as "0"
#: by fmt_sig: augment-check's difference of two equal statistics printed "0 [-1.11e-16,
#: 1.11e-16]" (issue 23). No statistic these reports show is meaningful at this scale.
TINY = 1e-9


def fmt_sig(value: Any, digits: int = 4, missing: str = DASH) -> str:
    """A number with `digits` significant digits; integers as integers; zero, and round-off
    below TINY, as "0" (never "-0"); missing, NaN or infinite as `missing`."""
    text = _not_a_float(value, missing)
    if text is not None:
        return text
    return "0" if abs(value) < TINY else f"{value:.{digits}g}"


def fmt_ci(ci: Any, digits: int = 3, number: Callable[[Any, int], str] = fmt_num) -> str:
    """[low, high], or an empty string when there is no interval."""
    if not isinstance(ci, (list, tuple)) or len(ci) != 2:
        return ""
    if ci[0] is None and ci[1] is None:
        return ""
    return f"[{number(ci[0], digits)}, {number(ci[1], digits)}]"


def fmt_est(estimate: Any, digits: int = 3, number: Callable[[Any, int], str] = fmt_num) -> str:
    """'0.812 [0.790, 0.833]', or a dash when the value is undefined (`number`: fmt_num or fmt_sig)."""
    if not isinstance(estimate, Mapping) or estimate.get("value") is None:
        return DASH
    text = number(estimate["value"], digits)
    ci = fmt_ci(estimate.get("ci"), digits, number)
    return f"{text} {ci}" if ci else text


def fmt_p(value: Any, trailing_zeros: bool = True) -> str:
    """p-values as '<0.001' or three significant digits ('0.0500' with trailing zeros, the
    audit's tables; '0.05' without, the image reports')."""
    if value is None or not is_number(value) or not math.isfinite(value):
        return DASH
    if value < 0.001:
        return "<0.001"
    return f"{value:#.3g}" if trailing_zeros else f"{value:.3g}"


def fmt_level(ci_level: Any) -> str:
    """0.95 -> '95%'."""
    if not is_number(ci_level):
        return DASH
    return f"{ci_level * 100:g}%"
