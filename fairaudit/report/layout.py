"""What report.html shows first and what it folds away (issue 23, point 5; docs/reports.md, "Length").

An attribute with many groups lists the worst-served groups first and folds the rest; a
page header for print needs the title as a CSS string. Both are decided here, from the view
that fairaudit.report._templates builds, so the template stays a layout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from markupsafe import Markup

from fairaudit.stats._metrics import HIGHER_IS_BETTER

__all__ = ["SHOWN_GROUPS", "css_string", "harm", "rank_groups"]

#: Groups of one attribute listed before the rest are folded (the reference and the worst).
SHOWN_GROUPS = 12

#: Segmentation metrics' direction (classification's comes from stats: HIGHER_IS_BETTER).
_SEGMENTATION_HIGHER_IS_BETTER: dict[str, bool] = {
    "dice": True,
    "iou": True,
    "hd95": False,
    "assd": False,
}


def _value(estimate: Any) -> float | None:
    if isinstance(estimate, Mapping):
        value = estimate.get("value")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
            return float(value)
    return None


def harm(metric: str, value: float | None, reference: float | None) -> float | None:
    """How much worse than the reference a group is on `metric` (positive: worse): the signed
    difference turned so that the harmful direction is up; |difference| for metrics without a
    direction (selection rate, volume error). None when either value is undefined."""
    if value is None or reference is None:
        return None
    higher = HIGHER_IS_BETTER.get(metric, _SEGMENTATION_HIGHER_IS_BETTER.get(metric))
    difference = value - reference
    if higher is None:
        return abs(difference)
    return -difference if higher else difference


def rank_groups(groups: Sequence[dict[str, Any]], metric: str | None) -> list[dict[str, Any]]:
    """The reference first, then the others from worst- to best-served on `metric` (groups
    with an undefined value last, in table order); table order when there is no metric."""
    if not metric:
        return list(groups)
    reference = next((g for g in groups if g.get("is_ref")), None)
    ref_value = _value((reference or {}).get("values", {}).get(metric))
    others = [g for g in groups if g is not reference]

    def key(pair: tuple[int, dict[str, Any]]) -> tuple[int, float, int]:
        index, group = pair
        score = harm(metric, _value(group.get("values", {}).get(metric)), ref_value)
        return (1, 0.0, index) if score is None else (0, -score, index)

    ranked = [g for _, g in sorted(enumerate(others), key=key)]
    return ([reference] if reference is not None else []) + ranked


def css_string(value: Any) -> Markup:
    """A CSS string literal of any text (for @page margin boxes): every character that is not
    a letter, digit, space or one of `-:.,_` is written as a hex escape, so no quote,
    backslash, newline or '</style>' in a user's title can end the string or the style sheet
    (a date stays readable as it is: two runs differ only in their timestamps' text)."""
    out = []
    for ch in str(value):
        out.append(ch if ch.isascii() and (ch.isalnum() or ch in " -:.,_") else f"\\{ord(ch):06x}")
    return Markup('"' + "".join(out) + '"')
