"""Imports point one way: io -> cohort -> (preprocess | augment | models | stats) -> gate and
report -> workflows -> api -> cli (the layout in README.md, "For contributors"). A module may
import only the packages its layer lists; a new backward import fails the build here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "fairaudit"

BASE = {"errors", "_version", "_util", "cluster", "schema"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "_version": set(),
    "schema": {"_version"},
    "_util": {"errors", "_version"},
    "cluster": {"errors", "_util"},
    "io": BASE,
    "cohort": BASE | {"io"},
    "preprocess": BASE,
    "augment": BASE,
    "stats": BASE,
    "models": BASE | {"io", "preprocess"},
    "sample": BASE | {"io"},
    "train": BASE | {"io", "cohort", "preprocess", "augment", "models", "stats"},
    "gate": BASE | {"stats"},
    "report": BASE | {"stats"},
    "results": BASE | {"io", "cohort", "stats", "gate", "report"},
    "workflows": BASE
    | {"io", "cohort", "preprocess", "augment", "models", "stats", "train", "gate", "report", "results"},
    "api": BASE | {"io", "cohort", "stats", "gate", "report", "results", "workflows"},
    "cli": None,  # the top: may import anything
    "__main__": {"cli"},
    "__init__": BASE | {"api", "results"},
}


def _package(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "fairaudit":
            parts = node.module.split(".")
            found |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("fairaudit.")}
    return found


MODULES = sorted(ROOT.rglob("*.py"))


def test_every_package_has_a_layer() -> None:
    assert {_package(p) for p in MODULES} <= set(ALLOWED)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_one_way(path: Path) -> None:
    own = _package(path)
    allowed = ALLOWED[own]
    if allowed is None:
        return
    backward = sorted(_imports(path) - allowed - {own})
    assert not backward, (
        f"fairaudit/{path.relative_to(ROOT)} ({own}) imports {backward}: allowed {sorted(allowed)}"
    )
