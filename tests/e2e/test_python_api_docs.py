"""docs/python-api.md's examples run as they are (from a folder laid out like the repository)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from _helpers.paths import ROOT


def _examples() -> list[str]:
    text = (ROOT / "docs" / "python-api.md").read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_page_has_examples() -> None:
    assert len(_examples()) >= 4


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_examples_run_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "fairaudit").mkdir()
    (tmp_path / "sample_data").symlink_to(ROOT / "sample_data")
    (tmp_path / "fairaudit" / "policies").symlink_to(ROOT / "fairaudit" / "policies")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for i, code in enumerate(_examples()):
        exec(compile(code, f"docs/python-api.md example {i + 1}", "exec"), namespace)  # noqa: S102
    report = namespace["report"]
    assert report.by_group("race")["n"].sum() == report.data["inputs"]["n_included"]
    assert namespace["model_report"].data["model"]["name"] == "cxr_finding_classifier"
