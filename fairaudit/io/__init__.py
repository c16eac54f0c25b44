"""Reading inputs: CSV tables, masks and DICOM files (no torch here). The join of these into
an audited cohort is fairaudit.cohort."""

from fairaudit.io.tables import ID_CANDIDATES, Table, read_table

__all__ = ["ID_CANDIDATES", "Table", "read_table"]
