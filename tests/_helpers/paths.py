"""Folders of the repository that the tests read."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_data"
EXAMPLE_POLICY = ROOT / "fairaudit" / "policies" / "example.toml"
