"""Rules on operations Akida has no layer for: recurrence, attention, slicing, a mean
along some axes only.

Each check reads one graph node (:class:`akida_workflows.graph.Site`) and returns
the reason, or None; each fix says what to write instead, in PyTorch terms. The
rule table (:data:`akida_workflows.rules.RULES`) lists them with their limits.
"""

from __future__ import annotations

import math

from .geometry import linear_after, mean_axes, spatial_axes
from .graph import _ATTENTION, _RECURRENT

#: Products of two activations (attention scores); a product with a weight is a layer.
_MATMUL_FUNCS = {"matmul", "bmm", "einsum", "baddbmm", "scaled_dot_product_attention"}


def _recurrent(site, graph, target):
    if site.kind in _RECURRENT:
        return f"{site.kind}: Akida has no recurrent layers"
    return None


def _as_image(graph) -> str:
    """'the 49x10 input (padded to 50x10 …)': the input seen as a one-channel image."""
    shape = graph.input_shape
    if len(shape) != 3:
        return "the (time x features) input"
    h, w = shape[-2:]
    text = f"the {h}x{w} (time x features) input"
    if h % 2 or w % 2:
        text += (f", zero-padded to {h + h % 2}x{w + w % 2} so that MaxPool2d(2) sees an even "
                 "map,")
    return text


def _conv_replacement(graph) -> str:
    """The convolutional stack suggested in place of a recurrent or attention block."""
    return (f"treat {_as_image(graph)} as a one-channel image and use Conv2d with square "
            "kernels (e.g. Conv2d(1, 16, 3, padding=1) → ReLU6 → MaxPool2d(2) → Conv2d(16, 16, "
            "3, padding=1) → ReLU6 → Flatten → Linear)")


def _recurrent_fix(site, graph, target):
    return (f"replace the recurrence by convolutions over time: {_conv_replacement(graph)}, "
            "as keyword-spotting DS-CNNs do")


_SLICING = {"getitem", "narrow"}


def _slicing(site, graph, target):
    """Indexing that keeps part of a tensor (x[:, :, :48], x.narrow(…)): no Akida layer.
    Indexing a tuple (an LSTM's outputs) has no tensor input shape and is not judged."""
    if site.kind not in _SLICING or not site.in_shapes or site.out_shape is None:
        return None
    before, after = tuple(site.in_shapes[0]), tuple(site.out_shape)
    if math.prod(before) == math.prod(after):  # x[:, 0] of a one-channel map: a reshape
        return None
    source = graph.previous_op(site)
    if source is not None and source.kind in _RECURRENT | _ATTENTION:
        return None  # a step of a recurrent/attention output: that layer's row says it all
    return (f"{site.kind} keeps part of a tensor ({'x'.join(map(str, before))} → "
            f"{'x'.join(map(str, after)) or 'a scalar'}): Akida has no slicing layer")


def _slicing_fix(site, graph, target):
    after = "x".join(map(str, site.out_shape))
    if graph.fed_by_input(site):
        return (f"crop the input on the host, before the model: give the model the {after} "
                "input it uses (and --input-shape / samples of that shape)")
    return ("compute only what is used, without indexing: a smaller or strided layer, or "
            "move the cut to the host after the model")


def _attention(site, graph, target):
    if site.kind in _ATTENTION:
        return f"{site.kind}: attention has no Akida layer"
    if site.kind in _MATMUL_FUNCS and not site.has_constant_input and len(site.inputs) >= 2:
        return f"{site.kind} of two activations (attention scores): Akida multiplies " \
               "activations only by trained weights"
    return None


def _attention_fix(site, graph, target):
    return f"replace the attention block by convolutions: {_conv_replacement(graph)}"


def _axis_names(rank: int) -> dict[int, str]:
    if rank == 4:
        return {0: "batch", 1: "channel", 2: "height", 3: "width"}
    return {0: "batch", 1: "channel", 2: "time"} if rank == 3 else {0: "batch", 1: "feature"}


def _after_sequence_layer(site, graph) -> bool:
    """A recurrent or attention layer comes before ``site``: its tensors are (tokens x
    features), not a map, and that layer's own row says what to do."""
    previous = graph.previous_op(site)
    while previous is not None:
        if previous.kind in _RECURRENT | _ATTENTION | _MATMUL_FUNCS:
            return True
        previous = graph.previous_op(previous)
    return False


def _partial_mean(site, graph, target):
    """A mean along some axes of a map, not exactly its spatial ones (``x.mean(2)`` of
    NCHW: the height only). Akida averages a map only as a whole (global average
    pooling); a mean over every spatial axis is that, and the pooling rules judge it."""
    if site.kind != "mean" or not site.in_shapes or _after_sequence_layer(site, graph):
        return None
    axes, spatial = mean_axes(site), spatial_axes(site)
    if axes is None or not spatial or axes == spatial:
        return None
    names = _axis_names(len(spatial) + 2)
    over = " and ".join(f"{names.get(a, f'axis {a}')} (dim {a})" for a in axes)
    shape = "x".join(map(str, site.in_shapes[0]))
    return (f"mean over the {over} of the {shape} map only: Akida averages a map only as a "
            "whole (global average pooling over every position)")


def _partial_mean_fix(site, graph, target):
    from .targets import limits

    two_d = len(spatial_axes(site)) == 2
    whole = ("x.mean((2, 3)) or nn.AdaptiveAvgPool2d(1)" if two_d
             else "x.mean(-1) or nn.AdaptiveAvgPool1d(1)")
    text = f"average over the whole map ({whole}, then Flatten)"
    inputs = math.prod(site.in_shapes[0])
    dense_limit = limits(target).dense_inputs
    if linear_after(site, graph) is not None and (dense_limit is None or inputs <= dense_limit):
        shape = "x".join(map(str, site.in_shapes[0]))
        text += (f", or drop the mean and flatten the {shape} map into the Linear "
                 f"({inputs} inputs): it can learn that average, and more")
    return text
