"""Per-layer converters: each ``torch.nn`` layer type rebuilt as tf-keras layers.

:func:`converter` registers one function per ``torch.nn`` class; it adds to a
:class:`_Build` the Keras layers that compute what the module computes, with
the PyTorch weights, and tracks the shape of the running tensor (:class:`_Map`
for a feature map, :class:`_Flat` after Flatten).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ...errors import IncompatibleModelError
from .geometry import _keras_modes, _keras_padding, _linear_after, _pair, _pool_pads, _torch_pads


def _layer_name(torch_name: str, kind: str) -> str:
    return f"{kind}_{re.sub(r'[^0-9A-Za-z_]', '_', torch_name) or 'root'}"


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
