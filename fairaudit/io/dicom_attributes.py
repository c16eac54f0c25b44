"""`--attribute dicom:KEYWORD`: audit groups read from the DICOM headers (docs/acquisition.md).

Each keyword is vetted before any file is read, from its VR in the DICOM dictionary and a
privacy policy that follows the Basic Application Level Confidentiality Profile (PS3.15):

- refused (exit code 2): patient identity (PatientName, PatientID, ...), dates and times
  (DA, DT, TM), UIDs (UI), long free text (LT, ST, UT, UR: comments, addresses), sequences
  and binary values;
- salted hash (shown as ``#`` + 16 hex digits): free text that can name a place or a person
  (StationName, InstitutionName, OperatorsName, descriptions, serial numbers: every LO, SH,
  UC, AE and non-patient PN keyword not in `CLEAR_TEXT`);
- in clear: coded strings (CS: ViewPosition, BodyPartExamined, Modality, PatientSex...),
  `CLEAR_TEXT` (Manufacturer, ManufacturerModelName, SoftwareVersions, ...), numbers
  (DS, IS, binary numbers: binned) and ages (AS: parsed to years, then binned).

Numbers are cut at `--bins dicom:KVP=60,80,100` (groups < 60, [60, 80), [80, 100), >= 100),
or by default at the quartiles of the readable files' values; a keyword with at most four
distinct values keeps each value as its own group. The cut points are recorded.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fairaudit.errors import InputError, arg, cli_example

log = logging.getLogger(__name__)

PREFIX = "dicom:"
DEFAULT_QUANTILES: tuple[float, ...] = (0.25, 0.5, 0.75)
HASH_PREFIX = "#"

# Patient identity and record linkage: never read, whatever the VR.
REFUSED: frozenset[str] = frozenset(
    {
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientBirthTime",
        "PatientBirthName",
        "PatientMotherBirthName",
        "OtherPatientIDs",
        "OtherPatientNames",
        "OtherPatientIDsSequence",
        "IssuerOfPatientID",
        "PatientAddress",
        "PatientTelephoneNumbers",
        "PatientTelecomInformation",
        "MedicalRecordLocator",
        "AccessionNumber",
        "StudyID",
        "AdmissionID",
        "ResponsiblePerson",
        "ResponsibleOrganization",
        "MilitaryRank",
        "BranchOfService",
        "RegionOfResidence",
        "PatientInsurancePlanCodeSequence",
        "PersonName",
        "VerifyingObserverName",
        "ContentCreatorName",
    }
)
# Free-text keywords that name equipment or software, not people or places: shown in clear.
CLEAR_TEXT: frozenset[str] = frozenset(
    {
        "Manufacturer",
        "ManufacturerModelName",
        "SoftwareVersions",
        "ConvolutionKernel",
        "FilterType",
        "FilterMaterial",
        "AnodeTargetMaterial",
        "RescaleType",
        "EthnicGroup",
    }
)
_NUMBER_VRS = frozenset({"DS", "IS", "FL", "FD", "US", "SS", "UL", "SL", "UV", "SV"})
_HASHED_VRS = frozenset({"LO", "SH", "UC", "AE", "PN"})
_REFUSED_VRS = {
    "DA": "a date",
    "DT": "a date and time",
    "TM": "a time",
    "UI": "a UID (it links records)",
    "LT": "long free text",
    "ST": "free text",
    "UT": "free text",
    "UR": "a URL",
    "SQ": "a sequence, not a plain value",
    "AT": "a tag, not a value",
}
_AGE = re.compile(r"^\s*(\d{1,3})\s*([DWMY]?)\s*$", re.IGNORECASE)
_AGE_UNIT_YEARS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0, "": 1.0}


@dataclass(frozen=True)
class DicomAttribute:
    """One `dicom:KEYWORD` attribute: how its values become groups."""

    name: str  # as the user wrote it and results.json shows it: "dicom:KVP"
    keyword: str  # the DICOM keyword: "KVP"
    kind: str  # "category" | "hashed" | "numeric" | "age"
    vr: str

    @property
    def column(self) -> str:
        return PREFIX + self.keyword


def is_dicom_attribute(name: str) -> bool:
    return name.strip().startswith(PREFIX)


def _vr_of(keyword: str) -> str | None:
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    tag = tag_for_keyword(keyword)
    if tag is None:
        return None
    return str(dictionary_VR(tag))


def parse_attribute(name: str) -> DicomAttribute:
    """Vet `dicom:KEYWORD`; raise InputError (exit 2) for unknown or identifying keywords."""
    keyword = name.strip()[len(PREFIX) :].strip()
    vr = _vr_of(keyword) if keyword else None
    if vr is None:
        from pydicom.datadict import keyword_dict

        near = [k for k in keyword_dict if k.lower() == keyword.lower()]
        hint = f"Did you mean {PREFIX}{near[0]}? " if near else ""
        raise InputError(
            f"{arg('attributes')} {name}: '{keyword}' is not a DICOM keyword. {hint}Use the keyword of the "
            "DICOM dictionary, e.g. dicom:Manufacturer, dicom:ViewPosition, dicom:KVP, dicom:PatientAge.",
            argument="attributes",
        )
    name = PREFIX + keyword
    why = None
    if keyword in REFUSED:
        why = "it identifies the patient"
    elif vr == "PN" and keyword.startswith(("Patient", "OtherPatient")):
        why = "it is a patient's name"
    elif vr in _REFUSED_VRS:
        why = f"it is {_REFUSED_VRS[vr]}"
    elif "|" in vr or vr.startswith("O") or vr == "UN":  # binary or ambiguous-VR values
        why = "it is a binary value"
    if why is not None:
        raise InputError(
            f"{arg('attributes')} {name}: refused, {why}; fairaudit never puts identifying DICOM attributes "
            "in its reports (see docs/acquisition.md for what can be audited).",
            argument="attributes",
        )
    if vr == "AS":
        kind = "age"
    elif vr in _NUMBER_VRS:
        kind = "numeric"
    elif vr == "CS" or keyword in CLEAR_TEXT:
        kind = "category"
    elif vr in _HASHED_VRS:
        kind = "hashed"
    else:  # pragma: no cover - every VR is handled above
        raise InputError(f"{arg('attributes')} {name}: VR {vr} cannot be audited.", argument="attributes")
    return DicomAttribute(name=name, keyword=keyword, kind=kind, vr=vr)


#: `--bins age=quantiles:4`: as many groups of (nearly) equal size, cut at the quantiles of
#: the audited records' values (a CSV column; edges recorded in results.json).
QUANTILES = "quantiles:"


class QuantileBins(list):
    """`--bins COLUMN=quantiles:k`: k groups cut at the quantiles of the audited records'
    values, the edges found in the join (a list, empty until then, so that it travels where
    edges do)."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def __repr__(self) -> str:
        return f"QuantileBins({self.k})"


def _quantile_k(value: str, edges: str, attr: str) -> int:
    """k of `quantiles:k`: 2 to 20 groups, and only for CSV columns."""
    text = edges.strip()[len(QUANTILES) :].strip()
    if is_dicom_attribute(attr):
        raise InputError(
            f"{arg('bins')} '{value}': quantiles apply to CSV columns; give a dicom: attribute its edges.",
            argument="bins",
        )
    if not text.isdigit() or not 2 <= int(text) <= 20:
        raise InputError(
            f"{arg('bins')} '{value}': give the number of groups, 2 to 20, e.g. age=quantiles:4.",
            argument="bins",
        )
    return int(text)


def parse_bins(values: Sequence[str]) -> dict[str, list[float]]:
    """`--bins dicom:KVP=60,80,100`, `--bins age=40,65` or `--bins age=quantiles:4` values into
    {"dicom:KVP": [60, 80, 100], "age": [40, 65]} (sorted cut points; quantiles as
    QuantileBins). A CSV column is binned in the join (fairaudit.cohort.join), a `dicom:`
    attribute where the headers are read (here)."""
    out: dict[str, list[float]] = {}
    for v in values:
        attr, sep, edges = v.partition("=")
        attr = attr.strip()
        if not sep or not attr:
            raise InputError(
                f"{arg('bins')} '{v}': expected COLUMN=EDGE,EDGE,..., e.g. age=40,65 or dicom:KVP=60,80,100.",
                argument="bins",
            )
        if edges.strip().lower().startswith(QUANTILES):
            out[attr] = QuantileBins(_quantile_k(v, edges, attr))
            continue
        try:
            cuts = [float(e) for e in edges.split(",") if e.strip()]
        except ValueError:
            raise InputError(
                f"{arg('bins')} '{v}': the edges must be numbers separated by commas.", argument="bins"
            ) from None
        if not cuts or not all(math.isfinite(c) for c in cuts) or len(set(cuts)) != len(cuts):
            raise InputError(
                f"{arg('bins')} '{v}': give one or more distinct finite numbers, e.g. 60,80,100.",
                argument="bins",
            )
        out[PREFIX + attr[len(PREFIX) :].strip() if is_dicom_attribute(attr) else attr] = sorted(cuts)
    return out


def parse_age(text: Any) -> float:
    """DICOM age string (AS) to years: "047Y" -> 47, "006M" -> 0.5, "003W", "010D"; NaN if not one."""
    if text is None:
        return math.nan
    m = _AGE.match(str(text))
    if m is None:
        return math.nan
    return int(m.group(1)) * _AGE_UNIT_YEARS[m.group(2).upper()]


def parse_number(text: Any) -> float:
    """A DS/IS/binary number from its header text; the first of several (PixelSpacing: rows)."""
    if text is None:
        return math.nan
    first = str(text).split("\\")[0].strip()
    try:
        out = float(first)
    except ValueError:
        return math.nan
    return out if math.isfinite(out) else math.nan


def header_text(value: Any) -> str:
    """A header value (str, int, float, list or None) as the text the files table holds."""
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return "\\".join(format(v, "g") if isinstance(v, float) else str(v) for v in value)
    if isinstance(value, float):
        return format(value, "g")
    return str(value).strip()


def _fmt(x: float) -> str:
    return format(x, "g")


def bin_labels(values: np.ndarray, cuts: Sequence[float]) -> np.ndarray:
    """Group label per value for sorted cut points: "< c1", "[c1, c2)", ..., ">= ck"; "" if NaN."""
    cuts = list(cuts)
    names = [f"< {_fmt(cuts[0])}"]
    names += [f"[{_fmt(a)}, {_fmt(b)})" for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    names.append(f">= {_fmt(cuts[-1])}")
    idx = np.searchsorted(np.asarray(cuts, dtype=np.float64), values, side="right")
    out = np.array(names, dtype=object)[np.clip(idx, 0, len(names) - 1)]
    out[~np.isfinite(values)] = ""
    return out


def quantile_cuts(values: np.ndarray, quantiles: Sequence[float] = DEFAULT_QUANTILES) -> list[float]:
    """Distinct quantile cut points of the finite values, above the minimum (no empty first bin)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return []
    cuts = np.unique(np.quantile(finite, quantiles))
    return [float(c) for c in cuts if c > finite.min()]


def derive_groups(
    attr: DicomAttribute,
    raw: pd.Series,
    cuts: Sequence[float] | None,
    hasher: Callable[[str], str],
) -> tuple[pd.Series, dict[str, Any]]:
    """Group label per file (text, "" when missing) from the raw header text, and the record
    of how the groups were formed (kind, cut points, source) for results.json."""
    record: dict[str, Any] = {"name": attr.name, "keyword": attr.keyword, "kind": attr.kind}
    raw = raw.fillna("").astype(str).str.strip()
    if attr.kind == "category":
        return raw, record
    if attr.kind == "hashed":
        record["note"] = (
            "identifying free text: groups are salted hashes, stable within a run (or with --salt)"
        )
        return raw.map(lambda v: HASH_PREFIX + hasher(v) if v else ""), record
    parse = parse_age if attr.kind == "age" else parse_number
    values = np.array([parse(v) for v in raw], dtype=np.float64)
    unparsable = int(np.sum((raw != "").to_numpy() & ~np.isfinite(values)))
    if unparsable:
        log.warning("%s: %d value(s) are not numbers; they count as missing", attr.name, unparsable)
    if attr.kind == "age":
        record["unit"] = "years"
    record["n_unparsable"] = unparsable
    finite = values[np.isfinite(values)]
    if cuts is not None:
        record.update(source="--bins", edges=[float(c) for c in cuts])
    elif np.unique(finite).size <= len(DEFAULT_QUANTILES) + 1:
        record.update(source="values", edges=None)
        labels = np.array([_fmt(v) if np.isfinite(v) else "" for v in values], dtype=object)
        return pd.Series(labels, index=raw.index, dtype=object), record
    else:
        cuts = quantile_cuts(values)
        record.update(source="quantiles", quantiles=list(DEFAULT_QUANTILES), edges=cuts)
    if finite.size:
        record["range"] = [float(finite.min()), float(finite.max())]
    labels = bin_labels(values, cuts) if cuts else np.where(np.isfinite(values), "all", "")
    return pd.Series(labels, index=raw.index, dtype=object), record


def resolve(names: Sequence[str], bins: dict[str, list[float]], has_dicom_dir: bool) -> list[DicomAttribute]:
    """Vet every `dicom:` attribute named (and every --bins target) before anything is read."""
    attrs: dict[str, DicomAttribute] = {}
    for n in names:
        if is_dicom_attribute(n):
            a = parse_attribute(n)
            attrs[a.name] = a
    for target in (t for t in bins if is_dicom_attribute(t)):  # CSV columns: in the join
        if target not in attrs:
            raise InputError(
                f"{arg('bins')} {target}=...: {target} is not among the audited attributes.", argument="bins"
            )
        if attrs[target].kind not in ("numeric", "age"):
            raise InputError(
                f"{arg('bins')} {target}=...: {target} is not a number, it cannot be binned.", argument="bins"
            )
    if attrs and not has_dicom_dir:
        raise InputError(
            f"{arg('attributes')} {next(iter(attrs))}: dicom: attributes are read from the DICOM headers; "
            f"pass the DICOM folder as {arg('dicom_dir')}"
            + cli_example(f" (fairaudit audit {arg('dicom_dir')} {arg('predictions')} ...)")
            + ".",
            argument="dicom_dir",
        )
    return list(attrs.values())


def add_columns(
    frame: pd.DataFrame,
    attrs: Sequence[DicomAttribute],
    bins: dict[str, list[float]],
    hasher: Callable[[str], str],
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Replace each attribute's raw header column of the files table by its groups."""
    frame = frame.copy()
    records = []
    for a in attrs:
        groups, record = derive_groups(a, frame[a.column], bins.get(a.name), hasher)
        frame[a.column] = groups.astype(str)
        records.append(record)
    return frame, records


def requested(
    attributes: Sequence[str],
    intersections: Sequence[Sequence[str]],
    bins: dict[str, list[float]],
    has_dicom_dir: bool,
) -> list[DicomAttribute]:
    """The vetted `dicom:` attributes of an audit (in --attribute and --intersect)."""
    names = list(dict.fromkeys([*attributes, *(a for parts in intersections for a in parts)]))
    if not any(is_dicom_attribute(n) for n in [*names, *bins]):
        return []
    return resolve(names, bins, has_dicom_dir)


def attach(
    files: Any, attrs: Sequence[DicomAttribute], bins: dict[str, list[float]], salt: str | None
) -> list:
    """Turn the raw header columns of the files table (a fairaudit.io.tables.Table) into
    groups, in place; the records of how (cut points, hashing) for results.json."""
    from fairaudit._util.privacy import IdHasher

    missing = [a.name for a in attrs if a.column not in files.frame.columns]
    if missing:
        raise InputError(
            f"{', '.join(missing)}: not available in this kind of audit yet (the DICOM headers were read "
            "without it); audit the model's predictions CSV with DICOM_DIR instead."
        )
    # Hashes, never clear text, whatever --keep-ids says: these go into reports, not per-case files.
    files.frame, records = add_columns(files.frame, attrs, bins, IdHasher(salt, keep_ids=False))
    return records
