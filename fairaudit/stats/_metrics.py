"""Classification metrics (docs/statistics.md, "Metrics"), evaluated on many count vectors at once.

`MetricKernel.evaluate` takes a batch of count vectors over one group's cells (the original
counts, bootstrap resamples or permutations) and returns every metric for every row: the
linear statistics come from one matrix product, AUROC and average precision from one
cumulative pass over the once-sorted scores. `MetricKernel.leave_one_out` gives the
jackknife values in closed form (one value per cell and label), which BCa needs.
`squared_calibration_error` is ece's debiased companion (docs/statistics.md, "Calibration"):
plug-in ece grows as a group shrinks, so it would flag small groups of a calibrated model.
Undefined values are NaN here; `reasons` says why, and the result layer turns them into
null with that reason.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

RATE_METRICS: tuple[str, ...] = (
    "tpr",
    "fnr",
    "tnr",
    "fpr",
    "ppv",
    "npv",
    "selection_rate",
    "prevalence",
    "accuracy",
    "balanced_accuracy",
)
SCORE_METRICS: tuple[str, ...] = ("auroc", "auprc", "brier", "ece", "squared_calibration_error")
# The debiased squared calibration error (docs/statistics.md, "Calibration"). Every score
# kernel computes it on request; it joins SCORE_METRICS, and so results.json, together
# with its permutation test in the audit (`_MEAN_PERMUTED` in _audit.py): an audit
# comparison of a metric without a test has no null distribution to draw on.
SQUARED_CE = "squared_calibration_error"
CALIBRATION_METRICS: tuple[str, ...] = (SQUARED_CE,)
METRICS: tuple[str, ...] = RATE_METRICS + SCORE_METRICS

# Which direction is worse, for "worst group" summaries (None: no direction is worse).
HIGHER_IS_BETTER: dict[str, bool | None] = {
    "tpr": True,
    "fnr": False,
    "tnr": True,
    "fpr": False,
    "ppv": True,
    "npv": True,
    "selection_rate": None,
    "prevalence": None,
    "accuracy": True,
    "balanced_accuracy": True,
    "auroc": True,
    "auprc": True,
    "brier": False,
    "ece": False,
    SQUARED_CE: False,
}

# Numerator and denominator of each proportion, as names of confusion counts.
PROPORTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "tpr": (("tp",), ("tp", "fn")),
    "fnr": (("fn",), ("tp", "fn")),
    "tnr": (("tn",), ("tn", "fp")),
    "fpr": (("fp",), ("tn", "fp")),
    "ppv": (("tp",), ("tp", "fp")),
    "npv": (("tn",), ("tn", "fn")),
    "selection_rate": (("tp", "fp"), ("tp", "fp", "tn", "fn")),
    "prevalence": (("tp", "fn"), ("tp", "fp", "tn", "fn")),
    "accuracy": (("tp", "tn"), ("tp", "fp", "tn", "fn")),
}

UNDEFINED_REASON: dict[str, str] = {
    "tpr": "no positive cases (TP+FN = 0)",
    "fnr": "no positive cases (TP+FN = 0)",
    "tnr": "no negative cases (TN+FP = 0)",
    "fpr": "no negative cases (TN+FP = 0)",
    "ppv": "no predicted positives (TP+FP = 0)",
    "npv": "no predicted negatives (TN+FN = 0)",
    "selection_rate": "no cases",
    "prevalence": "no cases",
    "accuracy": "no cases",
    "balanced_accuracy": "needs both positive and negative cases",
    "auroc": "needs both positive and negative cases",
    "auprc": "no positive cases",
    "brier": "no cases",
    "ece": "no cases",
    SQUARED_CE: "no score bin holds two or more cases",
}
NO_SCORE_REASON = "no score column: threshold-free metrics need scores, not 0/1 predictions"

ECE_BINS = 10
_ECE_EDGES = np.arange(ECE_BINS + 1) / ECE_BINS


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with NaN where den == 0."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def rates_from_confusion(
    tp: np.ndarray, fp: np.ndarray, tn: np.ndarray, fn: np.ndarray
) -> dict[str, np.ndarray]:
    """All threshold metrics from confusion counts (arrays broadcast together)."""
    n = tp + fp + tn + fn
    tpr = _div(tp, tp + fn)
    tnr = _div(tn, tn + fp)
    return {
        "tpr": tpr,
        "fnr": _div(fn, tp + fn),
        "tnr": tnr,
        "fpr": _div(fp, tn + fp),
        "ppv": _div(tp, tp + fp),
        "npv": _div(tn, tn + fn),
        "selection_rate": _div(tp + fp, n),
        "prevalence": _div(tp + fn, n),
        "accuracy": _div(tp + tn, n),
        "balanced_accuracy": (tpr + tnr) / 2.0,
    }


def ece_bin_index(u: np.ndarray) -> np.ndarray:
    """Bin k holds scores in [k/10, (k+1)/10); the last bin is closed at 1.0."""
    idx = np.searchsorted(_ECE_EDGES, u, side="right") - 1
    return np.clip(idx, 0, ECE_BINS - 1)


class MetricKernel:
    """Evaluates the metrics of one group's cell grid for batches of count vectors."""

    def __init__(self, u: np.ndarray, threshold: float, with_scores: bool) -> None:
        self.u = np.asarray(u, dtype=np.float64)
        self.threshold = float(threshold)
        self.with_scores = with_scores
        self.above = (self.u >= self.threshold).astype(np.float64)
        self.bin = ece_bin_index(self.u)
        # Squared errors of a positive and of a negative case at each score (Brier).
        self._sq_pos = (self.u - 1.0) ** 2
        self._sq_neg = self.u**2
        # ECE bins as runs of cells (the scores ascend, so each bin is one run): the start of
        # each non-empty bin. A dense (cells x bins) matrix cost ~0.2 KiB per cell, kept for
        # every group of every attribute: on 50,000 distinct scores, tens of MiB.
        present = np.flatnonzero(np.bincount(self.bin, minlength=ECE_BINS))
        self._runs = np.searchsorted(self.bin, present) if np.all(np.diff(self.bin) >= 0) else None

    @property
    def metrics(self) -> tuple[str, ...]:
        return METRICS if self.with_scores else RATE_METRICS

    def evaluate(
        self, pos: np.ndarray, neg: np.ndarray, metrics: Collection[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Every metric for each row of `pos`/`neg` (shape (B, K), counts per cell), or only
        `metrics`: a permutation test's null needs one to four of them, and the raised
        permutations of a multi-label audit evaluate tens of thousands of rows
        (benchmarks/README.md, multilabel.py). Each metric's arithmetic is the same either way."""
        pos = np.asarray(pos, dtype=np.float64)
        neg = np.asarray(neg, dtype=np.float64)
        want = set(self.metrics if metrics is None else metrics)
        n_pos = pos.sum(axis=1)
        n_neg = neg.sum(axis=1)
        n = n_pos + n_neg
        out: dict[str, np.ndarray] = {}
        if not want.isdisjoint(RATE_METRICS):
            tp = pos @ self.above
            fp = neg @ self.above
            out.update(rates_from_confusion(tp, fp, n_neg - fp, n_pos - tp))
        if not self.with_scores:
            return out if metrics is None else {m: out[m] for m in out if m in want}
        if "brier" in want:
            out["brier"] = _div(pos @ self._sq_pos + neg @ self._sq_neg, n)
        if not want.isdisjoint(("ece", SQUARED_CE)):
            bin_err = self._bin_sums((pos + neg) * self.u - pos)
            if "ece" in want:
                out["ece"] = _div(np.abs(bin_err).sum(axis=1), n)
            if SQUARED_CE in want and SQUARED_CE in self.metrics:
                out[SQUARED_CE] = self._squared_ce(pos, neg, bin_err)
        if not want.isdisjoint(("auroc", "auprc")):
            cum_neg = np.cumsum(neg, axis=1)
            # AUROC: each positive scores 1 per negative below it and 1/2 per tie.
            cum_neg -= 0.5 * neg
            if "auroc" in want:
                s = np.einsum("ij,ij->i", pos, cum_neg)
                out["auroc"] = _div(s, n_pos * n_neg)
            if "auprc" in want:
                # Average precision: thresholds at unique scores, descending; TPc / Tot at each.
                cum_pos = np.cumsum(pos, axis=1)
                cum_neg += 0.5 * neg  # back to the inclusive cumulative count
                tot_above = (n[:, None] - cum_pos - cum_neg) + pos + neg
                tp_above = n_pos[:, None] - cum_pos + pos
                np.maximum(tot_above, 1.0, out=tot_above)
                s_ap = np.einsum("ij,ij->i", pos, tp_above / tot_above)
                out["auprc"] = _div(s_ap, n_pos)
        return out if metrics is None else {m: out[m] for m in out if m in want}

    def _bin_sums(self, err: np.ndarray) -> np.ndarray:
        """Per ECE bin, the sum of `err` (B, K) over the bin's cells: (B, non-empty bins)."""
        if err.shape[1] == 0:
            return np.zeros((err.shape[0], 1))
        if self._runs is not None:
            return np.add.reduceat(err, self._runs, axis=1)
        return np.stack([err[:, self.bin == b].sum(axis=1) for b in np.unique(self.bin)], axis=1)

    def squared_calibration_error(self, pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
        """The debiased squared calibration error of each row of `pos`/`neg` (shape (B, K)).

        Plug-in ece adds the noise of each bin's mean label to the error, so it shrinks as a
        group grows even when the model is calibrated (docs/statistics.md, "Calibration").
        Per ece bin b, with e = score - label over its n_b cases, (S1^2 - S2) / (n_b (n_b - 1))
        (S1 = sum e, S2 = sum e^2: the mean of e_i e_j over pairs i != j) estimates the bin's
        squared mean error without bias: its expectation is exactly 0 for a calibrated model,
        whatever n_b. Bins are weighted by n_b / n; a bin of one case has no pair and adds 0.
        NaN where no bin holds two or more cases.
        """
        pos = np.asarray(pos, dtype=np.float64)
        neg = np.asarray(neg, dtype=np.float64)
        return self._squared_ce(pos, neg, self._bin_sums((pos + neg) * self.u - pos))

    def _squared_ce(self, pos: np.ndarray, neg: np.ndarray, s1: np.ndarray) -> np.ndarray:
        """`squared_calibration_error` given S1, the per-bin error sums ece also uses."""
        s2 = self._bin_sums(pos * self._sq_pos + neg * self._sq_neg)
        nb = self._bin_sums(pos + neg)
        n = (pos + neg).sum(axis=1)
        covered = np.where(nb >= 2, nb, 0.0).sum(axis=1)
        return _div(_pair_term(s1, s2, nb).sum(axis=1), np.where(covered > 0, n, 0.0))

    def point(self, pos: np.ndarray, neg: np.ndarray) -> dict[str, float]:
        """The metrics of one count vector, as floats (NaN where undefined)."""
        res = self.evaluate(pos[None, :], neg[None, :])
        return {m: float(v[0]) for m, v in res.items()}

    def leave_one_out(self, pos: np.ndarray, neg: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Jackknife values in closed form: one per (cell, label) with its multiplicity.

        Removing any one case of the same cell and label gives the same statistic, so the
        n leave-one-out values collapse to at most 2K distinct ones, each computed in O(1)
        from prefix and suffix sums (no n x n recomputation).
        """
        pos = np.asarray(pos, dtype=np.float64)
        neg = np.asarray(neg, dtype=np.float64)
        y, t, w = self._loo_entries(pos, neg)
        n_pos, n_neg = pos.sum(), neg.sum()
        n = n_pos + n_neg
        above = self.above[t]
        tp0 = float(pos @ self.above)
        fp0 = float(neg @ self.above)
        tp = tp0 - y * above
        fp = fp0 - (1 - y) * above
        p1 = n_pos - y
        n1 = n_neg - (1 - y)
        out = rates_from_confusion(tp, fp, n1 - fp, p1 - tp)
        if not self.with_scores:
            return out, w
        u = self.u[t]
        err = u - y
        sse = float(pos @ (self.u - 1.0) ** 2 + neg @ self.u**2)
        out["brier"] = _div(sse - err**2, np.full_like(err, n - 1))
        d = np.zeros(ECE_BINS)
        np.add.at(d, self.bin, pos * (self.u - 1.0) + neg * self.u)
        e_total = np.abs(d).sum()
        db = d[self.bin[t]]
        out["ece"] = _div(e_total - np.abs(db) + np.abs(db - err), np.full_like(err, n - 1))
        if SQUARED_CE in self.metrics:
            out[SQUARED_CE] = self._squared_ce_loo(pos, neg, y, t)
        # AUROC.
        cum_neg = np.cumsum(neg)
        cum_pos = np.cumsum(pos)
        below_neg = cum_neg - neg  # negatives strictly below each cell
        above_pos = n_pos - cum_pos  # positives strictly above each cell
        s = float(pos @ (below_neg + 0.5 * neg))
        s1 = s - y * (below_neg[t] + 0.5 * neg[t]) - (1 - y) * (above_pos[t] + 0.5 * pos[t])
        out["auroc"] = _div(s1, p1 * n1)
        # Average precision (see module docstring of the formula in evaluate).
        tot_above = n - cum_pos - cum_neg + pos + neg  # cases scoring >= u[k]
        tp_above = n_pos - cum_pos + pos
        a = pos * _safe(tp_above, tot_above)
        pre = np.cumsum(a[::-1])[::-1] - a  # sum over higher cells
        g0 = pos * _safe(tp_above, tot_above - 1)
        g1 = pos * _safe(tp_above - 1, tot_above - 1)
        suf0 = np.cumsum(g0) - g0  # sum over lower cells, label 0 removed
        suf1 = np.cumsum(g1) - g1
        term = (pos[t] - y) * _safe(tp_above[t] - y, tot_above[t] - 1)
        suf = np.where(y == 1, suf1[t], suf0[t])
        out["auprc"] = _div(pre[t] + term + suf, p1)
        return out, w

    def squared_calibration_error_loo(
        self, pos: np.ndarray, neg: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Jackknife values of `squared_calibration_error`, in `leave_one_out`'s order and weights."""
        pos = np.asarray(pos, dtype=np.float64)
        neg = np.asarray(neg, dtype=np.float64)
        y, t, w = self._loo_entries(pos, neg)
        return self._squared_ce_loo(pos, neg, y, t), w

    def _loo_entries(self, pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Label, cell and multiplicity of each distinct left-out case: all (cell, label 0)
        entries, then all (cell, label 1), cells ascending, empty ones left out."""
        k = self.u.size
        y = np.concatenate([np.zeros(k), np.ones(k)])
        t = np.concatenate([np.arange(k), np.arange(k)])
        w = np.concatenate([neg, pos])
        keep = w > 0
        return y[keep], t[keep], w[keep]

    def _squared_ce_loo(self, pos: np.ndarray, neg: np.ndarray, y: np.ndarray, t: np.ndarray) -> np.ndarray:
        """`squared_calibration_error` with one case (label y, cell t) removed, in O(1) each:
        only its bin's sums (S1, S2, n_b) change, by its error e, e^2 and 1."""
        s1 = np.zeros(ECE_BINS)
        s2 = np.zeros(ECE_BINS)
        nb = np.zeros(ECE_BINS)
        np.add.at(s1, self.bin, pos * (self.u - 1.0) + neg * self.u)
        np.add.at(s2, self.bin, pos * self._sq_pos + neg * self._sq_neg)
        np.add.at(nb, self.bin, pos + neg)
        per_bin = _pair_term(s1, s2, nb)
        covered = np.where(nb >= 2, nb, 0.0)
        b = self.bin[t]
        e = self.u[t] - y
        left = _pair_term(s1[b] - e, s2[b] - e * e, nb[b] - 1.0)
        total = per_bin.sum() - per_bin[b] + left
        covered_left = covered.sum() - covered[b] + np.where(nb[b] - 1.0 >= 2, nb[b] - 1.0, 0.0)
        n_left = pos.sum() + neg.sum() - 1.0
        return _div(total, np.where(covered_left > 0, n_left, 0.0))


def _pair_term(s1: np.ndarray, s2: np.ndarray, nb: np.ndarray) -> np.ndarray:
    """A bin's (S1^2 - S2) / (n_b - 1): n_b times its unbiased squared mean error; 0 below 2 cases."""
    out = np.zeros(np.broadcast(s1, s2, nb).shape)
    np.divide(s1 * s1 - s2, nb - 1.0, out=out, where=nb >= 2)
    return out


def _safe(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0 where den <= 0 (terms that carry zero weight)."""
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den > 0)
    return out


def auroc(labels: np.ndarray, scores: np.ndarray) -> np.ndarray | float:
    """AUROC of scores (n,) or of each column of scores (n, K) against 0/1 labels (n,).

    The same count as `MetricKernel.evaluate` (each positive scores 1 per negative below it
    and 1/2 per tie), in its Mann-Whitney rank form so that many score columns (augment-check's
    augmented copies) are ranked in one call; NaN when a class is missing. The tests check
    it equals the kernel's AUROC exactly.
    """
    from scipy.stats import rankdata

    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores)
    n1, n0 = int(y.sum()), int((~y).sum())
    s2 = s if s.ndim == 2 else s[:, None]
    if n1 == 0 or n0 == 0:
        out = np.full(s2.shape[1], np.nan)
    else:
        ranks = rankdata(s2, axis=0)
        out = (ranks[y].sum(axis=0) - n1 * (n1 + 1) / 2) / (n1 * n0)
    return out if s.ndim == 2 else out[0]
