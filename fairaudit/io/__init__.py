"""Inputs: CSV tables, the cohort join and the manifest. (No torch, no pydicom here.)"""

from fairaudit.io.cohort import Cohort, CohortSpec, build_cohort
from fairaudit.io.privacy import IdHasher
from fairaudit.io.tables import ID_CANDIDATES, Table, read_table

__all__ = [
    "ID_CANDIDATES",
    "Cohort",
    "CohortSpec",
    "IdHasher",
    "Table",
    "build_cohort",
    "read_table",
]
