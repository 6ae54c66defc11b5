from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch import nn

from akida_workflows.errors import QuantizationError
from akida_workflows.int4 import (
    METHODS,
    dequantize,
    fake_quantize_weights,
    pack_int4,
    quantization_error_report,
    quantize_per_channel,
    quantize_per_tensor,
    sqnr_db,
    unpack_int4,
)

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=200, deadline=None)
@given(values=hnp.arrays(np.int8, st.integers(0, 257), elements=st.integers(-8, 7)))
def test_pack_round_trip(values):
    packed = pack_int4(values)
    assert packed.dtype == np.uint8 and packed.size == (values.size + 1) // 2
    np.testing.assert_array_equal(unpack_int4(packed, values.size), values)
    if values.size % 2:
        assert packed[-1] >> 4 == 0  # the last high nibble is zero for odd n


def test_pack_layout_is_low_nibble_first_twos_complement():
    assert pack_int4([1, -1]).tolist() == [0xF1]
    assert pack_int4([-8, 7, 3]).tolist() == [0x78, 0x03]
    assert pack_int4(np.array([[1, 2], [3, 4]])).tolist() == [0x21, 0x43]  # C order
    assert unpack_int4(bytes([0xF1]), 2).tolist() == [1, -1]
    assert pack_int4([]).size == 0 and unpack_int4(np.zeros(0, np.uint8), 0).size == 0


@pytest.mark.parametrize("bad, match", [
    ([8], r"\[-8, 7\]"), ([-9], r"\[-8, 7\]"), ([0.5], "non-integer"),
    ([np.nan], "non-integer"), (["a"], "integers"), (np.array([True]), "integers"),
])
def test_pack_rejects(bad, match):
    with pytest.raises(QuantizationError, match=match):
        pack_int4(bad)


def test_pack_accepts_integral_floats():
    assert pack_int4(np.array([1.0, -2.0])).tolist() == pack_int4([1, -2]).tolist()


def test_unpack_rejects():
    with pytest.raises(QuantizationError, match="2 packed bytes hold at most 4 values, 5"):
        unpack_int4(np.zeros(2, np.uint8), 5)
    with pytest.raises(QuantizationError, match="uint8"):
        unpack_int4(np.zeros(2, np.int16), 2)
    with pytest.raises(QuantizationError, match="non-negative"):
        unpack_int4(np.zeros(2, np.uint8), -1)


@settings(max_examples=100, deadline=None)
@given(w=hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=4, max_side=6),
                    elements=finite),
       bits=st.sampled_from([2, 4, 8]))
def test_per_tensor_bounds(w, bits):
    q, scale = quantize_per_tensor(w, bits)
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    assert q.dtype == np.int8 and q.shape == w.shape
    assert q.min(initial=0) >= lo and q.max(initial=0) <= hi
    if scale > 0:  # error at most half a step inside the range
        assert np.abs(dequantize(q, scale) - w).max() <= scale / 2 * (1 + 1e-4) + 1e-6
    else:  # scale 0: an all-zero tensor, or one so small that 1/scale would overflow
        assert not q.any() and np.abs(w).max(initial=0) < 1e-36


@settings(max_examples=150, deadline=None)
@given(w=hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=4, max_side=6),
                    elements=finite),
       method=st.sampled_from(METHODS), data=st.data())
def test_per_channel_properties(w, method, data):
    axis = data.draw(st.integers(-w.ndim, w.ndim - 1))
    q, scales = quantize_per_channel(w, axis=axis, method=method)
    assert q.shape == w.shape and scales.shape == (w.shape[axis],)
    assert q.min(initial=0) >= -8 and q.max(initial=0) <= 7
    w_hat = dequantize(q, scales, axis=axis)
    step = np.expand_dims(scales, [d for d in range(w.ndim) if d != axis % w.ndim])
    if method == "maxabs":  # no clipping: at most half a step per weight
        assert np.all(np.abs(w_hat - w) <= step / 2 * (1 + 1e-4) + 1e-30)
    if method == "mse":  # never worse than per-tensor max-abs, nor than max-abs
        qt, s_t = quantize_per_tensor(w)
        qm, s_m = quantize_per_channel(w, axis=axis, method="maxabs")
        err = float(((w_hat - w) ** 2).sum(dtype=np.float64))
        assert err <= float(((dequantize(qt, s_t) - w) ** 2).sum(dtype=np.float64)) * (1 + 1e-5) + 1e-9
        assert err <= float(((dequantize(qm, s_m, axis) - w) ** 2).sum(dtype=np.float64)) * (1 + 1e-5) + 1e-9


@settings(max_examples=150, deadline=None)
@given(w=hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=4, max_side=6),
                    elements=finite),
       method=st.sampled_from(METHODS), bits=st.sampled_from([2, 3, 4, 8]), data=st.data())
def test_narrow_range_is_quantizeml_convention(w, method, bits, data):
    axis = data.draw(st.integers(-w.ndim, w.ndim - 1))
    qmax = 2 ** (bits - 1) - 1
    q, scales = quantize_per_channel(w, axis, bits, method, narrow_range=True)
    assert q.min(initial=0) >= -qmax and q.max(initial=0) <= qmax
    flat_q = np.moveaxis(q, axis, 0).reshape(len(scales), -1)
    flat_w = np.moveaxis(w, axis, 0).reshape(len(scales), -1)
    maxabs = np.abs(flat_w).max(axis=1)
    # Each channel's range is at most its max-abs, and its largest weight takes the
    # largest code: QuantizeML's max-abs of the dequantized channel gives the scale back.
    assert np.all(scales <= maxabs / np.float32(qmax) * (1 + 1e-6))
    live = scales > 0
    assert np.all(np.abs(flat_q[live]).max(axis=1) == qmax)
    if method == "maxabs":  # max-abs never reaches -2**(bits-1): both conventions agree
        q_full, s_full = quantize_per_channel(w, axis, bits, "maxabs")
        np.testing.assert_array_equal(q, q_full)
        np.testing.assert_array_equal(scales, s_full)
    if method == "mse":
        qm, sm = quantize_per_channel(w, axis, bits, "maxabs", narrow_range=True)
        err = float(((dequantize(q, scales, axis) - w) ** 2).sum(dtype=np.float64))
        err_max = float(((dequantize(qm, sm, axis) - w) ** 2).sum(dtype=np.float64))
        assert err <= err_max * (1 + 1e-5) + 1e-9


@pytest.mark.slow
def test_maxabs_codes_are_quantizemls_bit_for_bit():
    """Same float32 division and half-to-even rounding as QuantizeML's WeightQuantizer."""
    from akida_workflows._quiet import import_toolchain

    import_toolchain()
    from quantizeml.layers import WeightQuantizer

    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 3, 16, 64)).astype(np.float32)
    # Rounding ties: weights on exact half steps of their channel's scale.
    scale = np.abs(w).max(axis=(0, 1, 2)) / np.float32(7)
    w[0, 0, :8] = (np.float32(2.5) * scale).astype(np.float32)
    w[0, 1, :8] = (np.float32(-0.5) * scale).astype(np.float32)
    for bits in (2, 4, 8):
        quantizer = WeightQuantizer(bitwidth=bits, axis=-1)
        codes = quantizer(w).fp.values.numpy()
        q, _ = quantize_per_channel(w, axis=-1, bits=bits, narrow_range=True)
        np.testing.assert_array_equal(codes, q)


def test_percentile_is_checked():
    for bad in (0, -1, 100.5, "99", True):
        with pytest.raises(QuantizationError, match="percentile"):
            quantize_per_channel(np.ones((2, 3)), method="percentile", percentile=bad)


def test_mse_calibrator_beats_maxabs_on_heavy_tails():
    rng = np.random.default_rng(0)
    w = rng.standard_t(3, size=(32, 256)).astype(np.float32)
    errs = {}
    for method in METHODS:
        q, s = quantize_per_channel(w, 0, 4, method)
        errs[method] = sqnr_db(w, dequantize(q, s, 0))
    assert errs["mse"] > errs["maxabs"] + 1.0


def test_zero_channel_has_zero_scale():
    w = np.ones((3, 4), np.float32)
    w[1] = 0
    for method in METHODS:
        q, scales = quantize_per_channel(w, 0, method=method)
        assert scales[1] == 0 and not q[1].any()
        assert np.isfinite(dequantize(q, scales)).all()
    assert quantize_per_tensor(np.zeros(5)) [1] == 0.0


@pytest.mark.parametrize("call, match", [
    (lambda: quantize_per_tensor([1.0, np.nan]), "NaN/inf"),
    (lambda: quantize_per_channel(np.array([[np.inf, 1.0]])), "NaN/inf"),
    (lambda: quantize_per_channel(np.ones((2, 3)), axis=2), "axis 2"),
    (lambda: quantize_per_channel(np.ones(()), axis=0), "1-D"),
    (lambda: quantize_per_channel(np.ones((2, 3)), method="kl"), "unknown method"),
    (lambda: quantize_per_tensor(np.ones(3), bits=1), "bits"),
    (lambda: dequantize(np.ones((2, 3)), np.ones(3), axis=0), "3 scales for 2 channels"),
])
def test_errors(call, match):
    with pytest.raises(QuantizationError, match=match):
        call()


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))


def test_fake_quantize_weights_and_report():
    model = _model().eval()
    fq = fake_quantize_weights(model, per_channel=True)
    w = fq[0].weight.detach().numpy()
    # Each output channel holds at most 15 distinct values (int4 codes times one scale).
    assert all(len(np.unique(w[c])) <= 16 for c in range(4))
    assert not torch.equal(fq[0].weight, model[0].weight)  # the original is untouched
    report = quantization_error_report(model)
    assert [r["layer"] for r in report.rows] == ["0", "3"]
    for r in report.rows:
        assert r["sqnr_channel_db"] >= r["sqnr_tensor_db"] - 1e-6
        assert r["max_err_channel"] <= r["max_err_tensor"] + 1e-7
    assert "SQNR per-tensor" in str(report)


def test_fake_quantize_names_the_bad_layer():
    model = _model()
    with torch.no_grad():
        model[3].weight[0, 0] = float("nan")
    with pytest.raises(QuantizationError, match="^3: "):
        fake_quantize_weights(model)
