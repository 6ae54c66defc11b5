"""Kernel and stride rules: square kernels, kernel sizes, strides, and the convolution a fix
proposes in their place.

Each fix names a convolution the target takes *at that place and stride* (the input
layer's kernels, the kernels after it, the stride-2 kernels) and says truthfully what
happens to the output size; a ``Conv2d`` that sees a map one sample high or wide (a 1-D
convolution written as Conv2d, as TC-ResNet does) is pointed to its ``Conv1d`` form,
which :mod:`akida_workflows.lowering` lowers exactly. The limits come from
:mod:`akida_workflows.targets`.
"""

from __future__ import annotations

import math

from .geometry import _conv, _dilated_origin
from .targets import limits


def _square_kernel(site, graph, target):
    g = _conv(site)
    if g and not g["one_d"] and g["k"][0] != g["k"][1]:
        return f"kernel {g['k'][0]}x{g['k'][1]} is not square (Akida takes k x k kernels)"
    return None


def _best_kernel(k: int, allowed) -> int:
    odd = [a for a in allowed if a > 1 and a % 2] or list(allowed)  # padding k//2 keeps the size
    below = [a for a in odd if a <= max(k, min(odd))]
    return max(below) if below else min(odd)


def _conv_choice(site, graph, target, k=None):
    """(kernel, stride, text after the stride) of the conv a fix proposes in place of ``site``."""
    g = _conv(site)
    lim = limits(target)
    stride = g["s"][1] if g["one_d"] else max(g["s"])
    note = ""
    strides = lim.input_strides if graph.is_input_layer(site) else lim.strides
    if stride not in strides:
        stride, note = max(strides), " (see the stride fix)"
    if target == "akida1" and not g["one_d"] and g["s"] == (2, 2) and g["in"] is not None and \
            any(n is not None and n % 2 == 0 for n in g["in"]):
        stride, note = 1, " (see the stride-2 fix)"
    k = k or _best_kernel(max(g["k"]), _allowed_kernels(site, graph, target, stride))
    return k, stride, note


def _allowed_kernels(site, graph, target, stride):
    """The kernel sizes the target takes at ``site`` with ``stride``."""
    lim = limits(target)
    if graph.is_input_layer(site):
        return lim.input_kernels
    return lim.stride2_kernels if stride == 2 else lim.kernels


def _conv_fix_text(site, graph, target, k=None):
    k, stride, note = _conv_choice(site, graph, target, k)
    extra = f", stride={stride}{note}" if stride != 1 or note else ""
    return f"kernel_size={k}, padding={k // 2}{extra}"


def _square_output(site, graph, target):
    """The output size of the square conv :func:`_conv_fix_text` proposes, None if unknown."""
    g = _conv(site)
    if g["in"] is None or None in g["in"]:
        return None
    k, s, _ = _conv_choice(site, graph, target)
    return tuple((n + 2 * (k // 2) - k) // s + 1 for n in g["in"])


def _one_d_in_2d(g) -> int | None:
    """The axis (0: height, 1: width) along which a Conv2d sees a map one sample wide with a
    kernel of 1: a 1-D convolution written as Conv2d; None otherwise."""
    if g["in"] is None:
        return None
    for axis in (0, 1):
        if g["in"][axis] == 1 and g["k"][axis] == 1:
            return axis
    return None


def _square_fix(site, graph, target):
    g = _conv(site)
    text = f"use a square kernel: {_conv_fix_text(site, graph, target)}"
    out = _square_output(site, graph, target)
    if out is not None and g["out"] is not None and None not in g["out"]:
        size = "x".join(map(str, out))
        text += (" (same output size)" if tuple(out) == tuple(g["out"]) else
                 f" (output {size} instead of {'x'.join(map(str, g['out']))}: update the layers "
                 "after it)")
    axis = _one_d_in_2d(g)
    if axis is not None:
        text += (f"; or, since the map is one sample {'high' if axis == 0 else 'wide'} (a 1-D "
                 f"convolution written as Conv2d), write the model with "
                 f"{_conv1d_form(site, graph, target, axis)} on (N, C, L) signals: "
                 "akida-workflows lowers Conv1d to Akida's square kernels exactly")
    return text


def _conv1d_form(site, graph, target, axis) -> str:
    """``nn.Conv1d(...)`` computing along the long axis of a Conv2d that sees a map one sample
    high (``axis`` 0) or wide (1), with a kernel the target takes."""
    g = _conv(site)
    k, stride = g["k"][1 - axis], g["s"][1 - axis]
    allowed = _allowed_kernels(site, graph, target, stride)
    k = k if k in allowed and k % 2 else _best_kernel(k, allowed)
    return (f"nn.Conv1d({g['cin']}, {g['cout']}, {k}, padding={k // 2}"
            f"{f', stride={stride}' if stride != 1 else ''})")


def _kernel_size(site, graph, target):
    g = _conv(site)
    if g is None:
        return None
    lim = limits(target)
    first = graph.is_input_layer(site)
    allowed = lim.input_kernels if first else lim.kernels
    ks = set(g["k"]) if not g["one_d"] else {g["k"][0]}
    if len(ks) > 1:
        return None  # not square: the square-kernel rule's fix gives an allowed size
    bad = [k for k in ks if k not in allowed]
    if bad:
        where = "the input layer" if first else "this layer"
        dilated = _dilated_origin(site, graph)
        if dilated:
            k, d = dilated
            return (f"dilation {d} spreads its {k} taps over {bad[0]} samples (a {bad[0]}-tap "
                    f"kernel once lowered): {where} takes kernels of "
                    f"{', '.join(map(str, allowed))}")
        return (f"kernel size {bad[0]}: {where} takes kernels of "
                f"{', '.join(map(str, allowed))}")
    return None


def _kernel_fix(site, graph, target):
    dilated = _dilated_origin(site, graph)
    if dilated:
        k, d = dilated
        allowed = _allowed_kernels(site, graph, target, 1)
        widest = max(allowed)
        best = (widest - 1) // (k - 1) if k > 1 else 0
        if best >= 1:
            return (f"use dilation={best} (its {k} taps then span {best * (k - 1) + 1} "
                    f"samples, padding='same'), or down-sample before this layer "
                    f"(nn.MaxPool1d(2)) and halve the dilation to keep the receptive field")
        return f"use kernel_size={widest}, dilation=1, padding={widest // 2}"
    return f"use {_conv_fix_text(site, graph, target)}"


def _stride(site, graph, target):
    g = _conv(site)
    if g is None:
        return None
    s = g["s"][1] if g["one_d"] else max(g["s"])
    lim = limits(target)
    first = graph.is_input_layer(site)
    strides = lim.input_strides if first else lim.strides
    if s not in strides or (not g["one_d"] and g["s"][0] != g["s"][1]):
        where = "the input layer takes" if first else "Akida convolutions after the input take"
        listed = ", ".join(map(str, strides[:-1])) + f" or {strides[-1]}"
        listed = listed if len(strides) > 1 else strides[0]
        if not g["one_d"] and g["s"][0] != g["s"][1]:
            return (f"stride {g['s']} differs between height and width: Akida strides both "
                    f"axes alike ({where} stride {listed} along both)")
        return f"stride {s}: {where} stride {listed}"
    k = g["k"][1] if g["one_d"] else max(g["k"])
    if not first and s == 2 and k not in lim.stride2_kernels:
        return (f"stride 2 with kernel {k}: after the input layer Akida takes stride 2 only "
                f"with kernel {' or '.join(map(str, lim.stride2_kernels))}")
    return None


def _stride_fix(site, graph, target):
    g = _conv(site)
    s = g["s"][1] if g["one_d"] else max(g["s"])
    pools = max(1, round(math.log2(max(s, 2))))
    pool = "nn.MaxPool1d(2)" if g["one_d"] else "nn.MaxPool2d(2)"
    if not g["one_d"] and g["s"][0] != g["s"][1]:
        axis = _one_d_in_2d(g)
        if axis is not None:  # a 1-D convolution written as Conv2d
            if g["k"][0] != g["k"][1]:  # the kernel fix already proposes the Conv1d form
                return "use the Conv1d form of the kernel fix, or the same stride on both axes"
            return (f"write the model with {_conv1d_form(site, graph, target, axis)} on "
                    "(N, C, L) signals (akida-workflows lowers Conv1d to Akida exactly), or use "
                    "the same stride on both axes")
        return (f"use stride={s} on both axes (the axis with stride {min(g['s'])} is then "
                f"down-sampled too: update the layers after it), or stride=1 and {pool} after "
                "this convolution's activation")
    if s == 2 and not graph.is_input_layer(site):
        k = 3 if 3 in limits(target).stride2_kernels else max(limits(target).stride2_kernels)
        return (f"use kernel_size={k}, stride=2, padding={k // 2}, or stride=1 (padding=k//2) "
                f"and {pool} after this convolution's activation")
    if target == "akida2" and pools > 1:
        return (f"use stride=2 (padding=k//2) here and down-sample the remaining {s // 2}x "
                f"with {pools - 1} x {pool} after the activation of an earlier convolution")
    return (f"use stride=1 (padding=k//2) and down-sample by {s} with {pools} x {pool}: one "
            "after this convolution's activation, the others after earlier convolutions")
