"""Layer geometry as the rules read it, from the one graph's nodes.

Kernels, strides, paddings and input/output sizes of convolution and pooling
sites (a Conv1d as its lowered square form), and, on a graph a pass lowered
from 1-D, the user's 1-D operation behind each node and the 1-D wording of
reasons and fixes.

It also holds the padding arithmetic both the rules and the Keras backend use:
PyTorch pads ``padding`` on both sides of a map; TensorFlow/Keras (and Akida)
``'same'`` pads a total of :func:`same_total` as ``total // 2`` before and the
rest after. :func:`keras_modes` says which Keras paddings have PyTorch's
windows, in the original coordinates or on the spatially flipped map.
"""

from __future__ import annotations

from .graph import TRANSPARENT, Site


def _pair(v, n=2):
    if isinstance(v, (tuple, list)):
        return tuple(int(x) for x in v) if len(v) == n else tuple(int(v[0]) for _ in range(n))
    return tuple(int(v) for _ in range(n))


def same_total(n: int, k: int, s: int) -> int:
    """Total padding of TensorFlow/Keras 'same' along one axis of ``n`` samples.

    >>> same_total(16, 3, 3), same_total(17, 3, 3), same_total(15, 3, 3)
    (2, 1, 0)
    """
    return max((-(-n // s) - 1) * s + k - n, 0)


def torch_pads(padding, kernel) -> tuple:
    """(before, after) zero padding per spatial axis of a PyTorch conv/pool.

    ``padding`` is an int, a pair, ``'valid'``, ``'same'`` (stride 1) or already
    explicit (before, after) pairs.

    >>> torch_pads(1, (3, 3)), torch_pads("same", (4, 3))
    (((1, 1), (1, 1)), ((1, 2), (1, 1)))
    """
    if isinstance(padding, tuple) and all(isinstance(p, tuple) for p in padding):
        return padding
    if padding == "valid":
        return tuple((0, 0) for _ in kernel)
    if padding == "same":  # stride 1: PyTorch pads total // 2 before, like Keras
        return tuple(((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel)
    return tuple((p, p) for p in _pair(padding, len(kernel)))


def keras_modes(kernel, stride, pads, size, flip: bool = False) -> list[str]:
    """The Keras paddings (``'valid'``, ``'same'``) whose windows are PyTorch's.

    ``pads`` are PyTorch's (before, after) pairs per axis (:func:`torch_pads`);
    with ``flip`` the windows are compared on the spatially flipped map with
    flipped kernels (PyTorch's last window comes first there).

    >>> keras_modes((3,), (3,), ((1, 1),), (16,)), keras_modes((3,), (3,), ((1, 1),), (17,))
    (['same'], [])
    >>> keras_modes((3,), (3,), ((1, 1),), (17,), flip=True)
    ['same']
    """
    modes = []
    for mode in ("valid", "same"):
        ok = True
        for k, s, (before, after), n in zip(kernel, stride, pads, size):
            out = (n + before + after - k) // s + 1
            if mode == "valid":
                keras_out, keras_before = (n - k) // s + 1 if n >= k else 0, 0
            else:
                keras_out, keras_before = -(-n // s), same_total(n, k, s) // 2
            # Flipped, PyTorch's last window comes first: it starts (out-1)*s + k - n - before
            # positions before the (flipped) map.
            start = (out - 1) * s + k - n - before if flip else before
            ok &= out == keras_out and start == keras_before
        if ok:
            modes.append(mode)
    return modes


def _conv(site: Site):
    """Geometry of a Conv1d/Conv2d site as a 2-D conv (a Conv1d as its lowered square form)."""
    m = site.module
    kind = site.kind
    if kind not in ("Conv1d", "Conv2d") or m is None:
        return None
    one_d = kind == "Conv1d"
    k = _pair(m.kernel_size, 1 if one_d else 2)
    s = _pair(m.stride, 1 if one_d else 2)
    d = _pair(m.dilation, 1 if one_d else 2)
    pad = m.padding
    in_shape = site.in_shapes[0] if site.in_shapes else None
    out_shape = site.out_shape
    if one_d:
        k, s, d = (k[0], k[0]), (1, s[0]), (1, d[0])
        pad = pad if isinstance(pad, str) else (k[0] // 2 if k[0] > 1 else 0, _pair(pad, 1)[0])
        in_hw = (None, in_shape[1]) if in_shape and len(in_shape) == 2 else None
        out_hw = (None, out_shape[1]) if out_shape and len(out_shape) == 2 else None
    else:
        pad = pad if isinstance(pad, str) else _pair(pad)
        in_hw = tuple(in_shape[1:]) if in_shape and len(in_shape) == 3 else None
        out_hw = tuple(out_shape[1:]) if out_shape and len(out_shape) == 3 else None
    return {"k": k, "s": s, "d": d, "pad": pad, "groups": m.groups, "cin": m.in_channels,
            "cout": m.out_channels, "in": in_hw, "out": out_hw, "one_d": one_d}


def _is_depthwise(g) -> bool:
    return g["groups"] > 1 and g["groups"] == g["cin"] and g["cout"] % g["cin"] == 0


#: What may sit between a depthwise convolution and its pointwise one: the folding
#: pass removes a BatchNorm, the bridge drops data-moving operations.
_SEPARABLE_SKIP = frozenset(TRANSPARENT | {"BatchNorm1d", "BatchNorm2d"})


def linear_after(site: Site, graph) -> Site | None:
    """The Linear that ``site`` feeds through data-moving operations only (Flatten,
    Dropout, …), or None: the ``pool_head`` pass folds an average pooling into it, and
    the ``avg-pool`` rule spares such a pooling on Akida 1.0 (one test for both)."""
    after = graph.next_ops(site)
    return after[0] if len(after) == 1 and after[0].kind == "Linear" else None


def separable_partner(site: Site, graph) -> Site | None:
    """The pointwise convolution that a depthwise ``site`` feeds directly, or None.

    Such a pair is one Akida 1.0 separable layer: the Keras bridge merges it into one
    ``SeparableConv2D`` (``backends.keras_cnn2snn.quantize.separable_blocks``) and
    CNN2SNN maps that; Akida 1.0 runs a depthwise convolution nowhere else. The test
    is the bridge's, on the PyTorch graph: a depthwise convolution with one filter per
    channel (``groups == in_channels == out_channels``, no dilation — a ``Conv1d``'s
    dilation is expanded into its kernel by the 1-D lowering) whose only consumer,
    through a BatchNorm and data-moving operations at most, is a convolution of the
    same dimension with a 1x1 kernel, stride 1, no dilation and ``groups=1``. The
    ``merge_separable`` pass announces exactly these pairs, and the Akida 1.0 rules
    treat exactly these as separable blocks.
    """
    g = _conv(site)
    if g is None or not (1 < g["groups"] == g["cin"] == g["cout"]):
        return None
    if not g["one_d"] and g["d"] != (1, 1):
        return None
    after = graph.next_ops(site, skip=_SEPARABLE_SKIP)
    if len(after) != 1 or after[0].kind != site.kind:
        return None
    p = _conv(after[0])
    if p["groups"] != 1 or p["k"] != (1, 1) or p["s"] != (1, 1) or p["d"] != (1, 1):
        return None
    return after[0]


def _same_output(g) -> bool:
    """True when the conv keeps ceil(n / stride) outputs along every spatial axis ('same')."""
    if g["in"] is None or g["out"] is None:
        return True
    if g["pad"] == "same":
        return True
    for n, o, s in zip(g["in"], g["out"], g["s"]):
        if n is None:
            continue
        if o != -(-n // s):
            return False
    return True


def _pool(site: Site):
    """(kind, kernel, stride, padding, ceil_mode, in_hw) of a pooling site, or None."""
    m, kind = site.module, site.kind
    in_shape = site.in_shapes[0] if site.in_shapes else None
    if kind in ("MaxPool2d", "AvgPool2d", "MaxPool1d", "AvgPool1d") and m is not None:
        one_d = kind.endswith("1d")
        n = 1 if one_d else 2
        k = _pair(m.kernel_size, n)
        s = _pair(m.stride if m.stride is not None else m.kernel_size, n)
        p = _pair(m.padding, n)
        ceil = bool(m.ceil_mode)
    elif kind in ("max_pool2d", "avg_pool2d", "max_pool1d", "avg_pool1d"):
        one_d = kind.endswith("1d")
        n = 1 if one_d else 2
        args, kwargs = list(site.params.get("args", ())), site.params.get("kwargs", {})
        names = ["kernel_size", "stride", "padding"]
        values = {key: (args[i] if i < len(args) else kwargs.get(key)) for i, key in
                  enumerate(names)}
        if not isinstance(values["kernel_size"], (int, tuple, list)):
            return None  # e.g. F.avg_pool1d(x, x.shape[-1]): resolved only at run time
        k = _pair(values["kernel_size"], n)
        stride = values["stride"]
        s = _pair(stride if isinstance(stride, (int, tuple, list)) and stride != () else
                  values["kernel_size"], n)
        p = _pair(values["padding"] or 0, n)
        ceil = bool(kwargs.get("ceil_mode", False))
    else:
        return None
    if one_d:
        k, s, p = (k[0], k[0]), (s[0], s[0]), (p[0], p[0])
        in_hw = (None, in_shape[1]) if in_shape and len(in_shape) == 2 else None
    else:
        in_hw = tuple(in_shape[1:]) if in_shape and len(in_shape) == 3 else None
    return {"max": "max" in kind.lower(), "k": k, "s": s, "p": p, "ceil": ceil, "in": in_hw,
            "one_d": one_d}


#: What may follow a convolution and still be part of its Akida layer (folded BatchNorm,
#: the activation).
_CONV_TAIL = {"BatchNorm1d", "BatchNorm2d", "ReLU", "ReLU6", "Hardtanh", "relu", "relu6",
              "hardtanh", "clamp"}


def _clamp_bounds(site):
    if site.module is not None:
        return site.module.min_val, site.module.max_val
    args, kwargs = list(site.params.get("args", ())), site.params.get("kwargs", {})
    low = args[0] if args else kwargs.get("min", kwargs.get("min_val"))
    high = args[1] if len(args) > 1 else kwargs.get("max", kwargs.get("max_val"))
    if site.kind == "hardtanh":
        low = -1.0 if low is None else low
        high = 1.0 if high is None else high
    return low, high


def mean_axes(site: Site) -> tuple[int, ...] | None:
    """The axes a ``mean`` node reduces (the batch axis is 0), or None if unreadable.

    ``x.mean(2)``, ``torch.mean(x, dim=(-2, -1))``, ``x.mean()`` (every axis).
    """
    if not site.in_shapes:
        return None
    rank = len(site.in_shapes[0]) + 1
    args, kwargs = site.params.get("args", ()), site.params.get("kwargs", {})
    dims = args[0] if args else kwargs.get("dim", kwargs.get("axis"))
    if dims is None:
        return tuple(range(rank))
    dims = tuple(dims) if isinstance(dims, (tuple, list)) else (dims,)
    if not all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
        return None
    return tuple(sorted({d % rank for d in dims}))


def spatial_axes(site: Site) -> tuple[int, ...]:
    """The spatial axes of the node's input: (2, 3) of an NCHW map, (2,) of an NCL signal."""
    rank = len(site.in_shapes[0]) + 1 if site.in_shapes else 0
    return tuple(range(2, rank))


def _is_global_pool(site: Site) -> bool:
    if site.kind in ("AdaptiveAvgPool2d", "AdaptiveAvgPool1d"):
        size = site.module.output_size
        return all(v == 1 for v in (size if isinstance(size, (tuple, list)) else (size,)))
    if site.kind in ("adaptive_avg_pool2d", "adaptive_avg_pool1d"):
        args = site.params.get("args", ())
        return bool(args) and args[0] in (1, (1, 1), [1, 1])
    if site.kind == "mean":  # a mean over every spatial axis, and only those
        axes, spatial = mean_axes(site), spatial_axes(site)
        return axes is None or (bool(spatial) and axes == spatial)
    g = _pool(site)
    if g and not g["max"] and g["in"]:
        return all(n is None or k >= n for n, k in zip(g["in"], g["k"]))
    return False


def _relu_site(site: Site) -> bool:
    return site.kind in ("ReLU", "relu", "relu_")


_ONE_D_TERMS = (("nn.MaxPool2d(", "nn.MaxPool1d("), ("nn.AvgPool2d(", "nn.AvgPool1d("),
                ("nn.AdaptiveAvgPool2d(", "nn.AdaptiveAvgPool1d("), ("nn.Conv2d(", "nn.Conv1d("),
                ("Conv2d → ", "Conv1d → "), ("→ AvgPool2d", "→ AvgPool1d"),
                ("→ MaxPool2d", "→ MaxPool1d"), ("after AvgPool2d", "after AvgPool1d"),
                ("after MaxPool2d", "after MaxPool1d"), ("2x2 windows", "windows of 2"),
                ("unpooled Conv2d", "unpooled Conv1d"))


def _one_d_terms(text: str) -> str:
    for two_d, one_d in _ONE_D_TERMS:
        text = text.replace(two_d, one_d)
    return text


def _origin_1d(site, graph):
    """The 1-D operation of the user's model that ``site`` was lowered from, if any."""
    origins = getattr(graph, "origins", {})
    origin = origins.get(site.name)
    helped = origin is None and site.name in getattr(graph, "helpers", {})
    if helped:  # a module the lowering added for the user's op (x.mean(-1) -> mean_gap)
        origin = origins.get(graph.helpers[site.name])
    if origin is not None and (helped or origin.kind.endswith("1d") or origin.kind in ("Linear",)) \
            and any(o.kind.endswith("1d") for o in origins.values()):
        return origin
    return None


def _dilated_origin(site, graph):
    """``(k, d)`` of the dilated Conv1d ``site`` was lowered from (kernel expanded), or None."""
    origin = _origin_1d(site, graph)
    if origin is None or origin.kind != "Conv1d" or origin.module is None:
        return None
    k, d = _pair(origin.module.kernel_size, 1)[0], _pair(origin.module.dilation, 1)[0]
    return (k, d) if d > 1 else None
