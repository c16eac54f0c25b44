"""`--within COLUMN` (issue 21, point 6; docs/statistics.md, "Confounders"): on the sample
cohort, where race C is mostly imaged on the portable unit, race C's tpr gap shrinks within
site and the reports say so; the within p-values change nothing else; blank strata, a stratum
that is also audited and segmentation audits."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from fairaudit.report._templates import within_verdict
from fairaudit.schema import validate_results

from _helpers import cli
from _helpers.paths import SAMPLE


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text(encoding="utf-8"))


def test_race_c_gap_goes_with_site_and_the_report_says_so(tmp_path: Path) -> None:
    args = cli.sample_predictions_args("race")
    res = cli.audit(*args, "--within", "site", out=tmp_path / "w", bootstrap=200, workers=1, quiet=True)
    assert res.exit_code == 0, res.output
    crude = cli.audit(*args, out=tmp_path / "c", bootstrap=200, workers=1, quiet=True)
    assert crude.exit_code == 0, crude.output
    r, c = _results(tmp_path / "w"), _results(tmp_path / "c")
    validate_results(r)
    assert r["config"]["within"] == ["site"] and "within" not in c["config"]
    rows = {(x["group"], x["metric"]): x for x in r["attributes"][0]["comparisons"]}
    tpr = rows[("C", "tpr")]
    within = tpr["within"]
    assert within["strata"] == ["site"] and within["n_strata"] == 3
    assert within["difference"]["method"] == "mantel_haenszel_sato"
    # Recomputed from sample_data by hand: tpr at 0.5 of C 19/44 = 0.432 against A 71/82 = 0.866,
    # -0.434 crude; within site (C against A) fixed_1 2/2 vs 28/31, fixed_2 2/2 vs 41/45,
    # portable 15/40 vs 2/6: the Mantel-Haenszel difference (Sato weights n_g n_r / n) is +0.063.
    assert tpr["difference"]["value"] == pytest.approx(19 / 44 - 71 / 82, abs=1e-9)
    w = [2 * 31 / 33, 2 * 45 / 47, 40 * 6 / 46]
    d = [1 - 28 / 31, 1 - 41 / 45, 15 / 40 - 2 / 6]
    assert within["difference"]["value"] == pytest.approx(
        sum(a * b for a, b in zip(w, d, strict=True)) / sum(w), abs=1e-9
    )
    assert abs(within["difference"]["value"]) < abs(tpr["difference"]["value"]) / 2
    assert within["n_strata_used"] == 3
    # A sensitivity analysis: everything but `within` as without --within (no family moved).
    plain = {(x["group"], x["metric"]): x for x in c["attributes"][0]["comparisons"]}
    assert all({k: v for k, v in row.items() if k != "within"} == plain[key] for key, row in rows.items())
    assert r["consistency"] == c["consistency"]

    md = (tmp_path / "w" / "report.md").read_text(encoding="utf-8")
    line = next(x for x in md.splitlines() if x.startswith("- race C vs A, tpr:"))
    assert "crude;" in line and "within site (Mantel–Haenszel" in line
    assert line.endswith("most of the gap goes with site.")
    assert "**Within site**" in md and "outside the correction" in md
    html = (tmp_path / "w" / "report.html").read_text(encoding="utf-8")
    assert "Within site</h3>" in html and "most of the gap goes with site" in html
    assert "Sato" in html and "Cochran-Mantel-Haenszel" in html
    crude_md = (tmp_path / "c" / "report.md").read_text(encoding="utf-8")
    # (the regulatory appendix may suggest `--within site`; no within-stratum analysis is shown)
    assert (
        "**Within" not in crude_md and "- Within:" not in crude_md and "within each stratum" not in crude_md
    )


def test_a_blank_site_leaves_the_within_analysis_only(tmp_path: Path) -> None:
    demo = pd.read_csv(SAMPLE / "demographics.csv", dtype=str, keep_default_na=False)
    demo.loc[:9, "site"] = ""
    path = tmp_path / "demographics.csv"
    demo.to_csv(path, index=False)
    res = cli.audit(
        "--predictions", SAMPLE / "predictions.csv", "--demographics", path, "--attribute", "race",
        "--within", "site", out=tmp_path / "out", bootstrap=100, workers=1, quiet=True,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    r = _results(tmp_path / "out")
    assert r["inputs"]["missing_strata"] == {"site": 10} and r["overall"]["n"] == len(demo)
    assert {g["group"]: g["n"] for g in r["attributes"][0]["groups"]} == demo["race"].value_counts().to_dict()
    acc = next(
        x for x in r["attributes"][0]["comparisons"] if x["group"] == "B" and x["metric"] == "accuracy"
    )
    groups = demo["race"].isin(["A", "B"])
    assert acc["within"]["difference"]["n"] == int((groups & (demo["site"] != "")).sum())


def test_usage_errors_name_the_flag(tmp_path: Path) -> None:
    res = cli.audit(*cli.sample_predictions_args("race", "site"), "--within", "site", out=tmp_path / "a")
    assert res.exit_code == 2 and "--within site: site is also audited" in cli.flat(res.output)
    res = cli.audit(
        "--task", "segmentation", "--masks", tmp_path, "--pred-masks", tmp_path, "--demographics",
        SAMPLE / "demographics.csv", "--attribute", "race", "--within", "site", out=tmp_path / "b",
    )  # fmt: skip
    assert res.exit_code == 2 and "--within is available for classification audits only" in cli.flat(
        res.output
    )
    res = cli.audit(*cli.sample_predictions_args("race"), "--within", "scanner", out=tmp_path / "c")
    assert res.exit_code == 2 and "Pass --within with one of the columns listed" in cli.flat(res.output)
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


def test_the_verdict_in_plain_words() -> None:
    def est(value: float | None, lo: float = -1.0, hi: float = -0.01) -> dict:
        return {"value": value, "ci": None if value is None else [lo, hi]}

    gap = est(-0.5, -0.7, -0.3)
    assert within_verdict(gap, est(-0.05, -0.2, 0.1), "site") == "most of the gap goes with site"
    assert within_verdict(gap, est(-0.3, -0.5, -0.1), "site") == "part of the gap goes with site"
    assert within_verdict(gap, est(-0.45), "site") == "the gap holds within site: it does not go with site"
    assert within_verdict(est(-0.2), est(-0.4), "site") == "the gap is larger within site"
    assert within_verdict(est(-0.2), est(0.2, 0.01, 0.4), "site") == "the gap reverses within site"
    assert (
        within_verdict(est(0.03, -0.2, 0.2), est(-0.03, -0.2, 0.1), "site")
        == "no clear gap, crude or within site"
    )
    assert within_verdict(gap, est(None), "site").startswith(
        "no stratum of site holds the cases the metric needs in both groups"
    )


def test_the_python_api_takes_within() -> None:
    import fairaudit

    report = fairaudit.audit(
        pd.read_csv(SAMPLE / "predictions.csv"), demographics=pd.read_csv(SAMPLE / "demographics.csv"),
        attributes="race", within="site", bootstrap=100, workers=1,
    )  # fmt: skip
    data = report.to_dict()
    assert data["config"]["within"] == ["site"]
    assert all(c["within"]["strata"] == ["site"] for c in data["attributes"][0]["comparisons"])
    table = report.comparisons()
    row = table[(table["group"] == "C") & (table["metric"] == "tpr")].iloc[0]
    # With patients (patient_id), the CMH statistic is over the design effect when it exceeds 1.
    assert row["within_difference_method"] == "mantel_haenszel_sato"
    assert row["within_test"] in ("cochran_mantel_haenszel", "cochran_mantel_haenszel_rao_scott")
    assert abs(row["within_difference"]) < abs(row["difference"])
