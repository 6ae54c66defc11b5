"""Depthwise-separable networks on both Akida targets: the separable merge for Akida 1.0."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from akida_workflows.deploy import map_report
from akida_workflows.errors import IncompatibleModelError
from akida_workflows.keras_bridge import (
    convert_keras,
    input_flip,
    quantize_4bit,
    separable_blocks,
    to_keras,
    to_nhwc,
)


def _randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """He-normal weights, random biases and BatchNorm statistics (default init hides bugs)."""
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight)
            if m.bias is not None:
                nn.init.normal_(m.bias, 0, 0.5)
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.3)
    return model.eval()


def _separable(c_in, c_out, stride=1, dw_bias=True):
    return [nn.Conv2d(c_in, c_in, 3, stride=stride, padding=1, groups=c_in, bias=dw_bias),
            nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU6()]


def _dscnn(stem_stride=2, dw_bias=True):
    return _randomize(nn.Sequential(
        nn.Conv2d(1, 8, 3, stride=stem_stride, padding=1, bias=False), nn.BatchNorm2d(8),
        nn.ReLU6(),
        *_separable(8, 16, dw_bias=dw_bias), *_separable(16, 16, stride=2, dw_bias=dw_bias),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    ))


def _x(n, size, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, 1, size, size)).astype(np.float32)


@pytest.mark.parametrize("size, stem_stride, dw_bias", [(28, 2, True), (16, 1, False),
                                                        (20, 2, True)])
def test_separable_merge_is_exact(size, stem_stride, dw_bias):
    model = _dscnn(stem_stride, dw_bias)
    keras_model = to_keras(model, (1, size, size))
    merged = separable_blocks(keras_model)
    kinds = [type(layer).__name__ for layer in merged.layers]
    assert kinds.count("SeparableConv2D") == 2 and "DepthwiseConv2D" not in kinds
    assert "SeparableConv2D" in merged.rewrites[-1]
    assert input_flip(merged) == input_flip(keras_model)
    x = _x(8, size)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    out = merged.predict(to_nhwc(x, flip=merged), verbose=0)
    assert np.abs(ref).max() > 1.0  # outputs that are not near-constant
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-4)


def test_depthwise_with_an_activation_before_the_pointwise_is_not_merged():
    model = _randomize(nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU6(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU6(), nn.Conv2d(8, 8, 1), nn.ReLU6(),
        nn.Flatten(), nn.Linear(8 * 8 * 8, 10)))
    keras_model = to_keras(model, (1, 8, 8))
    assert separable_blocks(keras_model) is keras_model
    # a depthwise with a channel multiplier is no separable layer either
    model = _randomize(nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU6(),
        nn.Conv2d(8, 16, 3, padding=1, groups=8), nn.Conv2d(16, 8, 1), nn.ReLU6(),
        nn.Flatten(), nn.Linear(8 * 8 * 8, 10)))
    keras_model = to_keras(model, (1, 8, 8))
    assert separable_blocks(keras_model) is keras_model


@pytest.mark.slow
def test_dscnn_4bit_maps_fully_on_akd1000():
    model = _dscnn()
    x = _x(64, 28)
    quantized = quantize_4bit(to_keras(model, (1, 28, 28)), x, akida_version="v1")
    akida_model = convert_keras(quantized)
    report = map_report(akida_model, "AKD1000")
    assert report.fully_mapped, report
    kinds = [type(layer).__name__ if not hasattr(layer, "parameters") else
             str(layer.parameters.layer_type) for layer in akida_model.layers]
    assert sum("SeparableConvolutional" in k for k in kinds) == 2, kinds
    # Akida computes what the quantized Keras model computes (argmax agrees).
    nhwc = to_nhwc(x, flip=quantized)
    out = akida_model.predict(nhwc).reshape(len(x), -1)
    ref = quantized.predict(nhwc, verbose=0)
    assert np.mean(out.argmax(1) == ref.argmax(1)) >= 0.9


@pytest.mark.slow
def test_mobilenet_v1_block_is_refused_for_akida1_with_the_fix():
    model = _randomize(nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU6(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU6(),
        nn.Conv2d(8, 16, 1), nn.ReLU6(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)))
    quantized = quantize_4bit(to_keras(model, (1, 12, 12)), _x(32, 12), akida_version="v1")
    with pytest.raises(IncompatibleModelError, match="separable") as info:
        convert_keras(quantized)
    assert "dwconv_2" in str(info.value)


class _Residual(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + self.shortcut(x))


@pytest.mark.slow
def test_residual_adds_run_in_hardware_on_akida2(tmp_path):
    import akida

    from akida_workflows.convert import quantize_onnx, to_akida
    from akida_workflows.export import export_onnx

    model = _randomize(nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        _Residual(8, 8, 1), _Residual(8, 16, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)))
    x = _x(32, 16)
    exported = export_onnx(model, torch.from_numpy(x[:1]), tmp_path / "resnet.onnx")
    akida_model = to_akida(quantize_onnx(exported, x))
    report = map_report(akida_model, "SixNodesIPv2")
    adds = [layer for layer in report.layers if layer.layer_type == "Add"]
    assert len(adds) == 2 and all(layer.backend == "hardware" for layer in adds), report
    assert report.fully_mapped, report
    # the judge: the whole model maps with hw_only=True
    akida_model.map(akida.SixNodesIPv2(), hw_only=True)
    assert all(seq.backend == akida.BackendType.Hardware for seq in akida_model.sequences)


def test_residual_network_is_refused_for_akida1_as_a_branch_with_the_fix():
    model = _randomize(nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU6(), _Residual(8, 8, 1),
        nn.Flatten(), nn.Linear(8 * 8 * 8, 10)))
    with pytest.raises(IncompatibleModelError, match="branches") as info:
        to_keras(model, (1, 8, 8))
    message = str(info.value)
    assert "residual" in message and "Akida 2.0" in message and "ONNX path" in message
