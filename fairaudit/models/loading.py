"""One way to run any model the audit accepts: `load_predictor(ref, device)` -> Predictor.

`ref` is one of
- `bundled:NAME`: a bundle shipped in fairaudit/models/bundled/NAME (fairaudit.models.bundle);
- a bundle folder (model.json + model.safetensors, written by `fairaudit train`);
- a TorchScript file (`.pt`, `.ts`, `.torchscript`), loaded with `torch.jit.load` (no pickle);
- an ONNX file (`.onnx`), run by onnxruntime (the optional `onnx` extra).

TorchScript and ONNX files carry no metadata, so they take their task, classes, output
kind and preprocessing from a sidecar `<file>.json` (e.g. `model.onnx.json`) holding the
model.json keys (name, task, classes, preprocessing, output), or else from
`DEFAULT_SIDECAR`.

A Predictor hides the runtime: `prepare(image, spacing)` turns a decoded DICOM image into
the model's input (the same `prepare_image` training used), `predict(batch)` returns
probabilities of the finding (classification; (N, K), one column per output, for a
multi-output model: see `multilabel_outputs`) or label maps (segmentation), and
`restore(label_map, shape)` puts a label map back on the image's original grid.
`sha256` is that of the weights (bundles: verified against model.json) or of the model
file, so results.json names exactly the model that ran.

torch is imported here at module level: import this module only on a model path.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fairaudit._util.hashing import file_sha256
from fairaudit.errors import InputError, arg

log = logging.getLogger(__name__)

TORCHSCRIPT_SUFFIXES = (".pt", ".ts", ".torchscript", ".ptc")
ONNX_SUFFIXES = (".onnx",)
PICKLE_SUFFIXES = (".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".joblib")
TASKS = ("classification", "segmentation")
OUTPUT_KINDS = ("logits", "probabilities")

#: What a TorchScript or ONNX file without a sidecar is taken to be.
DEFAULT_SIDECAR: dict[str, Any] = {
    "task": "classification",
    "output": "logits",  # classification: (N, 1) or (N,) logits -> sigmoid; (N, K) -> softmax[:, -1]
    "classes": None,  # classification: ["no_finding", "finding"]; segmentation: one per channel
    "preprocessing": None,  # None: fairaudit.models.preprocessing's default spec
}


@dataclass
class Predictor:
    """A loaded model with the preprocessing it was trained with (see the module doc)."""

    name: str
    sha256: str
    task: str
    classes: list[str]
    device: str
    source: str  # bundled | bundle | torchscript | onnx
    spec: dict[str, Any]
    output: str = "logits"
    meta: dict[str, Any] = field(default_factory=dict)
    reference: str = ""
    fixed_batch: int | None = None  # an ONNX graph with a fixed batch dimension (usually 1)
    runtime: str = (
        "eager"  # how it runs: torchscript-frozen | eager-channels-last | torchscript | onnxruntime
    )
    _forward: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False)
    # How it runs on a volume (model.json spatial_dims 3 / slice_axis: fairaudit.models.volumes); None: 2D only.
    volume: Any = None
    # A multi-output (multi-label) classifier: the name of each sigmoid output, in order
    # (multilabel_outputs); empty: one score per image.
    outputs: list[str] = field(default_factory=list)

    def prepare(self, image: np.ndarray, spacing: tuple[float, ...] | None) -> np.ndarray:
        """A decoded (H, W) float32 image -> the model input (C, H', W') float32."""
        from fairaudit.models.preprocessing import model_input

        return model_input(image, spacing, self.spec)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """(N, C, H, W) float32 -> (N,) P(finding), (N, K) per-output probabilities of a
        multi-output model, or (N, H, W) int label maps."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4:
            raise ValueError(f"predict expects a (N, C, H, W) batch, got shape {batch.shape}")
        if self._forward is None:  # pragma: no cover - always set by load_predictor
            raise RuntimeError("predictor has no model")
        if self.fixed_batch is not None and batch.shape[0] != self.fixed_batch:
            step = self.fixed_batch
            raw = np.concatenate([self._forward(batch[i : i + step]) for i in range(0, len(batch), step)])
        else:
            raw = self._forward(batch)
        if self.outputs:
            return multilabel_postprocess(raw, self.output, len(batch), self.outputs)
        return postprocess(raw, self.task, self.output, len(batch))

    def forward_raw(self, batch: np.ndarray) -> np.ndarray:
        """The model's raw float32 output for a batch of any rank ((N, C, D, H, W) windows of a
        3D model), split into the graph's fixed batch size where it has one."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self._forward is None:  # pragma: no cover - always set by load_predictor
            raise RuntimeError("predictor has no model")
        step = self.fixed_batch
        if step is not None and batch.shape[0] != step:
            parts = [self._forward(batch[i : i + step]) for i in range(0, len(batch), step)]
            return np.concatenate(parts).astype(np.float32, copy=False)
        return np.asarray(self._forward(batch), dtype=np.float32)

    def restore(self, label_map: np.ndarray, original_shape: tuple[int, int]) -> np.ndarray:
        """A predicted label map back on the original image grid (nearest neighbour)."""
        from fairaudit.models.preprocessing import restore_mask

        return restore_mask(np.asarray(label_map), tuple(int(s) for s in original_shape[-2:]), self.spec)

    def describe(self) -> dict[str, Any]:
        """The `model` object of results.json."""
        out: dict[str, Any] = {
            "name": self.name,
            "sha256": self.sha256,
            "source": self.source,
            "task": self.task,
            "device": self.device,
            "classes": list(self.classes),
            "multilabel": bool(self.outputs),
            "output": self.output,
            "reference": self.reference,
            "runtime": self.runtime,
        }
        for key in ("version", "architecture", "intended_use", "license"):
            if key in self.meta:
                out[key] = self.meta[key]
        out["preprocessing"] = self.spec
        if self.volume is not None:
            out["volume"] = self.volume.describe()
        return out


def postprocess(raw: np.ndarray, task: str, output: str, n: int) -> np.ndarray:
    """Raw model outputs -> probabilities of the finding (N,) or label maps (N, H, W)."""
    raw = np.asarray(raw)
    if raw.shape[:1] != (n,):
        raise ValueError(f"the model returned shape {raw.shape} for a batch of {n}")
    if task == "classification":
        flat = raw.reshape(n, -1).astype(np.float64)
        if flat.shape[1] == 1:
            p = flat[:, 0] if output == "probabilities" else _sigmoid(flat[:, 0])
        else:  # K classes: the last one is the finding
            if output == "probabilities":
                p = flat[:, -1]
            else:
                z = flat - flat.max(axis=1, keepdims=True)
                e = np.exp(z)
                p = e[:, -1] / e.sum(axis=1)
        return np.clip(p, 0.0, 1.0)
    if raw.ndim == 3:  # (N, H, W): already a label map, or one channel squeezed
        if np.issubdtype(raw.dtype, np.integer):
            return raw.astype(np.int64)
        cut = 0.5 if output == "probabilities" else 0.0
        return (raw > cut).astype(np.int64)
    if raw.ndim != 4:
        raise ValueError(f"a segmentation model must return (N, C, H, W), got shape {raw.shape}")
    if raw.shape[1] == 1:
        cut = 0.5 if output == "probabilities" else 0.0
        return (raw[:, 0] > cut).astype(np.int64)
    return raw.argmax(axis=1).astype(np.int64)


def multilabel_outputs(
    task: str, classes: list[str], meta: dict[str, Any], source: Path | None = None
) -> list[str]:
    """The outputs of a multi-output classifier, one sigmoid per class in model.json's
    `classes` order: when it says `"multilabel": true`, or lists more than two classes
    (two classes, ["no_finding", "finding"], keep the one-score reading: a sigmoid of one
    output, or the softmax's last of two). Empty for a one-score model (docs/models.md)."""
    flag = meta.get("multilabel")
    where = None if source is None else str(source)
    if flag is not None and not isinstance(flag, bool):
        raise InputError(f"multilabel must be true or false, not {flag!r}.", file=where)
    if task != "classification" or flag is False or not (flag or len(classes) > 2):
        return []
    if len(set(classes)) != len(classes):
        raise InputError(f"classes must be distinct for a multi-output model: {classes}.", file=where)
    return list(classes)


def multilabel_postprocess(raw: np.ndarray, output: str, n: int, outputs: list[str]) -> np.ndarray:
    """Raw outputs of a multi-output model -> (N, K) probabilities, one sigmoid per output."""
    raw = np.asarray(raw)
    if raw.shape[:1] != (n,):
        raise ValueError(f"the model returned shape {raw.shape} for a batch of {n}")
    flat = raw.reshape(n, -1).astype(np.float64)
    if flat.shape[1] != len(outputs):
        raise ValueError(
            f"the model returned {flat.shape[1]} outputs per image; its classes name {len(outputs)} "
            f"({', '.join(outputs)})"
        )
    p = flat if output == "probabilities" else _sigmoid(flat)
    return np.clip(p, 0.0, 1.0)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def resolve_device(device: str, *, onnx: bool = False) -> str:
    """auto -> cuda when available, else cpu; an unavailable cuda is an InputError."""
    device = (device or "auto").strip().lower()
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise InputError(
            f"{arg('device')} must be auto, cpu or cuda (or cuda:N), not '{device}'.", argument="device"
        )
    if device == "cpu":
        return "cpu"
    if onnx:
        import onnxruntime as ort

        has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    else:
        import torch

        has_cuda = torch.cuda.is_available()
    if device == "auto":
        return "cuda" if has_cuda else "cpu"
    if not has_cuda:
        raise InputError(
            f"{arg('device')} {device}: no CUDA device is available here"
            + (" to onnxruntime (install onnxruntime-gpu)" if onnx else "")
            + ".",
            hint=f"Pass {arg('device')} cpu or {arg('device')} auto.",
            argument="device",
        )
    return device


def torchscript_risk() -> str:
    """Why a TorchScript file needs trust_model (docs/threat-model.md, "Model files")."""
    return (
        "is a TorchScript program, and TorchScript can read and write files (torch.from_file, "
        "torch.save) with your permissions, at load time and when it runs: fairaudit runs it only "
        f"with {arg('trust_model')}."
    )


def load_predictor(
    ref: str, device: str = "auto", task: str | None = None, *, trust_model: bool = False
) -> Predictor:
    """Load `ref` (see the module doc) onto `device`; InputError for anything unusable.

    A TorchScript file is refused unless `trust_model`: it is code, not data.
    """
    ref = str(ref).strip()
    if not ref:
        raise InputError(
            f"{arg('model')} is empty: pass bundled:NAME, a bundle folder, a TorchScript or ONNX file.",
            argument="model",
        )
    if task is not None and task not in TASKS:
        raise InputError(
            f"{arg('task')} must be classification or segmentation, not '{task}'.", argument="task"
        )
    if ref.startswith("bundled:"):
        from fairaudit.models.bundle import resolve_bundled

        pred = _from_bundle(resolve_bundled(ref.split(":", 1)[1].strip()), device, "bundled")
    else:
        path = Path(ref).expanduser()
        if path.is_dir():
            pred = _from_bundle(path, device, "bundle")
        elif not path.is_file():
            from fairaudit._util.regular import kind_of

            try:  # a FIFO or a device is named as what it is (and never opened: it may block)
                what = f"is {kind_of(path.stat().st_mode)}, not a model file or bundle folder."
            except OSError:
                what = "no such file or folder."
            raise InputError(
                what,
                file=ref,
                hint="Pass bundled:NAME, a bundle folder (model.json), a TorchScript (.pt/.ts) or ONNX file.",
            )
        elif (why := pickle_kind(path)) is not None:
            raise InputError(
                f"is {why}; fairaudit never unpickles a model file, because unpickling runs whatever "
                "code the file names.",
                file=ref,
                hint="Export the model with torch.jit.script(model).save(path), to ONNX, or train a "
                "bundle (safetensors weights) with `fairaudit train`.",
            )
        elif path.suffix.lower() in ONNX_SUFFIXES:
            pred = _from_onnx(path, device, task)
        elif path.suffix.lower() in TORCHSCRIPT_SUFFIXES:
            if not trust_model:
                raise InputError(
                    torchscript_risk(),
                    file=ref,
                    hint="Export the model to ONNX (torch.onnx.export), or train a bundle with safetensors "
                    f"weights (`fairaudit train`); pass {arg('trust_model')} only for a file from someone you "
                    "trust.",
                    argument="trust_model",
                )
            pred = _from_torchscript(path, device, task)
        else:
            raise InputError(
                f"unknown model file type '{path.suffix}'.",
                file=ref,
                hint=f"Use {', '.join(TORCHSCRIPT_SUFFIXES)} for TorchScript or .onnx for ONNX.",
            )
    pred.reference = ref
    if task is not None and pred.task != task:
        raise InputError(
            f"the model is a {pred.task} model but {arg('task')} is {task}.",
            file=ref,
            hint=f"Pass {arg('task')} {pred.task}, or another model.",
            argument="task",
        )
    log.info(
        "model %s (%s, %s) on %s, sha256 %s", pred.name, pred.source, pred.task, pred.device, pred.sha256
    )
    return pred


def pickle_kind(path: Path) -> str | None:
    """What pickle `path` is ("a pickled checkpoint", ...), else None; reads bytes, never unpickles.

    A raw pickle starts with the PROTO opcode (0x80); a torch.save archive is a zip holding
    data.pkl without TorchScript's constants.pkl. Suffixes such as .pth/.pkl/.ckpt name pickles.
    """
    import zipfile

    try:
        with path.open("rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise InputError(f"cannot be read ({type(exc).__name__}).", file=str(path)) from None
    if head[:1] == b"\x80":
        return "a pickle (for example torch.save of a module or checkpoint)"
    if head[:2] == b"PK":
        try:
            with zipfile.ZipFile(path) as zf:
                names = {n.rsplit("/", 1)[-1] for n in zf.namelist()}
        except (zipfile.BadZipFile, OSError):
            return None
        if "data.pkl" in names and "constants.pkl" not in names:
            return "a pickled checkpoint written by torch.save (not TorchScript)"
        return None
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return f"a '{path.suffix}' file, a suffix used for pickled checkpoints"
    return None


def _classes(task: str, given: Any, source: Path | None = None) -> list[str]:
    if given:
        if not isinstance(given, list) or not all(isinstance(c, str | int) for c in given):
            raise InputError(
                'classes must be a list of class names, e.g. ["no_finding", "finding"].',
                file=None if source is None else str(source),
            )
        return [str(c) for c in given]
    return ["no_finding", "finding"] if task == "classification" else ["background", "foreground"]


def _spec(given: Any, source: Path | None = None) -> dict[str, Any]:
    """The preprocessing spec of model.json (or a sidecar), checked now: a wrong input_size
    or the like is an error naming the file before any image is read, not a crash inside
    inference (docs/models.md)."""
    from fairaudit.models import preprocessing

    if given is not None and not isinstance(given, dict):
        raise InputError(
            f"preprocessing must be an object of settings, not {type(given).__name__}.",
            file=None if source is None else str(source),
        )
    if not given:
        return dict(preprocessing.DEFAULT_SPEC)
    try:
        preprocessing.make_spec(**given)  # checked; kept as given (results.json records it so)
        return dict(given)
    except (ValueError, TypeError) as exc:
        raise InputError(
            f"{exc}",
            file=None if source is None else str(source),
            hint="Fix the preprocessing object (see docs/models.md), or retrain the bundle with `fairaudit train`.",
        ) from None


def _from_bundle(path: Path, device: str, source: str) -> Predictor:
    import torch

    from fairaudit.models.bundle import load_bundle

    dev = resolve_device(device)
    bundle = load_bundle(path, device=dev)
    meta = dict(bundle.meta)
    task = str(meta.get("task", "classification"))
    if task not in TASKS:
        raise InputError(f"model.json: unknown task '{task}'.", file=str(path / "model.json"))
    spec = _spec(meta.get("preprocessing"), path / "model.json")
    classes = _classes(task, meta.get("classes"), path / "model.json")
    outputs = multilabel_outputs(task, classes, meta, path / "model.json")
    from fairaudit.models.volumes import volume_config

    volume = volume_config(meta, path / "model.json")
    model, runtime, fmt = _runtime(bundle.model.eval(), task, spec, dev)

    def forward(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(dev)
            out = model(x.contiguous(memory_format=fmt) if x.ndim == 4 else x)
            return _first_tensor(out).float().contiguous().cpu().numpy()

    return Predictor(
        name=str(meta.get("name") or path.name),
        sha256=str(bundle.sha256),
        task=task,
        classes=classes,
        device=dev,
        source=source,
        spec=spec,
        output=str(meta.get("output", "logits")),
        meta=meta,
        runtime=runtime,
        _forward=forward,
        volume=volume,
        outputs=outputs,
    )


def _runtime(model: Any, task: str, spec: dict[str, Any], dev: str) -> tuple[Any, str, Any]:
    """(module to call, its name for results.json, memory format of its input) for a bundle.

    On CPU, oneDNN's convolutions run fastest on channels-last tensors, and a classifier
    frozen as TorchScript and optimized for inference (batch norm folded into the
    convolutions) runs about 3x faster per image and 5x batched than the eager module
    (benchmarks/inference.py); for the U-Net freezing gained nothing, so it stays eager,
    channels-last. The frozen module is checked against the eager one on a seeded probe
    batch and dropped (eager is used) if scripting fails or the outputs differ beyond
    float32 rounding.
    """
    import torch

    if dev != "cpu":
        return model, "eager", torch.contiguous_format
    if task == "classification":
        probe = _probe(model, spec)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fast = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.script(model)))
                with torch.inference_mode():
                    want = _first_tensor(model(probe)).float()
                    got = _first_tensor(fast(probe)).float()
            tol = 1e-4 * max(1.0, float(want.abs().max()))
            if got.shape == want.shape and float((got - want).abs().max()) <= tol:
                return fast, "torchscript-frozen", torch.contiguous_format
            log.warning(
                "the optimized model disagrees with the eager one on a probe batch: running it eagerly"
            )
        except Exception as exc:  # noqa: BLE001 - any scripting failure: run the eager module
            log.debug("cannot freeze the model as TorchScript (%s): running it eagerly", exc)
    return model.to(memory_format=torch.channels_last), "eager-channels-last", torch.channels_last


def _probe(model: Any, spec: dict[str, Any]) -> Any:
    """A seeded random input batch of the model's input shape (channels from its first convolution)."""
    import torch

    channels = next((m.in_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)), 1)
    h, w = (spec.get("input_size") or [64, 64])[:2]
    gen = torch.Generator().manual_seed(0)
    return torch.randn(2, int(channels), int(h), int(w), generator=gen)


def read_sidecar(path: Path, task: str | None) -> dict[str, Any]:
    """`<file>.json` merged over DEFAULT_SIDECAR (task from the sidecar, else --task)."""
    side = Path(str(path) + ".json")
    meta: dict[str, Any] = dict(DEFAULT_SIDECAR)
    if side.is_file():
        try:
            given = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot be read as JSON: {exc}", file=str(side)) from None
        except RecursionError:  # json nests recursively
            raise InputError("nests arrays or objects too deeply to be read.", file=str(side)) from None
        if not isinstance(given, dict):
            raise InputError("must hold a JSON object (the model.json keys).", file=str(side))
        meta.update({k: v for k, v in given.items() if v is not None})
    else:
        log.warning("%s has no sidecar %s: using the default preprocessing", path.name, side.name)
        if task is not None:
            meta["task"] = task
    if meta["task"] not in TASKS:
        raise InputError(f"unknown task '{meta['task']}'.", file=str(side), column="task")
    if meta.get("output", "logits") not in OUTPUT_KINDS:
        raise InputError(
            f"output must be one of {', '.join(OUTPUT_KINDS)}, not '{meta['output']}'.", file=str(side)
        )
    _spec(meta.get("preprocessing"), side)  # checked before the model loads
    from fairaudit.models.volumes import volume_config

    meta["_volume"] = volume_config(meta, side)  # spatial_dims 3 / slice_axis (docs/models.md)
    classes = _classes(str(meta["task"]), meta.get("classes"), side)
    meta["_outputs"] = multilabel_outputs(str(meta["task"]), classes, meta, side)
    meta["_sidecar"] = side.name if side.is_file() else None
    return meta


def _from_torchscript(path: Path, device: str, task: str | None) -> Predictor:
    import torch

    meta = read_sidecar(path, task)
    dev = resolve_device(device)
    try:
        with warnings.catch_warnings():  # torch 2.9+ flags TorchScript as deprecated; it still loads
            warnings.simplefilter("ignore", DeprecationWarning)
            model = torch.jit.load(str(path), map_location=dev)
    except Exception as exc:  # noqa: BLE001 - any failure means: not a TorchScript archive
        raise InputError(
            f"cannot be loaded as TorchScript ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}).",
            file=str(path),
            hint="Save it with torch.jit.script(model).save(path) or torch.jit.trace.",
        ) from None
    model.eval()

    def forward(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = model(torch.from_numpy(batch).to(dev))
            return _first_tensor(out).float().cpu().numpy()

    pred = _file_predictor(path, meta, dev, "torchscript", forward)
    pred.runtime = "torchscript"
    return pred


def _from_onnx(path: Path, device: str, task: str | None) -> Predictor:
    try:
        import onnxruntime as ort
    except ImportError:
        raise InputError(
            "running an ONNX model needs onnxruntime, which is not installed.",
            file=str(path),
            hint="pip install 'fairaudit-imaging[onnx]' (or onnxruntime-gpu for CUDA).",
        ) from None
    meta = read_sidecar(path, task)
    dev = resolve_device(device, onnx=True)
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if dev.startswith("cuda") else None
    try:
        session = ort.InferenceSession(str(path), providers=providers or ["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise InputError(
            f"cannot be loaded by onnxruntime ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}).",
            file=str(path),
        ) from None
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise InputError(
            f"the ONNX graph has {len(inputs)} inputs; fairaudit feeds one (N, C, H, W) image batch.",
            file=str(path),
        )
    name = inputs[0].name
    first = inputs[0].shape[0] if inputs[0].shape else None

    def forward(batch: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {name: batch})[0])

    pred = _file_predictor(path, meta, dev, "onnx", forward)
    pred.runtime = "onnxruntime"
    pred.fixed_batch = int(first) if isinstance(first, int) and first > 0 else None
    return pred


def _file_predictor(
    path: Path, meta: dict[str, Any], dev: str, source: str, forward: Callable[[np.ndarray], np.ndarray]
) -> Predictor:
    task = str(meta["task"])
    return Predictor(
        name=str(meta.get("name") or path.name),
        sha256=file_sha256(path),
        task=task,
        classes=_classes(task, meta.get("classes")),
        device=dev,
        source=source,
        spec=_spec(meta.get("preprocessing")),
        output=str(meta.get("output", "logits")),
        meta={k: v for k, v in meta.items() if not k.startswith("_")} | {"sidecar": meta.get("_sidecar")},
        _forward=forward,
        volume=meta.get("_volume"),
        outputs=list(meta.get("_outputs") or []),
    )


def _first_tensor(out: Any) -> Any:
    """A model may return a tensor, a tuple/list (first item) or a dict ("pred", "logits", or first)."""
    if isinstance(out, dict):
        for key in ("pred", "logits", "out"):
            if key in out:
                return out[key]
        return next(iter(out.values()))
    if isinstance(out, tuple | list):
        return out[0]
    return out
