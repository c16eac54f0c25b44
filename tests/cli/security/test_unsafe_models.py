"""Unsafe models (issue 7, point 3): pickles are refused before anything is unpickled, and a
bundle whose weights do not match the sha256 in model.json is refused. Both exit 2."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from fairaudit.errors import InputError
from fairaudit.models.bundle import resolve_bundled
from fairaudit.models.loading import load_predictor, pickle_kind

from _helpers import cli
from _helpers.paths import SAMPLE


class _Evil:
    """Unpickling this calls os.system, which creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _evil_files(tmp_path: Path) -> tuple[Path, list[Path]]:
    marker = tmp_path / "PWNED"
    raw = tmp_path / "evil.pt"
    raw.write_bytes(pickle.dumps(_Evil(marker), protocol=4))
    archive = tmp_path / "evil_archive.pt"
    torch.save({"state": _Evil(marker)}, archive)  # a zip with data.pkl: what torch.save writes
    pth = tmp_path / "evil.pth"
    pth.write_bytes(pickle.dumps(_Evil(marker), protocol=2))
    legacy = tmp_path / "legacy.ckpt"
    legacy.write_bytes(b"c" + b"os\nsystem\n")  # protocol-0 pickle text: caught by its suffix
    return marker, [raw, archive, pth, legacy]


def _dicom_dir(tmp_path: Path) -> Path:
    """A few sample images (the audit must refuse the model before reading them)."""
    root = tmp_path / "images"
    root.mkdir()
    for p in sorted((SAMPLE / "images" / "fixed_1").iterdir())[:3]:
        shutil.copy(p, root / p.name)
    return root


def _refused_run(images: Path, model: Path, out: Path):
    """A model run on the sample's labels and demographics (the model must be refused first);
    wide columns, so that rich does not fold a long temporary path inside the file's name."""
    return cli.audit(*cli.model_run_args(model=model, images=images), "--attribute", "sex",
                     workers=1, quiet=True, out=out, columns=400)  # fmt: skip


def test_pickles_are_refused_by_the_loader_and_nothing_runs(tmp_path: Path) -> None:
    marker, files = _evil_files(tmp_path)
    for path in files:
        assert pickle_kind(path) is not None, path.name
        with pytest.raises(InputError, match="never unpickles"):
            load_predictor(str(path), "cpu")
    assert not marker.exists()
    # The test's own control: unpickling really would have created the marker.
    pickle.loads(files[0].read_bytes())
    assert marker.exists()


def test_cli_refuses_a_pickled_model_with_exit_2(tmp_path: Path) -> None:
    marker, files = _evil_files(tmp_path)
    images = _dicom_dir(tmp_path)
    for path in files:
        result = _refused_run(images, path, tmp_path / "out")
        text = cli.flat(result.output)
        assert result.exit_code == 2, text
        assert "never unpickles" in text and path.name in text
    assert not marker.exists()


def test_torchscript_pt_still_loads(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 1))
    for name, save in (("scripted.pt", torch.jit.script), ("traced.pt", None)):
        path = tmp_path / name
        module = save(model) if save else torch.jit.trace(model, torch.zeros(1, 1, 8, 8))
        module.save(str(path))
        assert pickle_kind(path) is None
        pred = load_predictor(str(path), "cpu", trust_model=True)
        assert pred.source == "torchscript"


def test_bundle_with_tampered_weights_is_refused(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(resolve_bundled("cxr_finding_classifier"), bundle)
    meta = json.loads((bundle / "model.json").read_text())
    weights = bundle / meta["weights"]["file"]
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # one bit in the last weight
    weights.write_bytes(bytes(data))
    with pytest.raises(InputError, match="does not match model.json"):
        load_predictor(str(bundle), "cpu")
    result = _refused_run(_dicom_dir(tmp_path), bundle, tmp_path / "out")
    text = cli.flat(result.output)
    assert result.exit_code == 2 and "does not match model.json" in text, text
