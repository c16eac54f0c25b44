"""Sliding-window inference of a 3D model equals MONAI's `sliding_window_inference`, and a 2D
model run slice by slice equals a manual per-slice loop.

The reference is MONAI run on the same torch module (exported here to ONNX and TorchScript
and loaded through load_predictor), never fairaudit's own output.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
monai_inferers = pytest.importorskip("monai.inferers")
pytest.importorskip("onnxruntime")
from torch import nn  # noqa: E402

from fairaudit.errors import InputError  # noqa: E402
from fairaudit.models.loading import load_predictor  # noqa: E402
from fairaudit.models.preprocessing import model_input  # noqa: E402
from fairaudit.models.sliding_window import importance_map, sliding_window_inference, window_starts  # noqa: E402
from fairaudit.models.volumes import predict_volume, prepare_volume, volume_config  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.script in torch 2.9+
torch.set_num_threads(1)
ROI = (8, 10, 6)


class TinySeg3D(nn.Module):
    """A 3D 'segmentation' net: (N, 1, D, H, W) -> (N, 3, D, H, W) logits."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv3d(1, 4, 3, padding=1)
        self.b = nn.Conv3d(4, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


class TinySeg2D(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@pytest.fixture(scope="module")
def net() -> nn.Module:
    torch.manual_seed(0)
    return TinySeg3D().eval()


def _sidecar(path: Path, **keys: object) -> None:
    meta = {"task": "segmentation", "classes": ["bg", "a", "b"], "preprocessing": {"intensity": "none"}}
    Path(str(path) + ".json").write_text(json.dumps(meta | keys))


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory, net: nn.Module) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models3d")
    ts = root / "m.ts"
    torch.jit.script(net).save(str(ts))
    onnx = root / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net, (torch.zeros(2, 1, *ROI),), str(onnx), input_names=["image"], output_names=["logits"],
            dynamic_axes={"image": {0: "n"}, "logits": {0: "n"}}, dynamo=False,
        )  # fmt: skip
    return {"torchscript": ts, "onnx": onnx}


def _monai(net: nn.Module, volume: np.ndarray, overlap: float, blend: str, batch: int) -> np.ndarray:
    with torch.inference_mode():
        x = torch.from_numpy(volume[None, None].astype(np.float32))
        out = monai_inferers.sliding_window_inference(x, ROI, batch, net, overlap=overlap, mode=blend)
    return out[0].numpy()


_GRID = [
    pytest.param(
        kind, blend, overlap, shape, marks=[] if kind == "onnx" or blend == "gaussian" else [pytest.mark.slow]
    )
    for kind in ("onnx", "torchscript")
    for blend in ("constant", "gaussian")
    for overlap in (0.25, 0.5)
    for shape in ((13, 23, 17), (5, 7, 4))  # a non-multiple size; smaller than the window
]


@pytest.mark.parametrize(("kind", "blend", "overlap", "shape"), _GRID)
def test_equals_monai_sliding_window(
    net: nn.Module,
    model_files: dict[str, Path],
    kind: str,
    blend: str,
    overlap: float,
    shape: tuple[int, ...],
) -> None:
    _sidecar(
        model_files[kind],
        spatial_dims=3,
        roi_size=list(ROI),
        sw_overlap=overlap,
        sw_blend=blend,
        sw_batch_size=3,
    )
    pred = load_predictor(str(model_files[kind]), "cpu", task="segmentation", trust_model=True)
    volume = np.random.default_rng(sum(shape)).normal(size=shape).astype(np.float32)
    want = _monai(net, volume, overlap, blend, 3)
    got = sliding_window_inference(
        prepare_volume(volume, pred.spec), pred.forward_raw, ROI, overlap=overlap, mode=blend, sw_batch_size=3
    )
    assert got.shape == want.shape == (3, *shape)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    labels = predict_volume(pred, volume)
    np.testing.assert_array_equal(labels, want.argmax(axis=0))
    assert pred.describe()["volume"]["roi_size"] == list(ROI)


def test_windows_and_weights_are_monais() -> None:
    from monai.data.utils import compute_importance_map, dense_patch_slices
    from monai.inferers.utils import _get_scan_interval

    size, roi = (37, 20, 9), (16, 20, 4)
    for overlap in (0.0, 0.25, 0.5, 0.9):
        interval = _get_scan_interval(size, roi, 3, (overlap,) * 3)
        want = [tuple(s.start for s in w) for w in dense_patch_slices(size, roi, interval)]
        assert window_starts(size, roi, (overlap,) * 3) == want
    ref = compute_importance_map(roi, mode="gaussian", sigma_scale=0.125, device="cpu").numpy()
    np.testing.assert_allclose(importance_map(roi, "gaussian"), ref, rtol=1e-6, atol=0)


def test_windows_go_in_batches_of_sw_batch_size(net: nn.Module) -> None:
    seen: list[int] = []

    def forward(batch: np.ndarray) -> np.ndarray:
        seen.append(len(batch))
        with torch.inference_mode():
            return net(torch.from_numpy(batch.copy())).numpy()

    volume = np.random.default_rng(3).normal(size=(1, 20, 20, 12)).astype(np.float32)
    sliding_window_inference(volume, forward, ROI, overlap=0.25, sw_batch_size=4)
    n = len(window_starts((20, 20, 12), ROI, (0.25,) * 3))
    assert seen == [4] * (n // 4) + ([n % 4] if n % 4 else [])


def test_a_2d_model_runs_slice_by_slice(tmp_path: Path) -> None:
    torch.manual_seed(1)
    path = tmp_path / "seg2d.ts"
    torch.jit.script(TinySeg2D().eval()).save(str(path))
    spec = {"input_size": [16, 16], "intensity": "minmax"}
    for axis in (0, 2):
        Path(str(path) + ".json").write_text(
            json.dumps({"task": "segmentation", "preprocessing": spec, "slice_axis": axis})
        )
        pred = load_predictor(str(path), "cpu", task="segmentation", trust_model=True)
        volume = np.random.default_rng(axis).normal(size=(6, 20, 12)).astype(np.float32)
        got = predict_volume(pred, volume, (2.0, 0.7, 0.7), batch_size=4)
        # The manual loop: each slice prepared, predicted alone, restored, put back in place.
        want = np.zeros(volume.shape, dtype=np.int64)
        for i in range(volume.shape[axis]):
            plane = np.take(volume, i, axis=axis)
            labels = pred.predict(model_input(plane, None, pred.spec)[None])[0]
            index = [slice(None)] * 3
            index[axis] = i
            want[tuple(index)] = pred.restore(labels, plane.shape)
        np.testing.assert_array_equal(got, want)
        assert pred.describe()["volume"] == {"spatial_dims": 2, "slice_axis": axis, "mode": "slices"}


@pytest.mark.parametrize(
    ("keys", "named"),
    [
        ({"spatial_dims": 3}, "roi_size"),
        ({"spatial_dims": 3, "roi_size": [8, 8]}, "roi_size"),
        ({"spatial_dims": 3, "roi_size": [8, 8, 8], "sw_overlap": 1.0}, "sw_overlap"),
        ({"spatial_dims": 3, "roi_size": [8, 8, 8], "sw_blend": "median"}, "sw_blend"),
        ({"spatial_dims": 4}, "spatial_dims"),
        ({"slice_axis": 3}, "slice_axis"),
        ({"spatial_dims": 3, "roi_size": [8, 8, 8], "slice_axis": 0}, "slice_axis"),
    ],
)
def test_bad_volume_keys_are_refused_naming_the_key(keys: dict[str, object], named: str) -> None:
    with pytest.raises(InputError) as err:
        volume_config({"task": "segmentation", **keys}, "m.onnx.json")
    assert named in str(err.value) and "m.onnx.json" in str(err.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_gives_the_cpu_output_within_1e_4(model_files: dict[str, Path]) -> None:
    """--device cuda: only the model moves; the blended outputs match CPU's within 1e-4."""
    _sidecar(
        model_files["torchscript"], spatial_dims=3, roi_size=list(ROI), sw_overlap=0.5, sw_blend="gaussian"
    )
    volume = np.random.default_rng(7).normal(size=(13, 23, 17)).astype(np.float32)
    outs = []
    for device in ("cpu", "cuda"):
        pred = load_predictor(str(model_files["torchscript"]), device, task="segmentation", trust_model=True)
        outs.append(
            sliding_window_inference(prepare_volume(volume, pred.spec), pred.forward_raw, ROI, overlap=0.5)
        )
    np.testing.assert_allclose(outs[1], outs[0], atol=1e-4, rtol=0)
