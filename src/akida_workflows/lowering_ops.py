"""Converters of :func:`~akida_workflows.lowering.lower_1d`: each 1-D operation's 2-D form.

One converter per 1-D module type (``Conv1d`` → square ``Conv2d``, pooling →
square 'same' pooling …), registered by class name with :func:`_converts`; the
functions and methods that act element by element on any layout; and the
functional poolings (``F.max_pool1d`` …) rebuilt as the modules they stand for.
The graph pass that applies them is :mod:`akida_workflows.lowering_pass`.
"""

from __future__ import annotations

from collections.abc import Callable

from .errors import IncompatibleModelError


class _TooFewRows(Exception):
    """Akida pools only windows that fit the input: the lowered input needs more rows."""


def _refuse(name: str, kind: str, why: str, fix: str):
    return IncompatibleModelError(f"{name} ({kind}): {why}. Fix: {fix}", nodes=[name])


def _single(v):
    return v[0] if isinstance(v, (tuple, list)) else v


# ---------------------------------------------------------------- module converters


#: Converter of each 1-D module type, by class name: ``fn(module, name, lowered_input, ctx)``
#: returns ``(2-D module, description, note)``. Adding a layer type is adding an entry.
_MODULE_CONVERTERS: dict[str, Callable] = {}


def _converts(*names):
    def register(fn):
        for n in names:
            _MODULE_CONVERTERS[n] = fn
        return fn

    return register


def _converter_for(module):
    for cls in type(module).__mro__:
        if cls.__name__ in _MODULE_CONVERTERS:
            return _MODULE_CONVERTERS[cls.__name__]
    return None


def _conv_padding(name, kind, k_eff, padding, stride, dilation):
    """Padding of the lowered square kernel (same ``k_eff // 2`` or valid 0)."""
    if isinstance(padding, str):
        if padding == "valid":
            return 0
        if k_eff % 2 == 0:
            raise _refuse(name, kind, f"padding='same' with an even kernel ({k_eff} taps) pads "
                          "unevenly, which Akida cannot do",
                          "use an odd kernel (k + 1) or padding=0")
        return k_eff // 2
    p = _single(padding)
    if p == 0:
        return 0
    if k_eff % 2 == 1 and p == k_eff // 2:
        return p
    if k_eff % 2 == 0:
        raise _refuse(name, kind, f"an even kernel ({k_eff} taps) with padding={p} has no "
                      "Akida form: Akida pads square kernels of odd size symmetrically",
                      f"use an odd kernel ({k_eff + 1}) with padding={(k_eff + 1) // 2}, or "
                      "padding=0")
    raise _refuse(name, kind, f"padding={p} with a {k_eff}-tap kernel is neither 'same' "
                  f"(padding={k_eff // 2}) nor 'valid' (padding=0)",
                  f"use padding={k_eff // 2} or 0")


@_converts("Conv1d")
def _lower_conv(m, name, value, ctx):
    import torch
    from torch import nn

    kind = type(m).__name__
    if m.padding_mode != "zeros":
        raise _refuse(name, kind, f"padding_mode={m.padding_mode!r}",
                      "use zero padding (padding_mode='zeros')")
    k, s, d = _single(m.kernel_size), _single(m.stride), _single(m.dilation)
    k_eff = d * (k - 1) + 1
    p = _conv_padding(name, kind, k_eff, m.padding, s, d)
    w = m.weight.detach()
    if d > 1:  # a dilated kernel is an ordinary kernel with zeros between its taps
        expanded = torch.zeros(*w.shape[:2], k_eff, dtype=w.dtype)
        expanded[:, :, ::d] = w
        w = expanded
    square = torch.zeros(*w.shape[:2], k_eff, k_eff, dtype=w.dtype)
    square[:, :, k_eff // 2, :] = w
    conv = nn.Conv2d(m.in_channels, m.out_channels, k_eff, stride=s, padding=p,
                     groups=m.groups, bias=m.bias is not None)
    with torch.no_grad():
        conv.weight.copy_(square)
        if m.bias is not None:
            conv.bias.copy_(m.bias.detach())
    note = f"dilation {d} expanded to {k_eff} taps" if d > 1 else ""
    if s > 1:
        note = (note + "; " if note else "") + f"stride {s} in both directions"
    return conv.to(w.dtype).eval(), f"Conv2d {k_eff}x{k_eff}, padding {p}", note


def _lower_pool(m, name, value, ctx, cls, kind_is_max):
    k, s = _single(m.kernel_size), _single(m.stride if m.stride is not None else m.kernel_size)
    s = s or k
    p = _single(m.padding)
    if kind_is_max and _single(m.dilation) != 1:
        raise _refuse(name, type(m).__name__, "dilated pooling", "use dilation=1")
    _, _, h, length = value.shape
    if h < k:  # Akida: "Pooling size cannot be greater than input dimensions"
        raise _TooFewRows(f"{name}: {h} row(s) < pooling size {k}")

    def out(n, pad, ceil):
        num = n + 2 * pad - k
        o = (-(-num // s) if ceil else num // s) + 1
        if ceil and (o - 1) * s >= n + pad:
            o -= 1
        return o

    # Akida pools 'same' (ceil): the lowered pooling does too wherever floor and ceil
    # differ. On the signal axis that keeps a column a floor-mode original drops; it is
    # tracked (see lowering_pass._Signal) and refused where a later layer would read it.
    ceil = out(h, p, False) != out(h, p, True) or out(length, p, False) != out(length, p, True)
    kwargs = {}
    if not kind_is_max:
        kwargs["count_include_pad"] = m.count_include_pad
        if getattr(m, "divisor_override", None):
            raise _refuse(name, type(m).__name__, "divisor_override", "remove divisor_override")
    # Average pooling pads only the signal axis: zero rows would enter the average.
    padding = (p, p) if kind_is_max else (0, p)
    pool = cls((k, k), (s, s), padding=padding, ceil_mode=ceil, **kwargs)
    return pool, f"{cls.__name__} {k}x{k}, stride {s}" + (", ceil ('same')" if ceil else ""), ""


@_converts("MaxPool1d")
def _lower_max_pool(m, name, value, ctx):
    from torch import nn

    return _lower_pool(m, name, value, ctx, nn.MaxPool2d, True)


@_converts("AvgPool1d")
def _lower_avg_pool(m, name, value, ctx):
    from torch import nn

    return _lower_pool(m, name, value, ctx, nn.AvgPool2d, False)


@_converts("AdaptiveAvgPool1d", "AdaptiveMaxPool1d")
def _lower_adaptive_pool(m, name, value, ctx):
    from torch import nn

    size = _single(m.output_size)
    if size != 1:
        raise _refuse(name, type(m).__name__, f"output_size={size}: only global pooling "
                      "(output_size=1) has an Akida form",
                      "use AdaptiveAvgPool1d(1) (global average pooling) before the head")
    cls = nn.AdaptiveAvgPool2d if isinstance(m, nn.AdaptiveAvgPool1d) else nn.AdaptiveMaxPool2d
    return cls(1), f"{cls.__name__}(1) (global pooling)", ""


@_converts("BatchNorm1d")
def _lower_batchnorm(m, name, value, ctx):
    from torch import nn

    bn = nn.BatchNorm2d(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)
    bn.load_state_dict(m.state_dict())
    return (bn.eval(), "BatchNorm2d",
            "not foldable where it is: QuantizeML cannot quantize it (see check_compatibility)")


@_converts("Dropout1d")
def _lower_dropout(m, name, value, ctx):
    from torch import nn

    return nn.Identity(), "Identity", "dropout does nothing in eval mode"


#: Modules that act element by element: valid on the lowered tensor as they are.
_ELEMENTWISE_MODULES = (
    "ReLU", "ReLU6", "Hardtanh", "LeakyReLU", "GELU", "SiLU", "Sigmoid", "Tanh", "ELU",
    "Hardswish", "Hardsigmoid", "Mish", "PReLU", "Softplus", "Dropout", "Identity",
    "AlphaDropout",
)
#: Functions / methods that act element by element (or channel-wise) on any layout.
_ELEMENTWISE_FUNCTIONS = {
    "relu", "relu_", "relu6", "hardtanh", "hardtanh_", "clamp", "clip", "clamp_", "clamp_min",
    "clamp_max", "leaky_relu", "gelu", "silu", "sigmoid", "tanh", "elu", "hardswish",
    "dropout", "add", "iadd", "sub", "mul", "imul", "truediv", "neg", "abs", "contiguous",
    "float", "to", "clone", "detach", "identity",
}
_FLATTENING_METHODS = {"flatten", "view", "reshape", "squeeze"}


def _fn_name(node) -> str:
    if node.op == "call_method":
        return str(node.target)
    return getattr(node.target, "__name__", str(node.target)).lstrip("_")



# ---------------------------------------------------------- functions and methods


def _run(node, fetch):
    args, kwargs = fetch(node.args), fetch(node.kwargs)
    if node.op == "call_method":
        self_, *rest = args
        return getattr(self_, node.target)(*rest, **kwargs)
    return node.target(*args, **kwargs)


def _cat_dim(node) -> int:
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    return dim


def _reduces_time_axis(node, out_old) -> bool:
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    if isinstance(dim, (tuple, list)) and len(dim) == 1:
        dim = dim[0]
    return dim in (-1, 2)


def _functional_pool(cls_name, *names):
    def build(node):
        from torch import nn

        cls = getattr(nn, cls_name)
        args = list(node.args[1:])
        kwargs = dict(node.kwargs)
        kwargs.pop("return_indices", None)
        params = dict(zip(names, args))
        params.update({k: v for k, v in kwargs.items() if k in names})
        return cls(**params)

    return build


_FUNCTIONAL_POOLS = {
    "max_pool1d": _functional_pool("MaxPool1d", "kernel_size", "stride", "padding", "dilation",
                                   "ceil_mode"),
    "avg_pool1d": _functional_pool("AvgPool1d", "kernel_size", "stride", "padding", "ceil_mode",
                                   "count_include_pad"),
    "adaptive_avg_pool1d": _functional_pool("AdaptiveAvgPool1d", "output_size"),
    "adaptive_max_pool1d": _functional_pool("AdaptiveMaxPool1d", "output_size"),
}

