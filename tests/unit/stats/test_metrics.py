"""Point metrics and closed-form jackknife values of the stats engine, against independent answers.

Every expectation here comes from scikit-learn, fairlearn or a hand-written loop over the
definitions in docs/statistics.md ("Metrics"), never from the engine itself.
Undefined values: NaN in `MetricKernel`, null with a reason in `run_audit(...).to_dict()`.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from fairaudit.stats import METRICS, RATE_METRICS, SCORE_METRICS, AuditConfig, run_audit
from fairaudit.stats._analytic import RATIO_METRICS
from fairaudit.stats._cells import make_cells
from fairaudit.stats._metrics import MetricKernel

from _helpers.stats import hand_sq_ce

TOL = 1e-9


# --------------------------------------------------------------------------- references


def hand_ece(scores: np.ndarray, labels: np.ndarray) -> float:
    """ECE by a plain loop: 10 bins [k/10, (k+1)/10), the last closed at 1.0."""
    n = len(scores)
    if n == 0:
        return math.nan
    total = 0.0
    for k in range(10):
        lo, hi = k / 10, (k + 1) / 10
        members = [i for i in range(n) if lo <= scores[i] < hi or (k == 9 and scores[i] == 1.0)]
        if not members:
            continue
        mean_s = sum(scores[i] for i in members) / len(members)
        mean_y = sum(labels[i] for i in members) / len(members)
        total += len(members) / n * abs(mean_s - mean_y)
    return total


def reference_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """Every metric from scikit-learn (and the hand ECE), NaN where docs/statistics.md says undefined."""
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels, dtype=int)
    pred = (scores >= threshold).astype(int)
    n = labels.size
    has_pos = bool(np.any(labels == 1))
    has_neg = bool(np.any(labels == 0))
    nan = math.nan
    out: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["tpr"] = (
            recall_score(labels, pred, labels=[0, 1], pos_label=1, zero_division=nan) if has_pos else nan
        )
        out["fnr"] = 1.0 - out["tpr"]
        out["tnr"] = (
            recall_score(labels, pred, labels=[0, 1], pos_label=0, zero_division=nan) if has_neg else nan
        )
        out["fpr"] = 1.0 - out["tnr"]
        out["ppv"] = (
            precision_score(labels, pred, labels=[0, 1], pos_label=1, zero_division=nan)
            if pred.any()
            else nan
        )
        out["npv"] = (
            precision_score(labels, pred, labels=[0, 1], pos_label=0, zero_division=nan)
            if (pred == 0).any()
            else nan
        )
        out["selection_rate"] = float(pred.mean()) if n else nan
        out["prevalence"] = float(labels.mean()) if n else nan
        out["accuracy"] = accuracy_score(labels, pred) if n else nan
        out["balanced_accuracy"] = balanced_accuracy_score(labels, pred) if has_pos and has_neg else nan
        out["auroc"] = roc_auc_score(labels, scores) if has_pos and has_neg else nan
        out["auprc"] = average_precision_score(labels, scores) if has_pos else nan
        out["brier"] = brier_score_loss(labels, scores, pos_label=1) if n else nan
    out["ece"] = hand_ece(scores, labels)
    out["squared_calibration_error"] = hand_sq_ce(scores, labels)
    return {k: float(v) for k, v in out.items()}


def assert_metrics_equal(got: dict[str, float], want: dict[str, float], metrics, context="") -> None:
    for m in metrics:
        g, w = got[m], want[m]
        if math.isnan(w):
            assert math.isnan(g), f"{context}{m}: expected undefined (NaN), got {g}"
        else:
            assert g == pytest.approx(w, abs=TOL, rel=0), f"{context}{m}: got {g}, expected {w}"


def kernel_point(scores, labels, threshold, with_scores=True) -> dict[str, float]:
    cells = make_cells(np.asarray(scores, dtype=float), np.asarray(labels, dtype=int))
    return MetricKernel(cells.u, threshold, with_scores).point(cells.pos, cells.neg)


# --------------------------------------------------------------------------- data

EDGE_SCORES = np.array([0.0, 0.1, 0.3, 0.7, 1.0, 0.5, 0.2, 0.9, 0.6, 0.4, 0.8])


def tied_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores on a 0.1 grid (heavy ties, many exactly on the ECE bin edges and on 0.5)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(int)
    s = np.clip(np.round(rng.beta(2 + 2 * y, 3 - y) * 10) / 10, 0.0, 1.0)
    # Literal edge values, so k/10 comparisons are exercised on the exact floats users write.
    s[: EDGE_SCORES.size] = EDGE_SCORES
    return s, y


def continuous_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    s = rng.beta(2 + 3 * y, 4 - y)
    return s, y


DATASETS = {
    "ties_n150": tied_data(150, 1),
    "ties_n37": tied_data(37, 2),
    "continuous_n300": continuous_data(300, 3),
    "edges_only": (
        np.array([0.0, 0.0, 0.1, 0.1, 0.3, 0.3, 0.5, 0.5, 0.7, 0.7, 1.0, 1.0, 0.99, 0.05]),
        np.array([0, 1, 0, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1, 0]),
    ),
}


# --------------------------------------------------------------------------- kernel point metrics


@pytest.mark.parametrize("threshold", [0.5, 0.3, 0.7, 0.0, 1.0])
@pytest.mark.parametrize("name", sorted(DATASETS))
def test_kernel_point_metrics_equal_sklearn(name: str, threshold: float) -> None:
    s, y = DATASETS[name]
    got = kernel_point(s, y, threshold)
    assert set(got) == set(METRICS)
    assert_metrics_equal(got, reference_metrics(s, y, threshold), METRICS, f"{name} t={threshold}: ")


def test_threshold_is_inclusive() -> None:
    """prediction = score >= threshold: a score exactly at the threshold is a positive call."""
    s = np.array([0.5, 0.5, 0.4, 0.6, 0.49999999])
    y = np.array([1, 0, 1, 0, 0])
    got = kernel_point(s, y, 0.5)
    # TP = 1 (0.5), FN = 1 (0.4), FP = 2 (0.5, 0.6), TN = 1 (0.49999999)
    assert got["tpr"] == pytest.approx(0.5)
    assert got["fpr"] == pytest.approx(2 / 3)
    assert got["selection_rate"] == pytest.approx(3 / 5)
    assert got["ppv"] == pytest.approx(1 / 3)
    assert got["npv"] == pytest.approx(1 / 2)


def test_ece_bin_edges_by_hand() -> None:
    """Scores exactly at 0.0, 0.1, 0.3, 0.7 and 1.0 land in the bins docs/statistics.md names."""
    # One case per score, so each bin's |mean s - mean y| is computed by hand below.
    s = np.array([0.0, 0.1, 0.3, 0.7, 1.0, 0.95, 0.29999999])
    y = np.array([0, 1, 1, 0, 1, 1, 0])
    # bins: [0,.1): {0.0 y0} -> 0 ; [.1,.2): {0.1 y1} -> .9 ; [.2,.3): {.29999999 y0} -> .29999999
    #       [.3,.4): {0.3 y1} -> .7 ; [.7,.8): {0.7 y0} -> .7 ; [.9,1.0]: {1.0 y1, .95 y1} -> |.975-1|
    expected = (0 + 0.9 + 0.29999999 + 0.7 + 0.7 + 2 * 0.025) / 7
    assert hand_ece(s, y) == pytest.approx(expected, abs=1e-12)
    assert kernel_point(s, y, 0.5)["ece"] == pytest.approx(expected, abs=TOL)


def test_single_class_group_kernel() -> None:
    """One class only: auroc, balanced_accuracy undefined; auprc undefined without positives."""
    s = np.array([0.1, 0.4, 0.4, 0.8, 0.6])
    neg_only = kernel_point(s, np.zeros(5, int), 0.5)
    pos_only = kernel_point(s, np.ones(5, int), 0.5)
    for m in ("auroc", "balanced_accuracy", "auprc", "tpr", "fnr"):
        assert math.isnan(neg_only[m]), m
    for m in ("auroc", "balanced_accuracy", "tnr", "fpr"):
        assert math.isnan(pos_only[m]), m
    # Defined ones still equal scikit-learn.
    assert_metrics_equal(neg_only, reference_metrics(s, np.zeros(5, int), 0.5), METRICS)
    assert_metrics_equal(pos_only, reference_metrics(s, np.ones(5, int), 0.5), METRICS)
    assert pos_only["auprc"] == pytest.approx(1.0)


def test_prediction_only_kernel_has_only_rates() -> None:
    s, y = tied_data(80, 9)
    pred = (s >= 0.5).astype(float)
    got = kernel_point(pred, y, 0.5, with_scores=False)
    assert set(got) == set(RATE_METRICS)
    assert_metrics_equal(got, reference_metrics(s, y, 0.5), RATE_METRICS)


# --------------------------------------------------------------------------- group level via run_audit


def grouped_data(seed: int = 11):
    """Three groups of unequal size and one all-negative group (for undefined metrics)."""
    rng = np.random.default_rng(seed)
    sizes = {"A": 160, "B": 70, "C": 33, "D": 12}
    groups, ss, ys = [], [], []
    for gi, (g, n) in enumerate(sizes.items()):
        s, y = tied_data(n, seed + gi) if g != "B" else continuous_data(n, seed + gi)
        if g == "D":
            y = np.zeros(n, int)
        groups += [g] * n
        ss.append(s)
        ys.append(y)
    order = rng.permutation(sum(sizes.values()))
    return (
        np.concatenate(ss)[order],
        np.concatenate(ys)[order],
        np.array(groups)[order],
    )


@pytest.fixture(scope="module")
def grouped_audit():
    s, y, g = grouped_data()
    cfg = AuditConfig(bootstrap=60, seed=5, min_group_size=30)
    return s, y, g, run_audit(y, s, {"site": g}, cfg)


def test_run_audit_group_values_equal_sklearn(grouped_audit) -> None:
    s, y, g, res = grouped_audit
    attr = res.attribute("site")
    assert sorted(gr.group for gr in attr.groups) == ["A", "B", "C", "D"]
    for gr in attr.groups:
        mask = g == gr.group
        want = reference_metrics(s[mask], y[mask], 0.5)
        got = {m: (e.value if e.value is not None else math.nan) for m, e in gr.metrics.items()}
        assert_metrics_equal(got, want, METRICS, f"group {gr.group}: ")
        assert gr.n == int(mask.sum())
        assert gr.n_positive == int(y[mask].sum())
    overall = {m: (e.value if e.value is not None else math.nan) for m, e in res.overall.items()}
    assert_metrics_equal(overall, reference_metrics(s, y, 0.5), METRICS, "overall: ")


def test_run_audit_undefined_is_null_with_reason(grouped_audit) -> None:
    *_, res = grouped_audit
    d = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    site = d["attributes"][0]
    grp = next(x for x in site["groups"] if x["group"] == "D")  # no positives
    for m in ("auroc", "auprc", "balanced_accuracy", "tpr", "fnr"):
        est = grp["metrics"][m]
        assert est["value"] is None and est["ci"] is None, m
        assert isinstance(est.get("reason"), str) and est["reason"], m
    for m in ("tnr", "fpr", "accuracy", "brier", "ece"):
        assert grp["metrics"][m]["value"] is not None, m
    # A comparison with an undefined side is null with a reason, and its test too.
    row = next(c for c in site["comparisons"] if c["group"] == "D" and c["metric"] == "auroc")
    assert row["difference"]["value"] is None and row["difference"]["reason"]
    assert row["p_value"] is None and row["reason"]


def test_run_audit_positive_only_group() -> None:
    """All-positive group: auroc and balanced_accuracy null, auprc defined (= 1)."""
    s, y = tied_data(120, 4)
    g = np.array(["big"] * 120 + ["pos"] * 15)
    s = np.concatenate([s, np.linspace(0.05, 0.95, 15)])
    y = np.concatenate([y, np.ones(15, int)])
    res = run_audit(y, s, {"g": g}, AuditConfig(bootstrap=40, seed=1))
    m = res.attribute("g").group("pos").metrics
    assert m["auroc"].value is None and m["auroc"].reason
    assert m["balanced_accuracy"].value is None and m["balanced_accuracy"].reason
    assert m["tnr"].value is None and m["fpr"].value is None
    assert m["auprc"].value == pytest.approx(1.0, abs=TOL)
    want = reference_metrics(s[g == "pos"], y[g == "pos"], 0.5)
    assert m["brier"].value == pytest.approx(want["brier"], abs=TOL)
    assert m["ece"].value == pytest.approx(want["ece"], abs=TOL)


# --------------------------------------------------------------------------- fairlearn MetricFrame


def test_group_values_match_fairlearn_metricframe(grouped_audit) -> None:
    from fairlearn.metrics import (
        MetricFrame,
        false_negative_rate,
        false_positive_rate,
        selection_rate,
        true_negative_rate,
    )

    s, y, g, res = grouped_audit
    keep = g != "D"  # fairlearn's rate helpers warn or return 0 where undefined
    s, y, g = s[keep], y[keep], g[keep]
    pred = (s >= 0.5).astype(int)
    rate_mf = MetricFrame(
        metrics={
            "tpr": recall_score,
            "ppv": precision_score,
            "accuracy": accuracy_score,
            "balanced_accuracy": balanced_accuracy_score,
            "selection_rate": selection_rate,
            "fpr": false_positive_rate,
            "fnr": false_negative_rate,
            "tnr": true_negative_rate,
        },
        y_true=y,
        y_pred=pred,
        sensitive_features=g,
    )
    score_mf = MetricFrame(
        metrics={"auroc": roc_auc_score, "auprc": average_precision_score, "brier": brier_score_loss},
        y_true=y,
        y_pred=s,
        sensitive_features=g,
    )
    attr = res.attribute("site")
    for mf in (rate_mf, score_mf):
        by_group = mf.by_group
        for name in ("A", "B", "C"):
            est = attr.group(name).metrics
            for m in by_group.columns:
                assert est[m].value == pytest.approx(float(by_group.loc[name, m]), abs=TOL), (name, m)
        # Differences and ratios against the reference (the largest group, A).
        assert attr.reference == "A"
        for c in attr.comparisons:
            if c.group in ("B", "C") and c.metric in by_group.columns:
                vg, vr = by_group.loc[c.group, c.metric], by_group.loc["A", c.metric]
                assert c.difference.value == pytest.approx(vg - vr, abs=TOL)
                if c.metric in RATIO_METRICS:
                    assert c.ratio.value == pytest.approx(vg / vr, abs=TOL)
                else:  # no ratio of error magnitudes near 0 (brier, ece) or of auprc
                    assert c.ratio.value is None and "ratio" in c.ratio.reason


def test_summary_matches_fairlearn_between_groups() -> None:
    """max_difference / min_ratio over the groups equal MetricFrame.difference() / ratio()."""
    from fairlearn.metrics import MetricFrame, selection_rate

    s, y, g = grouped_data(21)
    keep = g != "D"
    s, y, g = s[keep], y[keep], g[keep]
    res = run_audit(y, s, {"site": g}, AuditConfig(bootstrap=30, seed=2, min_group_size=0))
    mf = MetricFrame(
        metrics={
            "tpr": recall_score,
            "accuracy": accuracy_score,
            "selection_rate": selection_rate,
            "auroc": roc_auc_score,
            "brier": brier_score_loss,
        },
        y_true=y,
        y_pred=(s >= 0.5).astype(int),
        sensitive_features=g,
    )
    # Score metrics need the scores; recompute those with y_pred = s.
    mf_s = MetricFrame(
        metrics={"auroc": roc_auc_score, "brier": brier_score_loss},
        y_true=y,
        y_pred=s,
        sensitive_features=g,
    )
    diff = mf.difference(method="between_groups")
    ratio = mf.ratio(method="between_groups")
    diff[["auroc", "brier"]] = mf_s.difference(method="between_groups")
    ratio[["auroc", "brier"]] = mf_s.ratio(method="between_groups")
    summary = res.attribute("site").summary
    for m in diff.index:
        assert summary[m].max_difference.value == pytest.approx(float(diff[m]), abs=TOL), m
        if m in RATIO_METRICS:
            assert summary[m].min_ratio.value == pytest.approx(float(ratio[m]), abs=TOL), m
        else:
            assert summary[m].min_ratio.value is None


# --------------------------------------------------------------------------- closed-form jackknife


def loo_index(cells, scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Position in `leave_one_out`'s output of each case's (cell, label) entry.

    The kernel documents its order: all (cell, label 0) entries, then all (cell, label 1),
    cells ascending, entries with zero multiplicity left out.
    """
    k = cells.u.size
    keep = np.concatenate([cells.neg, cells.pos]) > 0
    pos_of = np.cumsum(keep) - 1
    t = np.searchsorted(cells.u, scores)
    return pos_of[labels * k + t]


def check_loo(scores, labels, threshold, reference) -> None:
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels, dtype=int)
    cells = make_cells(scores, labels)
    kernel = MetricKernel(cells.u, threshold, True)
    loo, w = kernel.leave_one_out(cells.pos, cells.neg)
    assert set(loo) == set(METRICS)
    assert w.sum() == labels.size
    idx = loo_index(cells, scores, labels)
    # Multiplicities: how many cases share each (cell, label).
    assert np.array_equal(np.bincount(idx, minlength=w.size), w)
    for i in range(labels.size):
        keep = np.arange(labels.size) != i
        want = reference(scores[keep], labels[keep], threshold)
        got = {m: float(loo[m][idx[i]]) for m in METRICS}
        assert_metrics_equal(got, want, METRICS, f"leave out case {i} (s={scores[i]}, y={labels[i]}): ")


@pytest.mark.parametrize(
    "scores,labels",
    [
        DATASETS["edges_only"],
        tied_data(40, 8),
        continuous_data(25, 8),
        # Few positives: leaving one out makes tpr/auroc/auprc undefined for some rows.
        (np.array([0.2, 0.5, 0.5, 0.9, 0.1, 0.5, 0.3]), np.array([0, 1, 0, 0, 0, 0, 0])),
        (np.array([0.2, 0.5, 0.5, 0.9, 0.1, 0.5, 0.3]), np.array([0, 1, 0, 1, 0, 1, 0])),
    ],
    ids=["edges", "ties40", "continuous25", "one_positive", "ties_at_threshold"],
)
def test_leave_one_out_equals_brute_force_sklearn(scores, labels) -> None:
    check_loo(scores, labels, 0.5, reference_metrics)


def _fresh_kernel(scores, labels, threshold):
    return kernel_point(scores, labels, threshold)


SCORE_GRID = [0.0, 0.1, 0.25, 0.3, 0.5, 0.7, 0.9, 1.0]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.lists(st.tuples(st.sampled_from(SCORE_GRID), st.integers(0, 1)), min_size=2, max_size=14),
    threshold=st.sampled_from([0.0, 0.3, 0.5, 0.7, 1.0]),
)
def test_leave_one_out_property(data, threshold) -> None:
    """Closed-form jackknife == recomputation on fresh cells with the case deleted."""
    scores = np.array([d[0] for d in data])
    labels = np.array([d[1] for d in data])
    check_loo(scores, labels, threshold, _fresh_kernel)


@settings(max_examples=40, deadline=None)
@given(
    data=st.lists(st.tuples(st.sampled_from(SCORE_GRID), st.integers(0, 1)), min_size=1, max_size=20),
    threshold=st.sampled_from([0.0, 0.3, 0.5, 1.0]),
)
def test_kernel_point_property_vs_sklearn(data, threshold) -> None:
    scores = np.array([d[0] for d in data])
    labels = np.array([d[1] for d in data])
    assert_metrics_equal(
        kernel_point(scores, labels, threshold), reference_metrics(scores, labels, threshold), METRICS
    )


def test_batch_evaluate_equals_rowwise_point() -> None:
    """evaluate() on a batch gives, row by row, the metrics of each count vector."""
    s, y = tied_data(60, 13)
    cells = make_cells(s, y)
    kernel = MetricKernel(cells.u, 0.5, True)
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(5):
        idx = rng.integers(0, y.size, y.size)
        rows.append((s[idx], y[idx]))
    pos = np.zeros((5, cells.k))
    neg = np.zeros((5, cells.k))
    for r, (ss, yy) in enumerate(rows):
        t = np.searchsorted(cells.u, ss)
        np.add.at(pos[r], t[yy == 1], 1)
        np.add.at(neg[r], t[yy == 0], 1)
    batch = kernel.evaluate(pos, neg)
    for r, (ss, yy) in enumerate(rows):
        got = {m: float(batch[m][r]) for m in METRICS}
        assert_metrics_equal(got, reference_metrics(ss, yy, 0.5), METRICS, f"row {r}: ")


def test_score_metrics_listed() -> None:
    assert set(SCORE_METRICS) == {"auroc", "auprc", "brier", "ece", "squared_calibration_error"}
    assert set(RATE_METRICS) | set(SCORE_METRICS) == set(METRICS)


def test_kernel_batches_with_and_without_sorted_scores_match_hand_ece_and_brier() -> None:
    """The kernel sums ECE bins as runs of ascending scores (no dense cells x bins matrix);
    a kernel on unsorted scores takes the other path. Both give the loop's ECE and Brier for
    every resample, including bins left empty between filled ones."""
    rng = np.random.default_rng(3)
    u = np.sort(np.concatenate([rng.uniform(0.0, 0.25, 30), rng.uniform(0.6, 1.0, 30), [1.0]]))
    pos = rng.integers(0, 4, size=(5, u.size)).astype(float)
    neg = rng.integers(0, 4, size=(5, u.size)).astype(float)
    shuffle = rng.permutation(u.size)
    for kernel, p, q in (
        (MetricKernel(u, 0.5, True), pos, neg),
        (MetricKernel(u[shuffle], 0.5, True), pos[:, shuffle], neg[:, shuffle]),
    ):
        got = kernel.evaluate(p, q)
        for r in range(pos.shape[0]):
            scores = np.concatenate([np.repeat(u, pos[r].astype(int)), np.repeat(u, neg[r].astype(int))])
            labels = np.concatenate([np.ones(int(pos[r].sum())), np.zeros(int(neg[r].sum()))])
            assert got["ece"][r] == pytest.approx(hand_ece(scores, labels), abs=1e-12)
            assert got["brier"][r] == pytest.approx(brier_score_loss(labels, scores), abs=1e-12)


# --------------------------------------------------------------------------- auroc of score columns


def test_auroc_of_score_columns_matches_sklearn_and_the_kernel() -> None:
    """stats' `auroc` (augment-check's, over many score columns) is the kernel's AUROC exactly."""
    from fairaudit.stats._metrics import auroc

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 50)
    s = np.round(rng.random((50, 3)), 1)  # ties
    for k in range(3):
        assert auroc(y, s[:, k]) == pytest.approx(roc_auc_score(y, s[:, k]), abs=TOL)
        cells = make_cells(s[:, k], y)
        kernel = MetricKernel(cells.u, 0.5, with_scores=True)
        assert auroc(y, s[:, k]) == kernel.point(cells.pos, cells.neg)["auroc"]  # bit for bit
    np.testing.assert_allclose(auroc(y, s), [roc_auc_score(y, s[:, k]) for k in range(3)], atol=TOL)
    assert np.isnan(auroc(np.ones(5), rng.random(5)))
    assert np.isnan(auroc(np.zeros(5), rng.random((5, 2)))).all()
