"""`fairaudit normalize` end to end on a small synthetic cohort."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats as sps

from fairaudit.io.dicom import read_file
from fairaudit.preprocess import NormParams, inverse

from _helpers import cli
from _helpers.dicom import write_dicom


@pytest.fixture(scope="module")
def cohort(make_cohort) -> Path:
    root = make_cohort(36, 40, 3)
    (root / "images" / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"garbage" * 10)
    return root


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()
    }


# manifest.csv names a file by the pseudonym of its path (issue 19, point 8); with the salt,
# a user maps them back as `_paths` does (docs/acquisition.md).
SALT = "normalize-tests"


def _paths(images: Path) -> dict[str, str]:
    """Pseudonym -> path relative to `images`, for every file there."""
    from fairaudit._util.privacy import IdHasher

    hasher = IdHasher(SALT)
    rels = [p.relative_to(images).as_posix() for p in images.rglob("*") if p.is_file()]
    return {hasher.path(rel): rel for rel in rels}


def _run(args: list[str]):
    return cli.invoke(["normalize", *args], columns=None, catch_exceptions=False)


@pytest.fixture(scope="module")
def site_run(cohort: Path, tmp_path_factory):
    out = tmp_path_factory.mktemp("norm") / "out"
    before = _digest(cohort)
    res = _run(
        [str(cohort / "images"), "--method", "robust_zscore", "--per-site", "--site-column", "site",
         "--demographics", str(cohort / "demographics.csv"), "--attribute", "race", "--attribute", "sex",
         "--bootstrap", "200", "--salt", SALT, "--out", str(out), "-q", "--workers", "1"]
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert _digest(cohort) == before  # inputs never touched
    return out


def test_outputs_and_manifest(site_run: Path, cohort: Path) -> None:
    for name in ("normalize.json", "report.html", "report.md", "manifest.csv", "site_normalizer.json"):
        assert (site_run / name).is_file()
    m = pd.read_csv(site_run / "manifest.csv", dtype=str, keep_default_na=False)
    files = m[m.source.str.startswith("DICOM files/")]
    assert len(files) == 37 and (files.status == "normalized").sum() == 36
    names = _paths(cohort / "images")
    broken = files[
        files.source.map(lambda s: names.get(s.removeprefix("DICOM files/"))) == "broken.dcm"
    ].iloc[0]
    assert broken.status == "excluded" and broken.reason.startswith("failed")
    assert (m[m.source == "demographics.csv"].status == "included").all()
    assert len(list((site_run / "images").glob("*.npy"))) == 36
    assert len(list((site_run / "previews").glob("*.png"))) == 36
    html = (site_run / "report.html").read_text()
    assert html.count("<svg") == 4  # before and after histograms for race and sex
    assert "<script" not in html


def test_sidecar_inverts_to_the_decoded_image(site_run: Path, cohort: Path) -> None:
    m = pd.read_csv(site_run / "manifest.csv", dtype=str, keep_default_na=False)
    rows = m[m.status == "normalized"].head(6)
    names = _paths(cohort / "images")
    for _, row in rows.iterrows():
        rel = names[row.source.removeprefix("DICOM files/")]
        decoded = read_file(cohort / "images" / rel, cohort / "images", header_only=False).image
        y = np.load(site_run / row.output)
        side = json.loads((site_run / row.output).with_suffix(".json").read_text())
        p = NormParams.from_dict(side["normalization"])
        assert y.dtype == np.float32 and p.invertible
        np.testing.assert_allclose(inverse(y, p), decoded, rtol=1e-6, atol=1e-6 * float(np.ptp(decoded)))


def test_site_parameters_pool_every_image_of_the_site(site_run: Path, cohort: Path) -> None:
    demo = pd.read_csv(cohort / "demographics.csv", dtype=str)
    uid_site = dict(zip(demo.sop_instance_uid, demo.site, strict=True))
    pools: dict[str, list[np.ndarray]] = {}
    for p in sorted((cohort / "images").rglob("*")):
        o = read_file(p, cohort / "images", header_only=False)
        if o.status == "ok":
            pools.setdefault(uid_site[o.header["SOPInstanceUID"]], []).append(o.image.ravel())
    saved = json.loads((site_run / "site_normalizer.json").read_text())
    for site, parts in pools.items():
        v = np.concatenate(parts).astype(np.float64)
        med = np.median(v)
        assert saved["sites"][site]["loc"] == pytest.approx(med)
        assert saved["sites"][site]["scale"] == pytest.approx(sps.median_abs_deviation(v, scale=1.0) * 1.4826)
        assert saved["n_images"][site] == len(parts)


def test_group_statistics_match_scipy(site_run: Path, cohort: Path) -> None:
    demo = pd.read_csv(cohort / "demographics.csv", dtype=str)
    uid_race = dict(zip(demo.sop_instance_uid, demo.race, strict=True))
    by: dict[str, list[float]] = {}
    for p in sorted((cohort / "images").rglob("*")):
        o = read_file(p, cohort / "images", header_only=False)
        if o.status == "ok":
            by.setdefault(uid_race[o.header["SOPInstanceUID"]], []).append(float(o.image.mean()))
    r = json.loads((site_run / "normalize.json").read_text())
    race = next(a for a in r["attributes"] if a["name"] == "race")
    mean = next(s for s in race["statistics"] if s["statistic"] == "mean")
    assert mean["before"]["test"]["p_value"] == pytest.approx(sps.kruskal(*by.values()).pvalue)
    for g, vals in by.items():
        assert mean["before"]["groups"][g]["value"] == pytest.approx(np.mean(vals))
    assert mean["change"]["verdict"] in ("narrowed", "widened", "no clear change")
    assert race["summary"].startswith("Between race groups, normalization")


def test_no_patient_identifiers_in_outputs(site_run: Path, cohort: Path) -> None:
    demo = pd.read_csv(cohort / "demographics.csv", dtype=str)
    text = "".join(
        p.read_text(errors="ignore")
        for p in site_run.rglob("*")
        if p.suffix in (".json", ".csv", ".md", ".html")
    )
    for pid in demo.patient_id:
        assert pid not in text
    for uid in demo.sop_instance_uid.head(5):
        assert uid not in text


def test_html_escapes_group_names(cohort: Path, tmp_path: Path) -> None:
    demo = pd.read_csv(cohort / "demographics.csv", dtype=str)
    demo.loc[demo.index[:12], "race"] = "<script>alert(1)</script>"
    demo.to_csv(tmp_path / "demo.csv", index=False)
    res = _run([str(cohort / "images"), "--method", "percentile", "--demographics", str(tmp_path / "demo.csv"),
                "--attribute", "race", "--bootstrap", "100", "--no-previews", "--out", str(tmp_path / "o"), "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    html = (tmp_path / "o" / "report.html").read_text()
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_spatial_options_and_clahe(cohort: Path, tmp_path: Path) -> None:
    res = _run([str(cohort / "images"), "--method", "adaptive_histogram", "--target-spacing", "2x2",
                "--target-shape", "64x48", "--out", str(tmp_path / "o"), "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    side = json.loads(next((tmp_path / "o" / "images").glob("*.json")).read_text())
    assert side["output"]["shape"] == [64, 48] and [s["step"] for s in side["spatial"]] == [
        "resample",
        "resize",
    ]
    assert side["inverse"] is None and side["normalization"]["clip_limit"] == 0.01
    y = np.load(next((tmp_path / "o" / "images").glob("*.npy")))
    assert y.shape == (64, 48) and 0.0 <= y.min() and y.max() <= 1.0


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--method", "minmax"], "--method"),
        (["--method", "zscore", "--per-site"], "--per-site"),
        (["--method", "zscore", "--attribute", "race"], "--demographics"),
        (["--method", "zscore", "--target-shape", "64xx"], "--target-shape"),
    ],
)
def test_bad_input_exits_2(cohort: Path, tmp_path: Path, extra, message) -> None:
    res = _run([str(cohort / "images"), *extra, "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and message in res.output


def test_out_inside_input_is_refused(cohort: Path, tmp_path: Path) -> None:
    copy = tmp_path / "imgs"
    shutil.copytree(cohort / "images", copy)
    res = _run([str(copy), "--method", "zscore", "--out", str(copy / "normalized")])
    # rich wraps the message at the terminal width, wherever the temporary path's length puts it
    assert res.exit_code == 2 and "inside DICOM_DIR" in cli.flat(res.output)


def test_saved_site_normalizer_is_applied(site_run: Path, cohort: Path, tmp_path: Path) -> None:
    saved = site_run / "site_normalizer.json"
    common = [str(cohort / "images"), "--demographics", str(cohort / "demographics.csv"), "--attribute", "sex",
              "--bootstrap", "100", "--no-previews", "--site-normalizer", str(saved), "-q"]  # fmt: skip
    res = _run([*common, "--method", "robust_zscore", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    sites = json.loads(saved.read_text())["sites"]
    for side in (tmp_path / "o" / "images").glob("*.json"):
        p = json.loads(side.read_text())["normalization"]
        site = p["source"].removeprefix("site:")
        assert (p["loc"], p["scale"]) == (sites[site]["loc"], sites[site]["scale"])
    bad = _run([*common, "--method", "zscore", "--out", str(tmp_path / "p")])
    assert bad.exit_code == 2 and "robust_zscore" in bad.output


def test_padding_never_counts_and_volumes_work(tmp_path: Path) -> None:
    import pydicom

    rng = np.random.default_rng(0)
    folder = tmp_path / "ct"
    folder.mkdir()
    rows, expected = [], {}
    for k in range(6):
        stored = rng.integers(900, 1200, (24, 24)).astype(np.int16)
        stored[:, :5] = -2000  # padding outside the field of view
        pixels = stored if k < 5 else np.stack([stored, stored + 10, stored + 20])  # one multi-frame volume
        pixels[..., :5] = -2000
        path = write_dicom(
            folder / f"{k}.dcm", pixels, RescaleSlope=1, RescaleIntercept=-1024, PixelPaddingValue=-2000
        )
        uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        rows.append({"sop_instance_uid": uid, "grp": "a" if k % 2 else "b"})
        vals = pixels[pixels != -2000].astype(float) - 1024
        expected[uid] = (vals.mean(), vals.std())
    pd.DataFrame(rows).to_csv(tmp_path / "demo.csv", index=False)
    res = _run([str(folder), "--method", "zscore", "--demographics", str(tmp_path / "demo.csv"), "--attribute", "grp",
                "--bootstrap", "100", "--min-group-size", "2", "--keep-ids", "--out", str(tmp_path / "o"), "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    m = pd.read_csv(tmp_path / "o" / "manifest.csv", dtype=str, keep_default_na=False)
    assert (m[m.source.str.startswith("DICOM")].status == "normalized").all()
    by_uid = {r["id"]: r["output"] for _, r in m.iterrows() if r["output"]}
    for uid, (mean, sd) in expected.items():
        side = json.loads((tmp_path / "o" / by_uid[uid]).with_suffix(".json").read_text())
        assert side["normalization"]["loc"] == pytest.approx(mean) and side["normalization"][
            "scale"
        ] == pytest.approx(sd)
        assert side["input"]["padding_pixels"] == (24 * 5 * (3 if len(side["input"]["shape"]) == 3 else 1))
    r = json.loads((tmp_path / "o" / "normalize.json").read_text())
    after_mean = next(s for s in r["attributes"][0]["statistics"] if s["statistic"] == "mean")["after"]
    assert all(abs(e["value"]) < 1e-9 for e in after_mean["groups"].values())  # z-scored over counted pixels
    assert after_mean["test"]["p_value"] is None  # no variation left to test


def test_align_to_template_registers_rigidly(cohort: Path, tmp_path: Path) -> None:
    first = _run([str(cohort / "images"), "--method", "percentile", "--target-shape", "48x48", "--keep-ids",
                  "--no-previews", "--out", str(tmp_path / "a"), "-q"])  # fmt: skip
    assert first.exit_code == 0, first.output
    template = sorted((tmp_path / "a" / "images").glob("*.npy"))[0]
    res = _run([str(cohort / "images"), "--method", "percentile", "--target-shape", "48x48", "--keep-ids",
                "--no-previews", "--align-to", str(template), "--out", str(tmp_path / "b"), "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    side = json.loads((tmp_path / "b" / "images" / template.name).with_suffix(".json").read_text())
    step = side["spatial"][-1]
    assert step["step"] == "align_rigid" and abs(step["angle_deg"]) < 0.5 and np.hypot(*step["shift"]) < 0.5
    bad = _run([str(cohort / "images"), "--method", "percentile", "--align-to", str(template),
                "--out", str(tmp_path / "c"), "-q"])  # fmt: skip
    assert bad.exit_code == 2 and "--align-to template" in bad.output  # nothing usable: a usage error
    m = pd.read_csv(tmp_path / "c" / "manifest.csv", dtype=str, keep_default_na=False)
    assert m.reason.str.contains("--align-to template").sum() == 36
