"""DICOM reading: scan a folder by content, read headers, decode pixels, assemble series.

Imported explicitly (``import fairaudit.io.dicom``) so that predictions-only audits never
import pydicom. Policies (what counts as DICOM, symlinks, multi-frame, colour, VOI LUT,
padding, spacing, limits) are in docs/dicom.md. PNG and JPEG files in the folder are read
too, by content, in the same scan (fairaudit.io.images, docs/images.md).

    from fairaudit.io.dicom import DecodeOptions, iter_outcomes, assemble_series

    for outcome in iter_outcomes(root, header_only=False, options=DecodeOptions(frames="middle")):
        if outcome.status == "ok":
            outcome.image  # float32 (H, W), finite; outcome.spacing == (row, col) mm
"""

from fairaudit.io.dicom._decode import (
    DEFAULT_OPTIONS,
    FRAME_POLICIES,
    HEADER_FIELDS,
    DecodeOptions,
    FileOutcome,
    limited_options,
    read_file,
)
from fairaudit.io.dicom._parallel import iter_outcomes, workers_default
from fairaudit.io.dicom._scan import scan
from fairaudit.io.dicom._series import SERIES_MODALITIES, SeriesVolume, assemble_series

__all__ = [
    "DEFAULT_OPTIONS",
    "FRAME_POLICIES",
    "HEADER_FIELDS",
    "SERIES_MODALITIES",
    "DecodeOptions",
    "FileOutcome",
    "SeriesVolume",
    "assemble_series",
    "iter_outcomes",
    "limited_options",
    "read_file",
    "scan",
    "workers_default",
]
