"""Hostile and broken inputs (issue 7, point 1): a correct result, a clear error (exit 2) or an
exclusion with its reason in manifest.csv, never a traceback (exit 3 / an escaped exception).

The damaged-DICOM corpus is made here from one valid file written by the test; the CSV and
statistics layers are fuzzed with hypothesis.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset

from fairaudit.errors import InputError
from fairaudit.io.tables import parse_binary, parse_score, read_table
from fairaudit.stats import AuditConfig, run_audit

from _helpers import cli
from _helpers.dicom import dicom_dataset, save_dicom
from _helpers.tables import write_records

N_VALID = 24


def _dataset(uid: str, rows: int = 16, cols: int = 16) -> Dataset:
    pixels = (np.arange(rows * cols, dtype=np.uint16) * 7).reshape(rows, cols)
    return dicom_dataset(pixels, sop_uid=uid, modality="DX", StudyInstanceUID=uid + ".1", SeriesInstanceUID=uid + ".2",
                         PatientID="PID-" + uid.rsplit(".", 1)[-1], PatientName=None, PatientBirthDate=None)  # fmt: skip


def _uid(i: int) -> str:
    return f"1.2.826.0.1.3680043.8.498.7{i:04d}"


def _corpus(root: Path) -> dict[str, tuple[str, str]]:
    """Damaged files next to N_VALID valid ones: name -> (uid, expected reason fragment)."""
    for i in range(N_VALID):
        save_dicom(_dataset(_uid(i)), root / f"ok_{i:02d}.dcm")
    damaged: dict[str, tuple[str, str]] = {}
    valid = save_dicom(_dataset(_uid(900)), root / "template.tmp").read_bytes()
    (root / "template.tmp").unlink()

    # Truncated inside the header, and inside the pixel data.
    (root / "trunc_header.dcm").write_bytes(valid[:200])
    damaged["trunc_header.dcm"] = ("", "failed: truncated file")
    uid = _uid(901)
    (root / "trunc_pixels.dcm").write_bytes(save_dicom(_dataset(uid), root / "x.tmp").read_bytes()[:-100])
    damaged["trunc_pixels.dcm"] = (uid, "failed: truncated file: the pixel data needs")
    # Random bytes behind a valid preamble.
    rng = np.random.default_rng(7)
    (root / "random_after_preamble.dcm").write_bytes(b"\0" * 128 + b"DICM" + rng.bytes(3000))
    damaged["random_after_preamble.dcm"] = ("", "failed: ")
    # No pixel data.
    uid = _uid(902)
    ds = _dataset(uid)
    del ds.PixelData
    save_dicom(ds, root / "no_pixels.dcm")
    damaged["no_pixels.dcm"] = (uid, "skipped: DICOM file without pixel data")
    # Pixel data shorter than Rows x Columns x frames (a valid, complete element: just too short).
    uid = _uid(903)
    ds = _dataset(uid)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    save_dicom(ds, root / "short_pixels.dcm")
    damaged["short_pixels.dcm"] = (uid, "failed: truncated pixel data: 256 bytes, 512 needed")
    # Declared dimensions whose decoding would exhaust memory: refused from the header.
    uid = _uid(904)
    ds = _dataset(uid)
    ds.Rows = ds.Columns = 65535
    ds.NumberOfFrames = 10000
    save_dicom(ds, root / "huge.dcm")
    damaged["huge.dcm"] = (uid, "failed: too large")
    # An empty file and random bytes without a preamble: not DICOM, skipped.
    (root / "empty.dcm").write_bytes(b"")
    damaged["empty.dcm"] = ("", "skipped: not a DICOM file")
    (root / "noise.bin").write_bytes(rng.bytes(500))
    damaged["noise.bin"] = ("", "skipped: not a DICOM file")
    (root / "x.tmp").unlink()
    return damaged


def _predictions(path: Path, uids: list[str]) -> Path:
    rows = []
    for k, uid in enumerate(uids):
        label = k % 2
        rows.append({"sop_instance_uid": uid, "label": label, "score": 0.3 + 0.4 * label - 0.05 * (k % 3),
                     "sex": "FM"[(k // 2) % 2]})  # fmt: skip
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _audit(*args: str) -> tuple[int, str, object]:
    result = cli.audit(*args, bootstrap=50, workers=1, quiet=True, columns=None)
    return result.exit_code, cli.flat(result.output), result.exception  # undo rich wrapping


# manifest.csv names a file by the pseudonym of its path (issue 19, point 8): with this salt,
# the tests compute it as a user holding the salt would (docs/acquisition.md).
SALT = "hostile-inputs"


def _src(name: str) -> str:
    from fairaudit._util.privacy import IdHasher

    return f"DICOM files/{IdHasher(SALT).path(name)}"


def _no_crash(code: int, exception: object) -> None:
    assert code in (0, 2), f"exit {code}"
    assert exception is None or isinstance(exception, SystemExit), repr(exception)


def test_damaged_dicom_corpus_is_excluded_with_reasons(tmp_path: Path) -> None:
    root = tmp_path / "dicom"
    root.mkdir()
    damaged = _corpus(root)
    uids = [_uid(i) for i in range(N_VALID)] + [u for u, _ in damaged.values() if u]
    preds = _predictions(tmp_path / "preds.csv", uids)
    out = tmp_path / "out"
    code, output, exc = _audit(str(root), "--predictions", str(preds), "--attribute", "sex",
                               "--min-group-size", "5", "--salt", SALT, "--out", str(out))  # fmt: skip
    assert code == 0 and exc is None, output
    manifest = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)
    by_source = {r.source: r for r in manifest.itertuples()}
    for name, (_, fragment) in damaged.items():
        row = by_source[_src(name)]
        assert row.status == "excluded", name
        assert fragment in row.reason, (name, row.reason)
        assert "Traceback" not in row.reason and "\n" not in row.reason
    results = json.loads((out / "results.json").read_text())
    assert results["inputs"]["dicom_files"] == {"readable": N_VALID, "unreadable": len(damaged)}
    assert results["overall"]["n"] == N_VALID  # the damaged files' prediction rows do not join


def test_max_pixels_is_configurable(tmp_path: Path) -> None:
    """--max-pixels refuses from the header: 16x16 = 256 pixels; a limit of 255 excludes them all."""
    root = tmp_path / "dicom"
    root.mkdir()
    for i in range(N_VALID):
        save_dicom(_dataset(_uid(i)), root / f"ok_{i:02d}.dcm")
    save_dicom(_dataset(_uid(99), rows=32, cols=32), root / "big.dcm")
    preds = _predictions(tmp_path / "preds.csv", [_uid(i) for i in range(N_VALID)] + [_uid(99)])
    out = tmp_path / "out"
    code, output, exc = _audit(str(root), "--predictions", str(preds), "--attribute", "sex",
                               "--min-group-size", "5", "--max-pixels", "256", "--salt", SALT,
                               "--out", str(out))  # fmt: skip
    assert code == 0 and exc is None, output
    manifest = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)
    big = manifest[manifest.source == _src("big.dcm")].iloc[0]
    assert "too large" in big.reason and "1024" in big.reason and "256" in big.reason
    code, output, exc = _audit(str(root), "--predictions", str(preds), "--attribute", "sex",
                               "--max-pixels", "255", "--out", str(tmp_path / "o2"))  # fmt: skip
    _no_crash(code, exc)
    assert code == 2 and "no readable DICOM file" in output
    code, output, exc = _audit(str(root), "--predictions", str(preds), "--attribute", "sex",
                               "--max-pixels", "0", "--out", str(tmp_path / "o3"))  # fmt: skip
    assert code == 2


def test_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    preds = _predictions(tmp_path / "preds.csv", [_uid(i) for i in range(10)])
    code, output, exc = _audit(str(root), "--predictions", str(preds), "--attribute", "sex",
                               "--out", str(tmp_path / "out"))  # fmt: skip
    _no_crash(code, exc)
    assert code == 2 and "no readable DICOM file" in output


# ---- CSVs ---------------------------------------------------------------------------------


def _cases(n: int = 40) -> list[dict]:
    return [{"id": f"c{i}", "label": i % 2, "score": round(0.2 + 0.5 * (i % 2) + 0.01 * (i % 7), 3),
             "grp": "AB"[(i // 2) % 2]} for i in range(n)]  # fmt: skip


def _run_csv(tmp_path: Path, path: Path, *extra: str) -> tuple[int, str, dict | None]:
    out = tmp_path / "out"
    code, output, exc = _audit("--predictions", str(path), "--attribute", "grp", "--id-column", "id",
                               "--min-group-size", "5", "--out", str(out), *extra)  # fmt: skip
    _no_crash(code, exc)
    results = json.loads((out / "results.json").read_text()) if code == 0 else None
    return code, output, results


def _groups(results: dict) -> dict[str, int]:
    return {g["group"]: g["n"] for g in results["attributes"][0]["groups"]}


@pytest.mark.parametrize(("sep", "bom"), [(",", True), (";", False), (";", True), ("\t", False)])
def test_bom_and_separators_give_the_same_cohort(tmp_path: Path, sep: str, bom: bool) -> None:
    code, output, results = _run_csv(tmp_path, write_records(tmp_path / "p.csv", _cases(), sep=sep, bom=bom))
    assert code == 0, output
    assert results["overall"]["n"] == 40 and _groups(results) == {"A": 20, "B": 20}


def test_quoted_newlines_unicode_and_html_group_names(tmp_path: Path) -> None:
    names = ['Zoë, "quoted"\nline two', "<script>alert(1)</script>&amp;", "患者 ☃"]
    rows = _cases(60)
    for i, r in enumerate(rows):
        r["grp"] = names[(i // 2) % 3]
    code, output, results = _run_csv(tmp_path, write_records(tmp_path / "p.csv", rows))
    assert code == 0, output
    # Group names are kept exactly as in the CSV (stripped of outer blanks only).
    assert set(_groups(results)) == {n.strip() for n in names}
    html = (tmp_path / "out" / "report.html").read_text()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html


def test_duplicate_ids_are_excluded_with_their_reason(tmp_path: Path) -> None:
    """Both rows of a duplicated id are excluded (which one is right is unknowable)."""
    rows = _cases()
    rows[5]["id"] = rows[4]["id"]
    code, output, results = _run_csv(tmp_path, write_records(tmp_path / "p.csv", rows))
    assert code == 0, output
    manifest = pd.read_csv(tmp_path / "out" / "manifest.csv", dtype=str, keep_default_na=False)
    dup = manifest[manifest.reason.str.contains("duplicate id")]
    assert sorted(dup.row) == ["6", "7"] and set(dup.status) == {"excluded"}
    assert results["overall"]["n"] == 38


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "Infinity", "1e999", "1.5", "-0.1"])
def test_nan_and_infinite_scores(tmp_path: Path, bad: str) -> None:
    """A missing score ('nan' is a missing-value token) excludes the row; inf and out of range are errors."""
    rows = _cases()
    rows[3]["score"] = bad
    code, output, results = _run_csv(tmp_path, write_records(tmp_path / "p.csv", rows))
    if bad == "nan":
        assert code == 0 and results["overall"]["n"] == 39
    else:
        assert code == 2 and "row 5" in output and "score" in output, output


@pytest.mark.parametrize("bad", ["2", "-1", "0.5", "maybe", "inf"])
def test_labels_outside_0_1_are_errors(tmp_path: Path, bad: str) -> None:
    rows = _cases()
    rows[0]["label"] = bad
    code, output, _ = _run_csv(tmp_path, write_records(tmp_path / "p.csv", rows))
    assert code == 2 and "row 2" in output and "label" in output, output


def test_empty_group_and_single_class_group(tmp_path: Path) -> None:
    """A group name that is blank is missing (in the audit, in no group, unless --missing-as-group);
    a group with one class has auroc null with a reason, never NaN."""
    rows = _cases()
    for r in rows[:4]:
        r["grp"] = ""
    for r in rows:
        if r["grp"] == "B":
            r["label"] = 0
    code, output, results = _run_csv(tmp_path, write_records(tmp_path / "p.csv", rows))
    assert code == 0, output
    assert results["overall"]["n"] == 40  # the 4 blank records stay, in no group (issue 21)
    assert sum(g["n"] for g in results["attributes"][0]["groups"]) == 36
    b = next(g for g in results["attributes"][0]["groups"] if g["group"] == "B")
    assert b["metrics"]["auroc"]["value"] is None and b["metrics"]["auroc"]["reason"]
    assert "NaN" not in (tmp_path / "out" / "results.json").read_text()


def test_header_only_csv_and_empty_csv(tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text("id,label,score,grp\n")
    code, output, _ = _run_csv(tmp_path, tmp_path / "h.csv")
    assert code == 2 and "no records" in output
    (tmp_path / "e.csv").write_text("")
    code, output, _ = _run_csv(tmp_path, tmp_path / "e.csv")
    assert code == 2 and "empty" in output


# ---- hypothesis: the CSV layer ------------------------------------------------------------

_cell = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8)
_FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_FUZZ
@given(content=st.binary(max_size=300) | st.text(max_size=300).map(lambda s: s.encode("utf-8")))
def test_read_table_on_any_bytes_reads_or_raises_input_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "fuzz.csv"
    path.write_bytes(content)
    try:
        table = read_table(path)
    except InputError as exc:
        assert "fuzz.csv" in str(exc)
        return
    assert len(table.frame) >= 1 and len(table.rows) == len(table.frame)
    assert all(isinstance(v, str) for v in table.frame.to_numpy().ravel())


@_FUZZ
@given(
    values=st.lists(_cell | st.floats(allow_nan=True, allow_infinity=True).map(repr), min_size=1, max_size=12)
)
def test_parse_score_is_in_unit_interval_or_input_error(tmp_path: Path, values: list[str]) -> None:
    path = tmp_path / "s.csv"
    pd.DataFrame({"id": [f"r{i}" for i in range(len(values))], "score": values}).to_csv(path, index=False)
    try:
        table = read_table(path)
        scores = parse_score(table, "score")
    except InputError as exc:
        assert "s.csv" in str(exc)
        return
    finite = scores.dropna().to_numpy()
    assert np.all((finite >= 0) & (finite <= 1))


@_FUZZ
@given(values=st.lists(_cell | st.sampled_from(["0", "1", "1.0", "0.0", "2", "-1", "nan", "inf"]),
                       min_size=1, max_size=12))  # fmt: skip
def test_parse_binary_is_0_1_or_input_error(tmp_path: Path, values: list[str]) -> None:
    path = tmp_path / "b.csv"
    pd.DataFrame({"id": [f"r{i}" for i in range(len(values))], "label": values}).to_csv(path, index=False)
    try:
        table = read_table(path)
        labels = parse_binary(table, "label", "label")
    except InputError:
        return
    assert set(labels.dropna().unique()) <= {0.0, 1.0}


# ---- hypothesis: the statistics layer -----------------------------------------------------


@st.composite
def _audit_inputs(draw):
    n = draw(st.integers(1, 40))
    labels = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)), dtype=float)
    scores = np.array(draw(st.lists(st.floats(0, 1), min_size=n, max_size=n)), dtype=float)
    groups = np.array(draw(st.lists(st.sampled_from(["a", "b", "<c>", "é"]), min_size=n, max_size=n)))
    return labels, scores, groups


def _walk_numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _walk_numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _walk_numbers(v)
    elif isinstance(obj, float):
        yield obj


_RATES = ("tpr", "fnr", "tnr", "fpr", "ppv", "npv", "selection_rate", "prevalence", "accuracy",
          "balanced_accuracy", "auroc", "auprc", "brier", "ece")  # fmt: skip


@settings(max_examples=25, deadline=None)
@given(data=_audit_inputs())
def test_run_audit_on_any_cohort_is_valid_or_value_error(data) -> None:
    labels, scores, groups = data
    cfg = AuditConfig(bootstrap=20, seed=0, min_group_size=3, permutations=20, workers=1)
    try:
        result = run_audit(labels, scores, {"g": groups}, cfg)
    except ValueError as exc:  # the pipeline turns these into InputError (exit 2)
        assert str(exc)
        return
    body = result.to_dict()
    text = json.dumps(body, allow_nan=False)  # raises on NaN or infinity anywhere
    assert "NaN" not in text
    for block in [body["overall"], *(g for a in body["attributes"] for g in a["groups"])]:
        for name, est in block["metrics"].items():
            if name in _RATES and est["value"] is not None:
                assert 0 - 1e-12 <= est["value"] <= 1 + 1e-12, (name, est)
                if est.get("ci"):
                    assert all(0 - 1e-12 <= c <= 1 + 1e-12 for c in est["ci"]), (name, est)
    assert all(math.isfinite(x) for x in _walk_numbers(body))


def test_model_audit_over_the_damaged_corpus_excludes_and_runs(tmp_path: Path) -> None:
    """The full decode (a model run) meets the same corpus: the damaged files are excluded too."""
    root = tmp_path / "dicom"
    root.mkdir()
    damaged = _corpus(root)
    uids = [_uid(i) for i in range(N_VALID)] + [u for u, _ in damaged.values() if u]
    table = pd.read_csv(_predictions(tmp_path / "p.csv", uids))
    table[["sop_instance_uid", "sex"]].to_csv(tmp_path / "demo.csv", index=False)
    table[["sop_instance_uid", "label"]].to_csv(tmp_path / "labels.csv", index=False)
    out = tmp_path / "out"
    code, output, exc = _audit(str(root), "--model", "bundled:cxr_finding_classifier", "--device", "cpu",
                               "--demographics", str(tmp_path / "demo.csv"), "--labels",
                               str(tmp_path / "labels.csv"), "--attribute", "sex", "--min-group-size", "5",
                               "--salt", SALT, "--out", str(out))  # fmt: skip
    assert code == 0 and exc is None, output
    manifest = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)
    for name in damaged:
        rows = manifest[manifest.source == _src(name)]
        assert len(rows) == 1 and rows.status.iloc[0] == "excluded", (name, rows)
    assert json.loads((out / "results.json").read_text())["overall"]["n"] == N_VALID
