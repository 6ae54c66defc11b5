"""1-D models lowered to 2-D: exact on unseen shapes, refused with fixes, and on both targets."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from models import he_init
from torch import nn

from akida_workflows.errors import FoldingError, IncompatibleModelError
from akida_workflows.lowering import (
    HARDWARE_LIMITS,
    LoweredModel,
    check_limits,
    is_1d,
    lift_1d,
    lift_for,
    lower_1d,
    prepare,
    prepare_samples,
)


def unseen_diff(model, lowered: LoweredModel, n: int = 6, seed: int = 123) -> float:
    """Max |Δ| on inputs that lower_1d never saw (another seed, another distribution)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *lowered.input_shape, generator=g) * 2 + 0.3
    with torch.no_grad():
        ref = model(x)
        got = lowered.model(lift_1d(x, lowered.rows))
    assert got.shape == ref.shape
    return float((got - ref).abs().max() / max(1.0, float(ref.abs().max())))


def chain(channels, kernels, pools, length, *, bn=True, dilation=1, act=nn.ReLU6, classes=4):
    layers, c_in = [], channels[0]
    for i, (c_out, k) in enumerate(zip(channels[1:], kernels)):
        d = dilation if i == 0 else 1
        layers.append(nn.Conv1d(c_in, c_out, k, padding=d * (k // 2), dilation=d))
        if bn:
            layers.append(nn.BatchNorm1d(c_out))
        layers.append(act())
        if i < len(pools) and pools[i]:
            layers.append(nn.MaxPool1d(pools[i], ceil_mode=True))
        c_in = c_out
    layers += [nn.Flatten(), nn.LazyLinear(classes)]
    model = nn.Sequential(*layers).eval()
    model(torch.zeros(1, channels[0], length))
    return model


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    length=st.integers(12, 130),
    c_in=st.integers(1, 3),
    widths=st.lists(st.integers(2, 9), min_size=1, max_size=4),
    kernels=st.lists(st.sampled_from([1, 3, 5, 7]), min_size=4, max_size=4),
    pools=st.lists(st.sampled_from([0, 2, 3]), min_size=4, max_size=4),
    dilation=st.sampled_from([1, 2]),
    bn=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_lowering_is_exact_on_unseen_shapes(length, c_in, widths, kernels, pools, dilation, bn,
                                            seed):
    try:
        model = chain([c_in, *widths], kernels, pools, length, bn=bn, dilation=dilation)
    except RuntimeError:  # the poolings leave less than a window: not a valid 1-D model
        assume(False)
    model = he_init(model, seed, bias_std=0.5)
    lowered = lower_1d(model, (c_in, length))
    assert lowered.shape == (c_in, lowered.rows, length)
    assert lowered.rows >= max(5, dilation * (kernels[0] - 1) + 1)
    assert lowered.max_abs_diff < 1e-4
    assert unseen_diff(model, lowered) < 1e-5
    convs = [m for m in lowered.model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == len(widths)
    for conv in convs:  # square kernels, symmetric 'same' padding, only the middle row used
        k = conv.kernel_size[0]
        assert conv.kernel_size == (k, k) and conv.padding == (k // 2, k // 2)
        rows = conv.weight.detach().abs().sum(dim=(0, 1, 3))
        assert torch.count_nonzero(rows) <= 1 and (k == 1 or rows[k // 2] > 0)
    assert not any(isinstance(m, (nn.Conv1d, nn.MaxPool1d, nn.BatchNorm1d))
                   for m in lowered.model.modules())
    if bn:
        assert "fold_batchnorm" in lowered.report.passes


class CustomForward(nn.Module):
    """Written the way people write them: functional ops, view, a BN folded forward."""

    def __init__(self, length: int):
        super().__init__()
        self.conv1 = nn.Conv1d(2, 8, 5, padding=2)
        self.bn1 = nn.BatchNorm1d(8)
        self.conv2 = nn.Conv1d(8, 12, 3, padding=2, dilation=2)
        self.drop = nn.Dropout(0.3)
        self.fc1 = nn.Linear(12 * (((length + 1) // 2 + 1) // 2), 16)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x):
        x = F.relu6(self.bn1(self.conv1(x)))
        x = F.max_pool1d(x, 2, ceil_mode=True)
        x = torch.clamp(self.conv2(x), 0, 6)
        x = F.max_pool1d(x, kernel_size=2, stride=2, ceil_mode=True)
        x = x.view(x.size(0), -1)
        return self.fc2(F.relu(self.fc1(self.drop(x))))


class GapHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv1d(1, 8, 7, padding=3)
        self.conv2 = nn.Conv1d(8, 8, 3, padding=1)
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = x + F.relu(self.conv2(x))  # a residual addition stays exact
        return self.head(x.mean(dim=-1))


class AdaptiveHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv1d(3, 6, 3, padding=1), nn.ReLU(),
                                  nn.AvgPool1d(2), nn.Conv1d(6, 6, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(6, 2)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.body(x)), 1))


@pytest.mark.parametrize("length", [31, 64, 97])
def test_custom_forward_is_lowered(length):
    model = he_init(CustomForward(length), bias_std=0.5)
    lowered = lower_1d(model, (2, length))
    assert unseen_diff(model, lowered) < 1e-5
    kinds = [r.kind for r in lowered.report.rewrites]
    assert {"max_pool1d", "view", "Linear"} <= set(kinds)
    assert any("dilation 2" in r.note for r in lowered.report.rewrites)
    assert lowered.report.folded == ["bn1 -> conv1"]


@pytest.mark.parametrize("factory, shape", [(GapHead, (1, 40)), (AdaptiveHead, (3, 50))])
def test_global_pooling_heads(factory, shape):
    model = he_init(factory(), bias_std=0.5)
    lowered = lower_1d(model, shape)
    assert unseen_diff(model, lowered) < 1e-5
    assert any(isinstance(m, nn.AdaptiveAvgPool2d) for m in lowered.model.modules())


def test_floor_pooling_of_odd_length_before_the_head_is_exact():
    # 45 -> 22 in PyTorch, 23 on Akida ('same'); the extra column gets zero Dense weights.
    model = he_init(nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2),
                                  nn.Flatten(), nn.Linear(4 * 22, 3)), bias_std=0.5)
    lowered = lower_1d(model, (1, 45))
    assert unseen_diff(model, lowered) < 1e-5
    assert any("padded column" in r.note for r in lowered.report.rewrites)


def test_report_names_passes_and_prints():
    model = he_init(chain([1, 4, 4], [5, 3], [2, 0], 40), bias_std=0.5)
    lowered = lower_1d(model, (1, 40), example_input=np.random.default_rng(0).normal(
        size=(3, 1, 40)).astype(np.float32))
    assert lowered.report.passes == ["fold_batchnorm", "lift_1d_to_2d", "permute_linear"]
    assert lowered.report.checked == 11
    text = str(lowered)
    assert "lowered to 2-D (1x5x40)" in text and "Conv2d 5x5, padding 2" in text
    assert "<table" in lowered._repr_html_()
    out = lowered(torch.zeros(2, 1, 40))
    assert out.shape == (2, 4)


# ------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("model, shape, words", [
    (nn.Sequential(nn.Conv1d(1, 4, 4, padding=2), nn.Flatten(), nn.Linear(4 * 33, 2)), (1, 32),
     ["even kernel", "odd kernel (5)"]),
    (nn.Sequential(nn.Conv1d(1, 4, 5, padding=1), nn.Flatten(), nn.Linear(4 * 30, 2)), (1, 32),
     ["padding=1", "use padding=2 or 0"]),
    (nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.MaxPool1d(2), nn.Conv1d(4, 4, 3, padding=1),
                   nn.Flatten(), nn.Linear(4 * 16, 2)), (1, 33),
     ["odd length", "ceil_mode=True"]),
    (nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.Linear(32, 2)), (1, 32),
     ["time axis", "Flatten"]),
    (nn.Sequential(nn.Conv1d(1, 4, 3, padding=1, padding_mode="reflect"), nn.Flatten(),
                   nn.Linear(128, 2)), (1, 32), ["padding_mode", "zeros"]),
    (nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.AdaptiveAvgPool1d(4), nn.Flatten(),
                   nn.Linear(16, 2)), (1, 32), ["output_size=4", "AdaptiveAvgPool1d(1)"]),
])
def test_refusals_name_the_layer_and_the_fix(model, shape, words):
    with pytest.raises(IncompatibleModelError, match="Fix:") as info:
        lower_1d(model.eval(), shape)
    for word in words:
        assert word in str(info.value)
    assert info.value.nodes


class Transposed(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.conv(x).transpose(1, 2)).mean(1)


def test_unsupported_operation_is_named():
    with pytest.raises(IncompatibleModelError, match="transpose.*no 2-D equivalent"):
        lower_1d(Transposed().eval(), (1, 16))


def test_bad_inputs():
    model = nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.Flatten(), nn.Linear(64, 2)).eval()
    with pytest.raises(IncompatibleModelError, match=r"\(C, L\)"):
        lower_1d(model, (1, 16, 16))
    with pytest.raises(IncompatibleModelError, match="does not accept"):
        lower_1d(model, (1, 20))
    with pytest.raises(IncompatibleModelError, match="target must be"):
        lower_1d(model, (1, 16), target="akida3")
    bad = nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.BatchNorm1d(4), nn.Flatten(),
                        nn.Linear(64, 2))
    with pytest.raises(FoldingError, match="eval"):
        lower_1d(bad, (1, 16))  # train-mode BatchNorm
    nan = nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.Flatten(), nn.Linear(64, 2)).eval()
    with torch.no_grad():
        nan[0].weight[0, 0, 0] = float("nan")
    with pytest.raises(Exception, match="NaN"):
        lower_1d(nan, (1, 16))


@pytest.mark.parametrize("target, length, channels, words", [
    ("akida2", 500, 1, ["width 500 > 384", "decimate or window"]),
    ("akida1", 300, 1, ["width 300 > 256", "decimate or window"]),
    ("akida2", 100, 2, ["2 channels", "1 or 3"]),
])
def test_hardware_limits_are_refused_with_the_fix(target, length, channels, words):
    model = nn.Sequential(nn.Conv1d(channels, 4, 3, padding=1), nn.ReLU6(),
                          nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    lowered = lower_1d(model, (channels, length))  # exact, whatever the target
    problems = check_limits(lowered, target)
    assert any(all(w in p for w in words) for p in problems), problems
    with pytest.raises(IncompatibleModelError, match="hardware limits"):
        lower_1d(model, (channels, length), target=target)


def test_dense_and_kernel_limits():
    model = nn.Sequential(nn.Conv1d(1, 16, 9, padding=4), nn.ReLU6(), nn.Flatten(),
                          nn.Linear(16 * 200, 2)).eval()
    problems = check_limits(lower_1d(model, (1, 200)), "akida2")
    assert any("kernel 9" in p and "Fix: use kernel size 7" in p for p in problems)
    assert any("Dense input" in p and "> 2048" in p for p in problems)
    assert HARDWARE_LIMITS["akida1"].rows_cover_input_kernel


# -------------------------------------------------------------------------- helpers


def test_lift_1d_layouts_and_types():
    x = np.arange(12, dtype=np.float64).reshape(2, 2, 3)
    out = lift_1d(x, 5)
    assert out.shape == (2, 2, 5, 3) and out.dtype == np.float32
    assert np.array_equal(out[:, :, 4, :], x.astype(np.float32))
    nhwc = lift_1d(x, 5, layout="nhwc")
    assert nhwc.shape == (2, 5, 3, 2) and np.array_equal(nhwc[:, 2, :, :], x.transpose(0, 2, 1))
    t = lift_1d(torch.ones(4, 7), 6)
    assert isinstance(t, torch.Tensor) and t.shape == (4, 1, 6, 7)
    with pytest.raises(IncompatibleModelError, match="N, C, L"):
        lift_1d(np.zeros((2, 3, 4, 5)), 5)
    with pytest.raises(IncompatibleModelError, match="layout"):
        lift_1d(x, 5, layout="nwc")


def test_prepare_lowers_only_1d_models():
    two_d = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 64, 2))
    assert prepare(two_d, (1, 8, 8)) == (two_d, (1, 8, 8))
    assert not is_1d(two_d) and is_1d(nn.Sequential(nn.MaxPool1d(2)))
    one_d = he_init(chain([1, 4], [5], [2], 30), bias_std=0.5)
    model, shape = prepare(one_d, (1, 30))
    assert shape == (1, 5, 30) and "lowered to 2-D" in str(model.lowering_report)
    with pytest.raises(IncompatibleModelError, match="C,L"):
        prepare(one_d, (1, 1, 30))
    samples = np.zeros((3, 1, 30), np.float32)
    assert prepare_samples(samples, shape).shape == (3, 1, 5, 30)
    assert prepare_samples(samples, shape, "nhwc").shape == (3, 5, 30, 1)
    assert prepare_samples(np.zeros((3, 1, 8, 8)), (1, 8, 8)).shape == (3, 1, 8, 8)
    assert lift_for(model, samples).shape == (3, 1, 5, 30)


def test_evaluate_takes_1d_arrays():
    from akida_workflows.evaluate import evaluate, predict

    model = he_init(chain([1, 4, 4], [5, 3], [2, 0], 30), bias_std=0.5)
    lowered = lower_1d(model, (1, 30))
    x = np.random.default_rng(0).normal(size=(20, 1, 30)).astype(np.float32)
    expected = predict(model, x)
    assert np.allclose(predict(lowered, x), expected, atol=1e-5)
    assert np.allclose(predict(lowered.model, x), expected, atol=1e-5)
    y = expected.argmax(1)
    assert evaluate(lowered, x, y).accuracy == 1.0


def test_ceil_pools_are_exported_with_explicit_pads(tmp_path):
    import onnx

    from akida_workflows.export import explicit_pool_pads, export_onnx

    model = he_init(chain([1, 4, 4], [3, 3], [2, 2], 45), bias_std=0.5)
    lowered = lower_1d(model, (1, 45))
    exported = export_onnx(lowered.model, lowered.lift(np.zeros((1, 1, 45), np.float32)),
                           tmp_path / "m.onnx")  # ONNX Runtime parity is checked inside
    pools = [n for n in exported.graph.node if n.op_type == "MaxPool"]
    attrs = [{a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in pools]
    assert [a["ceil_mode"] for a in attrs] == [0, 0]
    assert attrs[0]["pads"] == [0, 0, 1, 1]  # 5x45 -> 3x23: one row and one column at the end
    assert explicit_pool_pads(exported.model) == 0  # nothing left to rewrite


# ---------------------------------------------------------------- both targets, for real


def _ecg_like(length=96):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv1d(1, 8, 5, padding=2), nn.BatchNorm1d(8), nn.ReLU6(), nn.MaxPool1d(2),
        nn.Conv1d(8, 16, 3, padding=1), nn.ReLU6(), nn.MaxPool1d(2, ceil_mode=True),
        nn.Conv1d(16, 16, 3, padding=1), nn.ReLU6(), nn.MaxPool1d(2, ceil_mode=True),
        nn.Conv1d(16, 16, 3, padding=1), nn.ReLU6(), nn.Flatten(), nn.LazyLinear(4)).eval()
    model(torch.zeros(1, 1, length))
    return he_init(model, bias_std=0.5)


@pytest.mark.slow
def test_akida2_end_to_end_fully_mapped(tmp_path):
    from akida_workflows.convert import quantize_onnx, to_akida
    from akida_workflows.deploy import map_report
    from akida_workflows.evaluate import predict
    from akida_workflows.export import export_onnx

    model = _ecg_like()
    x = np.random.default_rng(0).normal(size=(64, 1, 96)).astype(np.float32)
    # (N, C, L) samples all along: export lowers the model, quantize_onnx lifts the samples.
    exported = export_onnx(model, x[:1], tmp_path / "ecg.onnx")
    assert exported.lowering.shape == (1, 5, 96) and exported.lowering.max_abs_diff < 1e-4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        akida_model = to_akida(quantize_onnx(exported, x))
    mapping = map_report(akida_model, "SixNodesIPv2")
    assert mapping.fully_mapped, str(mapping)
    scores = predict(akida_model, x[:16])  # (N, C, L) in, lifted inside
    assert scores.shape == (16, 4)
    agree = np.mean(scores.argmax(1) == predict(model, x[:16]).argmax(1))
    assert agree >= 0.75


@pytest.mark.slow
def test_akida1_end_to_end_fully_mapped():
    from akida_workflows.deploy import map_report
    from akida_workflows.evaluate import predict
    from akida_workflows.keras_bridge import convert_keras, quantize_4bit, to_keras

    model = _ecg_like()
    lowered = lower_1d(model, (1, 96), target="akida1")
    x = np.random.default_rng(0).normal(size=(64, 1, 96)).astype(np.float32)
    keras_model = to_keras(lowered.model, lowered.shape)
    keras_out = keras_model.predict(lowered.lift(x[:8], "nhwc"), verbose=0)
    assert np.abs(keras_out - predict(model, x[:8])).max() < 1e-4
    akida_model = convert_keras(quantize_4bit(keras_model, lowered.lift(x, "nhwc")))
    mapping = map_report(akida_model, "AKD1000")
    assert mapping.fully_mapped, str(mapping)
    assert predict(akida_model, x[:8]).shape == (8, 4)  # NHWC lifting from (N, C, L)


@pytest.mark.slow
def test_compatibility_check_takes_1d_models():
    from akida_workflows.compat import check_compatibility

    model = _ecg_like()
    report = check_compatibility(model, (1, 96), "akida2")
    assert report.ok and report.hw_fraction == 1.0, str(report)
    assert [r.kind for r in report.rows][:1] == ["Conv1d"]  # the user's layers, not the 2-D form
    wide = check_compatibility(nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.ReLU6(),
                                             nn.AdaptiveAvgPool1d(1), nn.Flatten(),
                                             nn.Linear(4, 2)).eval(), (1, 500), "akida2")
    assert not wide.ok and "width 500 > 384" in str(wide), str(wide)  # a report, not a raise


@pytest.mark.slow
def test_cli_check_and_convert_take_1d_models(tmp_path, capsys):
    from akida_workflows.cli import main

    model = _ecg_like()
    torch.save(model, tmp_path / "ecg.pt")
    np.save(tmp_path / "signals.npy",
            np.random.default_rng(0).normal(size=(32, 1, 96)).astype(np.float32))
    assert main(["check", str(tmp_path / "ecg.pt"), "--trust-pickle", "--input-shape", "1,96"]) == 0
    assert "compatible" in capsys.readouterr().out
    code = main(["convert", str(tmp_path / "ecg.pt"), "--trust-pickle",
                 "--samples", str(tmp_path / "signals.npy"),
                 "--target", "akida2", "-o", str(tmp_path / "ecg.fbz")])
    out = capsys.readouterr().out
    assert code == 0 and (tmp_path / "ecg.fbz").is_file()
    assert "5/5 compute layers in hardware" in out


def test_pooling_limits():
    pool = nn.MaxPool1d(4, ceil_mode=True)
    pooled = nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.ReLU6(), pool,
                           nn.Conv1d(4, 4, 3, padding=1), nn.ReLU6(), copy.deepcopy(pool),
                           nn.Conv1d(4, 4, 3, padding=1), nn.ReLU6(), nn.Flatten(),
                           nn.Linear(4, 2)).eval()
    lowered = lower_1d(pooled, (1, 6))  # 6 -> 2 samples, then a window of 4
    assert lowered.rows == 13  # 13 -> 4 rows: every window fits the rows it pools
    assert any("pooling window 4 > the 2 samples left" in p
               for p in check_limits(lowered, "akida2"))
    gap = nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.ReLU6(), nn.AdaptiveAvgPool1d(1),
                        nn.Flatten(), nn.Linear(4, 2)).eval()
    assert any("global average pooling over 500 positions (5x100) > 144" in p
               for p in check_limits(lower_1d(gap, (1, 100)), "akida2"))
    assert not check_limits(lower_1d(gap, (1, 28)), "akida2")


def test_strided_convolutions_are_exact_and_flagged_for_akida1():
    model = he_init(nn.Sequential(nn.Conv1d(1, 8, 5, padding=2), nn.ReLU6(),
                                  nn.Conv1d(8, 8, 3, padding=1, stride=2), nn.ReLU6(),
                                  nn.Flatten(), nn.Linear(8 * 48, 3)), bias_std=0.5)
    lowered = lower_1d(model, (1, 96))
    assert unseen_diff(model, lowered) < 1e-5  # exact in PyTorch, whatever the target
    problems = check_limits(lowered, "akida1")
    assert any("stride 2 with padding 1 on 96 samples" in p and "MaxPool1d(2" in p
               for p in problems), problems


def test_too_many_rows_is_refused_with_the_fix():
    layers = [nn.Conv1d(1, 2, 3, padding=1)]
    for _ in range(9):  # nine 'same' poolings: the rows would have to start at 257
        layers += [nn.MaxPool1d(2, ceil_mode=True), nn.Conv1d(2, 2, 3, padding=1)]
    model = nn.Sequential(*layers, nn.Flatten(), nn.Linear(2, 2)).eval()
    with pytest.raises(IncompatibleModelError, match="more than 256 identical rows.*Fix"):
        lower_1d(model, (1, 512))


def test_torchscript_1d_models_are_recognised_and_refused_with_the_fix():
    model = nn.Sequential(nn.Conv1d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(16, 2)).eval()
    scripted = torch.jit.script(model)
    assert is_1d(scripted)
    with pytest.raises(IncompatibleModelError, match="torch.fx needs the Python module"):
        lower_1d(scripted, (1, 8))
