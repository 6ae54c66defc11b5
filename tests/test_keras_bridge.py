from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from models import he_init
from torch import nn

from akida_workflows.deploy import map_report
from akida_workflows.errors import IncompatibleModelError
from akida_workflows.keras_bridge import (
    convert_keras,
    fine_tune,
    input_flip,
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


def test_padding_keras_cannot_express_in_either_orientation():
    model = nn.Sequential(nn.Conv2d(1, 3, 3, stride=2, padding=2), nn.Flatten(),
                          nn.Linear(3 * 8 * 8, 2))
    with pytest.raises(IncompatibleModelError,
                       match=r"0 \(Conv2d\): kernel \(3, 3\), stride \(2, 2\), padding \(2, 2\) on a "
                             r"14x14 map: neither .* in original or flipped") as info:
        to_keras(model, (1, 14, 14))
    assert info.value.nodes == ["0"]


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


def test_torchscript_is_refused_with_the_fix():
    model = torch.jit.script(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU6()).eval())
    with pytest.raises(IncompatibleModelError, match="TorchScript.*state_dict.*ONNX path"):
        to_keras(model, (1, 8, 8))


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
    with pytest.raises(IncompatibleModelError, match=r"NHWC \(to_nhwc\(x, flip=model\)\)"):
        quantize_4bit(keras_model, nchw[:, :, :, :15])
    with pytest.raises(IncompatibleModelError, match="uint8"):
        quantize_4bit(keras_model, np.zeros((8, 16, 16, 1), np.uint8))
    with pytest.raises(IncompatibleModelError, match="NaN"):
        quantize_4bit(keras_model, np.full((8, 16, 16, 1), np.nan, np.float32))
    with pytest.raises(IncompatibleModelError, match="akida_version"):
        quantize_4bit(keras_model, to_nhwc(nchw), akida_version="v3")
    with pytest.raises(IncompatibleModelError, match="per_channel=False cannot reach Akida 1.0"):
        quantize_4bit(keras_model, to_nhwc(nchw), per_channel=False)


def _failing_first(real, errors):
    """QuantizeML's ``quantize``, raising ``errors`` (in order) on its first calls."""
    calls = []

    def quantize(*args, **kwargs):
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return real(*args, **kwargs)

    return quantize, calls


def _binding_race() -> Exception:
    """The failure seen in CI: Keras wraps TensorFlow's AttributeError in its own."""
    inner = AttributeError("'TfMethodTarget' object has no attribute '_var'")
    outer = AttributeError('Exception encountered when calling layer "conv_0" '
                           "(type QuantizedConv2D).")
    outer.__cause__ = inner
    return outer


def test_autograph_binding_race_is_quantized_again_and_said_so(small_v1, monkeypatch, caplog):
    import quantizeml.models

    _, keras_model = small_v1
    x = to_nhwc(_nchw(16, 1, 16, 16))
    reference = quantize_4bit(keras_model, x)
    assert reference.quantization_attempts == 1
    fake, calls = _failing_first(quantizeml.models.quantize, [_binding_race()])
    monkeypatch.setattr(quantizeml.models, "quantize", fake)
    with caplog.at_level("INFO", logger="akida_workflows"):
        quantized = quantize_4bit(keras_model, x)
    assert len(calls) == 2 and quantized.quantization_attempts == 2
    assert "TfMethodTarget" in caplog.text and "once more" in caplog.text
    for a, b in zip(reference.get_weights(), quantized.get_weights()):  # the same result
        np.testing.assert_array_equal(a, b)
    # Twice in a row, or any other failure: an error with the cause, no more attempts.
    fake, calls = _failing_first(quantizeml.models.quantize, [_binding_race()] * 2)
    monkeypatch.setattr(quantizeml.models, "quantize", fake)
    with pytest.raises(IncompatibleModelError, match="QuantizeML could not quantize"):
        quantize_4bit(keras_model, x)
    assert len(calls) == 2
    fake, calls = _failing_first(quantizeml.models.quantize, [AttributeError("no '_var'")])
    monkeypatch.setattr(quantizeml.models, "quantize", fake)
    with pytest.raises(IncompatibleModelError, match="no '_var'"):
        quantize_4bit(keras_model, x)
    assert len(calls) == 1


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


# --------------------------------------------------------------------------- heads (issue 15)


def _body(channels=8):
    return [nn.Conv2d(1, channels, 3, padding=1), nn.ReLU6(),
            nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.ReLU6()]


HEADS = {
    "avgpool_full_linear": lambda c, n: [nn.AvgPool2d(n), nn.Flatten(), nn.Linear(c, 10)],
    "adaptive_flatten_linear": lambda c, n: [nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                             nn.Dropout(0.2), nn.Linear(c, 10)],
    "maxpool_flatten_linear": lambda c, n: [nn.MaxPool2d(2), nn.Flatten(),
                                            nn.Linear(c * (n // 2) ** 2, 10)],
}


def _head_model(head, final=None, n=8, channels=8):
    layers = _body(channels) + HEADS[head](2 * channels, n) + ([final] if final else [])
    return he_init(nn.Sequential(*layers))


@pytest.mark.parametrize("pool, flat", [
    (nn.AvgPool2d(6), 16), (nn.AdaptiveAvgPool2d(1), 16), (nn.AvgPool2d(2), 16 * 9),
    (nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), 16 * 9),
    (nn.AdaptiveAvgPool2d(2), 16 * 4),
])
def test_average_pooling_into_linear_becomes_one_exact_dense(pool, flat):
    model = he_init(nn.Sequential(*_body(), pool, nn.Flatten(), nn.Linear(flat, 5)), seed=3)
    keras_model = _check(model, (1, 6, 6), atol=1e-5)
    kinds = [type(layer).__name__ for layer in keras_model.layers]
    assert kinds[-2:] == ["Flatten", "Dense"] and not any("Pool" in k for k in kinds)
    assert keras_model.layers[-1].get_weights()[0].shape == (6 * 6 * 16, 5)
    assert "folded into one Dense" in keras_model.rewrites[0]


def test_functional_average_pooling_head_is_folded():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            x = torch.nn.functional.relu6(self.conv(x))
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    keras_model = _check(he_init(Net()), (1, 5, 5), atol=1e-5)
    assert [type(lay).__name__ for lay in keras_model.layers][-2:] == ["Flatten", "Dense"]


def test_final_softmax_is_kept_for_the_host():
    model = _head_model("adaptive_flatten_linear", nn.Softmax(dim=1))
    keras_model = _check(model, (1, 8, 8), atol=1e-5)
    assert keras_model.layers[-1].get_config()["activation"] == "softmax"
    inner = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.LogSoftmax(dim=1), nn.Flatten(),
                          nn.Linear(4 * 16, 2))
    with pytest.raises(IncompatibleModelError, match=r"only as the model's last op") as info:
        to_keras(inner, (1, 4, 4))
    assert info.value.nodes == ["1"]


def test_pooled_conv_before_dense_gets_an_exact_identity_conv():
    model = _head_model("maxpool_flatten_linear", nn.Softmax(dim=1))
    keras_model = _check(model, (1, 8, 8), atol=1e-5)
    unpool = keras_model.get_layer("unpool_4")
    assert unpool.kernel_size == (1, 1)
    assert keras_model.get_layer("unpool_relu_4").max_value == 6.0
    assert any("identity 1x1" in note for note in keras_model.rewrites)
    pooled_later = he_init(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.MaxPool2d(2),
                                          nn.Hardtanh(0, 2.0), nn.Flatten(), nn.Linear(16, 3)))
    keras_model = _check(pooled_later, (1, 4, 4), atol=1e-5)
    assert keras_model.get_layer("unpool_relu_1").max_value == 2.0


def _convert(model, version, n=8, seed=0, **kwargs):
    x = _nchw(32, 1, n, n, seed)
    keras_model = to_keras(model, (1, n, n))
    quantized = quantize_4bit(keras_model, to_nhwc(x), akida_version=version)
    return x, quantized, convert_keras(quantized, **kwargs)


# Every pair of (head, target), (head, final softmax) and (target, final softmax) once:
# a pairwise design of the 12 combinations in 6 conversions (a conversion costs ~5 s of
# QuantizeML and CNN2SNN graph building whatever the model's size).
HEAD_CASES = [
    ("maxpool_flatten_linear", "softmax", "v1", "AKD1000"),
    ("maxpool_flatten_linear", None, "v2", "SixNodesIPv2"),
    ("avgpool_full_linear", None, "v1", "AKD1000"),
    ("avgpool_full_linear", "softmax", "v2", "SixNodesIPv2"),
    ("adaptive_flatten_linear", None, "v1", "AKD1000"),
    ("adaptive_flatten_linear", "softmax", "v2", "SixNodesIPv2"),
]


def test_head_cases_cover_every_pair():
    assert {h for h, *_ in HEAD_CASES} == set(HEADS)
    for i, j in ((0, 1), (0, 2), (1, 2)):
        pairs = {(case[i], case[j]) for case in HEAD_CASES}
        first = {case[i] for case in HEAD_CASES}
        second = {case[j] for case in HEAD_CASES}
        assert pairs == {(a, b) for a in first for b in second}, (i, j)


@pytest.mark.slow
@pytest.mark.parametrize("head, final, version, device", HEAD_CASES)
def test_heads_users_write_convert_completely(head, final, version, device):
    model = _head_model(head, nn.Softmax(dim=1) if final else None)
    x, quantized, akida_model = _convert(model, version)
    assert tuple(akida_model.output_shape) == (1, 1, 10)
    report = map_report(akida_model, device)
    assert report.fully_mapped, report
    # The pooled conv before the Dense gets an identity 1x1 conv after it (exact in float).
    assert len(report.compute_layers) == 3 + (head == "maxpool_flatten_linear")
    # The Akida model computes the quantized Keras model's logits (a final softmax runs on
    # the host: same argmax).
    out = akida_model.predict(to_nhwc(x)).reshape(len(x), -1)
    logits = quantized if final is None else quantized.__class__(
        quantized.input, quantized.layers[-2].output)
    ref = logits.predict(to_nhwc(x), verbose=0)
    # Neither target is bit-exact with QuantizeML here: Akida 1.0 rounds each layer's output
    # differently (measured ≤ 6 % of the logit range); the Keras-path Akida 2.0 model differs
    # by up to 20 % once its Dense has 1024 inputs (bit-exact at 256: an upstream mismatch).
    assert np.abs(out - ref).max() <= (0.1 if version == "v1" else 0.25) * np.abs(ref).max()
    assert np.mean(out.argmax(1) == ref.argmax(1)) >= 0.9


@pytest.mark.slow
def test_issue_model_converts_to_ten_fully_mapped_outputs():
    class M(nn.Module):  # issue 15: average pooling over the whole 28x28 map, then Linear
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(1, 16, 3, padding=1)
            self.a1 = nn.ReLU6()
            self.c2 = nn.Conv2d(16, 32, 3, padding=1)
            self.a2 = nn.ReLU6()
            self.pool = nn.AvgPool2d(28)
            self.fc = nn.Linear(32, 10)

        def forward(self, x):
            x = self.a2(self.c2(self.a1(self.c1(x))))
            return self.fc(torch.flatten(self.pool(x), 1))

    model = he_init(M())
    x, quantized, akida_model = _convert(model, "v1", n=28)
    assert tuple(akida_model.output_shape) == (1, 1, 10)
    report = map_report(akida_model, "AKD1000")
    assert report.fully_mapped and len(report.compute_layers) == 3, report
    out = akida_model.predict(to_nhwc(x)).reshape(len(x), -1)
    assert np.mean(out.argmax(1) == quantized.predict(to_nhwc(x), verbose=0).argmax(1)) >= 0.9


@pytest.mark.slow
def test_truncated_conversion_is_refused_with_the_dropped_layer():
    model = he_init(nn.Sequential(*_body(), nn.AvgPool2d(2), nn.Conv2d(16, 8, 3, padding=1),
                                   nn.ReLU6(), nn.Flatten(), nn.Linear(8 * 16, 10)))
    with pytest.raises(IncompatibleModelError,
                       match=r"2 of 4 compute layers.*before avgpool_4 \(AveragePooling2D\).*"
                             r"Conversion stops at layer relu6_3.*nn.MaxPool2d") as info:
        _convert(model, "v1")
    assert info.value.nodes == ["avgpool_4"]
    with pytest.warns(UserWarning, match="partial Akida model.*avgpool_4"):
        _, _, partial = _convert(model, "v1", allow_partial=True)
    assert tuple(partial.output_shape) == (8, 8, 16)


@pytest.mark.slow
def test_v1_refusals_name_the_layer_and_the_fix():
    gap_last = he_init(nn.Sequential(*_body(), nn.AdaptiveAvgPool2d(1), nn.Flatten()))
    with pytest.raises(IncompatibleModelError, match=r"gap followed by dense.*Linear") as info:
        _convert(gap_last, "v1")
    assert info.value.nodes == ["gap_4"]
    final_relu = _head_model("maxpool_flatten_linear", nn.ReLU6())
    with pytest.raises(IncompatibleModelError, match=r"remove relu6_7 \(the final ReLU") as info:
        _convert(final_relu, "v1")
    assert info.value.nodes == ["relu6_7"]


R6 = nn.ReLU6
_V1_REFUSED = {  # name: (layers after Conv2d(1, 8) → ReLU6, input size, layer at fault, fix)
    # MobileNetV1's block (depthwise → ReLU → pointwise) and a depthwise feeding a strided
    # 1x1: no separable layer (the second was told 'put nn.ReLU6() after dwconv_2' when the
    # fix was read from CNN2SNN's text: 'The layer dwconv_2 followed by conv_3 ...')
    "depthwise_relu_pointwise": ([nn.Conv2d(8, 8, 3, padding=1, groups=8), R6(),
                                  nn.Conv2d(8, 16, 1), R6(), nn.Flatten(),
                                  nn.Linear(16 * 64, 4)], 8, "dwconv_2", "only inside a separable"),
    "depthwise_strided_pointwise": ([nn.Conv2d(8, 8, 3, padding=1, groups=8),
                                     nn.Conv2d(8, 16, 1, stride=2), R6(), nn.Flatten(),
                                     nn.Linear(16 * 16, 4)], 8, "dwconv_2",
                                    "Move the stride into the depthwise convolution (dwconv_2 "
                                    "with stride 2, conv_3 with stride 1"),
    "conv_feeds_conv": ([nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1), R6(),
                         nn.Flatten(), nn.Linear(8 * 64, 4)], 8, "conv_2",
                        "put nn.ReLU6() (or a clamp) after conv_2"),
    # a 'valid' convolution pooled with ceil_mode (Keras 'same'): the paddings differ
    "pool_padding": ([nn.Conv2d(8, 8, 3), nn.MaxPool2d(2, ceil_mode=True), R6(), nn.Flatten(),
                      nn.Linear(8 * 49, 4)], 15, "maxpool_3",
                     "give the MaxPool2d maxpool_3 padding matching conv_2 (valid)"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(_V1_REFUSED))
def test_v1_refusals_are_explained_from_the_model_not_the_message(name):
    """What CNN2SNN refuses, diagnosed from the quantized model's layers (CNN2SNN's own
    block, depthwise and padding tests), with the Keras layer at fault as the node."""
    layers, n, node, fix = _V1_REFUSED[name]
    model = he_init(nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), R6(), *layers))
    with pytest.raises(IncompatibleModelError) as info:
        _convert(model, "v1", n=n)
    assert info.value.nodes == [node], str(info.value)
    assert fix in str(info.value).split(" Fix: ", 1)[1], str(info.value)


@pytest.mark.slow
def test_cli_refuses_a_truncated_akida1_model_with_exit_3(tmp_path, capsys):
    from akida_workflows.cli import main

    model = he_init(nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU6(), nn.AvgPool2d(2),
                                   nn.Conv2d(8, 8, 3, padding=1), nn.ReLU6(), nn.Flatten(),
                                   nn.Linear(8 * 16, 10)))
    torch.save(model, tmp_path / "m.pt")
    np.save(tmp_path / "s.npy", _nchw(16, 1, 8, 8))
    out = tmp_path / "m.fbz"
    code = main(["convert", str(tmp_path / "m.pt"), "--samples", str(tmp_path / "s.npy"),
                 "--target", "akida1", "-o", str(out), "--trust-pickle"])
    assert code == 3
    err = capsys.readouterr().err  # the user's module and the avg-pool rule, not Keras' avgpool_2
    assert "2 (AvgPool2d): average pooling over 2x2 windows: Akida 1.0 has no" in err, err
    assert "Fix: use nn.MaxPool2d(2)" in err and "avgpool_2" not in err, err
    assert not out.exists()


# ------------------------------------------------------------------- tracer (issue 10 item 4)


class LeNet5(nn.Module):
    """The classic LeNet-5 as people write it: one pooling module called twice,
    functional activations, and a view that keeps the batch axis."""

    def __init__(self, act=torch.nn.functional.relu6):
        super().__init__()
        self.act = act
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(self.act(self.conv1(x)))
        x = self.pool(self.act(self.conv2(x)))
        x = x.view(x.size(0), -1)
        x = self.act(self.fc1(x))
        x = self.act(self.fc2(x))
        return torch.nn.functional.log_softmax(self.fc3(x), dim=1)


def test_lenet5_with_a_reused_pool_and_view():
    keras_model = _check(he_init(LeNet5()), (1, 28, 28), atol=1e-5)
    names = [layer.name for layer in keras_model.layers]
    assert "maxpool_pool" in names and "maxpool_pool_call2" in names
    assert keras_model.layers[-1].get_config()["activation"] == "log_softmax"


@pytest.mark.parametrize("reshape", [
    lambda x: x.view(x.size(0), -1),
    lambda x: x.view(x.shape[0], -1),
    lambda x: x.reshape(-1, x.shape[1] * x.shape[2] * x.shape[3]),
    lambda x: x.reshape(-1, 4 * 3 * 3),
    lambda x: torch.flatten(x, 1),
    lambda x: x.flatten(start_dim=1),
])
def test_reshapes_that_keep_the_batch_axis(reshape):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 4, 3)
            self.fc = nn.Linear(36, 3)

        def forward(self, x):
            return self.fc(reshape(torch.relu(self.conv(x))))

    _check(he_init(Net()), (2, 5, 5), atol=1e-5)


@pytest.mark.parametrize("pool", [
    lambda x: torch.squeeze(nn.functional.adaptive_avg_pool2d(x, 1)),
    lambda x: nn.functional.adaptive_avg_pool2d(x, 1).squeeze(-1).squeeze(-1),
    lambda x: x.mean((2, 3)),
    lambda x: torch.mean(x, dim=[-2, -1], keepdim=True).view(-1, 4),
    lambda x: nn.functional.avg_pool2d(x, x.size()[3]).flatten(1),
])
def test_global_pooling_written_by_hand_folds_into_the_dense(pool):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(pool(torch.clamp(self.conv(x), 0, 6)))

    keras_model = _check(he_init(Net()), (1, 6, 6), atol=1e-5)
    assert [type(lay).__name__ for lay in keras_model.layers][-2:] == ["Flatten", "Dense"]


@pytest.mark.parametrize("act, relu_max", [
    (torch.nn.functional.relu, None), (torch.relu, None), (lambda x: x.relu(), None),
    (torch.nn.functional.relu6, 6.0), (lambda x: torch.clamp(x, min=0), None),
    (lambda x: torch.clamp(x, 0, 3), 3.0), (lambda x: x.clamp_min(0.0), None),
    (lambda x: torch.nn.functional.hardtanh(x, 0.0, 1.5), 1.5),
    (lambda x: torch.nn.functional.dropout(x, 0.3, training=False), "none"),
])
def test_functional_activations_it_can_map(act, relu_max):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 3, 3, padding=1)
            self.fc = nn.Linear(3 * 16, 2)

        def forward(self, x):
            return self.fc(torch.flatten(act(self.conv(x)), 1))

    keras_model = _check(he_init(Net()), (1, 4, 4), atol=1e-5)
    relus = [lay for lay in keras_model.layers if type(lay).__name__ == "ReLU"]
    if relu_max == "none":
        assert not relus
    else:
        assert len(relus) == 1 and relus[0].max_value == relu_max


@pytest.mark.parametrize("forward, node, match", [
    (lambda m, x: m.fc(torch.tanh(m.conv(x)).flatten(1)), "tanh", "use F.relu6"),
    (lambda m, x: m.fc(torch.nn.functional.gelu(m.conv(x)).flatten(1)), "gelu", "ReLU6"),
    (lambda m, x: m.fc((m.conv(x) + x).flatten(1)), "add",
     "residual.*only on Akida 2.0: use the ONNX path"),
    (lambda m, x: m.fc(torch.cat([m.conv(x), x], 1)[:, :2].flatten(1)), "cat", "ONNX path"),
    (lambda m, x: m.fc(m.conv(x).view(1, -1)[:, :32]), "view", "keep the batch axis"),
    (lambda m, x: m.fc(torch.nn.functional.softmax(m.conv(x), 1).flatten(1)), "softmax",
     "only as the model's last op"),
    (lambda m, x: m.fc(torch.nn.functional.conv2d(x, m.conv.weight, padding=1).flatten(1)),
     "conv2d", "nn.Conv2d"),
])
def test_what_the_tracer_cannot_map_is_named_with_the_fix(forward, node, match):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1)
            self.fc = nn.Linear(32, 2)

        def forward(self, x):
            return forward(self, x)

    with pytest.raises(IncompatibleModelError, match=match) as info:
        to_keras(Net(), (2, 4, 4))
    assert info.value.nodes and info.value.nodes[0].startswith(node)


def test_custom_blocks_are_traced_through():
    class Block(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, 3, padding=1)
            self.bn = nn.BatchNorm2d(cout)

        def forward(self, x):
            return torch.nn.functional.relu6(self.bn(self.conv(x)))

    model = he_init(nn.Sequential(Block(1, 4), Block(4, 4), nn.Flatten(), nn.Linear(64, 3)))
    keras_model = _check(model, (1, 4, 4), atol=1e-5)
    assert "conv_0_conv" in [layer.name for layer in keras_model.layers]


def test_models_that_do_not_run_on_the_shape_are_named():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(50, 2))
    with pytest.raises(IncompatibleModelError, match=r"does not run on input shape .* at 2"):
        to_keras(model, (1, 6, 6))


# ------------------------------------------------------ stride-2 padding=1: flipped coordinates


def _sizes(n, plan):
    """Map size before each step of a _downsampler plan."""
    sizes = []
    for step in plan:
        sizes.append(n)
        n = n // 2 if step == "p2" else (n - 1) // 2 + 1 if step != "s1" else n
    return sizes


def _downsampler(n, plan, channels=4, seed=0):
    """Convs from a plan: 's2' = 3x3 stride 2 padding 1, 's1' = 3x3 stride 1 padding 1,
    'p2' = MaxPool2d(2), 'p3' = MaxPool2d(3, 2, 1), 'dw' = depthwise 3x3 stride 2; then a
    flatten → Linear head, with BatchNorms."""
    layers, c, size = [], 1, n
    for step in plan:
        if step in ("s1", "s2"):
            stride = 2 if step == "s2" else 1
            layers += [nn.Conv2d(c, channels, 3, stride=stride, padding=1),
                       nn.BatchNorm2d(channels), nn.ReLU6()]
            c, size = channels, (size + 2 - 3) // stride + 1
        elif step == "dw":
            layers += [nn.Conv2d(c, c, 3, stride=2, padding=1, groups=c), nn.ReLU6()]
            size = (size - 1) // 2 + 1
        elif step == "p2":
            layers.append(nn.MaxPool2d(2))
            size //= 2
        elif step == "p3":
            layers.append(nn.MaxPool2d(3, 2, 1))
            size = (size - 1) // 2 + 1
    layers += [nn.Flatten(), nn.Linear(c * size * size, 5)]
    return he_init(nn.Sequential(*layers), seed)


def _flip_check(model, shape, atol=2e-5):
    """Keras (in whatever coordinates to_keras chose) against PyTorch; returns max |Δ|."""
    keras_model = to_keras(model, shape)
    x = _nchw(8, *shape, seed=1)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    out = keras_model.predict(to_nhwc(x, flip=keras_model), verbose=0)
    delta = float(np.abs(out - ref).max())
    assert delta <= atol * max(1.0, float(np.abs(ref).max())), delta
    return keras_model, delta


@pytest.mark.parametrize("n", [28, 14, 8, 7, 15])
@pytest.mark.parametrize("plan", [["s2"], ["s1", "s2", "s2"], ["s2", "s1", "p2"],
                                  ["s1", "dw", "s1"], ["s2", "p3"]])
def test_stride2_padding1_is_exact(n, plan):
    sizes = dict(zip(plan, _sizes(n, plan)))
    if sizes.get("p2", 0) % 2:  # MaxPool2d(2) on an odd map cannot run on flipped maps
        with pytest.raises(IncompatibleModelError, match="cannot run on flipped maps"):
            to_keras(_downsampler(n, plan), (1, n, n))
        return
    keras_model, delta = _flip_check(_downsampler(n, plan, seed=n), (1, n, n))
    assert delta < 2e-5
    # Flipped coordinates only where a stride-2 padding-1 window meets an even map.
    needs_flip = any(step in ("s2", "dw", "p3") and size % 2 == 0
                     for step, size in zip(plan, _sizes(n, plan)))
    assert keras_model.input_flip == needs_flip


def test_flipped_model_records_its_input_and_to_nhwc_flips():
    keras_model, _ = _flip_check(_downsampler(8, ["s2", "s1"]), (1, 8, 8))
    assert keras_model.input_flip and keras_model.layers[0].name == "input_flipped"
    assert any("flipped coordinates" in note for note in keras_model.rewrites)
    x = _nchw(2, 1, 8, 8)
    np.testing.assert_array_equal(to_nhwc(x, flip=keras_model), to_nhwc(x)[:, ::-1, ::-1])
    np.testing.assert_array_equal(to_nhwc(x, flip=True), to_nhwc(x, flip=keras_model))
    unflipped = to_keras(_downsampler(8, ["s1"]), (1, 8, 8))
    assert not unflipped.input_flip and not input_flip(unflipped)
    np.testing.assert_array_equal(to_nhwc(x, flip=unflipped), to_nhwc(x))
    with pytest.raises(IncompatibleModelError, match="cannot run in original coordinates"):
        to_keras(_downsampler(8, ["s2"]), (1, 8, 8), flip=False)
    forced = to_keras(_downsampler(7, ["s2"]), (1, 7, 7), flip=True)  # odd: exact either way
    assert forced.input_flip


def test_flip_conflict_is_refused_with_the_fix():
    model = _downsampler(14, ["s2", "p2"])  # 14 → 7, then MaxPool2d(2) on an odd map
    with pytest.raises(IncompatibleModelError,
                       match=r"0 \(Conv2d\).*only on the spatially flipped map.*but 3 "
                             r"\(MaxPool2d\).*7x7.*MaxPool2d\(3, stride=2, padding=1\)") as info:
        to_keras(model, (1, 14, 14))
    assert info.value.nodes == ["3"]
    _flip_check(_downsampler(14, ["s2", "p3"]), (1, 14, 14))  # the suggested fix works


def test_flipped_dense_after_flatten_and_folded_pool():
    model = he_init(nn.Sequential(
        nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU6(), nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU6(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(6 * 16, 3)))
    keras_model, delta = _flip_check(model, (1, 16, 16))
    assert keras_model.input_flip and delta < 2e-5


@pytest.mark.slow
@pytest.mark.parametrize("version, device", [("v1", "AKD1000"), ("v2", "SixNodesIPv2")])
def test_flipped_model_converts_maps_and_keeps_the_mark(version, device, tmp_path):
    from akida_workflows.deploy import load, save
    from akida_workflows.evaluate import predict

    model = _downsampler(16, ["s2", "s1", "s2"], channels=8)
    keras_model = to_keras(model, (1, 16, 16))
    x = _nchw(32, 1, 16, 16)
    quantized = quantize_4bit(keras_model, x, akida_version=version)  # NCHW: flipped here
    akida_model = convert_keras(quantized)
    assert input_flip(quantized) and input_flip(akida_model)
    assert map_report(akida_model, device).fully_mapped
    reloaded = load(save(akida_model, tmp_path / "m.fbz"))
    assert input_flip(reloaded)
    # evaluate.predict takes the PyTorch layout and flips for the model.
    out = predict(reloaded, x)
    ref = quantized.predict(to_nhwc(x, flip=quantized), verbose=0)
    assert np.mean(out.argmax(1) == ref.argmax(1)) >= 0.9
    with torch.no_grad():
        torch_ref = model(torch.from_numpy(x)).numpy()
    assert np.mean(out.argmax(1) == torch_ref.argmax(1)) >= 0.6
