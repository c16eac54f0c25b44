"""No patient identifier reaches any report, results.json, manifest or log line.

Identifiers are planted in DICOM headers (PatientName, PatientID, PatientBirthDate, and
an institution) and in the CSVs (a patient_id and a name column); the audit runs over
them with an unreadable file and excluded rows (so warnings are logged), and every
output and the captured logs are searched for the planted values.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from typer.testing import CliRunner

from fairaudit.cli.main import app

SECRETS = ["DOE^JANE", "DOE", "PID-SECRET-4711", "19700101", "St Secret Hospital", "Jane Doe"]


def _write_dicom(path: Path, sop: str, i: int) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # DX
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["study", str(i)])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["series", str(i)])
    ds.PatientName = "DOE^JANE"
    ds.PatientID = "PID-SECRET-4711"
    ds.PatientBirthDate = "19700101"
    ds.InstitutionName = "St Secret Hospital"
    ds.Modality = "DX"
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = (np.arange(64, dtype=np.uint16) * (i + 1) % 4096).tobytes()
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture()
def planted(tmp_path: Path) -> dict[str, Path]:
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    preds, demo = [], []
    for i in range(80):
        sop = generate_uid(entropy_srcs=["sop", str(i)])
        _write_dicom(images / f"img{i:03d}", sop, i)
        y = int(rng.random() < 0.4)
        preds.append({"sop_instance_uid": sop, "label": y, "score": round(float(rng.random()), 3)})
        demo.append(
            {
                "sop_instance_uid": sop,
                "patient_id": "PID-SECRET-4711",
                "patient_name": "Jane Doe",
                "sex": "F" if i % 2 else "M",
            }
        )
    (images / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"garbage")
    demo[3]["sex"] = ""  # a missing attribute: a warning is logged
    preds.append({"sop_instance_uid": "1.2.3.999", "label": 1, "score": 0.5})  # no file, no demo
    paths = {"images": images, "preds": tmp_path / "preds.csv", "demo": tmp_path / "demo.csv"}
    for key, rows in (("preds", preds), ("demo", demo)):
        with paths[key].open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return paths


def test_no_identifier_in_any_output_or_log(planted: dict[str, Path], tmp_path: Path, caplog) -> None:
    out = tmp_path / "out"
    caplog.set_level("DEBUG")
    result = CliRunner().invoke(
        app,
        [
            "-vv",
            "audit",
            str(planted["images"]),
            "--predictions",
            str(planted["preds"]),
            "--demographics",
            str(planted["demo"]),
            "--attribute",
            "sex",
            "--bootstrap",
            "50",
            "--format",
            "html,md,json,junit",
            "--workers",
            "1",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    texts = {p.name: p.read_text(encoding="utf-8") for p in out.iterdir() if p.is_file()}
    assert {"results.json", "report.md", "report.html", "manifest.csv", "junit.xml"} <= set(texts)
    texts["terminal"] = result.output
    texts["log"] = caplog.text
    for name, text in texts.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} found in {name}"
    manifest = texts["manifest.csv"]
    # The unreadable file is accounted for, by the pseudonym of its path (issue 19, point 8).
    assert "broken.dcm" not in manifest
    assert re.search(r'DICOM files/[0-9a-f]{16}\.dcm,,,excluded,"?failed', manifest)
    sops = [r["sop_instance_uid"] for r in csv.DictReader(planted["preds"].open())]
    assert not any(s in manifest for s in sops)  # ids are salted hashes, not the UIDs
