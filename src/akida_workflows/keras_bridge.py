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
Hardtanh(0, m) (a clamped ReLU), MaxPool2d, AvgPool2d, AdaptiveAvgPool2d,
Flatten, Dropout/Identity, and BatchNorm (folded first with
:func:`akida_workflows.folding.fold_batchnorm`). Models are traced with
``torch.fx``: custom blocks, modules called several times, functional
activations (``F.relu``, ``F.relu6``, ``torch.clamp``/``F.hardtanh`` to
``[0, m]``), functional pools, ``x.mean((2, 3))`` and reshapes that keep the
batch axis (``x.view(x.size(0), -1)``, ``torch.flatten(x, 1)``, ``squeeze``)
are followed. What cannot be mapped (``tanh``, residual additions, functional
convolutions, …) is named with the fix.

Exact rewrites, listed in the Keras model's ``rewrites`` attribute:

- average pooling followed (through Flatten) by a Linear becomes one Dense on
  the unpooled map (weights divided by the pool area, tiled over positions):
  Akida has no average-pooling layer, and Akida 1.0 refuses global average
  pooling after an activation;
- a max-pooled convolution that feeds a Dense gets an identity 1x1
  convolution after its pool: Akida cannot end a hardware sequence with a
  pooled convolution.

A final ``softmax``/``log_softmax``/``sigmoid`` (the model's last op) stays in
the Keras model, so that it computes what PyTorch computes; QuantizeML leaves it
in float and the Akida model ends before it: Akida returns the logits, whose
argmax is the same. Anywhere else these are refused.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from dataclasses import dataclass, field

import numpy as np

from ._quiet import import_toolchain
from .errors import IncompatibleModelError

__all__ = [
    "to_keras",
    "quantize_4bit",
    "fine_tune",
    "convert_keras",
    "to_nhwc",
    "input_flip",
    "unbounded_relus",
    "separable_blocks",
    "converter",
]

AKIDA_VERSIONS = ("v1", "v2")
#: Name suffix of the input (Keras) and input quantizer (Akida) of a model that takes
#: spatially flipped input: it survives quantization, conversion and ``.fbz`` files.
FLIPPED_SUFFIX = "_flipped"


def _keras():
    import_toolchain()
    import tf_keras as keras

    return keras


def _layer_name(torch_name: str, kind: str) -> str:
    return f"{kind}_{re.sub(r'[^0-9A-Za-z_]', '_', torch_name) or 'root'}"


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _torch_pads(padding, kernel) -> tuple:
    """(before, after) zero padding per spatial axis of a PyTorch conv/pool."""
    if isinstance(padding, tuple) and all(isinstance(p, tuple) for p in padding):
        return padding  # explicit (before, after) pairs, e.g. from _pool_pads
    if padding == "valid":
        return ((0, 0), (0, 0))
    if padding == "same":  # stride 1: PyTorch pads total // 2 before, like Keras
        return tuple(((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel)
    return tuple((p, p) for p in _pair(padding))


def _pool_pads(m, kernel, stride, size):
    """The padding of a PyTorch pool: ``m.padding``, or with ``ceil_mode`` the explicit
    (before, after) pairs of the windows it really takes (the last window may run past
    the map; PyTorch drops one that would start in the right padding)."""
    if not m.ceil_mode:
        return m.padding
    pads = []
    for k, s, p, n in zip(kernel, stride, _pair(m.padding), size):
        out = -(-(n + 2 * p - k) // s) + 1
        if (out - 1) * s >= n + p:
            out -= 1
        pads.append((p, max((out - 1) * s + k - n - p, 0)))
    return tuple(pads)


def _keras_modes(kernel, stride, pads, size, flip: bool) -> list:
    """The Keras paddings ('valid', 'same') whose windows are PyTorch's, in the original
    coordinates or, with ``flip``, on the spatially flipped map with flipped kernels."""
    modes = []
    for mode in ("valid", "same"):
        ok = True
        for k, s, (before, after), n in zip(kernel, stride, pads, size):
            out = (n + before + after - k) // s + 1
            if mode == "valid":
                keras_out, keras_before = (n - k) // s + 1 if n >= k else 0, 0
            else:
                keras_out = -(-n // s)
                keras_before = max((keras_out - 1) * s + k - n, 0) // 2
            # Flipped, PyTorch's last window comes first: it starts (out-1)*s + k - n - before
            # positions before the (flipped) map.
            start = (out - 1) * s + k - n - before if flip else before
            ok &= out == keras_out and start == keras_before
        if ok:
            modes.append(mode)
    return modes


def _geometry(name, kernel, stride, padding, size, what):
    """Text describing a window geometry, for messages."""
    return (f"{name} ({what}): kernel {tuple(kernel)}, stride {tuple(stride)}, padding "
            f"{padding!r} on a {size[0]}x{size[1]} map")


def _keras_padding(name, kernel, stride, padding, size, what="Conv2d", flip=False) -> str:
    """'valid' or 'same' when Keras pads exactly as PyTorch did, else an error."""
    modes = _keras_modes(kernel, stride, _torch_pads(padding, kernel), size, flip)
    if modes:
        return modes[0]
    raise IncompatibleModelError(
        f"{_geometry(name, kernel, stride, padding, size, what)} is not Keras/Akida 'same' "
        f"padding{' in flipped coordinates' if flip else ''} (which pads total // 2 before and "
        "the rest after) nor 'valid'. Use stride 1 with padding=k//2 (then down-sample with "
        "MaxPool2d), or padding=0.", nodes=[name])


def _functional_modules():
    """torch functions/methods → (module class, parameter names after the input)."""
    from torch import nn

    return {
        "max_pool2d": (nn.MaxPool2d, ("kernel_size", "stride", "padding", "dilation",
                                      "ceil_mode")),
        "avg_pool2d": (nn.AvgPool2d, ("kernel_size", "stride", "padding", "ceil_mode",
                                      "count_include_pad", "divisor_override")),
        "adaptive_avg_pool2d": (nn.AdaptiveAvgPool2d, ("output_size",)),
        "relu": (nn.ReLU, ()),
        "relu_": (nn.ReLU, ()),
        "relu6": (nn.ReLU6, ()),
        "softmax": (nn.Softmax, ("dim",)),
        "log_softmax": (nn.LogSoftmax, ("dim",)),
        "sigmoid": (nn.Sigmoid, ()),
        "dropout": (nn.Identity, ()),
        "dropout2d": (nn.Identity, ()),
        "contiguous": (nn.Identity, ()),
    }


#: Functions the tracer names with a fix instead of mapping.
_FUNCTION_FIXES = {
    ("tanh", "gelu", "silu", "leaky_relu", "elu", "hardswish", "mish", "softplus", "selu"):
        "Akida runs ReLU-family activations only: use F.relu6 / nn.ReLU6 (or a clamp to "
        "[0, m]) and retrain or fine-tune",
    ("add", "iadd", "sub", "mul", "cat", "stack", "matmul", "bmm"):
        "the Keras (Akida 1.0) path takes chain-shaped models only; residual additions and "
        "concatenations run only on Akida 2.0: use the ONNX path (akida_workflows.export / "
        "akida_workflows.convert)",
    ("conv2d", "linear", "conv1d", "batch_norm"):
        "weights used through torch.nn.functional cannot be transplanted: use nn.Conv2d / "
        "nn.Linear / nn.BatchNorm2d modules",
    ("interpolate", "upsample", "pad"):
        "Akida has no resampling or explicit padding layer: use the convolution's own padding",
}


def _fix_for_function(fname: str) -> str:
    return next((fix for names, fix in _FUNCTION_FIXES.items() if fname in names), (
        "it has no Akida layer; supported: Conv2d, Linear, ReLU/ReLU6/clamp(0, m), MaxPool2d, "
        "average pooling, flatten/view/reshape keeping the batch axis, and a final "
        "softmax/log_softmax"))


def _is_tensor(node) -> bool:
    meta = node.meta.get("tensor_meta")
    return meta is not None and hasattr(meta, "shape")


def _shape(node) -> tuple:
    return tuple(int(d) for d in node.meta["tensor_meta"].shape)


def _reshape_module(node, in_shape, out_shape, batch):
    """nn.Flatten / nn.Identity for a reshape that keeps the batch axis, else an error."""
    from torch import nn

    fname = node.target if isinstance(node.target, str) else node.target.__name__
    if out_shape == in_shape:
        return nn.Identity()
    # Flat up to dimensions of size 1: (N, C*H*W), (N, C, 1) after a squeeze of (N, C, 1, 1).
    if (out_shape[:1] == (batch,) and len(out_shape) >= 2
            and int(np.prod(out_shape[1:])) == int(np.prod(in_shape[1:]))
            and sum(d != 1 for d in out_shape[1:]) <= 1):
        return nn.Flatten()
    raise IncompatibleModelError(
        f"{node.name}: {fname} turns {list(in_shape)} into {list(out_shape)} (batch "
        f"{batch}); to_keras accepts reshapes that keep the batch axis and flatten the rest "
        "(x.view(x.size(0), -1), x.reshape(-1, n), torch.flatten(x, 1), squeeze of 1x1 maps)",
        nodes=[node.name])


def _clamp_module(node, fname):
    from torch import nn

    def arg(i, *keys, default=None):
        if len(node.args) > i:
            return node.args[i]
        return next((node.kwargs[k] for k in keys if k in node.kwargs), default)

    if fname == "clamp_min":
        low, high = arg(1, "min"), None
    elif fname == "hardtanh":
        low, high = arg(1, "min_val", default=-1.0), arg(2, "max_val", default=1.0)
    else:
        low, high = arg(1, "min"), arg(2, "max")
    if low == 0 and high is None:
        return nn.ReLU()
    if low != 0 or not isinstance(high, (int, float)) or high <= 0:
        raise IncompatibleModelError(
            f"{node.name}: {fname}(min={low}, max={high}) is supported only as a clamped ReLU "
            "(min=0, max > 0): Akida activations are ReLUs bounded to [0, max]",
            nodes=[node.name])
    return nn.Hardtanh(0.0, float(high))


def _mean_module(node, in_shape):
    """x.mean((2, 3)) / torch.mean(x, [-2, -1]) is global average pooling."""
    from torch import nn

    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    keepdim = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
    dims = dims if isinstance(dims, (tuple, list)) else [dims]
    if len(in_shape) != 4 or sorted(d % 4 for d in dims if isinstance(d, int)) != [2, 3]:
        raise IncompatibleModelError(
            f"{node.name}: mean over {dims} is supported only over the spatial axes (2, 3), "
            "as global average pooling", nodes=[node.name])
    pool = nn.AdaptiveAvgPool2d(1)
    return [pool] if keepdim else [pool, nn.Flatten()]


def _sequence(model, input_shape=None):
    """``(name, module)`` for each op of a chain-shaped model, in order.

    The model is traced with ``torch.fx`` (custom blocks are traced through;
    ``torch.nn`` layers stay whole) and its shapes propagated on a batch of two.
    A module called twice gets one entry per call (``pool``, ``pool.call2``).
    Functional activations, pools and reshapes become the equivalent modules;
    shape queries (``x.size(0)``, ``x.shape[1]``) are followed, not converted.
    """
    import torch
    import torch.fx
    from torch import nn
    from torch.fx.passes.shape_prop import ShapeProp

    if isinstance(model, torch.jit.ScriptModule):
        raise IncompatibleModelError(
            "a TorchScript model cannot take the Akida 1.0 (Keras) path: to_keras rebuilds the "
            "network from its Python modules, and a TorchScript file holds compiled code "
            "instead. Load the Python model (model class + state_dict) for Akida 1.0, or use "
            "the Akida 2.0 ONNX path (akida_workflows.export), which takes TorchScript.")
    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as exc:
        raise IncompatibleModelError(
            f"cannot trace {type(model).__name__} with torch.fx "
            f"({str(exc).splitlines()[0]}): to_keras needs a model without data-dependent "
            "control flow (nn.Sequential or a chain-shaped forward)") from exc
    batch = 2
    shaped = input_shape is not None
    modules = dict(gm.named_modules())
    if shaped:
        failed = []

        class Propagate(ShapeProp):
            def run_node(self, n):
                try:
                    result = super().run_node(n)
                except Exception:
                    failed.append(n)
                    raise
                if not isinstance(result, torch.Tensor):
                    n.meta["value"] = result  # x.size()[3]: read by the ops that use it
                return result

        try:
            with torch.no_grad():
                Propagate(gm).propagate(torch.zeros(batch, *input_shape))
        except Exception as exc:
            node = failed[0] if failed else None
            if node is not None and node.op == "call_module" and _converter_for(
                    modules[node.target]) is None:
                raise _unsupported(node.target, modules[node.target]) from exc
            cause = exc.__cause__ or exc
            where = f" at {node.target if node.op == 'call_module' else node.name}" if node else ""
            raise IncompatibleModelError(
                f"{type(model).__name__} does not run on input shape {tuple(input_shape)}"
                f"{where}: {str(cause).splitlines()[0]}",
                nodes=[node.name] if node else []) from exc
    functional = _functional_modules()
    calls: dict[str, int] = {}
    out, prev = [], None
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if prev is not None:
                raise IncompatibleModelError(
                    f"{node.name}: the model takes several inputs; Akida models take one",
                    nodes=[node.name])
            prev = node
            continue
        if node.op == "output":
            break
        if shaped and not _is_tensor(node):
            continue  # x.size(0), x.shape[1], arithmetic on them: read by the reshapes
        if node.op == "get_attr":
            continue
        fname = (node.target if node.op in ("call_method", "call_module")
                 else getattr(node.target, "__name__", str(node.target)))
        tensors = [a for a in node.all_input_nodes if not shaped or _is_tensor(a)]
        tensors = [a for a in tensors if a.op != "get_attr"]
        if len(tensors) == 1 and tensors[0] is not prev:
            raise IncompatibleModelError(
                f"{node.name}: the model branches: {fname} reads {tensors[0].name}, not the "
                f"op before it ({prev.name}), as a residual shortcut does. "
                + _fix_for_function("add"), nodes=[node.name])
        if tensors != [prev] or node.args[0] is not prev:
            raise IncompatibleModelError(
                f"{node.name}: to_keras supports only chain-shaped models (each op feeds the "
                f"next), and {fname} takes {len(tensors)} tensors: "
                + _fix_for_function("add" if len(tensors) > 1 else str(fname)),
                nodes=[node.name])
        in_shape = _shape(prev) if shaped else None
        if node.op == "call_module":
            k = calls[node.target] = calls.get(node.target, 0) + 1
            out.append((node.target if k == 1 else f"{node.target}.call{k}",
                        modules[node.target]))
        elif fname in functional:
            module, params = functional[fname]
            args, kwargs = torch.fx.node.map_arg((node.args, node.kwargs),
                                                 lambda a: a.meta.get("value", a))
            values = dict(zip(params, args[1:]))
            values.update({k: v for k, v in kwargs.items() if k in params})
            out.append((node.name, module(**values)))
        elif fname in ("clamp", "clip", "clamp_", "clip_", "clamp_min", "hardtanh"):
            out.append((node.name, _clamp_module(node, fname)))
        elif fname == "mean" and shaped:
            out += [(node.name, m) for m in _mean_module(node, in_shape)]
        elif fname in ("flatten", "view", "reshape", "squeeze") and shaped:
            out.append((node.name, _reshape_module(node, in_shape, _shape(node), batch)))
        elif fname == "flatten":
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            out.append((node.name, nn.Flatten(start_dim=start)))
        else:
            raise IncompatibleModelError(
                f"{node.name}: {fname} is not supported by to_keras: {_fix_for_function(fname)}",
                nodes=[node.name])
        prev = node
    return out


# ------------------------------------------------------------------ layer converters


@dataclass
class _Map:
    """A channel-first feature map of C channels, H x W."""

    c: int
    h: int
    w: int


@dataclass
class _Flat:
    """A flat vector; ``perm[k]`` is the PyTorch feature index of Keras position k."""

    features: int
    perm: np.ndarray | None = None


@dataclass
class _Build:
    """What the converters share while the Keras graph is built."""

    layers: object  # tf_keras.layers
    sequence: list  # [(name, module)]
    x: object  # the Keras tensor so far
    state: _Map | _Flat
    index: int = 0
    consumed: set = field(default_factory=set)
    assignments: list = field(default_factory=list)  # (keras layer, [weights])
    rewrites: list = field(default_factory=list)
    last_conv_padding: str = "valid"
    pooled: str | None = None  # name of a MaxPool2d since the last conv
    flip: bool = False  # the network runs on spatially flipped maps
    act: float | None | bool = False  # activation since the last conv: max, None=unbounded

    def add(self, layer, weights=None):
        """Apply a Keras layer to the running tensor; weights are set once the model exists."""
        self.x = layer(self.x)
        if weights is not None:
            self.assignments.append((layer, weights))
        return self.x

    def following(self):
        """(index, name, module) of the entries after the current one, Dropout/Identity skipped."""
        from torch import nn

        return [(i, n, m) for i, (n, m) in enumerate(self.sequence)
                if i > self.index and not isinstance(m, (nn.Dropout, nn.Identity))]

    def feature_map(self, name, m) -> _Map:
        if not isinstance(self.state, _Map):
            raise IncompatibleModelError(
                f"{name} ({type(m).__name__}) comes after Flatten: Akida feature maps are "
                "spatial up to the Dense layers", nodes=[name])
        return self.state

    def spatial_out(self):
        _, h, w, c = self.x.shape
        self.state = _Map(int(c), int(h), int(w))


#: ``torch.nn`` class name -> converter(name, module, build).
_CONVERTERS: dict = {}


def converter(*types: str):
    """Register a function as the Keras converter of ``torch.nn`` module types.

    Parameters
    ----------
    *types : str
        Names of ``torch.nn`` classes (``"Conv2d"``); subclasses use the
        converter of their nearest registered base class.

    Returns
    -------
    callable
        A decorator. The decorated function takes ``(name, module, build)``,
        adds to ``build`` (a ``_Build``) the Keras layers that compute what the
        module computes, and updates ``build.state``. Adding a layer type is
        adding one such function.
    """
    def register(function):
        for t in types:
            _CONVERTERS[t] = function
        return function

    return register


def _converter_for(m):
    for cls in type(m).__mro__:
        if cls.__module__.startswith("torch.nn") and cls.__name__ in _CONVERTERS:
            return _CONVERTERS[cls.__name__]
    return None


def _bias(m, n) -> np.ndarray:
    return m.bias.detach().cpu().numpy() if m.bias is not None else np.zeros(n, np.float32)


def _torch_to_keras_flatten(c, h, w, flip=False) -> np.ndarray:
    """For each position of Keras' (h, w, c) flatten order, the PyTorch (c, h, w) index
    (of the unflipped map when the Keras map is flipped)."""
    hh, ww, cc = np.meshgrid(np.arange(h), np.arange(w), np.arange(c), indexing="ij")
    if flip:
        hh, ww = h - 1 - hh, w - 1 - ww
    return (cc * h * w + hh * w + ww).ravel()


def _unpool_before_dense(name, b: _Build) -> None:
    """Akida cannot end a hardware sequence (the layers before a Dense) with a pooled
    conv: an identity 1x1 conv (+ the same activation) after the pool is exact in float."""
    if b.pooled is None:
        return
    c = b.state.c
    pool_name = b.pooled
    b.add(b.layers.Conv2D(c, 1, name=_layer_name(pool_name, "unpool")),
          [np.eye(c, dtype=np.float32)[None, None], np.zeros(c, np.float32)])
    if b.act is not False:
        b.add(b.layers.ReLU(b.act, name=_layer_name(pool_name, "unpool_relu")))
    b.rewrites.append(
        f"{pool_name} (MaxPool2d): an identity 1x1 convolution (+ the same activation) "
        "inserted after it, because Akida cannot end a hardware sequence with a pooled "
        "convolution (the last one before a Dense); exact in float, one more layer")
    b.pooled, b.act = None, False


def _flatten(name, b: _Build) -> None:
    """Flatten a feature map the way PyTorch does (the Dense after it is permuted)."""
    s = b.state
    _unpool_before_dense(name, b)
    b.add(b.layers.Flatten(name=_layer_name(name, "flatten")))
    b.state = _Flat(s.c * s.h * s.w, _torch_to_keras_flatten(s.c, s.h, s.w, b.flip))


def _dense(name, weight, bias, b: _Build) -> None:
    """A Dense from a PyTorch-ordered ``(out, in)`` weight on the current flat state."""
    if b.state.perm is not None:
        weight = weight[:, b.state.perm]
    b.add(b.layers.Dense(weight.shape[0], name=_layer_name(name, "dense")), [weight.T, bias])
    b.state = _Flat(weight.shape[0])


@converter("Dropout", "Identity")
def _skip(name, m, b: _Build) -> None:
    """Inference no-ops."""


@converter("Conv2d")
def _conv2d(name, m, b: _Build) -> None:
    label = f"{name} (Conv2d)"
    s = b.feature_map(name, m)
    if m.in_channels != s.c:
        raise IncompatibleModelError(f"{label} expects {m.in_channels} channels, gets {s.c}",
                                     nodes=[name])
    if _pair(m.dilation) != (1, 1) or m.padding_mode != "zeros":
        raise IncompatibleModelError(
            f"{label}: dilation and non-zero padding modes are not supported", nodes=[name])
    kernel, stride = _pair(m.kernel_size), _pair(m.stride)
    padding = _keras_padding(name, kernel, stride, m.padding, (s.h, s.w), flip=b.flip)
    weight = m.weight.detach().cpu().numpy()
    if b.flip:
        weight = np.ascontiguousarray(weight[:, :, ::-1, ::-1])
    bias = _bias(m, m.out_channels)
    if m.groups == 1:
        b.add(b.layers.Conv2D(m.out_channels, kernel, strides=stride, padding=padding,
                              name=_layer_name(name, "conv")),
              [weight.transpose(2, 3, 1, 0), bias])
    elif m.groups == m.in_channels:
        mult = m.out_channels // m.in_channels
        b.add(b.layers.DepthwiseConv2D(kernel, strides=stride, padding=padding,
                                       depth_multiplier=mult, name=_layer_name(name, "dwconv")),
              [weight.reshape(m.in_channels, mult, *kernel).transpose(2, 3, 0, 1), bias])
    else:
        raise IncompatibleModelError(
            f"{label}: grouped convolution (groups={m.groups}) is not supported; use "
            "groups=1 or a depthwise convolution (groups=in_channels)", nodes=[name])
    b.last_conv_padding = padding
    b.pooled, b.act = None, False
    b.spatial_out()


@converter("MaxPool2d")
def _max_pool(name, m, b: _Build) -> None:
    label = f"{name} (MaxPool2d)"
    s = b.feature_map(name, m)
    kernel = _pair(m.kernel_size)
    stride = _pair(m.stride if m.stride is not None else m.kernel_size)
    if _pair(m.dilation) != (1, 1):
        raise IncompatibleModelError(f"{label}: dilation is not supported", nodes=[name])
    pads = _pool_pads(m, kernel, stride, (s.h, s.w))
    padding = _keras_padding(name, kernel, stride, pads, (s.h, s.w), "MaxPool2d", b.flip)
    if b.last_conv_padding in _keras_modes(kernel, stride, _torch_pads(pads, kernel),
                                           (s.h, s.w), b.flip):
        padding = b.last_conv_padding  # identical windows; Akida pads a pool like its conv
    b.add(b.layers.MaxPool2D(kernel, stride, padding=padding, name=_layer_name(name, "maxpool")))
    b.pooled = name
    b.spatial_out()


def _linear_after(sequence, index):
    """Index of the Linear an average pooling at ``index`` feeds through Flatten, Dropout
    and Identity only; None otherwise."""
    from torch import nn

    for i in range(index + 1, len(sequence)):
        nxt = sequence[i][1]
        if isinstance(nxt, nn.Linear):
            return i
        if isinstance(nxt, (nn.Dropout, nn.Identity)):
            continue
        if not (isinstance(nxt, nn.Flatten) and nxt.start_dim == 1 and nxt.end_dim == -1):
            return None
    return None


def _fold_pool_into_linear(name, m, b: _Build) -> bool:
    """Average pooling → (Flatten) → Linear is one linear map: a Dense on the unpooled map
    computes it exactly (Akida has no average-pooling layer). False when no Linear follows."""
    target = _linear_after(b.sequence, b.index)
    if target is None:
        return False
    s = b.feature_map(name, m)
    lin_name, lin = b.sequence[target]
    weight = _pooled_linear_weight(m, lin, (s.c, s.h, s.w), name, lin_name)
    _flatten(name, b)
    _dense(lin_name, weight, _bias(lin, lin.out_features), b)
    b.consumed.update(range(b.index + 1, target + 1))
    b.rewrites.append(
        f"{name} ({type(m).__name__}) + {lin_name} (Linear): average pooling folded into one "
        f"Dense on the {s.h}x{s.w}x{s.c} map (weights divided by the pool area and tiled over "
        "positions; exact)")
    return True


@converter("AvgPool2d")
def _avg_pool(name, m, b: _Build) -> None:
    b.feature_map(name, m)
    if _fold_pool_into_linear(name, m, b):
        return
    kernel = _pair(m.kernel_size)
    stride = _pair(m.stride if m.stride is not None else m.kernel_size)
    if _pair(m.padding) != (0, 0):
        raise IncompatibleModelError(
            f"{name} (AvgPool2d): padded average pooling is not supported (use padding=0), "
            "except before a Linear, where it folds into the Dense", nodes=[name])
    s = b.feature_map(name, m)
    # ceil_mode windows past the map average what they cover, as Keras 'same' does.
    padding = _keras_padding(name, kernel, stride, _pool_pads(m, kernel, stride, (s.h, s.w)),
                             (s.h, s.w), "AvgPool2d", b.flip)
    b.add(b.layers.AveragePooling2D(kernel, stride, padding=padding,
                                    name=_layer_name(name, "avgpool")))
    b.spatial_out()


@converter("AdaptiveAvgPool2d")
def _adaptive_avg_pool(name, m, b: _Build) -> None:
    s = b.feature_map(name, m)
    if _fold_pool_into_linear(name, m, b):
        return
    size = _pair(m.output_size)
    if size != (1, 1):
        raise IncompatibleModelError(
            f"{name} (AdaptiveAvgPool2d): only AdaptiveAvgPool2d(1) (global average pooling) "
            "is supported, except before a Linear, where any size folds into the Dense",
            nodes=[name])
    b.add(b.layers.GlobalAveragePooling2D(keepdims=True, name=_layer_name(name, "gap")))
    b.state = _Map(s.c, 1, 1)


@converter("Flatten")
def _flatten_module(name, m, b: _Build) -> None:
    if isinstance(b.state, _Flat):
        return
    if m.start_dim != 1 or m.end_dim != -1:
        raise IncompatibleModelError(
            f"{name} (Flatten): only Flatten(start_dim=1) is supported", nodes=[name])
    _flatten(name, b)


@converter("Linear")
def _linear(name, m, b: _Build) -> None:
    label = f"{name} (Linear)"
    if isinstance(b.state, _Map):
        s = b.state
        if s.h * s.w != 1:
            raise IncompatibleModelError(
                f"{label} on a {s.c}x{s.h}x{s.w} feature map: add a Flatten before it",
                nodes=[name])
        _unpool_before_dense(name, b)
        b.add(b.layers.Flatten(name=_layer_name(name, "flatten")))
        b.state = _Flat(s.c)
    if m.in_features != b.state.features:
        raise IncompatibleModelError(
            f"{label} expects {m.in_features} features, gets {b.state.features}", nodes=[name])
    _dense(name, m.weight.detach().cpu().numpy(), _bias(m, m.out_features), b)


def _activation(name, b: _Build, kind: str, max_value: float | None) -> None:
    b.add(b.layers.ReLU(max_value, name=_layer_name(name, kind)))
    b.act = max_value


@converter("ReLU")
def _relu(name, m, b: _Build) -> None:
    _activation(name, b, "relu", None)


@converter("ReLU6")
def _relu6(name, m, b: _Build) -> None:
    _activation(name, b, "relu6", 6.0)


@converter("Hardtanh")
def _hardtanh(name, m, b: _Build) -> None:
    if m.min_val != 0.0 or m.max_val <= 0:
        raise IncompatibleModelError(
            f"{name} (Hardtanh({m.min_val}, {m.max_val})): supported only as a clamped ReLU "
            "(Hardtanh(0, max_value) with max_value > 0)", nodes=[name])
    _activation(name, b, "clamp", float(m.max_val))


@converter("Softmax", "LogSoftmax", "Sigmoid")
def _host_head(name, m, b: _Build) -> None:
    kind = {"Softmax": "softmax", "LogSoftmax": "log_softmax", "Sigmoid": "sigmoid"}[
        type(m).__name__]
    dim = getattr(m, "dim", 1)
    if b.following() or not isinstance(b.state, _Flat) or dim not in (1, -1, None):
        raise IncompatibleModelError(
            f"{name} ({type(m).__name__}): Akida has no {type(m).__name__}; it is accepted only "
            "as the model's last op on the (N, classes) output, where it runs on the host after "
            "the Akida model (which returns the logits: same argmax). Use ReLU6 inside the "
            "network.", nodes=[name])
    b.add(b.layers.Activation(kind, name=_layer_name(name, kind)))


_UNSUPPORTED_HINTS = {
    ("LSTM", "GRU", "RNN"): "recurrent layers have no Akida equivalent",
    ("LeakyReLU", "GELU", "SiLU", "Tanh", "ELU", "Hardswish", "Mish", "PReLU", "Softplus"):
        "use ReLU, ReLU6 or a clamp (Hardtanh(0, m))",
    ("Conv1d", "MaxPool1d", "AvgPool1d", "AdaptiveAvgPool1d", "BatchNorm1d"):
        "lower the 1-D model to its 2-D form first (Akida has no 1-D layers)",
    ("MultiheadAttention", "TransformerEncoderLayer"): "attention has no Akida equivalent",
}


def _unsupported(name, m) -> IncompatibleModelError:
    kind = type(m).__name__
    hint = next((f": {h}" for kinds, h in _UNSUPPORTED_HINTS.items() if kind in kinds), "")
    return IncompatibleModelError(f"{name} ({kind}) is not supported by to_keras{hint}",
                                  nodes=[name])


def _windows(sequence, shape):
    """(name, what, kernel, stride, padding, (h, w)) of each conv/pool whose padding decides
    whether the network can run in original or flipped coordinates."""
    import torch
    from torch import nn

    out, x = [], torch.zeros(2, *shape)
    with torch.no_grad():
        for index, (name, m) in enumerate(sequence):
            if x.dim() == 4:
                size = tuple(x.shape[2:])
                if isinstance(m, nn.Conv2d):
                    out.append((name, "Conv2d", _pair(m.kernel_size), _pair(m.stride),
                                m.padding, size))
                elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) and not (
                        isinstance(m, nn.AvgPool2d) and _linear_after(sequence, index)):
                    kernel = _pair(m.kernel_size)
                    stride = _pair(m.stride if m.stride is not None else m.kernel_size)
                    out.append((name, type(m).__name__, kernel, stride,
                                _pool_pads(m, kernel, stride, size), size))
            x = m(x)
    return out


def _choose_flip(sequence, shape, flip: bool | None) -> bool:
    """Run the network in flipped coordinates only where that is what makes it exact.

    PyTorch pads ``padding`` on both sides; Keras/Akida 'same' pads ``total // 2``
    before and the rest after. A stride-2, ``padding=1`` conv on an even map is
    therefore not 'same' (Keras pads 0 before, 1 after) — but on the spatially
    flipped map with flipped kernels its windows are exactly Keras' 'same'
    windows. Flipping is all or nothing (every layer then sees flipped maps).
    """
    windows = _windows(sequence, shape)
    fits = {False: [], True: []}  # orientation -> layers it fails
    for name, what, kernel, stride, padding, size in windows:
        for orientation in (False, True):
            if not _keras_modes(kernel, stride, _torch_pads(padding, kernel), size, orientation):
                fits[orientation].append((name, what, kernel, stride, padding, size))
    choices = [o for o in ((False, True) if flip is None else (flip,)) if not fits[o]]
    if choices:
        return choices[0]
    either = [w for w in fits[False] if w in fits[True]]
    if either:
        w = either[0]
        raise IncompatibleModelError(
            f"{_geometry(w[0], *w[2:5], w[5], w[1])}: neither Keras/Akida 'same' nor 'valid' "
            "padding, in original or flipped coordinates. Use padding=k//2 (odd k) with "
            "stride 1 and down-sample with MaxPool2d(2), or a stride-2 conv with padding=k//2 "
            "on even maps, or padding=0.", nodes=[w[0]])
    if flip is not None:
        w = fits[flip][0]
        raise IncompatibleModelError(
            f"{_geometry(w[0], *w[2:5], w[5], w[1])} cannot run in "
            f"{'flipped' if flip else 'original'} coordinates; use flip=None (automatic).",
            nodes=[w[0]])
    need, block = fits[False][0], fits[True][0]
    raise IncompatibleModelError(
        f"{_geometry(need[0], *need[2:5], need[5], need[1])} is Keras/Akida 'same' padding "
        "only on the spatially flipped map (Keras pads 0 before and 1 after where PyTorch pads "
        f"1 and 1), but {_geometry(block[0], *block[2:5], block[5], block[1])} cannot run on "
        "flipped maps (its windows drop the last row/column, which becomes the first). "
        f"Fix: make the map before {block[0]} even (an input size divisible by 2 for each "
        "stride-2 layer before it), or pool with MaxPool2d(3, stride=2, padding=1), which "
        "is exact either way.", nodes=[block[0]])


def to_keras(torch_model, input_shape, *, flip: bool | None = None):
    """Rebuild a PyTorch model as the equivalent tf-keras model, weights included.

    Each PyTorch layer type has one converter function (registered with
    :func:`converter`); exact rewrites made on the way (average pooling folded
    into a Dense, an identity convolution after a pooled conv that feeds a
    Dense, flipped coordinates) are listed in the result's ``rewrites``
    attribute.

    Stride-2 ``padding=1`` convolutions on even maps (ResNet/MobileNet
    down-sampling) pad differently from Keras/Akida 'same'. They are exact
    'same' convolutions on the *spatially flipped* map with flipped kernels, so
    when a model needs it the whole Keras network is built in flipped
    coordinates: it then takes flipped images. The model records it
    (:func:`input_flip`), :func:`to_nhwc` with ``flip=model`` prepares its
    input, and :func:`convert_keras` passes the mark on to the Akida model.

    Parameters
    ----------
    torch_model : torch.nn.Module
        A chain-shaped model (``nn.Sequential`` or traceable). BatchNorm layers
        are folded first; the model itself is not modified.
    input_shape : tuple of int
        Channel-first input shape as in PyTorch, without batch: ``(C, H, W)``.
    flip : bool, optional
        Build in flipped coordinates (True) or not (False); by default only
        when the model's padding needs it.

    Returns
    -------
    tf_keras.Model
        Takes NHWC input (``(N, H, W, C)``), flipped in H and W when its
        ``input_flip`` attribute is True; its outputs equal the PyTorch
        model's on the same images (up to float32 rounding). Layer names carry
        the PyTorch module names (``conv_0``, ``relu_1``, …).

    Raises
    ------
    IncompatibleModelError
        Unsupported modules (named, with the fix), branching models, padding
        Keras cannot express in either orientation, a non-positive or
        inconsistent ``input_shape``.

    Examples
    --------
    >>> keras_model = to_keras(torch_model, (1, 28, 28))          # doctest: +SKIP
    >>> keras_model.predict(to_nhwc(x_nchw, flip=keras_model))     # doctest: +SKIP
    """
    import torch
    from torch import nn

    from .errors import AkidaWorkflowError
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
    c, h, w = shape
    sequence = _sequence(torch_model, shape)
    flipped = _choose_flip(sequence, shape, flip)
    inputs = keras.Input((h, w, c), name="input" + (FLIPPED_SUFFIX if flipped else ""))
    b = _Build(layers=keras.layers, sequence=sequence, x=inputs, state=_Map(c, h, w),
               flip=flipped)
    if flipped:
        b.rewrites.append(
            "the whole network runs in spatially flipped coordinates (kernels flipped, the "
            "Dense after Flatten permuted): its stride-2 padding=1 convolutions are exact "
            "Keras/Akida 'same' convolutions there. The model takes H- and W-flipped input: "
            "prepare it with to_nhwc(x, flip=model)")
    for index, (name, m) in enumerate(b.sequence):
        if index in b.consumed:
            continue
        b.index = index
        convert = _converter_for(m)
        if convert is None:
            raise _unsupported(name, m)
        try:
            convert(name, m, b)
        except AkidaWorkflowError:
            raise
        except Exception as exc:  # Keras refusing a shape, e.g. a pool larger than the map
            raise IncompatibleModelError(
                f"{name} ({type(m).__name__}) cannot be rebuilt in Keras: {exc}",
                nodes=[name]) from exc

    keras_model = keras.Model(inputs, b.x, name=type(torch_model).__name__.lower())
    for layer, kweights in b.assignments:
        layer.set_weights([np.asarray(a, dtype=np.float32) for a in kweights])
    keras_model.rewrites = tuple(b.rewrites)
    keras_model.input_flip = flipped
    with torch.no_grad():  # a batch of two: torch.squeeze would drop a batch of one
        torch_shape = tuple(torch_model(torch.zeros(2, *shape)).shape[1:])
    if torch_shape != tuple(keras_model.output_shape[1:]):
        raise IncompatibleModelError(
            f"the Keras model's output {keras_model.output_shape[1:]} does not match "
            f"the PyTorch model's {torch_shape}")
    return keras_model


def _pooled_linear_weight(pool, linear, chw, pool_name, linear_name) -> np.ndarray:
    """Weight ``(out, C*H*W)`` (PyTorch flatten order) of ``linear(flatten(pool(x)))``.

    Pooling is linear, so the composite's weight is the adjoint of the pooling
    applied to each row of the Linear's weight: the gradient of
    ``<W_o, flatten(pool(x))>`` with respect to ``x``. For pooling over the whole
    map this is ``W / (H*W)`` tiled over positions.
    """
    import torch

    out = linear.out_features
    with torch.enable_grad():
        x = torch.zeros(out, *chw, requires_grad=True)
        y = torch.flatten(pool(x), 1)
        if y.shape[1] != linear.in_features:
            raise IncompatibleModelError(
                f"{linear_name} (Linear) expects {linear.in_features} features, gets "
                f"{y.shape[1]} from {pool_name} ({type(pool).__name__})", nodes=[linear_name])
        (y * linear.weight.detach().to(y.dtype)).sum().backward()
    return x.grad.reshape(out, -1).numpy()


def input_flip(model) -> bool:
    """Whether a model built by :func:`to_keras` takes spatially flipped input.

    Parameters
    ----------
    model : tf_keras.Model or akida.Model
        The float or quantized Keras model, or the Akida model converted from
        it (the mark is kept in ``.fbz`` files).

    Returns
    -------
    bool
    """
    recorded = getattr(model, "input_flip", None)
    if isinstance(recorded, bool):
        return recorded
    layers = getattr(model, "layers", None)
    if not layers:
        return False
    first = layers[0]
    return str(getattr(first, "name", "")).endswith(FLIPPED_SUFFIX)


def to_nhwc(x, flip=False) -> np.ndarray:
    """Float32 NHWC copy of an NCHW image batch (the layout PyTorch models take).

    Parameters
    ----------
    x : array-like
        ``(N, C, H, W)``, or ``(N, H, W)`` for one channel.
    flip : bool, tf_keras.Model or akida.Model, default False
        Flip H and W, as a model built in flipped coordinates expects. Pass
        the Keras or Akida model itself to read it from the model
        (:func:`input_flip`): ``to_nhwc(x, flip=model)`` is always right.

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
    x = np.transpose(x, (0, 2, 3, 1))
    if flip if isinstance(flip, (bool, np.bool_)) else input_flip(flip):
        x = x[:, ::-1, ::-1]
    return np.ascontiguousarray(x, dtype=np.float32)


def unbounded_relus(keras_model) -> list[str]:
    """Names of ReLU layers without a maximum (Akida 1.0 needs one)."""
    keras = _keras()
    return [layer.name for layer in keras_model.layers
            if isinstance(layer, keras.layers.ReLU) and layer.max_value is None]


def _chain(keras_model) -> bool:
    """Whether every layer of a Keras model reads exactly the layer before it."""
    layers = keras_model.layers
    for previous, layer in zip(layers, layers[1:]):
        nodes = layer._inbound_nodes
        if len(nodes) != 1:
            return False
        inbound = nodes[0].inbound_layers
        inbound = inbound if isinstance(inbound, (list, tuple)) else [inbound]
        if len(inbound) != 1 or inbound[0] is not previous or len(previous._outbound_nodes) != 1:
            return False
    return True


def _is_separable_pair(dw, pw) -> bool:
    keras = _keras()
    return (type(dw) is keras.layers.DepthwiseConv2D and dw.depth_multiplier == 1
            and dw.get_config()["activation"] == "linear"
            and tuple(dw.dilation_rate) == (1, 1)
            and type(pw) is keras.layers.Conv2D and tuple(pw.kernel_size) == (1, 1)
            and tuple(pw.strides) == (1, 1) and tuple(pw.dilation_rate) == (1, 1)
            and pw.groups == 1)


def separable_blocks(keras_model):
    """Merge each depthwise convolution that feeds a 1x1 convolution into one SeparableConv2D.

    Akida 1.0 (AKD1000/AKD1500) has no standalone depthwise layer: a depthwise
    convolution runs only as the first half of a ``SeparableConvolutional``
    layer. :func:`to_keras` emits PyTorch's depthwise (``groups=C``) and
    pointwise (1x1) convolutions as two Keras layers, which QuantizeML
    quantizes separately (an output quantizer between them) and CNN2SNN v1
    then refuses. This rewrite is exact: the depthwise bias ``b_d`` moves into
    the pointwise bias (``b_p + W_p b_d``).

    Parameters
    ----------
    keras_model : tf_keras.Model
        A chain-shaped float Keras model (e.g. from :func:`to_keras`).

    Returns
    -------
    tf_keras.Model
        The same model when there is nothing to merge (or the model is not a
        chain); otherwise a new model with ``SeparableConv2D`` layers, whose
        ``rewrites`` list the merges after those of ``keras_model``. A depthwise
        convolution followed by an activation (published MobileNetV1:
        depthwise → BN → ReLU → pointwise) is left alone: Akida 1.0 cannot run it.
    """
    keras = _keras()
    layers = keras_model.layers
    pairs = [i for i in range(len(layers) - 1) if _is_separable_pair(layers[i], layers[i + 1])]
    if not pairs or not _chain(keras_model):
        return keras_model
    first = layers[0]
    x = inputs = keras.Input(tuple(keras_model.input_shape[1:]), name=first.name)
    assignments, merged = [], []
    skip = set(i + 1 for i in pairs)
    for i, layer in enumerate(layers[1:], start=1):
        if i in skip:
            continue
        if i in pairs:
            dw, pw = layer, layers[i + 1]
            dw_kernel, *dw_bias = dw.get_weights()
            pw_kernel, *pw_bias = pw.get_weights()
            bias = (pw_bias[0].astype(np.float64) if pw_bias
                    else np.zeros(pw.filters, np.float64))
            if dw_bias:
                bias = bias + np.einsum("c,cf->f", dw_bias[0].astype(np.float64),
                                        pw_kernel[0, 0].astype(np.float64))
            new = keras.layers.SeparableConv2D(
                pw.filters, dw.kernel_size, strides=dw.strides, padding=dw.padding,
                activation=pw.get_config()["activation"], use_bias=True,
                name=f"sep_{dw.name}")
            x = new(x)
            assignments.append((new, [dw_kernel, pw_kernel, bias.astype(np.float32)]))
            merged.append(f"{dw.name} + {pw.name}")
            continue
        new = type(layer).from_config(layer.get_config())
        x = new(x)
        assignments.append((new, layer.get_weights()))
    model = keras.Model(inputs, x, name=keras_model.name)
    for layer, weights in assignments:
        layer.set_weights(weights)
    model.rewrites = tuple(getattr(keras_model, "rewrites", ())) + (
        f"{', '.join(merged)}: depthwise convolution feeding a 1x1 convolution merged into one "
        "SeparableConv2D (Akida 1.0 runs depthwise convolutions only in separable layers; the "
        "depthwise bias moved into the pointwise bias; exact)",)
    model.input_flip = input_flip(keras_model)
    return model


def _check_samples(keras_model, samples) -> np.ndarray:
    from .convert import _check_sample_dtype, _check_sample_values

    x = _check_sample_dtype(samples, "akida_workflows.datasets.preprocess, then to_nhwc")
    expected = tuple(keras_model.input_shape[1:])
    if x.ndim == 4 and tuple(x.shape[1:]) != expected and (
            x.shape[2], x.shape[3], x.shape[1]) == expected:
        # PyTorch's NCHW layout: converted here, flipped if the model takes flipped input.
        x = to_nhwc(x, flip=keras_model)
    if x.ndim != 4 or tuple(x.shape[1:]) != expected:
        raise IncompatibleModelError(
            f"samples have shape {x.shape}; the Keras model takes "
            f"(N, {', '.join(map(str, expected))}) NHWC (to_nhwc(x, flip=model)) or "
            f"(N, {expected[2]}, {expected[0]}, {expected[1]}) NCHW.")
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


#: Known causes of QuantizeML failures on the Keras path, per Akida version.
_KERAS_CAUSES = {
    "v1": (("impossible to quantize inputs",
            "Akida 1.0's input layer must be a convolution: it runs a fully connected input "
            "layer only on inputs of at most 4 bits, and images are 8-bit; start the model "
            "with a Conv2d, or convert it for Akida 2.0, which takes a Linear first"),),
    "v2": (("impossible to quantize inputs",
            "start the model with a Conv2d, or take the ONNX path, quantize_onnx, which runs "
            "a Linear input layer on Akida 2.0"),),
}


def quantize_4bit(keras_model, samples, akida_version: str = "v1", weight_bits: int = 4,
                  activation_bits: int = 4, input_weight_bits: int = 8,
                  per_channel: bool = True, *, weight_calibration: str = "maxabs",
                  weight_percentile: float = 99.9, num_samples: int | None = None,
                  batch_size: int | None = None, calibration_epochs: int = 1,
                  feature_bits: int | None = None):
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
    feature_bits : {1, 2, 4}, optional
        Bit-width of the activations of the model's *last* ReLU (the feature
        layer: the output of a feature extractor, or the activation feeding the
        classifier of a full model). ``1`` gives the binary features that Akida
        1.0 edge learning takes (:func:`akida_workflows.edge.to_edge_model`).
        QuantizeML leaves a model's final activation unquantized; with
        ``feature_bits`` it gets an output quantizer of that width, calibrated
        like the others (a ``q_config`` entry for that layer, which QuantizeML
        applies over ``qparams``). Default: ``activation_bits``, and a final activation
        stays as QuantizeML leaves it.

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
    feature_layer = _feature_relu(keras_model, feature_bits)
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
    if akida_version == "v1":
        keras_model = separable_blocks(keras_model)
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
            # q_config has priority over qparams for the layers it names: the feature
            # layer's output quantizer is set in the same (single) quantization pass.
            feature_config = None if feature_layer is None else {feature_layer: {
                "output_quantizer": {"bitwidth": feature_bits, "signed": False,
                                     "axis": "per-tensor", "buffer_bitwidth": 32},
                "buffer_bitwidth": 32}}
            quantized = quantize(keras_model, qparams=qparams, q_config=feature_config, **kwargs)
            if not per_channel:
                config = dump_config(quantized)
                for layer_cfg in config.values():
                    if isinstance(layer_cfg, dict) and "weight_quantizer" in layer_cfg:
                        layer_cfg["weight_quantizer"]["axis"] = None
                quantized = quantize(keras_model, q_config=config, **kwargs)
    except IncompatibleModelError:
        raise
    except Exception as exc:
        from .errors import describe_exception

        text = describe_exception(exc, causes=_KERAS_CAUSES.get(akida_version, ()))
        raise IncompatibleModelError(
            f"QuantizeML could not quantize the Keras model: {text}") from exc
    report = _calibrate_weights(quantized, weight_calibration, weight_percentile)
    quantized.akida_version = akida_version
    quantized.rewrites = tuple(getattr(keras_model, "rewrites", ()))
    quantized.weight_calibration = weight_calibration
    quantized.weight_calibration_report = report
    quantized.feature_bits = feature_bits
    return quantized


def _feature_relu(keras_model, feature_bits) -> str | None:
    """The name of the model's last ReLU, which ``feature_bits`` quantizes (None without)."""
    if feature_bits is None:
        return None
    if isinstance(feature_bits, bool) or feature_bits not in (1, 2, 4):
        raise IncompatibleModelError(
            f"feature_bits must be 1, 2 or 4 (Akida 1.0 activation widths), got {feature_bits!r}")
    relus = [layer.name for layer in keras_model.layers if type(layer).__name__ == "ReLU"]
    if not relus:
        raise IncompatibleModelError(
            "feature_bits needs a ReLU/ReLU6 feature layer (its activations are the features); "
            "the model has none: end the feature extractor with nn.ReLU6()")
    return relus[-1]


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


#: Keras layer types that carry weights or merge tensors: what an Akida layer must compute.
_COMPUTE_TYPES = frozenset({
    "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense", "Conv2DTranspose",
    "DepthwiseConv2DTranspose", "Add", "Concatenate",
})
#: Keras layers that may stay on the host after the last Akida layer: argmax is unchanged.
_HEAD_TYPES = frozenset({"Softmax", "Dequantizer"})
_HEAD_ACTIVATIONS = frozenset({"softmax", "log_softmax", "sigmoid"})
#: Akida layer types that compute nothing.
_AKIDA_NON_COMPUTE = frozenset({"InputData", "Quantizer", "Dequantizer"})

#: CNN2SNN refusals of the Keras path: (pattern, fix). ``{0}``, ``{1}`` are the pattern's groups.
_CNN2SNN_FIXES = (
    (r"The layer (\S*global_average_pooling\S*|gap_\S+) followed by (\S+) is not valid",
     "Akida 1.0 cannot run global average pooling after an activation (CNN2SNN v1: 'gap "
     "followed by dense is not valid'). Fix: end the network with average pooling → "
     "(Flatten) → Linear, which to_keras converts exactly into one Dense on the unpooled "
     "map; or pool before the activation (Conv2d → AdaptiveAvgPool2d(1) → ReLU6)."),
    (r"Invalid block found during conversion:\s*QuantizedDepthwiseConv2D \((\S+)\)",
     "Akida 1.0 runs a depthwise convolution only inside a separable layer: the depthwise "
     "Conv2d (groups=C) must feed its 1x1 pointwise Conv2d directly, with BatchNorm, ReLU6 "
     "and pooling after the pointwise (AkidaNet-style blocks). Published MobileNetV1 blocks "
     "(depthwise → BN → ReLU → pointwise) cannot run on Akida 1.0: remove the activation "
     "after {0} (a BatchNorm there folds away), retrain or fine-tune, convert again; or "
     "target Akida 2.0, which runs standalone depthwise layers."),
    (r"The layer (\S+) followed by (\S+) is not valid",
     "on Akida 1.0 every layer that feeds another must end with a bounded ReLU (its output "
     "quantizer): put nn.ReLU6() (or a clamp) after {0}, retrain or fine-tune, convert again."),
    (r"(\S+): in AkidaVersion.v1, output_quantizer is mandatory",
     "Akida 1.0 cannot end with an activation after the last layer: remove {0} (the final "
     "ReLU/clamp) from the model and train on the logits."),
    (r"Pooling layer (\S+) \(padding: (\w+)\) must have the same padding as (\S+)",
     "Akida pools with the padding of the convolution before it: give the MaxPool2d "
     "padding matching {2} (or use a pool whose window tiles the map exactly)."),
)


def _explain_cnn2snn(message: str) -> tuple[str, list[str]]:
    """The fix for a CNN2SNN refusal and the Keras layers it names."""
    for pattern, fix in _CNN2SNN_FIXES:
        match = re.search(pattern, message)
        if match:
            return fix.format(*match.groups()), [g for g in match.groups()
                                                 if g and g not in ("valid", "same")][:1]
    return "", sorted(set(re.findall(r"\(([A-Za-z_][\w]*)\)", message)))[:1]


def _skipped_layers(message: str) -> list[tuple[str, str]]:
    """(name, type) of the layers listed in CNN2SNN's "Conversion stops" warning."""
    return [(name, kind) for name, kind in re.findall(r"^(\S+) \((\w+)\)$", message, flags=re.M)
            if (name, kind) != ("Layer", "type")]


def _dropped_fix(layer_type: str) -> str:
    if layer_type == "AveragePooling2D":
        return ("Akida has no average-pooling layer. Average pooling followed (through "
                "Flatten) by a Linear is converted exactly by to_keras into one Dense; "
                "elsewhere use nn.MaxPool2d or a stride-2 convolution.")
    return (f"QuantizeML has no quantized form of {layer_type} at this place, so it left it in "
            "float and CNN2SNN dropped it and everything after it. Replace it with a "
            "supported layer (Conv2d, depthwise-separable block, Linear, ReLU6, MaxPool2d).")


def _check_complete(quantized_model, akida_model, stop_message: str, akida_version: str,
                    allow_partial: bool) -> None:
    """Refuse (or, with ``allow_partial``, warn about) an Akida model shorter than the
    quantized Keras model: fewer compute layers or another output shape."""
    akida_names = {layer.name for layer in akida_model.layers}
    compute = [layer for layer in quantized_model.layers
               if type(layer).__name__.replace("Quantized", "") in _COMPUTE_TYPES]
    dropped = [layer for layer in compute if layer.name not in akida_names]
    n_akida = sum(str(layer.parameters.layer_type).split(".")[-1] not in _AKIDA_NON_COMPUTE
                  for layer in akida_model.layers)
    def is_head(name, kind):
        if kind in _HEAD_TYPES:
            return True
        if kind == "Activation":
            layer = next((lay for lay in quantized_model.layers if lay.name == name), None)
            return layer is not None and layer.get_config().get("activation") in _HEAD_ACTIVATIONS
        return False

    tail = [(name, kind) for name, kind in _skipped_layers(stop_message)
            if not is_head(name, kind)]
    keras_shape = tuple(int(d) for d in quantized_model.output_shape[1:])
    akida_shape = tuple(int(d) for d in akida_model.output_shape)
    same_shape = (int(np.prod(keras_shape)) == int(np.prod(akida_shape))
                  and keras_shape[-1:] == akida_shape[-1:])
    if not dropped and n_akida >= len(compute) and same_shape and not tail:
        return
    if tail:
        first, kind = tail[0]
    elif dropped:
        first, kind = dropped[0].name, type(dropped[0]).__name__
    else:  # pragma: no cover - defensive: shapes differ without a named cause
        first, kind = quantized_model.layers[-1].name, type(quantized_model.layers[-1]).__name__
    why = "CNN2SNN returned a shorter model"
    if stop_message:
        why = "CNN2SNN: " + " ".join(stop_message.split(".")[0].split())
    summary = (f"the Akida {akida_version} model is incomplete: {n_akida} of {len(compute)} "
               f"compute layers converted, output {list(akida_shape)} instead of "
               f"{list(keras_shape)}. It stops before {first} ({kind}) ({why}).")
    if allow_partial:
        warnings.warn(f"partial Akida model: {summary} The layers from {first} on must run on "
                      "the host.", stacklevel=3)
        return
    raise IncompatibleModelError(
        f"{summary} {_dropped_fix(kind.replace('Quantized', ''))} Or pass allow_partial=True "
        "to accept a model that ends there.", nodes=[first])


def convert_keras(quantized_model, akida_version: str | None = None, *,
                  allow_partial: bool = False):
    """Convert a QuantizeML Keras model to Akida with ``cnn2snn.convert``.

    CNN2SNN stops, with only a warning, at the first layer QuantizeML left in
    float (an ``AveragePooling2D`` head, for instance) and returns the layers
    before it. Here that is an error naming the first dropped layer and the fix,
    unless ``allow_partial=True``.

    Parameters
    ----------
    quantized_model : tf_keras.Model
        From :func:`quantize_4bit` (or :func:`fine_tune`).
    akida_version : {"v1", "v2"}, optional
        Defaults to the version the model was quantized for.
    allow_partial : bool, default False
        Accept an Akida model that computes only the first part of the network
        (a warning names where it stops; the rest must run on the host). A final
        Softmax is never counted as dropped: Akida returns the logits, whose
        argmax is the same.

    Returns
    -------
    akida.Model
        Takes float NHWC input (its first layer quantizes it), flipped in H and
        W if the Keras model was built in flipped coordinates: its first layer's
        name then ends in ``"_flipped"`` (:func:`input_flip`); prepare inputs
        with ``to_nhwc(x, flip=akida_model)``.

    Raises
    ------
    IncompatibleModelError
        CNN2SNN refuses the model (the layer is named, with the fix), or the
        converted model is shorter than the Keras model (fewer compute layers,
        another output shape) while ``allow_partial`` is False.
    """
    import_toolchain()
    from cnn2snn import convert, set_akida_version

    akida_version = akida_version or getattr(quantized_model, "akida_version", None)
    if akida_version is None:
        raise IncompatibleModelError(
            "say which Akida version to convert for (akida_version='v1' or 'v2')")
    version = _version(akida_version)
    # A model that takes flipped input says so in its input quantizer's name, which the
    # Akida model (and its .fbz file) keeps.
    flipped = input_flip(quantized_model)
    quantizer = next((layer for layer in quantized_model.layers
                      if type(layer).__name__ == "InputQuantizer"), None)
    if flipped and quantizer is None:
        raise IncompatibleModelError(
            "the model takes spatially flipped input but has no input quantizer to record it "
            "in the Akida model: quantize it with quantize_4bit")
    original_name = quantizer.name if quantizer is not None else None
    with set_akida_version(version), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if flipped and not original_name.endswith(FLIPPED_SUFFIX):
                quantizer._name = original_name + FLIPPED_SUFFIX
            akida_model = convert(quantized_model)
        except Exception as exc:
            fix, names = _explain_cnn2snn(str(exc))
            raise IncompatibleModelError(
                f"cnn2snn.convert failed for Akida {akida_version}: {exc}"
                + (f" Fix: {fix}" if fix else ""), nodes=names) from exc
        finally:
            if quantizer is not None:
                quantizer._name = original_name
    if flipped != input_flip(akida_model):  # pragma: no cover - defensive
        raise IncompatibleModelError("the Akida model lost the mark of its flipped input")
    stop = ""
    for w in caught:
        if "Conversion stops" in str(w.message):
            stop = stop or str(w.message)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    _check_complete(quantized_model, akida_model, stop, akida_version, allow_partial)
    return akida_model
