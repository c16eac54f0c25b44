"""Metrics written out by hand, as loops over cases, for tests in more than one file."""

from __future__ import annotations

import math


def hand_bin(score: float) -> int:
    """The ece bin of docs/statistics.md ("Metrics"): [k/10, (k+1)/10), the last closed at 1.0."""
    for k in range(10):
        if k / 10 <= score < (k + 1) / 10 or (k == 9 and score == 1.0):
            return k
    raise ValueError(score)


def hand_sq_ce(scores, labels) -> float:
    """sum_b (n_b / n) * mean over ordered pairs i != j in bin b of (s_i - y_i)(s_j - y_j)."""
    n = len(scores)
    total, covered = 0.0, 0
    for k in range(10):
        members = [i for i in range(n) if hand_bin(float(scores[i])) == k]
        m = len(members)
        if m < 2:
            continue
        covered += m
        pairs = 0.0
        for i in members:
            for j in members:
                if i != j:
                    pairs += (scores[i] - labels[i]) * (scores[j] - labels[j])
        total += m / n * pairs / (m * (m - 1))
    return total if covered else math.nan
