"""Issue 19, point 8: identifiers never leak into outputs or logs without --keep-ids.

Hostile inputs are built here with pydicom: a DICOM folder whose folder and file names
hold a patient's name and MRN, a file whose PhotometricInterpretation holds them (the
decoder's error quotes it), and a demographics file with an MRN column. Every output
file and every log line (-vv) is searched for the identifying strings.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from fairaudit._util.privacy import HIDDEN, IdHasher, scrub_reason
from fairaudit.cohort.identifiers import check_group_count, identifier_reason, refuse_identifier_attributes
from fairaudit.errors import InputError
from fairaudit.io.dicom import read_file

from _helpers import cli
from _helpers.dicom import write_dicom

# The identifying strings: none may appear in any output or log line without --keep-ids.
LEAKS = ("DOE_JANE", "DOE^JANE", "JANE", "MRN4455667", "4455667")
FOLDER = "DOE_JANE_MRN4455667_00"
SALT = "test-salt-19"
N = 60


def _dicom(path: Path, sop: str, *, photometric: str = "MONOCHROME2") -> Path:
    """A small valid CT image whose header also names the patient (as real files do)."""
    pixels = (np.arange(64, dtype=np.uint16) * int(sop.rsplit(".", 1)[-1])).reshape(8, 8)
    with warnings.catch_warnings():  # pydicom warns that the value is too long for CS: it is meant to be
        warnings.simplefilter("ignore")
        return write_dicom(
            path, pixels, sop_uid=sop, photometric=photometric, StudyInstanceUID=sop + ".1",
            SeriesInstanceUID=sop + ".2", PatientID="MRN4455667", PatientBirthDate=None, PixelSpacing=[0.5, 0.5],
        )  # fmt: skip


def _uid(i: int) -> str:
    return f"1.2.826.0.1.19.{i + 1}"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Path:
    """images/ (identifying names), preds.csv, demo.csv (with mrn and patient_id columns)."""
    root = tmp_path_factory.mktemp("hostile")
    images = root / "images"
    for i in range(N):
        _dicom(images / FOLDER / f"DOE_JANE_{i:02d}.dcm", _uid(i))
    # Decodes to an error that quotes the header value (pixel decoding only).
    _dicom(images / FOLDER / "DOE_JANE_bad.dcm", _uid(N), photometric="DOE^JANE MRN4455667")
    (images / FOLDER / "DOE_JANE_notes.txt").write_text("not an image\n")
    cut = images / "DOE_JANE_MRN4455667_01" / "DOE_JANE_cut.dcm"
    cut.parent.mkdir()
    cut.write_bytes(b"\0" * 128 + b"DICM" + b"DOE^JANE MRN4455667" * 3)
    preds = ["sop_instance_uid,label,score"]
    demo = ["sop_instance_uid,sex,mrn,patient_id,site,code"]
    for i in range(N):
        label = int(i % 3 == 0)
        preds.append(f"{_uid(i)},{label},{0.3 + 0.4 * label + (i % 7) / 50:.3f}")
        demo.append(f"{_uid(i)},{'FM'[i % 2]},MRN44556{i:02d},P{i // 2},S{i},C{i}")
    (root / "preds.csv").write_text("\n".join(preds) + "\n")
    (root / "demo.csv").write_text("\n".join(demo) + "\n")
    return root


def _invoke(*args: str) -> tuple[int, str]:
    res = cli.invoke(["-vv", *args], env={"FAIRAUDIT_WORKERS": "1"}, catch_exceptions=False)
    return res.exit_code, res.output  # stdout and stderr, as a terminal shows them


def _audit(root: Path, out: Path, *extra: str) -> tuple[int, str]:
    return _invoke(
        "audit", str(root / "images"), "--predictions", str(root / "preds.csv"),
        "--demographics", str(root / "demo.csv"), "--attribute", "sex", "--bootstrap", "50",
        "--salt", SALT, "--out", str(out), *extra,
    )  # fmt: skip


def _outputs(out: Path) -> str:
    return "\n".join(
        p.read_text(encoding="utf-8", errors="replace") for p in sorted(out.rglob("*")) if p.is_file()
    )


def _no_leak(text: str, where: str) -> None:
    for s in LEAKS:
        assert s not in text, f"{s!r} in {where}"


# --------------------------------------------------------------------------- (a) paths


def test_audit_writes_no_identifying_path(hostile: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, log_text = _audit(hostile, out)
    assert code == 0, log_text
    _no_leak(_outputs(out), "the outputs")
    _no_leak(log_text, "the log lines (-vv)")
    manifest = (out / "manifest.csv").read_text()
    # What a user needs to find a bad file: the pseudonym of its path, and its extension.
    hasher = IdHasher(SALT)
    for rel in (
        f"{FOLDER}/DOE_JANE_00.dcm",
        f"{FOLDER}/DOE_JANE_notes.txt",
        "DOE_JANE_MRN4455667_01/DOE_JANE_cut.dcm",
    ):
        assert f"DICOM files/{hasher.path(rel)}" in manifest, rel
    assert re.search(r"DICOM files/[0-9a-f]{16}\.txt,", manifest)
    # The log names the same pseudonyms as the manifest (a user can match them).
    assert hasher.path(f"{FOLDER}/DOE_JANE_notes.txt") in log_text
    results = json.loads((out / "results.json").read_text())
    assert all("DICOM files/" not in e["reason"] for e in results["inputs"]["excluded"])


def test_keep_ids_keeps_paths_in_clear(hostile: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, log_text = _audit(hostile, out, "--keep-ids")
    assert code == 0, log_text
    manifest = (out / "manifest.csv").read_text()
    assert f"DICOM files/{FOLDER}/DOE_JANE_00.dcm" in manifest
    assert f"DICOM files/{FOLDER}/DOE_JANE_notes.txt" in manifest


def test_path_pseudonym_keeps_only_a_plain_extension() -> None:
    h = IdHasher("s")
    assert h.path("A/DOE.dcm") == h("A/DOE.dcm") + ".dcm"
    assert h.path("A/DOE.DCM").endswith(".dcm")
    assert h.path("A/DOE_JANE") == h("A/DOE_JANE")  # no extension, nothing added
    assert "MRN" not in h.path("A/DOE.MRN4455667") and h.path("A/DOE.MRN4455667") == h("A/DOE.MRN4455667")
    assert h.path("") == ""
    assert IdHasher("s", keep_ids=True).path("A/DOE.dcm") == "A/DOE.dcm"
    assert h.path("x.dcm") != IdHasher("t").path("x.dcm")


def test_normalize_writes_no_identifying_path_nor_header_value(hostile: Path, tmp_path: Path) -> None:
    """normalize decodes the pixels: the bad file's reason must not quote its header value."""
    out = tmp_path / "norm"
    code, log_text = _invoke(
        "normalize", str(hostile / "images"), "--method", "percentile", "--demographics",
        str(hostile / "demo.csv"), "--attribute", "sex", "--bootstrap", "100", "--no-previews",
        "--salt", SALT, "--out", str(out), "--workers", "1",
    )  # fmt: skip
    assert code == 0, log_text
    _no_leak(_outputs(out), "normalize's outputs")
    _no_leak(log_text, "normalize's log lines")
    manifest = (out / "manifest.csv").read_text()
    bad = IdHasher(SALT).path(f"{FOLDER}/DOE_JANE_bad.dcm")
    row = next(line for line in manifest.splitlines() if bad in line)
    assert "Photometric Interpretation" in row and HIDDEN in row, row


# --------------------------------------------------------------------------- (b) reasons


def test_decoder_reason_names_the_attribute_not_the_value(hostile: Path) -> None:
    path = hostile / "images" / FOLDER / "DOE_JANE_bad.dcm"
    outcome = read_file(path, hostile / "images", header_only=False)
    assert outcome.status == "failed"
    assert "Photometric Interpretation" in outcome.reason and HIDDEN in outcome.reason
    _no_leak(outcome.reason, "the reason")
    cut = read_file(
        hostile / "images" / "DOE_JANE_MRN4455667_01" / "DOE_JANE_cut.dcm",
        hostile / "images",
        header_only=True,
    )
    assert cut.status in ("failed", "skipped")
    _no_leak(cut.reason, "the cut file's reason")


def test_scrub_reason() -> None:
    text = "Unknown (0028,0004) 'Photometric Interpretation' value 'DOE^JANE MRN4455667'"
    assert scrub_reason(text) == f"Unknown (0028,0004) 'Photometric Interpretation' value {HIDDEN}"
    assert "PhotometricInterpretation" in scrub_reason("'PhotometricInterpretation' is 'X Y'")
    assert scrub_reason("bad value DOE^JANE here", ["DOE^JANE"]) == f"bad value {HIDDEN} here"
    assert scrub_reason('a "quoted" thing') == f"a {HIDDEN} thing"
    assert (
        scrub_reason("can't read the file's 'X Y'") == f"can't read the file's {HIDDEN}"
    )  # apostrophes stay


def test_worker_and_read_logs_show_pseudonyms(hostile: Path, caplog: pytest.LogCaptureFixture) -> None:
    from fairaudit._util.privacy import use_for_logs
    from fairaudit.io.dicom import iter_outcomes

    hasher = IdHasher(SALT)
    use_for_logs(hasher)
    with caplog.at_level(logging.DEBUG, logger="fairaudit"):
        outcomes = list(iter_outcomes(hostile / "images", header_only=False, workers=1, progress=False))
    assert len(outcomes) == N + 3
    text = "\n".join(r.getMessage() for r in caplog.records)
    _no_leak(text, "the log records")
    assert hasher.path(f"{FOLDER}/DOE_JANE_bad.dcm") in text


# --------------------------------------------------------------------------- (c) attributes


@pytest.mark.parametrize(
    ("attribute", "why"),
    [
        ("mrn", "name is that of an identifier"),
        ("patient_id", "patient"),
        ("sop_instance_uid", "join key"),
    ],
)
def test_identifier_attribute_is_refused(hostile: Path, tmp_path: Path, attribute: str, why: str) -> None:
    out = tmp_path / "out"
    code, text = _audit(hostile, out, "--attribute", attribute)
    assert code == 2, text
    assert f"--attribute {attribute}: refused" in text and why in text
    _no_leak(text, "the message")
    assert "MRN44556" not in text
    assert not (out / "report.md").exists()


def test_too_many_groups_is_refused_before_the_statistics(hostile: Path, tmp_path: Path) -> None:
    code, text = _audit(hostile, tmp_path / "o1", "--attribute", "site")
    assert code == 2 and "--max-groups 20" in text and "60 groups" in text, text
    assert "S59" not in text
    # Raised above the count, a column with fewer groups than rows is audited...
    code, text = _audit(
        hostile, tmp_path / "o2", "--attribute", "site", "--max-groups", "100", "--min-group-size", "1"
    )
    assert code == 2 and "nearly one per row" in text, text  # 60 groups in 60 rows
    # ...and --max-groups 0 turns the count checks off (the name checks stay).
    code, text = _audit(hostile, tmp_path / "o3", "--attribute", "code", "--max-groups", "0")
    assert code == 0, text
    code, text = _audit(hostile, tmp_path / "o4", "--attribute", "mrn", "--max-groups", "0")
    assert code == 2 and "refused" in text


def test_model_run_refuses_identifier_attribute_before_loading(hostile: Path, tmp_path: Path) -> None:
    """The check runs before the model is loaded: a model file that does not exist is never opened."""
    code, text = _invoke(
        "audit", str(hostile / "images"), "--model", str(tmp_path / "absent.onnx"),
        "--demographics", str(hostile / "demo.csv"), "--labels", str(hostile / "preds.csv"),
        "--attribute", "mrn", "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert code == 2 and "--attribute mrn: refused" in text, text


def test_identifier_names() -> None:
    for name in ("mrn", "MRN", "patient_name", "PatientName", "ssn", "accession_number", "AccessionNo",
                 "patient_mrn", "study_uid", "date_of_birth", "id"):  # fmt: skip
        assert identifier_reason(name) is not None, name
    for name in ("sex", "race", "age_band", "site", "site_id", "scanner", "PatientSex", "patient_age"):
        assert identifier_reason(name) is None, name
    with pytest.raises(InputError, match="patient column"):
        refuse_identifier_attributes(["subj"], cluster_columns=["subj"])
    with pytest.raises(InputError, match="join key"):
        refuse_identifier_attributes(["Key"], id_column="key")
    refuse_identifier_attributes(["dicom:PatientName"])  # vetted by dicom_attributes instead
    check_group_count("x", 50, 1000, 50)
    with pytest.raises(InputError, match="max_groups= 50"):
        check_group_count("x", 51, 1000, 50)
    check_group_count("x", 11, 11, 0)
    with pytest.raises(InputError, match="nearly one per row"):
        check_group_count("x", 11, 12, 50)
    check_group_count("x", 10, 10, 50)  # a small table is not an identifier
