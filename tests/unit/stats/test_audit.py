"""run_audit's structure and reproducibility: references, small groups, prediction-only
mode, JSON output, seeds and worker processes."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import scipy.stats as sps
from sklearn.metrics import recall_score, roc_auc_score

import fairaudit.stats._resample as R
from fairaudit.stats import METRICS, RATE_METRICS, SCORE_METRICS, AuditConfig, run_audit
from fairaudit.stats._metrics import HIGHER_IS_BETTER


def make_data(sizes: dict[str, int], seed: int = 0, decimals: int | None = 2):
    rng = np.random.default_rng(seed)
    g = np.concatenate([[k] * v for k, v in sizes.items()])
    n = g.size
    y = (rng.random(n) < 0.4).astype(int)
    s = sps.norm.cdf(rng.standard_normal(n) + 1.0 * y)
    if decimals is not None:
        s = np.round(s, decimals)
    order = rng.permutation(n)
    return y[order], s[order], g[order]


def dumps(res) -> str:
    return json.dumps(res.to_dict(), allow_nan=False, sort_keys=True)


# --------------------------------------------------------------------------- references


def test_reference_is_largest_group_by_default() -> None:
    y, s, g = make_data({"b": 50, "a": 80, "c": 31})
    res = run_audit(y, s, {"grp": g}, AuditConfig(bootstrap=20))
    attr = res.attribute("grp")
    assert attr.reference == "a"
    assert {c.group for c in attr.comparisons} == {"b", "c"}
    assert all(c.reference == "a" for c in attr.comparisons)
    assert res.to_dict()["attributes"][0]["reference"] == "a"


def test_reference_tie_goes_to_first_sorted_name() -> None:
    y, s, g = make_data({"zeta": 60, "alpha": 60, "mid": 30})
    res = run_audit(y, s, {"grp": g}, AuditConfig(bootstrap=20))
    assert res.attribute("grp").reference == "alpha"


def test_reference_override_and_unknown_reference() -> None:
    y, s, g = make_data({"F": 90, "M": 60})
    y2, s2, race = y, s, np.where(np.arange(y.size) % 3 == 0, "x", "w")
    res = run_audit(y, s, {"sex": g, "race": race}, AuditConfig(bootstrap=20), references={"sex": "M"})
    assert res.attribute("sex").reference == "M"
    assert res.attribute("race").reference == "w"  # the default still applies elsewhere
    # Differences and ratios point the documented way: group minus / over reference.
    row = next(c for c in res.attribute("sex").comparisons if c.metric == "tpr")
    tpr = {k: recall_score(y[g == k], (s[g == k] >= 0.5).astype(int)) for k in ("F", "M")}
    assert row.group == "F" and row.reference == "M"
    assert row.difference.value == pytest.approx(tpr["F"] - tpr["M"], abs=1e-12)
    assert row.ratio.value == pytest.approx(tpr["F"] / tpr["M"], abs=1e-12)
    with pytest.raises(ValueError) as err:
        run_audit(y2, s2, {"sex": g}, AuditConfig(bootstrap=20), references={"sex": "X"})
    msg = str(err.value)
    assert "X" in msg and "F" in msg and "M" in msg and "sex" in msg


# --------------------------------------------------------------------------- small groups


def test_small_groups_threshold_is_strict() -> None:
    y, s, g = make_data({"big": 100, "edge": 30, "under": 29, "mid": 45})
    cfg = AuditConfig(bootstrap=30, min_group_size=30)
    res = run_audit(y, s, {"grp": g}, cfg)
    attr = res.attribute("grp")
    small = {gr.group: gr.small for gr in attr.groups}
    assert small == {"big": False, "edge": False, "under": True, "mid": False}
    d = res.to_dict()["attributes"][0]
    assert d["small_groups"] == ["under"]
    # A comparison is small by its metric's denominator (positives for tpr, negatives for
    # fpr, ...) in the group or the reference, not by the group's whole size.
    counts = {gr.group: (gr.n_positive, gr.n - gr.n_positive) for gr in attr.groups}
    for c in d["comparisons"]:
        pos = min(counts[c["group"]][0], counts["big"][0])
        neg = min(counts[c["group"]][1], counts["big"][1])
        if c["metric"] in ("tpr", "fnr"):
            assert ("note" in c) == (pos < 30)
        elif c["metric"] in ("tnr", "fpr"):
            assert ("note" in c) == (neg < 30)
        elif c["metric"] in ("accuracy", "brier", "prevalence"):
            assert ("note" in c) == (c["group"] == "under")
    # A small group's intervals are still shown.
    assert attr.group("under").metrics["accuracy"].ci is not None
    # Summaries leave out groups whose metric denominator is below 30: the range over the rest.
    size = {
        "tpr": lambda gr: gr.n_positive,
        "accuracy": lambda gr: gr.n,
        "auroc": lambda gr: min(gr.n_positive, gr.n - gr.n_positive),
    }
    for m in ("tpr", "accuracy", "auroc"):
        vals = {gr.group: gr.metrics[m].value for gr in attr.groups if size[m](gr) >= 30}
        if len(vals) < 2:
            assert attr.summary[m].max_difference.value is None
            continue
        assert attr.summary[m].max_difference.value == pytest.approx(max(vals.values()) - min(vals.values()))
        assert attr.summary[m].min_ratio.value == pytest.approx(min(vals.values()) / max(vals.values()))
        worst = min(vals, key=vals.get) if HIGHER_IS_BETTER[m] else max(vals, key=vals.get)
        assert attr.summary[m].worst_group == worst
    assert attr.summary["selection_rate"].worst_group is None
    # min_group_size 0: nothing is small.
    res0 = run_audit(y, s, {"grp": g}, AuditConfig(bootstrap=10, min_group_size=0))
    assert not any(gr.small for gr in res0.attribute("grp").groups)


# --------------------------------------------------------------------------- prediction-only


def test_prediction_only_mode() -> None:
    y, s, g = make_data({"A": 120, "B": 70})
    pred = (s >= 0.5).astype(float)
    res = run_audit(y, pred, {"grp": g}, AuditConfig(bootstrap=40), has_scores=False)
    d = json.loads(dumps(res))
    for block in [d["overall"]["metrics"]] + [gr["metrics"] for gr in d["attributes"][0]["groups"]]:
        assert set(block) == set(METRICS)
        for m in SCORE_METRICS:
            assert block[m]["value"] is None and block[m]["ci"] is None
            assert "score" in block[m]["reason"]
        for m in RATE_METRICS:
            assert block[m]["value"] is not None and block[m]["ci"] is not None, m
    a = res.attribute("grp")
    for name in ("A", "B"):
        mask = g == name
        assert a.group(name).metrics["tpr"].value == pytest.approx(
            recall_score(y[mask], pred[mask].astype(int))
        )
    assert {c.metric for c in a.comparisons} == set(RATE_METRICS)
    assert {o.metric for o in a.omnibus} <= set(RATE_METRICS)
    assert set(a.summary) == set(RATE_METRICS)
    # The same audit with scores gives the same rates.
    full = run_audit(y, s, {"grp": g}, AuditConfig(bootstrap=40))
    for m in RATE_METRICS:
        assert full.attribute("grp").group("B").metrics[m].value == pytest.approx(
            a.group("B").metrics[m].value
        )


# --------------------------------------------------------------------------- JSON


@pytest.mark.parametrize("ci_method", ["score", "exact", "percentile", "bca"])
def test_to_dict_is_strict_json(ci_method) -> None:
    y, s, g = make_data({"A": 90, "B": 40, "C": 12, "D": 8})
    y[g == "C"] = 0  # undefined tpr, auroc, auprc, ... in C
    y[g == "D"] = 1  # undefined tnr, fpr, auroc in D
    s[g == "D"] = 0.9  # all predicted positive: npv undefined
    cfg = AuditConfig(bootstrap=50, ci_method=ci_method, permutations=50)
    res = run_audit(y, s, {"grp": g, "pair": np.where(g == "A", "A", "rest")}, cfg)
    text = dumps(res)  # raises on NaN or infinity
    d = json.loads(text)
    assert d["config"] == {
        "bootstrap": 50,
        "ci_level": 0.95,
        "ci_method": ci_method,
        "seed": 0,
        "threshold": 0.5,
        "min_group_size": 30,
        "correction": "holm",
        # Raised so that 1 / (P + 1) passes Holm's first threshold: 4 pairs x 12 hypotheses
        # (15 metrics less fnr, tnr, prevalence) = 48 tests, P + 1 > 48 / 0.05.
        "permutations": 961,
        "permutations_requested": 50,
        "primary_metrics": [],
        "resampling_unit": "case",  # no clusters given: each case is drawn on its own
        "n_clusters": None,
    }
    assert d["overall"]["n"] == y.size
    grp = d["attributes"][0]
    assert [x["group"] for x in grp["groups"]] == ["A", "B", "C", "D"]
    for gr in grp["groups"]:
        assert gr["n"] == int(np.sum(g == gr["group"])) and gr["n_positive"] + gr["n_negative"] == gr["n"]
        for m, est in gr["metrics"].items():
            assert set(est) <= {"value", "ci", "reason", "method", "n"}
            if est["value"] is None:
                assert est["ci"] is None and est["reason"], (gr["group"], m)
            elif est["ci"] is not None:
                lo, hi = est["ci"]
                assert lo <= hi
    npv_d = next(x for x in grp["groups"] if x["group"] == "D")["metrics"]["npv"]
    assert npv_d["value"] is None and "predicted negatives" in npv_d["reason"]


# --------------------------------------------------------------------------- seeds and workers


def test_same_seed_same_numbers_other_seed_other_intervals() -> None:
    y, s, g = make_data({"A": 150, "B": 90, "C": 40}, decimals=None)
    cfg = AuditConfig(bootstrap=200, seed=7, ci_method="percentile")
    a = run_audit(y, s, {"grp": g}, cfg)
    b = run_audit(y, s, {"grp": g}, cfg)
    c = run_audit(y, s, {"grp": g}, replace(cfg, seed=8))
    assert dumps(a) == dumps(b)
    ga, gc = a.attribute("grp").group("B").metrics, c.attribute("grp").group("B").metrics
    for m in METRICS:
        assert ga[m].value == gc[m].value
    assert sum(ga[m].ci != gc[m].ci for m in METRICS) >= len(METRICS) - 2
    assert a.attribute("grp").comparisons[0].difference.ci != c.attribute("grp").comparisons[0].difference.ci


def _leaves(d, path=""):
    """Flatten a to_dict() tree to {path: leaf}."""
    if isinstance(d, dict):
        out = {}
        for k, v in d.items():
            out.update(_leaves(v, f"{path}/{k}"))
        return out
    if isinstance(d, list):
        out = {}
        for i, v in enumerate(d):
            out.update(_leaves(v, f"{path}[{i}]"))
        return out
    return {path: d}


def _worker_runs(monkeypatch, blas_threads: int | None) -> tuple[dict, dict, list]:
    """The same audit with FAIRAUDIT_WORKERS=1 and =2 (processes forced by a low threshold)."""
    from threadpoolctl import threadpool_limits

    pools: list = []

    class SpyPool(R.ProcessPoolExecutor):
        def __init__(self, *a, **k):
            pools.append(k.get("max_workers"))
            super().__init__(*a, **k)

    monkeypatch.setattr(R, "ProcessPoolExecutor", SpyPool)
    monkeypatch.setattr(R, "_PARALLEL_MIN_WORK", 1000)
    # Continuous scores on 2700 cases: the many-cells integer-draw path and the coarse grid.
    y, s, g = make_data({"A": 1500, "B": 900, "C": 300}, seed=3, decimals=None)
    attrs = {"grp": g, "half": np.where(np.arange(y.size) % 2 == 0, "e", "o")}
    cfg = AuditConfig(bootstrap=120, permutations=60, seed=5)
    out = {}
    with threadpool_limits(blas_threads):
        for w in ("1", "2"):
            monkeypatch.setenv("FAIRAUDIT_WORKERS", w)
            out[w] = run_audit(y, s, attrs, cfg).to_dict()
    return out["1"], out["2"], pools


def test_results_do_not_depend_on_worker_processes(monkeypatch) -> None:
    """FAIRAUDIT_WORKERS 1 vs 2: bit-for-bit the same results.json.

    The calling process runs two BLAS threads and the workers one: the numbers must not
    depend on how sums are split across threads either (the engine pins the resampling
    to one BLAS thread in both places).
    """
    from threadpoolctl import threadpool_info, threadpool_limits

    with threadpool_limits(2):
        if not any(i["internal_api"] == "openblas" and i["num_threads"] == 2 for i in threadpool_info()):
            pytest.skip("cannot run two BLAS threads here")
    one, two, pools = _worker_runs(monkeypatch, 2)
    assert pools == [2, 2]  # bootstrap and permutations in processes, only when workers=2
    a, b = _leaves(one), _leaves(two)
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []
    assert json.dumps(one, sort_keys=True) == json.dumps(two, sort_keys=True)


def test_many_distinct_scores_exact_points_and_centred_bootstrap() -> None:
    """Over RESAMPLE_GRID distinct scores resampling is binned; points stay exact and the
    bootstrap of AUROC stays centred with DeLong's spread."""
    y, s, g = make_data({"A": 3000, "B": 2500}, seed=9, decimals=None)
    res = run_audit(y, s, {"grp": g}, AuditConfig(bootstrap=400, permutations=20, seed=1))
    for name in ("A", "B"):
        m = g == name
        est = res.attribute("grp").group(name).metrics["auroc"]
        assert est.value == pytest.approx(roc_auc_score(y[m], s[m]), abs=1e-12)
        # DeLong's standard error by hand from the m x n kernel.
        xp, xn = s[m][y[m] == 1], s[m][y[m] == 0]
        psi = (xp[:, None] > xn[None, :]) + 0.5 * (xp[:, None] == xn[None, :])
        se = math.sqrt(np.var(psi.mean(1), ddof=1) / xp.size + np.var(psi.mean(0), ddof=1) / xn.size)
        lo, hi = est.ci
        assert (hi - lo) == pytest.approx(2 * 1.96 * se, rel=0.2)
        assert (lo + hi) / 2 == pytest.approx(est.value, abs=0.5 * se)
