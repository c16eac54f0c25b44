"""`fairaudit sample-data`: real DICOM that decodes, labelled masks, the planted site/race
structure, per-site physics (noise, contrast), joinable CSVs, byte-identical reruns."""

from __future__ import annotations

import csv
import hashlib
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import PYDICOM_ROOT_UID, ExplicitVRLittleEndian, JPEGLSLossless, RLELossless
from scipy import ndimage, stats

from fairaudit.sample import phantom
from fairaudit.sample.cohort import FINDING_PREVALENCE, FINDINGS, plan_cohort, simulated_scores

from _helpers import cli

N, SIZE, SEED = 60, 64, 3


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def run_cli(*args: str):
    return cli.invoke(["sample-data", *args], columns=None)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sample") / "cohort"
    r = run_cli(str(out), "--n", str(N), "--size", str(SIZE), "--seed", str(SEED))
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def images(cohort: Path) -> list[dict]:
    """Every image read back: its row of images.csv, dataset, display pixels, mask."""
    out = []
    for row in read_csv(cohort / "images.csv"):
        ds = pydicom.dcmread(cohort / row["path"])
        stored = ds.pixel_array
        display = 4095 - stored.astype(np.int32) if ds.PhotometricInterpretation == "MONOCHROME1" else stored
        mask = Image.open(cohort / row["mask"])
        out.append({"row": row, "ds": ds, "stored": stored, "display": display, "mask": mask})
    return out


def test_cli_writes_every_file(cohort: Path, images: list[dict]) -> None:
    for name in (
        "demographics.csv",
        "labels.csv",
        "findings.csv",
        "predictions.csv",
        "images.csv",
        "README.md",
    ):
        assert (cohort / name).is_file(), name
    assert len(images) == N
    dicoms = [p for p in (cohort / "images").rglob("*") if p.is_file()]
    assert len(dicoms) == N
    assert {p.parent.name for p in dicoms} <= set(phantom.SITES)
    assert any(p.suffix == "" for p in dicoms) and any(p.suffix == ".dcm" for p in dicoms)
    assert len(list((cohort / "masks").glob("*.png"))) == N
    readme = (cohort / "README.md").read_text(encoding="utf-8")
    assert f"fairaudit sample-data cohort --n {N} --size {SIZE} --seed {SEED}" in readme


def test_dicom_decodes_12_bit_with_the_expected_mix(images: list[dict]) -> None:
    syntaxes, photometrics = Counter(), Counter()
    for im in images:
        ds, stored = im["ds"], im["stored"]
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 12, 11, 0)
        assert stored.shape == (SIZE, SIZE) and stored.dtype == np.uint16
        assert 0 <= int(stored.min()) and int(stored.max()) <= 4095
        assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.0, 0.0)
        syntaxes[ds.file_meta.TransferSyntaxUID] += 1
        photometrics[ds.PhotometricInterpretation] += 1
        assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID == im["row"]["sop_instance_uid"]
    assert set(syntaxes) == {ExplicitVRLittleEndian, RLELossless, JPEGLSLossless}
    assert syntaxes[RLELossless] == syntaxes[JPEGLSLossless] == N // 4
    assert photometrics["MONOCHROME1"] == N // 5 and photometrics["MONOCHROME2"] == N - N // 5


def test_dicom_tags_per_site(images: list[dict]) -> None:
    for im in images:
        ds, site = im["ds"], phantom.SITES[im["row"]["site"]]
        assert ds.Modality == site.modality == ("CR" if site.name == "portable" else "DX")
        assert ds.ViewPosition == ("AP" if site.name == "portable" else "PA")
        assert ds.Manufacturer == site.manufacturer and ds.ManufacturerModelName == site.model
        assert ds.StationName == site.station and ds.InstitutionName == site.institution
        spacing = [float(v) for v in ds.ImagerPixelSpacing]
        assert spacing == [site.spacing_mm(SIZE)] * 2
        if site.modality == "DX":
            assert [float(v) for v in ds.PixelSpacing] == spacing
        else:
            assert "PixelSpacing" not in ds
        assert ds.BodyPartExamined == "CHEST"
        assert str(ds.PatientName) == f"SYNTHETIC^{ds.PatientID}"
        assert len(ds.PatientAge) == 4 and ds.PatientAge.endswith("Y")
        assert ds.PatientSex in ("F", "M")
        for uid in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID):
            assert uid.is_valid and uid.startswith(PYDICOM_ROOT_UID)


def test_monochrome1_is_stored_inverted(images: list[dict]) -> None:
    """After undoing MONOCHROME1, every image has dark lungs and a bright mediastinum."""
    for im in images:
        mask, display = np.asarray(im["mask"]), im["display"]
        mediastinum = display[int(0.35 * SIZE) : int(0.55 * SIZE), SIZE // 2 - 2 : SIZE // 2 + 2]
        assert np.median(mediastinum) > np.median(display[mask == phantom.LUNG]) + 300


def test_masks_are_labelled_pngs_matching_findings(cohort: Path, images: list[dict]) -> None:
    """Mask label 2 is the consolidation; labels.csv's finding is "any finding" (images.csv
    records every true finding with its severity)."""
    finding = {r["sop_instance_uid"]: int(r["finding"]) for r in read_csv(cohort / "labels.csv")}
    assert 0 < sum(finding.values()) < N
    for im in images:
        truth = im["row"]["findings"]
        assert finding[im["row"]["sop_instance_uid"]] == int(truth != "")
        assert {part.split(":")[0] for part in truth.split(";") if part} <= set(FINDINGS)
        m = im["mask"]
        assert m.mode == "L" and m.size == (SIZE, SIZE)
        a = np.asarray(m)
        assert set(np.unique(a)) <= {0, 1, 2}
        assert (a == phantom.LUNG).sum() > 0.1 * SIZE * SIZE
        has_lesion = bool((a == phantom.LESION).any())
        assert has_lesion == ("Consolidation:" in im["row"]["findings"])
        if has_lesion:  # inside a lung field
            lungs = ndimage.binary_dilation(a == phantom.LUNG, iterations=2)
            assert lungs[a == phantom.LESION].mean() > 0.5


def test_csvs_join_one_to_one(cohort: Path, images: list[dict]) -> None:
    demo = read_csv(cohort / "demographics.csv")
    labels = read_csv(cohort / "labels.csv")
    preds = read_csv(cohort / "predictions.csv")
    assert list(demo[0]) == ["sop_instance_uid", "patient_id", "sex", "age_group", "race", "site"]
    assert list(labels[0]) == ["sop_instance_uid", "finding"]
    assert list(preds[0]) == ["sop_instance_uid", "label", "score"]
    ids = [r["sop_instance_uid"] for r in demo]
    assert len(set(ids)) == N
    assert [r["sop_instance_uid"] for r in labels] == ids == [r["sop_instance_uid"] for r in preds]
    assert [r["finding"] for r in labels] == [r["label"] for r in preds]
    assert all(0.0 <= float(r["score"]) <= 1.0 for r in preds)
    found = read_csv(cohort / "findings.csv")
    assert list(found[0]) == ["sop_instance_uid", *FINDINGS, "No Finding"]
    assert [r["sop_instance_uid"] for r in found] == ids
    for row, truth in zip(found, labels, strict=True):
        assert {row[f] for f in FINDINGS} <= {"1", "0", "-1", ""}
        # CheXpert's rule: No Finding is 1 exactly when no finding is written 1 or -1.
        assert row["No Finding"] == ("1" if all(row[f] in ("0", "") for f in FINDINGS) else "0")
        # The labeller never writes a finding that is absent as present, nor misses one
        # outright: a written 1 means present, and a present finding is 1 or -1.
        if truth["finding"] == "0":
            assert "1" not in {row[f] for f in FINDINGS}
    by_id = {r["sop_instance_uid"]: r for r in demo}
    for im in images:
        ds, d = im["ds"], by_id[im["ds"].SOPInstanceUID]
        assert (ds.PatientID, ds.PatientSex) == (d["patient_id"], d["sex"])
        assert d["site"] == im["row"]["site"] and d["race"] in ("A", "B", "C")


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    def digests(root: Path) -> dict[str, str]:
        return {
            p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file()
        }

    runs = {}
    for name, seed, global_seed in (("r1", 5, 1), ("r2", 5, 2), ("r3", 6, 1)):
        np.random.seed(global_seed)  # the global state must not matter
        out = tmp_path / name / "cohort"
        r = run_cli(str(out), "--n", "12", "--size", "48", "--seed", str(seed), "--quiet")
        assert r.exit_code == 0, r.output
        runs[name] = digests(out)
    assert runs["r1"] == runs["r2"]
    assert len(runs["r1"]) == 12 * 2 + 6
    assert set(runs["r1"].values()).isdisjoint(
        v for k, v in runs["r3"].items() if k.startswith("images/") or k == "predictions.csv"
    )


def test_site_correlates_with_race_and_sex_is_independent() -> None:
    plans = plan_cohort(4000, 64, seed=11)
    race = np.array([p.race for p in plans])
    site = np.array([p.site for p in plans])
    sex = np.array([p.sex for p in plans])
    portable = site == "portable"
    assert portable[race == "C"].mean() > 0.6
    assert portable[race == "A"].mean() < 0.2
    sites, sexes = sorted(set(site)), ["F", "M"]
    table = np.array([[np.sum((site == s) & (sex == x)) for x in sexes] for s in sites])
    assert stats.chi2_contingency(table).pvalue > 0.01
    # Findings are drawn independently: P(any) = 1 - prod(1 - p) = 1 - 0.85**4 * 0.9 = 0.530.
    assert abs(np.mean([p.finding for p in plans]) - (1 - 0.85**4 * 0.9)) < 0.03
    for name, prevalence in FINDING_PREVALENCE.items():
        assert abs(np.mean([p.truth[name] > 0 for p in plans]) - prevalence) < 0.025, name
    patients = Counter(p.patient_id for p in plans)
    assert 1 < max(patients.values()) <= 2  # some follow-ups, for patient-level splits


def test_portable_is_noisier_and_lower_contrast(images: list[dict]) -> None:
    noise, contrast = {True: [], False: []}, {True: [], False: []}
    for im in images:
        mask = np.asarray(im["mask"])
        img = im["display"].astype(np.float64)
        lung = ndimage.binary_erosion(mask == phantom.LUNG, iterations=2)
        residual = img - ndimage.uniform_filter(img, 3)  # high-pass: mostly noise
        mediastinum = img[int(0.35 * SIZE) : int(0.55 * SIZE), SIZE // 2 - 2 : SIZE // 2 + 2]
        portable = im["row"]["site"] == "portable"
        noise[portable].append(residual[lung].std())
        contrast[portable].append(np.median(mediastinum) - np.median(img[lung]))
    assert len(noise[True]) >= 5 and len(noise[False]) >= 5
    assert np.median(noise[True]) > 1.5 * np.median(noise[False])
    assert np.median(contrast[True]) < 0.9 * np.median(contrast[False])


def test_lesions_are_harder_to_see_on_portable(cohort: Path) -> None:
    rows = [r for r in read_csv(cohort / "images.csv") if float(r["lesion_cnr"]) > 0]
    cnr = {s: [float(r["lesion_cnr"]) for r in rows if (r["site"] == "portable") == s] for s in (True, False)}
    assert cnr[True] and cnr[False]
    assert np.median(cnr[True]) < 0.5 * np.median(cnr[False])
    # The same patient and lesion, imaged on each unit at nominal exposure: lower CNR on the portable.
    rng = np.random.default_rng(7)
    a, lesion = phantom.draw_anatomy(rng), phantom.draw_lesion(rng)
    flat = phantom.Exposure(1.0, 0.0, 0.0, 0.0)
    seen = {
        s: phantom.render(a, lesion, phantom.SITES[s], flat, 64, np.random.default_rng(0)).lesion_cnr
        for s in phantom.SITES
    }
    assert seen["portable"] < 0.5 * min(seen["fixed_1"], seen["fixed_2"])
    labels = np.ones(2000, dtype=int)
    low = simulated_scores(labels, np.full(2000, 2.0), seed=0)
    high = simulated_scores(labels, np.full(2000, 9.0), seed=0)
    assert (low >= 0.5).mean() < 0.4 < 0.8 < (high >= 0.5).mean()


def test_phantom_uses_only_the_generator_it_is_given() -> None:
    a = phantom.draw_anatomy(np.random.default_rng(1))
    site = phantom.SITES["fixed_1"]
    e = phantom.draw_exposure(site, np.random.default_rng(2))
    np.random.seed(0)
    r1 = phantom.render(a, None, site, e, 48, np.random.default_rng(3))
    np.random.seed(1)
    r2 = phantom.render(a, None, site, e, 48, np.random.default_rng(3))
    r3 = phantom.render(a, None, site, e, 48, np.random.default_rng(4))
    assert np.array_equal(r1.pixels, r2.pixels) and not np.array_equal(r1.pixels, r3.pixels)
    assert np.array_equal(r1.mask, r3.mask) and r1.lesion_cnr == 0.0


def test_cli_refuses_to_overwrite_and_bad_sizes(tmp_path: Path) -> None:
    out = tmp_path / "c"
    assert run_cli(str(out), "--n", "4", "--size", "32", "-q").exit_code == 0
    r = run_cli(str(out), "--n", "4", "--size", "32", "-q")
    assert r.exit_code == 2 and "--overwrite" in r.output
    r = run_cli(str(out), "--n", "3", "--size", "32", "-q", "--overwrite")
    assert r.exit_code == 0
    assert len([p for p in (out / "images").rglob("*") if p.is_file()]) == 3
    assert run_cli(str(tmp_path / "d"), "--n", "4", "--size", "16").exit_code == 2
    assert run_cli(str(tmp_path / "e"), "--n", "0").exit_code == 2
    assert not (tmp_path / "d").exists()


def test_command_module_is_import_light() -> None:
    code = (
        "import sys\nimport fairaudit.cli.sample_data\n"
        "print(sorted(m for m in ('numpy', 'pydicom', 'PIL', 'scipy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _mu(site: str, findings: phantom.Findings, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    a = phantom.draw_anatomy(np.random.default_rng(21))
    c = (np.arange(size) + 0.5) / size * 2 - 1
    x, y = np.meshgrid(c, c)
    mu, lung, _ = phantom.mu_map(a, phantom.SITES[site], None, x, y, findings=findings)
    fast = phantom.mu_map(a, phantom.SITES[site], None, x, y, findings=findings)[0]
    full = phantom.mu_map(a, phantom.SITES[site], None, x, y, findings=findings, skip_tiles=False)[0]
    assert np.array_equal(fast, full)  # the tiled drawing keeps its bits with findings too
    return mu, lung


def test_each_finding_is_drawn_into_the_phantom() -> None:
    """Against the same patient without findings, in attenuation (no noise): cardiomegaly
    takes lung field from the heart side, effusion and atelectasis add attenuation inside the
    lung (the supine AP effusion a faint haze, its peak well under the upright meniscus's),
    pneumothorax removes it along the wall."""
    none = phantom.Findings()
    for site in ("fixed_1", "portable"):
        base, lung = _mu(site, none)
        big, big_lung = _mu(site, phantom.Findings(cardiomegaly=0.25))
        assert big_lung.sum() < 0.97 * lung.sum()
        atel = _mu(site, phantom.Findings(atelectasis=0.5, atelectasis_side=-1))[0] - base
        assert atel.max() > 0.3 and atel.min() >= -1e-12
        ptx = _mu(site, phantom.Findings(pneumothorax=0.25, pneumothorax_side=1))[0] - base
        assert ptx.min() < -0.2 and ptx.sum() < 0  # a rim of air, edged by a thin pleural line
    upright = _mu("fixed_1", phantom.Findings(effusion=0.3, effusion_side=1))[0] - _mu("fixed_1", none)[0]
    supine = _mu("portable", phantom.Findings(effusion=0.3, effusion_side=1))[0] - _mu("portable", none)[0]
    assert upright.max() > 0.8 and upright.min() >= -1e-12
    assert 0 < supine.max() < 0.3 * upright.max()
