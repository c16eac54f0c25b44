"""Bundles: round trip, sha256 verification, bundled-name resolution, no pickles."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from fairaudit.errors import InputError  # noqa: E402
from fairaudit.models import list_bundled, load_bundle, resolve_bundled, save_bundle  # noqa: E402
from fairaudit.models.architectures import build_model  # noqa: E402

META = {"name": "t", "task": "classification", "architecture": {"name": "small_cnn", "kwargs": {"width": 4}}}


def test_round_trip_same_outputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = build_model("small_cnn", width=4).eval()
    out = save_bundle(net, tmp_path / "b", META)
    meta = json.loads((out / "model.json").read_text())
    digest = hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()
    assert meta["weights"] == {"file": "model.safetensors", "sha256": digest}
    bundle = load_bundle(out)
    assert bundle.sha256 == digest and not bundle.model.training
    x = torch.randn(2, 1, 16, 16)
    assert torch.equal(bundle.model(x), net(x))
    raw = (out / "model.safetensors").read_bytes()
    header_len = int.from_bytes(raw[:8], "little")  # safetensors: u64 header length, then JSON
    assert json.loads(raw[8 : 8 + header_len])["__metadata__"] == {"format": "pt"}


def test_tampered_weights_rejected(tmp_path: Path) -> None:
    out = save_bundle(build_model("small_cnn", width=4), tmp_path / "b", META)
    data = bytearray((out / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (out / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(InputError, match="sha256"):
        load_bundle(out)


def test_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="model.json"):
        load_bundle(tmp_path)


def test_resolve_bundled() -> None:
    with pytest.raises(InputError, match="Available"):
        resolve_bundled("no_such_model")
    for name in list_bundled():
        assert (resolve_bundled(name) / "model.json").is_file()
