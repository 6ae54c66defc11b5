from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from akida_workflows.errors import FoldingError
from akida_workflows.folding import (
    FoldingWarning,
    bn_scale_shift,
    export_folded_weights,
    fold_batchnorm,
    fold_bn_into_next_conv,
    fold_bn_into_next_linear,
    fold_conv_bn,
    fold_linear_bn,
)

RTOL = 1e-5


def _randomize_bn(bn, gen, *, var_scale=1.0, mean_scale=1.0):
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=gen) * mean_scale)
        bn.running_var.copy_(torch.rand(bn.num_features, generator=gen) * var_scale + 1e-3)
        if bn.affine:
            bn.weight.copy_(torch.randn(bn.num_features, generator=gen))
            bn.bias.copy_(torch.randn(bn.num_features, generator=gen))
    return bn.eval()


def _close(a, b, rtol=RTOL):
    scale = max(1.0, float(b.abs().max()))
    assert float((a - b).abs().max()) <= rtol * scale * 10, float((a - b).abs().max())


# -------------------------------------------------------------------- building blocks


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    groups=st.sampled_from([1, 2, 4]),
    per_group_in=st.integers(1, 3),
    per_group_out=st.integers(1, 3),
    k=st.sampled_from([1, 3, 5]),
    bias=st.booleans(),
    eps=st.sampled_from([1e-5, 1e-3, 0.1]),
    var_scale=st.sampled_from([1e-4, 1.0, 1e4]),
    seed=st.integers(0, 2**16),
)
def test_fold_conv_bn_matches_torch_fusion(groups, per_group_in, per_group_out, k, bias, eps,
                                           var_scale, seed):
    gen = torch.Generator().manual_seed(seed)
    conv = nn.Conv2d(groups * per_group_in, groups * per_group_out, k, padding=k // 2,
                     groups=groups, bias=bias).eval()
    bn = _randomize_bn(nn.BatchNorm2d(conv.out_channels, eps=eps), gen, var_scale=var_scale)
    weight, b = fold_conv_bn(conv, bn)
    fused = fuse_conv_bn_eval(conv, bn)
    _close(weight, fused.weight.detach())
    _close(b, fused.bias.detach())
    x = torch.randn(2, conv.in_channels, 7, 7, generator=gen)
    folded = nn.Conv2d(conv.in_channels, conv.out_channels, k, padding=k // 2, groups=groups)
    folded.weight.data, folded.bias.data = weight, b
    with torch.no_grad():
        _close(folded(x), bn(conv(x)))


def test_fold_depthwise_conv():
    gen = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False).eval()
    bn = _randomize_bn(nn.BatchNorm2d(8), gen)
    weight, bias = fold_conv_bn(conv, bn)
    assert weight.shape == (8, 1, 3, 3)
    fused = fuse_conv_bn_eval(conv, bn)
    _close(weight, fused.weight.detach())


@settings(max_examples=30, deadline=None)
@given(n_in=st.integers(1, 12), n_out=st.integers(1, 12), bias=st.booleans(),
       affine=st.booleans(), seed=st.integers(0, 2**16))
def test_fold_linear_bn_matches_torch_fusion(n_in, n_out, bias, affine, seed):
    gen = torch.Generator().manual_seed(seed)
    linear = nn.Linear(n_in, n_out, bias=bias).eval()
    bn = _randomize_bn(nn.BatchNorm1d(n_out, affine=affine), gen)
    weight, b = fold_linear_bn(linear, bn)
    if affine:
        fused = fuse_linear_bn_eval(linear, bn)
        _close(weight, fused.weight.detach())
        _close(b, fused.bias.detach())
    x = torch.randn(5, n_in, generator=gen)
    with torch.no_grad():
        _close(x @ weight.T + b, bn(linear(x)))


@settings(max_examples=30, deadline=None)
@given(channels=st.integers(1, 6), h=st.integers(1, 5), w=st.integers(1, 5),
       n_out=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_forward_fold_into_linear_through_flatten(channels, h, w, n_out, seed):
    gen = torch.Generator().manual_seed(seed)
    bn = _randomize_bn(nn.BatchNorm2d(channels), gen)
    linear = nn.Linear(channels * h * w, n_out).eval()
    weight, bias = fold_bn_into_next_linear(bn, linear)
    x = torch.randn(3, channels, h, w, generator=gen)
    with torch.no_grad():
        _close(x.flatten(1) @ weight.T + bias, linear(bn(x).flatten(1)))


@settings(max_examples=30, deadline=None)
@given(groups=st.sampled_from([1, 2, 3]), per_group_in=st.integers(1, 3),
       per_group_out=st.integers(1, 3), k=st.sampled_from([1, 2, 3]),
       stride=st.sampled_from([1, 2]), seed=st.integers(0, 2**16))
def test_forward_fold_into_unpadded_conv(groups, per_group_in, per_group_out, k, stride, seed):
    gen = torch.Generator().manual_seed(seed)
    cin, cout = groups * per_group_in, groups * per_group_out
    bn = _randomize_bn(nn.BatchNorm2d(cin), gen)
    conv = nn.Conv2d(cin, cout, k, stride=stride, groups=groups).eval()
    weight, bias = fold_bn_into_next_conv(bn, conv)
    folded = nn.Conv2d(cin, cout, k, stride=stride, groups=groups)
    folded.weight.data, folded.bias.data = weight, bias
    x = torch.randn(2, cin, 6, 6, generator=gen)
    with torch.no_grad():
        _close(folded(x), conv(bn(x)))


def test_forward_fold_into_padded_conv_is_refused():
    bn = nn.BatchNorm2d(4).eval()
    conv = nn.Conv2d(4, 4, 3, padding=1)
    with pytest.raises(FoldingError, match="padding=.*borders"):
        fold_bn_into_next_conv(bn, conv, "net.bn")


# ------------------------------------------------------------------------- errors


@pytest.mark.parametrize("setup, match", [
    (lambda bn: bn.train(), "training mode"),
    (lambda bn: bn.running_var.fill_(-1.0), "negative"),
    (lambda bn: bn.running_var.fill_(float("nan")), "NaN or inf"),
    (lambda bn: bn.running_mean.fill_(float("inf")), "NaN or inf"),
    (lambda bn: bn.weight.data.fill_(float("nan")), "weight holds NaN"),
])
def test_invalid_batchnorm(setup, match):
    bn = nn.BatchNorm2d(3).eval()
    with torch.no_grad():
        setup(bn)
    with pytest.raises(FoldingError, match=f"blocks.bn.*{match}"):
        bn_scale_shift(bn, "blocks.bn")


def test_zero_variance_needs_eps():
    bn = nn.BatchNorm2d(3, eps=0.0).eval()
    bn.running_var.zero_()
    with pytest.raises(FoldingError, match="zero with eps=0"):
        bn_scale_shift(bn, "bn")
    bn.eps = 1e-5
    a, _ = bn_scale_shift(bn, "bn")
    assert torch.isfinite(a).all()


def test_no_running_stats():
    bn = nn.BatchNorm2d(3, track_running_stats=False).eval()
    with pytest.raises(FoldingError, match="track_running_stats=False"):
        bn_scale_shift(bn, "bn")


def test_channel_mismatch():
    with pytest.raises(FoldingError, match="4 channels.*has 8"):
        fold_conv_bn(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(4).eval(), "bn")
    with pytest.raises(FoldingError, match="do not divide"):
        fold_bn_into_next_linear(nn.BatchNorm2d(3).eval(), nn.Linear(10, 2), "bn")


# -------------------------------------------------------------------- whole models


def _bn_heavy(seed=0):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),          # backward
        nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8),  # depthwise
        nn.ReLU6(), nn.MaxPool2d(2),
        nn.Conv2d(8, 4, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(4),          # forward, Linear
        nn.Flatten(), nn.Dropout(0.2), nn.Linear(4 * 4 * 4, 16), nn.BatchNorm1d(16), nn.ReLU(),
        nn.Linear(16, 5),
    )
    for m in model:
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            _randomize_bn(m, gen)
    return model.eval()


def test_fold_sequential_keeps_outputs_and_type():
    model = _bn_heavy()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batchnorm(model)
    assert isinstance(folded, nn.Sequential)
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in folded.modules())
    assert len(folded.folding_report.folded) == 4 and not folded.folding_report.unfolded
    directions = {f.name: f.direction for f in folded.folding_report.folded}
    assert directions == {"1": "backward", "4": "backward", "9": "forward", "13": "backward"}
    x = torch.randn(16, 1, 8, 8)
    with torch.no_grad():
        _close(folded(x), model(x))
    # The input model is untouched.
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert not folded.training


class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.head_bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3 * 4 * 4, 2)

    def forward(self, x):
        y = torch.relu(self.bn(self.conv(x))) + x
        return self.fc(torch.flatten(self.head_bn(y), 1))


def test_fold_general_module_with_fx():
    model = _Residual()
    gen = torch.Generator().manual_seed(1)
    _randomize_bn(model.bn, gen)
    _randomize_bn(model.head_bn, gen)
    model.eval()
    folded = fold_batchnorm(model)
    assert isinstance(folded, torch.fx.GraphModule)
    assert {f.name for f in folded.folding_report.folded} == {"bn", "head_bn"}
    x = torch.randn(4, 3, 4, 4)
    with torch.no_grad():
        _close(folded(x), model(x))


def test_unfoldable_is_reported_by_name():
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(4),
        nn.Conv2d(4, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 6 * 6, 2),
    ).eval()
    with pytest.warns(FoldingWarning, match="2: .*padding"):
        folded = fold_batchnorm(model)
    assert [u.name for u in folded.folding_report.unfolded] == ["2"]
    x = torch.randn(2, 1, 6, 6)
    with torch.no_grad():
        _close(folded(x), model(x))
    with pytest.raises(FoldingError, match="1 BatchNorm"):
        fold_batchnorm(model, strict=True)


def test_training_mode_model_is_refused():
    model = _bn_heavy().train()
    with pytest.raises(FoldingError, match="'?1'?: BatchNorm is in training mode|1: BatchNorm"):
        fold_batchnorm(model)


def test_untraceable_model():
    class Dynamic(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm1d(2)

        def forward(self, x):
            if x.sum() > 0:
                return self.bn(x)
            return x

    with pytest.raises(FoldingError, match="cannot trace"):
        fold_batchnorm(Dynamic().eval())


def test_export_folded_weights(tmp_path):
    folded = fold_batchnorm(_bn_heavy())
    manifest = export_folded_weights(folded, tmp_path / "weights")
    data = json.loads(manifest.read_text())
    names = [layer["name"] for layer in data["layers"]]
    assert names == ["0", "3", "7", "12", "15"]
    first = data["layers"][0]["tensors"]["weight"]
    array = np.load(tmp_path / "weights" / first["file"])
    assert list(array.shape) == first["shape"] == [8, 1, 3, 3]
    assert first["dtype"] == "float32"
    np.testing.assert_array_equal(array, folded[0].weight.detach().numpy())
    with pytest.raises(FoldingError, match="fold them first"):
        export_folded_weights(_bn_heavy(), tmp_path / "w2")


def _stats(model, seed=3):
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            _randomize_bn(m, gen)
    return model.eval()


def test_bn2d_then_linear_without_flatten_is_not_folded():
    # Linear acts on the last axis (width), not on the channels: folding would be wrong.
    model = _stats(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.BatchNorm2d(4),
                                 nn.Dropout(0.1), nn.Linear(4, 3)))
    with pytest.warns(FoldingWarning, match="Flatten"):
        folded = fold_batchnorm(model)
    x = torch.randn(2, 1, 6, 6)
    with torch.no_grad():
        _close(folded(x), model(x))


def test_bn1d_on_sequences_then_linear_is_not_folded():
    # BatchNorm1d on (N, C, L): the Linear sees L, not C, even when L == C.
    model = _stats(nn.Sequential(nn.Conv1d(3, 4, 1), nn.ReLU(), nn.BatchNorm1d(4),
                                 nn.Linear(5, 2)))
    with pytest.warns(FoldingWarning):
        folded = fold_batchnorm(model)
    x = torch.randn(2, 3, 5)
    with torch.no_grad():
        _close(folded(x), model(x))


def test_conv1d_backward_and_flatten_forward():
    model = _stats(nn.Sequential(nn.Conv1d(2, 4, 3), nn.BatchNorm1d(4), nn.ReLU(),
                                 nn.BatchNorm1d(4), nn.Flatten(), nn.Linear(4 * 6, 3)))
    x = torch.randn(5, 2, 8)
    folded = fold_batchnorm(model, example_input=x)
    assert not folded.folding_report.unfolded
    assert folded.folding_report.max_abs_diff < 1e-5
    with torch.no_grad():
        _close(folded(x), model(x))


def test_input_batchnorm_folds_forward_into_unpadded_conv():
    model = _stats(nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3), nn.ReLU()))
    x = torch.randn(2, 3, 7, 7)
    folded = fold_batchnorm(model, example_input=x)
    assert [f.direction for f in folded.folding_report.folded] == ["forward"]
    assert isinstance(folded[0], nn.Conv2d)


def test_last_layer_batchnorm_is_reported():
    model = _stats(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.BatchNorm1d(4)))
    with pytest.warns(FoldingWarning, match="2: its output is the model.s output"):
        folded = fold_batchnorm(model)
    assert folded.folding_report.unfolded[0].name == "2"


def test_nested_sequential():
    inner = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4))
    model = _stats(nn.Sequential(inner, nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 5, 2)))
    x = torch.randn(3, 1, 5, 5)
    folded = fold_batchnorm(model, example_input=x)
    assert isinstance(folded, nn.Sequential)
    with torch.no_grad():
        _close(folded(x), model(x))


def test_not_a_module():
    with pytest.raises(FoldingError, match="torch.nn.Module"):
        fold_batchnorm("model.pt")


class _ShapeBranch(nn.Module):
    """forward() branches on a static shape: torch.fx cannot trace it."""

    def __init__(self, bn: bool):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4) if bn else nn.Identity()

    def forward(self, x):
        x = self.bn(self.conv(x))
        if x.shape[-1] > 4:
            x = torch.nn.functional.max_pool2d(x, 2)
        return torch.relu(x)


def test_an_untraceable_model_without_batchnorm_has_nothing_to_fold():
    model = _ShapeBranch(bn=False).eval()
    folded = fold_batchnorm(model)
    assert type(folded) is _ShapeBranch and folded is not model
    assert not folded.folding_report.folded and not folded.folding_report.unfolded
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(folded(x), model(x))
    with pytest.raises(FoldingError, match="cannot trace _ShapeBranch with torch.fx"):
        fold_batchnorm(_ShapeBranch(bn=True).eval())
