"""`fairaudit audit DICOM_DIR --model ...` end to end on a tiny generated cohort.

Expected values are computed independently of the model run: each file is read on its
own (fairaudit.io.dicom.read_file, in this process), prepared with the bundle's
preprocessing and passed through the torch module directly; ids are hashed here with
hashlib and the --salt; sha256 of the weights with hashlib; AUROC with scikit-learn.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

torch = pytest.importorskip("torch")

from fairaudit.schema import validate_results  # noqa: E402

from _helpers import cli  # noqa: E402

torch.set_num_threads(1)
SALT = "test-salt"
N = 40


def _hash(value: str) -> str:
    return hashlib.sha256(SALT.encode() + b"\x00" + value.encode()).hexdigest()[:16]


@pytest.fixture(scope="module")
def cohort(make_cohort) -> Path:
    root = make_cohort(n=N, size=32, seed=3)
    (root / "images" / "notes.txt").write_text("not a dicom file\n")
    good = next((root / "images").rglob("*.dcm")).read_bytes()
    (root / "images" / "truncated.dcm").write_bytes(good[: len(good) // 2])
    return root


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    from fairaudit.models.architectures import build_model
    from fairaudit.models.bundle import save_bundle
    from fairaudit.models.preprocessing import make_spec

    torch.manual_seed(0)
    model = build_model("small_cnn", width=4).eval()
    meta = {
        "name": "tiny-cnn",
        "version": "0.0.1",
        "task": "classification",
        "architecture": {"name": "small_cnn", "kwargs": {"width": 4}},
        "preprocessing": make_spec(input_size=[24, 24]),
        "classes": ["no_finding", "finding"],
    }
    return save_bundle(model, tmp_path_factory.mktemp("bundle") / "tiny", meta), model


def _expected_scores(root: Path, model: torch.nn.Module, spec: dict) -> dict[str, float]:
    """sop_instance_uid -> P(finding), one file at a time, no batching, no worker processes."""
    from fairaudit.io.dicom import DecodeOptions, read_file, scan
    from fairaudit.models.preprocessing import prepare_image

    out = {}
    for path in scan(root / "images"):
        o = read_file(path, root / "images", header_only=False, options=DecodeOptions(frames="middle"))
        if o.status != "ok":
            continue
        x = torch.from_numpy(prepare_image(o.image, o.spacing, spec)[None])
        with torch.no_grad():
            out[o.header["SOPInstanceUID"]] = float(torch.sigmoid(model(x))[0, 0])
    return out


def _audit(cohort: Path, model: str, out: Path, *extra: str) -> object:
    args = [
        *cli.model_run_args(cohort, model), "--trust-model", "--attribute", "sex", "--attribute", "race",
        "--min-group-size", "5", *([] if "--device" in extra else ["--device", "cpu"]), *extra,
    ]  # fmt: skip
    return cli.audit(*args, bootstrap=50, quiet=True, out=out, columns=None)


def test_bundle_run_writes_hashed_predictions_and_the_full_audit(
    cohort: Path, bundle, tmp_path: Path
) -> None:
    folder, model = bundle
    out = tmp_path / "out"
    res = _audit(cohort, str(folder), out, "--salt", SALT, "--batch-size", "7", "--workers", "2")
    assert res.exit_code == 0, res.output
    for name in ("results.json", "report.html", "report.md", "manifest.csv", "predictions.csv"):
        assert (out / name).is_file(), name

    # predictions.csv: hashed ids, the model's own scores, the labels.
    preds = pd.read_csv(out / "predictions.csv", dtype={"id": str})
    assert list(preds.columns) == ["id", "score", "label"]
    spec = json.loads((folder / "model.json").read_text())["preprocessing"]
    expected = _expected_scores(cohort, model, spec)
    assert len(expected) == N and len(preds) == N
    by_hash = {_hash(uid): s for uid, s in expected.items()}
    assert set(preds["id"]) == set(by_hash)
    np.testing.assert_allclose(preds["score"], [by_hash[i] for i in preds["id"]], rtol=1e-5, atol=1e-6)
    labels = pd.read_csv(cohort / "labels.csv", dtype=str)
    label_by_hash = {
        _hash(u): int(v) for u, v in zip(labels["sop_instance_uid"], labels["finding"], strict=True)
    }
    assert preds["label"].tolist() == [label_by_hash[i] for i in preds["id"]]

    # results.json: valid, the model by the sha256 of its weights, the overall AUROC of these scores.
    results = json.loads((out / "results.json").read_text())
    validate_results(results)
    m = results["model"]
    assert m["sha256"] == hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert (m["name"], m["source"], m["task"], m["device"], m["batch_size"]) == (
        "tiny-cnn", "bundle", "classification", "cpu", 7,
    )  # fmt: skip
    assert m["run"]["n_files"] == N + 2 and m["run"]["n_predicted"] == N and m["run"]["n_unreadable"] == 2
    assert (
        m["predictions_file"]["sha256"] == hashlib.sha256((out / "predictions.csv").read_bytes()).hexdigest()
    )
    # Provenance hashes the user's inputs; the model's predictions are an output (above), never
    # a temporary file no one can check.
    inputs = results["provenance"]["input_files"]
    assert "predictions" not in inputs
    assert inputs["labels"]["sha256"] == hashlib.sha256((cohort / "labels.csv").read_bytes()).hexdigest()
    auroc = roc_auc_score(preds["label"], preds["score"])
    assert results["overall"]["metrics"]["auroc"]["value"] == pytest.approx(auroc, abs=1e-6)
    assert results["inputs"]["n_included"] == N
    assert results["task"] == "classification"

    # manifest.csv: every file once, the two unusable ones with their reasons; same hashes.
    manifest = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)
    files = manifest[manifest["source"].str.startswith("DICOM files/")]
    on_disk = {
        p.relative_to(cohort / "images").as_posix() for p in (cohort / "images").rglob("*") if p.is_file()
    }
    # Each file by the pseudonym of its path (issue 19, point 8): mapped back with the salt.
    from fairaudit._util.privacy import IdHasher

    shown = {IdHasher(SALT).path(rel): rel for rel in on_disk}
    assert sorted(files["source"].str.removeprefix("DICOM files/")) == sorted(shown)
    reasons = {
        shown[s.removeprefix("DICOM files/")]: r
        for s, r in zip(files["source"], files["reason"], strict=True)
    }
    assert reasons["notes.txt"].startswith("skipped: not a DICOM file")
    assert reasons["truncated.dcm"].startswith("failed: truncated")
    assert set(files.loc[files["status"] == "included", "id"]) == set(preds["id"])

    # No identifier in clear anywhere in the outputs.
    demo = pd.read_csv(cohort / "demographics.csv", dtype=str)
    secrets = set(demo["sop_instance_uid"]) | set(demo["patient_id"])
    for path in (p for p in out.rglob("*") if p.is_file()):  # the prediction cache included
        text = path.read_text(encoding="utf-8")
        leaked = [s for s in secrets if s in text]
        assert not leaked, (path.name, leaked[:2])


def test_torchscript_keep_ids_and_onnx_give_the_same_scores(cohort: Path, tmp_path: Path) -> None:
    """Same module as TorchScript and ONNX: the scores agree (1e-5); with --keep-ids the
    predictions file audits again through --predictions to the same overall numbers."""
    pytest.importorskip("onnxruntime")
    from fairaudit.models.architectures import build_model
    from fairaudit.models.preprocessing import make_spec

    torch.manual_seed(5)
    model = build_model("small_cnn", width=4, norm="none").eval()
    spec = make_spec(input_size=[32, 32], intensity="minmax")
    ts = tmp_path / "m.ts"
    torch.jit.script(model).save(str(ts))
    onnx = tmp_path / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (torch.zeros(2, 1, 32, 32),), str(onnx), input_names=["image"], output_names=["logits"],
            dynamic_axes={"image": {0: "n"}, "logits": {0: "n"}}, dynamo=False,
        )  # fmt: skip
    for path in (ts, onnx):
        Path(str(path) + ".json").write_text(
            json.dumps({"name": "cnn", "task": "classification", "preprocessing": spec})
        )

    res = _audit(cohort, str(ts), tmp_path / "ts", "--keep-ids", "--workers", "1")
    assert res.exit_code == 0, res.output
    res = _audit(cohort, str(onnx), tmp_path / "onnx", "--keep-ids")
    assert res.exit_code == 0, res.output
    a = pd.read_csv(tmp_path / "ts" / "predictions.csv", dtype={"sop_instance_uid": str})
    b = pd.read_csv(tmp_path / "onnx" / "predictions.csv", dtype={"sop_instance_uid": str})
    assert list(a.columns) == ["sop_instance_uid", "score", "label"]
    assert a["sop_instance_uid"].tolist() == b["sop_instance_uid"].tolist()
    np.testing.assert_allclose(a["score"], b["score"], atol=1e-5)
    expected = _expected_scores(cohort, model, spec)
    np.testing.assert_allclose(a["score"], [expected[u] for u in a["sop_instance_uid"]], rtol=1e-5, atol=1e-6)
    for name, path, source in (("ts", ts, "torchscript"), ("onnx", onnx, "onnx")):
        m = json.loads((tmp_path / name / "results.json").read_text())["model"]
        assert m["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert m["source"] == source

    again = cli.invoke(
        ["audit", "--predictions", str(tmp_path / "ts" / "predictions.csv"), "--demographics",
         str(cohort / "demographics.csv"), "--attribute", "sex", "--attribute", "race", "--bootstrap", "50",
         "--min-group-size", "5", "--quiet", "--out", str(tmp_path / "again")],
        columns=None,
    )  # fmt: skip
    assert again.exit_code == 0, again.output
    first = json.loads((tmp_path / "ts" / "results.json").read_text())
    second = json.loads((tmp_path / "again" / "results.json").read_text())
    assert first["overall"] == second["overall"]
    assert first["attributes"] == second["attributes"]


def test_labels_may_sit_in_the_demographics(cohort: Path, bundle, tmp_path: Path) -> None:
    demo = pd.read_csv(cohort / "demographics.csv", dtype=str)
    labels = pd.read_csv(cohort / "labels.csv", dtype=str)
    merged = demo.merge(labels, on="sop_instance_uid")
    merged.to_csv(tmp_path / "demo.csv", index=False)
    res = cli.invoke(
        ["audit", str(cohort / "images"), "--model", str(bundle[0]), "--demographics", str(tmp_path / "demo.csv"),
         "--label-column", "finding", "--attribute", "sex", "--bootstrap", "20", "--min-group-size", "5",
         "--quiet", "--out", str(tmp_path / "o")],
        columns=None,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "o" / "results.json").read_text())["inputs"]["n_included"] == N
    manifest = pd.read_csv(tmp_path / "o" / "manifest.csv", dtype=str)
    assert (manifest["source"] == "demo.csv").sum() == N  # each demographics row once
    preds = pd.read_csv(tmp_path / "o" / "predictions.csv", dtype=str)
    assert sorted(preds["label"].astype(int)) == sorted(labels["finding"].astype(int))


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--predictions", "p.csv"], "exclude each other"),
        (["--unit", "series"], "--unit series is not supported with --model"),
        (["--device", "tpu"], "--device must be"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--task", "segmentation"], "pass --masks MASK_DIR"),
        (["--pred-masks", "x"], "--model and --pred-masks exclude each other"),
    ],
)
def test_usage_errors_exit_2(cohort: Path, bundle, tmp_path: Path, args: list[str], match: str) -> None:
    res = _audit(cohort, str(bundle[0]), tmp_path / "o", *args)
    assert res.exit_code == 2, res.output
    assert match in cli.flat(res.output)


def test_no_labels_and_no_folder_exit_2(cohort: Path, bundle, tmp_path: Path) -> None:
    res = cli.invoke(
        ["audit", str(cohort / "images"), "--model", str(bundle[0]), "--demographics",
         str(cohort / "demographics.csv"), "--attribute", "sex", "--out", str(tmp_path / "o")],
        columns=None,
    )  # fmt: skip
    assert res.exit_code == 2 and "needs the ground truth" in cli.flat(res.output)
    res = cli.invoke(
        ["audit", "--model", str(bundle[0]), "--demographics", str(cohort / "demographics.csv"),
         "--labels", str(cohort / "labels.csv"), "--attribute", "sex", "--out", str(tmp_path / "o")],
        columns=None,
    )  # fmt: skip
    assert res.exit_code == 2 and "pass DICOM_DIR" in cli.flat(res.output)


def test_a_model_that_does_not_fit_the_input_is_exit_2(cohort: Path, tmp_path: Path) -> None:
    """Three input channels expected, one given: every batch fails -> a clear error, not a crash."""
    from fairaudit.models.architectures import build_model

    path = tmp_path / "rgb.pt"
    torch.jit.script(build_model("small_cnn", width=4, in_channels=3).eval()).save(str(path))
    res = _audit(cohort, str(path), tmp_path / "o")
    assert res.exit_code == 2, res.output
    assert "could not run on any image" in cli.flat(res.output)


class _Threshold(torch.nn.Module):
    """A 'segmentation model' whose answer is known: foreground where the prepared image > 0.5."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([0.5 - x[:, :1], x[:, :1] - 0.5], dim=1) * 10


def _threshold_model(tmp_path: Path) -> tuple[Path, dict]:
    """A TorchScript segmenter (lung where the min-max scaled pixel exceeds 0.5) on a 16 x 16
    grid, with its `<file>.json`; the path and its preprocessing spec."""
    from fairaudit.models.preprocessing import make_spec

    path = tmp_path / "thr.pt"
    torch.jit.trace(_Threshold(), torch.zeros(1, 1, 16, 16)).save(str(path))
    spec = make_spec(input_size=[16, 16], intensity="minmax")
    Path(str(path) + ".json").write_text(
        json.dumps(
            {"name": "thr", "task": "segmentation", "classes": ["background", "lung"], "preprocessing": spec}
        )
    )
    return path, spec


def test_segmentation_model_writes_masks_on_the_original_grid(cohort: Path, tmp_path: Path) -> None:
    from PIL import Image

    from fairaudit.io.dicom import read_file
    from fairaudit.models.preprocessing import prepare_image, restore_mask

    path, spec = _threshold_model(tmp_path)
    out = tmp_path / "seg"
    res = cli.invoke(
        ["audit", str(cohort / "images"), "--model", str(path), "--trust-model", "--task", "segmentation",
         "--masks", str(cohort / "masks"), "--mask-labels", "1,2", "--demographics",
         str(cohort / "demographics.csv"), "--attribute", "sex", "--bootstrap", "20", "--min-group-size", "5",
         "--salt", SALT, "--quiet", "--out", str(out)],
        columns=None,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    validate_results(results)
    assert results["task"] == "segmentation"
    assert results["model"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert results["model"]["task"] == "segmentation"
    images = pd.read_csv(cohort / "images.csv", dtype=str)
    pngs = sorted(p.name for p in (out / "pred_masks").glob("*.png"))  # beside index.csv
    assert pngs == sorted(f"{_hash(u)}.png" for u in images["sop_instance_uid"])
    cases = pd.read_csv(out / "segmentation_cases.csv", dtype={"id": str}).set_index("id")
    for _, row in images.head(5).iterrows():
        o = read_file(cohort / row["path"], cohort, header_only=False)
        expected = restore_mask(
            (prepare_image(o.image, o.spacing, spec)[0] > 0.5).astype(int), o.image.shape, spec
        )
        written = np.asarray(Image.open(out / "pred_masks" / f"{_hash(row['sop_instance_uid'])}.png"))
        assert written.shape == o.image.shape == (32, 32)
        np.testing.assert_array_equal(written, expected)
        truth = np.isin(np.asarray(Image.open(cohort / row["mask"])), [1, 2])
        pred = written > 0
        dice = 2 * (truth & pred).sum() / (truth.sum() + pred.sum())
        assert cases.loc[_hash(row["sop_instance_uid"]), "dice"] == pytest.approx(dice)


def test_dicom_header_attribute_groups_come_from_the_files(cohort: Path, bundle, tmp_path: Path) -> None:
    """`--attribute dicom:Manufacturer` with a model: group sizes as pydicom reads the headers."""
    import collections

    import pydicom

    out = tmp_path / "o"
    res = _audit(cohort, str(bundle[0]), out, "--attribute", "dicom:Manufacturer")
    assert res.exit_code == 0, res.output
    expected = collections.Counter(
        str(pydicom.dcmread(p, stop_before_pixels=True).Manufacturer)
        for p in (cohort / "images").rglob("*")
        if p.is_file() and p.name not in ("notes.txt", "truncated.dcm")
    )
    results = json.loads((out / "results.json").read_text())
    (attr,) = [a for a in results["attributes"] if a["name"] == "dicom:Manufacturer"]
    assert {g["group"]: g["n"] for g in attr["groups"]} == dict(expected)


def test_max_pixels_refuses_large_files_before_inference(cohort: Path, bundle, tmp_path: Path) -> None:
    """--max-pixels holds in the model path too: 32x32 images under a 1000-pixel limit are all refused."""
    folder, _ = bundle
    out = tmp_path / "out"
    res = _audit(cohort, str(folder), out, "--max-pixels", "1000")
    assert res.exit_code == 2, res.output
    res = _audit(cohort, str(folder), out, "--max-pixels", str(32 * 32))
    assert res.exit_code == 0, res.output


def test_a_mask_a_worker_cannot_write_leaves_its_case_out_with_the_reason(
    cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Masks are restored and written in worker processes (fairaudit.models.mask_writer):
    one that cannot be written is reported, and the other cases are audited."""
    import fairaudit.models.mask_writer as mask_writer

    images = pd.read_csv(cohort / "images.csv", dtype=str)
    victim = f"{_hash(images['sop_instance_uid'].iloc[0])}.png"
    real = mask_writer.write_png

    def failing(path: Path, mask: np.ndarray) -> None:
        if Path(path).name == victim:
            raise OSError(28, "No space left on device")
        real(path, mask)

    monkeypatch.setattr(mask_writer, "write_png", failing)  # the forked workers inherit it
    path, _ = _threshold_model(tmp_path)
    out = tmp_path / "seg"
    res = cli.invoke(
        ["audit", str(cohort / "images"), "--model", str(path), "--trust-model", "--task", "segmentation",
         "--masks", str(cohort / "masks"), "--demographics", str(cohort / "demographics.csv"),
         "--attribute", "sex", "--bootstrap", "20", "--min-group-size", "5", "--workers", "4",
         "--salt", SALT, "--quiet", "--out", str(out)],
        columns=None,
    )  # fmt: skip
    assert res.exit_code in (0, 1), res.output
    assert not (out / "pred_masks" / victim).exists()
    assert len(list((out / "pred_masks").glob("*.png"))) == len(images) - 1
    cases = pd.read_csv(out / "segmentation_cases.csv", dtype={"id": str})
    assert victim.removesuffix(".png") not in set(cases["id"])
    manifest = pd.read_csv(out / "manifest.csv", dtype=str)
    rows = manifest[manifest["id"] == victim.removesuffix(".png")].set_index("status", append=True)
    file_row = manifest[
        (manifest["id"] == victim.removesuffix(".png")) & manifest["source"].str.startswith("DICOM")
    ]
    assert list(file_row["reason"]) == [
        "failed: writing the mask: OSError: [Errno 28] No space left on device"
    ], rows
    assert (manifest["id"] == victim.removesuffix(".png")).sum() == 3  # its demographics row, mask and file
    results = json.loads((out / "results.json").read_text())
    assert results["model"]["run"]["n_unreadable"] >= 1
