"""The one id -> DICOM tag map (fairaudit.io.tables.DICOM_ID_TAGS) that every DICOM join uses."""

from __future__ import annotations

from types import SimpleNamespace

from pydicom.datadict import dictionary_VR, tag_for_keyword

from fairaudit.cohort.images import outcome_id
from fairaudit.io.dicom import HEADER_FIELDS
from fairaudit.io.tables import DICOM_ID_TAGS, ID_CANDIDATES


def test_every_id_column_maps_to_a_standard_tag_the_reader_keeps() -> None:
    assert DICOM_ID_TAGS == {
        "sop_instance_uid": "SOPInstanceUID",  # (0008,0018)
        "study_instance_uid": "StudyInstanceUID",  # (0020,000D)
        "series_instance_uid": "SeriesInstanceUID",  # (0020,000E)
        "patient_id": "PatientID",  # (0010,0020)
    }
    for keyword in DICOM_ID_TAGS.values():
        tag = tag_for_keyword(keyword)
        assert tag is not None and dictionary_VR(tag) in ("UI", "LO")
        assert keyword in HEADER_FIELDS  # decoded headers carry it
    assert set(ID_CANDIDATES) - {"path"} <= set(DICOM_ID_TAGS)


def test_normalize_and_augment_check_join_on_series_too() -> None:
    """The copy normalize and augment-check had lacked series_instance_uid."""
    o = SimpleNamespace(path="a/b.dcm", header={"SeriesInstanceUID": " 1.2.3 ", "PatientID": "P1"})
    assert outcome_id(o, "series_instance_uid") == "1.2.3"
    assert outcome_id(o, "PATIENT_ID") == "P1"
    assert outcome_id(o, "path") == "a/b.dcm"
