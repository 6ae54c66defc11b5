"""tests/zoo.py's verdict memo judges a model once, and never mistakes one model for another."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from zoo import fingerprint


def _cropper(width: int) -> nn.Module:
    class Crop(nn.Module):  # the same class name and weights; only a constant differs
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = nn.Conv2d(1, 4, 3, padding=1)

        def forward(self, x):
            return self.conv(x[:, :, :width])

    return Crop().eval()


def test_fingerprint_tells_apart_what_the_verdict_depends_on():
    base = fingerprint(_cropper(8), (1, 16, 16), "akida1")
    assert base == fingerprint(_cropper(8), (1, 16, 16), "akida1")  # same model: one verdict
    assert base != fingerprint(_cropper(12), (1, 16, 16), "akida1")  # a constant in forward
    assert base != fingerprint(_cropper(8), (1, 16, 16), "akida2")  # the target
    assert base != fingerprint(_cropper(8), (1, 16, 12), "akida1")  # the input shape
    assert base != fingerprint(_cropper(8).train(), (1, 16, 16), "akida1")  # the mode
    changed = _cropper(8)
    with torch.no_grad():
        changed.conv.weight[0, 0, 0, 0] += 1e-3
    assert base != fingerprint(changed, (1, 16, 16), "akida1")  # one weight
    x = np.zeros((4, 1, 16, 16), np.float32)
    assert fingerprint(_cropper(8), (1, 16, 16), "akida1", x) != \
        fingerprint(_cropper(8), (1, 16, 16), "akida1", x + 1)  # the calibration samples
    # Hyperparameters that only the module's repr shows (a leaf module's stride)
    a = nn.Sequential(nn.Conv2d(1, 4, 3, stride=1))
    b = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2))
    b.load_state_dict(a.state_dict())
    assert fingerprint(a, (1, 16, 16), "akida1") != fingerprint(b, (1, 16, 16), "akida1")


def test_untraceable_models_are_not_memoized():
    class Branchy(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x  # data-dependent control flow: torch.fx refuses

    assert fingerprint(Branchy(), (1, 4, 4), "akida2") is None
