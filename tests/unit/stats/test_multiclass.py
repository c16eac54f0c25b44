"""The multi-class statistics (fairaudit.stats._multiclass) and class resolution
(fairaudit.cohort.classes) against scikit-learn and simulation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from fairaudit.cohort.classes import check_sums, class_key, resolve_classes
from fairaudit.errors import InputError
from fairaudit.io.tables import read_header
from fairaudit.stats._audit import AuditConfig
from fairaudit.stats._multiclass import (
    _macro,
    _placements,
    _Records,
    _weighted_auroc,
    accuracy_audit,
    predicted_class,
    run_multiclass,
)


def _data(n: int, k: int, seed: int, signal: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), y] += signal
    p = np.exp(logits)
    return y, p / p.sum(axis=1, keepdims=True)


def test_ties_go_to_the_class_listed_first() -> None:
    p = np.array([[0.4, 0.4, 0.2], [0.2, 0.4, 0.4], [1 / 3, 1 / 3, 1 / 3], [0.1, 0.2, 0.7]])
    assert predicted_class(p).tolist() == [0, 1, 0, 2]


def test_weighted_metrics_match_sklearn_sample_weight() -> None:
    """A bootstrap replicate is the records under integer weights: sklearn's sample_weight."""
    y, p = _data(200, 4, seed=1)
    pred = predicted_class(p)
    w = np.random.default_rng(2).integers(0, 4, (3, y.size)).astype(float)
    got = _macro(_Records(y, pred, p, np.arange(y.size)), w, 4)
    for r in range(3):
        assert got["balanced_accuracy"][r] == pytest.approx(
            balanced_accuracy_score(y, pred, sample_weight=w[r])
        )
        aucs = [roc_auc_score(y == j, p[:, j], sample_weight=w[r]) for j in range(4)]
        assert got["macro_auroc"][r] == pytest.approx(np.mean(aucs))
    ties = np.round(p[:, 0], 1)  # many tied scores: ties count a half, as in sklearn
    assert _weighted_auroc(ties, y == 0, w)[0] == pytest.approx(
        roc_auc_score(y == 0, ties, sample_weight=w[0])
    )


def test_seeded_and_reproducible() -> None:
    y, p = _data(90, 3, seed=3)
    sex = np.where(np.arange(90) % 3 == 0, "F", "M")
    cfg = AuditConfig(bootstrap=30, seed=7, ci_method="percentile")  # the bootstrap draws
    a = run_multiclass(y, p, {"sex": sex}, cfg, classes=["a", "b", "c"]).to_dict()
    b = run_multiclass(y, p, {"sex": sex}, cfg, classes=["a", "b", "c"]).to_dict()
    assert a == b
    c = run_multiclass(
        y, p, {"sex": sex}, AuditConfig(bootstrap=30, seed=8, ci_method="percentile"), classes=["a", "b", "c"]
    ).to_dict()
    assert c["overall"]["metrics"]["macro_auroc"]["ci"] != a["overall"]["metrics"]["macro_auroc"]["ci"]


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_a_class_missing_from_a_group() -> None:
    """A group without class c: its tpr for c is undefined, balanced accuracy averages the
    classes the group holds (scikit-learn's convention); nothing is NaN in the output."""
    y, p = _data(240, 3, seed=4)
    sex = np.where(np.arange(240) < 120, "F", "M")
    y[(sex == "F") & (y == 2)] = 0
    res = run_multiclass(y, p, {"sex": sex}, AuditConfig(bootstrap=30), classes=["a", "b", "c"])
    d = res.to_dict()
    f = next(g for g in d["attributes"][0]["groups"] if g["group"] == "F")
    m = sex == "F"
    assert f["metrics"]["balanced_accuracy"]["value"] == pytest.approx(
        balanced_accuracy_score(y[m], predicted_class(p[m]))
    )
    block = d["multiclass"]["per_class"][2]["attributes"][0]["groups"]
    assert next(g for g in block if g["group"] == "F")["metrics"]["tpr"]["value"] is None
    assert d["multiclass"]["confusion"]["attributes"][0]["groups"][0]["normalized"][2] == [None] * 3


def test_accuracy_interval_exact_coverage_small_group() -> None:
    """The accuracy interval of a group of 40 records without patients, for every count of
    correct records, and its exact coverage (binomial probabilities, scipy) over accuracies
    0.50-0.95: on average at the level, never far below it (score intervals dip near some p)."""
    from scipy.stats import binom

    n = 40
    y = np.zeros(n, dtype=np.int64)
    cis = []
    for x in range(n + 1):
        pred = np.where(np.arange(n) < x, 0, 1)
        cis.append(
            accuracy_audit(y, pred, {"g": np.full(n, "a")}, AuditConfig(bootstrap=1)).overall["accuracy"].ci
        )
    lo, hi = np.array(cis).T
    xs = np.arange(n + 1)
    grid = np.linspace(0.5, 0.95, 46)
    coverage = np.array([binom.pmf(xs, n, p)[(lo <= p) & (p <= hi)].sum() for p in grid])
    assert coverage.mean() >= 0.945 and coverage.min() >= 0.92


def _accuracy_coverage(reps: int, n: int, seed: int) -> float:
    """Share of `reps` groups of `n` records in patients of two (sharing their outcome half the
    time) whose accuracy interval, patients as the unit, holds the true accuracy 0.8."""
    rng = np.random.default_rng(seed)
    k, truth = 3, 0.8
    cfg = AuditConfig(bootstrap=1)
    patients = np.arange(n) // 2
    hits = 0
    for _ in range(reps):
        y = rng.integers(0, k, n)
        right = rng.random(n) < truth
        right = np.where(rng.random(n // 2)[patients] < 0.5, right[patients * 2], right)
        pred = np.where(right, y, (y + rng.integers(1, k, n)) % k)
        est = accuracy_audit(y, pred, {"g": np.full(n, "a")}, cfg, clusters=patients).overall["accuracy"]
        hits += est.ci[0] <= truth <= est.ci[1]
    return hits / reps


def test_accuracy_interval_coverage_with_patients() -> None:
    """Fast subset of benchmarks/coverage.py --multiclass-reps: 100 groups of 40 records in 20
    patients (the bound is three Monte Carlo standard errors below 0.95)."""
    assert _accuracy_coverage(100, 40, seed=11) >= 0.88


@pytest.mark.slow
def test_accuracy_interval_coverage_with_patients_full() -> None:
    assert _accuracy_coverage(2000, 40, seed=12) >= 0.93


# ----------------------------------------------------------------------------- which classes


def _csv(tmp: Path, name: str, frame: pd.DataFrame) -> Path:
    path = tmp / name
    frame.to_csv(path, index=False)
    return path


def test_integer_labels_and_prefixed_columns(tmp_path: Path) -> None:
    pred = read_header(
        _csv(
            tmp_path,
            "p.csv",
            pd.DataFrame({"id": [1, 2], "score_0": [0.2, 0.5], "score_1": [0.3, 0.1], "prob_2": [0.5, 0.4]}),
        )
    )
    lab = read_header(_csv(tmp_path, "l.csv", pd.DataFrame({"id": [1, 2], "y": ["2", "0.0"]})))
    classes = resolve_classes(lab, "y", pred, {})
    assert [(c.name, c.score) for c in classes] == [("0", "score_0"), ("1", "score_1"), ("2", "prob_2")]
    assert class_key("2.0") == class_key("2") and class_key("Normal") == class_key("normal")


def test_classes_from_labels_with_columns_named_like_them(tmp_path: Path) -> None:
    pred = read_header(
        _csv(tmp_path, "p.csv", pd.DataFrame({"id": [1, 2], "dog": [0.2, 0.5], "cat": [0.8, 0.5]}))
    )
    lab = read_header(_csv(tmp_path, "l.csv", pd.DataFrame({"id": [1, 2], "y": ["dog", "cat"]})))
    assert [c.name for c in resolve_classes(lab, "y", pred, {})] == ["cat", "dog"]
    lab = read_header(_csv(tmp_path, "l2.csv", pd.DataFrame({"id": [1, 2], "y": ["dog", "bird"]})))
    with pytest.raises(InputError, match="no probability column for class 'bird'"):
        resolve_classes(lab, "y", pred, {})


def test_sums_checked_with_percent_scale(tmp_path: Path) -> None:
    pred = read_header(_csv(tmp_path, "p.csv", pd.DataFrame({"score_a": [20, 50], "score_b": [80, 50]})))
    classes = resolve_classes(pred, "label", pred, {})
    check_sums(pred, classes, percent=True)
    pred = read_header(_csv(tmp_path, "q.csv", pd.DataFrame({"score_a": [0.2, 0.5], "score_b": [0.8, 0.6]})))
    with pytest.raises(InputError, match="row 3: the probabilities of the 2 classes"):
        check_sums(pred, classes, percent=False)


def test_two_classes_reduce_to_the_binary_audit() -> None:
    """With two classes, balanced accuracy (and its MOVER interval, difference and inverted
    test) and macro fpr are the binary engine's balanced accuracy and mean of fpr and fnr."""
    from fairaudit.stats._audit import run_audit

    rng = np.random.default_rng(9)
    n = 300
    y = rng.integers(0, 2, n)
    s = np.clip(0.5 + (y - 0.5) * 0.4 + rng.normal(0, 0.25, n), 0.001, 0.999)
    s[np.isclose(s, 0.5)] = 0.51
    sex = rng.choice(["F", "M"], n)
    cfg = AuditConfig(bootstrap=20)
    binary = run_audit(y, s, {"sex": sex}, cfg).to_dict()
    multi = run_multiclass(y, np.c_[1 - s, s], {"sex": sex}, cfg, classes=["0", "1"]).to_dict()
    b, m = binary["overall"]["metrics"], multi["overall"]["metrics"]
    assert m["balanced_accuracy"]["value"] == pytest.approx(b["balanced_accuracy"]["value"])
    np.testing.assert_allclose(m["balanced_accuracy"]["ci"], b["balanced_accuracy"]["ci"])
    assert m["macro_fpr"]["value"] == pytest.approx((b["fpr"]["value"] + b["fnr"]["value"]) / 2)
    cb = next(c for c in binary["attributes"][0]["comparisons"] if c["metric"] == "balanced_accuracy")
    cm = next(c for c in multi["attributes"][0]["comparisons"] if c["metric"] == "balanced_accuracy")
    np.testing.assert_allclose(cm["difference"]["ci"], cb["difference"]["ci"])
    assert cm["difference"]["value"] == pytest.approx(cb["difference"]["value"])


def test_placements_are_delong() -> None:
    """The per-class AUROC and its influences: scikit-learn's AUROC, and DeLong's variance
    (var(V10) / n_pos + var(V01) / n_neg, population variances) as their sum of squares."""
    rng = np.random.default_rng(13)
    score = np.round(rng.random(80), 1)  # ties count a half
    positive = rng.random(80) < 0.4
    a, infl = _placements(score, positive)
    assert a == pytest.approx(roc_auc_score(positive, score))
    pos, neg = score[positive], score[~positive]
    v10 = np.array([np.mean((neg < s) + 0.5 * (neg == s)) for s in pos])
    v01 = np.array([np.mean((pos > s) + 0.5 * (pos == s)) for s in neg])
    assert float(infl @ infl) == pytest.approx(v10.var() / pos.size + v01.var() / neg.size)
