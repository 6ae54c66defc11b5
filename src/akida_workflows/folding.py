"""Fold BatchNorm layers into neighbouring Conv2d / Linear layers, exactly.

In eval mode a BatchNorm is a per-channel affine map ``y = a * x + b`` with
``a = gamma / sqrt(running_var + eps)`` and ``b = beta - running_mean * a``.
Next to a linear layer it can be absorbed into that layer's weights:

- **backward**, into the Conv2d (any ``groups``, depthwise included) or Linear
  that feeds it: ``W' = a * W`` (per output channel), ``c' = a * c + b``;
- **forward**, into the Linear it feeds (through ``Flatten`` / ``Dropout``):
  ``W' = W * a`` (per input feature, channel-major as ``Flatten`` orders an
  NCHW tensor), ``c' = c + W @ b``;
- **forward** into a Conv2d *without padding*. With zero padding the folded
  convolution would pad with zeros where the original padded ``b`` after the
  BatchNorm, so the borders would differ: such BatchNorms are refused (left in
  place and reported), never folded approximately.

QuantizeML folds only the first case; a BatchNorm after an activation (a
common PyTorch idiom) makes it stop, and CNN2SNN then silently drops the end
of the network (see :mod:`akida_workflows.convert`).
"""

from __future__ import annotations

import copy
import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import FoldingError

__all__ = [
    "FoldingError",
    "FoldingWarning",
    "FoldedBatchNorm",
    "FoldingReport",
    "bn_scale_shift",
    "fold_conv_bn",
    "fold_linear_bn",
    "fold_bn_into_next_linear",
    "fold_bn_into_next_conv",
    "fold_batchnorm",
    "export_folded_weights",
]


class FoldingWarning(UserWarning):
    """Some BatchNorm layers could not be folded (they are listed by module name)."""


_BN_TYPES = None


def _bn_types():
    global _BN_TYPES
    if _BN_TYPES is None:
        from torch import nn

        _BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)
    return _BN_TYPES


# ------------------------------------------------------------------- building blocks


def bn_scale_shift(bn, name: str = "BatchNorm"):
    """Per-channel ``(a, b)`` such that ``bn(x) == a * x + b`` in eval mode.

    Computed in float64 and returned in the BatchNorm's dtype.

    Parameters
    ----------
    bn : torch.nn.BatchNorm1d or torch.nn.BatchNorm2d
    name : str
        Module name used in error messages.

    Raises
    ------
    FoldingError
        Training mode, ``track_running_stats=False``, NaN/inf statistics or
        affine parameters, a negative running variance, or a zero variance
        with ``eps == 0``.
    """
    import torch

    if not isinstance(bn, _bn_types()):
        raise FoldingError(f"{name}: expected BatchNorm1d/2d, got {type(bn).__name__}")
    if bn.training:
        raise FoldingError(
            f"{name}: BatchNorm is in training mode; its output depends on the batch. "
            "Call model.eval() before folding."
        )
    if not bn.track_running_stats or bn.running_mean is None or bn.running_var is None:
        raise FoldingError(
            f"{name}: track_running_stats=False, so the layer has no running statistics "
            "to fold (it normalizes each batch by its own statistics)"
        )
    mean = bn.running_mean.detach().double()
    var = bn.running_var.detach().double()
    tensors = {"running_mean": mean, "running_var": var}
    if bn.affine:
        tensors["weight"] = bn.weight.detach().double()
        tensors["bias"] = bn.bias.detach().double()
    for key, t in tensors.items():
        if not torch.isfinite(t).all():
            raise FoldingError(f"{name}: {key} holds NaN or inf values")
    if (var < 0).any():
        raise FoldingError(f"{name}: running_var has negative entries {var[var < 0][:3].tolist()}")
    if bn.eps <= 0 and (var == 0).any():
        raise FoldingError(f"{name}: running_var is zero with eps={bn.eps}: division by zero")
    gamma = tensors.get("weight", torch.ones_like(mean))
    beta = tensors.get("bias", torch.zeros_like(mean))
    a = gamma / torch.sqrt(var + bn.eps)
    b = beta - mean * a
    dtype = bn.running_mean.dtype
    return a.to(dtype), b.to(dtype)


def _check_channels(name, expected, got):
    if expected != got:
        raise FoldingError(
            f"{name}: BatchNorm has {got} channels but the layer it folds into has {expected}"
        )


def fold_conv_bn(conv, bn, name: str = "BatchNorm"):
    """Weights and bias of ``conv`` followed by ``bn``, as one convolution.

    Parameters
    ----------
    conv : torch.nn.Conv2d
        Any ``groups`` (depthwise included), with or without bias.
    bn : torch.nn.BatchNorm2d
        In eval mode, with running statistics.
    name : str
        Used in error messages.

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        ``(weight, bias)`` for a Conv2d with ``conv``'s other settings.

    Raises
    ------
    FoldingError
        Channel mismatch or invalid BatchNorm (see :func:`bn_scale_shift`).

    Examples
    --------
    >>> import torch
    >>> conv, bn = torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8).eval()
    >>> weight, bias = fold_conv_bn(conv, bn)
    >>> weight.shape, bias.shape
    (torch.Size([8, 3, 3, 3]), torch.Size([8]))
    """
    import torch

    _check_channels(name, conv.out_channels, bn.num_features)
    a, b = bn_scale_shift(bn, name)
    a64, b64 = a.double(), b.double()
    w = conv.weight.detach().double()
    c = conv.bias.detach().double() if conv.bias is not None else torch.zeros_like(a64)
    weight = w * a64.reshape(-1, *([1] * (w.ndim - 1)))
    bias = a64 * c + b64
    return weight.to(conv.weight.dtype), bias.to(conv.weight.dtype)


def fold_linear_bn(linear, bn, name: str = "BatchNorm"):
    """Weights and bias of ``linear`` followed by ``bn`` (BatchNorm1d), as one Linear.

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        ``(weight, bias)`` of shape ``(out, in)`` and ``(out,)``.
    """
    import torch

    _check_channels(name, linear.out_features, bn.num_features)
    a, b = bn_scale_shift(bn, name)
    a64, b64 = a.double(), b.double()
    w = linear.weight.detach().double()
    c = linear.bias.detach().double() if linear.bias is not None else torch.zeros_like(a64)
    return (w * a64[:, None]).to(linear.weight.dtype), (a64 * c + b64).to(linear.weight.dtype)


def fold_bn_into_next_linear(bn, linear, name: str = "BatchNorm"):
    """Weights and bias of ``bn`` → (``Flatten``) → ``linear``, as one Linear.

    For a BatchNorm2d over ``C`` channels, ``linear.in_features`` must be a
    multiple ``C * H * W``; ``Flatten`` orders features channel-major, so
    channel ``k`` covers features ``k*H*W … (k+1)*H*W - 1``.

    Returns
    -------
    (torch.Tensor, torch.Tensor)
    """
    import torch

    a, b = bn_scale_shift(bn, name)
    channels = bn.num_features
    if linear.in_features % channels:
        raise FoldingError(
            f"{name}: {channels} channels do not divide the next Linear's "
            f"{linear.in_features} input features"
        )
    spatial = linear.in_features // channels
    a_rep = a.double().repeat_interleave(spatial)
    b_rep = b.double().repeat_interleave(spatial)
    w = linear.weight.detach().double()
    c = linear.bias.detach().double() if linear.bias is not None else torch.zeros(
        linear.out_features, dtype=torch.float64)
    return (w * a_rep[None, :]).to(linear.weight.dtype), (c + w @ b_rep).to(linear.weight.dtype)


def _padding_is_zero(conv) -> bool:
    padding = conv.padding
    if isinstance(padding, str):
        return padding == "valid"
    return all(p == 0 for p in padding)


def fold_bn_into_next_conv(bn, conv, name: str = "BatchNorm"):
    """Weights and bias of ``bn`` → ``conv`` for a convolution **without padding**.

    Raises
    ------
    FoldingError
        If ``conv`` pads its input: the folded layer would pad with zeros where
        the original padded with the BatchNorm's shift, so the borders would
        differ. Move the BatchNorm before the activation, or after the conv.
    """
    import torch

    if not _padding_is_zero(conv):
        raise FoldingError(
            f"{name}: cannot fold forward into a Conv2d with padding={conv.padding}: the "
            "convolution pads with zeros after the BatchNorm, which the folded layer cannot "
            "reproduce at the borders. Put the BatchNorm before the activation "
            "(Conv → BN → ReLU) or use padding=0."
        )
    _check_channels(name, conv.in_channels, bn.num_features)
    a, b = bn_scale_shift(bn, name)
    a64, b64 = a.double(), b.double()
    w = conv.weight.detach().double()  # (out, in/groups, kh, kw)
    groups = conv.groups
    per_group_in = conv.in_channels // groups
    per_group_out = conv.out_channels // groups
    group_of_out = torch.arange(conv.out_channels) // per_group_out
    in_index = group_of_out[:, None] * per_group_in + torch.arange(per_group_in)[None, :]
    a_in = a64[in_index]  # (out, in/groups)
    b_in = b64[in_index]
    weight = w * a_in[:, :, None, None]
    c = conv.bias.detach().double() if conv.bias is not None else torch.zeros(
        conv.out_channels, dtype=torch.float64)
    bias = c + (w * b_in[:, :, None, None]).sum(dim=(1, 2, 3))
    return weight.to(conv.weight.dtype), bias.to(conv.weight.dtype)


# ------------------------------------------------------------------------ whole models


@dataclass
class FoldedBatchNorm:
    """One BatchNorm handled by :func:`fold_batchnorm`."""

    name: str
    into: str | None
    direction: str  # "backward", "forward" or "not folded"
    reason: str = ""


@dataclass
class FoldingReport:
    """What :func:`fold_batchnorm` did with each BatchNorm of the model."""

    folded: list[FoldedBatchNorm] = field(default_factory=list)
    unfolded: list[FoldedBatchNorm] = field(default_factory=list)
    max_abs_diff: float | None = None

    def __str__(self) -> str:
        lines = [f"{len(self.folded)} BatchNorm folded, {len(self.unfolded)} left"]
        for f in self.folded:
            lines.append(f"  {f.name}: folded {f.direction} into {f.into}")
        for f in self.unfolded:
            lines.append(f"  {f.name}: NOT folded: {f.reason}")
        return "\n".join(lines)

    __repr__ = __str__


_PASS_THROUGH_FUNCS = {"flatten", "dropout"}


def _is_pass_through(node, modules) -> bool:
    """Nodes between a BatchNorm and the Linear it folds into that change nothing."""
    from torch import nn

    if node.op == "call_module":
        mod = modules[node.target]
        if isinstance(mod, nn.Flatten):
            return mod.start_dim == 1 and mod.end_dim == -1
        return isinstance(mod, (nn.Dropout, nn.Identity))
    if node.op == "call_function":
        name = getattr(node.target, "__name__", "")
        if name == "flatten":
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            return start == 1
        return name in _PASS_THROUGH_FUNCS and not node.kwargs.get("training", False)
    if node.op == "call_method":
        if node.target == "flatten":
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            return start == 1
    return False


def _is_flatten(node, modules) -> bool:
    from torch import nn

    if node.op == "call_module":
        return isinstance(modules[node.target], nn.Flatten)
    name = node.target if node.op == "call_method" else getattr(node.target, "__name__", "")
    return name == "flatten"


def _single_user(node):
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def _replace_params(module, weight, bias):
    import torch

    module.weight = torch.nn.Parameter(weight.detach().clone())
    module.bias = torch.nn.Parameter(bias.detach().clone())


def _to_sequential_if_chain(gm, original):
    """Rebuild an nn.Sequential when the folded graph is still a chain of modules."""
    from torch import nn

    nodes = [n for n in gm.graph.nodes if n.op not in ("placeholder", "output")]
    if not all(n.op == "call_module" for n in nodes):
        return None
    prev = next(n for n in gm.graph.nodes if n.op == "placeholder")
    for n in nodes:
        if list(n.args) != [prev] or n.kwargs:
            return None
        prev = n
    modules = dict(gm.named_modules())
    seq = nn.Sequential()
    for n in nodes:
        seq.add_module(n.target.replace(".", "_"), modules[n.target])
    return seq


def _trace(model, *, error=FoldingError, purpose: str = "to find its BatchNorms",
           fix: str = "Make forward() traceable by torch.fx (no Python if or loop on a "
                      "tensor's shape or values: keep the branch this input shape takes), or "
                      "fold per layer with fold_conv_bn / fold_linear_bn."):
    """:func:`akida_workflows.graph.fx_trace`; an untraceable model is ``error`` with ``fix``
    (also as the error's ``fix`` attribute, for reports)."""
    from .graph import fx_trace

    return fx_trace(model, error=error, purpose=purpose, fix=fix)


def fold_batchnorm(model, *, strict: bool = False, example_input=None, rtol: float = 1e-5):
    """A copy of ``model`` in eval mode with every foldable BatchNorm folded away.

    Parameters
    ----------
    model : torch.nn.Module
        ``nn.Sequential`` or any module torch.fx can trace (or, without BatchNorm,
        any module: there is nothing to fold). It is not modified.
    strict : bool, default False
        Raise :class:`FoldingError` if any BatchNorm cannot be folded, instead
        of leaving it in place with a :class:`FoldingWarning`.
    example_input : torch.Tensor, optional
        A batch the model accepts. When given, the folded model is run on it
        and must match the original within ``rtol`` (relative to the largest
        output), else :class:`FoldingError` is raised.
    rtol : float, default 1e-5
        Tolerance of that check.

    Returns
    -------
    torch.nn.Module
        An ``nn.Sequential`` when the input was one and the result is still a
        chain; a copy of the model itself when it has no BatchNorm and torch.fx
        cannot trace it; otherwise a ``torch.fx.GraphModule``. Its ``folding_report``
        attribute (a :class:`FoldingReport`) lists what was folded where, and
        what was not and why.

    Raises
    ------
    FoldingError
        A BatchNorm in training mode, without running statistics, with invalid
        statistics, or mismatched with its neighbour (named in the message); an
        untraceable model with BatchNorms; or, with ``strict``, any BatchNorm left.

    Examples
    --------
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.BatchNorm2d(4),
    ...                       nn.Flatten(), nn.Linear(4 * 26 * 26, 10)).eval()
    >>> folded = fold_batchnorm(model)
    >>> [type(m).__name__ for m in folded]
    ['Conv2d', 'ReLU', 'Flatten', 'Linear']
    """
    import torch

    _check_eval_module(model)
    work = copy.deepcopy(model).eval()
    reference = None
    if example_input is not None:
        with torch.no_grad():
            reference = work(example_input)
    try:
        gm = _trace(work)
    except FoldingError:
        if any(isinstance(m, _bn_types()) for m in work.modules()):
            raise
        work.folding_report = FoldingReport()  # no BatchNorm: nothing to fold, no trace needed
        return work
    report = _fold_graph(gm)
    result = _rebuild(gm, model, report)
    _report_unfolded(report, strict)
    _check_folded(result, example_input, reference, rtol)
    return result


def _check_eval_module(model) -> None:
    """Refuse what is not an ``nn.Module`` and BatchNorms in training mode."""
    from torch import nn

    if not isinstance(model, nn.Module):
        raise FoldingError(f"expected a torch.nn.Module, got {type(model).__name__}")
    for name, mod in model.named_modules():
        if isinstance(mod, _bn_types()) and mod.training:
            raise FoldingError(
                f"{name}: BatchNorm is in training mode; call model.eval() before folding"
            )


def _fold_graph(gm) -> FoldingReport:
    """Fold every BatchNorm node of ``gm`` that can be; report each one."""
    modules = dict(gm.named_modules())
    report = FoldingReport()
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(modules.get(node.target), _bn_types()):
            continue
        reason = _fold_node(gm, modules, node, report)
        if reason is not None:
            report.unfolded.append(FoldedBatchNorm(node.target, None, "not folded", reason))
    return report


def _absorb(gm, report, bn_node, into, layer, weight, bias, direction):
    """Give ``layer`` the folded parameters and remove the BatchNorm node."""
    _replace_params(layer, weight, bias)
    bn_node.replace_all_uses_with(bn_node.args[0])
    gm.graph.erase_node(bn_node)
    report.folded.append(FoldedBatchNorm(bn_node.target, into, direction))


def _fold_node(gm, modules, node, report) -> str | None:
    """Fold the BatchNorm ``node`` backward, else forward; None when folded, else why not."""
    from torch import nn

    bn = modules[node.target]
    name = node.target
    producer = node.args[0] if node.args else None
    producer_mod = (
        modules.get(producer.target)
        if producer is not None and producer.op == "call_module" else None
    )
    # 1. Backward: Conv2d/Linear -> BN, the layer feeding only this BN.
    conv_types = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
    if isinstance(producer_mod, (*conv_types, nn.Linear)) and _single_user(producer) is node:
        fold = fold_conv_bn if isinstance(producer_mod, conv_types) else fold_linear_bn
        _absorb(gm, report, node, producer.target, producer_mod,
                *fold(producer_mod, bn, name), "backward")
        return None
    # 2. Forward: BN -> (Flatten/Dropout)* -> Linear, or BN -> Conv2d without padding.
    bn_scale_shift(bn, name)  # validate before looking further
    return _fold_forward(gm, modules, node, bn, report)


def _fold_forward(gm, modules, node, bn, report) -> str | None:
    """Fold ``bn`` into the Linear or unpadded Conv2d it feeds; None when folded, else why not."""
    from torch import nn

    name = node.target
    chain, nxt = [], _single_user(node)
    while nxt is not None and _is_pass_through(nxt, modules):
        chain.append(nxt)
        nxt = _single_user(nxt)
    consumer_mod = modules.get(nxt.target) if nxt is not None and nxt.op == "call_module" else None
    reason = ""
    flattened = any(_is_flatten(n, modules) for n in chain)
    # A Linear acts on the last axis: it sees the BatchNorm's channels only
    # after a Flatten, or directly when a BatchNorm1d sees (N, C) inputs.
    linear_ok = isinstance(consumer_mod, nn.Linear) and (
        flattened
        or (isinstance(bn, nn.BatchNorm1d) and consumer_mod.in_features == bn.num_features)
    )
    if linear_ok:
        _absorb(gm, report, node, nxt.target, consumer_mod,
                *fold_bn_into_next_linear(bn, consumer_mod, name), "forward")
        return None
    if isinstance(consumer_mod, nn.Conv2d) and not chain:
        try:
            weight, bias = fold_bn_into_next_conv(bn, consumer_mod, name)
        except FoldingError as exc:
            reason = str(exc).split(": ", 1)[1]
        else:
            _absorb(gm, report, node, nxt.target, consumer_mod, weight, bias, "forward")
            return None
    return reason or _unfoldable_reason(nxt, consumer_mod)


def _unfoldable_reason(nxt, consumer_mod) -> str:
    """Why no layer can absorb a BatchNorm followed by ``nxt`` (its module ``consumer_mod``)."""
    from torch import nn

    if isinstance(consumer_mod, nn.Linear):
        return (
            "the next Linear does not act on the BatchNorm's channels "
            "(put a Flatten between them)"
        )
    if nxt is None:
        return "its output feeds several layers"
    if nxt.op == "output":
        return (
            "its output is the model's output and a non-linear layer precedes it; "
            "no layer can absorb it"
        )
    what = consumer_mod.__class__.__name__ if consumer_mod is not None else str(nxt.target)
    return (
        f"it sits between a non-linear layer and {what}; only a Conv2d/Linear "
        "just before it, or a Linear (through Flatten) or unpadded Conv2d just "
        "after it, can absorb it"
    )


def _rebuild(gm, model, report: FoldingReport):
    """The folded module in eval mode, carrying ``report`` as ``folding_report``."""
    from torch import nn

    gm.graph.lint()
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    result = gm
    if isinstance(model, nn.Sequential):
        result = _to_sequential_if_chain(gm, model) or gm
    result.eval()
    result.folding_report = report
    return result


def _report_unfolded(report: FoldingReport, strict: bool) -> None:
    """Raise (``strict``) or warn, at :func:`fold_batchnorm`'s caller, about BatchNorms left."""
    if report.unfolded:
        message = "; ".join(f"{u.name}: {u.reason}" for u in report.unfolded)
        if strict:
            raise FoldingError(f"{len(report.unfolded)} BatchNorm(s) not foldable: {message}")
        warnings.warn(f"BatchNorm(s) left unfolded: {message}", FoldingWarning, stacklevel=3)


def _check_folded(result, example_input, reference, rtol: float) -> None:
    """Finite parameters, and the example input's output as before within ``rtol``."""
    import torch

    with torch.no_grad():
        for pname, p in result.named_parameters():
            if not torch.isfinite(p).all():
                raise FoldingError(f"folding produced non-finite values in {pname}")
        if reference is not None:
            got = result(example_input)
            scale = float(reference.abs().max().clamp(min=1e-12))
            diff = float((got - reference).abs().max())
            result.folding_report.max_abs_diff = diff
            if diff > rtol * max(scale, 1.0):
                raise FoldingError(
                    f"the folded model differs from the original by {diff:.3g} on the example "
                    f"input (largest output {scale:.3g}); please report this model"
                )


def _safe_name(name: str) -> str:
    return re.sub(r"[^\w.\-]", "_", name)


def export_folded_weights(model, directory: str | os.PathLike) -> Path:
    """Write every weight and bias of ``model`` as ``.npy`` plus a JSON manifest.

    For toolchains outside Python (the int4 path, firmware). Parameters are
    written in their PyTorch layout (Conv2d ``(out, in/groups, kh, kw)``,
    Linear ``(out, in)``).

    Parameters
    ----------
    model : torch.nn.Module
        Usually the output of :func:`fold_batchnorm`.
    directory : str or path-like
        Created if missing.

    Returns
    -------
    pathlib.Path
        The manifest, ``directory / "manifest.json"``: a list of layers with
        ``name``, ``type`` and, per tensor, ``file``, ``shape`` and ``dtype``.

    Raises
    ------
    FoldingError
        If the model still contains a BatchNorm (fold it first) or a parameter
        is not finite.
    """
    import torch

    directory = Path(directory)
    leftover = [n for n, m in model.named_modules() if isinstance(m, _bn_types())]
    if leftover:
        raise FoldingError(f"the model still has BatchNorm layers {leftover}: fold them first")
    directory.mkdir(parents=True, exist_ok=True)
    layers = []
    for name, module in model.named_modules():
        tensors = {
            key: value for key, value in module.named_parameters(recurse=False)
        }
        if not tensors:
            continue
        entry = {"name": name, "type": type(module).__name__, "tensors": {}}
        for key, value in tensors.items():
            array = value.detach().cpu().numpy()
            if not np.isfinite(array).all():
                raise FoldingError(f"{name}.{key} holds NaN or inf")
            file = f"{_safe_name(name)}.{key}.npy"
            np.save(directory / file, array)
            entry["tensors"][key] = {
                "file": file, "shape": list(array.shape), "dtype": str(array.dtype),
            }
        layers.append(entry)
    manifest = directory / "manifest.json"
    manifest.write_text(json.dumps({"format": "akida-workflows/folded-weights/1",
                                    "torch": torch.__version__, "layers": layers}, indent=2))
    return manifest

