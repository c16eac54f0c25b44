"""Networks implemented in the project (nothing downloads weights).

- ``unet``: 2D U-Net; ``forward(x)`` -> logits (N, C, H, W) at the input size (odd sizes
  are padded to a multiple of 2**depth and cropped back); ``forward_with_features(x)``
  also returns the encoder features (deepest last).
- ``resnet18`` / ``small_cnn``: binary classifiers; ``forward(x)`` -> logits (N, 1) in
  every mode (TorchScript-able). With ``adversary_groups > 0`` an adversarial head predicts
  the demographic group from the pooled features through a gradient-reversal layer:
  ``forward_train(x, reversal)`` -> (logits, adversary_logits).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("batch", "group", "none")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        groups = 8 if channels % 8 == 0 else 4 if channels % 4 == 0 else 1
        return nn.GroupNorm(groups, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {', '.join(NORMS)}, not {kind!r}.")


class GradientReversal(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by -strength (Ganin & Lempitsky 2015)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, strength: float) -> torch.Tensor:
        ctx.strength = float(strength)
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.strength * grad, None


def grad_reverse(x: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """Pass `x` unchanged; reverse and scale its gradient by `strength`."""
    return GradientReversal.apply(x, strength)


class _DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int, norm: str, dropout: float) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, 3, padding=1, bias=norm == "none"),
            _norm(norm, cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=norm == "none"),
            _norm(norm, cout),
            nn.ReLU(inplace=True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)


class UNet(nn.Module):
    """2D U-Net (Ronneberger et al. 2015) with configurable depth, width, norm and dropout."""

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 2,
        depth: int = 4,
        base_channels: int = 16,
        norm: str = "group",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be at least 1, not {depth}.")
        self.depth = depth
        self.multiple: int = 2**depth
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList()
        cin = in_channels
        for w in widths[:-1]:
            self.down.append(_DoubleConv(cin, w, norm, 0.0))
            cin = w
        self.bottom = _DoubleConv(widths[-2], widths[-1], norm, dropout)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in range(depth, 0, -1):
            self.up.append(nn.ConvTranspose2d(widths[i], widths[i - 1], 2, stride=2))
            self.dec.append(_DoubleConv(2 * widths[i - 1], widths[i - 1], norm, 0.0))
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h, w = x.shape[-2], x.shape[-1]
        m = self.multiple
        ph = (m - h % m) % m
        pw = (m - w % m) % m
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2], mode="replicate")
        skips: list[torch.Tensor] = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)
        features = skips + [x]
        for i, (up, dec) in enumerate(zip(self.up, self.dec, strict=True)):
            x = up(x)
            x = dec(torch.cat([x, skips[len(skips) - 1 - i]], dim=1))
        logits = self.head(x)
        logits = logits[..., ph // 2 : ph // 2 + h, pw // 2 : pw // 2 + w]
        return logits, features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x)[0]

    @torch.jit.export
    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and the encoder features (one per level, bottleneck last)."""
        return self._run(x)


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, norm: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.n1 = _norm(norm, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.n2 = _norm(norm, cout)
        self.short = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), _norm(norm, cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.n1(self.conv1(x)))
        out = self.n2(self.conv2(out))
        return F.relu(out + self.short(x))


class _GlobalPool(nn.Module):
    """Global average, max, or both concatenated (max pooling suits small focal findings)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        if kind not in POOLS:
            raise ValueError(f"pool must be one of {', '.join(POOLS)}, not {kind!r}.")
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "avg":
            return F.adaptive_avg_pool2d(x, 1)
        if self.kind == "max":
            return F.adaptive_max_pool2d(x, 1)
        return torch.cat([F.adaptive_avg_pool2d(x, 1), F.adaptive_max_pool2d(x, 1)], dim=1)


POOLS = ("avg", "max", "avgmax")


def _resnet18_backbone(in_channels: int, width: int, norm: str, pool: str) -> tuple[nn.Module, int]:
    """ResNet-18 layout (He et al. 2016): stem, 4 stages of 2 basic blocks, global pooling."""
    widths = [width, 2 * width, 4 * width, 8 * width]
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False),
        _norm(norm, width),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, stride=2, padding=1),
    ]
    cin = width
    for i, w in enumerate(widths):
        stride = 1 if i == 0 else 2
        layers += [_BasicBlock(cin, w, stride, norm), _BasicBlock(w, w, 1, norm)]
        cin = w
    layers += [_GlobalPool(pool), nn.Flatten()]
    return nn.Sequential(*layers), cin * (2 if pool == "avgmax" else 1)


def _small_cnn_backbone(in_channels: int, width: int, norm: str, pool: str) -> tuple[nn.Module, int]:
    """Four conv-norm-ReLU-pool stages, doubling width, then global average pooling."""
    layers: list[nn.Module] = []
    cin = in_channels
    for i in range(4):
        w = width * 2**i
        layers += [
            nn.Conv2d(cin, w, 3, padding=1, bias=norm == "none"),
            _norm(norm, w),
            nn.ReLU(inplace=True),
        ]
        layers.append(nn.MaxPool2d(2) if i < 3 else nn.Identity())
        cin = w
    layers += [_GlobalPool(pool), nn.Flatten()]
    return nn.Sequential(*layers), cin * (2 if pool == "avgmax" else 1)


class Classifier(nn.Module):
    """Binary classifier: backbone -> dropout -> linear logit (one per finding of a
    multi-label classifier, `num_outputs`); optional adversarial group head."""

    def __init__(
        self,
        backbone: str = "small_cnn",
        in_channels: int = 1,
        width: int = 16,
        norm: str = "batch",
        dropout: float = 0.0,
        adversary_groups: int = 0,
        adversary_hidden: int = 32,
        pool: str = "avg",
        num_outputs: int = 1,
    ) -> None:
        super().__init__()
        if backbone == "resnet18":
            self.backbone, features = _resnet18_backbone(in_channels, width, norm, pool)
        elif backbone == "small_cnn":
            self.backbone, features = _small_cnn_backbone(in_channels, width, norm, pool)
        else:
            raise ValueError(f"backbone must be resnet18 or small_cnn, not {backbone!r}.")
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(features, int(num_outputs))
        self.adversary_groups = int(adversary_groups)
        self.adversary: nn.Module | None = None
        if self.adversary_groups > 0:
            self.adversary = nn.Sequential(
                nn.Linear(features, adversary_hidden),
                nn.ReLU(),
                nn.Linear(adversary_hidden, adversary_groups),
            )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.backbone(x)))

    def forward_train(
        self, x: torch.Tensor, reversal: float = 1.0
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(logits (N, 1), adversary logits (N, groups) or None); the adversary sees the
        features through gradient reversal, so minimising its loss pushes the backbone to
        remove group information."""
        feats = self.backbone(x)
        logits = self.fc(self.dropout(feats))
        if self.adversary is None:
            return logits, None
        return logits, self.adversary(grad_reverse(feats, reversal))


ARCHITECTURES = ("unet", "resnet18", "small_cnn")


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a network by name: "unet", "resnet18" or "small_cnn" (kwargs as in model.json)."""
    if name == "unet":
        return UNet(**kwargs)
    if name in ("resnet18", "small_cnn"):
        kwargs.setdefault("width", 64 if name == "resnet18" else 16)
        return Classifier(backbone=name, **kwargs)
    raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}.")
