"""Determinism (issue 7, point 5): two runs with the same seed write byte-identical results.json,
apart from the `created` timestamp: for a predictions audit and for a model audit on CPU.
Ids in manifest.csv / predictions.csv are salted hashes, so a reproducible run passes --salt."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from _helpers import cli
from _helpers.paths import SAMPLE

CREATED = re.compile(rb'\n  "created": "[^"]*",\n')


def _run(args: list[str], out: Path) -> bytes:
    # results.json only: the reports' own determinism is tests/unit/report/test_html.py's.
    result = cli.audit(*args, "--format", "json", quiet=True, out=out, columns=None)
    assert result.exit_code == 0, result.output
    raw = (out / "results.json").read_bytes()
    assert len(CREATED.findall(raw)) == 1, "expected one top-level created field"
    return CREATED.sub(b"\n", raw)


def _assert_identical(a: bytes, b: bytes) -> None:
    if a != b:  # show where, not just that
        ja, jb = json.loads(a), json.loads(b)
        diff = [k for k in ja if ja.get(k) != jb.get(k)]
        raise AssertionError(f"results.json differs in {diff}")


def test_predictions_audit_is_byte_identical(tmp_path: Path) -> None:
    args = [*cli.sample_predictions_args("sex", "race"), "--intersect", "sex,race", "--bootstrap", "300",
            "--ci-method", "bca", "--seed", "11", "--salt", "s3cret", "--discover", "--workers", "1"]  # fmt: skip
    first = _run(args, tmp_path / "a")
    second = _run(args, tmp_path / "b")
    _assert_identical(first, second)
    # A different seed must change the intervals (else the check above proves nothing).
    third = _run([a if a != "11" else "12" for a in args], tmp_path / "c")
    assert third != first
    # Without --salt, ids are hashed with a fresh random salt (hashes are not linkable across
    # runs, docs/threat-model.md): then manifest.csv, and only its hash, differs.
    unsalted = [a for a in args if a not in ("--salt", "s3cret")]
    ja = json.loads(_run(unsalted, tmp_path / "d"))
    jb = json.loads(_run(unsalted, tmp_path / "e"))
    ja["provenance"].pop("manifest_sha256"), jb["provenance"].pop("manifest_sha256")
    assert ja == jb


def test_model_audit_on_cpu_is_byte_identical(tmp_path: Path) -> None:
    images = tmp_path / "images"
    for site in ("fixed_1", "portable"):
        (images / site).mkdir(parents=True)
        for p in sorted((SAMPLE / "images" / site).iterdir())[:30]:
            shutil.copy(p, images / site / p.name)
    args = [*cli.model_run_args(images=images), "--device", "cpu", "--attribute", "site", "--bootstrap", "200", "--seed", "3",
            "--min-group-size", "10", "--salt", "s3cret", "--workers", "1"]  # fmt: skip
    first = _run(args, tmp_path / "a")
    second = _run(args, tmp_path / "b")
    _assert_identical(first, second)
    assert json.loads(first)["overall"]["n"] == 60
