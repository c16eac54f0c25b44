"""load_predictor: bundles, TorchScript and ONNX give the model's own outputs, hashed and checked.

Expected values come from running the same torch module directly (torch.sigmoid,
torch.argmax), from scipy.special and from hashlib on the files, never from the loader.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit, softmax

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from fairaudit.errors import InputError  # noqa: E402
from fairaudit.models.loading import load_predictor, postprocess  # noqa: E402

torch.set_num_threads(1)


class TinyCNN(nn.Module):
    """A classifier with (N, 1) logits, small enough to export in milliseconds."""

    def __init__(self, channels: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 4, 3, padding=1)
        self.fc = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


class TinySeg(nn.Module):
    """A 'segmentation' net: (N, 3, H, W) logits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _model(seed: int = 0, cls: type[nn.Module] = TinyCNN) -> nn.Module:
    torch.manual_seed(seed)
    return cls().eval()


def _batch(n: int = 5, size: int = 16, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 1, size, size)).astype(np.float32)


def _export_onnx(model: nn.Module, path: Path, *, dynamic: bool = True) -> Path:
    x = torch.zeros(1 if not dynamic else 2, 1, 16, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (x,), str(path), input_names=["image"], output_names=["logits"],
            dynamic_axes={"image": {0: "n"}, "logits": {0: "n"}} if dynamic else None, dynamo=False,
        )  # fmt: skip
    return path


def test_torchscript_matches_the_module_and_hashes_the_file(tmp_path: Path) -> None:
    model = _model()
    path = tmp_path / "m.ts"
    torch.jit.script(model).save(str(path))
    pred = load_predictor(str(path), device="cpu", trust_model=True)
    x = _batch()
    expected = torch.sigmoid(model(torch.from_numpy(x)))[:, 0].detach().numpy()
    np.testing.assert_allclose(pred.predict(x), expected, rtol=1e-6, atol=1e-7)
    assert pred.sha256 == _sha(path)
    assert (pred.source, pred.task, pred.device) == ("torchscript", "classification", "cpu")
    assert pred.classes == ["no_finding", "finding"]


def test_traced_torchscript_loads_too(tmp_path: Path) -> None:
    model = _model(3)
    path = tmp_path / "traced.pt"
    torch.jit.trace(model, torch.zeros(2, 1, 16, 16)).save(str(path))
    x = _batch(4)
    expected = torch.sigmoid(model(torch.from_numpy(x)))[:, 0].detach().numpy()
    np.testing.assert_allclose(
        load_predictor(str(path), "cpu", trust_model=True).predict(x), expected, rtol=1e-6, atol=1e-7
    )


@pytest.mark.parametrize("dynamic", [True, False])
def test_onnx_agrees_with_torch_to_1e5(tmp_path: Path, dynamic: bool) -> None:
    """A dynamic batch runs as one batch; a graph fixed to batch 1 is fed one image at a time."""
    pytest.importorskip("onnxruntime")
    model = _model(1)
    path = _export_onnx(model, tmp_path / "m.onnx", dynamic=dynamic)
    pred = load_predictor(str(path), device="cpu", trust_model=True)
    assert pred.fixed_batch == (None if dynamic else 1)
    x = _batch(7)
    with torch.no_grad():
        expected = torch.sigmoid(model(torch.from_numpy(x)))[:, 0].numpy()
    np.testing.assert_allclose(pred.predict(x), expected, atol=1e-5)
    assert pred.sha256 == _sha(path)
    assert pred.source == "onnx"


def test_bundle_matches_its_module_and_sha256(tmp_path: Path) -> None:
    from fairaudit.models.architectures import build_model
    from fairaudit.models.bundle import save_bundle
    from fairaudit.models.preprocessing import make_spec

    torch.manual_seed(0)
    model = build_model("small_cnn", width=4).eval()
    spec = make_spec(input_size=[16, 16])
    meta = {
        "name": "tiny",
        "task": "classification",
        "architecture": {"name": "small_cnn", "kwargs": {"width": 4}},
        "preprocessing": spec,
        "classes": ["no_finding", "finding"],
    }
    folder = save_bundle(model, tmp_path / "b", meta)
    pred = load_predictor(str(folder), device="auto", trust_model=True)  # no CUDA here: auto -> cpu
    assert pred.device == "cpu" and pred.source == "bundle" and pred.name == "tiny"
    assert pred.runtime == "torchscript-frozen"
    assert pred.sha256 == _sha(folder / "model.safetensors")
    assert pred.spec == spec
    x = _batch(6)
    with torch.no_grad():
        expected = torch.sigmoid(model(torch.from_numpy(x)))[:, 0].numpy()
    np.testing.assert_allclose(pred.predict(x), expected, rtol=1e-5, atol=1e-6)
    # prepare() is exactly the bundle's preprocessing (the function training uses).
    from fairaudit.models.preprocessing import prepare_image

    image = np.random.default_rng(0).normal(size=(40, 30)).astype(np.float32)
    np.testing.assert_array_equal(pred.prepare(image, (0.5, 0.5)), prepare_image(image, (0.5, 0.5), spec))
    described = pred.describe()
    assert described["sha256"] == pred.sha256 and described["source"] == "bundle"


def test_tampered_bundle_is_refused(tmp_path: Path) -> None:
    from fairaudit.models.architectures import build_model
    from fairaudit.models.bundle import save_bundle

    folder = save_bundle(
        build_model("small_cnn", width=4),
        tmp_path / "b",
        {
            "name": "t",
            "task": "classification",
            "architecture": {"name": "small_cnn", "kwargs": {"width": 4}},
        },
    )
    meta = json.loads((folder / "model.json").read_text())
    meta["weights"]["sha256"] = "0" * 64
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="sha256"):
        load_predictor(str(folder), "cpu", trust_model=True)


def test_segmentation_sidecar_argmax_and_restore(tmp_path: Path) -> None:
    model = _model(2, TinySeg)
    path = tmp_path / "seg.pt"
    torch.jit.script(model).save(str(path))
    spec = {
        "input_size": [16, 16],
        "resize": "stretch",
        "intensity": "none",
        "percentiles": [1, 99],
        "channels": 1,
    }
    Path(str(path) + ".json").write_text(
        json.dumps(
            {"name": "seg", "task": "segmentation", "classes": ["bg", "a", "b"], "preprocessing": spec}
        )
    )
    pred = load_predictor(str(path), "cpu", trust_model=True)
    assert (pred.task, pred.classes, pred.name) == ("segmentation", ["bg", "a", "b"], "seg")
    x = _batch(3)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).argmax(dim=1).numpy()
    out = pred.predict(x)
    assert out.shape == (3, 16, 16)
    np.testing.assert_array_equal(out, expected)
    # Restored to a 32 x 24 original grid: nearest neighbour, so each output pixel is the
    # network pixel at floor((i + 0.5) * 16 / 32) (skimage's pixel-centre convention).
    restored = pred.restore(out[0], (32, 24))
    rows = np.floor((np.arange(32) + 0.5) * 16 / 32).astype(int)
    cols = np.floor((np.arange(24) + 0.5) * 16 / 24).astype(int)
    np.testing.assert_array_equal(restored, out[0][np.ix_(rows, cols)])
    # The task on the command line must agree with the sidecar.
    with pytest.raises(InputError, match="segmentation model but task= is classification"):
        load_predictor(str(path), "cpu", task="classification", trust_model=True)


def test_no_sidecar_takes_task_from_the_caller(tmp_path: Path) -> None:
    path = tmp_path / "seg.ts"
    torch.jit.script(_model(2, TinySeg)).save(str(path))
    pred = load_predictor(str(path), "cpu", task="segmentation", trust_model=True)
    assert pred.task == "segmentation" and pred.classes == ["background", "foreground"]
    from fairaudit.models.preprocessing import DEFAULT_SPEC

    assert pred.spec == DEFAULT_SPEC


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("model.xyz", b"abc", "unknown model file type"),
        ("broken.pt", b"not a zip archive", "cannot be loaded as TorchScript"),
        ("broken.onnx", b"\x00\x01garbage", "cannot be loaded by onnxruntime"),
    ],
)
def test_bad_model_files_are_input_errors(tmp_path: Path, name: str, content: bytes, match: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=match):
        load_predictor(str(path), "cpu", trust_model=True)


def test_missing_file_bad_sidecar_bad_device_unknown_bundled(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file or folder"):
        load_predictor(str(tmp_path / "nope.pt"), "cpu", trust_model=True)
    path = tmp_path / "m.pt"
    torch.jit.script(_model()).save(str(path))
    Path(str(path) + ".json").write_text("{not json")
    with pytest.raises(InputError, match="cannot be read as JSON"):
        load_predictor(str(path), "cpu", trust_model=True)
    Path(str(path) + ".json").write_text(json.dumps({"output": "odds"}))
    with pytest.raises(InputError, match="output must be one of"):
        load_predictor(str(path), "cpu", trust_model=True)
    Path(str(path) + ".json").unlink()
    with pytest.raises(InputError, match="device= must be"):
        load_predictor(str(path), "tpu", trust_model=True)
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA device"):
            load_predictor(str(path), "cuda", trust_model=True)
    with pytest.raises(InputError, match="unknown bundled model 'no-such-model'"):
        load_predictor("bundled:no-such-model", "cpu")


def test_postprocess_against_scipy() -> None:
    rng = np.random.default_rng(0)
    logits = np.concatenate([rng.normal(scale=5, size=(20, 1)), [[800.0], [-800.0]]])
    np.testing.assert_allclose(
        postprocess(logits, "classification", "logits", 22), expit(logits[:, 0]), rtol=1e-12
    )
    k = rng.normal(size=(10, 3))
    np.testing.assert_allclose(
        postprocess(k, "classification", "logits", 10), softmax(k, axis=1)[:, -1], rtol=1e-12
    )
    probs = rng.uniform(size=(10, 1))
    np.testing.assert_array_equal(postprocess(probs, "classification", "probabilities", 10), probs[:, 0])
    one = rng.normal(size=(2, 1, 4, 4))
    np.testing.assert_array_equal(postprocess(one, "segmentation", "logits", 2), (one[:, 0] > 0).astype(int))
    with pytest.raises(ValueError, match="returned shape"):
        postprocess(np.zeros((3, 1)), "classification", "logits", 4)


def test_bundle_falls_back_to_eager_when_freezing_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fairaudit.models.architectures import build_model
    from fairaudit.models.bundle import save_bundle

    torch.manual_seed(2)
    model = build_model("small_cnn", width=4).eval()
    meta = {
        "name": "t",
        "task": "classification",
        "architecture": {"name": "small_cnn", "kwargs": {"width": 4}},
    }
    folder = save_bundle(model, tmp_path / "b", meta)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("cannot freeze")

    monkeypatch.setattr(torch.jit, "freeze", broken)
    pred = load_predictor(str(folder), "cpu", trust_model=True)
    assert pred.runtime == "eager-channels-last"
    x = _batch(3, size=64)
    with torch.no_grad():
        expected = torch.sigmoid(model(torch.from_numpy(x)))[:, 0].numpy()
    np.testing.assert_allclose(pred.predict(x), expected, rtol=1e-5, atol=1e-6)
