"""The weight calibration of ``quantize_4bit`` reaches the Akida program, code for code.

The reference kernels are those QuantizeML's quantizer sees (read from a max-abs
quantization of the same model: QuantizeML alone); the test runs
``int4.quantize_per_channel(..., narrow_range=True)`` on them and compares the
codes with the weights read back from the converted Akida model, for every
channel, on random architectures with He-normal weights.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from models import he_init
from torch import nn

from akida_workflows.errors import IncompatibleModelError
from akida_workflows.int4 import METHODS, quantize_per_channel
from akida_workflows.keras_bridge import (
    _quantizer_output,
    _weight_kernels,
    convert_keras,
    quantize_4bit,
    to_keras,
)

pytestmark = pytest.mark.slow


def _random_batchnorm(channels: int, rng) -> nn.BatchNorm2d:
    """A BatchNorm in eval mode with random statistics and affine parameters."""
    bn = nn.BatchNorm2d(channels)
    with torch.no_grad():
        for tensor, values in ((bn.running_mean, rng.normal(0, 0.5, channels)),
                               (bn.running_var, rng.uniform(0.2, 3.0, channels)),
                               (bn.weight, rng.uniform(0.3, 2.0, channels)),
                               (bn.bias, rng.normal(0, 0.3, channels))):
            tensor.copy_(torch.from_numpy(values.astype(np.float32)))
    return bn


def random_cnn(seed: int, batchnorm: bool | None = None, stride2: bool | None = None,
               separable: bool = False):
    """A random Akida-1.0-ready CNN: 1 or 3 input channels, 1-3 convs, 1-2 dense layers.

    Convolutions may carry a BatchNorm with random statistics (folded by ``to_keras``);
    the first may be a stride-2 ``padding=1`` convolution on an even map, which
    ``to_keras`` builds in flipped coordinates. ``batchnorm`` / ``stride2`` force
    either choice (default: random). ``separable`` adds a depthwise 3x3 → pointwise
    1x1 block after the first convolution (one SeparableConv2D for Akida 1.0).
    """
    rng = np.random.default_rng(seed)
    c = int(rng.choice([1, 3]))
    size = in_size = int(rng.choice([8, 12, 16]))
    layers, channels = [], c
    for i in range(int(rng.integers(1, 4))):
        out = int(rng.choice([4, 6, 8, 16]))
        if i == 0 and (rng.random() < 0.3 if stride2 is None else stride2):
            layers.append(nn.Conv2d(channels, out, 3, stride=2, padding=1))
            size //= 2
        else:
            k = int(rng.choice([1, 3, 5])) if i else int(rng.choice([3, 5]))
            layers.append(nn.Conv2d(channels, out, k, padding=k // 2))
        if rng.random() < 0.5 if batchnorm is None else batchnorm:
            layers.append(_random_batchnorm(out, rng))
        layers.append(nn.ReLU6())
        if i == 0 and size >= 12:
            layers.append(nn.MaxPool2d(2))
            size //= 2
        channels = out
        if i == 0 and separable:
            out = int(rng.choice([8, 12]))
            layers += [nn.Conv2d(channels, channels, 3, padding=1, groups=channels),
                       nn.Conv2d(channels, out, 1), _random_batchnorm(out, rng), nn.ReLU6()]
            channels = out
    layers.append(nn.Flatten())
    features = channels * size * size
    if rng.random() < 0.5:
        hidden = int(rng.choice([8, 12, 20]))
        layers += [nn.Linear(features, hidden), nn.ReLU6()]
        features = hidden
    layers.append(nn.Linear(features, int(rng.integers(2, 11))))
    model = he_init(nn.Sequential(*layers), seed, batchnorm=False)
    x = rng.uniform(0, 1, (32, c, in_size, in_size)).astype(np.float32)
    return model, (c, in_size, in_size), x


def _akida_layout(codes, keras_layer, kattr, akida_layer, version):
    """int4 codes (Keras layout) in the layout CNN2SNN writes for this Akida layer."""
    layer_type = str(akida_layer.parameters.layer_type).split(".")[-1]
    if kattr == "pointwise_kernel":
        return codes, akida_layer.get_variable("weights_pw")
    weights = akida_layer.get_variable("weights")
    if layer_type in ("Convolutional", "SeparableConvolutional", "Conv2D", "DepthwiseConv2D"):
        return np.flip(codes, (0, 1)), weights  # Akida kernels are spatially flipped
    if layer_type == "FullyConnected" and version == "v1":
        shape = keras_layer.inbound_nodes[0].inbound_layers.input_shape
        if len(shape) == 4:  # a Flatten feeds it: Akida reads (C, Y, X), Keras (X, Y, C)
            _, h, w, c = shape
            codes = codes.reshape(h, w, c, -1).transpose(2, 1, 0, 3)
        return codes.reshape(weights.shape), weights
    return codes, weights


def _check_codes(keras_model, x, version, **kwargs):
    reference = quantize_4bit(keras_model, x, akida_version=version, **kwargs)
    # The kernels QuantizeML quantizes (after its calibration), with axis and bits: those
    # of a max-abs quantization, where QuantizeML alone chooses the codes.
    refs = {(layer.name, kattr): (kernel.numpy(), quantizer.axis, quantizer.bitwidth, layer)
            for layer, kattr, quantizer, kernel in _weight_kernels(reference)}
    assert refs
    for method in METHODS:
        quantized = reference if method == "maxabs" else quantize_4bit(
            keras_model, x, akida_version=version, weight_calibration=method, **kwargs)
        akida_model = convert_keras(quantized)
        report = {(r["layer"], r["kernel"]): r for r in quantized.weight_calibration_report}
        assert set(report) == set(refs)
        keras_codes = {(layer.name, kattr): _quantizer_output(quantizer, kernel)[0]
                       for layer, kattr, quantizer, kernel in _weight_kernels(quantized)}
        for (name, kattr), (kernel, axis, bits, layer) in refs.items():
            flat = kernel.reshape(1, -1) if axis is None else kernel
            codes, _ = quantize_per_channel(flat, 0 if axis is None else axis, bits, method,
                                            narrow_range=True)
            # The quantized Keras layer: QuantizeML's quantizer gives exactly these codes.
            np.testing.assert_array_equal(keras_codes[(name, kattr)],
                                          codes.reshape(kernel.shape),
                                          err_msg=f"Keras {method} {name}.{kattr}")
            expected, got = _akida_layout(codes.reshape(kernel.shape), layer, kattr,
                                          akida_model.get_layer(name), version)
            assert got.dtype == np.int8
            np.testing.assert_array_equal(got, expected, err_msg=f"{method} {name}.{kattr}")
            qmax = 2 ** (bits - 1) - 1
            assert np.abs(got).max() == qmax  # each channel's range maps to the largest code
            if method != "maxabs":
                assert report[(name, kattr)]["sqnr_db"] != report[(name, kattr)]["sqnr_maxabs_db"] \
                    or report[(name, kattr)]["clipped"] == 0
        if method == "mse":  # the MSE codes are never further from the weights than max-abs
            for row in report.values():
                assert row["sqnr_db"] >= row["sqnr_maxabs_db"] - 1e-9, row


@pytest.mark.parametrize("seed", [2, 37])
def test_akida_v1_weights_are_the_int4_codes(seed):
    model, shape, x = random_cnn(seed)
    keras_model = to_keras(model, shape)
    _check_codes(keras_model, x, "v1")


def test_akida_v1_codes_through_batchnorm_and_the_flip_route():
    """Random BatchNorm statistics folded into the kernels, a stride-2 ``padding=1``
    input convolution that ``to_keras`` builds in flipped coordinates (flipped kernels),
    and a depthwise-separable block (Akida 1.0 SeparableConvolutional: depthwise and
    pointwise codes both checked)."""
    model, shape, x = random_cnn(71, batchnorm=True, stride2=True, separable=True)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    keras_model = to_keras(model, shape)
    assert keras_model.input_flip
    _check_codes(keras_model, x, "v1")


@pytest.mark.parametrize("seed", [5])
def test_akida_v2_keras_path_weights_are_the_int4_codes(seed):
    model, shape, x = random_cnn(seed)
    _check_codes(to_keras(model, shape), x, "v2")


def test_other_bit_widths_and_a_separable_block():
    """2-bit weights, a 4-bit input layer, and a SeparableConv2D (dw per-tensor, pw per-channel)."""
    import tf_keras as keras

    rng = np.random.default_rng(3)
    inputs = keras.Input((12, 12, 1))
    y = keras.layers.ReLU(6.0)(keras.layers.Conv2D(6, 3, padding="same")(inputs))
    y = keras.layers.MaxPool2D(padding="same")(y)
    y = keras.layers.ReLU(6.0)(keras.layers.SeparableConv2D(10, 3, padding="same")(y))
    y = keras.layers.Dense(4)(keras.layers.Flatten()(y))
    keras_model = keras.Model(inputs, y)
    for layer in keras_model.layers:
        weights = layer.get_weights()
        if weights:
            layer.set_weights([
                (rng.standard_normal(w.shape) * np.sqrt(2 / np.prod(w.shape[:-1]))
                 if w.ndim > 1 else rng.normal(0, 0.1, w.shape)).astype(np.float32)
                for w in weights])
    x = rng.uniform(0, 1, (32, 12, 12, 1)).astype(np.float32)
    _check_codes(keras_model, x, "v1", weight_bits=2, input_weight_bits=4)


def test_tiny_channels_keep_quantizeml_codes():
    """A channel under QuantizeML's scale floor (1e-6) is left to QuantizeML, and reported."""
    model, shape, x = random_cnn(11)
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    with torch.no_grad():
        first.weight[0] *= 1e-7
    quantized = quantize_4bit(to_keras(model, shape), x, weight_calibration="mse")
    rows = quantized.weight_calibration_report
    assert rows[0]["kept"] == 1 and all(r["kept"] == 0 for r in rows[1:])
    assert convert_keras(quantized) is not None


def test_calibration_options_are_checked():
    model, shape, x = random_cnn(23)
    keras_model = to_keras(model, shape)
    for kwargs, match in [
        ({"weight_calibration": "kl"}, "weight_calibration must be one of"),
        ({"weight_calibration": "percentile", "weight_percentile": 0}, r"\(0, 100\]"),
        ({"weight_percentile": 101.0}, r"\(0, 100\]"),
        ({"num_samples": len(x) + 1}, f"only {len(x)} calibration samples"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"calibration_epochs": 1.5}, "calibration_epochs must be a positive integer"),
        ({"weight_bits": 3}, "Akida 1.0 layers hold 1, 2 or 4-bit weights"),
        ({"weight_bits": 1, "weight_calibration": "mse"}, "2 bits or more"),
    ]:
        with pytest.raises(IncompatibleModelError, match=match):
            quantize_4bit(keras_model, x, **kwargs)


def test_activation_calibration_options_change_the_ranges():
    """Batch size and sample count reach QuantizeML's observers (measured on the ranges)."""
    model, shape, x = random_cnn(37)
    keras_model = to_keras(model, shape)

    def ranges(**kwargs):
        """Calibrated ranges: QuantizeML stores a power-of-two range and the ratio to it."""
        quantized = quantize_4bit(keras_model, x, **kwargs)
        out = []
        for layer in quantized.layers:
            quantizer = getattr(layer, "out_quantizer", None)
            if quantizer is not None:
                rate = getattr(quantizer, "rescaling_rate", None)
                out.append(np.ravel(quantizer.range_max.numpy()
                                    / (1.0 if rate is None else rate.numpy())))
        return np.concatenate(out)

    default = ranges()
    np.testing.assert_array_equal(default, ranges(batch_size=1))  # QuantizeML's default
    whole = ranges(batch_size=len(x))  # one batch: the largest activation of all samples
    assert np.all(whole >= default - 1e-6) and np.any(whole > default * 1.01)
    assert not np.array_equal(ranges(num_samples=8), default)
