"""Missing values per analysis (issue 21, point 9): a record missing one attribute leaves
only the analyses that use it. Counted by hand on the sample cohort with sex blanked for 31
records (the issue's example: race A stayed at 144 only if sex was not needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from _helpers import cli

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"


def _blank_sex(tmp: Path, k: int = 31) -> tuple[Path, pd.DataFrame]:
    demo = pd.read_csv(SAMPLE / "demographics.csv", dtype=str, keep_default_na=False)
    rows = np.random.default_rng(0).choice(len(demo), k, replace=False)
    demo.loc[rows, "sex"] = ""
    path = tmp / "demographics.csv"
    demo.to_csv(path, index=False)
    return path, demo


def test_a_missing_sex_leaves_only_the_sex_analyses(tmp_path: Path) -> None:
    path, demo = _blank_sex(tmp_path)
    res = cli.audit(
        "--predictions", SAMPLE / "predictions.csv", "--demographics", path, "--attribute", "sex",
        "--attribute", "race", "--intersect", "sex,race", "--discover", "--discover-top", "50",
        out=tmp_path / "out", bootstrap=200, quiet=True,
    )  # fmt: skip
    assert res.exit_code in (0, 1), res.output
    r = json.loads((tmp_path / "out" / "results.json").read_text())
    blank = demo["sex"] == ""
    assert r["inputs"]["n_included"] == len(demo) and r["overall"]["n"] == len(demo)
    assert r["inputs"]["missing_attributes"] == {"sex": 31, "sex×race": 31}
    by = {a["name"]: a for a in r["attributes"]}
    race_n = {g["group"]: g["n"] for g in by["race"]["groups"]}
    assert race_n == demo["race"].value_counts().to_dict()  # A: 144 with or without a sex
    assert race_n["A"] == 144
    sex_n = {g["group"]: g["n"] for g in by["sex"]["groups"]}
    assert sex_n == demo.loc[~blank, "sex"].value_counts().to_dict()
    both = demo.loc[~blank, "sex"] + "×" + demo.loc[~blank, "race"]
    assert {g["group"]: g["n"] for g in by["sex×race"]["groups"]} == both.value_counts().to_dict()
    assert by["sex"]["n_missing"] == 31 and "n_missing" not in by["race"]
    # Discovery: no slice of records without a sex, and a sex slice's rest has a sex.
    slices = r["discovered"]["slices"]
    assert all("\x00" not in s["slice"] for s in slices)
    for s in slices:
        if [c["attribute"] for c in s["conditions"]] == ["sex"]:
            assert s["n"] + s["n_rest"] == int((~blank).sum())
    manifest = pd.read_csv(tmp_path / "out" / "manifest.csv", dtype=str, keep_default_na=False)
    notes = manifest[manifest["reason"] == "not in: sex groups (missing sex)"]
    assert len(notes) == 31 and set(notes["status"]) == {"included"}
