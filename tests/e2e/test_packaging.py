"""The wheel ships templates and schema, and the light paths never import torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import time
import venv
import zipfile
from pathlib import Path

import pytest

from _helpers.paths import ROOT, SAMPLE


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (whl,) = out.glob("fairaudit_imaging-*.whl")
    return whl


def test_wheel_contains_templates_and_schema(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "fairaudit/templates/report.html.j2" in names
    assert "fairaudit/templates/report.md.j2" in names
    assert "fairaudit/schema/results.schema.json" in names
    assert "fairaudit/policies/example.toml" in names


def test_wheel_installs_into_fresh_venv_and_audits(wheel: Path, tmp_path: Path) -> None:
    """Install the wheel alone into a new venv; dependencies come from this venv's site-packages.

    The wheel is the only copy of fairaudit on that interpreter's path (the checkout is not),
    so the audit below proves the installed package finds its own templates and schema.
    """
    env_dir = tmp_path / "fresh"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
    )
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    deps = sysconfig.get_paths()["purelib"]
    Path(site, "zz_deps.pth").write_text(deps + "\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run(
        [str(py), "-c", "import fairaudit; print(fairaudit.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        cwd=work,
        env=env,
    ).stdout.strip()
    assert where.startswith(str(env_dir)), where
    out = work / "out"
    proc = subprocess.run(
        [
            str(env_dir / "bin" / "fairaudit"),
            "audit",
            "--predictions",
            str(SAMPLE / "predictions.csv"),
            "--demographics",
            str(SAMPLE / "demographics.csv"),
            "--attribute",
            "race",
            "--bootstrap",
            "100",
            "--quiet",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=work,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<html" in html.lower() and "race" in html
    assert json.loads((out / "results.json").read_text())["schema_version"] == "2"


def _run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)


def test_help_does_not_import_torch_or_numpy() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from fairaudit.cli.main import app\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "r = CliRunner().invoke(app, ['audit', '--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(sorted(m for m in ('torch', 'numpy', 'pydicom', 'nibabel') if m in sys.modules))\n"
    )
    proc = _run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_predictions_audit_does_not_import_torch(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from fairaudit.cli.main import app\n"
        f"args = ['audit', '--predictions', {str(SAMPLE / 'predictions.csv')!r},"
        f" '--demographics', {str(SAMPLE / 'demographics.csv')!r}, '--attribute', 'sex',"
        f" '--bootstrap', '50', '--quiet', '--out', {str(tmp_path / 'o')!r}]\n"
        "r = CliRunner().invoke(app, args)\n"
        "assert r.exit_code == 0, r.output\n"
        "print('torch' in sys.modules, 'pydicom' in sys.modules, 'nibabel' in sys.modules)\n"
    )
    proc = _run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False False False"


def test_help_answers_in_under_a_second() -> None:
    exe = Path(sys.executable).with_name("fairaudit")
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
        best = min(best, time.perf_counter() - start)
        assert proc.returncode == 0
        assert "audit" in proc.stdout
    assert best < 1.0, f"fairaudit --help took {best:.2f} s"


def test_python_m_and_version() -> None:
    proc = subprocess.run([sys.executable, "-m", "fairaudit", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0
    from fairaudit import __version__

    assert proc.stdout.strip() == f"fairaudit {__version__}"
