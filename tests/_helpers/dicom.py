"""Small DICOM files written by the tests with pydicom (valid unless a test breaks them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
DX_IMAGE = "1.2.840.10008.5.1.4.1.1.1.1"


def dicom_dataset(
    pixels: np.ndarray,
    *,
    sop_uid: str | None = None,
    bits_stored: int | None = None,
    photometric: str = "MONOCHROME2",
    modality: str = "CT",
    syntax=ExplicitVRLittleEndian,
    **attrs,
) -> Dataset:
    """A minimal valid image: `pixels` is (H, W), (F, H, W) or (H, W, 3); CT image storage for
    CT and MR, digital X-ray otherwise. The patient is DOE^JANE, PID-4711, born 19700101, and
    the study and series have fresh UIDs, unless `attrs` say otherwise (None deletes one)."""
    pixels = np.asarray(pixels)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE if modality in ("CT", "MR") else DX_IMAGE
    meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = modality
    ds.PatientName = "DOE^JANE"
    ds.PatientID = "PID-4711"
    ds.PatientBirthDate = "19700101"
    color = photometric in ("RGB", "YBR_FULL")
    if color:
        ds.Rows, ds.Columns = pixels.shape[:2]
        ds.SamplesPerPixel = 3
        ds.PlanarConfiguration = 0
    else:
        ds.Rows, ds.Columns = pixels.shape[-2:]
        ds.SamplesPerPixel = 1
        if pixels.ndim == 3:
            ds.NumberOfFrames = pixels.shape[0]
    ds.PhotometricInterpretation = photometric
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated = bits
    ds.BitsStored = bits_stored or bits
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    for key, value in attrs.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    ds.PixelData = pixels.tobytes()
    return ds


def save_dicom(ds: Dataset, path: Path, *, preamble: bool = True) -> Path:
    """`ds` to `path` (its folder made): a DICOM file, or without `preamble` a bare data set
    (no 128-byte preamble, no file meta)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if preamble:
        ds.save_as(path, enforce_file_format=True)
    else:
        del ds.file_meta
        pydicom.dcmwrite(path, ds, implicit_vr=True, little_endian=True, enforce_file_format=False)
    return path


def write_dicom(path: Path, pixels: np.ndarray, *, preamble: bool = True, **kw) -> Path:
    """`dicom_dataset(pixels, **kw)` saved to `path`."""
    return save_dicom(dicom_dataset(pixels, **kw), path, preamble=preamble)
