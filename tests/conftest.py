"""Fixtures shared by every test folder (unit/, cli/, e2e/).

Plain helpers (running the CLI, writing CSV and DICOM inputs, a hand-built results.json) are
in tests/_helpers/ and imported as `_helpers.<module>`; pyproject.toml puts tests/ on sys.path.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def make_cohort(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """`make_cohort(n, size, seed)`: a fresh folder holding `fairaudit sample-data`'s synthetic
    cohort (images/, masks/, demographics.csv, labels.csv, predictions.csv)."""
    from fairaudit.sample.cohort import generate_cohort

    def make(n: int, size: int, seed: int, name: str = "cohort") -> Path:
        root = tmp_path_factory.mktemp(name)
        generate_cohort(root, n=n, size=size, seed=seed)
        return root

    return make
