"""The audited cohort: predictions, labels, demographics and files joined on one id, every
input row accounted for in manifest.csv, ids pseudonymized, attributes checked and grouped."""

from fairaudit._util.privacy import IdHasher
from fairaudit.cohort.join import Cohort, CohortSpec, build_cohort

__all__ = ["Cohort", "CohortSpec", "IdHasher", "build_cohort"]
