"""Model bundles: a folder with model.safetensors (weights, never a pickle) and model.json.

model.json follows the MONAI bundle's metadata (format_version, version, intended_use,
network_data_format ...) plus fairaudit's preprocessing spec, training configuration,
data summary, per-group validation metrics and the weights' sha256 (verified on load).
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fairaudit._hashing import file_sha256
from fairaudit.errors import InputError

WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"
FORMAT_VERSION = "1"
BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"


def sha256_file(path: Path) -> str:
    return file_sha256(path)


def save_bundle(model: Any, out_dir: Path, meta: dict[str, Any]) -> Path:
    """Write model.safetensors and model.json into `out_dir`; return the folder.

    Fills format_version, created and fairaudit_version when `meta` lacks them, and always
    sets weights = {"file", "sha256"} from the bytes written.
    """
    from safetensors.torch import save_file

    from fairaudit._atomic import atomic_path, atomic_write_bytes
    from fairaudit._version import __version__

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    weights = out_dir / WEIGHTS_FILE
    with atomic_path(weights) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
        tmp.chmod(0o644)  # safetensors creates it owner-only; a shipped bundle must be readable
    full = dict(meta)
    full.setdefault("format_version", FORMAT_VERSION)
    full.setdefault("created", _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat())
    full.setdefault("fairaudit_version", __version__)
    full["weights"] = {"file": WEIGHTS_FILE, "sha256": sha256_file(weights)}
    atomic_write_bytes(
        out_dir / META_FILE, (json.dumps(full, indent=2, sort_keys=False) + "\n").encode("utf-8")
    )
    return out_dir


@dataclass
class Bundle:
    """A loaded bundle: the model in eval mode on `device`, its metadata and verified hash."""

    model: Any  # torch.nn.Module
    meta: dict[str, Any]
    sha256: str
    path: Path


def read_meta(path: Path) -> dict[str, Any]:
    """model.json of a bundle folder, with a clear error when it is missing or malformed."""
    meta_path = Path(path) / META_FILE
    if not meta_path.is_file():
        raise InputError(
            "is not a fairaudit model bundle (no model.json).",
            file=str(path),
            hint="Pass a folder written by `fairaudit train`, bundled:NAME, a TorchScript or an ONNX file.",
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot be read as JSON ({exc}).", file=str(meta_path)) from None
    for key in ("architecture", "weights"):
        if not isinstance(meta.get(key), dict):
            raise InputError(f"lacks the '{key}' object.", file=str(meta_path))
    return meta


def load_bundle(path: Path, device: str = "cpu") -> Bundle:
    """Load a bundle folder; the weights' sha256 must match model.json (else InputError)."""
    from safetensors.torch import load_file

    from fairaudit.models.architectures import build_model

    path = Path(path)
    meta = read_meta(path)
    weights = path / meta["weights"].get("file", WEIGHTS_FILE)
    if not weights.is_file():
        raise InputError("weights file is missing.", file=str(weights))
    digest = sha256_file(weights)
    expected = meta["weights"].get("sha256")
    if digest != expected:
        raise InputError(
            f"sha256 {digest} does not match model.json ({expected}); the weights were changed or corrupted.",
            file=str(weights),
        )
    arch = meta["architecture"]
    try:
        model = build_model(arch["name"], **dict(arch.get("kwargs") or {}))
        model.load_state_dict(load_file(str(weights), device="cpu"))
    except (ValueError, TypeError, RuntimeError, KeyError) as exc:
        raise InputError(
            f"weights do not fit the architecture in model.json ({exc}).", file=str(weights)
        ) from None
    model.eval()
    model.to(device)
    return Bundle(model=model, meta=meta, sha256=digest, path=path)


def list_bundled() -> list[str]:
    """Names of the bundles shipped inside the package."""
    if not BUNDLED_DIR.is_dir():
        return []
    return sorted(p.name for p in BUNDLED_DIR.iterdir() if (p / META_FILE).is_file())


def resolve_bundled(name: str) -> Path:
    """Folder of the bundled model `name` (unknown name -> InputError listing the available ones)."""
    folder = BUNDLED_DIR / name
    if name and "/" not in name and "\\" not in name and (folder / META_FILE).is_file():
        return folder
    available = ", ".join(list_bundled()) or "none"
    raise InputError(f"unknown bundled model '{name}'. Available: {available}.")
