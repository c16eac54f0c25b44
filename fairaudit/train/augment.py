"""Simple seeded training augmentation on torch batches (geometry + intensity + noise).

Every random draw comes from the torch.Generator handed in, so a seeded run repeats
exactly. Masks follow the image geometry with nearest-neighbour sampling. The physics-
based augmentations of fairaudit.augment are a separate, richer family.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    flip_prob: float = 0.5  # horizontal flip
    max_rotation_deg: float = 10.0
    max_scale: float = 0.1  # zoom in [1 - s, 1 + s]
    intensity_scale: float = 0.1  # gain in [1 - s, 1 + s]
    intensity_shift: float = 0.05  # offset in [-s, s]
    noise_std: float = 0.02  # Gaussian noise with std uniform in [0, noise_std]

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _uniform(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen)


def augment_batch(
    images: torch.Tensor, masks: torch.Tensor | None, cfg: AugmentConfig, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Randomly flip/rotate/zoom (image and mask alike), then change gain/offset and add noise."""
    n = images.shape[0]
    flip = torch.rand(n, generator=gen) < cfg.flip_prob
    angle = _uniform(n, -cfg.max_rotation_deg, cfg.max_rotation_deg, gen) * math.pi / 180
    scale = _uniform(n, 1 - cfg.max_scale, 1 + cfg.max_scale, gen)
    gain = _uniform(n, 1 - cfg.intensity_scale, 1 + cfg.intensity_scale, gen)
    shift = _uniform(n, -cfg.intensity_shift, cfg.intensity_shift, gen)
    noise_std = _uniform(n, 0.0, cfg.noise_std, gen)
    noise = torch.randn(images.shape, generator=gen)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    sx = torch.where(flip, -torch.ones(n), torch.ones(n))
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = cos * sx
    theta[:, 0, 1] = -sin
    theta[:, 1, 0] = sin * sx
    theta[:, 1, 1] = cos
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    out = out * gain.view(-1, 1, 1, 1) + shift.view(-1, 1, 1, 1) + noise * noise_std.view(-1, 1, 1, 1)
    if masks is not None:
        m = F.grid_sample(
            masks[:, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False
        )
        masks = m[:, 0].round().long()
    return out, masks
