"""Quantize an ONNX model with QuantizeML and convert it to Akida with CNN2SNN.

Thin wrappers that add what the upstream calls leave to the user: checks on
the calibration samples' layout and dtype, and errors that name the ONNX nodes
the toolchain could not handle, with the fix. Most importantly they refuse a
*partial* model: QuantizeML only warns when it cannot quantize a node, and
``cnn2snn.convert`` then silently stops there ("The end of the graph is
ignored"), returning an Akida model that computes only the first part of the
network. Here that is an :class:`~akida_workflows.errors.IncompatibleModelError`
unless ``allow_partial=True`` is asked for explicitly.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np

from ._quiet import import_toolchain
from .errors import IncompatibleModelError, describe_exception

__all__ = [
    "BRAINCHIP_DOMAIN",
    "HEAD_OPS",
    "to_nchw",
    "onnx_input_shape",
    "first_compute_op",
    "unquantized_nodes",
    "quantize_onnx",
    "to_akida",
]

#: ONNX domain of the nodes QuantizeML produces.
BRAINCHIP_DOMAIN = "com.brainchip"
#: Float ops accepted after the last quantized node without ``allow_partial``:
#: a classification head that is fine to run on the host.
HEAD_OPS = frozenset({"Softmax", "LogSoftmax", "Sigmoid", "ArgMax", "Identity"})

_FIXES = {
    "BatchNormalization": (
        "a BatchNorm that does not directly follow a Conv/Linear has no quantized pattern: "
        "call akida_workflows.folding.fold_batchnorm(model) before export, or move it "
        "before the activation"
    ),
    "Sigmoid": "Sigmoid is only supported as the model's last op; use ReLU/ReLU6 inside the network",
    "Tanh": "Tanh is only supported as the model's last op; use ReLU/ReLU6 inside the network",
    "Softmax": "Softmax is only supported as the model's last op",
    "LSTM": "recurrent layers have no Akida equivalent; use temporal convolutions",
    "GRU": "recurrent layers have no Akida equivalent; use temporal convolutions",
    "RNN": "recurrent layers have no Akida equivalent; use temporal convolutions",
    "MatMul": "dynamic matrix products (attention) are not supported; use Linear layers",
    "Add": "a residual addition is quantized only in supported block patterns (Conv→ReLU then Add)",
    "Concat": "concatenation is supported only between quantized convolution outputs",
    "AveragePool": "use global average pooling (AdaptiveAvgPool2d(1)) after the last conv",
    "Pad": "use the Conv2d's own padding (padding='same' or k//2) instead of a separate pad",
}
_GENERIC_FIX = (
    "this op has no Akida pattern; replace it with a supported layer "
    "(Conv2d, depthwise Conv2d, Linear, ReLU/ReLU6, MaxPool2d, global average pooling)"
)


def _fix_for(op_type: str) -> str:
    return _FIXES.get(op_type, _GENERIC_FIX)


def to_nchw(x, channels: int | None = None) -> np.ndarray:
    """Bring image batches to the float32 NCHW layout Akida 2.x ONNX models take.

    Parameters
    ----------
    x : array-like
        ``(N, H, W)`` (a channel axis is added), ``(N, H, W, C)`` or ``(N, C, H, W)``.
    channels : int, optional
        The model's channel count; resolves ambiguous 4-D inputs. Without it a
        4-D array whose last axis is 1 or 3 and second axis is not is taken as NHWC.

    Returns
    -------
    numpy.ndarray
        ``float32`` ``(N, C, H, W)``; values are not rescaled.

    Raises
    ------
    IncompatibleModelError
        If ``x`` is not 3-D/4-D or its channels do not match ``channels``.
    """
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise IncompatibleModelError(f"expected a 3-D or 4-D image batch, got shape {x.shape}")
    if channels is not None:
        if x.shape[1] == channels:
            pass
        elif x.shape[-1] == channels:
            x = np.transpose(x, (0, 3, 1, 2))
        else:
            raise IncompatibleModelError(
                f"image batch {x.shape} has no axis of {channels} channels"
            )
    elif x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = np.transpose(x, (0, 3, 1, 2))
    return np.ascontiguousarray(x, dtype=np.float32)


def _as_onnx_model(onnx_model):
    import onnx

    from .export import OnnxExport

    if isinstance(onnx_model, OnnxExport):
        return onnx_model.model
    if isinstance(onnx_model, (str, os.PathLike)):
        path = Path(onnx_model)
        if not path.is_file():
            raise IncompatibleModelError(f"ONNX file not found: {path}")
        try:
            return onnx.load(str(path))
        except Exception as exc:
            raise IncompatibleModelError(f"{path} is not a readable ONNX model: {exc}") from exc
    if isinstance(onnx_model, onnx.ModelProto):
        return onnx_model
    raise IncompatibleModelError(
        f"expected an onnx.ModelProto, an .onnx path or an OnnxExport, got {type(onnx_model)}"
    )


#: ONNX ops that only move data (followed through to find the first compute op).
LAYOUT_OPS = frozenset({"Flatten", "Reshape", "Identity", "Squeeze", "Unsqueeze",
                        "Transpose"})
#: ONNX ops of a fully connected layer.
DENSE_OPS = frozenset({"Gemm", "MatMul"})


def first_compute_op(onnx_model) -> str | None:
    """The op type of the first node after the input that computes (not only reshapes).

    Parameters
    ----------
    onnx_model : onnx.ModelProto, path or OnnxExport

    Returns
    -------
    str or None
        e.g. ``"Conv"``, or ``"Gemm"`` for an MLP that starts with ``Flatten``;
        None if the input feeds no node or feeds several.
    """
    graph = _as_onnx_model(onnx_model).graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i.name for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        return None
    tensor = inputs[0]
    for _ in graph.node:  # a chain visits each node at most once
        consumers = [n for n in graph.node if n.input and n.input[0] == tensor]
        if len(consumers) != 1:
            return None
        if consumers[0].op_type not in LAYOUT_OPS:
            return consumers[0].op_type
        tensor = consumers[0].output[0]
    return None


def onnx_input_shape(onnx_model) -> tuple[int | None, ...]:
    """Shape of the ONNX graph's single input, ``None`` for symbolic axes.

    Parameters
    ----------
    onnx_model : onnx.ModelProto, path or OnnxExport

    Returns
    -------
    tuple
        e.g. ``(None, 1, 28, 28)`` for a dynamic batch.
    """
    model = _as_onnx_model(onnx_model)
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise IncompatibleModelError(
            f"Akida models take exactly one input; this graph has {len(inputs)}: "
            f"{[i.name for i in inputs]}"
        )
    dims = inputs[0].type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)


def _check_sample_dtype(samples, how: str) -> np.ndarray:
    """Calibration samples as an array, refused unless float (``how`` says how to get it)."""
    x = np.asarray(samples)
    if x.dtype == np.uint8:
        raise IncompatibleModelError(
            f"calibration samples are uint8; give the float input the model was trained on "
            f"({how})"
        )
    if not np.issubdtype(x.dtype, np.floating):
        raise IncompatibleModelError(f"calibration samples must be float, got {x.dtype}")
    return x


def _check_sample_values(x: np.ndarray) -> np.ndarray:
    """Refuse an empty or non-finite batch; return it as contiguous float32."""
    if x.shape[0] == 0:
        raise IncompatibleModelError("no calibration samples given")
    if not np.isfinite(x).all():
        raise IncompatibleModelError("calibration samples contain NaN or inf")
    return np.ascontiguousarray(x, dtype=np.float32)


def _check_samples(samples, shape: tuple[int | None, ...]) -> np.ndarray:
    x = _check_sample_dtype(samples, "e.g. akida_workflows.datasets.preprocess(images)")
    if x.ndim == 3 and len(shape) == 4 and shape[2] and (x.shape[1], x.shape[2]) == (
            shape[1], shape[3]):  # (N, C, L) signals for a model lowered from 1-D
        from .lowering import lift_1d

        x = lift_1d(x, shape[2])
    if x.ndim != len(shape):
        raise IncompatibleModelError(
            f"calibration samples have shape {x.shape}; the model input is {shape} "
            f"({len(shape)}-D, batch first)"
        )
    expected = tuple(shape[1:])
    if tuple(x.shape[1:]) != expected and None not in expected:
        hint = ""
        if x.ndim == 4 and (x.shape[3], x.shape[1], x.shape[2]) == expected:
            hint = " They look NHWC: convert with akida_workflows.convert.to_nchw(samples)."
        raise IncompatibleModelError(
            f"calibration samples have per-item shape {tuple(x.shape[1:])}, "
            f"the model expects {expected} (NCHW).{hint}"
        )
    return _check_sample_values(x)


def unquantized_nodes(quantized) -> list[tuple[str, str]]:
    """``(name, op_type)`` of the nodes QuantizeML left in float.

    Parameters
    ----------
    quantized : onnx.ModelProto
        Output of :func:`quantize_onnx` / ``quantizeml.models.quantize``.

    Returns
    -------
    list of (str, str)
        Empty when every node was quantized.
    """
    model = _as_onnx_model(quantized)
    return [
        (n.name or n.output[0], n.op_type)
        for n in model.graph.node
        if n.domain != BRAINCHIP_DOMAIN
    ]


def _first_unquantized(quantized, left: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The unquantized nodes fed by quantized ones: where quantization stopped."""
    model = _as_onnx_model(quantized)
    float_outputs = set()
    for node in model.graph.node:
        if node.domain != BRAINCHIP_DOMAIN:
            float_outputs.update(node.output)
    names = {name for name, _ in left}
    causes = []
    for node in model.graph.node:
        if node.domain == BRAINCHIP_DOMAIN or (node.name or node.output[0]) not in names:
            continue
        if not any(i in float_outputs for i in node.input):
            causes.append((node.name or node.output[0], node.op_type))
    return causes or left[:1]


def _partial_message(quantized, nodes: list[tuple[str, str]], stage: str) -> str:
    causes = _first_unquantized(quantized, nodes)
    rest = [n for n in nodes if n not in causes]
    lines = [f"  - {name} ({op}): {_fix_for(op)}" for name, op in causes]
    tail = ""
    if rest:
        tail = (
            f"\nEverything after it stays in float too ({len(rest)} node(s): "
            + ", ".join(f"{n} ({op})" for n, op in rest) + "), and CNN2SNN would silently "
            "drop it from the Akida model."
        )
    return (
        f"{stage}: QuantizeML could not quantize the model past these node(s):\n"
        + "\n".join(lines) + tail +
        "\nFix the model, or pass allow_partial=True to accept a model that ends there "
        "(the remaining nodes must then run on the host)."
    )


def quantize_onnx(
    onnx_model,
    samples,
    *,
    num_samples: int | None = None,
    batch_size: int | None = None,
    allow_partial: bool = False,
    **qparams,
):
    """Quantize an ONNX model to 8 bits with QuantizeML, calibrating on ``samples``.

    Parameters
    ----------
    onnx_model : onnx.ModelProto, path or OnnxExport
        A float ONNX model with one NCHW input.
    samples : numpy.ndarray
        Float calibration inputs, NCHW, preprocessed exactly as for training
        (``(N, C, L)`` signals for a model lowered from 1-D are lifted here).
    num_samples : int, optional
        How many samples to calibrate on (default: all of ``samples``).
    batch_size : int, optional
        Calibration batch size (QuantizeML's default if not given).
    allow_partial : bool, default False
        Accept a result in which some nodes stay in float (see module docs).
    **qparams
        Passed to :class:`quantizeml.layers.QuantizationParams`
        (e.g. ``per_tensor_activations=True``). QuantizeML's ONNX path accepts
        only its default 8-bit widths. A model whose first compute layer is a
        ``Linear`` (an MLP, ``Flatten`` first) gets ``input_dtype="int8"`` unless
        given: QuantizeML's Dense takes only signed 8-bit inputs, and Akida 2.0 then
        runs it from its ``InputData`` layer (float inputs are still accepted: the
        model's input quantizer maps them to int8).

    Returns
    -------
    onnx.ModelProto
        The quantized model (nodes in the ``com.brainchip`` domain).

    Raises
    ------
    IncompatibleModelError
        Bad samples (wrong layout, dtype, shape, NaN), a QuantizeML failure, or
        nodes left unquantized other than a classification head
        (:data:`HEAD_OPS`) while ``allow_partial`` is False.
    """
    import_toolchain()
    import quantizeml.models as qmodels
    from quantizeml.layers import QuantizationParams

    model = _as_onnx_model(onnx_model)
    x = _check_samples(samples, onnx_input_shape(model))
    kwargs = {"samples": x, "num_samples": num_samples or len(x)}
    if batch_size is not None:
        kwargs["batch_size"] = batch_size
    if "input_dtype" not in qparams and first_compute_op(model) in DENSE_OPS:
        qparams["input_dtype"] = "int8"  # the only input QuantizeML's Dense accepts
    if qparams:
        kwargs["qparams"] = QuantizationParams(**qparams)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            quantized = qmodels.quantize(model, **kwargs)
        except Exception as exc:
            raise IncompatibleModelError(
                "QuantizeML could not quantize the model: "
                f"{describe_exception(exc, causes=_KNOWN_CAUSES)}"
            ) from exc
    for w in caught:
        if "were not quantized" not in str(w.message):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    _check_complete(quantized, allow_partial, "quantize_onnx")
    return quantized


#: Known causes of QuantizeML failures whose own message says little.
_KNOWN_CAUSES = (
    ("bitwidth", "QuantizeML's ONNX path supports only 8-bit (its default) parameters"),
    ("dense.py", "a Linear's input must be signed 8-bit in QuantizeML's ONNX path: pass "
                 "input_dtype='int8' (quantize_onnx sets it when the first layer is a Linear)"),
)


def _check_complete(quantized, allow_partial: bool, stage: str) -> list[tuple[str, str]]:
    left = unquantized_nodes(quantized)
    blocking = [(n, op) for n, op in left if op not in HEAD_OPS]
    if blocking and not allow_partial:
        raise IncompatibleModelError(
            _partial_message(quantized, left, stage), nodes=[n for n, _ in left]
        )
    return left


def to_akida(quantized, *, allow_partial: bool = False):
    """Convert a quantized ONNX model to an Akida model with ``cnn2snn.convert``.

    Parameters
    ----------
    quantized : onnx.ModelProto, path or OnnxExport
        Output of :func:`quantize_onnx`.
    allow_partial : bool, default False
        Accept a conversion that stops before the end of the graph. A warning
        then says how many layers run on Akida and which nodes stay on the host.

    Returns
    -------
    akida.Model
        Unmapped; evaluate it with ``predict`` (software backend) and map it
        with :func:`akida_workflows.deploy.map_report`.

    Raises
    ------
    IncompatibleModelError
        The model is not quantized, CNN2SNN rejects a node (named in the
        message), or the conversion stops early while ``allow_partial`` is False.
    """
    import_toolchain()
    import cnn2snn

    model = _as_onnx_model(quantized)
    if not any(n.domain == BRAINCHIP_DOMAIN for n in model.graph.node):
        raise IncompatibleModelError(
            "the model is not quantized (no com.brainchip nodes): call quantize_onnx first"
        )
    left = _check_complete(model, allow_partial, "to_akida")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            akida_model = cnn2snn.convert(model)
        except Exception as exc:
            names = re.findall(r"(/[\w/.\-]+)", str(exc))
            raise IncompatibleModelError(
                f"cnn2snn.convert failed: {exc}", nodes=sorted(set(names))
            ) from exc
    stop = [w for w in caught if "Conversion stops" in str(w.message)]
    for w in caught:
        if w not in stop:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    blocking = [(n, op) for n, op in left if op not in HEAD_OPS]
    if stop and blocking:
        warnings.warn(
            f"partial Akida model: {len(akida_model.layers)} layers run on Akida; "
            f"{len(left)} ONNX node(s) after them must run on the host: "
            + ", ".join(f"{n} ({op})" for n, op in left),
            stacklevel=2,
        )
    elif stop and not left:  # pragma: no cover - defensive: toolchain stopped for another reason
        raise IncompatibleModelError(f"cnn2snn stopped early: {stop[0].message}")
    return akida_model
