"""Akida's limits as one table of rules, each with the fix that works.

Every limit a PyTorch model can hit on its way to Akida — square kernels, the
kernel sizes and channels of the input layer, pooling, the Dense input size,
bounded activations on Akida 1.0, residual additions, … — is one :class:`Rule`
of :data:`RULES`: an id, the targets it applies to, the toolchain stage that
refuses it, a ``check`` that reads one operation of the model (a module or a
functional op, with its shapes and neighbours) and returns the reason or
``None``, and the fix, in PyTorch terms, specific to that operation. A rule may
also carry a ``patch``: the mechanical part of the fix, applied to a *working
copy* by :func:`akida_workflows.compat.check_compatibility` so that the real
toolchain can go on and check the rest of the model in the same run.

The limits were measured on this stack (quantizeml 1.2.5, cnn2snn/akida
2.19.3, virtual ``SixNodesIPv2`` for Akida 2.0 and ``AKD1000`` for Akida 1.0);
each rule's test builds a model that violates only that rule, checks the real
toolchain refuses it, applies the fix the rule prints and checks the toolchain
then accepts it (``tests/test_rules.py``).

Rules are checked in table order and every rule that applies to an operation
is reported. Fixes are written so that applying all of them together does not
trigger another rule: a pooling fix never suggests the strided convolution a
padding fix removed, a kernel fix gives the padding that keeps the map size.

>>> from akida_workflows.rules import rules_for
>>> [rule.id for rule in rules_for("akida1")][:3]  # doctest: +SKIP
['recurrent', 'attention', 'input-layer-dense']
"""

from __future__ import annotations

import dataclasses
import math

from . import targets as _targets
from .findings import Finding, Rule
from .geometry import (  # noqa: F401  (layer geometry; re-exported for callers of rules)
    _CONV_TAIL,
    _SEPARABLE_SKIP,
    _clamp_bounds,
    _conv,
    _dilated_origin,
    _is_depthwise,
    _is_global_pool,
    _one_d_terms,
    _origin_1d,
    _pair,
    _pool,
    _relu_site,
    _same_output,
    linear_after,
    separable_partner,
)
from .graph import (  # noqa: F401  (the graph lives in graph.py; re-exported)
    _ATTENTION,
    _RECURRENT,
    _TRANSPARENT,
    _WEIGHTED,
    ModelGraph,
    Site,
    _function_name,
    _shape,
    _trace_fx,
    _trace_hooks,
    trace_graph,
)
from .kernels import (  # noqa: F401  (re-exported)
    _allowed_kernels,
    _best_kernel,
    _conv1d_form,
    _conv_choice,
    _conv_fix_text,
    _kernel_fix,
    _kernel_size,
    _one_d_in_2d,
    _square_fix,
    _square_kernel,
    _square_output,
    _stride,
    _stride_fix,
)
from .no_layer import (  # noqa: F401  (re-exported)
    _MATMUL_FUNCS,
    _as_image,
    _attention,
    _attention_fix,
    _conv_replacement,
    _partial_mean,
    _partial_mean_fix,
    _recurrent,
    _recurrent_fix,
    _slicing,
    _slicing_fix,
)
from .padding import (  # noqa: F401  (re-exported)
    _input_stride_padding,
    _input_stride_padding_fix,
    _input_stride_stand_in,
    _padding,
    _padding_fix,
    _padding_mode,
    _padding_mode_fix,
    _strided_then_pooled,
    _strided_then_pooled_fix,
)
from .stand_ins import (  # noqa: F401  (re-exported)
    _CONCATENATIONS,
    _conv_then_pool,
    _depthwise_patch,
    _identity,
    _maxpool_stand_in,
    _merge_stand_in,
    _relu6,
    _safe_conv,
    _stride2_even,
    _stride2_stand_in,
    copy_module,
)
from .tables import Table

# Site, ModelGraph, trace_graph: importable here, listed and documented in graph.py.
__all__ = ["Rule", "Finding", "RULES", "rules_for", "check_graph", "rule_at",
           "limits_table"]

TARGETS = tuple(_targets.TARGETS)


#: Measured limits per target: each :class:`akida_workflows.targets.Limits` as a dict.
LIMITS = {name: dataclasses.asdict(lim) for name, lim in _targets.TARGETS.items()}


def _kernel_limit_text() -> str:
    """'input-layer kernels 3/4/5/7 (akida2), …; after it …', from the targets' limits."""
    def per(key):
        return ", ".join(f"{'/'.join(map(str, lim[key]))} ({name})" for name, lim in LIMITS.items())
    return f"input-layer kernels {per('input_kernels')}; after it {per('kernels')}"


_OTHER_ACTIVATIONS = {"LeakyReLU", "GELU", "SiLU", "Hardswish", "Mish", "ELU", "PReLU",
                      "Softplus", "SELU", "CELU", "Hardsigmoid", "leaky_relu", "gelu", "silu",
                      "hardswish", "mish", "elu", "softplus", "selu", "celu", "hardsigmoid"}
_SQUASHING = {"Sigmoid", "Tanh", "sigmoid", "tanh"}
_SOFTMAX = {"Softmax", "LogSoftmax", "softmax", "log_softmax"}

# ---------------------------------------------------------------------------- rules


# ---- checks -----------------------------------------------------------------------


def _input_channels(site, graph, target):
    g = _conv(site)
    if g and graph.is_input_layer(site) and g["cin"] not in LIMITS[target]["input_channels"]:
        return f"the input layer takes 1 or 3 channels, this one {g['cin']}"
    return None


def _input_channels_fix(site, graph, target):
    c = _conv(site)["cin"]
    if _origin_1d(site, graph) is not None:
        cout = _conv(site)["cout"]
        if c == 2:
            return ("give the model 3 input channels: add a zero third signal in preprocessing "
                    f"(x = F.pad(x, (0, 0, 0, 1))) and use nn.Conv1d(3, {cout}, ...)")
        return (f"give the model 1 or 3 input channels: keep 3 of the {c} signals, or mix them "
                f"down to 3 (or 1) on the host (a fixed linear combination), and use "
                f"nn.Conv1d(3, {cout}, ...)")
    if c == 2:
        return ("give the model 3 input channels: pad the input with a zero channel "
                "(x = F.pad(x, (0, 0, 0, 0, 0, 1)) in preprocessing) and use "
                f"nn.Conv2d(3, {_conv(site)['cout']}, ...)")
    return (f"give the model 1 or 3 input channels: stack the {c} channels along the height "
            f"axis as one channel (input 1 x {c}·H x W) and use nn.Conv2d(1, "
            f"{_conv(site)['cout']}, ...), or keep 3 of them")


def _input_size(site, graph, target):
    if not graph.is_input_layer(site):
        return None
    g = _conv(site)
    if g is None or g["in"] is None:
        return None
    lim = LIMITS[target]
    h, w = g["in"]
    problems = []
    if w is not None and w > lim["max_width"]:
        problems.append(f"width {w} > {lim['max_width']}")
    if w is not None and w < lim["min_width"]:
        problems.append(f"width {w} < {lim['min_width']}")
    if h is not None and h < lim["min_height"]:
        problems.append(f"height {h} < {lim['min_height']}")
    if problems:
        return "input " + " and ".join(problems) + " (the input layer's limits)"
    return None


def _input_size_fix(site, graph, target):
    lim = LIMITS[target]
    g = _conv(site)
    h, w = g["in"]
    parts = []
    if w is not None and w > lim["max_width"]:
        factor = math.ceil(w / lim["max_width"])
        parts.append(f"at most {lim['max_width']} columns: decimate the signal by {factor} "
                     f"(width {w} → {-(-w // factor)}) or cut it into windows of "
                     f"≤ {lim['max_width']}")
    if h is not None and h < lim["min_height"]:
        parts.append(f"at least {lim['min_height']} rows (repeat or pad the rows)")
    if w is not None and w < lim["min_width"]:
        parts.append(f"at least {lim['min_width']} columns")
    text = "give the input " + "; ".join(parts)
    if _origin_1d(site, graph) is not None and w is not None and w > lim["max_width"]:
        hop = max(1, w // 50)
        text += (". For raw audio, compute a log-mel spectrogram on the host instead (e.g. "
                 f"torchaudio.transforms.MelSpectrogram(n_mels=40, hop_length={hop}) turns the "
                 f"{w} samples into a 40 x {w // hop + 1} image) and give it to a 2-D network "
                 "such as a DS-CNN keyword spotter: the wide, strided filtering of this layer "
                 "is what the spectrogram computes")
    return text


def _dilation(site, graph, target):
    g = _conv(site)
    if g and any(d != 1 for d in g["d"]):
        return f"dilation {max(g['d'])}: Akida convolutions are not dilated"
    return None


def _dilation_fix(site, graph, target):
    g = _conv(site)
    span = (max(g["k"]) - 1) * max(g["d"]) + 1
    k = _best_kernel(span, LIMITS[target]["kernels"])
    return (f"use dilation=1 with kernel_size={k}, padding={k // 2} (a {span}-sample span needs "
            "stacked convolutions or pooling before this layer)")


def _groups(site, graph, target):
    g = _conv(site)
    if g and g["groups"] > 1 and not _is_depthwise(g):
        return f"grouped convolution (groups={g['groups']})"
    # Akida 2.0: QuantizeML has no pattern for it (Akida 1.0: the depthwise rule's)
    if g and target == "akida2" and _is_depthwise(g) and g["cout"] != g["cin"]:
        return (f"depthwise convolution with {g['cout'] // g['cin']} filters per channel "
                f"({g['cin']} → {g['cout']} channels): Akida's depthwise layer takes one")
    return None


def _groups_fix(site, graph, target):
    g = _conv(site)
    conv = "Conv1d" if _origin_1d(site, graph) is not None else "Conv2d"
    if _is_depthwise(g):
        k = g["k"][0]
        return (f"use one filter per channel, nn.{conv}({g['cin']}, {g['cin']}, {k}, "
                f"padding={k // 2}, groups={g['cin']}), then a 1x1 nn.{conv}({g['cin']}, "
                f"{g['cout']}, 1) for the extra channels")
    return (f"use groups=1 (a full convolution), or a depthwise nn.{conv}({g['cin']}, "
            f"{g['cin']}, k, groups={g['cin']}) followed by a 1x1 nn.{conv}({g['cin']}, "
            f"{g['cout']}, 1)")


def _maxpool(site, graph, target):
    p = _pool(site)
    if p is None or not p["max"]:
        return None
    problems = []
    if p["k"] != (2, 2) or p["s"] != (2, 2):
        problems.append(f"kernel {p['k'][0]}, stride {p['s'][0]}")
    if any(p["p"]):
        problems.append(f"padding {p['p'][0]}")
    if p["ceil"]:
        problems.append("ceil_mode=True")
    odd = p["in"] is not None and any(n is not None and n % 2 for n in p["in"])
    if odd and not problems:
        problems.append(f"an odd {'x'.join(str(n) for n in p['in'] if n is not None)} input")
    if problems:
        return ("max pooling with " + ", ".join(problems) + ": Akida pools 2x2 with stride 2, "
                "no padding, on even-sized maps")
    return None


def _maxpool_fix(site, graph, target):
    p = _pool(site)
    pool = "nn.MaxPool1d(2)" if p["one_d"] else "nn.MaxPool2d(2)"
    already = (p["k"] == (2, 2) and p["s"] == (2, 2) and not any(p["p"]) and not p["ceil"])
    # A pooling that is already 2/2/0 only needs an even map: never propose what it is.
    text = f"keep {pool}" if already else f"use {pool} (kernel 2, stride 2, padding 0)"
    if p["in"] is not None and any(n is not None and n % 2 for n in p["in"]):
        text += (f"{' but give it' if already else ' on'} an even-sized map (this one is "
                 f"{'x'.join(str(n) for n in p['in'] if n is not None)}: choose an input size "
                 "divisible by 2 for each pooling, and padding=k//2 in the convolutions)")
    return text


def _pool_after_conv(site, graph, target):
    """A max pooling must close a convolution (Conv → [BN] → [ReLU] → MaxPool)."""
    p = _pool(site)
    if p is None or not p["max"]:
        return None
    prev = graph.previous_op(site, skip=_TRANSPARENT | _CONV_TAIL | _OTHER_ACTIVATIONS |
                             _SQUASHING)  # activations have their own rules
    if prev is None:
        return "max pooling of the model input: Akida pools only the output of a convolution"
    if prev.kind not in ("Conv2d", "Conv1d"):
        return (f"max pooling after {prev.kind} ({prev.name}): Akida pools only the output of "
                "a convolution")
    return None


def _pool_after_conv_fix(site, graph, target):
    prev = graph.previous_op(site, skip=_TRANSPARENT | _CONV_TAIL)
    where = f" ({prev.name})" if prev is not None else ""
    c = site.in_shapes[0][0] if site.in_shapes else "C"
    return (f"give the map{where} an nn.Conv2d({c}, {c}, 3, padding=1) → nn.ReLU6() before this "
            "pooling (and keep an unpooled convolution between it and a Flatten → Linear)")


def _avgpool(site, graph, target):
    p = _pool(site)
    if p is None or p["max"] or _is_global_pool(site):
        return None
    window = f"average pooling over {p['k'][0]}x{p['k'][1]} windows"
    if target == "akida2":
        return f"{window} (not the whole map)"
    if linear_after(site, graph) is None:  # else the pool_head pass folds it into the Dense
        return (f"{window}: Akida 1.0 has no average-pooling layer (average pooling folds "
                "only into the Linear right after it)")
    return None


def _avgpool_fix(site, graph, target):
    if target == "akida1":
        return ("use nn.MaxPool2d(2) (or a stride-2 convolution) to down-sample; average "
                "pooling only right before the Linear (→ Flatten → Linear), where it folds "
                "into the Dense")
    return ("use nn.MaxPool2d(2) to down-sample, or nn.AdaptiveAvgPool2d(1) (global average "
            "pooling) after the last convolution")


def _gap_area(site, graph, target):
    limit = LIMITS[target]["gap_area"]
    if limit is None or not _is_global_pool(site):
        return None
    shape = site.in_shapes[0] if site.in_shapes else None
    if shape and len(shape) == 3 and shape[1] * shape[2] > limit:
        if _origin_1d(site, graph) is not None:
            return (f"global average pooling over {shape[2]} samples x {shape[1]} identical "
                    f"rows = {shape[1] * shape[2]} positions once lowered (at most {limit})")
        return (f"global average pooling over {shape[1]}x{shape[2]} = {shape[1] * shape[2]} "
                f"positions (at most {limit})")
    return None


def _gap_area_fix(site, graph, target):
    shape = site.in_shapes[0]
    limit = LIMITS[target]["gap_area"]
    if _origin_1d(site, graph) is not None and shape[1]:
        # A lowered signal keeps its rows: only its length can shrink.
        length = limit // shape[1]
        factor = -(-shape[2] // length)
        return (f"shorten the signal to at most {length} samples before it ({shape[1]} rows x "
                f"{length} = {shape[1] * length} ≤ {limit}): {factor}x less in all, e.g. "
                "stride-2 convolutions or nn.MaxPool1d(2) after earlier convolutions")
    side = int(math.isqrt(limit))
    return (f"down-sample the {shape[1]}x{shape[2]} map to at most {side}x{side} before it "
            "(nn.MaxPool2d(2) after an earlier convolution)")


def _pooled_before_dense(site, graph, target):
    """A max pool ending the convolution stack right before the Dense."""
    p = _pool(site)
    if p is None or not p["max"]:
        return None
    nxt = graph.next_ops(site, skip=_TRANSPARENT | {"ReLU", "ReLU6", "Hardtanh", "relu",
                                                       "relu6", "hardtanh", "clamp"})
    if nxt and all(n.kind == "Linear" for n in nxt):
        return ("the last convolution is max-pooled and hands over to a Dense layer; in "
                "hardware a pooled convolution must be followed by another convolution")
    return None


def _pooled_before_dense_fix(site, graph, target):
    shape = site.out_shape or (None, None, None)
    c, h, w = shape if len(shape) == 3 else (shape[0], 1, shape[-1])
    limit = LIMITS[target]["dense_inputs"] or 2048
    channels = max(1, min(c or 8, limit // max(1, (h or 1) * (w or 1))))
    return (f"add an unpooled nn.Conv2d({c}, {channels}, 3, padding=1) → nn.ReLU6() between "
            f"this pooling and the Flatten (Linear in_features = {channels * (h or 1) * (w or 1)})")


def _dense_map(site, graph):
    """``(C, H, W)`` of the spatial map a Linear reads through a Flatten, or None."""
    prev = graph.previous_op(site)
    shape = prev.out_shape if prev is not None and prev is not site else None
    return shape if shape is not None and len(shape) == 3 else None


def _dense_input(site, graph, target):
    limit = LIMITS[target]["dense_inputs"]
    if limit is None or site.kind != "Linear":
        return None
    columns = LIMITS[target]["dense_map_width"]
    shape = _dense_map(site, graph)
    if columns is not None and shape is not None and shape[2] and shape[2] > columns and \
            site.module.in_features <= limit:
        return (f"Linear reading a {'x'.join(map(str, shape))} map: {shape[2]} columns (a "
                f"fully-connected NP reads a map of at most {columns} columns, however few its "
                f"{site.module.in_features} inputs)")
    if site.module.in_features > limit:
        rows = _lowered_rows(site, graph)
        how = (f" once lowered: it reads all {rows} identical rows, {site.module.in_features // rows}"
               f" values each" if rows else "")
        return f"Linear with {site.module.in_features} inputs{how} (a fully-connected NP takes " \
               f"at most {limit})"
    return None


def _lowered_rows(site, graph) -> int | None:
    """Rows of a model lowered from 1-D when ``site`` reads them all (a Linear after Flatten)."""
    shape = graph.input_shape
    if _origin_1d(site, graph) is None or len(shape) != 3 or not shape[1]:
        return None
    return shape[1]


def _dense_input_fix(site, graph, target):
    n = site.module.in_features
    limit = LIMITS[target]["dense_inputs"]
    columns = LIMITS[target]["dense_map_width"]
    shape = _dense_map(site, graph)
    if columns is not None and shape is not None and shape[2] and shape[2] > columns and \
            n <= limit:
        return (f"bring the map before the Flatten to ≤ {columns} columns: stride=2 in the "
                "input layer, or nn.MaxPool2d(2) followed by an unpooled Conv2d before the "
                "Flatten")
    conv = graph.previous_weighted(site)
    g = _conv(conv) if conv is not None else None
    if g and not g["one_d"] and g["out"] and all(v is not None for v in g["out"]):
        area = max(1, n // g["cout"])  # positions per channel reaching the Linear
        if not _same_output(g):  # its padding fix (also reported) enlarges the map
            same = [-(-size // stride) for size, stride in zip(g["in"], g["s"])]
            area = area * same[0] * same[1] // (g["out"][0] * g["out"][1])
        channels = max(1, limit // area)
        rows = _lowered_rows(site, graph)
        if rows:
            samples = area // rows
            channels = max(1, limit // area)
            return (f"bring the Linear's {n} inputs to ≤ {limit}: give the last convolution "
                    f"({conv.name}) at most {channels} output channels ({channels} x {samples} "
                    f"samples x {rows} rows = {channels * area}), or add nn.MaxPool1d(2) and "
                    "an unpooled Conv1d before the Flatten, or end with nn.AdaptiveAvgPool1d(1)")
        return (f"bring the Linear's {n} inputs to ≤ {limit}: give the last convolution "
                f"({conv.name}) at most {channels} output channels ({channels} x {area} "
                f"positions = {channels * area} features), or add nn.MaxPool2d(2) followed by "
                "an unpooled Conv2d before the Flatten")
    return f"bring the Linear's {n} inputs to ≤ {limit} (fewer features before it)"


def _dense_input_layer(site, graph, target):
    if site.kind == "Linear" and graph.is_input_layer(site):
        return ("the model starts with a Linear layer: Akida 1.0 runs a fully connected input "
                "layer only on inputs of at most 4 bits (images are 8-bit), so its input layer "
                "must be a convolution")
    return None


def _dense_input_layer_fix(site, graph, target):
    c = graph.input_shape[0] if len(graph.input_shape) == 3 else 1
    return (f"start with a convolution on the image: nn.Conv2d({c}, 8, 3, padding=1) → "
            "nn.ReLU6() before the Flatten (Linear in_features = 8 x H x W, at most 2048), "
            "or convert for Akida 2.0, which runs a Linear input layer")


def _conv_before_flatten(site, graph, target):
    """Stand-in for a Linear input layer: a 3x3 conv in front of the Flatten that feeds it."""
    from torch import nn

    prev = graph.previous_op(site, skip=set())
    shape = graph.input_shape
    if prev is None or prev.kind != "Flatten" or len(shape) != 3 or prev.module is None:
        return None
    c = shape[0]
    # 8 channels first: QuantizeML's Keras path refuses a one-channel input convolution.
    stand_in = nn.Sequential(nn.Conv2d(c, 8, 3, padding=1), nn.ReLU6(), nn.Conv2d(8, c, 1),
                             nn.ReLU6(), nn.Flatten(prev.module.start_dim, prev.module.end_dim))
    return (prev, stand_in.eval())


def _signed(site) -> str | None:
    """'Hardtanh(min=-1, max=1)' for a clamp that is not a bounded ReLU, else None."""
    if site.kind in ("Hardtanh", "hardtanh", "clamp", "clip", "clamp_"):
        low, high = _clamp_bounds(site)
        if low not in (0, 0.0) or high is None or high <= 0:
            return f"{site.kind}(min={low}, max={high})"
    return None


def _bounded(site, graph, target):
    if site.kind in ("ReLU", "relu", "relu_"):
        return "ReLU without a maximum: Akida 1.0 quantizes activations to a fixed range"
    signed = _signed(site)
    return f"{signed}: Akida 1.0 takes only clamped ReLUs (min 0, max > 0)" if signed else None


def _signed_clamp(site, graph, target):
    """Akida 2.0 takes ReLU, ReLU6 and clamps at 0 (Clip(0, m)); a clamp with another
    minimum (nn.Hardtanh(-1, 1)) has no quantized pattern, and QuantizeML's refusal
    lands on the layer before it."""
    signed = _signed(site)
    return (f"{signed}: Akida 2.0 takes clamps only as bounded ReLUs (min 0, max > 0)"
            if signed else None)


#: What a weighted layer may feed through and still need an activation of its own.
_THROUGH = {"BatchNorm1d", "BatchNorm2d", "MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d",
            "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "max_pool1d", "max_pool2d", "avg_pool1d",
            "avg_pool2d", "adaptive_avg_pool1d", "adaptive_avg_pool2d"}


def _chained(site, graph):
    """The weighted layer ``site`` feeds without an activation between, or None. A
    depthwise convolution is not judged here: feeding its 1x1 it is one separable layer
    (no activation between), and anywhere else the depthwise-separable rule says why not.
    Nor is a model torch.fx cannot trace: its graph (from hooks on the modules) does not
    show functional activations, so two modules look adjacent that are not."""
    g = _conv(site)
    if site.kind not in _WEIGHTED or (g is not None and _is_depthwise(g)):
        return None
    if not graph.traced:  # traced by hooks: functional activations (F.relu6) are not seen
        return None
    after = [s for s in graph.next_ops(site, skip=_TRANSPARENT | _THROUGH)
             if s.kind in _WEIGHTED]
    return after[0] if after else None


def _unactivated(site, graph, target):
    after = _chained(site, graph)
    if after is None:
        return None
    kind = [(_origin_1d(s, graph) or s).kind for s in (site, after)]  # the user's 1-D op
    return (f"{kind[0]} feeds {after.name} ({kind[1]}) with no activation between: on "
            "Akida 1.0 every layer that feeds another ends with a bounded ReLU (its output "
            "quantizer)")


def _unactivated_fix(site, graph, target):
    after = _chained(site, graph)
    return (f"put nn.ReLU6() (or F.relu6 / a clamp) after {site.name}, before {after.name}, "
            "and retrain or fine-tune; or merge the two into one layer (two linear layers in "
            "a row compute one linear map)")


def _bounded_fix(site, graph, target):
    if site.module is None:
        if site.kind in ("relu", "relu_"):
            return "use F.relu6(x) (or torch.clamp(x, 0, m)) instead of F.relu(x)"
        low, high = _clamp_bounds(site)
        return (f"use F.relu6(x) (or torch.clamp(x, 0, m)) instead of this {site.kind}"
                f"(min={low}, max={high})")
    m = site.module
    what = (f"nn.Hardtanh({m.min_val:g}, {m.max_val:g})" if site.kind == "Hardtanh"
            else f"nn.{site.kind}()")
    return f"use nn.ReLU6() (or nn.Hardtanh(0, m)) instead of {what}"


_MAX_POOLS = {"MaxPool2d", "MaxPool1d", "max_pool2d", "max_pool1d"}


def _other_activation(site, graph, target):
    if site.kind not in _OTHER_ACTIVATIONS:
        return None
    if target == "akida1":
        return f"{site.kind}: Akida 1.0 has only ReLU-type activations"
    # Akida 2.0 takes it as the activation of a Conv/Linear, but not with max pooling
    # (measured: Conv → GELU passes; Conv → GELU → MaxPool and Conv → MaxPool → GELU fail).
    prev = graph.previous_op(site, skip=_TRANSPARENT | {"BatchNorm1d", "BatchNorm2d"})
    if prev is None or prev.kind not in _WEIGHTED:
        after = prev.kind if prev is not None else "the input"
        return f"{site.kind} after {after}: Akida 2.0 takes it only right after a Conv/Linear"
    if any(n.kind in _MAX_POOLS for n in graph.next_ops(site)):
        return f"{site.kind} followed by max pooling: Akida 2.0 pools only ReLU activations"
    return None


def _other_activation_fix(site, graph, target):
    return "use nn.ReLU6() instead (then fine-tune: the activation changes the function)"


def _squashing_inside(site, graph, target):
    if site.kind in _SQUASHING and not graph.is_last_compute(site):
        return f"{site.kind} inside the network: no quantizable pattern"
    return None


def _squashing_fix(site, graph, target):
    return (f"remove it, or use nn.ReLU6() instead ({site.kind} is supported only as the "
            "model's last op)")


def _softmax_inside(site, graph, target):
    if site.kind in _SOFTMAX and not graph.is_last_compute(site):
        return f"{site.kind} inside the network: Akida has no softmax layer"
    return None


def _softmax_inside_fix(site, graph, target):
    return "remove it (a softmax is supported only as the model's last op, run on the host)"


def _batchnorm(site, graph, target):
    if site.kind not in ("BatchNorm1d", "BatchNorm2d"):
        return None
    prev = graph.previous_op(site, skip=set())
    if prev is not None and prev.kind in _WEIGHTED and len(prev.users) == 1:
        return None  # folded into the Conv/Linear before it (by the exporter / the 4-bit path)
    if target == "akida1" and site.name not in graph.unfoldable:
        return None  # the Akida 1.0 path folds it (fold_batchnorm)
    if target == "akida2" and _after_conv_through_max_pool(site, graph) and \
            _positive_scales(site):
        return None  # QuantizeML folds it through the max pooling (measured; scales > 0)
    where = f"after {prev.kind}" if prev is not None else "at the input"
    return f"BatchNorm {where}: only a BatchNorm right after a Conv/Linear folds away"


def _after_conv_through_max_pool(site, graph) -> bool:
    """Conv → MaxPool(s) → BN, with nothing else between."""
    i = site.inputs[0] if site.inputs else -1
    pools = 0
    while i >= 0:
        s = graph.sites[i]
        if s.kind in _MAX_POOLS:
            pools += 1
        elif s.kind in ("Conv2d", "Conv1d"):
            return pools > 0 and len(s.users) == 1
        elif s.kind not in _TRANSPARENT:
            return False
        i = s.inputs[0] if s.inputs else -1
    return False


def _positive_scales(site) -> bool:
    m = site.module
    if m is None or m.weight is None:
        return True
    return bool((m.weight.detach() / (m.running_var + m.eps).sqrt() > 0).all())


def _batchnorm_fix(site, graph, target):
    if site.name in graph.foldable and target == "akida2":
        direction, into = graph.foldable[site.name]
        return (f"call akida_workflows.folding.fold_batchnorm(model) before export: it folds "
                f"this BatchNorm {direction} into {into} exactly")
    conv = graph.previous_weighted(site)
    between = []
    i = site.inputs[0] if site.inputs else -1
    while i >= 0 and conv is not None and i != conv.index:
        between.append(graph.sites[i])
        i = graph.sites[i].inputs[0] if graph.sites[i].inputs else -1
    between.reverse()
    if conv is None:
        return "remove it, or place it right after a Conv2d/Linear where it folds"
    order = " → ".join([conv.kind, "BN"] + [s.kind for s in between])
    exact = ""
    pools = [s for s in between if s.kind not in ("ReLU", "ReLU6", "relu", "relu6", "Hardtanh")]
    acts = [s for s in between if s not in pools]
    if not acts and site.module is not None:
        scale = (site.module.weight / (site.module.running_var + site.module.eps).sqrt())
        if bool((scale > 0).all()) or all("Avg" in s.kind or "avg" in s.kind for s in pools):
            exact = " (exactly equivalent here: its scales are positive)"
        else:
            exact = " (fine-tune after: some of its scales are negative, so the order matters)"
    else:
        exact = " (then fine-tune: the activation no longer sees the normalised values)"
    return (f"move the BatchNorm right after {conv.name} ({order}), where it folds into the "
            f"convolution{exact}")


def _residual(site, graph, target):
    if site.kind in ("add", "Add") and len([i for i in site.inputs]) >= 2 \
            and not site.has_constant_input:
        return "residual addition: Akida 1.0 has no merge layers"
    if site.kind in _CONCATENATIONS and len(set(site.inputs)) >= 2:
        return (f"concatenation of {len(site.inputs)} branches: Akida 1.0 has no merge layers "
                "(it runs chain-shaped models)")
    return None


def _residual_fix(site, graph, target):
    if site.kind in _CONCATENATIONS:
        return ("use --target akida2 (Akida 2.0 runs concatenations), or keep one branch for "
                "Akida 1.0 (widen its convolution to the concatenated channels)")
    return ("use --target akida2 (Akida 2.0 runs residual additions), or drop the skip "
            "connection for Akida 1.0")


def _depthwise_problem(site, graph):
    """Why a depthwise ``site`` is no Akida 1.0 separable layer, as data, or None: one of
    ``("multiplier", g)``, ``("pointwise", g, node, p)`` (a 1x1 follows with a stride or a
    dilation), ``("alone", g, next_ops)``. None also when it is a separable pair, or when
    only its own dilation stands in the way (the dilation rule reports that)."""
    g = _conv(site)
    if g is None or not _is_depthwise(g) or separable_partner(site, graph) is not None:
        return None
    if g["cout"] != g["cin"]:
        return ("multiplier", g)
    nxt = graph.next_ops(site, skip=_SEPARABLE_SKIP)  # what separable_partner looks through
    p = _conv(nxt[0]) if len(nxt) == 1 else None
    if p is not None and p["groups"] == 1 and p["k"] == (1, 1):
        if p["s"] == p["d"] == (1, 1):
            return None
        return ("pointwise", g, nxt[0], p)
    return ("alone", g, nxt)


def _depthwise_alone(site, graph, target):
    problem = _depthwise_problem(site, graph)
    if problem is None:
        return None
    g = problem[1]
    if problem[0] == "multiplier":
        return (f"depthwise convolution with {g['cout'] // g['cin']} filters per channel "
                f"({g['cin']} → {g['cout']} channels): Akida 1.0's separable layer takes one "
                "filter per channel")
    if problem[0] == "pointwise":
        _, _, pointwise, p = problem
        what = f"stride {p['s'][1] if p['one_d'] else p['s'][0]}" if p["s"] != (1, 1) else \
            f"dilation {max(p['d'])}"
        return (f"depthwise convolution followed by a 1x1 convolution ({pointwise.name}) with "
                f"{what}: Akida 1.0 merges the pair into one separable layer only when the 1x1 "
                "has stride 1 and no dilation")
    after = ", ".join(n.kind for n in problem[2]) or "nothing"
    return (f"depthwise convolution followed by {after}: Akida 1.0 runs a depthwise "
            "convolution only as the first half of a separable block")


def _depthwise_fix(site, graph, target):
    problem = _depthwise_problem(site, graph)
    g = problem[1]
    conv = "nn.Conv1d" if g["one_d"] else "nn.Conv2d"
    k = g["k"][1] if g["one_d"] else g["k"][0]
    if problem[0] == "multiplier":
        return (f"use one filter per channel, {conv}({g['cin']}, {g['cin']}, {k}, "
                f"padding={k // 2}, groups={g['cin']}), then a 1x1 "
                f"{conv}({g['cin']}, {g['cout']}, 1) for the extra channels (an Akida 1.0 "
                "separable block)")
    if problem[0] == "pointwise":
        _, _, pointwise, p = problem
        if p["s"] != (1, 1):
            s = p["s"][1] if p["one_d"] else p["s"][0]
            return (f"move the stride into the depthwise convolution: {site.name} with "
                    f"stride={s}, padding={k // 2} and {pointwise.name} with stride=1 (the "
                    "same downsampling, as MobileNet does it), and retrain or fine-tune")
        return f"use dilation=1 in {pointwise.name} (a 1x1 kernel gains nothing from it)"
    acts = [n.name for n in problem[2]
            if n.kind in ("ReLU", "ReLU6", "Hardtanh", "relu", "relu6")]
    if acts:
        return (f"feed it straight into the 1x1 {site.kind}: remove {acts[0]} between them "
                "(depthwise → BN → pointwise → BN → ReLU6, an Akida 1.0 separable block)")
    return (f"follow it directly with a 1x1 {conv}({g['cout']}, C, 1) (depthwise → pointwise "
            "→ ReLU6, an Akida 1.0 separable block)")


#: The table, in checking order.
RULES: tuple[Rule, ...] = (
    Rule("recurrent", TARGETS, "no recurrent layers (LSTM, GRU, RNN)", "quantization",
         "unsupported", _recurrent, _recurrent_fix),
    Rule("attention", TARGETS, "no attention (activation x activation products)",
         "quantization", "unsupported", _attention, _attention_fix),
    Rule("slicing", TARGETS, "no indexing or slicing of tensors (x[:, :, :48])", "quantization",
         "fixable", _slicing, _slicing_fix),
    Rule("partial-mean", TARGETS, "a mean over every spatial axis or none (x.mean((2, 3)))",
         "quantization", "fixable", _partial_mean, _partial_mean_fix),
    # Akida 2.0 takes a Linear first (quantize_onnx quantizes the input to int8 for it).
    Rule("input-layer-dense", ("akida1",), "the input layer is a convolution", "quantization",
         "fixable", _dense_input_layer, _dense_input_layer_fix, patch=_conv_before_flatten),
    Rule("input-channels", TARGETS, "input layer: 1 or 3 channels", "conversion", "fixable",
         _input_channels, _input_channels_fix),
    Rule("input-size", TARGETS,
         "input layer: height ≥ 5, width 5…384 (Akida 2.0) / 5…256 (Akida 1.0)", "mapping",
         "fixable", _input_size, _input_size_fix),
    Rule("square-kernel", TARGETS, "square k x k kernels", "conversion", "fixable",
         _square_kernel, _square_fix, patch=_safe_conv),
    Rule("kernel-size", TARGETS, _kernel_limit_text(),
         "mapping", "fixable", _kernel_size, _kernel_fix, patch=_safe_conv),
    Rule("dilation", TARGETS, "no dilation", "quantization", "fixable", _dilation,
         _dilation_fix, patch=_safe_conv),
    Rule("groups", TARGETS, "groups = 1 or depthwise (groups = in_channels)", "quantization",
         "fixable", _groups, _groups_fix, patch=_safe_conv),
    Rule("stride", TARGETS, "input-layer stride 1 to 3; stride 1 or 2 after it, stride 2 only "
         "with kernel " + ", ".join(f"{'/'.join(map(str, lim['stride2_kernels']))} ({name})"
                                    for name, lim in LIMITS.items()), "mapping", "fixable", _stride,
         _stride_fix),
    Rule("padding-mode", TARGETS, "zero padding (padding_mode='zeros')", "quantization",
         "fixable", _padding_mode, _padding_mode_fix, patch=_safe_conv),
    Rule("same-padding", TARGETS,
         "'same' padding (padding = k // 2); the input layer also takes padding=0",
         "mapping", "fixable", _padding, _padding_fix),
    Rule("input-stride-padding", TARGETS,
         "a stride-3 input layer: padding 0 or TensorFlow 'same' (symmetric on Akida 2.0)",
         "conversion", "fixable", _input_stride_padding, _input_stride_padding_fix,
         patch=_input_stride_stand_in),
    Rule("max-pool", TARGETS, "max pooling 2x2, stride 2, no padding, even-sized maps",
         "conversion", "fixable", _maxpool, _maxpool_fix, patch=_maxpool_stand_in),
    Rule("pool-after-conv", TARGETS, "max pooling only right after a convolution",
         "quantization", "fixable", _pool_after_conv, _pool_after_conv_fix,
         patch=_conv_then_pool),
    Rule("pool-after-stride2", ("akida2",),
         "no max pooling after a stride-2 convolution padded on an even map",
         "conversion", "fixable", _strided_then_pooled, _strided_then_pooled_fix),
    Rule("avg-pool", TARGETS, "average pooling only over the whole map (global); on Akida "
         "1.0 only right before the Linear (it folds into the Dense)",
         "quantization", "fixable", _avgpool, _avgpool_fix),
    Rule("gap-area", ("akida2",), "global average pooling over ≤ 144 positions", "mapping",
         "fixable", _gap_area, _gap_area_fix),
    Rule("pooled-before-dense", ("akida2",),
         "the last convolution before a Dense is unpooled (the Akida 1.0 bridge inserts an "
         "identity convolution)",
         "mapping", "fixable", _pooled_before_dense, _pooled_before_dense_fix),
    Rule("dense-inputs", ("akida2",), "Dense input ≤ 2048 features, from a map of ≤ 256 columns",
         "mapping", "fixable",
         _dense_input, _dense_input_fix),
    Rule("bounded-activation", ("akida1",), "bounded activations (ReLU6 / clamp)",
         "quantization", "fixable", _bounded, _bounded_fix, patch=_relu6),
    Rule("signed-clamp", ("akida2",), "clamps only at 0 (ReLU6, nn.Hardtanh(0, m))",
         "quantization", "fixable", _signed_clamp, _bounded_fix, patch=_relu6),
    Rule("activation-between", ("akida1",),
         "an activation between two weighted layers (but depthwise → 1x1)", "conversion",
         "fixable", _unactivated, _unactivated_fix),
    Rule("activation", TARGETS,
         "ReLU-type activations (Akida 2.0 also others right after a Conv/Linear, unpooled)",
         "quantization", "fixable",
         _other_activation, _other_activation_fix, patch=_relu6),
    Rule("squashing-inside", TARGETS, "Sigmoid/Tanh only as the last op", "quantization",
         "unsupported", _squashing_inside, _squashing_fix, patch=_identity),
    Rule("softmax-inside", TARGETS, "softmax only as the last op", "quantization",
         "unsupported", _softmax_inside, _softmax_inside_fix, patch=_identity),
    Rule("batchnorm", TARGETS, "BatchNorm right after a Conv/Linear (folded)", "quantization",
         "fixable", _batchnorm, _batchnorm_fix, patch=_identity),
    Rule("residual", ("akida1",),
         "no residual additions or concatenations on Akida 1.0 (chain-shaped models)",
         "conversion",
         "unsupported", _residual, _residual_fix, patch=_merge_stand_in),
    Rule("depthwise-separable", ("akida1",),
         "depthwise convolutions only inside separable blocks (depthwise → 1x1)",
         "conversion", "fixable", _depthwise_alone, _depthwise_fix, patch=_depthwise_patch),
)


def rules_for(target: str) -> list[Rule]:
    """The rules that apply to ``target``, in checking order."""
    return [rule for rule in RULES if rule.applies(target)]


def check_graph(graph: ModelGraph, target: str) -> list[Finding]:
    """Every rule violation of the model, in execution order then table order.

    On a graph a pass lowered from 1-D (``graph.origins``), reasons and fixes
    name the 1-D layers the user wrote (``nn.MaxPool1d``, not ``nn.MaxPool2d``).
    """
    findings = []
    for site in graph.sites:
        for rule in rules_for(target):
            reason = rule.check(site, graph, target)
            if reason:
                fix = rule.fix(site, graph, target)
                if _origin_1d(site, graph) is not None:
                    reason, fix = _one_d_terms(reason), _one_d_terms(fix)
                findings.append(Finding(rule, site, reason, fix))
    return findings


def rule_at(site, graph: ModelGraph, target: str) -> Rule | None:
    """The first rule (table order) whose limit ``site`` breaks on ``graph``, if any.

    How a toolchain refusal of an operation is tied to the table: by the
    operation's own geometry, never by the wording of the toolchain's message.
    """
    for rule in rules_for(target):
        if rule.check(site, graph, target):
            return rule
    return None


def limits_table(target: str | None = None):
    """The rule table as a :class:`~akida_workflows.evaluate.Table` (id, targets, limit, stage)."""
    rows = [{"rule": r.id, "targets": ", ".join(r.targets), "limit": r.limit,
             "refused at": r.stage, "status": r.status}
            for r in RULES if target is None or r.applies(target)]
    return Table(rows, title="Akida limits checked by check_compatibility")
