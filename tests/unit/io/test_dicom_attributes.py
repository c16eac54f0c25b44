"""`--attribute dicom:KEYWORD` (fairaudit.io.dicom_attributes) against independent answers.

- PatientAge strings to years by hand ("047Y" -> 47, "006M" -> 0.5, "003W" -> 21/365.25);
- bins equal pandas.cut (left-closed) at the given edges, quartile cuts equal
  numpy.quantile and pandas.qcut's groups;
- the privacy policy per keyword (refused with exit code 2, hashed, in clear), and no
  identifying header value anywhere in the outputs;
- end to end on a DICOM folder written here: groups and their sizes counted by hand,
  a keyword outside HEADER_FIELDS read on request, --intersect with a CSV attribute,
  --unit series, the recorded bin edges, results.json valid against the schema.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydicom.uid import generate_uid

from fairaudit._util.privacy import IdHasher
from fairaudit.errors import InputError
from fairaudit.io import dicom_attributes as D
from fairaudit.io.dicom import DecodeOptions, read_file
from fairaudit.schema import validate_results

from _helpers import cli
from _helpers.dicom import write_dicom


def write_dx(path: Path, uid: str, series: str | None = None, **attrs) -> None:
    pixels = np.arange(16, dtype=np.uint16).reshape(4, 4)
    write_dicom(path, pixels, sop_uid=uid, modality="DX", SeriesInstanceUID=series or generate_uid(), **attrs)


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "years"),
    [
        ("047Y", 47.0),
        ("006M", 0.5),
        ("018M", 1.5),
        ("003W", 21 / 365.25),
        ("010D", 10 / 365.25),
        ("090y", 90.0),
        ("47", 47.0),
    ],
)
def test_patient_age_to_years(text: str, years: float) -> None:
    assert D.parse_age(text) == pytest.approx(years, rel=1e-12)


@pytest.mark.parametrize("text", ["", None, "abcY", "12X", "1234Y", "-05Y"])
def test_unparsable_age_is_missing(text) -> None:
    assert math.isnan(D.parse_age(text))


def test_bins_equal_pandas_cut_left_closed() -> None:
    values = np.array([50, 59.99, 60, 79.9, 80, 99, 100, 130, np.nan])
    labels = D.bin_labels(values, [60, 80, 100])
    codes = pd.cut(values, [-np.inf, 60, 80, 100, np.inf], right=False, labels=False)
    names = ["< 60", "[60, 80)", "[80, 100)", ">= 100"]
    expected = ["" if np.isnan(c) else names[int(c)] for c in codes]
    assert labels.tolist() == expected


def test_quartile_cuts_equal_numpy_and_qcut_groups() -> None:
    values = np.random.default_rng(0).normal(80, 10, 204)
    cuts = D.quantile_cuts(values)
    assert cuts == pytest.approx(np.quantile(values, [0.25, 0.5, 0.75]).tolist(), rel=1e-12)
    labels = D.bin_labels(values, cuts)
    qcut = pd.qcut(values, 4, labels=False)
    # Same groups as pandas.qcut (no value sits on an interpolated quartile).
    assert pd.crosstab(labels, qcut).astype(bool).sum(axis=1).eq(1).all()
    assert sorted(pd.Series(labels).value_counts().tolist()) == sorted(np.bincount(qcut).tolist())


def test_parse_bins() -> None:
    assert D.parse_bins(["dicom:KVP=100,60,80", "dicom:PatientAge=40,65"]) == {
        "dicom:KVP": [60.0, 80.0, 100.0],
        "dicom:PatientAge": [40.0, 65.0],
    }
    assert D.parse_bins(["age=65,40"]) == {"age": [40.0, 65.0]}  # a CSV column (issue 21)
    for bad in ["=60,80", "dicom:KVP", "dicom:KVP=a,b", "dicom:KVP=60,60", "dicom:KVP="]:
        with pytest.raises(InputError, match="bins="):
            D.parse_bins([bad])


# --------------------------------------------------------------------------- privacy policy


@pytest.mark.parametrize(
    "keyword",
    [
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "OtherPatientIDs",
        "AccessionNumber",
        "StudyDate",
        "AcquisitionDateTime",
        "StudyTime",
        "SOPInstanceUID",
        "StudyInstanceUID",
        "ImageComments",
        "InstitutionAddress",
        "PatientMotherBirthName",
    ],
)
def test_identifying_keywords_are_refused(keyword: str) -> None:
    with pytest.raises(InputError, match="refused"):
        D.parse_attribute(f"dicom:{keyword}")


@pytest.mark.parametrize(
    ("keyword", "kind"),
    [
        ("StationName", "hashed"),
        ("InstitutionName", "hashed"),
        ("InstitutionalDepartmentName", "hashed"),
        ("OperatorsName", "hashed"),
        ("PerformingPhysicianName", "hashed"),
        ("DeviceSerialNumber", "hashed"),
        ("SeriesDescription", "hashed"),
        ("Manufacturer", "category"),
        ("ManufacturerModelName", "category"),
        ("ViewPosition", "category"),
        ("BodyPartExamined", "category"),
        ("Modality", "category"),
        ("PatientSex", "category"),
        ("KVP", "numeric"),
        ("ExposureIndex", "numeric"),
        ("PixelSpacing", "numeric"),
        ("DistanceSourceToDetector", "numeric"),
        ("PatientAge", "age"),
    ],
)
def test_policy_per_keyword(keyword: str, kind: str) -> None:
    assert D.parse_attribute(f"dicom:{keyword}").kind == kind


def test_unknown_keyword_names_the_near_miss() -> None:
    with pytest.raises(InputError, match="Did you mean dicom:Manufacturer"):
        D.parse_attribute("dicom:manufacturer")
    with pytest.raises(InputError, match="not a DICOM keyword"):
        D.parse_attribute("dicom:NoSuchThing")


def test_hashed_groups_are_salted_hashes() -> None:
    attr = D.parse_attribute("dicom:StationName")
    raw = pd.Series(["FIXED1-DR", "PORTABLE-7", "FIXED1-DR", ""])
    groups, record = D.derive_groups(attr, raw, None, IdHasher("s3cret"))
    h = IdHasher("s3cret")
    assert groups.tolist() == ["#" + h("FIXED1-DR"), "#" + h("PORTABLE-7"), "#" + h("FIXED1-DR"), ""]
    assert record["kind"] == "hashed"
    assert not any("FIXED" in g for g in groups)


def test_numeric_with_few_values_keeps_each_value() -> None:
    attr = D.parse_attribute("dicom:KVP")
    groups, record = D.derive_groups(attr, pd.Series(["120", "125.0", "90", "", "x"]), None, str)
    assert groups.tolist() == ["120", "125", "90", "", ""]
    assert record["source"] == "values" and record["n_unparsable"] == 1


def test_reader_reads_an_extra_keyword_on_request(tmp_path: Path) -> None:
    write_dx(
        tmp_path / "a.dcm", generate_uid(), DistanceSourceToDetector="1000", ImagerPixelSpacing=[0.1, 0.2]
    )
    plain = read_file(tmp_path / "a.dcm", tmp_path, header_only=True)
    assert "DistanceSourceToDetector" not in plain.header
    extra = read_file(
        tmp_path / "a.dcm",
        tmp_path,
        header_only=True,
        options=DecodeOptions(extra_header=("DistanceSourceToDetector", "Modality")),
    )
    assert extra.status == "ok"
    assert extra.header["DistanceSourceToDetector"] == "1000"
    assert extra.header["Modality"] == "DX"  # already a header field: unchanged


# --------------------------------------------------------------------------- end to end

MAKERS = [("Acme", "PA", "FIX1"), ("Acme", "AP", "MOB9"), ("Zenith", "PA", "FIX2")]
AGES = ["030Y", "055Y", "072Y", "018M", "040Y", "065Y"]


@pytest.fixture
def folder(tmp_path: Path) -> tuple[Path, Path, Path, list[dict]]:
    """60 DX files: manufacturer/view/station cycle over MAKERS, ages over AGES, KVP by view;
    predictions keyed by SOPInstanceUID and a demographics CSV with sex."""
    rows = []
    rng = np.random.default_rng(1)
    for i in range(60):
        man, view, station = MAKERS[i % 3]
        uid = f"1.2.826.0.1.3680043.8.498.{1000 + i}"
        kvp = {"PA": 120, "AP": 85}[view] + (i % 2) * 5
        write_dx(
            tmp_path / "dicom" / f"{i:03d}.dcm",
            uid,
            series=f"1.2.3.{i // 2}",
            Manufacturer=man,
            ViewPosition=view,
            StationName=station,
            InstitutionName="St Elsewhere",
            PatientAge=AGES[i % 6],
            KVP=str(kvp),
            DistanceSourceToDetector="1000" if view == "AP" else "1800",
        )
        y = int(i % 4 == 0)
        rows.append(
            {"uid": uid, "label": y, "score": round(float(rng.random()), 3), "man": man, "view": view,
             "station": station, "age": D.parse_age(AGES[i % 6]), "kvp": kvp, "sex": "FM"[(i // 3) % 2]}
        )  # fmt: skip
    preds = tmp_path / "preds.csv"
    pd.DataFrame({"sop_instance_uid": [r["uid"] for r in rows], "label": [r["label"] for r in rows],
                  "score": [r["score"] for r in rows]}).to_csv(preds, index=False)  # fmt: skip
    demo = tmp_path / "demo.csv"
    pd.DataFrame({"sop_instance_uid": [r["uid"] for r in rows], "sex": [r["sex"] for r in rows]}).to_csv(
        demo, index=False
    )
    return tmp_path / "dicom", preds, demo, rows


def _audit(folder, out: Path, *args: str):
    dicom, preds, demo, _ = folder
    return cli.audit(str(dicom), "--predictions", str(preds), "--demographics", str(demo), "--min-group-size", "5",
                     "--salt", "pepper", *args, bootstrap=50, workers=1, quiet=True, out=out, columns=None)  # fmt: skip


def _groups(results: dict, name: str) -> dict[str, int]:
    attr = next(a for a in results["attributes"] if a["name"] == name)
    return {g["group"]: g["n"] for g in attr["groups"]}


def test_end_to_end_dicom_attributes(folder, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = _audit(
        folder, out,
        "--attribute", "dicom:Manufacturer", "--attribute", "dicom:ViewPosition",
        "--attribute", "dicom:StationName", "--attribute", "dicom:PatientAge", "--attribute", "dicom:KVP",
        "--attribute", "dicom:DistanceSourceToDetector", "--attribute", "dicom:InstitutionName",
        "--intersect", "dicom:Manufacturer,sex", "--bins", "dicom:PatientAge=1,40,65",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    validate_results(results)
    rows = folder[3]
    count = lambda key, f=lambda v: v: dict(pd.Series([f(r[key]) for r in rows]).value_counts())  # noqa: E731
    assert _groups(results, "dicom:Manufacturer") == count("man")
    assert _groups(results, "dicom:ViewPosition") == count("view")
    h = IdHasher("pepper")
    assert _groups(results, "dicom:StationName") == {"#" + h(k): v for k, v in count("station").items()}
    assert _groups(results, "dicom:InstitutionName") == {"#" + h("St Elsewhere"): 60}
    age_bin = lambda a: "< 1" if a < 1 else "[1, 40)" if a < 40 else "[40, 65)" if a < 65 else ">= 65"  # noqa: E731
    assert _groups(results, "dicom:PatientAge") == count("age", age_bin)
    assert _groups(results, "dicom:KVP") == count("kvp", str)  # 4 distinct values: one group each
    assert _groups(results, "dicom:DistanceSourceToDetector") == {"1000": 20, "1800": 40}
    both = pd.Series([f"{r['man']}×{r['sex']}" for r in rows]).value_counts().to_dict()
    assert _groups(results, "dicom:Manufacturer×sex") == both
    records = {r["name"]: r for r in results["inputs"]["dicom_attributes"]}
    assert (
        records["dicom:PatientAge"]["edges"] == [1, 40, 65]
        and records["dicom:PatientAge"]["source"] == "--bins"
    )
    assert records["dicom:KVP"]["source"] == "values"
    assert records["dicom:StationName"]["kind"] == "hashed"
    # Nothing identifying, in any output file.
    for f in ("results.json", "report.md", "report.html", "manifest.csv"):
        text = (out / f).read_text()
        for secret in ("DOE", "JANE", "PID-4711", "19700101", "FIX1", "MOB9", "St Elsewhere"):
            assert secret not in text, (f, secret)


def test_quartile_bins_are_recorded(folder, tmp_path: Path) -> None:
    out = tmp_path / "q"
    res = _audit(folder, out, "--attribute", "dicom:PatientAge")
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    rec = results["inputs"]["dicom_attributes"][0]
    ages = np.array([r["age"] for r in folder[3]])
    expected = [c for c in np.unique(np.quantile(ages, [0.25, 0.5, 0.75])) if c > ages.min()]
    assert rec["source"] == "quantiles" and rec["edges"] == pytest.approx(expected)
    assert sum(_groups(results, "dicom:PatientAge").values()) == 60


def test_series_unit_takes_the_series_first_file(folder, tmp_path: Path) -> None:
    dicom, _, _, rows = folder
    preds = tmp_path / "series.csv"
    pd.DataFrame({"series_instance_uid": [f"1.2.3.{k}" for k in range(30)], "label": [k % 2 for k in range(30)],
                  "score": [0.1 * (k % 10) for k in range(30)]}).to_csv(preds, index=False)  # fmt: skip
    out = tmp_path / "s"
    res = cli.audit(str(dicom), "--predictions", str(preds), "--unit", "series", "--attribute", "dicom:Manufacturer",
                    "--min-group-size", "5", bootstrap=20, workers=1, out=out, quiet=True, columns=None)  # fmt: skip
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    # Series k holds files 2k and 2k+1; its first file (by path) is 2k.
    expected = pd.Series([rows[2 * k]["man"] for k in range(30)]).value_counts().to_dict()
    assert _groups(results, "dicom:Manufacturer") == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--attribute", "dicom:PatientName"], "refused"),
        (["--attribute", "dicom:StudyDate"], "refused"),
        (["--attribute", "sex", "--intersect", "sex,dicom:PatientID"], "refused"),
        (["--attribute", "dicom:Nope"], "not a DICOM keyword"),
        (["--attribute", "dicom:ViewPosition", "--bins", "dicom:ViewPosition=1,2"], "cannot be binned"),
        (["--attribute", "sex", "--bins", "dicom:KVP=60,80"], "not among the audited attributes"),
    ],
)
def test_bad_dicom_attributes_exit_2(folder, tmp_path: Path, args: list[str], message: str) -> None:
    res = _audit(folder, tmp_path / "bad", *args)
    assert res.exit_code == 2
    assert message in cli.flat(res.output)


def test_dicom_attribute_needs_a_dicom_folder(folder, tmp_path: Path) -> None:
    _, preds, demo, _ = folder
    res = cli.audit("--predictions", str(preds), "--demographics", str(demo), "--attribute", "dicom:KVP",
                    out=tmp_path / "x", quiet=True, columns=None)  # fmt: skip
    assert res.exit_code == 2
    assert "DICOM_DIR" in cli.flat(res.output)
