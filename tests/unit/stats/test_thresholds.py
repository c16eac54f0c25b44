"""Threshold policies against scikit-learn's ROC and precision-recall curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, precision_recall_curve, roc_curve

from fairaudit.schema import validate_results
from fairaudit.stats._thresholds import (
    ThresholdPolicyError,
    choose_threshold,
    parse_policy,
)
from fairaudit.workflows.thresholds import read_calibration_set

from _helpers import cli
from _helpers.paths import SAMPLE


def _data(seed: int, n: int = 300, discrete: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.35).astype(int)
    s = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.3 * y - 0.5)))
    if discrete:
        s = np.round(s, 1)  # many ties
    return y, s


@pytest.mark.parametrize(("seed", "discrete"), [(0, False), (1, False), (2, True), (3, True)])
def test_youden_is_argmax_of_roc(seed, discrete):
    y, s = _data(seed, discrete=discrete)
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    j = tpr - fpr
    i = int(np.argmax(j[1:])) + 1  # index 0 is sklearn's +inf threshold
    choice = choose_threshold(y, s, "youden")
    assert choice.threshold == pytest.approx(thr[i])
    assert choice.youden_j == pytest.approx(j.max())
    # The default (drop_intermediate=True) curve reaches the same maximum.
    fpr2, tpr2, _ = roc_curve(y, s)
    assert choice.youden_j == pytest.approx((tpr2 - fpr2).max())


@pytest.mark.parametrize(("seed", "discrete"), [(0, False), (4, False), (5, True)])
def test_f1_is_argmax_of_precision_recall_curve(seed, discrete):
    y, s = _data(seed, discrete=discrete)
    precision, recall, thr = precision_recall_curve(y, s)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)[:-1]
    best = f1.max()
    choice = choose_threshold(y, s, "f1")
    assert choice.f1 == pytest.approx(best)
    # Ties go to the largest threshold (thresholds increase in sklearn's output).
    assert choice.threshold == pytest.approx(thr[np.flatnonzero(np.isclose(f1, best))].max())
    assert f1_score(y, (s >= choice.threshold).astype(int)) == pytest.approx(best)


@pytest.mark.parametrize("target", [0.5, 0.8, 0.9, 1.0])
def test_sensitivity_picks_largest_threshold_reaching_it(target):
    y, s = _data(6)
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    ok = tpr >= target
    choice = choose_threshold(y, s, f"sensitivity={target}")
    assert choice.threshold == pytest.approx(thr[ok].max())
    pred = s >= choice.threshold
    assert pred[y == 1].mean() >= target
    # Any larger score threshold misses the target.
    larger = np.unique(s[s > choice.threshold])
    if larger.size:
        assert (s[y == 1] >= larger.min()).mean() < target


@pytest.mark.parametrize("target", [0.5, 0.8, 0.95])
def test_specificity_picks_smallest_threshold_reaching_it(target):
    y, s = _data(7, discrete=True)
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    ok = (1 - fpr) >= target
    choice = choose_threshold(y, s, f"specificity={target}")
    assert choice.threshold == pytest.approx(thr[ok][np.isfinite(thr[ok])].min())
    assert (s[y == 0] < choice.threshold).mean() >= target


def test_hand_computed_small_case():
    y = np.array([0, 0, 1, 1, 0, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.7, 0.9])
    # Thresholds (desc): 0.9 (tp1 fp0), 0.8 (2,0), 0.7 (2,1), 0.4 (2,2), 0.35 (3,2), 0.1 (3,3).
    # J: 1/3, 2/3, 1/3, 0, 1/3, 0 -> 0.8.  F1 = 2tp/(2tp+fp+fn): .5, .8, 2/3, .571, .75, .667 -> 0.8.
    assert choose_threshold(y, s, "youden").threshold == 0.8
    assert choose_threshold(y, s, "f1").threshold == 0.8
    assert choose_threshold(y, s, "sensitivity=1").threshold == 0.35
    assert choose_threshold(y, s, "specificity=1").threshold == 0.8
    assert choose_threshold(y, s, "specificity=0.6").threshold == 0.7


def test_bad_policies():
    for text in ("median", "youden=1", "sensitivity", "sensitivity=0", "specificity=1.5", "f1=x"):
        with pytest.raises(ThresholdPolicyError):
            parse_policy(text)
    assert str(parse_policy(" Sensitivity = 0.8 ")) == "sensitivity=0.8"
    with pytest.raises(ThresholdPolicyError, match="both positive and negative"):
        choose_threshold(np.ones(5), np.linspace(0, 1, 5), "youden")
    with pytest.raises(ThresholdPolicyError, match="no score threshold"):
        choose_threshold(np.array([0, 1, 0]), np.array([0.9, 0.9, 0.1]), "specificity=1")


def test_read_calibration_set(tmp_path):
    path = tmp_path / "cal.csv"
    path.write_text("id,label,score\na,1,0.9\nb,0,0.2\nc,,0.5\nd,1,\n", encoding="utf-8")
    y, s = read_calibration_set(path, "label", "score")
    assert y.tolist() == [1, 0] and s.tolist() == [0.9, 0.2]


# ----------------------------------------------------------------------------- in an audit


def _audit(tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / "out"
    res = cli.audit(*cli.sample_predictions_args("race"), "--format", "json", *extra,
                    bootstrap=50, workers=1, quiet=True, out=out, columns=None)  # fmt: skip
    assert res.exit_code == 0, res.output
    return cli.read_results(out)


def test_audit_with_youden_policy_records_the_threshold(tmp_path):
    r = _audit(tmp_path, "--threshold-policy", "youden")
    validate_results(r)
    preds = pd.read_csv(SAMPLE / "predictions.csv")
    fpr, tpr, thr = roc_curve(preds["label"], preds["score"], drop_intermediate=False)
    expected = thr[int(np.argmax((tpr - fpr)[1:])) + 1]
    cfg = r["config"]
    assert cfg["threshold"] == pytest.approx(expected)
    assert cfg["threshold_policy"] == "youden"
    assert cfg["threshold_selection"]["chosen_on"] == "audited set"
    # The chosen threshold is the one every group's rates use: overall tpr at that threshold.
    y, s = preds["label"].to_numpy(), preds["score"].to_numpy()
    assert r["overall"]["metrics"]["tpr"]["value"] == pytest.approx((s[y == 1] >= expected).mean())


def test_audit_with_calibration_set(tmp_path):
    preds = pd.read_csv(SAMPLE / "predictions.csv")
    cal = tmp_path / "cal.csv"
    preds.iloc[:100].to_csv(cal, index=False)
    r = _audit(tmp_path, "--threshold-policy", "sensitivity=0.8", "--calibration-set", str(cal))
    _, tpr, thr = roc_curve(preds["label"][:100], preds["score"][:100], drop_intermediate=False)
    assert r["config"]["threshold"] == pytest.approx(thr[tpr >= 0.8].max())
    assert r["config"]["threshold_selection"]["chosen_on"] == "calibration set cal.csv"
    assert r["config"]["threshold_policy"] == "sensitivity=0.8"


def test_fixed_threshold_is_recorded_as_fixed(tmp_path):
    r = _audit(tmp_path, "--threshold", "0.4")
    assert r["config"]["threshold"] == 0.4 and r["config"]["threshold_policy"] == "fixed"
    assert "threshold_selection" not in r["config"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--threshold-policy", "median"], "youden, f1"),
        (["--calibration-set", "x.csv"], "needs --threshold-policy"),
    ],
)
def test_policy_usage_errors(tmp_path, extra, message):
    res = cli.audit(*cli.sample_predictions_args("race"), *extra, out=tmp_path / "o", columns=None)
    assert res.exit_code == 2
    assert message in cli.flat(res.output)
