"""Between-group disparity of per-image values, with the statistics engine's conventions.

Conventions (docs/preprocessing.md, "Group statistics"; docs/statistics.md): bootstrap
stratified by group (each group's images resampled within the group, sizes fixed), seeded
numpy Generators from `fairaudit.stats._resample.generator`, percentile intervals; tests
from scipy.stats (Kruskal-Wallis across groups); a family of p-values corrected together
(fairaudit.stats._multitest.adjust_family). One draw of image indices serves every
statistic and both sides of a before/after comparison, so differences get their
intervals from the same resamples.

Disparity of a statistic across the groups' means m_g:
- range = max_g m_g - min_g m_g (in the statistic's units);
- cv = population SD of the m_g / |mean of the m_g| (undefined when that mean is ~0);
- standardized_range = range / SD of the statistic over all images: unit-free, so it can
  be compared before and after normalization (0 when every image has the same value).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fairaudit.errors import InputError, arg
from fairaudit.stats._audit import CORRECTIONS
from fairaudit.stats._intervals import percentile_interval
from fairaudit.stats._resample import generator
from fairaudit.stats._tests import kruskal_omnibus
from fairaudit.stats.result import Estimate

DISPARITIES: tuple[str, ...] = ("range", "cv", "standardized_range")
# Values whose spread is below this share of their magnitude (at least 1) are treated as
# constant: after a per-image z-score every image mean is 0 up to rounding, and ranks of
# rounding noise must not feed a test.
_CONSTANT_RTOL = 1e-9
# A change of the standardized range smaller than this (a tenth of the overall SD of the
# statistic) is not called narrowed or widened, however tight its interval.
MIN_CHANGE = 0.1


@dataclass(frozen=True)
class Groups:
    """Group names (sorted) and the image indices of each."""

    names: list[str]
    index: list[np.ndarray]

    @staticmethod
    def of(labels: Sequence[str]) -> Groups:
        arr = np.asarray([str(v) for v in labels], dtype=object)
        names = sorted(set(arr.tolist()))
        return Groups(names, [np.flatnonzero(arr == g) for g in names])

    @property
    def sizes(self) -> list[int]:
        return [int(i.size) for i in self.index]

    def rows(self, min_group_size: int) -> list[dict[str, Any]]:
        """Each group's name and size for results.json; `small` below --min-group-size."""
        return [
            {"group": g, "n": n, "small": n < min_group_size}
            for g, n in zip(self.names, self.sizes, strict=True)
        ]


def check_options(correction: str, ci_level: float, bootstrap: int) -> None:
    """The statistics flags that normalize and augment-check share."""
    if correction not in CORRECTIONS:
        raise InputError(
            f"{arg('correction')} must be one of {', '.join(CORRECTIONS)}, not '{correction}'.",
            argument="correction",
        )
    if not 0 < ci_level < 1:
        raise InputError(f"{arg('ci_level')} must be between 0 and 1, got {ci_level}.", argument="ci_level")
    if bootstrap < 100:
        raise InputError(f"{arg('bootstrap')} must be at least 100, got {bootstrap}.", argument="bootstrap")


def draws(groups: Groups, bootstrap: int, seed: int, key: Sequence[int]) -> list[np.ndarray]:
    """Per group, a (B, n_g) array of resampled image indices (into the full arrays)."""
    out = []
    for gi, idx in enumerate(groups.index):
        rng = generator(seed, tuple(key) + (gi,))
        out.append(
            idx[rng.integers(0, idx.size, size=(bootstrap, idx.size))]
            if idx.size
            else np.empty((bootstrap, 0), int)
        )
    return out


def is_constant(values: np.ndarray) -> bool:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return True
    scale = max(float(np.max(np.abs(v))), 1.0)
    return float(v.max() - v.min()) <= _CONSTANT_RTOL * scale


def _disparity_of(means: np.ndarray, sd_all: np.ndarray, constant: bool) -> dict[str, np.ndarray]:
    """means (..., G) and overall SD (...,) -> each disparity (...)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        rng_ = np.nanmax(means, axis=-1) - np.nanmin(means, axis=-1)
        centre = np.nanmean(means, axis=-1)
        spread = np.nanstd(means, axis=-1)
        cv = np.where(
            np.abs(centre) > 1e-12 * np.maximum(np.nanmax(np.abs(means), axis=-1), 1e-300),
            spread / np.abs(centre),
            np.nan,
        )
        std_range = np.where(sd_all > 0, rng_ / sd_all, 0.0)
    if constant:
        rng_ = np.zeros_like(rng_)
        std_range = np.zeros_like(std_range)
        cv = np.where(np.isfinite(cv), 0.0, cv)
    return {"range": rng_, "cv": cv, "standardized_range": std_range}


def _estimate(value: float, boot: np.ndarray | None, level: float, reason: str) -> Estimate:
    ci = percentile_interval(boot, level) if boot is not None else None
    return Estimate.of(value, ci, reason)


@dataclass
class Described:
    """One statistic over the groups: per-group means, disparities, test (plus raw resamples)."""

    group_means: dict[str, Estimate]
    disparity: dict[str, Estimate]
    test: dict[str, Any]
    boot_disparity: dict[str, np.ndarray]

    def to_dict(self) -> dict[str, Any]:
        return {
            "groups": {g: e.to_dict() for g, e in self.group_means.items()},
            "disparity": {k: e.to_dict() for k, e in self.disparity.items()},
            "test": dict(self.test),
        }


def describe(values: np.ndarray, groups: Groups, index_draws: list[np.ndarray], level: float) -> Described:
    """Group means with intervals, the disparities with intervals, and a Kruskal-Wallis test."""
    v = np.asarray(values, dtype=np.float64)
    constant = is_constant(v)
    means = np.array([np.nanmean(v[i]) if i.size else np.nan for i in groups.index])
    sd_all = np.array(np.nanstd(v))
    point = _disparity_of(means[None, :], sd_all[None], constant)
    boot_means = np.stack(
        [np.nanmean(v[d], axis=1) if d.shape[1] else np.full(d.shape[0], np.nan) for d in index_draws], axis=1
    )
    allv = np.concatenate([v[d] for d in index_draws], axis=1)
    boot_sd = np.nanstd(allv, axis=1)
    boot = _disparity_of(boot_means, boot_sd, constant)
    group_means = {
        g: _estimate(float(means[k]), boot_means[:, k], level, "no images with a defined value")
        for k, g in enumerate(groups.names)
    }
    reasons = {"cv": "the mean of the group means is 0: the coefficient of variation is undefined"}
    disparity = {
        k: _estimate(float(point[k][0]), boot[k], level, reasons.get(k, "undefined")) for k in DISPARITIES
    }
    if constant:
        test = {
            "test": "kruskal_wallis",
            "p_value": None,
            "reason": "no variation: every image has the same value",
        }
    else:
        res = kruskal_omnibus([v[i][np.isfinite(v[i])] for i in groups.index])
        test = {"test": res.test, "p_value": res.p_value, "statistic": res.statistic, "df": res.df}
        if res.p_value is None:
            test["reason"] = res.reason
    return Described(group_means, disparity, test, boot)


def change(
    before: Described, after: Described, level: float, key: str = "standardized_range"
) -> dict[str, Any]:
    """after - before of a disparity, interval from the same resamples, and a plain verdict."""
    b, a = before.disparity[key], after.disparity[key]
    if b.value is None or a.value is None:
        return {"disparity": key, "value": None, "ci": None, "verdict": "undefined"}
    diff = after.boot_disparity[key] - before.boot_disparity[key]
    est = _estimate(a.value - b.value, diff, level, "undefined")
    verdict = "no clear change"
    if est.ci is not None and est.ci[1] < 0 and est.value is not None and est.value <= -MIN_CHANGE:
        verdict = "narrowed"
    elif est.ci is not None and est.ci[0] > 0 and est.value is not None and est.value >= MIN_CHANGE:
        verdict = "widened"
    return {"disparity": key, **est.to_dict(), "verdict": verdict}


def bootstrap_group_metric(
    fn: Callable[[np.ndarray], float],
    groups: Groups,
    index_draws: list[np.ndarray],
    level: float,
    reason: str,
) -> tuple[dict[str, Estimate], np.ndarray]:
    """A metric of a group's images (fn(indices) -> float) with intervals; also (B, G) resamples."""
    B = index_draws[0].shape[0] if index_draws else 0
    boot = np.full((B, len(groups.names)), np.nan)
    out = {}
    for k, (g, idx, d) in enumerate(zip(groups.names, groups.index, index_draws, strict=True)):
        value = fn(idx) if idx.size else float("nan")
        for b in range(B):
            boot[b, k] = fn(d[b])
        out[g] = _estimate(value, boot[:, k], level, reason)
    return out, boot


def nullable(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def estimate_dict(value: float, boot: np.ndarray | None, level: float, reason: str) -> dict[str, Any]:
    return _estimate(value, boot, level, reason).to_dict()


def to_jsonable(obj: Any) -> Any:
    """Plain JSON types; NaN/inf become None."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj
