"""Padding rules: 'same' padding, the padding of a stride-3 input layer, and max pooling
after a padded stride-2 convolution (Akida 2.0).

PyTorch pads ``padding`` on both sides of a map; TensorFlow/Keras 'same' pads the
total ``max((ceil(n / s) - 1) * s + k - n, 0)`` as ``total // 2`` before and the
rest after, and both Akida toolchains take a strided input layer only where its
padding is one of the two ('same' or none). Measured with the real toolchain
(quantizeml 1.2.5, cnn2snn/akida 2.19.3) on a 1-channel input, stride 3, kernels
3, 5 and 7, ``padding=k // 2``, maps of 15 to 18:

- ``padding=0`` maps on both targets, whatever the size;
- Akida 2.0 maps only where 'same' is *symmetric* and equals PyTorch's padding
  (total == 2 * padding: 16x16 here); it refuses 15 and 18 ("Expect pads to be
  one of ...": 'same' pads less) and 17 ("'SameUpper' padding mode is only
  supported for strides [2, 2]": 'same' would be asymmetric);
- Akida 1.0 (tf-keras path) also maps 17x17: PyTorch's windows are Keras 'same' on
  the spatially flipped map (the bridge's flip route); 15 and 18 are refused.

``tests/test_targets.py`` builds those boundary cases; ``tests/test_rules.py``
checks that the rule predicts them.
"""

from __future__ import annotations

from . import targets
from .geometry import (
    _CONV_TAIL,
    _conv,
    _origin_1d,
    _pool,
    _same_output,
    keras_modes,
    same_total,
)
from .graph import _TRANSPARENT

__all__ = ["same_total", "strided_padding_maps"]


def strided_padding_maps(n: int, k: int, s: int, p: int, target: str) -> bool:
    """Whether an input layer with kernel ``k``, stride ``s`` and symmetric padding ``p``
    maps along an axis of ``n`` samples on ``target`` (see the module's measurements).

    >>> [strided_padding_maps(n, 3, 3, 1, "akida2") for n in (15, 16, 17, 18)]
    [False, True, False, False]
    >>> [strided_padding_maps(n, 3, 3, 1, "akida1") for n in (15, 16, 17, 18)]
    [False, True, True, False]
    """
    if p == 0:
        return n >= k
    out = (n + 2 * p - k) // s + 1
    total = same_total(n, k, s)
    if out != -(-n // s):
        return False
    if target == "akida2":
        return total == 2 * p
    # Akida 1.0: Keras 'same' in the original coordinates, or on the flipped map (the
    # Keras bridge's flip route)
    return any("same" in keras_modes((k,), (s,), ((p, p),), (n,), flip) for flip in (False, True))


def _strided_input(site, graph, target):
    """(geometry, stride, per-axis paddings) of a 2-D input layer of known size with a
    square stride above 2 that the target takes and numeric padding, else None."""
    g = _conv(site)
    if (g is None or g["one_d"] or not graph.is_input_layer(site) or g["in"] is None
            or None in g["in"] or isinstance(g["pad"], str) or g["s"][0] != g["s"][1]
            or g["s"][0] <= 2 or g["s"][0] not in targets.limits(target).input_strides):
        return None  # other strides: the stride rule; unknown sizes: nothing to judge
    return g, g["s"][0], g["pad"]


def _input_stride_padding(site, graph, target):
    found = _strided_input(site, graph, target)
    if found is None:
        return None
    g, s, pads = found
    bad = [(n, k, p) for n, k, p in zip(g["in"], g["k"], pads)
           if not strided_padding_maps(n, k, s, p, target)]
    if not bad:
        return None
    n, k, p = bad[0]
    total = same_total(n, k, s)
    size = "x".join(map(str, g["in"]))
    if target == "akida2":
        why = ("Akida 2.0 takes a stride-3 input layer only with padding=0 or with "
               "TensorFlow 'same' padding that is symmetric and equal to it")
    else:
        why = ("Akida 1.0 takes a stride-3 input layer only with padding=0 or with Keras "
               "'same' padding (total // 2 before, the rest after; or that on the flipped map)")
    return (f"stride {s} with padding={p} on a {size} input: {why}; here 'same' pads "
            f"{total} in all ({total // 2} before, {total - total // 2} after)")


def _nearest_size(n, k, s, p, target):
    """The input size nearest to ``n`` (smaller first on ties) where the padding maps."""
    for d in range(1, 2 * s + 1):
        for m in (n - d, n + d):
            if m >= k and strided_padding_maps(m, k, s, p, target):
                return m
    return None


def _input_stride_padding_fix(site, graph, target):
    g, s, pads = _strided_input(site, graph, target)
    valid = [(n - k) // s + 1 for n, k in zip(g["in"], g["k"])]
    after = ("the same output size" if tuple(valid) == tuple(g["out"] or ())
             else f"output {'x'.join(map(str, valid))} instead of "
                  f"{'x'.join(map(str, g['out']))}: update the layers after it")
    sizes = [n if strided_padding_maps(n, k, s, p, target) else _nearest_size(n, k, s, p, target)
             for n, k, p in zip(g["in"], g["k"], pads)]
    text = f"use padding=0 ({after})"
    if all(m is not None for m in sizes):
        text += (f", or feed a {'x'.join(map(str, sizes))} input, where padding="
                 f"{pads[0] if len(set(pads)) == 1 else tuple(pads)} is 'same' at stride {s}")
    return text


def _input_stride_stand_in(site, graph, target):
    """A stride-``s`` conv with a kernel and padding the target takes and the same output
    shape, so that the check goes on past the input layer; None if there is none."""
    from torch import nn

    g, s, _ = _strided_input(site, graph, target)
    if g["out"] is None:
        return None
    # Akida 1.0 takes an even input kernel only where CNN2SNN pads it ('same', stride 1);
    # Akida 2.0 also at stride 3 (kernel 4, padding 1 on 11, 17 and 20: measured)
    kernels = [k for k in targets.limits(target).input_kernels if k % 2 or target == "akida2"]
    for k in kernels:
        for p in range(k // 2 + 1):
            fits = all((n + 2 * p - k) // s + 1 == o and strided_padding_maps(n, k, s, p, target)
                       for n, o in zip(g["in"], g["out"]))
            if fits:
                return nn.Conv2d(g["cin"], g["cout"], k, stride=s, padding=p,
                                 bias=site.module.bias is not None).eval()
    return None


def _padding(site, graph, target):
    g = _conv(site)
    if g is None or _same_output(g):
        return None
    if target == "akida1" and graph.is_input_layer(site):
        return None  # Akida 1.0's input layer maps with 'valid' padding (measured)
    origin = _origin_1d(site, graph)
    padding = (origin.module.padding if origin is not None and origin.module is not None
               else site.module.padding)
    if isinstance(padding, tuple) and len(set(padding)) == 1:
        padding = padding[0]
    if graph.is_input_layer(site) and not g["one_d"] and padding in (0, "valid"):
        return None  # Akida 2.0's input layer takes padding=0 at strides 1 to 3 (measured)
    return (f"'valid' padding (padding={padding!r}): the output is "
            f"{'x'.join(str(v) for v in g['out'] if v is not None)}, not the "
            f"{'x'.join(str(-(-n // s)) for n, s in zip(g['in'], g['s']) if n is not None)} "
            "of 'same' padding")


def _padding_fix(site, graph, target):
    g = _conv(site)
    k = max(g["k"])
    if k % 2 == 0:  # an even kernel is 'same' only with asymmetric padding
        return "use padding='same' (stride 1) or padding=0, and update the layers after it"
    return (f"use padding={k // 2} ('same') and update the layers after it for the larger map "
            "(e.g. the Linear's in_features)")


def _padding_mode(site, graph, target):
    mode = getattr(site.module, "padding_mode", "zeros")
    # the amounts PyTorch pads in that mode ('same' and 'valid' resolved); none: no padding
    if site.kind in ("Conv1d", "Conv2d") and mode != "zeros" and any(
            site.module._reversed_padding_repeated_twice):
        return f"padding_mode='{mode}': Akida pads with zeros"
    return None


def _padding_mode_fix(site, graph, target):
    return "use padding_mode='zeros' (the default), then fine-tune if the borders matter"


def _pooled_after_stride2(site, graph):
    """``(pooling, padding)``: the max pooling that a stride-2 convolution padded on both
    sides of an even map feeds (through BatchNorm/activations), and that padding; or None."""
    g = _conv(site)
    if g is None or g["one_d"] or g["s"] != (2, 2) or g["in"] is None:
        return None
    pad = g["pad"] if isinstance(g["pad"], tuple) else (0, 0)
    if not any(pad) or any(n is None or n % 2 for n in g["in"]):
        return None
    pool = next((s for s in graph.next_ops(site, skip=_TRANSPARENT | _CONV_TAIL)
                 if (_pool(s) or {}).get("max")), None)
    return (pool, pad[0]) if pool is not None else None


def _strided_then_pooled(site, graph, target):
    """Akida 2.0 runs a max pooling inside the convolution before it; CNN2SNN refuses it
    after a stride-2 convolution padded on both sides of an even map ("MaxPool is not
    supported with 'SameUpper' padding", measured for kernels 3, 5, 7, as the input layer
    and after it; the same on an odd map converts)."""
    found = _pooled_after_stride2(site, graph)
    if found is None:
        return None
    (pool, pad), g = found, _conv(site)
    return (f"stride 2 with padding={pad} on an even {g['in'][0]}x{g['in'][1]} map, then "
            f"{pool.name} ({pool.kind}) max-pools it: Akida 2.0 pools inside the convolution, "
            "and not inside a strided one padded on both sides of an even map")


def _strided_then_pooled_fix(site, graph, target):
    pool, _ = _pooled_after_stride2(site, graph)
    cout = _conv(site)["cout"]
    return (f"drop {pool.name} and down-sample with another stride-2 convolution instead "
            f"(nn.Conv2d({cout}, {cout}, 3, stride=2, padding=1) → nn.ReLU6()), or give "
            f"{site.name} stride 1 and keep the pooling")
