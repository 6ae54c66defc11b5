"""The chain of ops of a PyTorch model, traced with ``torch.fx``.

:func:`_sequence` lists ``(name, module)`` for each op of a chain-shaped model:
``torch.nn`` layers as they are, functional activations, pools, clamps, means
and reshapes as the equivalent modules, and what cannot be mapped named with
the fix.
"""

from __future__ import annotations

import numpy as np

from ...errors import IncompatibleModelError
from ...graph import NodeError, fx_trace, run_recorded
from .layers import _converter_for, _unsupported

#: Shapes are propagated on a batch of two: ``torch.squeeze`` would drop a batch of one.
_BATCH = 2


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
    gm = _trace(model)
    shaped = input_shape is not None
    modules = dict(gm.named_modules())
    if shaped:
        _propagate_shapes(model, gm, modules, input_shape)
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
        _check_chain(node, prev, fname, shaped)
        if node.op == "call_module":
            k = calls[node.target] = calls.get(node.target, 0) + 1
            out.append((node.target if k == 1 else f"{node.target}.call{k}",
                        modules[node.target]))
        else:
            out += _function_modules(node, fname, _shape(prev) if shaped else None, functional)
        prev = node
    return out


def _trace(model):
    """The ``torch.fx`` graph module of ``model``; TorchScript and untraceable models are
    refused with the fix."""
    import torch

    if isinstance(model, torch.jit.ScriptModule):
        raise IncompatibleModelError(
            "a TorchScript model cannot take the Akida 1.0 (Keras) path: to_keras rebuilds the "
            "network from its Python modules, and a TorchScript file holds compiled code "
            "instead. Load the Python model (model class + state_dict) for Akida 1.0, or use "
            "the Akida 2.0 ONNX path (akida_workflows.export), which takes TorchScript.")
    return fx_trace(
        model, error=IncompatibleModelError,
        purpose="to rebuild it in tf-keras (to_keras needs a model without data-dependent "
                "control flow)",
        fix="make forward() traceable by torch.fx: a Python if or loop on a tensor's shape "
            "or values cannot be traced; keep the branch this input shape takes (a deployed "
            "model sees one shape), or write the network as nn.Sequential")


def _propagate_shapes(model, gm, modules, input_shape) -> None:
    """Record each node's shape (``tensor_meta``) and each non-tensor value (``value``, such
    as ``x.size()[3]``) on a batch of two; the first op that fails is named."""
    import torch
    from torch.fx.passes.shape_prop import _extract_tensor_metadata

    def record(n, result):
        if isinstance(result, torch.Tensor):
            n.meta["tensor_meta"] = _extract_tensor_metadata(result)
        else:
            n.meta["value"] = result  # x.size()[3]: read by the ops that use it

    try:
        run_recorded(gm, torch.zeros(_BATCH, *input_shape), record)
    except NodeError as exc:
        node = exc.node
        if node.op == "call_module" and _converter_for(modules[node.target]) is None:
            raise _unsupported(node.target, modules[node.target]) from exc
        where = node.target if node.op == "call_module" else node.name
        raise IncompatibleModelError(
            f"{type(model).__name__} does not run on input shape {tuple(input_shape)} at "
            f"{where}: {str(exc.cause).splitlines()[0]}", nodes=[node.name]) from exc
    except Exception as exc:  # the placeholder or output: no operation to name
        raise IncompatibleModelError(
            f"{type(model).__name__} does not run on input shape {tuple(input_shape)}: "
            f"{str(exc).splitlines()[0]}") from exc


def _check_chain(node, prev, fname, shaped) -> None:
    """Refuse an op that does not read exactly the op before it (branches, several inputs)."""
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


def _function_modules(node, fname, in_shape, functional) -> list:
    """``(name, module)`` entries equivalent to a function or method call ``node``
    (``in_shape`` is None when the model was traced without shapes)."""
    import torch.fx
    from torch import nn

    shaped = in_shape is not None
    if fname in functional:
        module, params = functional[fname]
        args, kwargs = torch.fx.node.map_arg((node.args, node.kwargs),
                                             lambda a: a.meta.get("value", a))
        values = dict(zip(params, args[1:]))
        values.update({k: v for k, v in kwargs.items() if k in params})
        return [(node.name, module(**values))]
    if fname in ("clamp", "clip", "clamp_", "clip_", "clamp_min", "hardtanh"):
        return [(node.name, _clamp_module(node, fname))]
    if fname == "mean" and shaped:
        return [(node.name, m) for m in _mean_module(node, in_shape)]
    if fname in ("flatten", "view", "reshape", "squeeze") and shaped:
        return [(node.name, _reshape_module(node, in_shape, _shape(node), _BATCH))]
    if fname == "flatten":
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        return [(node.name, nn.Flatten(start_dim=start))]
    raise IncompatibleModelError(
        f"{node.name}: {fname} is not supported by to_keras: {_fix_for_function(fname)}",
        nodes=[node.name])
