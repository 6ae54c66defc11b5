"""Tiny models for the toolchain tests (exported on the fly, seconds to convert)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

SHAPE = (1, 16, 16)


def he_init(model: nn.Module, seed: int = 0, *, bias_std: float = 0.1,
            batchnorm: bool = True) -> nn.Module:
    """He-normal weights, random biases and (``batchnorm``) random BatchNorm statistics.

    PyTorch's default init gives near-constant outputs that hide mistakes (a padding bug
    showed 4e-6 instead of 0.56); equivalence tests use this instead. Returns ``model``
    in eval mode.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * bias_std)
            elif batchnorm and isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.2)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.3)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    return model.eval()


def mappable() -> nn.Module:
    """Maps entirely on Akida 2.0: same padding, pool followed by a conv, small Dense."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU6(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 8 * 8, 10),
    ).eval()


def valid_padding() -> nn.Module:
    """Second conv without padding: converts, but stays in software on Akida 2.0."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU6(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 6 * 6, 10),
    ).eval()


def wide_dense() -> nn.Module:
    """Dense input 4096 > 2048: the FNP limit."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(16 * 16 * 16, 10),
    ).eval()


def bn_after_relu() -> nn.Module:
    """Conv -> ReLU -> BatchNorm: QuantizeML cannot quantize the BN; CNN2SNN stops there."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(8),
        nn.Conv2d(8, 8, 3, padding=1, stride=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 8 * 8, 10),
    )
    with torch.no_grad():
        model[2].running_mean.uniform_(-0.5, 0.5)
        model[2].running_var.uniform_(0.5, 2.0)
    return model.eval()


def softmax_head() -> nn.Module:
    model = mappable()
    return nn.Sequential(*model, nn.Softmax(dim=1)).eval()


def samples(n: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, *SHAPE)).astype(np.float32)
