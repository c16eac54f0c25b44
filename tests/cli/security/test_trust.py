"""Issue 19, points 1 and 2: the salt is never written, and TorchScript runs only with --trust-model.

Each test builds the hostile input itself (docs/threat-model.md lists what is defended).
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pytest

from fairaudit.cli._common import command_line

from _helpers import cli
from _helpers.tables import write_csv

SECRET = "s3cr3t-Salt-9f2"


def _predictions(path: Path) -> list[str]:
    ids = [f"MRN{4455600 + i}" for i in range(40)]
    rows = [[mrn, "F" if i % 2 else "M", int(i % 3 == 0), f"{(i % 7) / 7:.3f}"] for i, mrn in enumerate(ids)]
    write_csv(path, ["sop_instance_uid", "sex", "label", "score"], rows)
    return ids


@pytest.mark.parametrize("form", ["separate", "equals"])
def test_the_salt_is_written_nowhere_and_the_command_says_it_was_set(tmp_path: Path, form: str) -> None:
    preds = tmp_path / "preds.csv"
    ids = _predictions(preds)
    salt = ["--salt", SECRET] if form == "separate" else [f"--salt={SECRET}"]
    out = tmp_path / "out"
    args = ["--predictions", str(preds), "--attribute", "sex", *salt, "--format", "html,md,json,junit"]
    res = cli.audit(*args, bootstrap=50, out=out, columns=None)
    assert res.exit_code == 0, res.output
    assert SECRET not in res.output
    for f in out.rglob("*"):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f.name
    # What the recorded command would say (CliRunner does not set sys.argv).
    typed = ["audit", "--predictions", "p.csv", *salt, "--out", "o"]
    assert SECRET not in command_line(typed)
    assert ("--salt '<set>'" if form == "separate" else "'--salt=<set>'") in command_line(typed)
    # The pseudonyms are the salted hashes (computed here with hashlib): the salt was used,
    # and without it a guessed id cannot be tested against them.
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    expected = {hashlib.sha256(SECRET.encode() + b"\x00" + i.encode()).hexdigest()[:16] for i in ids}
    assert {r["id"] for r in rows} == expected
    unsalted = {hashlib.sha256(i.encode()).hexdigest()[:16] for i in ids}
    assert not unsalted & {r["id"] for r in rows}


def test_without_a_salt_pseudonyms_differ_between_runs(tmp_path: Path) -> None:
    preds = tmp_path / "preds.csv"
    _predictions(preds)
    seen = []
    for k in range(2):
        out = tmp_path / f"o{k}"
        res = cli.audit("--predictions", str(preds), "--attribute", "sex", bootstrap=20, out=out, columns=None,
                        env={"FAIRAUDIT_SALT": ""})  # fmt: skip
        assert res.exit_code == 0
        seen.append({r["id"] for r in csv.DictReader((out / "manifest.csv").open())})
    assert not seen[0] & seen[1]


def _file_reading_model(path: Path, secret: Path) -> None:
    """A scripted classifier whose scores read a file of its choice (torch.from_file)."""
    torch = pytest.importorskip("torch")

    class Reader(torch.nn.Module):
        def __init__(self, target: str, size: int) -> None:
            super().__init__()
            self.target = target
            self.size = size

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            stolen = torch.from_file(self.target, shared=False, size=self.size, dtype=torch.uint8)
            leak = stolen.to(torch.float32).sum() * 0.0
            return x.mean(dim=(1, 2, 3)).unsqueeze(1) * 0.0 + leak

    torch.jit.script(Reader(str(secret), secret.stat().st_size)).save(str(path))


def test_torchscript_needs_trust_model_before_anything_runs(tmp_path: Path) -> None:
    from fairaudit.errors import InputError
    from fairaudit.models.loading import load_predictor

    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0\n")
    model = tmp_path / "reader.pt"
    _file_reading_model(model, secret)
    with pytest.raises(InputError, match="trust_model=") as err:
        load_predictor(str(model), "cpu")
    assert "ONNX" in str(err.value) and "reader.pt" in str(err.value)
    # With the user's explicit trust it loads, and it can indeed read the file: the risk the
    # message names is real, which is why trust is asked for.
    pred = load_predictor(str(model), "cpu", task="classification", trust_model=True)
    assert pred.runtime == "torchscript"


def test_cli_refuses_torchscript_without_trust_and_writes_nothing(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0\n")
    model = tmp_path / "reader.ts"
    _file_reading_model(model, secret)
    images = tmp_path / "images"
    images.mkdir()
    demo = tmp_path / "demo.csv"
    demo.write_text("sop_instance_uid,sex,label\n1.2.3,F,1\n")
    out = tmp_path / "out"
    for command in (
        ["audit", str(images), "--model", str(model), "--demographics", str(demo), "--labels", str(demo)]
        + ["--attribute", "sex"],
        [
            "augment-check",
            str(images),
            "--modality",
            "xray",
            "--model",
            str(model),
            "--demographics",
            str(demo),
        ]
        + ["--attribute", "sex", "--labels", str(demo)],
    ):
        res = cli.invoke([*command, "--out", str(out)], columns=None)
        assert res.exit_code == 2, res.output
        assert "--trust-model" in res.output and "Traceback" not in res.output
        assert not (out / "results.json").exists()
