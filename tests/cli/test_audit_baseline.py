"""`--baseline-predictions` end to end: the paired comparison, the manifest and the gate rule."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from fairaudit.schema import validate_results

from _helpers import cli
from _helpers.tables import write_csv


def _cohort(tmp_path: Path, widen: float) -> tuple[Path, Path, Path]:
    """400 cases, groups A/B; the new model misses `widen` more of B's positives' score."""
    rng = np.random.default_rng(11)
    n = 400
    y = rng.integers(0, 2, n)
    grp = np.where(np.arange(n) % 2 == 0, "A", "B")
    base = np.clip(0.55 * y + rng.normal(0.22, 0.15, n), 0, 1).round(4)
    new = base.copy()
    hurt = (grp == "B") & (y == 1)
    new[hurt] = np.clip(new[hurt] - widen, 0, 1).round(4)
    ids = [f"case{i:04d}" for i in range(n)]

    preds = write_csv(tmp_path / "new.csv", ["id", "label", "score"], zip(ids, y, new, strict=True))
    # The baseline file misses one audited case and has one extra row: both must be accounted for.
    base_rows = [*zip(ids[1:], base[1:], strict=True), ("not-audited", 0.5)]
    baseline = write_csv(tmp_path / "old.csv", ["id", "score"], base_rows)
    demo = write_csv(tmp_path / "demo.csv", ["id", "group"], zip(ids, grp, strict=True))
    return preds, baseline, demo, y, new, base, grp


def _base_args(preds: Path, demo: Path) -> list[str]:
    return [
        "--predictions",
        str(preds),
        "--demographics",
        str(demo),
        "--attribute",
        "group",
        "--id-column",
        "id",
    ]


def _run(tmp_path: Path, preds: Path, baseline: Path, demo: Path, policy: str | None = None):
    args = _base_args(preds, demo)
    args += [
        "--baseline-predictions",
        str(baseline),
        "--reference",
        "group=A",
        "--format",
        "html,md,json,junit",
    ]
    if policy is not None:
        path = tmp_path / "policy.toml"
        path.write_text(policy, encoding="utf-8")
        args += ["--gate", str(path)]
    return cli.audit(*args, bootstrap=300, quiet=True, out=tmp_path / "out", columns=None)


def test_baseline_section_values_tests_and_manifest(tmp_path):
    preds, baseline, demo, y, new, base, grp = _cohort(tmp_path, widen=0.3)
    res = _run(tmp_path, preds, baseline, demo)
    assert res.exit_code == 0, res.output
    out = tmp_path / "out"
    results = json.loads((out / "results.json").read_text())
    validate_results(results)
    section = results["baseline"]
    assert section["n_matched"] == 399 and section["n_unmatched"] == 1
    b = next(g for g in section["attributes"][0]["groups"] if g["group"] == "B")["metrics"]["tpr"]
    keep = np.arange(len(y)) >= 1
    pos_b = keep & (grp == "B") & (y == 1)
    # Values by hand; McNemar as the exact binomial test on the discordant positives (scipy).
    assert b["new"] == pytest.approx(np.mean(new[pos_b] >= 0.5))
    assert b["baseline"] == pytest.approx(np.mean(base[pos_b] >= 0.5))
    nb = int(((new[pos_b] >= 0.5) & (base[pos_b] < 0.5)).sum())
    bn = int(((new[pos_b] < 0.5) & (base[pos_b] >= 0.5)).sum())
    assert b["p_value"] == pytest.approx(sps.binomtest(nb, nb + bn, 0.5).pvalue)
    assert b["disparity_increase"]["ci"][0] > 0
    manifest = list(csv.DictReader((out / "manifest.csv").open()))
    old_rows = [r for r in manifest if r["source"] == "old.csv"]
    assert len(old_rows) == 400  # every row of the baseline file
    assert sum(r["status"] == "excluded" for r in old_rows) == 1
    assert "Release comparison" in (out / "report.md").read_text()
    assert "Release comparison" in (out / "report.html").read_text()


def test_gate_max_disparity_increase_fails_a_widened_gap_and_passes_an_unchanged_one(tmp_path):
    policy = '[gate]\nmetrics = ["tpr", "auroc"]\nmax_disparity_increase = 0.02\n'
    preds, baseline, demo, *_ = _cohort(tmp_path, widen=0.3)
    res = _run(tmp_path, preds, baseline, demo, policy)
    assert res.exit_code == 1, res.output
    gate = json.loads((tmp_path / "out" / "results.json").read_text())["gate"]
    failed = [c for c in gate["checks"] if c["status"] == "fail"]
    assert {(c["rule"], c["group"]) for c in failed} == {("max_disparity_increase", "B")}
    junit = (tmp_path / "out" / "junit.xml").read_text()
    assert "max_disparity_increase" in junit and "<failure" in junit

    same = tmp_path / "same"
    same.mkdir()
    preds, baseline, demo, *_ = _cohort(same, widen=0.0)
    res = _run(same, preds, baseline, demo, policy)
    assert res.exit_code == 0, res.output
    gate = json.loads((same / "out" / "results.json").read_text())["gate"]
    assert all(c["status"] == "pass" for c in gate["checks"])


def test_policy_rule_without_a_baseline_is_inconclusive_not_a_silent_pass(tmp_path):
    preds, _, demo, *_ = _cohort(tmp_path, widen=0.0)
    policy = tmp_path / "p.toml"
    policy.write_text(
        '[gate]\nmetrics = ["tpr"]\nmax_disparity_increase = 0.02\ndecide = "evidence_of_fairness"\n'
    )
    args = [*_base_args(preds, demo), "--gate", str(policy)]
    res = cli.audit(*args, bootstrap=100, quiet=True, out=tmp_path / "o", columns=None)
    assert res.exit_code == 1, res.output
    checks = json.loads((tmp_path / "o" / "results.json").read_text())["gate"]["checks"]
    assert checks[-1]["status"] == "inconclusive" and "baseline" in checks[-1]["observed"]["reason"]


def test_baseline_without_the_id_column_is_a_clear_error(tmp_path):
    preds, _, demo, *_ = _cohort(tmp_path, widen=0.0)
    bad = tmp_path / "bad.csv"
    bad.write_text("patient,score\nx,0.5\n")
    res = _run(tmp_path, preds, bad, demo)
    assert res.exit_code == 2
    assert "bad.csv" in res.output and "id" in res.output
