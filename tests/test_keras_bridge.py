from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from akida_workflows.deploy import map_report
from akida_workflows.errors import IncompatibleModelError
from akida_workflows.keras_bridge import (
    convert_keras,
    fine_tune,
    quantize_4bit,
    to_keras,
    to_nhwc,
    unbounded_relus,
)


def _nchw(n, c, h, w, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, c, h, w)).astype(np.float32)


def _check(model, shape, atol=1e-4):
    model.eval()
    keras_model = to_keras(model, shape)
    x = _nchw(4, *shape)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    out = keras_model.predict(to_nhwc(x), verbose=0)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, atol=atol, rtol=1e-4)
    return keras_model


def test_cnn_with_flatten_order_and_batchnorm():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6(), nn.MaxPool2d(2),
        nn.Conv2d(8, 4, 3, padding=1), nn.Hardtanh(0.0, 2.0),
        nn.Flatten(), nn.Dropout(0.3), nn.Linear(4 * 5 * 6, 7), nn.ReLU(), nn.Linear(7, 3),
    )
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
    keras_model = _check(model, (3, 10, 12))
    names = [layer.name for layer in keras_model.layers]
    assert "conv_0" in names and "clamp_5" in names and "dense_8" in names
    assert unbounded_relus(keras_model) == ["relu_9"]


def test_depthwise_avgpool_and_global_pool():
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(2, 6, 3, padding=1), nn.ReLU(),
        nn.Conv2d(6, 12, 3, padding=1, groups=6), nn.ReLU(),  # depthwise, multiplier 2
        nn.AvgPool2d(2), nn.Conv2d(12, 5, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(5, 2),
    )
    _check(model, (2, 8, 8))


@settings(max_examples=8, deadline=None)
@given(c=st.integers(1, 3), h=st.integers(3, 9), w=st.integers(3, 9),
       filters=st.integers(1, 5), k=st.sampled_from([1, 3]), seed=st.integers(0, 1000))
def test_random_conv_linear_models(c, h, w, filters, k, seed):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(c, filters, k, padding=k // 2), nn.ReLU6(),
                          nn.Flatten(), nn.Linear(filters * h * w, 3))
    _check(model, (c, h, w))


def test_strided_same_padding_on_odd_input_is_exact():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(3 * 7 * 7, 2))
    _check(model, (1, 13, 13))  # Keras 'same' pads 1/1 here, as PyTorch does


def test_strided_padding_keras_cannot_express():
    model = nn.Sequential(nn.Conv2d(1, 3, 3, stride=2, padding=1), nn.Flatten(),
                          nn.Linear(3 * 7 * 7, 2))
    with pytest.raises(IncompatibleModelError, match=r"0 \(Conv2d\): padding=\(1, 1\).*'same'"):
        to_keras(model, (1, 14, 14))


@pytest.mark.parametrize("module, match", [
    (nn.LSTM(4, 4), "recurrent"),
    (nn.GELU(), "ReLU6"),
    (nn.Conv2d(4, 4, 3, padding=1, groups=2), "grouped convolution"),
    (nn.Conv2d(4, 4, 3, padding=1, dilation=2), "dilation"),
    (nn.Softmax(dim=1), "Softmax"),
])
def test_unsupported_modules_are_named(module, match):
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), module)
    with pytest.raises(IncompatibleModelError, match=match) as info:
        to_keras(model, (1, 8, 8))
    assert info.value.nodes == ["1"]


def test_branching_model_is_refused():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1)

        def forward(self, x):
            return self.conv(x) + x

    with pytest.raises(IncompatibleModelError, match="chain-shaped"):
        to_keras(Residual(), (2, 4, 4))


def test_traced_module_with_functional_ops():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)
            self.fc = nn.Linear(2 * 4 * 4, 3)

        def forward(self, x):
            return self.fc(torch.flatten(torch.relu(self.conv(x)), 1))

    _check(Net(), (1, 4, 4))


@pytest.mark.parametrize("clamp", [
    lambda x: torch.clamp(x, 0, 4.0),
    lambda x: x.clamp(min=0.0, max=2.5),
    lambda x: torch.nn.functional.hardtanh(x, 0.0, 3.0),
])
def test_functional_clamps_become_bounded_relus(clamp):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)
            self.fc = nn.Linear(2 * 4 * 4, 3)

        def forward(self, x):
            return self.fc(torch.flatten(clamp(self.conv(x)), 1))

    keras_model = _check(Net(), (1, 4, 4))
    assert unbounded_relus(keras_model) == []


def test_clamp_that_is_not_a_relu_is_refused():
    class Net(nn.Module):
        def forward(self, x):
            return torch.clamp(x, -1, 1)

    with pytest.raises(IncompatibleModelError, match="clamped ReLU"):
        to_keras(Net(), (1, 4, 4))


def test_bad_input_shape():
    with pytest.raises(IncompatibleModelError, match="channel-first"):
        to_keras(nn.Sequential(nn.Flatten()), (28, 28))


@pytest.fixture(scope="module")
def small_v1():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU6(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU6(), nn.Flatten(), nn.Linear(8 * 8 * 8, 10),
    ).eval()
    return model, to_keras(model, (1, 16, 16))


def test_4bit_akida_v1_maps_on_akd1000(small_v1):
    model, keras_model = small_v1
    x = to_nhwc(_nchw(64, 1, 16, 16))
    quantized = quantize_4bit(keras_model, x)
    assert quantized.akida_version == "v1"
    akida_model = convert_keras(quantized)
    assert str(akida_model.ip_version).endswith("v1")
    report = map_report(akida_model, "AKD1000")
    assert report.fully_mapped, report
    # Akida computes what the quantized Keras model computes, up to the rounding of
    # the last layer's output (not bit-exact in Akida 1.0).
    out = akida_model.predict(x).reshape(len(x), -1)
    ref = quantized.predict(x, verbose=0)
    assert np.abs(out - ref).max() < 0.05 * np.abs(ref).max()
    assert np.mean(out.argmax(1) == ref.argmax(1)) >= 0.9
    # 4-bit weights: each output channel of the second conv holds at most 16 values.
    conv = next(layer for layer in akida_model.layers if layer.name == "conv_3")
    weights = conv.variables["weights"]
    assert all(len(np.unique(weights[..., k])) <= 16 for k in range(weights.shape[-1]))


def test_akida_v2_from_keras(small_v1):
    _, keras_model = small_v1
    x = to_nhwc(_nchw(32, 1, 16, 16))
    akida_model = convert_keras(quantize_4bit(keras_model, x, akida_version="v2"))
    assert map_report(akida_model, "SixNodesIPv2").compute_layers


def test_unbounded_relu_for_v1_names_layer_and_fix():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 8 * 8, 2)).eval()
    keras_model = to_keras(model, (1, 8, 8))
    with pytest.raises(IncompatibleModelError, match=r"relu_1.*nn.ReLU6\(\)") as info:
        quantize_4bit(keras_model, to_nhwc(_nchw(8, 1, 8, 8)))
    assert info.value.nodes == ["relu_1"]


def test_quantize_4bit_bad_inputs(small_v1):
    _, keras_model = small_v1
    nchw = _nchw(8, 1, 16, 16)
    with pytest.raises(IncompatibleModelError, match="look NCHW.*to_nhwc"):
        quantize_4bit(keras_model, nchw)
    with pytest.raises(IncompatibleModelError, match="uint8"):
        quantize_4bit(keras_model, np.zeros((8, 16, 16, 1), np.uint8))
    with pytest.raises(IncompatibleModelError, match="NaN"):
        quantize_4bit(keras_model, np.full((8, 16, 16, 1), np.nan, np.float32))
    with pytest.raises(IncompatibleModelError, match="akida_version"):
        quantize_4bit(keras_model, to_nhwc(nchw), akida_version="v3")
    with pytest.raises(IncompatibleModelError, match="per_channel=False cannot reach Akida 1.0"):
        quantize_4bit(keras_model, to_nhwc(nchw), per_channel=False)


def test_convert_needs_a_version(small_v1):
    _, keras_model = small_v1
    with pytest.raises(IncompatibleModelError, match="which Akida version"):
        convert_keras(keras_model)


def test_fine_tune_runs_and_is_deterministic(small_v1):
    _, keras_model = small_v1
    x = to_nhwc(_nchw(64, 1, 16, 16))
    y = np.arange(64) % 10
    losses = []
    for _ in range(2):
        quantized = quantize_4bit(keras_model, x)
        losses.append(fine_tune(quantized, x, y, epochs=2, lr=1e-3, batch_size=16))
    assert len(losses[0]) == 2 and losses[0] == losses[1]
    with pytest.raises(IncompatibleModelError, match="64 inputs but 3 labels"):
        fine_tune(quantized, x, y[:3])
