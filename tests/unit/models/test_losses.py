"""Losses and fairness penalties against hand-computed values, MONAI, and autograd."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fairaudit.models.architectures import build_model, grad_reverse  # noqa: E402
from fairaudit.models.losses import (  # noqa: E402
    adversarial_loss,
    calibration_penalty,
    demographic_parity_penalty,
    dice_ce_loss,
    dice_variance_penalty,
    equalized_odds_penalty,
    reversal_schedule,
    soft_dice_per_case,
)


def _var(values: list[float]) -> float:
    return float(np.var(values))  # population variance, as documented


def test_gradient_reversal_negates_and_scales() -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 3, requires_grad=True)
    w = torch.randn(4, 3)
    y = grad_reverse(x, 0.3)
    assert torch.equal(y, x)
    (y * w).sum().backward()
    x2 = x.detach().clone().requires_grad_(True)
    (w * (-0.3 * x2)).sum().backward()  # the negated scaled identity
    assert torch.allclose(x.grad, x2.grad)


def test_reversal_schedule_ramps() -> None:
    vals = [reversal_schedule(p, 2.0) for p in np.linspace(0, 1, 11)]
    assert vals[0] == 0.0
    assert all(b > a for a, b in zip(vals, vals[1:], strict=False))
    assert vals[-1] == pytest.approx(2.0 * (2 / (1 + np.exp(-10)) - 1))


def test_demographic_parity_hand_computed() -> None:
    p = torch.tensor([0.2, 0.4, 0.6, 0.8])
    g = torch.tensor([0, 0, 1, 1])
    assert demographic_parity_penalty(p, g).item() == pytest.approx(_var([0.3, 0.7]))
    same = torch.tensor([0.2, 0.8, 0.2, 0.8])
    assert demographic_parity_penalty(same, g).item() == pytest.approx(0.0, abs=1e-12)
    gaps = [
        demographic_parity_penalty(torch.tensor([0.5, 0.5, 0.5 + d, 0.5 + d]), g).item()
        for d in (0.1, 0.2, 0.3)
    ]
    assert gaps[0] < gaps[1] < gaps[2]
    assert gaps[1] == pytest.approx(0.2**2 / 4)


def test_equalized_odds_hand_computed() -> None:
    p = torch.tensor([0.9, 0.7, 0.2, 0.6, 0.4, 0.5, 0.1, 0.3])
    y = torch.tensor([1, 1, 0, 1, 0, 1, 0, 0])
    g = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    tpr = [np.mean([0.9, 0.7, 0.6]), np.mean([0.5])]
    fpr = [np.mean([0.2]), np.mean([0.4, 0.1, 0.3])]
    assert equalized_odds_penalty(p, y, g).item() == pytest.approx(_var(tpr) + _var(fpr), rel=1e-6)
    # identical groups: zero
    p2 = torch.tensor([0.9, 0.2, 0.9, 0.2])
    y2 = torch.tensor([1, 0, 1, 0])
    g2 = torch.tensor([0, 0, 1, 1])
    assert equalized_odds_penalty(p2, y2, g2).item() == pytest.approx(0.0, abs=1e-12)
    small = equalized_odds_penalty(torch.tensor([0.9, 0.2, 0.8, 0.2]), y2, g2).item()
    big = equalized_odds_penalty(torch.tensor([0.9, 0.2, 0.5, 0.2]), y2, g2).item()
    assert 0 < small < big


def test_calibration_hand_computed() -> None:
    p = torch.tensor([0.8, 0.6, 0.3, 0.1])
    y = torch.tensor([1, 0, 1, 0])
    g = torch.tensor([0, 0, 1, 1])
    gaps = [0.7 - 0.5, 0.2 - 0.5]
    assert calibration_penalty(p, y, g).item() == pytest.approx(_var(gaps))
    assert calibration_penalty(torch.tensor([0.8, 0.6, 0.8, 0.6]), y, g).item() == pytest.approx(
        0.0, abs=1e-12
    )


def test_dice_variance_hand_computed() -> None:
    d = torch.tensor([0.9, 0.7, 0.5, 0.6, 0.4])
    g = torch.tensor([0, 0, 1, 1, 2])
    assert dice_variance_penalty(d, g).item() == pytest.approx(_var([0.8, 0.55, 0.4]))
    assert dice_variance_penalty(torch.tensor([0.5, 0.5, 0.5]), torch.tensor([0, 1, 2])).item() == 0.0


def test_soft_dice_matches_monai() -> None:
    monai_losses = pytest.importorskip("monai.losses")
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 3, 9, 7, generator=gen)
    target = torch.randint(0, 3, (3, 9, 7), generator=gen)
    ours = soft_dice_per_case(logits, target)
    ref = monai_losses.DiceLoss(
        softmax=True,
        to_onehot_y=True,
        include_background=False,
        reduction="none",
        smooth_nr=1e-5,
        smooth_dr=1e-5,
    )(logits, target[:, None])
    assert torch.allclose(ours, 1 - ref.reshape(3, -1).mean(dim=1), atol=1e-6)


def test_soft_dice_of_confident_logits_is_hand_counted_dice() -> None:
    pred = np.zeros((8, 8), dtype=int)
    pred[2:6, 2:6] = 1  # 16 pixels
    truth = np.zeros((8, 8), dtype=int)
    truth[3:7, 3:7] = 1  # 16 pixels, overlap 3x3 = 9
    logits = torch.nn.functional.one_hot(torch.tensor(pred), 2).permute(2, 0, 1)[None].float() * 50
    dice = soft_dice_per_case(logits, torch.tensor(truth)[None]).item()
    assert dice == pytest.approx(2 * 9 / 32, abs=1e-5)


def test_dice_ce_gradients_reach_unet_parameters() -> None:
    torch.manual_seed(0)
    net = build_model("unet", depth=2, base_channels=4)
    x = torch.randn(2, 1, 15, 17)
    target = torch.randint(0, 2, (2, 15, 17))
    logits = net(x)
    loss = dice_ce_loss(logits, target) + dice_variance_penalty(
        soft_dice_per_case(logits, target), torch.tensor([0, 1])
    )
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    assert net.head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("penalty", ["dp", "eo", "cal"])
def test_penalty_gradients_reach_classifier(penalty: str) -> None:
    torch.manual_seed(0)
    net = build_model("small_cnn", width=4)
    x = torch.randn(8, 1, 16, 16)
    y = torch.tensor([1, 0, 1, 0, 1, 0, 1, 0])
    g = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    p = torch.sigmoid(net(x)).reshape(-1)
    loss = {
        "dp": lambda: demographic_parity_penalty(p, g),
        "eo": lambda: equalized_odds_penalty(p, y, g),
        "cal": lambda: calibration_penalty(p, y, g),
    }[penalty]()
    loss.backward()
    assert net.fc.weight.grad.abs().sum() > 0
    assert net.backbone[0].weight.grad.abs().sum() > 0


def test_adversarial_gradient_reaches_backbone_reversed() -> None:
    torch.manual_seed(0)
    net = build_model("small_cnn", width=4, adversary_groups=3)
    x = torch.randn(6, 1, 16, 16)
    g = torch.tensor([0, 1, 2, 0, 1, 2])
    strength = 0.5
    _, adv = net.forward_train(x, strength)
    adversarial_loss(adv, g).backward()
    reversed_grad = net.backbone[0].weight.grad.clone()
    assert all(p.grad is not None for p in net.adversary.parameters())
    assert net.fc.weight.grad is None  # the classification head is not on this path
    net.zero_grad()
    adversarial_loss(net.adversary(net.features(x)), g).backward()  # no reversal
    plain = net.backbone[0].weight.grad
    assert reversed_grad.abs().sum() > 0
    assert torch.allclose(reversed_grad, -strength * plain, atol=1e-6)
