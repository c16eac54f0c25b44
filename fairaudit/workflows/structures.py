"""Multi-structure segmentation audits (`--structures 1=liver,2=tumour`, docs/segmentation.md).

Why: a multi-label mask (BraTS, KiTS, the Medical Segmentation Decathlon) holds several
structures whose errors differ in kind and size; one Dice over their union hides a
tumour missed under a well-segmented liver. Each structure is audited on its own: its
foreground is the voxels of its label, in the ground truth and in the prediction alike,
and its statistics are those of a single-structure audit (its own family of comparisons,
as separate audits would be).

results.json: the first structure's audit is the top level (overall, attributes,
consistency, so readers of a single-structure file keep working), `structures` lists
every structure's results in the order given, each check of the gate names its structure,
and the gate passes only when every structure's does. segmentation_cases.csv has one row
per case and structure, with a `structure` column.
"""

from __future__ import annotations

import io
import logging
import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from fairaudit.errors import InputError, arg

if TYPE_CHECKING:
    from fairaudit.results import AuditReport
    from fairaudit.workflows.segmentation import SegmentationRequest

log = logging.getLogger(__name__)

Structures = tuple[tuple[int, str], ...]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.+-]{0,63}$")
#: The keys of a structure's entry in results.json's `structures`, from its own audit.
SECTION_KEYS = ("overall", "attributes", "consistency", "discovered")


def parse_structures(text: str | None) -> Structures | None:
    """'1=liver,2=tumour' -> ((1, 'liver'), (2, 'tumour')); None or '' -> None.

    InputError (exit 2) for a part without '=', a label that is not a positive integer, a
    name that is empty or not plain text, or a label or name given twice."""
    if text is None or not text.strip():
        return None
    out: list[tuple[int, str]] = []
    for part in text.split(","):
        label_text, sep, name = (p.strip() for p in part.partition("="))
        try:
            label = int(label_text)
        except ValueError:
            label = 0
        if not sep or label < 1 or not _NAME.match(name):
            raise InputError(
                f"{arg('structures')} '{text}': each structure is LABEL=NAME, a positive integer label "
                f"and a name of letters, digits, spaces, '_', '-', '.' or '+' (this part: '{part.strip()}').",
                hint=f"For example {arg('structures')} 1=liver,2=tumour.",
                argument="structures",
            )
        out.append((label, name))
    labels = [label for label, _ in out]
    names = [name.lower() for _, name in out]
    if len(set(labels)) < len(labels) or len(set(names)) < len(names):
        raise InputError(
            f"{arg('structures')} '{text}': each label and each name may appear once.", argument="structures"
        )
    return tuple(out)


def check_structures(structures: Structures | None, mask_labels: Any, pred_mask_labels: Any) -> None:
    """--structures with --mask-labels or --pred-mask-labels is refused: the structures say
    which label is each structure's foreground, in both masks (docs/segmentation.md)."""
    if structures and (mask_labels or pred_mask_labels):
        given = arg("mask_labels") if mask_labels else arg("pred_mask_labels")
        raise InputError(
            f"{arg('structures')} and {given} both say which mask values are foreground: "
            f"{arg('structures')} audits each label on its own, {given} would merge labels into one.",
            hint=f"Give {arg('structures')} alone (e.g. 1=liver,2=tumour), or {given} alone for one "
            "structure made of those labels.",
            argument="structures",
        )


def build_structures_report(req: SegmentationRequest) -> AuditReport:
    """One segmentation audit per structure, combined as the module doc says."""
    from fairaudit.workflows.segmentation import CASES_FILE, build_segmentation_report

    structures = req.structures or ()
    check_structures(structures, req.mask_labels, req.pred_mask_labels)
    reports = []
    for label, name in structures:
        log.info("structure %s (label %d)", name, label)
        one = replace(req, structures=None, mask_labels=(label,), pred_mask_labels=(label,))
        reports.append(build_segmentation_report(one))
    first = reports[0]
    listed = [{"label": label, "name": name} for label, name in structures]
    first.data["config"]["segmentation"]["structures"] = listed
    first.data["config"]["segmentation"]["mask_labels"] = "per structure"
    first.data["config"]["segmentation"]["pred_mask_labels"] = "per structure"
    entries = []
    for (label, name), report in zip(structures, reports, strict=True):
        entry: dict[str, Any] = {
            "label": label,
            "name": name,
            "n_included": report.data["inputs"]["n_included"],
        }
        entry.update({k: report.data[k] for k in SECTION_KEYS if k in report.data})
        entry["gate"] = report.data.get("gate")
        entries.append(entry)
    first.data["gate"] = _combined_gate(
        [(name, r.data.get("gate")) for (_, name), r in zip(structures, reports, strict=True)]
    )
    first.attach("structures", entries)
    first.companions[CASES_FILE] = _cases(
        [(name, r.companions.get(CASES_FILE)) for (_, name), r in zip(structures, reports, strict=True)]
    )
    return first


def _combined_gate(gates: list[tuple[str, dict[str, Any] | None]]) -> dict[str, Any] | None:
    """Every structure's checks (each naming its structure); passed when every structure's
    gate passed; the worst outcome of them (fail, else inconclusive, else pass)."""
    present = [(name, g) for name, g in gates if g is not None]
    if not present:
        return None
    combined = dict(present[0][1])
    combined["checks"] = [dict(c, structure=name) for name, g in present for c in g.get("checks", [])]
    combined["passed"] = all(bool(g["passed"]) for _, g in present)
    outcomes = [g.get("outcome") for _, g in present if g.get("outcome")]
    if outcomes:
        combined["outcome"] = next((o for o in ("fail", "inconclusive") if o in outcomes), "pass")
    for key in ("decided", "undecided"):
        if all(isinstance(g.get(key), int) for _, g in present):
            combined[key] = sum(int(g[key]) for _, g in present)
    return combined


def _cases(tables: list[tuple[str, Any]]) -> str:
    """The per-structure segmentation_cases.csv texts as one, with a `structure` column."""
    import pandas as pd

    from fairaudit._util.sanitize import frame_to_csv
    from fairaudit.stats._segmentation import SEGMENTATION_METRICS

    frames = []
    for name, text in tables:
        if not isinstance(text, str):
            continue
        frame = pd.read_csv(io.StringIO(text), dtype={"id": str}, keep_default_na=False, na_values=[""])
        frame.insert(1, "structure", name)
        frames.append(frame)
    numeric = tuple(m for m in SEGMENTATION_METRICS if frames and m in frames[0].columns)
    return frame_to_csv(pd.concat(frames, ignore_index=True), numeric=numeric)
