"""Import a script of benchmarks/ as a module, for the tests that run a fast subset of it."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from _helpers.paths import ROOT

BENCHMARKS = ROOT / "benchmarks"


def load(name: str) -> ModuleType:
    """benchmarks/NAME.py as a module (each call a fresh one)."""
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
