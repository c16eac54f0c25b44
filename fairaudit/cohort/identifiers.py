"""Refuse identifier columns as audit attributes, before anything is computed.

The reports list every group of every attribute by name: an attribute that is an id (the
join key, the patient column, an MRN, a name) would publish one identifier per group
(docs/statistics.md, "Attributes that identify"). Two checks, both exit code 2:

- by name: the join key, the patient/cluster column, and columns named like identifiers
  (mrn, patient_name, ssn, accession_number, ...), whatever their values;
- by values: more groups than --max-groups (default `DEFAULT_MAX_GROUPS`), or nearly one
  group per row. Neither message quotes a value.

`dicom:` attributes are vetted by fairaudit.io.dicom_attributes instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from fairaudit.errors import InputError, arg

#: Groups one attribute may have before the audit refuses it (--max-groups; 0: no limit).
DEFAULT_MAX_GROUPS = 20
#: "Nearly one group per row": at least this share of the rows have a group of their own...
NEAR_UNIQUE_SHARE = 0.9
#: ...and there are more groups than this (a 6-row test table with 6 ages is not an id).
NEAR_UNIQUE_MIN_GROUPS = 10

# Whole names (lower case, separators removed) that identify a person, a record or a file.
_NAMES = frozenset(
    {
        "id", "mrn", "ssn", "nhs", "nhsnumber", "pid", "patient", "patientid", "patientname",
        "patientnumber", "subject", "subjectid", "caseid", "recordid", "medicalrecordnumber",
        "medicalrecord", "accession", "accessionnumber", "accessionno", "studyid", "name",
        "fullname", "firstname", "lastname", "surname", "givenname", "familyname",
        "birthdate", "dateofbirth", "dob", "patientbirthdate", "address", "phone",
        "telephone", "email", "socialsecuritynumber", "insurancenumber", "path", "filename",
        "file", "filepath", "sopinstanceuid", "seriesinstanceuid", "studyinstanceuid",
    }
)  # fmt: skip
# Tokens that make any name an identifier ("patient_mrn", "AccessionNo", "study_uid").
_TOKENS = frozenset({"mrn", "ssn", "accession", "uid", "dob", "nhs"})
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _tokens(name: str) -> list[str]:
    return [t for t in re.split(r"[^a-z0-9]+", _CAMEL.sub("_", name).lower()) if t]


def identifier_reason(name: str) -> str | None:
    """Why a column name looks like an identifier, or None."""
    tokens = _tokens(name)
    if "".join(tokens) in _NAMES:
        return "its name is that of an identifier"
    if any(t in _TOKENS for t in tokens):
        return "its name is that of an identifier"
    if "patient" in tokens and any(t in ("id", "name", "number", "no") for t in tokens):
        return "its name is that of an identifier"
    return None


def refuse_identifier_attributes(
    attributes: Iterable[str], *, id_column: str | None = None, cluster_columns: Iterable[str | None] = ()
) -> None:
    """InputError (exit 2) for an attribute that is the join key, a patient column or named
    like an identifier. `dicom:` attributes are left to fairaudit.io.dicom_attributes."""
    patient = {c.lower() for c in cluster_columns if c and c.strip().lower() != "none"}
    for a in attributes:
        if a.strip().startswith("dicom:"):
            continue
        low = a.strip().lower()
        if id_column is not None and low == id_column.lower():
            why = f"it is the join key ({id_column})"
        elif low in patient:
            why = f"it is the patient column ({arg('cluster_column')})"
        else:
            why = identifier_reason(a)
        if why is not None:
            raise InputError(
                f"{arg('attributes')} {a}: refused, {why}; the reports list every group by name, so an "
                "identifier would be published (see docs/statistics.md, 'Attributes that identify').",
                hint="Audit by a demographic column with a few groups (sex, age band, site).",
                argument="attributes",
            )


def check_group_count(
    attribute: str, n_groups: int, n_rows: int, max_groups: int, *, file: str | None = None
) -> None:
    """InputError (exit 2) when `attribute` has more than `max_groups` groups (0: no
    limit), or nearly one group per row: it is probably an identifier, and every group
    would be named in the reports. Never quotes a value."""
    if max_groups <= 0:
        return
    if n_groups > max_groups:
        raise InputError(
            f"{arg('attributes')} {attribute}: {n_groups} groups in {n_rows} rows, more than "
            f"{arg('max_groups')} {max_groups}; the reports name every group, and so many groups look "
            "like an identifier.",
            file=file,
            hint=f"Group the values first (numbers: {arg('bins')} {attribute}=EDGE,EDGE, e.g. age=40,65), "
            f"or pass {arg('max_groups')} {n_groups} if they "
            f"identify no one ({arg('max_groups')} 0 turns both group-count checks off).",
            argument="attributes",
        )
    if n_groups > NEAR_UNIQUE_MIN_GROUPS and n_groups >= NEAR_UNIQUE_SHARE * n_rows:
        raise InputError(
            f"{arg('attributes')} {attribute}: {n_groups} groups in {n_rows} rows, nearly one per row: it "
            "looks like an identifier, and the reports name every group.",
            file=file,
            hint=f"Audit by a column with a few groups, or pass {arg('max_groups')} 0 if it identifies no one.",
            argument="attributes",
        )
