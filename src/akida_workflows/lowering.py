"""Lower 1-D signal models (``Conv1d`` …) to the exactly equivalent 2-D form Akida maps.

Akida has no 1-D layers and only square kernels; QuantizeML's ONNX path
refuses ``Conv1d`` and CNN2SNN refuses ``(1, k)`` kernels. A 1-D network has an
*exactly* equivalent 2-D form that both Akida targets take:

- the signal ``(C, L)`` is copied into ``H`` identical rows: ``(C, H, L)``
  (:func:`lift_1d`; ``H >= 5``, ``H >= k`` for Akida 1.0's input layer, and
  enough rows that every pooling window still fits after the poolings before it);
- each ``Conv1d`` with kernel ``k`` becomes a square ``k x k`` ``Conv2d`` whose
  rows other than the middle one are zero, with padding ``k // 2`` in both
  directions, so every row computes the original convolution (a dilated kernel
  is expanded to ``d (k - 1) + 1`` taps with zeros, also exact);
- pooling becomes square pooling in "same"/ceil mode (the rows being
  identical, pooling across them changes nothing);
- ``BatchNorm1d`` is folded first (:func:`akida_workflows.folding.fold_batchnorm`);
- the ``Flatten → Linear`` head gets a permuted, zero-padded weight matrix that
  reads one row of each channel, so its result equals the original's.

:func:`lower_1d` is a graph pass (``torch.fx``): it works on ``nn.Sequential``
models and on custom ``forward`` methods (``x.view(x.size(0), -1)``,
``torch.flatten``, ``F.relu``, ``F.max_pool1d``, ``x.mean(-1)`` …). Every
rewritten node is compared with the original on random inputs as it is built,
and the whole lowered model again at the end; the report lists each rewrite and
the largest difference measured. What cannot be made exact, or what a target's
hardware cannot take, is refused with the limit and the fix.

>>> lowered = lower_1d(ecg_model, (1, 140))                      # doctest: +SKIP
>>> lowered.max_abs_diff < 1e-5                                  # doctest: +SKIP
True
>>> x2d = lift_1d(signals, lowered.rows)  # (N, 1, 140) -> (N, 1, 5, 140)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import folding
from .errors import FoldingError, IncompatibleModelError
from .tables import Table
from .validation import check_finite_parameters

__all__ = [
    "HARDWARE_LIMITS",
    "HardwareLimits",
    "Rewrite",
    "LoweringReport",
    "LoweredModel",
    "is_1d",
    "lift_1d",
    "lower_1d",
    "check_limits",
    "prepare",
    "prepare_samples",
]

#: Default number of identical rows the signal is copied into.
DEFAULT_ROWS = 5
#: Most rows :func:`lower_1d` tries before refusing.
_MAX_ROWS = 256


# --------------------------------------------------------------------- hardware limits


@dataclass(frozen=True)
class HardwareLimits:
    """What one Akida target takes from a lowered 1-D model (measured, see issue 11).

    Attributes
    ----------
    target : str
        ``"akida2"`` or ``"akida1"``.
    max_width : int
        Largest input signal length.
    min_rows : int
        Fewest identical rows the input needs.
    input_channels : tuple of int or None
        Channel counts the input layer takes (``None``: any).
    input_kernels, kernels : tuple of int
        Square kernel sizes of the input layer and of later convolutions.
    max_dense_inputs : int
        Largest input of a Dense (Linear) layer.
    max_pool_area : int or None
        Largest global-average-pooling area (rows x length).
    rows_cover_input_kernel : bool
        The input needs at least as many rows as its kernel.
    """

    target: str
    max_width: int
    min_rows: int
    input_channels: tuple[int, ...] | None
    input_kernels: tuple[int, ...]
    kernels: tuple[int, ...]
    max_dense_inputs: int
    max_pool_area: int | None
    rows_cover_input_kernel: bool


#: Measured with quantizeml 1.2.5, cnn2snn/akida 2.19.3 (SixNodesIPv2, AKD1000).
HARDWARE_LIMITS = {
    "akida2": HardwareLimits("akida2", 384, 5, (1, 3), (3, 4, 5, 7), (1, 3, 5, 7), 2048, 144,
                             False),
    "akida1": HardwareLimits("akida1", 256, 5, None, (3, 5, 7), (3, 5, 7), 2048, None, True),
}


# ----------------------------------------------------------------------------- report


@dataclass
class Rewrite:
    """One node of the 1-D model and what it became.

    Attributes
    ----------
    node : str
        Module name (or fx node name for functions) in the original model.
    kind : str
        Its type (``"Conv1d"``, ``"max_pool1d"`` …).
    into : str
        The 2-D form it was rewritten into.
    shape : tuple of int
        Its output in the lowered model (``(C, H, L)`` or ``(features,)``).
    note : str
        Anything the reader should know (dilation expanded, padded columns).
    """

    node: str
    kind: str
    into: str
    shape: tuple[int, ...] = ()
    note: str = ""


@dataclass
class LoweringReport:
    """What :func:`lower_1d` did: passes run, nodes rewritten, difference measured.

    Attributes
    ----------
    input_shape : tuple of int
        ``(C, L)`` of the original model.
    rows : int
        Identical rows of the lowered input.
    passes : list of str
        The passes that changed the model, in the order they ran.
    rewrites : list of Rewrite
    folded : list of str
        BatchNorm layers folded away (``"bn -> conv"``).
    max_abs_diff : float
        Largest ``|original - lowered|`` over the checked inputs.
    checked : int
        Number of inputs the final check ran on.
    """

    input_shape: tuple[int, ...]
    rows: int
    passes: list[str] = field(default_factory=list)
    rewrites: list[Rewrite] = field(default_factory=list)
    folded: list[str] = field(default_factory=list)
    max_abs_diff: float = float("nan")
    checked: int = 0

    def records(self) -> list[dict[str, str]]:
        return [{"node": r.node, "was": r.kind, "now": r.into,
                 "output": "x".join(map(str, r.shape)), "note": r.note} for r in self.rewrites]

    def summary_line(self) -> str:
        c, length = self.input_shape
        return (f"1-D model ({c}x{length}) lowered to 2-D ({c}x{self.rows}x{length}): "
                f"{len(self.rewrites)} node(s) rewritten, {len(self.folded)} BatchNorm folded; "
                f"max |difference| {self.max_abs_diff:.2g} on {self.checked} inputs")

    def __str__(self) -> str:
        return self.summary_line() + "\n" + str(Table(self.records()))

    __repr__ = __str__

    def _repr_html_(self) -> str:
        import html

        return f"<p>{html.escape(self.summary_line())}</p>" + Table(self.records())._repr_html_()


@dataclass
class LoweredModel:
    """Result of :func:`lower_1d`: the 2-D model and how it relates to the original.

    Attributes
    ----------
    model : torch.nn.Module
        The lowered 2-D model, in eval mode (an ``nn.Sequential`` when the
        original was a chain, else a ``torch.fx.GraphModule``). It takes
        ``(N, C, rows, L)`` inputs; export, quantize and convert it as any 2-D
        model.
    input_shape : tuple of int
        ``(C, L)``: what the original model takes (without batch).
    rows : int
    report : LoweringReport
    """

    model: object
    input_shape: tuple[int, int]
    rows: int
    report: LoweringReport

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, rows, L)``: the lowered model's input shape without batch."""
        c, length = self.input_shape
        return (c, self.rows, length)

    @property
    def max_abs_diff(self) -> float:
        """Largest difference from the original measured by :func:`lower_1d`."""
        return self.report.max_abs_diff

    def lift(self, x, layout: str = "nchw"):
        """``(N, C, L)`` signals as this model's input; see :func:`lift_1d`."""
        return lift_1d(x, self.rows, layout=layout)

    def __call__(self, x):
        """Run the lowered model on ``(N, C, L)`` signals (torch tensor in, tensor out)."""
        import torch

        x = torch.as_tensor(x)
        if x.ndim == 3:
            x = lift_1d(x, self.rows)
        with torch.no_grad():
            return self.model(x)

    def __str__(self) -> str:
        return str(self.report)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return self.report._repr_html_()


# ------------------------------------------------------------------------------ lifting


def lift_1d(x, rows: int = DEFAULT_ROWS, *, layout: str = "nchw"):
    """Copy ``(N, C, L)`` signals into ``rows`` identical rows.

    Parameters
    ----------
    x : numpy.ndarray or torch.Tensor
        ``(N, C, L)`` signals, or ``(N, L)`` for one channel.
    rows : int, default 5
        The lowered model's ``rows`` (:attr:`LoweredModel.rows`).
    layout : {"nchw", "nhwc"}, default "nchw"
        ``"nchw"`` gives ``(N, C, rows, L)`` (PyTorch, ONNX, Akida 2.0);
        ``"nhwc"`` gives ``(N, rows, L, C)`` (tf-keras, Akida 1.0).

    Returns
    -------
    numpy.ndarray or torch.Tensor
        Same type as ``x``; a contiguous copy (float32 for numpy input).

    Raises
    ------
    IncompatibleModelError
        ``x`` is not 2-D/3-D, or ``rows`` / ``layout`` is invalid.

    Examples
    --------
    >>> lift_1d(np.zeros((8, 1, 140), np.float32)).shape
    (8, 1, 5, 140)
    >>> lift_1d(np.zeros((8, 1, 140), np.float32), 5, layout="nhwc").shape
    (8, 5, 140, 1)
    """
    if layout not in ("nchw", "nhwc"):
        raise IncompatibleModelError(f"layout must be 'nchw' or 'nhwc', got {layout!r}")
    if int(rows) < 1:
        raise IncompatibleModelError(f"rows must be >= 1, got {rows}")
    rows = int(rows)
    if isinstance(x, np.ndarray) or not hasattr(x, "unsqueeze"):
        x = np.asarray(x)
        if x.ndim == 2:
            x = x[:, None]
        if x.ndim != 3:
            raise IncompatibleModelError(
                f"expected (N, C, L) signals (or (N, L) for one channel), got shape {x.shape}")
        x = np.ascontiguousarray(x, dtype=np.float32 if x.dtype.kind != "f" else None)
        out = np.repeat(x[:, :, None, :], rows, axis=2)
        if layout == "nhwc":
            out = np.transpose(out, (0, 2, 3, 1))
        return np.ascontiguousarray(out, dtype=np.float32)
    if x.ndim == 2:
        x = x[:, None]
    if x.ndim != 3:
        raise IncompatibleModelError(
            f"expected (N, C, L) signals (or (N, L) for one channel), got shape {tuple(x.shape)}")
    out = x.unsqueeze(2).expand(-1, -1, rows, -1)
    if layout == "nhwc":
        out = out.permute(0, 2, 3, 1)
    return out.contiguous()


# -------------------------------------------------------------------- value bookkeeping


@dataclass
class _Signal:
    """A lowered ``(N, C, H, L')`` tensor standing for an original ``(N, C, L)`` one.

    ``valid`` columns from the left hold the original values; columns after it
    (created by 'same' pooling of an odd length) hold values the original does
    not have.
    """

    valid: int

    def tail(self, value) -> int:
        return int(value.shape[-1]) - self.valid


@dataclass
class _Flat:
    """A lowered ``(N, F')`` tensor standing for an original ``(N, F)`` one.

    ``index[j]`` is the original feature lowered feature ``j`` carries, or -1
    for features the next Linear must ignore (other rows, padded columns).
    """

    index: np.ndarray


class _Context:
    def __init__(self, gm, report: LoweringReport, tolerance: float):
        self.gm = gm
        self.report = report
        self.tolerance = tolerance
        self.modules = dict(gm.named_modules())
        self.original = dict(self.modules)  # a module called twice is lowered once per call
        self.lowered: set = set()

    def set_module(self, target: str, module) -> None:
        parent, _, child = target.rpartition(".")
        setattr(self.gm.get_submodule(parent) if parent else self.gm, child, module)
        self.modules[target] = module

    def add_module(self, base: str, module) -> str:
        name, i = base, 0
        while name in self.modules:
            i += 1
            name = f"{base}_{i}"
        self.gm.add_submodule(name, module)
        self.modules[name] = module
        return name


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
    # tracked (see _Signal) and refused where a later layer would read it.
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


# ------------------------------------------------------------------------- the passes


def is_1d(model) -> bool:
    """True when ``model`` has 1-D convolution or pooling layers (``Conv1d``, ``MaxPool1d`` …).

    Parameters
    ----------
    model : torch.nn.Module
    """
    names = {"Conv1d", "MaxPool1d", "AvgPool1d", "AdaptiveAvgPool1d", "AdaptiveMaxPool1d"}
    # TorchScript modules keep the Python class name as ``original_name``.
    return any(type(m).__name__ in names or getattr(m, "original_name", None) in names
               for m in model.modules())


def _trace(model):
    return folding._trace(
        model, error=IncompatibleModelError, purpose="to lower it to 2-D",
        fix="Make forward() traceable (no data-dependent control flow) or write the model "
            "as an nn.Sequential.")


def _fold(model, report: LoweringReport):
    """Pass 1: fold BatchNorm1d into its Conv1d / Linear neighbours."""
    from torch import nn

    from .folding import fold_batchnorm

    if not any(isinstance(m, nn.BatchNorm1d) for m in model.modules()):
        return copy.deepcopy(model).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # left BatchNorms are lowered and reported
        folded = fold_batchnorm(model)
    report.folded = [f"{f.name} -> {f.into}" for f in folded.folding_report.folded]
    if report.folded:
        report.passes.append("fold_batchnorm")
    return folded


def _lift(gm, shape, rows, report: LoweringReport, tolerance: float, seed: int):
    """Pass 2: rewrite every node that sees the signal into its 2-D form.

    Runs the original and the rewritten node side by side on a random batch and
    checks each rewritten signal node against the original as it goes.
    """
    import torch
    import torch.fx
    from torch import nn

    ctx = _Context(gm, report, tolerance)
    generator = torch.Generator().manual_seed(seed)
    x1 = torch.randn(3, *shape, generator=generator)
    old_env: dict = {}
    new_env: dict = {}
    info: dict = {}
    graph = gm.graph

    def old(a):
        return torch.fx.node.map_arg(a, lambda n: old_env[n])

    def new(a):
        return torch.fx.node.map_arg(a, lambda n: new_env[n])

    def signal_inputs(node):
        return [a for a in node.all_input_nodes if isinstance(info.get(a), _Signal)]

    def flat_inputs(node):
        return [a for a in node.all_input_nodes if isinstance(info.get(a), _Flat)]

    def record(node, kind, into, note=""):
        value = new_env[node]
        shape_ = tuple(int(s) for s in value.shape[1:]) if hasattr(value, "shape") else ()
        report.rewrites.append(Rewrite(node.target if node.op == "call_module" else node.name,
                                       kind, into, shape_, note))

    def check(node, label):
        o, n = old_env[node], new_env[node]
        sig = info[node]
        if not isinstance(sig, _Signal):
            return
        if n.ndim != 4 or n.shape[:2] != o.shape[:2] or sig.valid != o.shape[-1]:
            raise IncompatibleModelError(
                f"{label}: the lowered output {tuple(n.shape)} does not match the original "
                f"{tuple(o.shape)}; please report this model", nodes=[label])
        diff = float((n[..., : sig.valid] - o[:, :, None, :]).abs().max())
        scale = max(1.0, float(o.abs().max()))
        if diff > tolerance * scale:
            raise IncompatibleModelError(
                f"{label}: the 2-D rewrite differs from the original by {diff:.3g}; "
                "please report this model", nodes=[label])

    def flatten_value(node, src, label, kind):
        """Make ``node`` (a flattening op on a signal) an ``nn.Flatten``; record the feature order."""
        sig, value = info[src], new_env[src]
        c, h, width = (int(v) for v in value.shape[1:])
        index = -np.ones((c, h, width), dtype=np.int64)
        mid = h // 2
        original = np.arange(c * sig.valid).reshape(c, sig.valid)
        index[:, mid, : sig.valid] = original
        if node.op == "call_module":  # an nn.Flatten flattens (C, H, L) as it is
            flat, target = node, node.target
        else:
            target = ctx.add_module(f"{node.name}_flatten", nn.Flatten())
            with graph.inserting_after(node):
                flat = graph.call_module(target, (src,))
            node.replace_all_uses_with(flat)
        old_env[flat] = old_env[node]
        new_env[flat] = torch.flatten(value, 1)
        info[flat] = _Flat(index.ravel())
        note = f"{c}x{h}x{width} -> {c * h * width} features"
        if sig.tail(value):
            note += f"; {sig.tail(value)} padded column(s) get zero weights"
        report.rewrites.append(Rewrite(label, kind, "Flatten", (c * h * width,), note))
        return flat

    for node in list(graph.nodes):
        if node.op == "placeholder":
            if old_env:
                raise IncompatibleModelError("models with several inputs cannot be lowered")
            old_env[node] = x1
            new_env[node] = lift_1d(x1, rows)
            info[node] = _Signal(shape[-1])
            continue
        if node.op == "output":
            continue
        if node.op == "get_attr":
            old_env[node] = new_env[node] = getattr(gm, node.target) if "." not in node.target \
                else gm.get_parameter(node.target)
            continue
        sig_in, flat_in = signal_inputs(node), flat_inputs(node)
        if node.op == "call_module":
            m = ctx.original.get(node.target, ctx.modules[node.target])
            kind = type(m).__name__
            old_env[node] = m(*old(node.args), **old(node.kwargs))
            if sig_in:
                src = sig_in[0]
                sig, value = info[src], new_env[src]
                converter = _converter_for(m)
                if isinstance(m, nn.Flatten):
                    if m.start_dim != 1 or m.end_dim != -1:
                        raise _refuse(node.target, kind, f"Flatten(start_dim={m.start_dim}, "
                                      f"end_dim={m.end_dim})", "use nn.Flatten() (start_dim=1)")
                    flatten_value(node, src, node.target, kind)
                    continue
                if converter is not None:
                    if sig.tail(value) and not isinstance(m, nn.Dropout1d):
                        raise _refuse(
                            node.target, kind,
                            f"it follows a pooling of an odd length: Akida pools 'same' and "
                            f"keeps {sig.tail(value)} extra column(s) the original drops, "
                            "which this layer would read",
                            "use ceil_mode=True in the pooling layers and retrain, or a signal "
                            "length that every pooling divides (window or resample it)")
                    lowered, into, note = converter(m, node.target, value, ctx)
                    if node.target in ctx.lowered:  # second call: its own lowered copy
                        node.target = ctx.add_module(node.target.replace(".", "_"), lowered)
                    else:
                        ctx.set_module(node.target, lowered)
                        ctx.lowered.add(node.target)
                    new_env[node] = lowered(new_env[src])
                    valid = int(old_env[node].shape[-1])
                    info[node] = _Signal(valid)
                    if isinstance(lowered, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
                        info[node] = _Signal(1)
                    record(node, kind, into, note)
                    check(node, node.target)
                    continue
                if kind in _ELEMENTWISE_MODULES:
                    new_env[node] = m(*new(node.args), **new(node.kwargs))
                    info[node] = _Signal(sig.valid)
                    check(node, node.target)
                    continue
                if isinstance(m, nn.Linear):
                    raise _refuse(node.target, kind, "a Linear applied along the time axis has "
                                  "no Akida form", "flatten (nn.Flatten()) before the Linear, "
                                  "or use a Conv1d with kernel 1 to mix channels")
                raise _refuse(node.target, kind, "no 2-D equivalent is known for this layer",
                              "use Conv1d, MaxPool1d, AvgPool1d, AdaptiveAvgPool1d(1), "
                              "BatchNorm1d, ReLU/ReLU6, Flatten and Linear")
            if flat_in and isinstance(m, nn.Linear):
                index = info[flat_in[0]].index
                if m.in_features != int(np.max(index)) + 1:
                    raise _refuse(node.target, kind, f"expects {m.in_features} features, the "
                                  f"flattened signal has {int(np.max(index)) + 1}",
                                  "check the model's input length")
                linear = nn.Linear(len(index), m.out_features, bias=m.bias is not None)
                with torch.no_grad():
                    weight = torch.zeros(m.out_features, len(index), dtype=m.weight.dtype)
                    keep = torch.from_numpy(np.flatnonzero(index >= 0))
                    weight[:, keep] = m.weight.detach()[:, torch.from_numpy(index[index >= 0])]
                    linear.weight.copy_(weight)
                    if m.bias is not None:
                        linear.bias.copy_(m.bias.detach())
                ctx.set_module(node.target, linear.eval())
                new_env[node] = linear(new_env[flat_in[0]])
                info[node] = None
                record(node, kind, f"Linear {len(index)} -> {m.out_features}",
                       f"weights permuted to the lowered (C, H, L) order; "
                       f"{int(np.sum(index < 0))} input(s) get zero weights")
                continue
            if flat_in and (kind in _ELEMENTWISE_MODULES or isinstance(m, nn.BatchNorm1d)):
                if isinstance(m, nn.BatchNorm1d):
                    raise _refuse(node.target, kind, "a BatchNorm on flattened features that "
                                  "could not be folded", "put a Linear right after it (it folds)")
                new_env[node] = m(*new(node.args), **new(node.kwargs))
                info[node] = info[flat_in[0]]
                continue
            if flat_in:
                raise _refuse(node.target, kind, "only element-wise layers may sit between the "
                              "Flatten and the Linear", "move it after the Linear")
            new_env[node] = m(*new(node.args), **new(node.kwargs))
            info[node] = None
            continue

        # call_function / call_method
        name = _fn_name(node)
        old_env[node] = _run(node, old)
        if not sig_in and not flat_in:
            new_env[node] = _run(node, new)
            info[node] = None
            continue
        if sig_in:
            src = sig_in[0]
            sig = info[src]
            out_old = old_env[node]
            if name in ("size", "dim") or (name == "getattr" and node.args[1] in ("shape",)):
                new_env[node] = old_env[node]  # batch size and rank questions: as before
                info[node] = None
                continue
            if name in _FLATTENING_METHODS or name == "flatten":
                ok = (hasattr(out_old, "shape") and out_old.ndim == 2
                      and out_old.shape[0] == old_env[src].shape[0])
                if not ok:
                    raise _refuse(node.name, name, f"reshapes the signal to "
                                  f"{tuple(getattr(out_old, 'shape', ()))}",
                                  "only flattening to (N, features) is supported")
                flatten_value(node, src, node.name, name)
                graph.erase_node(node)
                continue
            if name == "mean" and _reduces_time_axis(node, out_old):
                if out_old.ndim != 2:
                    raise _refuse(node.name, "mean", "keepdim=True leaves a 3-D tensor",
                                  "use x.mean(-1) (no keepdim) before the Linear head")
                if sig.tail(new_env[src]):
                    raise _refuse(node.name, "mean", "it averages over extra columns kept by "
                                  "'same' pooling", "use ceil_mode=True in the pooling layers")
                target = ctx.add_module(f"{node.name}_gap", nn.AdaptiveAvgPool2d(1))
                flat_target = ctx.add_module(f"{node.name}_flatten", nn.Flatten())
                with graph.inserting_before(node):
                    gap = graph.call_module(target, (src,))
                    res = graph.call_module(flat_target, (gap,))
                node.replace_all_uses_with(res)
                graph.erase_node(node)
                new_env[gap] = ctx.modules[target](new_env[src])
                old_env[res] = out_old
                new_env[res] = torch.flatten(new_env[gap], 1)
                info[res] = _Flat(np.arange(out_old.shape[1]))
                report.rewrites.append(Rewrite(node.name, "mean over time",
                                               "AdaptiveAvgPool2d(1) + Flatten",
                                               tuple(new_env[res].shape[1:])))
                continue
            pool = _FUNCTIONAL_POOLS.get(name)
            if pool is not None:
                module = pool(node)
                target = ctx.add_module(f"{node.name}_1d", module)
                with graph.inserting_before(node):
                    call = graph.call_module(target, (src,))
                node.replace_all_uses_with(call)
                graph.erase_node(node)
                old_env[call] = out_old
                converter = _converter_for(module)
                if sig.tail(new_env[src]):
                    raise _refuse(node.name, name, "it reads extra columns kept by 'same' "
                                  "pooling", "use ceil_mode=True in the pooling layers")
                lowered, into, note = converter(module, node.name, new_env[src], ctx)
                ctx.set_module(target, lowered)
                new_env[call] = lowered(new_env[src])
                info[call] = _Signal(1 if "adaptive" in name else int(out_old.shape[-1]))
                report.rewrites.append(Rewrite(node.name, name, into,
                                               tuple(new_env[call].shape[1:]), note))
                check(call, node.name)
                continue
            if name in _ELEMENTWISE_FUNCTIONS or name == "cat" and _cat_dim(node) == 1:
                new_env[node] = _run(node, new)
                tails = {info[a].tail(new_env[a]) for a in sig_in}
                info[node] = _Signal(sig.valid)
                if len(tails) > 1:
                    raise _refuse(node.name, name, "its inputs have different lengths after "
                                  "'same' pooling", "use ceil_mode=True in the pooling layers")
                check(node, node.name)
                continue
            raise _refuse(node.name, name, "this operation on the signal has no 2-D equivalent "
                          "here", "use layers (Conv1d, pooling, activations, Flatten) or "
                          "element-wise functions; reshape only to flatten before the head")
        # flat inputs: element-wise only until the Linear
        if name in _ELEMENTWISE_FUNCTIONS:
            new_env[node] = _run(node, new)
            info[node] = info[flat_in[0]]
            continue
        raise _refuse(node.name, name, "only element-wise functions may sit between the "
                      "Flatten and the Linear", "move it after the Linear")
    graph.eliminate_dead_code()
    graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm


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


def _check_equivalence(original, lowered, shape, rows, example_input, seed, tolerance):
    """Pass 3: the whole lowered model against the original; returns (max |Δ|, inputs)."""
    import torch

    generator = torch.Generator().manual_seed(seed + 1)
    batches = [torch.randn(4, *shape, generator=generator),
               3 * torch.rand(4, *shape, generator=generator) - 1.5]
    if example_input is not None:
        x = torch.as_tensor(np.asarray(example_input), dtype=torch.float32)
        if x.ndim == 2:
            x = x[None]
        if tuple(x.shape[1:]) != tuple(shape):
            raise IncompatibleModelError(
                f"example_input has per-item shape {tuple(x.shape[1:])}, the model takes "
                f"{tuple(shape)} (C, L)")
        batches.append(x)
    worst, count = 0.0, 0
    with torch.no_grad():
        for x in batches:
            ref = original(x)
            got = lowered(lift_1d(x, rows))
            if tuple(got.shape) != tuple(ref.shape):
                raise IncompatibleModelError(
                    f"the lowered model outputs {tuple(got.shape)}, the original "
                    f"{tuple(ref.shape)}; please report this model")
            diff = float((got - ref).abs().max())
            scale = max(1.0, float(ref.abs().max()))
            if not diff <= tolerance * scale:
                raise IncompatibleModelError(
                    f"the lowered model differs from the original by {diff:.3g} (outputs up to "
                    f"{scale:.3g}); please report this model")
            worst, count = max(worst, diff), count + len(x)
    return worst, count


def lower_1d(model, input_shape, rows: int = DEFAULT_ROWS, *, target: str | None = None,
             example_input=None, tolerance: float = 1e-4, seed: int = 0) -> LoweredModel:
    """Rewrite a 1-D signal model into its exactly equivalent, Akida-mappable 2-D form.

    Passes, in order (the report lists those that changed the model):

    1. ``fold_batchnorm``: BatchNorm1d folded into its Conv1d / Linear neighbours;
    2. ``lift_1d_to_2d``: Conv1d → square Conv2d (middle row only), pooling →
       square 'same'/ceil pooling, ``AdaptiveAvgPool1d(1)`` / ``x.mean(-1)`` →
       global average pooling, flattening → ``torch.flatten(x, 1)``;
    3. ``permute_linear``: the Linear after the Flatten reads the lowered
       ``(C, H, L)`` order (permuted, zero weights for rows it must ignore);
    4. the equivalence check: the lowered model on lifted inputs against the
       original, on random inputs and ``example_input``.

    Parameters
    ----------
    model : torch.nn.Module
        The 1-D model, taking ``(N, C, L)``; ``nn.Sequential`` or any module
        ``torch.fx`` can trace. It is not modified.
    input_shape : tuple of int
        ``(C, L)`` without batch.
    rows : int, default 5
        Fewest rows of the lowered input. More are used when needed: at least
        the first kernel size (Akida 1.0), and enough that every pooling window
        fits the rows it pools (Akida refuses a pooling larger than its input;
        'same' pooling halves the rows, so four 2x2 poolings need 9 rows).
    target : {"akida2", "akida1"}, optional
        Also check the target's hardware limits (:data:`HARDWARE_LIMITS`) and
        refuse what it cannot take, with the fix.
    example_input : array-like, optional
        Real ``(N, C, L)`` inputs to include in the equivalence check.
    tolerance : float, default 1e-4
        Largest accepted difference, relative to ``max(1, |output|)``.
    seed : int, default 0
        Seed of the random check inputs.

    Returns
    -------
    LoweredModel
        ``.model`` (2-D, takes ``(N, C, rows, L)``), ``.rows``, ``.shape``,
        ``.report`` (rewrites, passes, ``max_abs_diff``).

    Raises
    ------
    IncompatibleModelError
        An invalid ``input_shape``, an untraceable model, a layer or operation
        with no exact 2-D form (named, with the fix), a hardware limit of
        ``target`` (with the fix), or a lowered model that differs from the
        original.
    ~akida_workflows.errors.FoldingError
        A BatchNorm in training mode (call ``model.eval()``).

    Examples
    --------
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv1d(1, 8, 5, padding=2), nn.ReLU6(), nn.MaxPool1d(2),
    ...                     nn.Flatten(), nn.Linear(8 * 70, 5)).eval()
    >>> lowered = lower_1d(net, (1, 140))
    >>> lowered.shape
    (1, 5, 140)
    >>> lowered.max_abs_diff < 1e-4
    True
    """
    import torch
    from torch import nn

    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        raise IncompatibleModelError(f"input_shape must be (C, L), got {input_shape!r}") from None
    if len(shape) != 2 or min(shape) < 1:
        raise IncompatibleModelError(
            f"input_shape must be (C, L) for a 1-D model (channels, length), got {input_shape}")
    if not isinstance(model, nn.Module):
        raise IncompatibleModelError(f"expected a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, torch.jit.ScriptModule):
        raise IncompatibleModelError(
            "a TorchScript model cannot be lowered to 2-D: torch.fx needs the Python module. "
            "Pass the nn.Module (on the command line: --model-class with --weights, or a "
            "pickled module with --trust-pickle).")
    if target is not None and target not in HARDWARE_LIMITS:
        raise IncompatibleModelError(
            f"target must be one of {sorted(HARDWARE_LIMITS)}, got {target!r}")
    check_finite_parameters(model)
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training:
            raise FoldingError(f"{name}: BatchNorm is in training mode; its output depends on "
                               "the batch. Call model.eval() before lowering.")
    rows = int(rows)
    if rows < 1:
        raise IncompatibleModelError(f"rows must be >= 1, got {rows}")
    original = copy.deepcopy(model).eval()
    first = next((m for m in original.modules() if isinstance(m, nn.Conv1d)), None)
    if first is not None:
        k_eff = _single(first.dilation) * (_single(first.kernel_size) - 1) + 1
        rows = max(rows, k_eff)
    with torch.no_grad():
        try:
            original(torch.zeros(1, *shape))
        except Exception as exc:
            raise IncompatibleModelError(
                f"{type(model).__name__} does not accept a (1, {shape[0]}, {shape[1]}) input: "
                f"{exc}") from exc

    def attempt(n_rows):
        """(report, lowered graph) with ``n_rows`` rows, or None when too few rows."""
        report = LoweringReport(shape, n_rows)
        gm = _trace(_fold(original, report))
        try:
            with torch.no_grad():
                return report, _lift(gm, shape, n_rows, report, tolerance, seed)
        except _TooFewRows:  # each pooling window must fit the rows it pools
            return None
        except RuntimeError as exc:  # a 'valid' or strided convolution ran out of rows
            if "size" in str(exc).lower() or "kernel" in str(exc).lower():
                return None
            raise

    # Fewest rows that work: double until one does, then bisect (more rows never hurt).
    low, high, found = rows - 1, rows, attempt(rows)
    while found is None:
        low, high = high, high * 2
        if high > _MAX_ROWS:
            raise IncompatibleModelError(
                f"{type(model).__name__} needs more than {_MAX_ROWS} identical rows: its "
                "strides, poolings or unpadded convolutions shrink the rows until a window "
                "no longer fits. Fix: use 'same' convolutions (padding=k//2, stride 1) and "
                "poolings of 2 or 3, fewer of them, or a global average pooling head")
        found = attempt(high)
    while high - low > 1:
        middle = (low + high) // 2
        result = attempt(middle)
        if result is None:
            low = middle
        else:
            high, found = middle, result
    attempt_rows = high
    report, gm = found
    report.passes.append("lift_1d_to_2d")
    if any(r.kind == "Linear" for r in report.rewrites):
        report.passes.append("permute_linear")
    from .folding import _to_sequential_if_chain

    lowered_model = gm
    if isinstance(model, nn.Sequential):
        lowered_model = _to_sequential_if_chain(gm, model) or gm
    lowered_model.eval()
    lowered_model.lowered_from_1d = (shape, attempt_rows)
    diff, count = _check_equivalence(original, lowered_model, shape, attempt_rows,
                                     example_input, seed, tolerance)
    report.max_abs_diff, report.checked = diff, count
    result = LoweredModel(lowered_model, shape, attempt_rows, report)
    if target is not None:
        problems = check_limits(result, target)
        if problems:
            raise IncompatibleModelError(
                f"{HARDWARE_LIMITS[target].target}: the lowered model exceeds the hardware "
                "limits:\n" + "\n".join(f"  - {p}" for p in problems),
                nodes=[p.split(":")[0] for p in problems])
    return result


# -------------------------------------------------------------------------- limits


def check_limits(lowered: LoweredModel, target: str) -> list[str]:
    """The hardware limits of ``target`` that ``lowered`` exceeds, each with its fix.

    Parameters
    ----------
    lowered : LoweredModel
    target : {"akida2", "akida1"}

    Returns
    -------
    list of str
        ``"<layer>: <limit>. Fix: <fix>"``; empty when every known limit holds
        (the toolchain's mapping remains the judge: see
        :func:`akida_workflows.deploy.map_report`).
    """
    from torch import nn

    if target not in HARDWARE_LIMITS:
        raise IncompatibleModelError(
            f"target must be one of {sorted(HARDWARE_LIMITS)}, got {target!r}")
    limits = HARDWARE_LIMITS[target]
    c, rows, length = lowered.shape
    problems = []
    if length > limits.max_width:
        problems.append(
            f"input: width {length} > {limits.max_width} on {target}. Fix: decimate or window "
            f"the signal to <= {limits.max_width} samples "
            "(akida_workflows.datasets.resample_signals / window_signals)")
    if limits.input_channels and c not in limits.input_channels:
        problems.append(
            f"input: {c} channels; the {target} input layer takes "
            f"{' or '.join(map(str, limits.input_channels))}. Fix: add zero channels up to 3 "
            "(and zero input weights), or mix the channels down before the model")
    convs = [(n, m) for n, m in lowered.model.named_modules() if isinstance(m, nn.Conv2d)]
    for i, (name, conv) in enumerate(convs):
        k = conv.kernel_size[0]
        allowed = limits.input_kernels if i == 0 else limits.kernels
        if k not in allowed:
            where = "input-layer" if i == 0 else "later"
            problems.append(
                f"{name}: kernel {k} is not an Akida {target} {where} kernel "
                f"({', '.join(map(str, allowed))}). Fix: use kernel size "
                f"{min(allowed, key=lambda a: (abs(a - k), a))}")
    if convs and limits.rows_cover_input_kernel and rows < convs[0][1].kernel_size[0]:
        problems.append(
            f"input: {rows} rows < kernel {convs[0][1].kernel_size[0]}. Fix: lower with "
            f"rows={convs[0][1].kernel_size[0]}")
    if rows < limits.min_rows:
        problems.append(f"input: {rows} rows < {limits.min_rows}. Fix: lower with "
                        f"rows={limits.min_rows}")
    for name, m in lowered.model.named_modules():
        if isinstance(m, nn.Linear) and m.in_features > limits.max_dense_inputs and \
                name == _first_linear(lowered.model):
            problems.append(
                f"{name}: Dense input {m.in_features} > {limits.max_dense_inputs}. Fix: pool "
                "more (MaxPool1d) or use fewer channels before the Flatten, or a global "
                "average pooling head")
    if target == "akida1":  # the 4-bit path rebuilds convolutions with Keras 'same' padding
        for name, (conv, (_, w)) in _module_inputs(lowered, nn.Conv2d).items():
            k, s, p = conv.kernel_size[1], conv.stride[1], conv.padding[1]
            if s > 1 and p:
                out = -(-w // s)
                before = max((out - 1) * s + k - w, 0) // 2
                if before != p or (w + 2 * p - k) // s + 1 != out:
                    problems.append(
                        f"{name}: stride {s} with padding {p} on {w} samples is not Akida "
                        f"'same' padding (which pads {before} before). Fix: use stride 1 and a "
                        f"MaxPool1d({s}, ceil_mode=True) after the convolution, then retrain")
    for name, (module, (h, w)) in _pool_inputs(lowered).items():
        if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            if limits.max_pool_area is not None and h * w > limits.max_pool_area:
                problems.append(
                    f"{name}: global average pooling over {h * w} positions ({h}x{w}) > "
                    f"{limits.max_pool_area}. Fix: max-pool the signal more before it")
        elif module.kernel_size[-1] > w:
            problems.append(
                f"{name}: pooling window {module.kernel_size[-1]} > the {w} samples left. "
                "Fix: pool less, or give the model a longer signal")
    return problems


def _first_linear(model) -> str | None:
    from torch import nn

    return next((n for n, m in model.named_modules() if isinstance(m, nn.Linear)), None)


def _pool_inputs(lowered: LoweredModel) -> dict:
    """``{name: (pooling module, (rows, width) of its input)}`` of the lowered model."""
    from torch import nn

    return _module_inputs(lowered, (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
                                    nn.AdaptiveMaxPool2d))


def _module_inputs(lowered: LoweredModel, types) -> dict:
    """``{name: (module, (rows, width) of its input)}`` for the modules of ``types``."""
    import torch

    sizes, hooks = {}, []
    for name, m in lowered.model.named_modules():
        if isinstance(m, types):
            hooks.append(m.register_forward_hook(
                lambda mod, inp, out, name=name: sizes.__setitem__(
                    name, (mod, tuple(int(d) for d in inp[0].shape[-2:])))))
    try:
        with torch.no_grad():
            lowered.model(torch.zeros(1, *lowered.shape))
    finally:
        for h in hooks:
            h.remove()
    return sizes


# ---------------------------------------------------------------- pipeline entry points


def prepare(model, input_shape, target: str | None = None, *, rows: int = DEFAULT_ROWS,
            example_input=None):
    """The model and input shape the Akida pipeline takes: lowered when 1-D, else as given.

    The one call the compatibility check, the conversion path and the CLI make
    at their entry, so that 1-D models go through them like 2-D ones.

    Parameters
    ----------
    model : torch.nn.Module
    input_shape : tuple of int
        ``(C, L)`` for a 1-D model, ``(C, H, W)`` for a 2-D one.
    target : {"akida2", "akida1"}, optional
        Refuse the lowered model when it exceeds that target's limits.
    rows : int, default 5
    example_input : array-like, optional
        ``(N, C, L)`` inputs for the equivalence check.

    Returns
    -------
    (torch.nn.Module, tuple of int)
        The 2-D model and its ``(C, H, W)`` input shape. A lowered model carries
        its :class:`LoweringReport` as ``model.lowering_report``.

    Examples
    --------
    >>> model2d, shape = prepare(model1d, (1, 140))    # doctest: +SKIP
    >>> shape
    (1, 5, 140)
    """
    shape = tuple(int(s) for s in input_shape)
    if not is_1d(model):
        return model, shape
    if len(shape) != 2:
        raise IncompatibleModelError(
            f"{type(model).__name__} has 1-D layers: give its input shape as C,L "
            f"(channels, length), got {','.join(map(str, shape))}")
    lowered = lower_1d(model, shape, rows, target=target, example_input=example_input)
    lowered.model.lowering_report = lowered.report
    return lowered.model, lowered.shape


def prepare_samples(samples, shape, layout: str = "nchw"):
    """Lift ``(N, C, L)`` samples for a model :func:`prepare` lowered; others unchanged.

    Parameters
    ----------
    samples : numpy.ndarray
    shape : tuple of int
        The shape :func:`prepare` returned (``(C, rows, L)`` when lowered).
    layout : {"nchw", "nhwc"}

    Returns
    -------
    numpy.ndarray
    """
    x = np.asarray(samples)
    shape = tuple(shape)
    if x.ndim == 3 and len(shape) == 3 and (x.shape[1], x.shape[2]) == (shape[0], shape[2]):
        return lift_1d(x, shape[1], layout=layout)
    return x


def lift_for(model, x):
    """Lift ``(N, C, L)`` inputs for ``model`` when it was lowered from 1-D (else unchanged).

    Understands :class:`LoweredModel`, modules made by :func:`lower_1d` /
    :func:`prepare`, and Akida models whose input is ``rows`` identical rows
    (Akida 2.0 models take NCHW, Akida 1.0 models NHWC).

    Parameters
    ----------
    model : LoweredModel, torch.nn.Module or akida.Model
    x : numpy.ndarray or torch.Tensor

    Returns
    -------
    numpy.ndarray or torch.Tensor
    """
    if getattr(x, "ndim", None) != 3:
        return x
    if isinstance(model, LoweredModel):
        return model.lift(x)
    info = getattr(model, "lowered_from_1d", None)
    if info is not None:
        return lift_1d(x, info[1])
    in_shape = getattr(model, "input_shape", None)
    if in_shape is not None and type(model).__module__.startswith("akida"):
        dims = tuple(int(d) for d in in_shape)
        n, c, length = x.shape
        if len(dims) == 3 and dims[1] == length and dims[2] == c:  # (H, W, C)
            nhwc = str(getattr(model, "ip_version", "")).endswith("v1")
            return lift_1d(np.asarray(x), dims[0], layout="nhwc" if nhwc else "nchw")
        if len(dims) == 3 and dims[0] == c and dims[2] == length:  # (C, H, W)
            return lift_1d(np.asarray(x), dims[1])
    return x
