"""Write a synthetic radiograph as a real DICOM file: CR (portable) or DX (fixed units).

12 bits stored in 16 allocated, unsigned; MONOCHROME2 or MONOCHROME1 (stored inverted, so
it displays the same); Explicit VR Little Endian, RLE Lossless or JPEG-LS Lossless. Every
UID is derived from the caller's entropy (the cohort seed), so the same seed writes
byte-identical files. Nothing here identifies a person: names and ids are synthetic and
every file says so in ImageComments.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from fairaudit.sample.phantom import MAX_STORED, Site

TRANSFER_SYNTAXES = {
    "explicit_vr_little_endian": ExplicitVRLittleEndian,
    "rle_lossless": RLELossless,
    "jpeg_ls_lossless": JPEGLSLossless,
}
PHOTOMETRICS = ("MONOCHROME2", "MONOCHROME1")


def make_uid(*entropy: object) -> str:
    """A deterministic UID under pydicom's root, derived from `entropy` (SHA-512).

    ``generate_uid(prefix=None, ...)`` would ignore the entropy and return a random
    2.25 UUID, so the default (pydicom) prefix is used. The parts are joined with a
    separator, so ("1", "23") and ("12", "3") give different UIDs.
    """
    return generate_uid(entropy_srcs=["|".join(["fairaudit-sample-data", *map(str, entropy)])])


@dataclass(frozen=True)
class ImageInfo:
    """Who and what one file describes (all synthetic)."""

    patient_id: str
    patient_name: str
    sex: str  # "F" or "M"
    age_years: int
    study_uid: str
    series_uid: str
    sop_uid: str
    study_date: str  # YYYYMMDD
    study_time: str  # HHMMSS
    accession: str


def build_dataset(
    pixels: np.ndarray, info: ImageInfo, site: Site, photometric: str = "MONOCHROME2"
) -> Dataset:
    """An uncompressed (Explicit VR Little Endian) dataset for `pixels`.

    `pixels` are uint16 values 0..4095 where bright means attenuating (MONOCHROME2 sense);
    with MONOCHROME1 they are stored as 4095 - value.
    """
    if photometric not in PHOTOMETRICS:
        raise ValueError(f"photometric must be one of {PHOTOMETRICS}, got {photometric!r}")
    if pixels.dtype != np.uint16 or pixels.ndim != 2 or int(pixels.max(initial=0)) > MAX_STORED:
        raise ValueError("pixels must be a 2-D uint16 array with values 0..4095")
    stored = (MAX_STORED - pixels).astype(np.uint16) if photometric == "MONOCHROME1" else pixels
    rows, cols = pixels.shape
    cr = site.modality == "CR"
    sop_class = ComputedRadiographyImageStorage if cr else DigitalXRayImageStorageForPresentation

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = info.sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = info.sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = info.study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = info.study_time
    ds.AccessionNumber = info.accession
    ds.Modality = site.modality
    ds.Manufacturer = site.manufacturer
    ds.InstitutionName = site.institution
    ds.ReferringPhysicianName = ""
    ds.StationName = site.station
    ds.StudyDescription = "CHEST"
    ds.SeriesDescription = f"CHEST {site.view}"
    ds.ManufacturerModelName = site.model
    ds.PatientName = info.patient_name
    ds.PatientID = info.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = info.sex
    ds.PatientAge = f"{info.age_years:03d}Y"
    ds.BodyPartExamined = "CHEST"
    ds.KVP = f"{site.kvp:g}"
    ds.DistanceSourceToDetector = f"{site.sid_mm:g}"
    spacing = f"{site.spacing_mm(cols):g}"
    ds.ImagerPixelSpacing = [spacing, spacing]
    ds.ViewPosition = site.view
    if not cr:
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.DetectorType = "SCINTILLATOR"
        ds.PixelSpacing = [spacing, spacing]
    ds.StudyInstanceUID = info.study_uid
    ds.SeriesInstanceUID = info.series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = ["L", "F"]
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.ImageComments = "Synthetic phantom made by fairaudit sample-data; not a patient."

    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelIntensityRelationship = "LOG"
    # -1: higher stored values mean less X-ray intensity (MONOCHROME2 here); +1 inverted.
    ds.PixelIntensityRelationshipSign = 1 if photometric == "MONOCHROME1" else -1
    lo, hi = np.percentile(stored, [1, 99])
    ds.WindowCenter = f"{round((lo + hi) / 2)}"
    ds.WindowWidth = f"{max(1, round(hi - lo))}"
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    ds.PixelData = np.ascontiguousarray(stored, dtype="<u2").tobytes()
    return ds


def write_image(
    path: Path,
    pixels: np.ndarray,
    info: ImageInfo,
    site: Site,
    *,
    photometric: str = "MONOCHROME2",
    transfer_syntax: str = "explicit_vr_little_endian",
) -> Path:
    """Write one file; `transfer_syntax` is a key of TRANSFER_SYNTAXES."""
    if transfer_syntax not in TRANSFER_SYNTAXES:
        raise ValueError(
            f"transfer_syntax must be one of {sorted(TRANSFER_SYNTAXES)}, got {transfer_syntax!r}"
        )
    ds = build_dataset(pixels, info, site, photometric)
    uid = TRANSFER_SYNTAXES[transfer_syntax]
    if uid != ExplicitVRLittleEndian:
        stored = np.frombuffer(ds.PixelData, dtype="<u2").reshape(ds.Rows, ds.Columns)
        # Lossless: the SOP Instance UID stays (pydicom would otherwise draw a random one).
        ds.compress(uid, stored, encoding_plugin=_plugin(uid), generate_instance_uid=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _plugin(uid: str) -> str:
    """A fixed encoder per syntax, so the bytes do not depend on which plugins are installed.

    RLE: pylibjpeg-rle (a dependency) writes the same bytes as pydicom's own encoder
    (tested) about ten times faster, which matters at 1024 x 1024.
    """
    if uid == JPEGLSLossless:
        return "pyjpegls"
    if uid == RLELossless:
        return "pylibjpeg"
    return "pydicom"
