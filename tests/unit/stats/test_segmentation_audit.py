"""Per-group statistics of segmentation metrics, checked against scipy/statsmodels/numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.oneway import anova_oneway

from fairaudit.schema import validate_results
from fairaudit.stats import AuditConfig
from fairaudit.stats._segmentation import SEGMENTATION_METRICS
from fairaudit.stats._segmentation_audit import run_segmentation_audit


def _cohort(seed: int = 0):
    """Three groups; C segments worse (lower dice, larger distances); B small (n = 12)."""
    rng = np.random.default_rng(seed)
    sizes = {"A": 80, "B": 12, "C": 60}
    group = np.concatenate([[g] * n for g, n in sizes.items()])
    shift = np.where(group == "C", -0.08, 0.0)
    dice = np.clip(rng.normal(0.9, 0.04, group.size) + shift, 0, 1)
    iou = dice / (2 - dice)
    hd95 = rng.gamma(4.0, 1.5, group.size) * np.where(group == "C", 1.8, 1.0)
    assd = hd95 * 0.4
    vol = rng.normal(-0.02, 0.1, group.size) + shift
    hd95[:3] = np.nan  # three cases with an empty predicted mask in A
    assd[:3] = np.nan
    sex = np.where(rng.random(group.size) < 0.5, "F", "M")
    nsd = np.clip(dice + rng.normal(0.02, 0.03, group.size), 0, 1)
    values = {"dice": dice, "iou": iou, "hd95": hd95, "assd": assd, "volume_error": vol, "nsd": nsd}
    reasons = {m: ["empty predicted mask" if (m in ("hd95", "assd") and i < 3) else "" for i in range(group.size)]
               for m in SEGMENTATION_METRICS}  # fmt: skip
    return values, {"group": group, "sex": sex}, reasons


def _results_dict(result) -> dict:
    body = result.to_dict()
    return {
        "schema_version": "1",
        "fairaudit_version": "test",
        "created": "2026-01-01T00:00:00Z",
        "task": body["task"],
        "config": body["config"],
        "inputs": {"n_records": body["overall"]["n"], "n_included": body["overall"]["n"], "excluded": []},
        "model": None,
        "overall": body["overall"],
        "attributes": body["attributes"],
        "gate": None,
    }


@pytest.fixture(scope="module")
def audited():
    values, attrs, reasons = _cohort()
    cfg = AuditConfig(bootstrap=1000, seed=3, min_group_size=30)
    return values, attrs, run_segmentation_audit(values, attrs, cfg, reasons=reasons)


def test_group_means_tests_and_correction(audited):
    values, attrs, result = audited
    att = result.attribute("group")
    assert att.reference == "A"  # the largest group
    for g in att.groups:
        sel = attrs["group"] == g.group
        for m in SEGMENTATION_METRICS:
            assert g.metrics[m].value == pytest.approx(np.nanmean(values[m][sel]))
            assert g.n_defined[m] == int(np.isfinite(values[m][sel]).sum())
        assert g.small == (sel.sum() < 30)
    ref = attrs["group"] == "A"
    for c in att.comparisons:
        sel = attrs["group"] == c.group
        x, y = values[c.metric][sel], values[c.metric][ref]
        x, y = x[np.isfinite(x)], y[np.isfinite(y)]
        # The permutation test of the mean difference against scipy's, within Monte Carlo error.
        assert c.test == "permutation"
        ref_p = sps.permutation_test(
            (x, y), lambda a, b, axis: a.mean(axis=axis) - b.mean(axis=axis), vectorized=True,
            n_resamples=20_000, alternative="two-sided", random_state=np.random.default_rng(1),
        ).pvalue  # fmt: skip
        n_perm = result.config["permutations"]
        tol = 4 * np.sqrt(max(ref_p * (1 - ref_p), 1e-4) * (1 / n_perm + 1 / 20_000)) + 1e-3
        assert abs(c.p_value - ref_p) <= tol, (c.metric, c.group, c.p_value, ref_p)
        assert c.difference.value == pytest.approx(x.mean() - y.mean())
        if c.metric == "volume_error":
            assert c.ratio.value is None and "signed" in c.ratio.reason
        else:
            assert c.ratio.value == pytest.approx(x.mean() / y.mean())
        assert c.small == (c.group == "B")
    for o in att.omnibus:
        samples = [values[o.metric][attrs["group"] == g] for g in ("A", "B", "C")]
        samples = [s[np.isfinite(s)] for s in samples]
        assert o.test == "welch_anova"
        assert o.p_value == pytest.approx(anova_oneway(samples, use_var="unequal").pvalue)
    # One family over every comparison of every attribute, Holm.
    rows = [c for _, c in result.comparisons()]
    adjusted = multipletests([c.p_value for c in rows], alpha=0.05, method="holm")[1]
    assert [c.p_adjusted for c in rows] == pytest.approx(list(adjusted))
    assert all(c.significant == (c.p_adjusted < 0.05) for c in rows)


def test_summary_and_fairness_measures(audited):
    values, attrs, result = audited
    att = result.attribute("group")
    means = {g: np.nanmean(values["dice"][attrs["group"] == g]) for g in ("A", "C")}  # B is small
    s = att.summary["dice"]
    assert s.max_difference.value == pytest.approx(abs(means["A"] - means["C"]))
    assert s.min_ratio.value == pytest.approx(min(means.values()) / max(means.values()))
    assert s.worst_group == "C"
    assert att.summary["hd95"].worst_group == "C"  # higher is worse
    assert att.summary["volume_error"].worst_group is None
    seg = att.segmentation_summary
    assert seg["groups"] == ["A", "C"]
    ser = (1 - min(means.values())) / (1 - max(means.values()))
    assert seg["skewed_error_ratio"]["value"] == pytest.approx(ser)
    assert seg["sd_group_means"]["value"] == pytest.approx(np.std(list(means.values())))
    lo, hi = seg["skewed_error_ratio"]["ci"]
    assert lo < ser < hi


def test_intervals_against_normal_theory(audited):
    """The percentile interval of a mean is close to mean ± 1.96 SE for n = 80."""
    values, attrs, result = audited
    x = values["dice"][attrs["group"] == "A"]
    se = x.std(ddof=1) / math.sqrt(x.size)
    lo, hi = result.attribute("group").group("A").metrics["dice"].ci
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert lo < x.mean() < hi


def test_distributions_and_schema(audited):
    values, attrs, result = audited
    g = result.attribute("group").group("C")
    dist = g.to_dict()["distributions"]["dice"]
    x = values["dice"][attrs["group"] == "C"]
    counts, edges = np.histogram(x, bins=20, range=(x.min(), x.max()))  # the data's own range
    assert dist["counts"] == counts.tolist() and dist["edges"] == pytest.approx(edges.tolist())
    assert dist["quantiles"]["0.5"] == pytest.approx(np.median(x))
    validate_results(_results_dict(result))


def test_undefined_everywhere_gives_null_with_reason():
    values, attrs, reasons = _cohort()
    sel = attrs["group"] == "B"
    values["hd95"][sel] = np.nan
    for i in np.flatnonzero(sel):
        reasons["hd95"][i] = "empty predicted mask"
    result = run_segmentation_audit(values, attrs, AuditConfig(bootstrap=200), reasons=reasons)
    b = result.attribute("group").group("B").metrics["hd95"]
    assert b.value is None and "empty predicted mask: 12" in b.reason
    comp = next(c for c in result.attribute("group").comparisons if c.group == "B" and c.metric == "hd95")
    assert comp.difference.value is None and comp.p_value is None and comp.reason


def test_seeded_and_bca():
    values, attrs, reasons = _cohort(1)
    a = run_segmentation_audit(values, attrs, AuditConfig(bootstrap=300, seed=5)).to_dict()
    b = run_segmentation_audit(values, attrs, AuditConfig(bootstrap=300, seed=5)).to_dict()
    c = run_segmentation_audit(values, attrs, AuditConfig(bootstrap=300, seed=6)).to_dict()
    assert a == b and a != c
    bca = run_segmentation_audit(values, attrs, AuditConfig(bootstrap=2000, seed=5, ci_method="bca"))
    x = values["dice"][attrs["group"] == "A"]
    res = sps.bootstrap((x,), np.mean, n_resamples=2000, method="BCa", random_state=0)
    lo, hi = bca.attribute("group").group("A").metrics["dice"].ci
    assert lo == pytest.approx(res.confidence_interval.low, abs=0.004)
    assert hi == pytest.approx(res.confidence_interval.high, abs=0.004)


def test_reference_and_unknown_reference():
    values, attrs, _ = _cohort()
    res = run_segmentation_audit(values, attrs, AuditConfig(bootstrap=50), references={"group": "C"})
    assert res.attribute("group").reference == "C"
    with pytest.raises(ValueError, match="no such group"):
        run_segmentation_audit(values, attrs, AuditConfig(bootstrap=50), references={"group": "Z"})


def test_permutation_mean_test_has_its_size_and_finds_a_shift() -> None:
    """Under equal populations p < 0.05 about 5% of the time (skewed, Dice-like values);
    a real shift of the mean is found."""
    from fairaudit.stats._segmentation_audit import permutation_mean_test

    rng = np.random.default_rng(0)
    null = [
        permutation_mean_test(1 - rng.beta(1, 12, 15), 1 - rng.beta(1, 12, 60), 199, rng).p_value
        for _ in range(400)
    ]
    rate = float(np.mean(np.array(null) < 0.05))
    assert 0.025 <= rate <= 0.08, rate  # binomial SD at 400 reps: 0.011
    shifted = permutation_mean_test(1 - rng.beta(1, 12, 60) - 0.05, 1 - rng.beta(1, 12, 60), 999, rng)
    assert shifted.p_value < 0.01


def test_segmentation_permutations_raised_for_the_first_threshold() -> None:
    from fairaudit.stats._segmentation_audit import segmentation_permutations

    cfg = AuditConfig(bootstrap=50, seed=0)
    # 4 pairs x 6 metrics (nsd the sixth) = 24 tests in one family: P + 1 > 24 / 0.05 = 480.
    assert segmentation_permutations(cfg, 4) == 481
    assert segmentation_permutations(AuditConfig(bootstrap=50, correction="none"), 4) == 50
    primary = AuditConfig(bootstrap=50, primary_metrics=("dice",))
    assert segmentation_permutations(primary, 4) == 401  # exploratory: 4 x 5 = 20 tests


def test_es_dice_by_hand_and_its_interval_against_an_independent_bootstrap(audited):
    """ES-Dice (FairSeg) = overall / (1 + sum |group - overall|) over the groups of adequate
    size (A and C; B is small), overall = the mean Dice of their cases; the percentile
    interval close to that of a separate bootstrap of the same formula (other draws)."""
    values, attrs, result = audited
    es = result.attribute("group").segmentation_summary["es_dice"]
    sel = {g: attrs["group"] == g for g in ("A", "C")}
    dice = {g: values["dice"][s] for g, s in sel.items()}
    overall = np.concatenate(list(dice.values())).mean()
    expected = overall / (1 + sum(abs(d.mean() - overall) for d in dice.values()))
    assert es["overall_dice"] == pytest.approx(overall)
    assert es["value"] == pytest.approx(expected)
    rng = np.random.default_rng(2024)
    boot = []
    for _ in range(2000):
        draws = {g: rng.choice(d, d.size) for g, d in dice.items()}
        o = np.concatenate(list(draws.values())).mean()
        boot.append(o / (1 + sum(abs(d.mean() - o) for d in draws.values())))
    lo, hi = np.percentile(boot, [2.5, 97.5])
    assert es["ci"][0] == pytest.approx(lo, abs=0.006) and es["ci"][1] == pytest.approx(hi, abs=0.006)
    assert es["ci"][0] < es["value"] < es["ci"][1]


def test_es_dice_of_equal_groups_is_the_overall_dice_and_needs_two_groups():
    dice = np.array([0.8, 0.9, 0.7, 0.8, 0.9, 0.7])
    values = {m: dice for m in ("dice", "iou", "nsd")} | {
        m: np.ones(6) for m in ("hd95", "assd", "volume_error")
    }
    cfg = AuditConfig(bootstrap=200, seed=1, min_group_size=1)
    res = run_segmentation_audit(values, {"g": np.array(["a"] * 3 + ["b"] * 3)}, cfg)
    es = res.attribute("g").segmentation_summary["es_dice"]
    assert es["value"] == pytest.approx(0.8) and es["overall_dice"] == pytest.approx(0.8)
    one = run_segmentation_audit(values, {"g": np.array(["a"] * 6)}, cfg)
    assert one.attribute("g").segmentation_summary["es_dice"]["value"] is None


def test_es_dice_with_patient_clusters_weights_groups_by_their_resampled_cases():
    """With patients resampled, a group's weight in the overall mean follows its resampled
    case count; the point value is still the hand formula."""
    values, attrs, reasons = _cohort(2)
    clusters = np.arange(values["dice"].size) // 2  # two cases per patient
    res = run_segmentation_audit(values, attrs, AuditConfig(bootstrap=300, seed=4), clusters=clusters)
    es = res.attribute("group").segmentation_summary["es_dice"]
    d = {g: values["dice"][attrs["group"] == g] for g in ("A", "C")}
    overall = np.concatenate(list(d.values())).mean()
    assert es["value"] == pytest.approx(overall / (1 + sum(abs(x.mean() - overall) for x in d.values())))
    assert es["ci"][0] < es["value"] < es["ci"][1]
