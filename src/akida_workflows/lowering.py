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
from dataclasses import dataclass, field

import numpy as np

from . import folding
from . import targets as _targets
from .errors import FoldingError, IncompatibleModelError
from .lowering_ops import _single, _TooFewRows
from .lowering_pass import _Lifter
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
    """What one Akida target takes from a lowered 1-D model.

    A view of :class:`akida_workflows.targets.Limits` (the one table of limits,
    measured with the real toolchain).

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
    max_dense_inputs : int or None
        Largest input of a Dense (Linear) layer (``None``: no limit).
    max_pool_area : int or None
        Largest global-average-pooling area (rows x length).
    rows_cover_input_kernel : bool
        The input needs at least as many rows as its kernel.
    max_dense_width : int or None
        Most columns of the map a Dense layer reads (``None``: no limit).
    """

    target: str
    max_width: int
    min_rows: int
    input_channels: tuple[int, ...] | None
    input_kernels: tuple[int, ...]
    kernels: tuple[int, ...]
    max_dense_inputs: int | None
    max_pool_area: int | None
    rows_cover_input_kernel: bool
    max_dense_width: int | None = None


def _hardware_limits(lim: _targets.Limits) -> HardwareLimits:
    return HardwareLimits(lim.name, lim.max_width, lim.min_height, lim.input_channels,
                          lim.input_kernels, lim.kernels, lim.dense_inputs, lim.gap_area,
                          lim.rows_cover_input_kernel, lim.dense_map_width)


#: Per target, built from :data:`akida_workflows.targets.TARGETS` (the measured limits).
HARDWARE_LIMITS = {name: _hardware_limits(lim) for name, lim in _targets.TARGETS.items()}


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
    checks each rewritten signal node against the original as it goes
    (:class:`akida_workflows.lowering_pass._Lifter`).
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    x1 = torch.randn(3, *shape, generator=generator)

    def record(*rewrite):
        report.rewrites.append(Rewrite(*rewrite))

    return _Lifter(gm, tolerance, record).run(x1, lift_1d(x1, rows))


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


def _checked_shape(model, input_shape) -> tuple[int, ...]:
    """``input_shape`` as ``(C, L)``; refuses a bad shape and what is not an ``nn.Module``."""
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
    return shape


def _checked_copy(model, shape, rows):
    """An eval-mode copy of ``model`` that runs on ``(1, C, L)``, and the fewest rows to try.

    At least ``rows``, and at least the first convolution's (dilated) kernel size.
    """
    import torch
    from torch import nn

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
    return original, rows


def _attempt(original, shape, rows, tolerance, seed):
    """(report, lowered graph) with ``rows`` rows, or None when too few rows."""
    import torch

    report = LoweringReport(shape, rows)
    gm = _trace(_fold(original, report))
    try:
        with torch.no_grad():
            return report, _lift(gm, shape, rows, report, tolerance, seed)
    except _TooFewRows:  # each pooling window must fit the rows it pools
        return None
    except RuntimeError as exc:  # a 'valid' or strided convolution ran out of rows
        if "size" in str(exc).lower() or "kernel" in str(exc).lower():
            return None
        raise


def _fewest_rows(attempt, rows: int, model_name: str):
    """``(attempt(n), n)`` for the fewest ``n >= rows`` where ``attempt`` is not None.

    Doubles until one works, then bisects (more rows never hurt).
    """
    low, high, found = rows - 1, rows, attempt(rows)
    while found is None:
        low, high = high, high * 2
        if high > _MAX_ROWS:
            raise IncompatibleModelError(
                f"{model_name} needs more than {_MAX_ROWS} identical rows: its "
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
    return found, high


def _assemble(gm, model, shape, rows):
    """The lowered module in eval mode, carrying ``lowered_from_1d = (shape, rows)``.

    An ``nn.Sequential`` when ``model`` is one and the graph is still a chain, else ``gm``.
    """
    from torch import nn

    from .folding import _to_sequential_if_chain

    lowered_model = gm
    if isinstance(model, nn.Sequential):
        lowered_model = _to_sequential_if_chain(gm, model) or gm
    lowered_model.eval()
    lowered_model.lowered_from_1d = (shape, rows)
    return lowered_model


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
    shape = _checked_shape(model, input_shape)
    if target is not None and target not in HARDWARE_LIMITS:
        raise IncompatibleModelError(
            f"target must be one of {sorted(HARDWARE_LIMITS)}, got {target!r}")
    original, rows = _checked_copy(model, shape, rows)
    (report, gm), attempt_rows = _fewest_rows(
        lambda n_rows: _attempt(original, shape, n_rows, tolerance, seed), rows,
        type(model).__name__)
    report.passes.append("lift_1d_to_2d")
    if any(r.kind == "Linear" for r in report.rewrites):
        report.passes.append("permute_linear")
    lowered_model = _assemble(gm, model, shape, attempt_rows)
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
    graph = _graph_of(lowered)  # traced once: every shape below is read from it
    problems += _dense_problems(lowered, graph, limits)
    if target == "akida1":  # the 4-bit path rebuilds convolutions with Keras 'same' padding
        for name, (conv, (_, w)) in _module_inputs(graph, nn.Conv2d).items():
            k, s, p = conv.kernel_size[1], conv.stride[1], conv.padding[1]
            if s > 1 and p:
                out = -(-w // s)
                before = max((out - 1) * s + k - w, 0) // 2
                if before != p or (w + 2 * p - k) // s + 1 != out:
                    problems.append(
                        f"{name}: stride {s} with padding {p} on {w} samples is not Akida "
                        f"'same' padding (which pads {before} before). Fix: use stride 1 and a "
                        f"MaxPool1d({s}, ceil_mode=True) after the convolution, then retrain")
    for name, (module, (h, w)) in _pool_inputs(graph).items():
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


def _dense_problems(lowered: LoweredModel, graph, limits: HardwareLimits) -> list[str]:
    """The first Linear's input count, and the width of the map it reads, against the limits."""
    name = _first_linear(lowered.model)
    if name is None:
        return []
    m = lowered.model.get_submodule(name)
    if limits.max_dense_inputs is not None and m.in_features > limits.max_dense_inputs:
        return [f"{name}: Dense input {m.in_features} > {limits.max_dense_inputs}. Fix: pool "
                "more (MaxPool1d) or use fewer channels before the Flatten, or a global "
                "average pooling head"]
    if limits.max_dense_width is None:
        return []
    maps = _last_map_width(graph, m)
    if maps is not None and maps > limits.max_dense_width:
        return [f"{name}: the Dense layer reads a map of {maps} samples > "
                f"{limits.max_dense_width} columns. Fix: MaxPool1d(2) followed by a Conv1d "
                "before the Flatten, or a stride-2 first convolution"]
    return []


def _last_map_width(graph, linear) -> int | None:
    """Width of the last 4-D tensor a module produced before ``linear`` ran (on ``graph``)."""
    sites = graph.sites
    at = next((s.index for s in sites if s.module is linear), None)
    if at is None:
        return None
    maps = [s.out_shape[-1] for s in sites[:at]
            if s.module is not None and s.out_shape is not None and len(s.out_shape) == 3]
    return int(maps[-1]) if maps else None


def _graph_of(lowered: LoweredModel):
    """The :class:`~akida_workflows.graph.ModelGraph` of the lowered model (shapes included)."""
    from .graph import trace_graph

    return trace_graph(lowered.model, lowered.shape)


def _first_linear(model) -> str | None:
    from torch import nn

    return next((n for n, m in model.named_modules() if isinstance(m, nn.Linear)), None)


def _pool_inputs(graph) -> dict:
    """``{name: (pooling module, (rows, width) of its input)}`` on the lowered model's graph."""
    from torch import nn

    return _module_inputs(graph, (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
                                    nn.AdaptiveMaxPool2d))


def _module_inputs(graph, types) -> dict:
    """``{name: (module, (rows, width) of its input)}`` for the modules of ``types``."""
    return {s.name: (s.module, tuple(s.in_shapes[0][-2:]))
            for s in graph.sites
            if isinstance(s.module, types) and s.in_shapes}


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
