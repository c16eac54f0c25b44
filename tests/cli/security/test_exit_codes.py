"""Issue 19, points 5 and 13: hostile or careless inputs give exit 2 and a message naming the
input and what to do, never a traceback (exit 3), a hang or a message blaming the wrong thing.

Each test builds its hostile input itself: gate policies (wrong `overrides`, non-UTF-8, deep
nesting, a folder, a FIFO, /dev/zero), model bundles (model.json values, damaged safetensors
headers), a 240-character id with --keep-ids, FAIRAUDIT_WORKERS=abc, ragged CSV rows, a FIFO,
folder or /dev/zero as --predictions, and --permutations 0. Where a hang is the risk the CLI
runs in a subprocess with a timeout.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from fairaudit.errors import InputError
from fairaudit.io.csv_fields import check_field_counts

from _helpers import cli

ENV = {"FAIRAUDIT_WORKERS": "1"}
PREDICTIONS = "sop_instance_uid,label,score,sex\n" + "".join(
    f"id{i},{i % 2},{(i % 10) / 10 + 0.05:.2f},{'MF'[i % 2 == 0 and i % 3 == 0]}\n" for i in range(40)
)


def _invoke(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run the CLI in-process; (exit code, output on one line)."""
    res = cli.invoke(args, columns=250, env={**ENV, **(env or {})})
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    return res.exit_code, cli.flat(res.output)


def _run(args: list[str], timeout: float = 120) -> tuple[int, str]:
    """Run the CLI in a subprocess (a FIFO must not hang it); (exit code, output on one line)."""
    proc = cli.run_module(args, timeout=timeout, env={"COLUMNS": "250", **ENV})
    return proc.returncode, cli.flat(proc.stdout + proc.stderr)


def _clean(code: int, text: str, *needles: str) -> None:
    """Exit 2, no traceback, no internal-error line, and every needle in the message."""
    assert code == 2, text
    assert "Traceback" not in text and "internal error" not in text, text
    for needle in needles:
        assert needle in text, (needle, text)


@pytest.fixture()
def predictions(tmp_path: Path) -> Path:
    path = tmp_path / "preds.csv"
    path.write_text(PREDICTIONS)
    return path


def _audit_args(preds: Path, out: Path, *extra: str) -> list[str]:
    return ["audit", "--predictions", str(preds), "--attribute", "sex", "--bootstrap", "20",
            "--quiet", "--out", str(out), *extra]  # fmt: skip


# --- gate policy (point 5) -------------------------------------------------------------

_RULE = '[gate]\nmetrics = ["tpr"]\nmax_abs_difference = 0.05\n'


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        (_RULE + "overrides = [1, 2]\n", ["overrides must be a table", "got an array", "[gate.overrides."]),
        (_RULE + "overrides = 5\n", ["overrides must be a table", "got a number"]),
        (_RULE + "overrides = {tpr = 5}\n", ["overrides.tpr must be a table of bounds"]),
        (_RULE + "overrides = {nonsense = {min_ratio = 0.8}}\n", ["not a known metric"]),
    ],
    ids=["list", "integer", "metric-integer", "unknown-metric"],
)
def test_gate_overrides_of_the_wrong_type(
    tmp_path: Path, predictions: Path, text: str, needles: list[str]
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(text)
    code, out = _invoke(_audit_args(predictions, tmp_path / "o", "--gate", str(policy)))
    _clean(code, out, str(policy), *needles)
    assert not (tmp_path / "o" / "results.json").exists()  # refused before the audit


def test_gate_not_utf8(tmp_path: Path, predictions: Path) -> None:
    policy = tmp_path / "latin1.toml"
    policy.write_bytes(b"# caf\xe9\n" + _RULE.encode())
    code, out = _invoke(_audit_args(predictions, tmp_path / "o", "--gate", str(policy)))
    _clean(code, out, str(policy), "not UTF-8", "line 1", "save the policy as UTF-8")


@pytest.mark.parametrize(
    "body",
    ["x = " + "[" * 100_000 + "]" * 100_000 + "\n", "x = " + "{a = " * 5000 + "1" + "}" * 5000 + "\n"],
    ids=["100k-deep-arrays", "5000-deep-inline-tables"],
)
def test_gate_nested_too_deeply(tmp_path: Path, predictions: Path, body: str) -> None:
    policy = tmp_path / "deep.toml"
    policy.write_text(body)
    code, out = _invoke(_audit_args(predictions, tmp_path / "o", "--gate", str(policy)))
    _clean(code, out, str(policy), "nests arrays or inline tables too deeply")


def test_gate_is_a_folder(tmp_path: Path, predictions: Path) -> None:
    folder = tmp_path / "policy.toml"
    folder.mkdir()
    code, out = _invoke(_audit_args(predictions, tmp_path / "o", "--gate", str(folder)))
    _clean(code, out, str(folder), "is a folder", "--gate needs a regular file")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_gate_is_a_fifo_and_does_not_hang(tmp_path: Path, predictions: Path) -> None:
    fifo = tmp_path / "policy.toml"
    os.mkfifo(fifo)
    code, out = _run(_audit_args(predictions, tmp_path / "o", "--gate", str(fifo)), timeout=120)
    _clean(code, out, str(fifo), "named pipe (FIFO)", "--gate needs a regular file")


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_gate_is_dev_zero(tmp_path: Path, predictions: Path) -> None:
    code, out = _run(_audit_args(predictions, tmp_path / "o", "--gate", "/dev/zero"), timeout=120)
    _clean(code, out, "/dev/zero", "character device")


# --- predictions given as something that is not a regular file (point 13) -------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_predictions_fifo_folder_dev_zero(tmp_path: Path) -> None:
    fifo = tmp_path / "preds.csv"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    cases = [(fifo, "named pipe (FIFO)"), (folder, "is a folder")]
    if Path("/dev/zero").exists():
        cases.append((Path("/dev/zero"), "character device"))
    for path, kind in cases:
        code, out = _run(_audit_args(path, tmp_path / "o"), timeout=120)
        _clean(code, out, str(path), kind, "regular file", "CSV")
        assert "not found" not in out, out


def test_predictions_missing_still_says_not_found(tmp_path: Path) -> None:
    code, out = _invoke(_audit_args(tmp_path / "nope.csv", tmp_path / "o"))
    _clean(code, out, "nope.csv", "file not found")


# --- ragged CSV rows (point 13) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "row", "fields"),
    [
        ("sop_instance_uid,label,score,sex\nid1,1,0.5,M\nid2,0,0.2,F,A\nid3,1,0.7,M\n", 3, 5),
        ("sop_instance_uid,label,score,sex\nid1,1,0.5,M\nid2,0,0.2\nid3,1,0.7,M\n", 3, 3),
        # every row one field longer: pandas would take the first column as an index, shift
        # the values left and blame `label` for a score
        ("sop_instance_uid,label,score,sex\nid1,A,1,0.5,M\nid2,A,0,0.2,F\n", 2, 5),
    ],
    ids=["one-more", "one-fewer", "all-one-more"],
)
def test_ragged_rows_name_the_row_and_field_counts(tmp_path: Path, text: str, row: int, fields: int) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text(text)
    code, out = _invoke(_audit_args(path, tmp_path / "o"))
    _clean(code, out, "ragged.csv", f"row {row}", f"has {fields} field", "where the header has 4")
    assert "column 'label'" not in out and "'A'" not in out, out


def test_ragged_rows_found_in_quoted_files_and_late_blocks(tmp_path: Path, monkeypatch) -> None:
    """The byte count and the csv-module path agree on row numbers; quoted separators and
    line breaks, CRLF, a byte-order mark and blank rows are not ragged."""
    import fairaudit.io.csv_fields as fields

    monkeypatch.setattr(fields, "BLOCK_BYTES", 64)  # many blocks, lines across their edges
    ok = tmp_path / "ok.csv"
    ok.write_bytes(
        b"\xef\xbb\xbfa,b,c\r\n" + b"".join(b"%d,x,y\r\n" % i for i in range(30)) + b"\r\n,,\r\n  \r\n1,2,3"
    )
    check_field_counts(ok, ",", 3)
    quoted = tmp_path / "quoted.csv"
    quoted.write_text("a,b,c\n" + "1,2,3\n" * 20 + '4,"x,\ny",5\n' + "6,7,8\n" * 5 + "9,10\n")
    with pytest.raises(InputError, match=r"row 28: this row has 2 fields where the header has 3"):
        check_field_counts(quoted, ",", 3)
    late = tmp_path / "late.csv"
    late.write_text("a;b\n" + "1;2\n" * 100 + "3;4;5\n")
    with pytest.raises(InputError, match=r"row 102: this row has 3 fields where the header has 2"):
        check_field_counts(late, ";", 2)


def test_quoted_values_with_separators_still_audit(tmp_path: Path) -> None:
    path = tmp_path / "quoted.csv"
    lines = PREDICTIONS.splitlines()
    path.write_text(
        "\n".join([lines[0], *(f'"{line.split(",", 1)[0]},x",{line.split(",", 1)[1]}' for line in lines[1:])])
        + "\n"
    )
    code, out = _invoke(_audit_args(path, tmp_path / "o"))
    assert code == 0, out


# --- counts and the environment (points 5 and 13) ----------------------------------------------


def test_permutations_zero_is_refused_up_front(tmp_path: Path, predictions: Path) -> None:
    code, out = _invoke(
        _audit_args(predictions, tmp_path / "o", "--permutations", "0", "--correction", "none")
    )
    _clean(code, out, "--permutations must be at least 1, got 0")
    assert "concatenate" not in out


def test_stats_config_refuses_zero_permutations() -> None:
    from fairaudit.stats import AuditConfig

    with pytest.raises(ValueError, match="permutations= must be at least 1"):
        AuditConfig(permutations=0)


@pytest.mark.parametrize("value", ["abc", "0", "-2", "1.5"])
def test_fairaudit_workers_not_a_count(tmp_path: Path, predictions: Path, value: str) -> None:
    code, out = _invoke(_audit_args(predictions, tmp_path / "o"), env={"FAIRAUDIT_WORKERS": value})
    _clean(code, out, "FAIRAUDIT_WORKERS", repr(value), "at least 1")
    assert not (tmp_path / "o" / "results.json").exists()


@pytest.mark.parametrize("value", ["abc", "0", "-2"])
@pytest.mark.parametrize("command", ["normalize", "augment-check", "train", "sample-data"])
def test_fairaudit_workers_checked_first_by_every_command(tmp_path: Path, command: str, value: str) -> None:
    """Issue 19 leftover: every command that starts worker pools checks the variable before
    any work. The inputs do not exist: a check made later would report them instead."""
    out = tmp_path / "o"
    args = {
        "normalize": ["normalize", str(tmp_path / "images"), "--method", "zscore", "--out", str(out)],
        "augment-check": ["augment-check", str(tmp_path / "images"), "--modality", "xray", "--demographics",
                          str(tmp_path / "d.csv"), "--attribute", "sex", "--out", str(out)],
        "train": ["train", str(tmp_path / "images"), "--demographics", str(tmp_path / "d.csv"),
                  "--attribute", "sex", "--labels", str(tmp_path / "l.csv"), "--out", str(out)],
        "sample-data": ["sample-data", str(out), "--n", "8"],
    }[command]  # fmt: skip
    code, text = _invoke([*args, "-q"], env={"FAIRAUDIT_WORKERS": value})
    _clean(code, text, "environment variable FAIRAUDIT_WORKERS", repr(value), "at least 1")
    assert "Set FAIRAUDIT_WORKERS=4 (for example), or unset it" in text
    assert not out.exists()


def test_fairaudit_workers_is_not_checked_by_a_command_without_workers(
    tmp_path: Path, predictions: Path
) -> None:
    """`report` starts no pool: the variable is none of its business."""
    assert _invoke(_audit_args(predictions, tmp_path / "o"))[0] in (0, 1)
    code, text = _invoke(["report", str(tmp_path / "o" / "results.json"), "--out", str(tmp_path / "r"), "-q"],
                         env={"FAIRAUDIT_WORKERS": "abc"})  # fmt: skip
    assert code in (0, 1), text
    assert (tmp_path / "r" / "report.html").is_file()


def test_fairaudit_workers_read_where_pools_start(monkeypatch) -> None:
    from fairaudit.io.dicom import workers_default as dicom_workers
    from fairaudit.stats._resample import workers_default as stats_workers

    monkeypatch.setenv("FAIRAUDIT_WORKERS", "3")
    assert dicom_workers() == stats_workers() == 3
    monkeypatch.setenv("FAIRAUDIT_WORKERS", "abc")
    for fn in (dicom_workers, stats_workers):
        with pytest.raises(InputError, match="FAIRAUDIT_WORKERS"):
            fn()


# --- model bundles (point 5) ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def cohort(make_cohort) -> Path:
    return make_cohort(n=12, size=32, seed=5)


def _bundle(tmp_path: Path, edit_meta=None, weights: bytes | None = None) -> Path:
    """A copy of the shipped classifier, its model.json edited, its weights replaced (and
    their sha256 updated, so that the hostile part is what is tested, not the digest)."""
    pytest.importorskip("torch")
    from fairaudit.models.bundle import BUNDLED_DIR

    folder = tmp_path / "bundle"
    shutil.copytree(BUNDLED_DIR / "cxr_finding_classifier", folder)
    meta = json.loads((folder / "model.json").read_text())
    if weights is not None:
        (folder / "model.safetensors").write_bytes(weights)
        meta["weights"]["sha256"] = hashlib.sha256(weights).hexdigest()
    if edit_meta is not None:
        edit_meta(meta)
    (folder / "model.json").write_text(json.dumps(meta))
    return folder


def _model_args(cohort: Path, model: Path, out: Path, *extra: str) -> list[str]:
    return ["audit", *cli.model_run_args(cohort, model), "--attribute", "sex", "--bootstrap", "20", "--device", "cpu",
            "--quiet", "--out", str(out), *extra]  # fmt: skip


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("input_size", ["a", "b"], "input_size must be [H, W]"),
        ("input_size", [-5, -5], "input_size must be [H, W]"),
        ("input_size", [10**6, 10**6], "input_size must be [H, W]"),
        ("channels", "two", "channels must be a whole number"),
        ("percentiles", [99, 1], "percentiles must be [low, high]"),
    ],
    ids=["strings", "negative", "huge", "channels", "percentiles"],
)
def test_model_json_preprocessing(cohort: Path, tmp_path: Path, key: str, value, needle: str) -> None:
    bundle = _bundle(tmp_path, lambda m: m["preprocessing"].__setitem__(key, value))
    code, out = _invoke(_model_args(cohort, bundle, tmp_path / "o"))
    _clean(code, out, str(bundle / "model.json"), needle)


def test_model_json_weights_file_not_a_name(cohort: Path, tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, lambda m: m["weights"].__setitem__("file", 5))
    code, out = _invoke(_model_args(cohort, bundle, tmp_path / "o"))
    _clean(code, out, "model.json", "weights.file")


def test_model_json_classes_not_a_list(cohort: Path, tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, lambda m: m.__setitem__("classes", 5))
    code, out = _invoke(_model_args(cohort, bundle, tmp_path / "o"))
    _clean(code, out, "model.json", "classes must be a list")


def _weights() -> bytes:
    from fairaudit.models.bundle import BUNDLED_DIR

    return (BUNDLED_DIR / "cxr_finding_classifier" / "model.safetensors").read_bytes()


def _reheader(raw: bytes, edit) -> bytes:
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    edit(header)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + raw[8 + n :]


def _first_tensor(header: dict) -> dict:
    return header[next(k for k in header if k != "__metadata__")]


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        (lambda raw: raw[:5], "fewer than the 8 that give the header length"),
        (lambda raw: (10**9).to_bytes(8, "little") + raw[8:], "header length is 1000000000 bytes"),
        (
            lambda raw: (16).to_bytes(8, "little") + b"{not json at all" + raw[8:],
            "header is not a JSON object",
        ),
        (lambda raw: (4).to_bytes(8, "little") + b"[1] " + raw[8:], "header is not a JSON object"),
        (
            lambda raw: _reheader(raw, lambda h: _first_tensor(h).__setitem__("data_offsets", [0, 10**12])),
            "outside the",
        ),
        (lambda raw: _reheader(raw, lambda h: _first_tensor(h).__setitem__("dtype", "Q9")), "valid dtype"),
        (lambda raw: raw[: int.from_bytes(raw[:8], "little") + 8 + 100], "truncated or damaged"),
    ],
    ids=[
        "truncated",
        "header-longer-than-file",
        "not-json",
        "json-array",
        "offsets",
        "dtype",
        "truncated-data",
    ],
)
def test_safetensors_bad_headers(cohort: Path, tmp_path: Path, damage, needle: str) -> None:
    bundle = _bundle(tmp_path, weights=damage(_weights()))
    code, out = _invoke(_model_args(cohort, bundle, tmp_path / "o"))
    _clean(code, out, "model.safetensors", needle)


def test_safetensors_check_passes_the_shipped_bundles() -> None:
    from fairaudit.models.bundle import BUNDLED_DIR, check_safetensors

    for path in BUNDLED_DIR.glob("*/model.safetensors"):
        check_safetensors(path)


# --- --keep-ids with a 240-character id (point 5) -----------------------------------------


def test_mask_file_names_are_bounded_and_distinct() -> None:
    from fairaudit.workflows.model_run import STEM_MAX, _safe

    long_id = "P" * 240
    names = {_safe(i) for i in (long_id, long_id + "x", "a/b", "a_b", "a b", "é", ".hidden", "..")}
    assert len(names) == 8  # no two ids share a file
    assert all(0 < len(n.encode()) <= STEM_MAX and not n.startswith(".") for n in names)
    assert _safe("1.2.840.113619.2.55") == "1.2.840.113619.2.55"  # a plain id is its own name
    assert _safe("0123456789abcdef") == "0123456789abcdef"  # so is a pseudonym


def test_keep_ids_with_a_240_character_id_writes_masks_and_reports(cohort: Path, tmp_path: Path) -> None:
    """A segmentation run whose ids (patient_id, --keep-ids) are 240 characters long: the
    masks are written under bounded names, and the reports follow (no ENAMETOOLONG)."""
    pytest.importorskip("torch")
    import pandas as pd
    import pydicom

    root = tmp_path / "c"
    shutil.copytree(cohort, root)
    demo = pd.read_csv(root / "demographics.csv", dtype=str)
    images = pd.read_csv(root / "images.csv", dtype=str)
    long_ids = {pid: pid + "-" + "X" * (239 - len(pid)) for pid in images["patient_id"]}
    for _, row in images.iterrows():
        ds = pydicom.dcmread(root / row["path"])
        ds.PatientID = long_ids[row["patient_id"]]
        ds.save_as(root / row["path"])
        (root / row["mask"]).rename(root / "masks" / f"{long_ids[row['patient_id']]}.png")
    demo["patient_id"] = demo["patient_id"].map(long_ids)
    demo.drop(columns=[c for c in demo.columns if c in ("sop_instance_uid", "path")]).to_csv(
        root / "demographics.csv", index=False
    )
    assert all(len(i) == 240 for i in long_ids.values())
    out = tmp_path / "o"
    code, text = _invoke(
        ["audit", str(root / "images"), "--model", "bundled:cxr_lung_segmenter", "--task", "segmentation",
         "--masks", str(root / "masks"), "--demographics", str(root / "demographics.csv"), "--id-column", "patient_id",
         "--attribute", "sex", "--bootstrap", "20", "--min-group-size", "2", "--keep-ids", "--device", "cpu",
         "--quiet", "--out", str(out)]
    )  # fmt: skip
    assert code == 0, text
    assert (out / "results.json").is_file()
    masks = sorted((out / "pred_masks").glob("*.png"))  # beside index.csv (fairaudit.workflows.mask_index)
    assert len(masks) == len(long_ids)
    assert all(len(p.name.encode()) <= 110 for p in masks)


@pytest.mark.parametrize(
    ("text", "needle"),
    [("[" * 100_000 + "]" * 100_000, "too deeply"), ("[1, 2]", "must hold a JSON object")],
    ids=["deep", "array"],
)
def test_model_json_not_an_object(cohort: Path, tmp_path: Path, text: str, needle: str) -> None:
    bundle = _bundle(tmp_path)
    (bundle / "model.json").write_text(text)
    code, out = _invoke(_model_args(cohort, bundle, tmp_path / "o"))
    _clean(code, out, str(bundle / "model.json"), needle)


def test_normalize_keep_ids_names_are_bounded() -> None:
    """normalize names its per-image outputs after the path with --keep-ids: a deep path gets
    a bounded name (shortened plus a digest), a short one keeps its readable name."""
    from fairaudit._util.privacy import IdHasher
    from fairaudit.cohort.images import STEM_MAX, safe_name

    hasher = IdHasher("salt", True)
    deep = "D" * 200 + "/" + "f" * 40 + ".dcm"
    names = {safe_name(deep, hasher), safe_name(deep + "x", hasher)}
    assert len(names) == 2 and all(len(n.encode()) <= STEM_MAX for n in names)
    assert safe_name("site_a/0001.dcm", hasher) == "site_a__0001.dcm"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_model_is_a_fifo(cohort: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "model.onnx"
    os.mkfifo(fifo)
    code, out = _run(_model_args(cohort, fifo, tmp_path / "o"), timeout=180)
    _clean(code, out, str(fifo), "named pipe (FIFO), not a model file")
