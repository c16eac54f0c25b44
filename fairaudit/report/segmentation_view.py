"""What the reports show of a segmentation audit beyond the common tables: units, the
fairness summaries (SER, ES-Dice, SD of group Dice) for the verdict, the task's own Methods
and the per-group example cases (templates/_segmentation_*.j2; docs/reports.md).

Everything is read from results.json, so `fairaudit report` redraws it. None for other tasks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from markupsafe import Markup

from fairaudit._util.formatting import DASH, fmt_est, fmt_num, is_number

_BASE64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")
#: Cap on one example's base64 text (a 160-pixel contour PNG is a few kilobytes).
_MAX_PNG = 200_000


def metric_units(config: Mapping[str, Any]) -> dict[str, str]:
    """The unit each segmentation metric is in, for table headers: hd95 and assd in mm or
    pixels; nsd at its tolerance. Empty for other audits (and older files without a unit)."""
    seg = config.get("segmentation")
    if not isinstance(seg, Mapping):
        return {}
    unit = str(seg.get("distance_unit") or "")
    out = {"hd95": unit, "assd": unit} if unit else {}
    tol = seg.get("nsd_tolerance")
    if is_number(tol):
        out["nsd"] = f"≤ {float(tol):g} {seg.get('nsd_tolerance_unit') or unit}".strip()
    return out


def _summaries(results: Mapping[str, Any]) -> list[dict[str, str]]:
    rows = []
    for attribute in results.get("attributes") or []:
        s = attribute.get("segmentation_summary")
        if not isinstance(s, Mapping):
            continue
        es = s.get("es_dice") if isinstance(s.get("es_dice"), Mapping) else {}
        ser = s.get("skewed_error_ratio") or {}
        reason = next(
            (e.get("reason") for e in (ser, es) if isinstance(e, Mapping) and e.get("value") is None), ""
        )
        rows.append(
            {
                "attribute": str(attribute.get("name", "")),
                "groups": ", ".join(str(g) for g in s.get("groups") or []) or DASH,
                "ser": fmt_est(ser),
                "es_dice": fmt_est(es),
                "overall_dice": fmt_num(es.get("overall_dice"))
                if is_number(es.get("overall_dice"))
                else DASH,
                "sd": fmt_est(s.get("sd_group_means")),
                "reason": str(reason or ""),
            }
        )
    return rows


def _examples(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per attribute, its groups' example images as data: URIs (checked to be base64 PNG text)."""
    out = []
    for attribute in results.get("attributes") or []:
        items = []
        for e in attribute.get("segmentation_examples") or []:
            png = e.get("png") if isinstance(e, Mapping) else None
            if not isinstance(png, str) or len(png) > _MAX_PNG or not _BASE64.match(png):
                continue
            items.append(
                {
                    "group": str(e.get("group", "")),
                    "dice": fmt_num(e.get("dice")),
                    "src": Markup("data:image/png;base64,") + png,
                    "width": int(e.get("width") or 0),
                    "height": int(e.get("height") or 0),
                    "slice": str(e.get("slice") or ""),
                }
            )
        if items:
            out.append({"attribute": str(attribute.get("name", "")), "items": items})
    return out


def segmentation_view(results: Mapping[str, Any]) -> dict[str, Any] | None:
    """The segmentation parts of the reports' view (None unless task is segmentation)."""
    if results.get("task") != "segmentation":
        return None
    config = results.get("config") or {}
    seg = config.get("segmentation") if isinstance(config.get("segmentation"), Mapping) else {}
    units = metric_units(config)
    unit = str(seg.get("distance_unit") or "mm")
    tol = seg.get("nsd_tolerance")
    return {
        "units": units,
        "distance_unit": unit,
        "in_pixels": unit == "pixels",
        "tolerance": f"{float(tol):g} {seg.get('nsd_tolerance_unit') or unit}" if is_number(tol) else "",
        "summaries": _summaries(results),
        "examples": _examples(results),
        "bca": str(config.get("ci_method", "")).lower() == "bca",
        "permutations": fmt_num(config.get("permutations")),
    }
