"""Model bundles: a folder with model.safetensors (weights, never a pickle) and model.json.

model.json follows the MONAI bundle's metadata (format_version, version, intended_use,
network_data_format ...) plus fairaudit's preprocessing spec, training configuration,
data summary, per-group validation metrics and the weights' sha256 (verified on load).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fairaudit._util.hashing import file_sha256
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

    from fairaudit._util.atomic import atomic_path, atomic_write_bytes
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
    except RecursionError:  # json nests recursively: 100,000 '[' is no model.json
        raise InputError(
            "nests arrays or objects too deeply to be a model.json.", file=str(meta_path)
        ) from None
    if not isinstance(meta, dict):
        raise InputError(
            "must hold a JSON object (format_version, architecture, weights ...).", file=str(meta_path)
        )
    for key in ("architecture", "weights"):
        if not isinstance(meta.get(key), dict):
            raise InputError(f"lacks the '{key}' object.", file=str(meta_path))
    return meta


def bundle_member(folder: Path, name: Any, field: str) -> Path:
    """The file a model.json field names, which must lie inside the bundle folder.

    A bundle comes from someone else: `../../x.safetensors`, an absolute path or a link
    leading out of the folder would make fairaudit read (and print the sha256 of) any file
    on this machine (docs/threat-model.md). Resolved (links followed) before the check.
    """
    meta_path = str(Path(folder) / META_FILE)
    if not isinstance(name, str) or not name.strip() or "\0" in name:
        raise InputError(f"{field} must be a file name inside the bundle folder.", file=meta_path)
    top = Path(os.path.realpath(folder))
    target = Path(os.path.realpath(Path(folder) / name))
    if top not in target.parents:
        raise InputError(
            f"{field} names a file outside the bundle folder; a bundle may only name its own files.",
            file=meta_path,
            hint=f"Put the file in the bundle folder and give its name relative to it in {field}.",
        )
    return target  # the checked file, not the name (a link swapped in later is not followed)


#: safetensors' own limit on the JSON header (the library refuses larger ones).
SAFETENSORS_HEADER_MAX = 100_000_000
#: Bytes per element of each safetensors dtype.
_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip


def check_safetensors(path: Path) -> None:
    """Check a safetensors file's layout before the library reads it.

    The format (docs/models.md): 8 bytes little-endian N, N bytes of JSON {name: {dtype,
    shape, data_offsets: [begin, end]}} (plus "__metadata__"), then the data. A truncated
    file, a header longer than the file, a header that is not JSON, or offsets out of the
    data are each an InputError saying which, never the library's panic or a traceback.
    """
    size = path.stat().st_size
    where = str(path)
    fix = "Re-save the weights with `fairaudit train` (or safetensors.torch.save_file)."
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise InputError(
                f"is not a safetensors file: {size} bytes, fewer than the 8 that give the header length.",
                file=where,
                hint=fix,
            )
        n = int.from_bytes(head, "little")
        if n > size - 8 or n > SAFETENSORS_HEADER_MAX:
            raise InputError(
                f"safetensors header length is {n} bytes, but the file holds {size - 8} after it "
                f"(at most {SAFETENSORS_HEADER_MAX}): the file is truncated or not safetensors.",
                file=where,
                hint=fix,
            )
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        header = None
    if not isinstance(header, dict):
        raise InputError("safetensors header is not a JSON object.", file=where, hint=fix)
    data = size - 8 - n
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        shown = name if len(name) <= 60 else name[:57] + "..."
        ok = isinstance(entry, dict) and entry.get("dtype") in _DTYPE_BYTES
        shape = entry.get("shape") if ok else None
        offsets = entry.get("data_offsets") if ok else None
        ok = ok and isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)
        ok = ok and isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
        if not ok:
            raise InputError(
                f"safetensors tensor '{shown}' lacks a valid dtype, shape or data_offsets.",
                file=where,
                hint=fix,
            )
        begin, end = offsets
        count = 1
        for d in shape:
            count *= d
        if not 0 <= begin <= end <= data or end - begin != count * _DTYPE_BYTES[entry["dtype"]]:
            raise InputError(
                f"safetensors tensor '{shown}' has data_offsets [{begin}, {end}] outside the "
                f"{data} bytes of data, or not the size its shape needs: the file is truncated or damaged.",
                file=where,
                hint=fix,
            )


def load_bundle(path: Path, device: str = "cpu") -> Bundle:
    """Load a bundle folder; the weights' sha256 must match model.json (else InputError)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from fairaudit.models.architectures import build_model

    path = Path(path)
    meta = read_meta(path)
    weights = bundle_member(path, meta["weights"].get("file", WEIGHTS_FILE), "weights.file")
    if not weights.is_file():
        raise InputError("weights file is missing.", file=str(weights))
    digest = sha256_file(weights)
    expected = meta["weights"].get("sha256")
    if digest != expected:
        raise InputError(
            f"sha256 {digest} does not match model.json ({expected}); the weights were changed or corrupted.",
            file=str(weights),
        )
    check_safetensors(weights)
    arch = meta["architecture"]
    try:
        model = build_model(arch["name"], **dict(arch.get("kwargs") or {}))
        model.load_state_dict(load_file(str(weights), device="cpu"))
    except (ValueError, TypeError, RuntimeError, KeyError, SafetensorError) as exc:
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
