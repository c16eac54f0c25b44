"""Training losses and differentiable fairness penalties.

Every penalty is computed from soft quantities (probabilities and soft Dice), never from
thresholded counts, so gradients flow. Each penalty is the population variance across the
groups present in the batch of a per-group quantity: zero when the groups are identical,
growing with the gap (for two groups: gap**2 / 4).

- dice_variance: variance of the per-group mean soft Dice (segmentation).
- demographic_parity: variance of the per-group mean probability (soft selection rate).
- equalized_odds: variance of the soft TPR (mean p over positives) plus that of the soft
  FPR (mean p over negatives); a group without positives (negatives) is left out of that term.
- calibration: variance of the per-group calibration-in-the-large gap, mean(p) - mean(y).
- adversarial: cross-entropy of an adversary predicting the group through gradient
  reversal; ``reversal_schedule`` ramps the reversal strength as in DANN (Ganin et al. 2016).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

FAIRNESS_PENALTIES = (
    "none",
    "dice_variance",
    "demographic_parity",
    "equalized_odds",
    "calibration",
    "adversarial",
)


def soft_dice_per_case(
    logits: torch.Tensor, target: torch.Tensor, *, include_background: bool = False, smooth: float = 1e-5
) -> torch.Tensor:
    """Soft Dice per case (N,), averaged over the foreground classes.

    logits (N, C, H, W); target (N, H, W) integer labels. As MONAI's DiceLoss with
    softmax=True, to_onehot_y=True and smooth_nr = smooth_dr = smooth.
    """
    probs = torch.softmax(logits, dim=1)
    onehot = F.one_hot(target.long(), logits.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
    if not include_background and logits.shape[1] > 1:
        probs, onehot = probs[:, 1:], onehot[:, 1:]
    inter = (probs * onehot).sum(dim=(2, 3))
    denom = probs.sum(dim=(2, 3)) + onehot.sum(dim=(2, 3))
    dice = (2 * inter + smooth) / (denom + smooth)
    return dice.mean(dim=1)


def dice_ce_loss(
    logits: torch.Tensor, target: torch.Tensor, *, dice_weight: float = 1.0, ce_weight: float = 1.0
) -> torch.Tensor:
    """(1 - mean soft Dice) * dice_weight + cross-entropy * ce_weight."""
    dice = soft_dice_per_case(logits, target)
    return dice_weight * (1 - dice.mean()) + ce_weight * F.cross_entropy(logits, target.long())


def _group_means(values: torch.Tensor, groups: torch.Tensor, weights: torch.Tensor | None = None):
    """Per-group weighted mean of `values` and a bool mask of groups with positive weight."""
    n_groups = int(groups.max().item()) + 1 if groups.numel() else 0
    onehot = F.one_hot(groups.long(), n_groups).to(values.dtype)  # (N, K)
    if weights is not None:
        onehot = onehot * weights.to(values.dtype)[:, None]
    totals = onehot.sum(dim=0)
    present = totals > 0
    sums = onehot.t() @ values
    means = sums[present] / totals[present]
    return means


def _variance(means: torch.Tensor) -> torch.Tensor:
    if means.numel() < 2:
        return means.sum() * 0.0
    return ((means - means.mean()) ** 2).mean()


def dice_variance_penalty(dice_per_case: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Variance across groups of the mean per-case soft Dice."""
    return _variance(_group_means(dice_per_case, groups))


def demographic_parity_penalty(probs: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Variance across groups of the soft selection rate mean(p)."""
    return _variance(_group_means(probs.reshape(-1), groups))


def equalized_odds_penalty(probs: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Variance across groups of the soft TPR plus that of the soft FPR."""
    p = probs.reshape(-1)
    y = labels.reshape(-1).to(p.dtype)
    tpr = _group_means(p, groups, y)
    fpr = _group_means(p, groups, 1 - y)
    return _variance(tpr) + _variance(fpr)


def calibration_penalty(probs: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Variance across groups of mean(p) - mean(y) (calibration-in-the-large gap)."""
    p = probs.reshape(-1)
    gap = p - labels.reshape(-1).to(p.dtype)
    return _variance(_group_means(gap, groups))


def adversarial_loss(adversary_logits: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the adversary's group prediction (the reversal layer flips its
    gradient for the backbone, so minimising the sum removes group information)."""
    return F.cross_entropy(adversary_logits, groups.long())


def reversal_schedule(progress: float, max_strength: float = 1.0, gamma: float = 10.0) -> float:
    """DANN ramp: max_strength * (2 / (1 + exp(-gamma * progress)) - 1), progress in [0, 1]."""
    progress = min(max(float(progress), 0.0), 1.0)
    return max_strength * (2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0)
