"""Training augmentation: seeded, geometry shared by image and mask, flips are torch.flip."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from fairaudit.train.augment import AugmentConfig, augment_batch  # noqa: E402

FLIP_ONLY = AugmentConfig(
    flip_prob=1.0,
    max_rotation_deg=0.0,
    max_scale=0.0,
    intensity_scale=0.0,
    intensity_shift=0.0,
    noise_std=0.0,
)


def test_flip_only_equals_torch_flip() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 8, 10, generator=gen)
    m = (torch.rand(2, 8, 10, generator=gen) > 0.5).long()
    out, mask = augment_batch(x, m, FLIP_ONLY, torch.Generator().manual_seed(1))
    assert torch.allclose(out, torch.flip(x, dims=[-1]), atol=1e-5)
    assert torch.equal(mask, torch.flip(m, dims=[-1]))


def test_seeded_and_mask_follows_image() -> None:
    x = torch.zeros(3, 1, 32, 32)
    x[:, :, 8:20, 10:24] = 1.0
    m = (x[:, 0] > 0.5).long()
    cfg = AugmentConfig(intensity_scale=0.0, intensity_shift=0.0, noise_std=0.0, max_rotation_deg=20.0)
    a, ma = augment_batch(x, m, cfg, torch.Generator().manual_seed(5))
    b, mb = augment_batch(x, m, cfg, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and torch.equal(ma, mb)
    c, _ = augment_batch(x, m, cfg, torch.Generator().manual_seed(6))
    assert not torch.equal(a, c)
    # where the transformed image is clearly inside/outside the square, the mask agrees
    inside, outside = a[:, 0] > 0.9, a[:, 0] < 0.1
    assert (ma[inside] == 1).all() and (ma[outside] == 0).all()
    assert set(ma.unique().tolist()) <= {0, 1}
