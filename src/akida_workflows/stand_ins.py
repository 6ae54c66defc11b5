"""Shape-preserving stand-ins the compatibility check puts in a working copy.

A rule's ``patch`` returns one of these for the operation it reports (a square
3x3 convolution for an over-long kernel, a ReLU6 for an unbounded ReLU, an
identity for an unfoldable BatchNorm, …) so that the real toolchain can go on
and judge the rest of the model in the same run.
"""

from __future__ import annotations

from .geometry import _conv, _is_depthwise, _pool, _same_output


def _stride2_even(site, graph, target):
    """Akida 1.0 path: a stride-2 conv padded k//2 on an even map is not Keras 'same'.

    PyTorch pads (k//2, k//2); Keras/Akida 'same' pads (k//2 - 1, k//2) there,
    so the 4-bit bridge refuses it (measured; an exact flipped route may lift this).
    """
    g = _conv(site)
    if g is None or g["one_d"] or g["s"] != (2, 2) or g["in"] is None or g["pad"] == "same":
        return None
    if not _same_output(g) or not any(n is not None and n % 2 == 0 for n in g["in"]):
        return None
    pad = g["pad"] if isinstance(g["pad"], tuple) else (0, 0)
    if any(p for p in pad):
        return (f"stride 2 with padding={pad[0]} on an even {g['in'][0]}x{g['in'][1]} map: "
                "PyTorch pads both sides, Akida 1.0's 'same' pads one side less before")
    return None


def _stride2_stand_in(site, graph, target, k=None):
    """Stride 1 and a 2x2 max pooling in its place (same output shape on an even map).

    A depthwise conv gets the pooling before it (a separable block stays depthwise →
    pointwise); another conv after it, with the BatchNorm that follows it moved in between
    so that it still folds (the BatchNorm itself becomes an identity).
    """
    import copy

    from torch import nn

    g = _conv(site)
    m = site.module
    k = k or (g["k"][0] if g["k"][0] == g["k"][1] and g["k"][0] % 2 else 3)
    conv = nn.Conv2d(g["cin"], g["cout"], k, padding=k // 2, groups=m.groups,
                     bias=m.bias is not None)
    if any(n is None or n % 2 for n in g["in"] or (None,)):
        return None  # an odd side: 2x2 pooling would not give the strided conv's shape
    if _is_depthwise(g):
        return nn.Sequential(nn.MaxPool2d(2), conv).eval()
    nxt = [graph.sites[i] for i in site.users]
    if len(nxt) == 1 and nxt[0].kind == "BatchNorm2d" and nxt[0].module is not None:
        stand_in = nn.Sequential(conv, copy.deepcopy(nxt[0].module), nn.MaxPool2d(2)).eval()
        return [(site, stand_in), (nxt[0], "identity")]
    return nn.Sequential(conv, nn.MaxPool2d(2)).eval()


def _conv_then_pool(site, graph, target):
    """Stand-in: a 3x3 conv and ReLU6 in front of the pooling (same output shape)."""
    from torch import nn

    shape = site.in_shapes[0] if site.in_shapes else None
    if shape is None or len(shape) != 3 or site.module is None:
        return None
    return nn.Sequential(nn.Conv2d(shape[0], shape[0], 3, padding=1), nn.ReLU6(),
                         copy_module(site.module)).eval()


def _maxpool_stand_in(site, graph, target):
    """MaxPool2d(2) in place of another max pooling module with the same output shape
    (MaxPool2d(3, 2, 1) on an even map, ResNet's stem): without it the toolchain stops at
    the convolution the pooling runs inside (CNN2SNN: "MaxPool is not supported with
    'SameUpper' padding", on the convolution) and judges nothing after it."""
    from torch import nn

    p = _pool(site)
    if p is None or not p["max"] or p["one_d"] or site.module is None or p["in"] is None:
        return None
    if any(n is None or n % 2 for n in p["in"]) or site.out_shape is None:
        return None
    if tuple(site.out_shape[1:]) != tuple(n // 2 for n in p["in"]):
        return None
    return nn.MaxPool2d(2)


def copy_module(module):
    import copy

    return copy.deepcopy(module)


def _depthwise_patch(site, graph, target):
    return "identity-next-activation"


def _identity(site, graph, target):
    return "identity"


def _relu6(site, graph, target):
    return "relu6"


#: Function names of a concatenation in a traced graph.
_CONCATENATIONS = {"cat", "concat", "concatenate"}


def _merge_stand_in(site, graph, target):
    """A residual addition keeps its last operand; a channel concatenation of 2-D maps
    becomes a 1x1 convolution of its last operand to the concatenated channels (the
    other branches are then not judged, and say so); other merges have no stand-in."""
    if site.kind in _CONCATENATIONS:
        args = site.params.get("args") or ()
        dim = args[0] if args else site.params.get("kwargs", {}).get("dim", 0)
        shape = site.out_shape
        if shape is not None and len(shape) == 3 and dim in (1, -3) and site.in_shapes:
            return "cat-as-conv"
        return None
    return "drop-add"


def _safe_conv(site, graph, target):
    """A conv with an allowed square kernel, same stride/output shape: lets the check go on."""
    import torch
    from torch import nn

    g = _conv(site)
    if g is None or g["one_d"] or g["s"][0] != g["s"][1] or g["s"][0] not in (1, 2):
        return None
    if target == "akida1" and _stride2_even(site, graph, target) is not None or (
            target == "akida1" and g["s"] == (2, 2) and g["in"] is not None
            and all(n is not None and n % 2 == 0 for n in g["in"])):
        return _stride2_stand_in(site, graph, target, k=3)
    groups = g["cin"] if _is_depthwise(g) and g["cout"] == g["cin"] else 1
    for k in (3, 1):
        conv = nn.Conv2d(g["cin"], g["cout"], k, stride=g["s"][0], padding=k // 2, groups=groups,
                         bias=site.module.bias is not None)
        shape = site.in_shapes[0] if site.in_shapes else None
        if shape is None or site.out_shape is None:
            return None
        with torch.no_grad():
            out = conv(torch.zeros(1, *shape))
        if tuple(out.shape[1:]) == tuple(site.out_shape):
            conv.eval()
            return conv
    return None
