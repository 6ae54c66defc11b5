from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
import torch
from models import SHAPE, bn_after_relu, mappable, samples, softmax_head

from akida_workflows.convert import (
    onnx_input_shape,
    quantize_onnx,
    to_akida,
    to_nchw,
    unquantized_nodes,
)
from akida_workflows.errors import IncompatibleModelError
from akida_workflows.export import export_onnx


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = tmp_path_factory.mktemp("convert") / "mappable.onnx"
    return export_onnx(mappable(), torch.from_numpy(samples(1)), path)


def test_quantize_and_convert(exported):
    quantized = quantize_onnx(exported, samples())
    assert unquantized_nodes(quantized) == []
    model = to_akida(quantized)
    names = [layer.name for layer in model.layers]
    assert names[0] == "quantize" and names[-1] == "dequantizer"
    assert len(names) == 5  # quantizer, 2 convs, 1 dense, dequantizer
    out = model.predict(samples(3))
    assert out.reshape(3, -1).shape == (3, 10)


def test_quantize_accepts_path_and_model_proto(exported):
    assert onnx_input_shape(exported.path) == (None, *SHAPE)
    q = quantize_onnx(str(exported.path), samples(16))
    assert isinstance(q, onnx.ModelProto)
    assert isinstance(quantize_onnx(exported.model, samples(16)), onnx.ModelProto)


def test_nhwc_samples_get_a_hint(exported):
    nhwc = np.transpose(samples(8), (0, 2, 3, 1))
    with pytest.raises(IncompatibleModelError, match="look NHWC.*to_nchw"):
        quantize_onnx(exported, nhwc)
    # ... and the hint works.
    quantize_onnx(exported, to_nchw(nhwc, channels=1))


@pytest.mark.parametrize("bad, match", [
    (np.zeros((4, *SHAPE), dtype=np.uint8), "uint8"),
    (np.zeros((4, *SHAPE), dtype=np.int32), "must be float"),
    (np.zeros((4, 16, 16), dtype=np.float32), "3-D|4-D|shape"),
    (np.zeros((4, 1, 28, 28), dtype=np.float32), r"expects \(1, 16, 16\)"),
    (np.zeros((0, *SHAPE), dtype=np.float32), "no calibration samples"),
    (np.full((4, *SHAPE), np.nan, dtype=np.float32), "NaN"),
])
def test_bad_calibration_samples(exported, bad, match):
    with pytest.raises(IncompatibleModelError, match=match):
        quantize_onnx(exported, bad)


def test_not_an_onnx_model(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a protobuf")
    with pytest.raises(IncompatibleModelError, match="broken.onnx"):
        quantize_onnx(bad, samples(4))
    with pytest.raises(IncompatibleModelError, match="not found"):
        quantize_onnx(tmp_path / "missing.onnx", samples(4))
    with pytest.raises(IncompatibleModelError, match="expected an onnx.ModelProto"):
        quantize_onnx(42, samples(4))


def test_to_akida_requires_a_quantized_model(exported):
    with pytest.raises(IncompatibleModelError, match="call quantize_onnx first"):
        to_akida(exported)


@pytest.fixture(scope="module")
def bn_export(tmp_path_factory):
    path = tmp_path_factory.mktemp("bn") / "bn.onnx"
    return export_onnx(bn_after_relu(), torch.from_numpy(samples(1)), path)


def test_bn_after_relu_is_refused_with_the_nodes_and_the_fix(bn_export):
    with pytest.raises(IncompatibleModelError) as info:
        quantize_onnx(bn_export, samples())
    message = str(info.value)
    assert "past these node(s):\n  - /2/BatchNormalization (BatchNormalization)" in message
    assert "fold_batchnorm" in message
    # Downstream nodes are named as collateral, not as causes with a bogus fix.
    assert "Everything after it stays in float too (4 node(s): /3/Conv (Conv)" in message
    assert "  - /3/Conv" not in message
    assert "allow_partial=True" in message
    assert "/2/BatchNormalization" in info.value.nodes


def test_partial_model_only_when_asked(bn_export):
    quantized = quantize_onnx(bn_export, samples(), allow_partial=True)
    left = [op for _, op in unquantized_nodes(quantized)]
    assert left[:2] == ["BatchNormalization", "Conv"]
    with pytest.raises(IncompatibleModelError, match="BatchNormalization"):
        to_akida(quantized)
    with pytest.warns(UserWarning, match=r"partial Akida model: 3 layers run on Akida"):
        partial = to_akida(quantized, allow_partial=True)
    assert [layer.name for layer in partial.layers] == ["quantize", "/0/Conv", "dequantizer"]


def test_softmax_head_is_accepted(tmp_path):
    exported = export_onnx(softmax_head(), torch.from_numpy(samples(1)), tmp_path / "s.onnx")
    quantized = quantize_onnx(exported, samples())
    assert [op for _, op in unquantized_nodes(quantized)] == ["Softmax"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.filterwarnings("ignore", message="Conversion stops")
        model = to_akida(quantized)
    assert len(model.layers) == 5


def test_to_nchw_layouts():
    nhw = np.zeros((2, 5, 6), dtype=np.uint8)
    assert to_nchw(nhw).shape == (2, 1, 5, 6)
    assert to_nchw(np.zeros((2, 5, 6, 3))).shape == (2, 3, 5, 6)
    assert to_nchw(np.zeros((2, 3, 5, 6))).shape == (2, 3, 5, 6)
    assert to_nchw(np.zeros((2, 5, 6, 4)), channels=4).shape == (2, 4, 5, 6)
    assert to_nchw(np.zeros((2, 1, 5, 6))).dtype == np.float32
    with pytest.raises(IncompatibleModelError, match="no axis of 2 channels"):
        to_nchw(np.zeros((2, 3, 5, 6)), channels=2)
    with pytest.raises(IncompatibleModelError, match="3-D or 4-D"):
        to_nchw(np.zeros((2, 3)))


def test_empty_toolchain_assertion_is_described(tmp_path, monkeypatch):
    from akida_workflows.errors import describe_exception

    # A module outside the tests (pytest rewrites asserts only in test modules).
    (tmp_path / "toolchain_stub.py").write_text(
        "def check(dtype):\n    assert dtype == 'int8'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import toolchain_stub

    with pytest.raises(AssertionError) as info:
        toolchain_stub.check("float32")
    text = describe_exception(info.value)
    assert text.startswith("AssertionError at ")
    assert text.endswith("assert dtype == 'int8'")
    assert describe_exception(ValueError("bad pads")) == "bad pads"
    # A known cause is appended once, for the first marker found (case-insensitive).
    causes = (("pads", "write padding=k//2"), ("bad", "not this one"))
    assert describe_exception(ValueError("Bad PADS"), causes=causes) == (
        "Bad PADS (write padding=k//2)")
    assert describe_exception(ValueError("ok"), causes=causes) == "ok"
    assert describe_exception(TypeError("<class 'a.b.Dense'> only")) == "Dense only"
