"""Multi-output (multi-label) classifiers: model.json / sidecar `classes` drive the outputs.

Expected values come from onnxruntime run directly on the same graph, torch run on the same
module and scipy's expit, never from the loader.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit, softmax

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from fairaudit.errors import InputError  # noqa: E402
from fairaudit.models.loading import load_predictor  # noqa: E402
from fairaudit.models.outputs import output_for, single_score  # noqa: E402

torch.set_num_threads(1)
CLASSES = ["Cardiomegaly", "Effusion", "No Finding"]


class TinyMulti(nn.Module):
    """(N, K) logits from a 16x16 image."""

    def __init__(self, k: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def _export(path: Path, k: int = 3, seed: int = 0) -> tuple[Path, nn.Module]:
    torch.manual_seed(seed)
    model = TinyMulti(k).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (torch.zeros(2, 1, 16, 16),), str(path), input_names=["image"], output_names=["logits"],
            dynamic_axes={"image": {0: "n"}, "logits": {0: "n"}}, dynamo=False,
        )  # fmt: skip
    return path, model


def _sidecar(path: Path, **meta: object) -> None:
    base = {"task": "classification", "output": "logits", "preprocessing": {"input_size": [16, 16]}}
    Path(str(path) + ".json").write_text(json.dumps(base | meta), encoding="utf-8")


def _batch(n: int = 6) -> np.ndarray:
    return np.random.default_rng(3).normal(size=(n, 1, 16, 16)).astype(np.float32)


def test_multi_output_onnx_gives_each_class_the_sigmoid_of_onnxruntime(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    path, _ = _export(tmp_path / "multi.onnx")
    _sidecar(path, classes=CLASSES)
    pred = load_predictor(str(path), device="cpu", trust_model=True)
    assert pred.outputs == CLASSES and pred.describe()["multilabel"] is True
    x = _batch()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    direct = expit(session.run(None, {"image": x})[0].astype(np.float64))
    got = pred.predict(x)
    assert got.shape == (6, 3)
    np.testing.assert_allclose(got, direct, rtol=1e-6, atol=1e-7)


def test_two_classes_are_one_score_unless_multilabel_is_set(tmp_path: Path) -> None:
    """Two classes keep the one-score reading (the softmax's last); "multilabel": true makes
    each of the two a sigmoid."""
    pytest.importorskip("onnxruntime")
    path, model = _export(tmp_path / "two.onnx", k=2)
    x = _batch()
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy().astype(np.float64)
    _sidecar(path, classes=["no_finding", "finding"])
    one = load_predictor(str(path), device="cpu", trust_model=True)
    assert one.outputs == []
    np.testing.assert_allclose(one.predict(x), softmax(logits, axis=1)[:, 1], atol=1e-6)
    _sidecar(path, classes=["Edema", "Effusion"], multilabel=True)
    multi = load_predictor(str(path), device="cpu", trust_model=True)
    assert multi.outputs == ["Edema", "Effusion"]
    np.testing.assert_allclose(multi.predict(x), expit(logits), atol=1e-6)


def test_classes_that_do_not_match_the_outputs_fail_the_batch(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    path, _ = _export(tmp_path / "three.onnx")
    _sidecar(path, classes=["A", "B", "C", "D"])
    pred = load_predictor(str(path), device="cpu", trust_model=True)
    with pytest.raises(ValueError, match="3 outputs per image; its classes name 4"):
        pred.predict(_batch())
    _sidecar(path, classes=["A", "B", "C"], multilabel="yes")
    with pytest.raises(InputError, match="multilabel must be true or false"):
        load_predictor(str(path), device="cpu", trust_model=True)


def test_a_label_column_picks_its_output_and_finding_is_the_complement_of_no_finding() -> None:
    p = {c: np.array([0.2, 0.9]) + i / 100 for i, c in enumerate(CLASSES)}
    assert output_for(CLASSES, "effusion") == ("Effusion", False)
    assert output_for(CLASSES, "no_finding") == ("No Finding", False)
    assert output_for(CLASSES, "finding") == ("No Finding", True)
    scores, how = single_score(p, CLASSES, "finding")
    np.testing.assert_allclose(scores, [1 - 0.22, 1 - 0.92])
    assert how == "1 - No Finding"
    with pytest.raises(InputError, match="none is named Edema") as err:
        output_for(CLASSES, "Edema")
    assert err.value.argument == "label_column"
    with pytest.raises(InputError, match="none is named finding"):
        output_for(["Edema", "Effusion", "Atelectasis"], "finding")


def test_the_prediction_cache_keeps_every_output(tmp_path: Path) -> None:
    from fairaudit.models.pred_cache import PredictionCache

    info = {"name": "m", "sha256": "ef" * 32, "task": "classification", "device": "cpu"}
    cache = PredictionCache(tmp_path, info)
    a, b = "1" * 64, "2" * 64
    cache.add([(a, (0.25, 1 / 3, 0.5)), (b, (0.0, 1.0, 0.125))])
    cache.close()
    assert cache.load() == {a: (0.25, 1 / 3, 0.5), b: (0.0, 1.0, 0.125)}  # exact (repr round trip)
    with open(cache.path, "a") as fh:  # a score outside [0, 1] fails the line's check
        fh.write(f"{'3' * 64} 0.5,1.5 {'0' * 16}\n")
    assert set(cache.load()) == {a, b}


def test_findings_the_model_cannot_score_are_refused_before_it_runs(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from fairaudit.workflows.model_run import _check_outputs

    labels = tmp_path / "labels.csv"
    labels.write_text("sop_instance_uid,Cardiomegaly,Effusion,Edema\n1.2.3,1,0,-1\n1.2.4,0,,1\n")
    req = SimpleNamespace(
        findings=("all",),
        labels=labels,
        attributes=["race"],
        within=[],
        cluster_column=None,
        label_column="label",
    )
    one = SimpleNamespace(outputs=[], name="one_output")
    with pytest.raises(InputError, match="needs a multi-output model") as err:
        _check_outputs(req, one, "sop_instance_uid")
    assert err.value.argument == "findings"
    multi = SimpleNamespace(outputs=["cardiomegaly", "Effusion", "No Finding"], name="m")
    with pytest.raises(InputError, match="no output for Edema"):
        _check_outputs(req, multi, "sop_instance_uid")
    _check_outputs(
        SimpleNamespace(**{**vars(req), "findings": ("Cardiomegaly", "Effusion")}), multi, "sop_instance_uid"
    )
    with pytest.raises(InputError, match="none is named label"):
        _check_outputs(
            SimpleNamespace(**{**vars(req), "findings": None}), SimpleNamespace(outputs=["A", "B", "C"]), "x"
        )
