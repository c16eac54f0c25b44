"""Architectures: shapes at odd sizes, encoder features, eval-mode contract, TorchScript."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from fairaudit.models.architectures import build_model  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:DeprecationWarning")


@pytest.mark.parametrize("shape", [(32, 32), (31, 45), (17, 9)])
@pytest.mark.parametrize("norm", ["group", "batch", "none"])
def test_unet_output_matches_input_size(shape: tuple[int, int], norm: str) -> None:
    net = build_model("unet", in_channels=1, out_channels=3, depth=3, base_channels=4, norm=norm, dropout=0.1)
    out = net(torch.randn(2, 1, *shape))
    assert out.shape == (2, 3, *shape)


def test_unet_encoder_features() -> None:
    net = build_model("unet", depth=3, base_channels=4).eval()
    x = torch.randn(1, 1, 32, 32)
    logits, feats = net.forward_with_features(x)
    assert torch.equal(logits, net(x))
    assert [tuple(f.shape[1:]) for f in feats] == [(4, 32, 32), (8, 16, 16), (16, 8, 8), (32, 4, 4)]


def test_unet_dropout_only_in_training() -> None:
    torch.manual_seed(0)
    net = build_model("unet", depth=2, base_channels=4, dropout=0.5)
    x = torch.randn(1, 1, 16, 16)
    net.eval()
    assert torch.equal(net(x), net(x))
    net.train()
    assert not torch.equal(net(x), net(x))


def test_resnet18_has_resnet18_parameter_count() -> None:
    # torchvision's resnet18 has 11,689,512 parameters with 3 input channels and a 1000-way
    # head; ours has 1 input channel (conv1: 64*1*49 instead of 64*3*49) and one logit.
    net = build_model("resnet18")
    n = sum(p.numel() for p in net.parameters())
    assert n == 11_689_512 - 64 * 3 * 49 + 64 * 1 * 49 - (512 * 1000 + 1000) + (512 + 1)


@pytest.mark.parametrize("name", ["resnet18", "small_cnn"])
@pytest.mark.parametrize("adversary", [0, 3])
def test_classifier_eval_forward_returns_logits(name: str, adversary: int) -> None:
    net = build_model(name, width=8, adversary_groups=adversary)
    x = torch.randn(3, 1, 33, 47)
    logits, adv = net.forward_train(x, 1.0)
    assert logits.shape == (3, 1)
    assert (adv is None) == (adversary == 0)
    if adversary:
        assert adv.shape == (3, adversary)
    net.eval()
    out = net(x)
    assert isinstance(out, torch.Tensor) and out.shape == (3, 1)
    scripted = torch.jit.script(net)
    assert torch.allclose(scripted(x), out, atol=1e-6)


def test_unet_is_scriptable_at_odd_sizes() -> None:
    net = build_model("unet", depth=2, base_channels=4).eval()
    x = torch.randn(1, 1, 21, 13)
    assert torch.allclose(torch.jit.script(net)(x), net(x), atol=1e-6)


def test_unknown_architecture() -> None:
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("vit")
