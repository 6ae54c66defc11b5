"""The 4-bit path: PyTorch → tf-keras → QuantizeML (4-bit) → CNN2SNN → Akida 1.0.

QuantizeML's ONNX path accepts only 8-bit parameters ("Only default bitwidth
qparams is allowed") and targets Akida 2.0, while the AKD1000/AKD1500 chips
run Akida 1.0 models with 1/2/4-bit weights. QuantizeML's *Keras* quantizer has
no such limit. This module rebuilds a PyTorch model as the equivalent tf-keras
model, with its trained weights, so that the Keras quantizer can produce a
4-bit Akida 1.0 model:

>>> keras_model = to_keras(torch_model, (1, 28, 28))           # doctest: +SKIP
>>> quantized = quantize_4bit(keras_model, samples_nhwc)        # doctest: +SKIP
>>> akida_model = convert_keras(quantized)                      # doctest: +SKIP

Supported layers: Conv2d (groups 1 or depthwise), Linear, ReLU, ReLU6,
Hardtanh(0, m) (a clamped ReLU), MaxPool2d, AvgPool2d, AdaptiveAvgPool2d(1),
Flatten, Dropout/Identity, and BatchNorm (folded first with
:func:`akida_workflows.folding.fold_batchnorm`).
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings

import numpy as np

from ._quiet import import_toolchain
from .errors import IncompatibleModelError

__all__ = [
    "to_keras",
    "quantize_4bit",
    "fine_tune",
    "convert_keras",
    "to_nhwc",
    "unbounded_relus",
]

AKIDA_VERSIONS = ("v1", "v2")


def _keras():
    import_toolchain()
    import tf_keras as keras

    return keras


def _layer_name(torch_name: str, kind: str) -> str:
    return f"{kind}_{re.sub(r'[^0-9A-Za-z_]', '_', torch_name) or 'root'}"


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _keras_padding(name, kernel, stride, padding, size, what="Conv2d") -> str:
    """'valid' or 'same' when Keras pads exactly as PyTorch did, else an error."""
    if isinstance(padding, str):
        if padding in ("valid", "same"):
            return padding
    pads = _pair(padding)
    if all(p == 0 for p in pads):
        return "valid"
    for k, s, p, n in zip(kernel, stride, pads, size):
        out = -(-n // s)  # ceil(n / s), Keras 'same'
        total = max((out - 1) * s + k - n, 0)
        torch_out = (n + 2 * p - k) // s + 1
        if total // 2 != p or total - total // 2 != p or torch_out != out:
            raise IncompatibleModelError(
                f"{name} ({what}): padding={padding} with kernel {kernel}, stride {stride} on a "
                f"{size[0]}x{size[1]} input is not Keras/Akida 'same' padding (which pads "
                f"{total // 2} before and {total - total // 2} after). Use stride 1 with "
                "padding=k//2 (then down-sample with MaxPool2d), or padding=0.",
                nodes=[name],
            )
    return "same"


def _same_pads_nothing(kernel, stride, size) -> bool:
    for k, s, n in zip(kernel, stride, size):
        out = -(-n // s)
        if max((out - 1) * s + k - n, 0) or (n - k) // s + 1 != out:
            return False
    return True


def _sequence(model):
    """(name, module or function tag) for each op of a chain-shaped model."""
    import torch
    import torch.fx
    from torch import nn

    if isinstance(model, nn.Sequential):
        out = []
        for name, m in model.named_children():
            if isinstance(m, nn.Sequential):
                out += [(f"{name}.{n}", sub) for n, sub in _sequence(m)]
            else:
                out.append((name, m))
        return out
    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as exc:
        raise IncompatibleModelError(
            f"cannot trace {type(model).__name__} with torch.fx ({exc}); "
            "to_keras supports nn.Sequential and traceable chain-shaped modules"
        ) from exc
    modules = dict(gm.named_modules())
    out, prev = [], None
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            prev = node
            continue
        if node.op == "output":
            break
        inputs = [a for a in node.all_input_nodes]
        if node.op == "get_attr" or inputs != [prev] or node.args[0] is not prev:
            raise IncompatibleModelError(
                f"{node.name}: to_keras supports only chain-shaped models (each op feeds the "
                "next); this model branches or merges (e.g. a residual addition)",
                nodes=[node.name],
            )
        if node.op == "call_module":
            out.append((node.target, modules[node.target]))
        elif node.op in ("call_function", "call_method"):
            fname = node.target if node.op == "call_method" else getattr(node.target, "__name__", "")
            if fname == "flatten":
                start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
                out.append((node.name, nn.Flatten(start_dim=start)))
            elif fname in ("relu", "relu_"):
                out.append((node.name, nn.ReLU()))
            elif fname in ("relu6",):
                out.append((node.name, nn.ReLU6()))
            elif fname in ("clamp", "clip", "clamp_", "hardtanh"):
                low = node.args[1] if len(node.args) > 1 else node.kwargs.get(
                    "min", node.kwargs.get("min_val", -1.0 if fname == "hardtanh" else None))
                high = node.args[2] if len(node.args) > 2 else node.kwargs.get(
                    "max", node.kwargs.get("max_val", 1.0 if fname == "hardtanh" else None))
                if low != 0 or not isinstance(high, (int, float)) or high <= 0:
                    raise IncompatibleModelError(
                        f"{node.name}: {fname}(min={low}, max={high}) is supported only as a "
                        "clamped ReLU (min=0, max > 0)", nodes=[node.name])
                out.append((node.name, nn.Hardtanh(0.0, float(high))))
            else:
                raise IncompatibleModelError(
                    f"{node.name}: function {fname or node.target} is not supported by to_keras",
                    nodes=[node.name],
                )
        prev = node
    return out


def to_keras(torch_model, input_shape):
    """Rebuild a PyTorch model as the equivalent tf-keras model, weights included.

    Parameters
    ----------
    torch_model : torch.nn.Module
        A chain-shaped model (``nn.Sequential`` or traceable). BatchNorm layers
        are folded first; the model itself is not modified.
    input_shape : tuple of int
        Channel-first input shape as in PyTorch, without batch: ``(C, H, W)``.

    Returns
    -------
    tf_keras.Model
        Takes NHWC input (``(N, H, W, C)``); its outputs equal the PyTorch
        model's on the same images (up to float32 rounding). Layer names carry
        the PyTorch module names (``conv_0``, ``relu_1``, …).

    Raises
    ------
    IncompatibleModelError
        Unsupported modules (named), branching models, padding Keras cannot
        express, a non-positive or inconsistent ``input_shape``.
    """
    import torch
    from torch import nn

    from .folding import fold_batchnorm

    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise IncompatibleModelError(
            f"input_shape must be channel-first (C, H, W) as in PyTorch, got {input_shape}"
        )
    if any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in torch_model.modules()):
        torch_model = fold_batchnorm(torch_model, strict=True)
    torch_model = torch_model.eval()
    keras = _keras()
    layers = keras.layers
    c, h, w = shape
    inputs = keras.Input((h, w, c), name="input")
    x = inputs
    state = ("chw", c, h, w)  # ("chw", C, H, W) or ("flat", features, hwc_perm or None)
    last_conv_padding = "valid"
    assignments = []  # (keras layer, [weights]) set after the model is built

    for name, m in _sequence(torch_model):
        label = f"{name} ({type(m).__name__})"
        if isinstance(m, (nn.Dropout, nn.Identity)):
            continue
        if isinstance(m, nn.Conv2d):
            if state[0] != "chw":
                raise IncompatibleModelError(f"{label} after Flatten", nodes=[name])
            _, c, h, w = state
            if m.in_channels != c:
                raise IncompatibleModelError(
                    f"{label} expects {m.in_channels} channels, gets {c}", nodes=[name])
            if _pair(m.dilation) != (1, 1) or m.padding_mode != "zeros":
                raise IncompatibleModelError(
                    f"{label}: dilation and non-zero padding modes are not supported", nodes=[name])
            kernel, stride = _pair(m.kernel_size), _pair(m.stride)
            padding = _keras_padding(name, kernel, stride, m.padding, (h, w))
            weight = m.weight.detach().cpu().numpy()
            bias = (m.bias.detach().cpu().numpy() if m.bias is not None
                    else np.zeros(m.out_channels, np.float32))
            if m.groups == 1:
                layer = layers.Conv2D(m.out_channels, kernel, strides=stride, padding=padding,
                                      name=_layer_name(name, "conv"))
                kweights = [weight.transpose(2, 3, 1, 0), bias]
            elif m.groups == m.in_channels:
                mult = m.out_channels // m.in_channels
                layer = layers.DepthwiseConv2D(kernel, strides=stride, padding=padding,
                                               depth_multiplier=mult,
                                               name=_layer_name(name, "dwconv"))
                kweights = [weight.reshape(m.in_channels, mult, *kernel).transpose(2, 3, 0, 1),
                            bias]
            else:
                raise IncompatibleModelError(
                    f"{label}: grouped convolution (groups={m.groups}) is not supported; use "
                    "groups=1 or a depthwise convolution (groups=in_channels)", nodes=[name])
            x = layer(x)
            assignments.append((layer, kweights))
            last_conv_padding = padding
            _, oh, ow, oc = x.shape
            state = ("chw", oc, oh, ow)
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            if state[0] != "chw":
                raise IncompatibleModelError(f"{label} after Flatten", nodes=[name])
            _, c, h, w = state
            kernel = _pair(m.kernel_size)
            stride = _pair(m.stride if m.stride is not None else m.kernel_size)
            if m.ceil_mode:
                raise IncompatibleModelError(f"{label}: ceil_mode=True is not supported",
                                             nodes=[name])
            if isinstance(m, nn.MaxPool2d):
                if _pair(m.dilation) != (1, 1):
                    raise IncompatibleModelError(f"{label}: dilation is not supported",
                                                 nodes=[name])
                padding = _keras_padding(name, kernel, stride, m.padding, (h, w), "MaxPool2d")
                if padding == "valid" and _same_pads_nothing(kernel, stride, (h, w)):
                    # Identical results; Akida 1.0 wants the pool padded like its conv.
                    padding = last_conv_padding
                x = layers.MaxPool2D(kernel, stride, padding=padding,
                                     name=_layer_name(name, "maxpool"))(x)
            else:
                if _pair(m.padding) != (0, 0):
                    raise IncompatibleModelError(
                        f"{label}: padded average pooling is not supported (use padding=0)",
                        nodes=[name])
                x = layers.AveragePooling2D(kernel, stride, padding="valid",
                                            name=_layer_name(name, "avgpool"))(x)
            _, oh, ow, oc = x.shape
            state = ("chw", oc, oh, ow)
        elif isinstance(m, nn.AdaptiveAvgPool2d):
            if _pair(m.output_size) != (1, 1) or state[0] != "chw":
                raise IncompatibleModelError(
                    f"{label}: only AdaptiveAvgPool2d(1) (global average pooling) is supported",
                    nodes=[name])
            x = layers.GlobalAveragePooling2D(keepdims=True, name=_layer_name(name, "gap"))(x)
            state = ("chw", state[1], 1, 1)
        elif isinstance(m, nn.Flatten):
            if state[0] == "flat":
                continue
            if m.start_dim != 1 or m.end_dim != -1:
                raise IncompatibleModelError(f"{label}: only Flatten(start_dim=1) is supported",
                                             nodes=[name])
            _, c, h, w = state
            x = layers.Flatten(name=_layer_name(name, "flatten"))(x)
            # Keras flattens (h, w, c); PyTorch flattens (c, h, w).
            hh, ww, cc = np.meshgrid(np.arange(h), np.arange(w), np.arange(c), indexing="ij")
            perm = (cc * h * w + hh * w + ww).ravel()
            state = ("flat", c * h * w, perm)
        elif isinstance(m, nn.Linear):
            if state[0] == "chw":
                _, c, h, w = state
                if h * w != 1:
                    raise IncompatibleModelError(
                        f"{label} on a {c}x{h}x{w} feature map: add a Flatten before it",
                        nodes=[name])
                x = layers.Flatten(name=_layer_name(name, "flatten"))(x)
                state = ("flat", c, None)
            features, perm = state[1], state[2]
            if m.in_features != features:
                raise IncompatibleModelError(
                    f"{label} expects {m.in_features} features, gets {features}", nodes=[name])
            weight = m.weight.detach().cpu().numpy().T  # (in, out), PyTorch feature order
            if perm is not None:
                weight = weight[perm]
            bias = (m.bias.detach().cpu().numpy() if m.bias is not None
                    else np.zeros(m.out_features, np.float32))
            layer = layers.Dense(m.out_features, name=_layer_name(name, "dense"))
            x = layer(x)
            assignments.append((layer, [weight, bias]))
            state = ("flat", m.out_features, None)
        elif isinstance(m, nn.ReLU):
            x = layers.ReLU(name=_layer_name(name, "relu"))(x)
        elif isinstance(m, nn.ReLU6):
            x = layers.ReLU(6.0, name=_layer_name(name, "relu6"))(x)
        elif isinstance(m, nn.Hardtanh) and m.min_val == 0.0 and m.max_val > 0:
            x = layers.ReLU(float(m.max_val), name=_layer_name(name, "clamp"))(x)
        else:
            hint = ""
            if isinstance(m, (nn.LSTM, nn.GRU, nn.RNN)):
                hint = ": recurrent layers have no Akida equivalent"
            elif isinstance(m, (nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh)):
                hint = ": use ReLU, ReLU6 or a clamp (Hardtanh(0, m))"
            raise IncompatibleModelError(
                f"{label} is not supported by to_keras{hint}", nodes=[name])

    keras_model = keras.Model(inputs, x, name=type(torch_model).__name__.lower())
    for layer, kweights in assignments:
        layer.set_weights([np.asarray(a, dtype=np.float32) for a in kweights])
    with torch.no_grad():
        probe = torch.zeros(1, *shape)
        if tuple(torch_model(probe).shape[1:]) != tuple(keras_model.output_shape[1:]):
            raise IncompatibleModelError(
                f"the Keras model's output {keras_model.output_shape[1:]} does not match "
                f"the PyTorch model's {tuple(torch_model(probe).shape[1:])}")
    return keras_model


def to_nhwc(x) -> np.ndarray:
    """Float32 NHWC copy of an NCHW image batch (the layout PyTorch models take).

    Parameters
    ----------
    x : array-like
        ``(N, C, H, W)``, or ``(N, H, W)`` for one channel.

    Returns
    -------
    numpy.ndarray
        ``(N, H, W, C)`` float32.
    """
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise IncompatibleModelError(f"expected an NCHW image batch, got shape {x.shape}")
    return np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)), dtype=np.float32)


def unbounded_relus(keras_model) -> list[str]:
    """Names of ReLU layers without a maximum (Akida 1.0 needs one)."""
    keras = _keras()
    return [layer.name for layer in keras_model.layers
            if isinstance(layer, keras.layers.ReLU) and layer.max_value is None]


def _check_samples(keras_model, samples) -> np.ndarray:
    from .convert import _check_sample_dtype, _check_sample_values

    x = _check_sample_dtype(samples, "akida_workflows.datasets.preprocess, then to_nhwc")
    expected = tuple(keras_model.input_shape[1:])
    if x.ndim != 4 or tuple(x.shape[1:]) != expected:
        hint = ""
        if x.ndim == 4 and (x.shape[2], x.shape[3], x.shape[1]) == expected:
            hint = " They look NCHW: convert with akida_workflows.keras_bridge.to_nhwc(samples)."
        raise IncompatibleModelError(
            f"calibration samples have shape {x.shape}; the Keras model takes "
            f"(N, {', '.join(map(str, expected))}) NHWC.{hint}")
    return _check_sample_values(x)


def _version(akida_version: str):
    import_toolchain()
    from cnn2snn import AkidaVersion

    if akida_version not in AKIDA_VERSIONS:
        raise IncompatibleModelError(
            f"akida_version must be one of {AKIDA_VERSIONS}, got {akida_version!r}")
    return AkidaVersion.v1 if akida_version == "v1" else AkidaVersion.v2


#: (weight quantizer attribute, kernel attribute) of QuantizeML's quantized layers:
#: Conv2D / Dense (``kernel``), DepthwiseConv2D (``depthwise_kernel``), SeparableConv2D.
_WEIGHT_KERNELS = (
    ("weight_quantizer", "kernel"),
    ("weight_quantizer", "depthwise_kernel"),
    ("dw_weight_quantizer", "depthwise_kernel"),
    ("pw_weight_quantizer", "pointwise_kernel"),
)
#: QuantizeML's WeightQuantizer never uses a scale below this (tf.maximum(scales, 1e-6)).
_QUANTIZEML_MIN_SCALE = 1e-6
#: Layer types whose weight quantizer sees the kernel as stored (not transposed).
_CALIBRATED_LAYER_TYPES = ("QuantizedConv2D", "QuantizedDense", "QuantizedDepthwiseConv2D",
                           "QuantizedSeparableConv2D")


def _weight_kernels(quantized):
    """(layer, kernel attribute, quantizer, kernel variable) of each quantized weight."""
    from quantizeml.layers import WeightQuantizer

    out = []
    for layer in quantized.layers:
        for qattr, kattr in _WEIGHT_KERNELS:
            quantizer, kernel = getattr(layer, qattr, None), getattr(layer, kattr, None)
            if isinstance(quantizer, WeightQuantizer) and kernel is not None:
                out.append((layer, kattr, quantizer, kernel))
    return out


def _quantizer_output(quantizer, kernel) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes (what CNN2SNN writes into Akida) and float values QuantizeML gives."""
    qfloat = quantizer(kernel)
    return qfloat.fp.values.numpy(), qfloat.to_float().numpy()


def _calibrate_weights(quantized, method: str, percentile: float):
    """Write the per-channel codes of :mod:`akida_workflows.int4` into a quantized model.

    QuantizeML's ``WeightQuantizer`` maps each channel's max-abs to the largest
    code. Setting each kernel to ``dequantize(q, scales)`` of
    ``quantize_per_channel(kernel, method=..., narrow_range=True)`` makes that
    max-abs the calibrated range, so QuantizeML, and CNN2SNN after it, derive
    exactly the codes ``q``; this is checked here, layer by layer. Channels whose
    scale would fall under QuantizeML's floor (1e-6) keep QuantizeML's own codes.

    Returns
    -------
    list of dict
        Per kernel: layer, kernel, bits, channels, clipped channels, kept channels,
        weight SQNR (dB) with max-abs and with ``method``.
    """
    from .int4 import dequantize, quantize_per_channel, sqnr_db

    rows = []
    for layer, kattr, quantizer, kernel in _weight_kernels(quantized):
        label = f"{layer.name} ({type(layer).__name__}.{kattr})"
        if method != "maxabs" and type(layer).__name__ not in _CALIBRATED_LAYER_TYPES:
            raise IncompatibleModelError(
                f"{label}: weight_calibration={method!r} is not implemented for this layer "
                "type; use weight_calibration='maxabs' (QuantizeML's own)", nodes=[layer.name])
        w = kernel.numpy()
        bits = int(quantizer.bitwidth)
        # Channels first, whatever the quantizer's axis (None: one range for the tensor).
        flat = (w.reshape(1, -1) if quantizer.axis is None
                else np.moveaxis(w, quantizer.axis, 0).reshape(w.shape[quantizer.axis], -1))
        q_max, s_max = quantize_per_channel(flat, 0, bits, "maxabs", narrow_range=True)
        q, scales = quantize_per_channel(flat, 0, bits, method, percentile=percentile,
                                         narrow_range=True)
        keep = (scales < _QUANTIZEML_MIN_SCALE) & (s_max > 0)
        if method != "maxabs":  # max-abs is QuantizeML's own: nothing to write
            w_hat = np.where(keep[:, None], flat, dequantize(q, scales, 0))
            if quantizer.axis is None:
                kernel.assign(w_hat.reshape(w.shape))
            else:
                moved = np.moveaxis(w, quantizer.axis, 0).shape
                kernel.assign(np.moveaxis(w_hat.reshape(moved), 0, quantizer.axis))
        codes, deployed = (
            a.reshape(1, -1) if quantizer.axis is None
            else np.moveaxis(a, quantizer.axis, 0).reshape(len(flat), -1)
            for a in _quantizer_output(quantizer, kernel))
        if method != "maxabs" and not np.array_equal(codes[~keep], q[~keep]):
            raise IncompatibleModelError(
                f"{label}: QuantizeML did not keep the {method!r} codes written into the "
                "kernel; report this with the model, or use weight_calibration='maxabs'",
                nodes=[layer.name])
        rows.append({
            "layer": layer.name, "kernel": kattr, "bits": bits,
            "channels": len(scales), "clipped": int(np.sum(scales < s_max)),
            "kept": int(keep.sum()),
            "sqnr_maxabs_db": sqnr_db(flat, dequantize(q_max, s_max, 0)),
            "sqnr_db": sqnr_db(flat, deployed),
        })
    return rows


def quantize_4bit(keras_model, samples, akida_version: str = "v1", weight_bits: int = 4,
                  activation_bits: int = 4, input_weight_bits: int = 8,
                  per_channel: bool = True, *, weight_calibration: str = "maxabs",
                  weight_percentile: float = 99.9, num_samples: int | None = None,
                  batch_size: int | None = None, calibration_epochs: int = 1):
    """Quantize a tf-keras model with QuantizeML's Keras quantizer, calibrating on samples.

    **Weights** get one scale per output channel. ``weight_calibration`` picks
    each channel's range with :func:`akida_workflows.int4.quantize_per_channel`
    (``narrow_range=True``, QuantizeML's convention) and writes the resulting
    codes into the quantized model, so the Akida model that
    :func:`convert_keras` builds carries exactly those codes (checked per layer).
    The first layer's weights use ``input_weight_bits``, the others ``weight_bits``.

    **Activations** are calibrated by QuantizeML: the float model runs on the
    samples and each quantized activation's range is an exponential moving
    average (momentum 0.9) of the largest ``|activation|`` of each batch.
    QuantizeML offers no percentile for activations; what can be chosen is how
    many samples, in which batch size, and how many passes
    (``num_samples``, ``batch_size``, ``calibration_epochs``). Larger batches give
    larger (max-like) ranges, batches of one a running mean of per-image maxima.

    Parameters
    ----------
    keras_model : tf_keras.Model
        Float model, e.g. from :func:`to_keras`.
    samples : numpy.ndarray
        Float NHWC calibration inputs, preprocessed as for training.
    akida_version : {"v1", "v2"}, default "v1"
        Akida 1.0 (AKD1000/AKD1500: 1/2/4-bit weights, bounded activations,
        per-tensor activations) or Akida 2.0.
    weight_bits, activation_bits : int, default 4
    input_weight_bits : int, default 8
        Bit-width of the first layer's weights.
    per_channel : bool, default True
        One weight scale per output channel (QuantizeML's default); ``False``
        uses one scale per layer.
    weight_calibration : {"maxabs", "mse", "percentile"}, default "maxabs"
        Per-channel weight calibrator (see :func:`akida_workflows.int4.quantize_per_channel`):
        ``"maxabs"`` is QuantizeML's own (each channel's largest weight maps to the
        largest code); ``"mse"`` clips each channel where the squared error of its
        codes is least; ``"percentile"`` clips at ``weight_percentile`` of ``|w|``.
    weight_percentile : float, default 99.9
        In ``(0, 100]``, for ``weight_calibration="percentile"``.
    num_samples : int, optional
        Calibrate on the first ``num_samples`` samples (default: all).
    batch_size : int, optional
        Calibration batch size. The default, ``None``, is QuantizeML's: one sample
        per batch.
    calibration_epochs : int, default 1
        Passes over the calibration samples.

    Returns
    -------
    tf_keras.Model
        The quantized model. Its ``akida_version`` attribute records the target,
        ``weight_calibration`` the calibrator, and ``weight_calibration_report``
        one dict per weight tensor (layer, bits, channels, clipped channels,
        weight SQNR with max-abs and as deployed).

    Raises
    ------
    IncompatibleModelError
        Bad samples or calibration options, an unbounded ReLU for Akida 1.0
        (named, with the fix), or a QuantizeML failure.
    """
    import_toolchain()
    from cnn2snn import set_akida_version
    from quantizeml.models import QuantizationParams, dump_config, quantize

    from .int4 import METHODS

    version = _version(akida_version)
    x = _check_samples(keras_model, samples)
    if weight_calibration not in METHODS:
        raise IncompatibleModelError(
            f"weight_calibration must be one of {METHODS}, got {weight_calibration!r}")
    if (isinstance(weight_percentile, bool) or not isinstance(weight_percentile, (int, float))
            or not 0 < weight_percentile <= 100):
        raise IncompatibleModelError(
            f"weight_percentile must be a number in (0, 100], got {weight_percentile!r}")
    for name, value in (("num_samples", num_samples), ("batch_size", batch_size),
                        ("calibration_epochs", calibration_epochs)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise IncompatibleModelError(f"{name} must be a positive integer, got {value!r}")
    if akida_version == "v1" and weight_bits not in (1, 2, 4):
        raise IncompatibleModelError(
            f"weight_bits={weight_bits!r}: Akida 1.0 layers hold 1, 2 or 4-bit weights "
            "(and input_weight_bits up to 8 for the input layer)")
    if weight_calibration != "maxabs" and min(weight_bits, input_weight_bits) < 2:
        raise IncompatibleModelError(
            f"weight_calibration={weight_calibration!r} needs weights of 2 bits or more "
            "(1-bit weights have no range to clip); use weight_calibration='maxabs'")
    if num_samples is not None:
        if num_samples > len(x):
            raise IncompatibleModelError(
                f"num_samples={num_samples} but only {len(x)} calibration samples were given")
        x = x[:num_samples]
    if akida_version == "v1" and not per_channel:
        raise IncompatibleModelError(
            "per_channel=False cannot reach Akida 1.0: CNN2SNN 2.19 needs one activation step "
            "per output channel and fails on per-tensor weight scales ('Unexpected tensor "
            "shape'). Use per_channel=True; study per-tensor error with akida_workflows.int4.")
    if akida_version == "v1":
        loose = unbounded_relus(keras_model)
        if loose:
            raise IncompatibleModelError(
                f"Akida 1.0 needs bounded activations, but ReLU layer(s) {', '.join(loose)} "
                "have no maximum. In PyTorch use nn.ReLU6() or a clamp "
                "(nn.Hardtanh(0, max_value)) instead of nn.ReLU(), retrain or fine-tune, and "
                "convert again.", nodes=loose)
    qparams = QuantizationParams(
        weight_bits=weight_bits, activation_bits=activation_bits,
        input_weight_bits=input_weight_bits,
        per_tensor_activations=(akida_version == "v1"),
    )
    kwargs = {"samples": x, "num_samples": len(x), "epochs": calibration_epochs}
    if batch_size is not None:
        kwargs["batch_size"] = batch_size
    try:
        # Calibration runs Keras' predict, whose per-batch progress bar is noise here.
        with set_akida_version(version), warnings.catch_warnings(), \
                contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            quantized = quantize(keras_model, qparams=qparams, **kwargs)
            if not per_channel:
                config = dump_config(quantized)
                for layer_cfg in config.values():
                    if isinstance(layer_cfg, dict) and "weight_quantizer" in layer_cfg:
                        layer_cfg["weight_quantizer"]["axis"] = None
                quantized = quantize(keras_model, q_config=config, **kwargs)
    except IncompatibleModelError:
        raise
    except Exception as exc:
        raise IncompatibleModelError(f"QuantizeML could not quantize the Keras model: {exc}") from exc
    report = _calibrate_weights(quantized, weight_calibration, weight_percentile)
    quantized.akida_version = akida_version
    quantized.weight_calibration = weight_calibration
    quantized.weight_calibration_report = report
    return quantized


def fine_tune(quantized_model, x, y, epochs: int = 3, lr: float = 1e-4, batch_size: int = 64,
              seed: int = 0, verbose: int = 0):
    """Quantization-aware training of a QuantizeML Keras model, in place.

    The quantized weights keep their bit-widths; training adjusts the float
    weights behind them (straight-through estimator), which recovers accuracy
    lost to 4-bit calibration.

    Parameters
    ----------
    quantized_model : tf_keras.Model
        From :func:`quantize_4bit`.
    x : numpy.ndarray
        Float NHWC training inputs.
    y : numpy.ndarray
        Integer labels.
    epochs : int, default 3
    lr : float, default 1e-4
    batch_size : int, default 64
    seed : int, default 0
        Seeds Keras/TensorFlow; TensorFlow's op determinism is switched on
        (process-wide) so that two runs give the same weights.
    verbose : int, default 0
        Keras' verbosity.

    Returns
    -------
    list of float
        Training loss of each epoch.
    """
    keras = _keras()
    import tensorflow as tf

    x = _check_samples(quantized_model, x)
    y = np.asarray(y, dtype=np.int64)
    if len(y) != len(x):
        raise IncompatibleModelError(f"{len(x)} inputs but {len(y)} labels")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    quantized_model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    history = quantized_model.fit(x, y, epochs=epochs, batch_size=batch_size, shuffle=True,
                                  verbose=verbose)
    return [float(v) for v in history.history["loss"]]


def convert_keras(quantized_model, akida_version: str | None = None):
    """Convert a QuantizeML Keras model to Akida with ``cnn2snn.convert``.

    Parameters
    ----------
    quantized_model : tf_keras.Model
        From :func:`quantize_4bit` (or :func:`fine_tune`).
    akida_version : {"v1", "v2"}, optional
        Defaults to the version the model was quantized for.

    Returns
    -------
    akida.Model
        Takes float NHWC input (its first layer quantizes it).

    Raises
    ------
    IncompatibleModelError
        CNN2SNN refuses the model (its message names the layer).
    """
    import_toolchain()
    from cnn2snn import convert, set_akida_version

    akida_version = akida_version or getattr(quantized_model, "akida_version", None)
    if akida_version is None:
        raise IncompatibleModelError(
            "say which Akida version to convert for (akida_version='v1' or 'v2')")
    version = _version(akida_version)
    try:
        with set_akida_version(version):
            return convert(quantized_model)
    except Exception as exc:
        raise IncompatibleModelError(f"cnn2snn.convert failed for Akida {akida_version}: {exc}") from exc
