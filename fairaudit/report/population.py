"""Who is in the data: counts, shares and prevalence per group and intersection, the records
missing each attribute, and (--reference-population) how the sample's make-up differs from
the intended population, with one goodness-of-fit test per attribute (docs/reports.md,
"Who is in the data").

The table is read from results.json's groups (so `fairaudit report` redraws it); the
comparison with the reference population is computed once and recorded in results.json's
`population` (its tests are one family, corrected with the audit's --correction).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fairaudit._util.formatting import DASH, fmt_level, fmt_num, fmt_p, is_number
from fairaudit.errors import InputError, arg
from fairaudit.stats._goodness_of_fit import goodness_of_fit
from fairaudit.stats._multitest import adjust_pvalues

__all__ = [
    "REFERENCE_COLUMNS",
    "SHARE_TOLERANCE",
    "compare_population",
    "counts_block",
    "population_view",
    "read_reference_population",
]

REFERENCE_COLUMNS = ("attribute", "group", "share")
#: How far an attribute's shares may sum from 1 (rounded published figures), before they are rescaled.
SHARE_TOLERANCE = 0.02
_MISSING_GROUP = "(missing)"  # fairaudit.cohort.join.MISSING_GROUP: not part of a population's shares


# ----------------------------------------------------------------------------- the reference file
def read_reference_population(path: Path | str) -> dict[str, dict[str, float]]:
    """attribute -> group -> expected share, from a CSV with columns attribute, group, share.

    Every problem is an InputError (exit 2) naming the file, the column or the row (the header
    is row 1) and what to do.
    """
    path = Path(path)
    where = {"file": str(path), "argument": "reference_population"}
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError("reference population file not found.", **where) from None
    except UnicodeDecodeError:
        raise InputError("is not UTF-8 text.", hint="Save it as a UTF-8 CSV.", **where) from None
    except OSError as exc:
        raise InputError(f"cannot be read ({exc.strerror}).", **where) from None
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(reader, [])]
    for column in REFERENCE_COLUMNS:
        if column not in header:
            raise InputError(
                f"has no column '{column}'; the columns must be {', '.join(REFERENCE_COLUMNS)} "
                "(one row per attribute and group, share between 0 and 1).",
                column=column,
                **where,
            )
    at = {c: header.index(c) for c in REFERENCE_COLUMNS}
    shares: dict[str, dict[str, float]] = {}
    for row_number, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        cells = {c: (row[i].strip() if i < len(row) else "") for c, i in at.items()}
        for c in ("attribute", "group"):
            if not cells[c]:
                raise InputError(f"the {c} is empty.", column=c, row=row_number, **where)
        try:
            share = float(cells["share"])
        except ValueError:
            share = math.nan
        if not math.isfinite(share) or not 0.0 < share <= 1.0:
            raise InputError(
                f"share '{cells['share']}' is not a number in (0, 1]; give each group's share of the "
                "intended population as a fraction (0.25, not 25%), and leave out groups of share 0.",
                column="share",
                row=row_number,
                **where,
            )
        groups = shares.setdefault(cells["attribute"], {})
        if cells["group"] in groups:
            raise InputError(
                f"group '{cells['group']}' of '{cells['attribute']}' is listed twice.",
                column="group",
                row=row_number,
                **where,
            )
        groups[cells["group"]] = share
    if not shares:
        raise InputError(
            "lists no groups.", hint="One row per attribute and group: attribute,group,share.", **where
        )
    for attribute, groups in shares.items():
        total = sum(groups.values())
        if abs(total - 1.0) > SHARE_TOLERANCE:
            raise InputError(
                f"the shares of '{attribute}' sum to {total:.3f}; they must sum to 1 (every group of the "
                "intended population, each as a fraction).",
                column="share",
                **where,
            )
    return shares


# ----------------------------------------------------------------------------- counts
def _blocks(results: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    multiclass = results.get("multiclass")  # each class's share of a group: its prevalence column
    if (
        isinstance(multiclass, Mapping)
        and isinstance(multiclass.get("per_class"), list)
        and multiclass["per_class"]
    ):
        return [(str(b.get("class", "")), b) for b in multiclass["per_class"] if isinstance(b, Mapping)]
    findings = results.get("findings")
    if isinstance(findings, list) and findings:
        return [(str(b.get("finding", "")), b) for b in findings if isinstance(b, Mapping)]
    return [("", results)]


def _total(block: Mapping[str, Any]) -> int:
    attributes = block.get("attributes") or []
    if not attributes:
        return 0
    return sum(int(g.get("n") or 0) for g in attributes[0].get("groups") or [])


def counts_block(results: Mapping[str, Any]) -> Mapping[str, Any]:
    """The audit block whose groups give the counts: the results themselves, or (a multi-label
    audit) the finding with the most records (the others left out some uncertain labels)."""
    blocks = _blocks(results)
    return max((b for _, b in blocks), key=_total)


def _observed(results: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """attribute -> group -> records, from results.json."""
    out = {}
    for attribute in counts_block(results).get("attributes") or []:
        out[str(attribute.get("name"))] = {
            str(g.get("group")): int(g.get("n") or 0) for g in attribute.get("groups") or []
        }
    return out


# ----------------------------------------------------------------------------- the comparison
def compare_population(
    results: Mapping[str, Any], shares: Mapping[str, Mapping[str, float]], source: str = ""
) -> dict[str, Any]:
    """results.json's `population.reference`: per attribute of the reference file, each group's
    sample and expected share and a goodness-of-fit test, corrected as one family.

    An attribute the audit did not analyse, or a group of the data the reference lacks, is an
    InputError naming the reference file.
    """
    observed = _observed(results)
    config = results.get("config") or {}
    correction = str(config.get("correction") or "holm")
    level = config.get("ci_level") if is_number(config.get("ci_level")) else 0.95
    seed = int(config.get("seed") or 0)
    rows: list[dict[str, Any]] = []
    for attribute, expected in shares.items():
        if attribute not in observed:
            raise InputError(
                f"attribute '{attribute}' is not one the audit analysed ({', '.join(observed) or 'none'}).",
                file=source or None,
                column="attribute",
                hint=f"Name an audited {arg('attributes')} (an intersection as the reports name it, e.g. sex×race).",
                argument="reference_population",
            )
        counts = {g: k for g, k in observed[attribute].items() if g != _MISSING_GROUP}
        unknown = [g for g, k in counts.items() if k > 0 and g not in expected]
        if unknown:
            raise InputError(
                f"groups {', '.join(repr(g) for g in unknown)} of '{attribute}' are in the data but have no "
                "share in the reference population; add them (a group cannot have share 0 and be in the sample).",
                file=source or None,
                column="group",
                argument="reference_population",
            )
        groups = list(expected)
        total_share = sum(expected.values())
        n = sum(counts.get(g, 0) for g in groups)
        test = goodness_of_fit([counts.get(g, 0) for g in groups], [expected[g] for g in groups], seed=seed)
        rows.append(
            {
                "attribute": attribute,
                "n": n,
                "test": test.test,
                "statistic": test.statistic,
                "df": test.df,
                "p_value": test.p_value,
                "groups": [
                    {
                        "group": g,
                        "n": counts.get(g, 0),
                        "share": counts.get(g, 0) / n if n else None,
                        "expected_share": expected[g] / total_share,
                        "expected_n": n * expected[g] / total_share,
                        "difference": (counts.get(g, 0) / n - expected[g] / total_share) if n else None,
                    }
                    for g in groups
                ],
            }
        )
    alpha = 1.0 - float(level)
    adjusted = adjust_pvalues([r["p_value"] for r in rows], correction, alpha)
    for row, q in zip(rows, adjusted, strict=True):
        row["p_adjusted"] = q
        row["significant"] = q is not None and q < alpha
    return {"source": Path(source).name if source else "", "correction": correction, "attributes": rows}


# ----------------------------------------------------------------------------- the view
def _pct(value: Any) -> str:
    return f"{float(value) * 100:.1f}%" if is_number(value) else DASH


def population_view(results: Mapping[str, Any]) -> dict[str, Any] | None:
    """The reports' "Who is in the data" section: per attribute (and intersection) each
    group's records, share and prevalence (per finding in a multi-label audit, per class in a
    multi-class one), the records missing it, and the reference comparison when results.json
    has one."""
    block = counts_block(results)
    attributes = block.get("attributes") or []
    if not attributes:
        return None
    blocks = _blocks(results)
    # A column of prevalence per block: per class of a multi-class audit (each class's share of
    # the group's records), per finding of a multi-label one (whose counts are its largest block's).
    multiclass = isinstance(results.get("multiclass"), Mapping) and blocks[0][0] != ""
    multilabel = blocks[0][0] != "" and not multiclass
    missing = ((results.get("inputs") or {}).get("missing_attributes")) or {}
    population = results.get("population") if isinstance(results.get("population"), Mapping) else {}
    reference = population.get("reference") if isinstance(population.get("reference"), Mapping) else None
    ref_by_attr = {str(r.get("attribute")): r for r in (reference or {}).get("attributes") or []}
    ci_level = (results.get("config") or {}).get("ci_level")
    tables = []
    for attribute in attributes:
        name = str(attribute.get("name"))
        groups = attribute.get("groups") or []
        total = sum(int(g.get("n") or 0) for g in groups)
        ref = ref_by_attr.get(name)
        expected = {str(g.get("group")): g for g in (ref or {}).get("groups") or []}
        prevalence_by_finding = []
        for finding, b in blocks:
            by_group = {}
            for a in b.get("attributes") or []:
                if str(a.get("name")) == name:
                    for g in a.get("groups") or []:
                        est = (g.get("metrics") or {}).get("prevalence")
                        if isinstance(est, Mapping) and est.get("value") is not None:
                            by_group[str(g.get("group"))] = _estimate(est)
                        elif is_number(g.get("n_positive")) and g.get("n"):
                            by_group[str(g.get("group"))] = fmt_num(g["n_positive"] / g["n"])
            prevalence_by_finding.append((finding, by_group))
        has_prevalence = any(p for _, p in prevalence_by_finding)
        rows = []
        for g in groups:
            group = str(g.get("group"))
            e = expected.get(group)
            rows.append(
                {
                    "group": group,
                    "is_ref": group == str(attribute.get("reference")),
                    "n": fmt_num(g.get("n")),
                    "n_positive": fmt_num(g.get("n_positive")) if g.get("n_positive") is not None else DASH,
                    "share": _pct(int(g.get("n") or 0) / total) if total else DASH,
                    "prevalence": [p.get(group, DASH) for _, p in prevalence_by_finding],
                    "expected_share": _pct(e.get("expected_share")) if e else "",
                    "difference": _signed_pct(e.get("difference")) if e else "",
                }
            )
        tables.append(
            {
                "name": name,
                "n": fmt_num(total),
                "missing": fmt_num(missing.get(name)) if missing.get(name) else "0",
                "rows": rows,
                "has_prevalence": has_prevalence,
                "prevalence_columns": [f for f, _ in prevalence_by_finding] if blocks[0][0] else [""],
                "reference": _reference_test(ref, ci_level) if ref else None,
            }
        )
    return {
        "attributes": tables,
        "multilabel": multilabel,
        "multiclass": multiclass,
        # A segmentation case's "positive" is a non-empty ground-truth mask, not a condition.
        "segmentation": results.get("task") == "segmentation",
        "prevalence_header": "non-empty truth" if results.get("task") == "segmentation" else "prevalence",
        "reference_source": str((reference or {}).get("source") or ""),
        "has_reference": reference is not None,
        "correction": str((reference or {}).get("correction") or ""),
    }


def _estimate(est: Mapping[str, Any]) -> str:
    ci = est.get("ci")
    if isinstance(ci, list) and len(ci) == 2 and all(is_number(c) for c in ci):
        return f"{fmt_num(est['value'])} ({fmt_num(ci[0])}–{fmt_num(ci[1])})"
    return fmt_num(est.get("value"))


def _signed_pct(value: Any) -> str:
    if not is_number(value):
        return DASH
    return f"{'+' if value > 0 else '−' if value < 0 else ''}{abs(float(value)) * 100:.1f} pp"


_TESTS = {
    "chi2_goodness_of_fit": "chi-square goodness of fit",
    "exact_multinomial": "exact multinomial",
    "monte_carlo_multinomial": "multinomial (Monte Carlo)",
}


def _reference_test(ref: Mapping[str, Any], ci_level: Any) -> dict[str, Any]:
    return {
        "test": _TESTS.get(str(ref.get("test")), str(ref.get("test"))),
        "statistic": fmt_num(ref.get("statistic"), 2),
        "df": str(ref.get("df")),
        "p_value": fmt_p(ref.get("p_value")),
        "p_adjusted": fmt_p(ref.get("p_adjusted")),
        "significant": bool(ref.get("significant")),
        "level": fmt_level(ci_level),
    }
