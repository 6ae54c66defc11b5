"""Everything between a PyTorch model and an Akida target, in PyTorch terms, with fixes.

:func:`check_compatibility` does not guess from a list of rules: it runs the
real toolchain on a copy of the model — export, quantization, conversion and
mapping with ``hw_only`` semantics on a virtual device of the target — and
reports *every* module (by its PyTorch qualified name) as ``ok``, ``fixable``
or ``unsupported``, with the toolchain's reason translated back from ONNX node
or Akida layer names and the fix. Its verdict therefore agrees with the
toolchain: a model reported ``ok`` converts and maps entirely, and every issue
is something the toolchain actually refused, truncated or left in software.

Targets:

- ``"akida2"``: PyTorch → ONNX → QuantizeML (8-bit) → CNN2SNN → Akida 2.0,
  mapped on ``SixNodesIPv2``;
- ``"akida1"``: PyTorch → tf-keras → QuantizeML (4-bit weights and
  activations) → CNN2SNN → Akida 1.0, mapped on ``AKD1000``.
"""

from __future__ import annotations

import contextlib
import copy
import html
import io
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import AkidaWorkflowError, IncompatibleModelError

__all__ = ["TARGETS", "CompatibilityIssue", "CompatibilityReport", "check_compatibility"]

#: target -> (description, virtual device used for mapping)
TARGETS = {
    "akida2": ("Akida 2.0, 8-bit (QuantizeML ONNX path)", "SixNodesIPv2"),
    "akida1": ("Akida 1.0, 4-bit weights and activations (AKD1000/AKD1500)", "AKD1000"),
}

_RECURRENT = ("LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell")
_ATTENTION = ("MultiheadAttention", "Transformer", "TransformerEncoder", "TransformerDecoder",
              "TransformerEncoderLayer", "TransformerDecoderLayer")
_NON_LINEAR_LUT = ("LeakyReLU", "GELU", "SiLU", "Hardswish", "Mish", "ELU", "PReLU", "Softplus")


@dataclass
class CompatibilityIssue:
    """One row of a :class:`CompatibilityReport`."""

    module: str
    kind: str
    status: str  # "ok", "fixable" or "unsupported"
    stage: str = ""  # "export", "quantization", "conversion", "mapping"
    reason: str = ""
    fix: str = ""


def _fix_for(reason: str, kind: str, target: str) -> tuple[str, str]:
    """(status, fix) for a toolchain reason about a module of type ``kind``."""
    r = reason.lower()
    if kind in _RECURRENT:
        return "unsupported", "no recurrence on Akida: use temporal (1-D) convolutions"
    if kind in _ATTENTION or "matmul" in r:
        return "unsupported", "attention has no Akida equivalent: use convolutions"
    if kind.startswith("BatchNorm") or "batchnormalization" in r:
        return "fixable", "call akida_workflows.folding.fold_batchnorm(model) before export"
    if "bounded" in r or ("relu" in r and "maximum" in r):
        return "fixable", "use nn.ReLU6() or a clamp (nn.Hardtanh(0, m)) instead of nn.ReLU()"
    if "padding 'same'" in r or "padding" in r and "same" in r:
        return "fixable", "use padding=kernel_size // 2 with stride 1 (down-sample with MaxPool2d)"
    if "max pooling cannot be the last layer" in r or "must be followed by" in r:
        return "fixable", (
            "a max-pooled convolution must be followed by another convolution in hardware: "
            "add an unpooled Conv2d after it, or drop that pooling")
    if "too large to fit in a fnp" in r or "2048" in r:
        return "fixable", (
            "keep Linear inputs <= 2048 features: fewer channels or more down-sampling before "
            "Flatten")
    if "activations are enabled" in r or "followed by" in r and "not valid" in r:
        return "fixable", "follow this convolution with ReLU6 (Akida needs its activation)"
    if "same padding as" in r:
        return "fixable", "give the MaxPool2d the same padding as the convolution before it"
    if kind in ("Softmax", "LogSoftmax") and target == "akida1":
        return "fixable", ("drop the final Softmax: Akida outputs the logits (same argmax); "
                           "apply softmax on the host if you need probabilities")
    if kind in ("Sigmoid", "Tanh", "Softmax"):
        return "unsupported", f"{kind} is supported only as the model's last op; use ReLU6 inside"
    if kind in _NON_LINEAR_LUT:
        if target == "akida1":
            return "fixable", f"{kind} is not supported on Akida 1.0: use ReLU6"
        return "unsupported", f"{kind} is not supported here: use ReLU6"
    if "residual" in r or kind == "add":
        return ("unsupported" if target == "akida1" else "fixable",
                "residual additions are not supported on Akida 1.0" if target == "akida1"
                else "make both branches end with quantizable Conv → ReLU patterns")
    return "unsupported", "replace it with a supported layer (Conv2d, depthwise Conv2d, Linear, " \
                          "ReLU6, MaxPool2d, global average pooling)"


@dataclass
class CompatibilityReport:
    """Per-module verdict of :func:`check_compatibility`.

    Attributes
    ----------
    target : str
    device : str
        Virtual device the model was mapped on.
    rows : list of CompatibilityIssue
        One per module (leaf modules and functional ops), in model order.
    hw_fraction : float or None
        Fraction of Akida compute layers in hardware, when conversion succeeded.
    """

    target: str
    device: str
    rows: list[CompatibilityIssue] = field(default_factory=list)
    hw_fraction: float | None = None

    @property
    def issues(self) -> list[CompatibilityIssue]:
        """Rows that are not ``ok``."""
        return [r for r in self.rows if r.status != "ok"]

    @property
    def ok(self) -> bool:
        """True when the model converts and maps entirely on the target."""
        return not self.issues

    def raise_for_status(self) -> None:
        """Raise :class:`IncompatibleModelError` listing the issues, if any."""
        if not self.ok:
            raise IncompatibleModelError(str(self), nodes=[r.module for r in self.issues])

    def records(self):
        return [{"module": r.module, "type": r.kind, "status": r.status, "stage": r.stage,
                 "reason": r.reason, "fix": r.fix} for r in self.rows]

    def summary_line(self) -> str:
        desc = TARGETS[self.target][0]
        if self.ok:
            return f"{desc}: compatible; every layer maps onto {self.device}"
        n_fix = sum(r.status == "fixable" for r in self.issues)
        n_uns = len(self.issues) - n_fix
        return f"{desc}: {n_fix} fixable, {n_uns} unsupported module(s) (checked on {self.device})"

    def __str__(self) -> str:
        from .evaluate import Table

        return self.summary_line() + "\n" + str(Table(self.records()))

    __repr__ = __str__

    def _repr_html_(self) -> str:
        colors = {"ok": "#e6f4ea", "fixable": "#fff4e5", "unsupported": "#fdecea"}
        head = "".join(f"<th>{c}</th>" for c in ("module", "type", "status", "stage",
                                                   "reason", "fix"))
        body = "".join(
            f'<tr style="background:{colors[r.status]}">' + "".join(
                f"<td>{html.escape(str(v))}</td>"
                for v in (r.module, r.kind, r.status, r.stage, r.reason, r.fix)) + "</tr>"
            for r in self.rows)
        return (f"<p>{html.escape(self.summary_line())}</p><table class=\"table akida-report\">"
                f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


# ------------------------------------------------------------------------- helpers


def _leaf_modules(model):
    """Leaf modules, with recurrent/attention blocks reported as one unit."""
    units = [n for n, m in model.named_modules()
             if n and type(m).__name__ in _RECURRENT + _ATTENTION]
    out = []
    for n, m in model.named_modules():
        if not n or any(n.startswith(u + ".") for u in units):
            continue
        if n in units or not list(m.children()):
            out.append((n, m))
    return out


def _module_for_name(name: str, module_names: set[str]) -> str | None:
    """PyTorch module of an ONNX node ('/stem/stem.0/Conv') or layer ('conv_stem_0')."""
    if name in module_names:
        return name
    parts = [p for p in name.strip("/").split("/") if p]
    if len(parts) >= 2:
        scopes = parts[:-1]
        for i in range(len(scopes)):
            candidate = ".".join(scopes[i:])
            if candidate in module_names:
                return candidate
    match = re.match(r"^[a-z0-9]+_(.+)$", name)  # keras_bridge names: kind_torchname
    if match:
        wanted = match.group(1)
        for candidate in module_names:
            if re.sub(r"[^0-9A-Za-z_]", "_", candidate) == wanted:
                return candidate
    return None


def _op_of(name: str) -> str:
    return name.rstrip("/").split("/")[-1] if "/" in name else name


class _Collector:
    def __init__(self, model, target):
        self.target = target
        self.modules = dict(_leaf_modules(model))
        self.order = list(self.modules)
        self.names = set(self.modules)
        self.found: dict[str, CompatibilityIssue] = {}
        self.unfoldable = _unfoldable_batchnorms(model)

    _OP_TYPES = {"BatchNormalization": ("BatchNorm1d", "BatchNorm2d"), "Conv": ("Conv2d", "Conv1d"),
                 "Gemm": ("Linear",), "MatMul": ("Linear",), "MaxPool": ("MaxPool2d",),
                 "Relu": ("ReLU",), "Clip": ("ReLU6", "Hardtanh"), "Sigmoid": ("Sigmoid",),
                 "Tanh": ("Tanh",), "Flatten": ("Flatten",), "AveragePool": ("AvgPool2d",),
                 "Softmax": ("Softmax",)}

    def _by_op_index(self, name: str) -> str | None:
        """Nodes renamed by graph rewrites ('node_BatchNormalization_0'): k-th module of that type."""
        match = re.match(r"^node_([A-Za-z]+)_(\d+)$", name)
        if not match or match.group(1) not in self._OP_TYPES:
            return None
        kinds = self._OP_TYPES[match.group(1)]
        candidates = [n for n in self.order if type(self.modules[n]).__name__ in kinds]
        index = int(match.group(2))
        return candidates[index] if index < len(candidates) else None

    def add(self, name: str, stage: str, reason: str, kind: str | None = None):
        module = _module_for_name(name, self.names) or self._by_op_index(name)
        key = module or name
        if kind is None:
            kind = type(self.modules[module]).__name__ if module else _op_of(name)
        status, fix = _fix_for(reason, kind, self.target)
        if kind.startswith("BatchNorm") and key in self.unfoldable:
            fix = ("move the BatchNorm before the activation (Conv → BN → ReLU), where it "
                   f"folds; fold_batchnorm cannot fold it here ({self.unfoldable[key]})")
        if key not in self.found:
            self.found[key] = CompatibilityIssue(key, kind, status, stage, reason, fix)

    def report(self, device, hw_fraction):
        rows = []
        for name in self.order:
            issue = self.found.get(name)
            rows.append(issue or CompatibilityIssue(name, type(self.modules[name]).__name__, "ok"))
        rows += [issue for key, issue in self.found.items() if key not in self.modules]
        return CompatibilityReport(self.target, device, rows, hw_fraction)


def _fold_quietly(model):
    """fold_batchnorm without its FoldingWarning: the report lists what stayed."""
    from .folding import fold_batchnorm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fold_batchnorm(model)


def _unfoldable_batchnorms(model) -> dict[str, str]:
    try:
        folded = _fold_quietly(model)
    except AkidaWorkflowError:
        return {}
    return {u.name: u.reason for u in folded.folding_report.unfolded}


def _patch(model, name: str, target: str, order=()) -> bool:
    """Neutralise a reported module in the working copy so later stages can be checked.

    Shape-preserving modules only: an unbounded ReLU becomes ReLU6 (Akida 1.0),
    activations and BatchNorms become Identity. Returns False when it cannot.
    """
    from torch import nn

    parent_name, _, child = name.rpartition(".")
    try:
        parent = model.get_submodule(parent_name) if parent_name else model
        module = getattr(parent, child)
    except AttributeError:
        return False
    order = list(order)
    previous = None
    if name in order and order.index(name) > 0:
        previous = model.get_submodule(order[order.index(name) - 1])
    after_weights = isinstance(previous, (nn.Conv1d, nn.Conv2d, nn.Linear))
    if isinstance(module, (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.GELU, nn.SiLU, nn.LeakyReLU,
                           nn.ELU, nn.Hardswish, nn.Mish, nn.PReLU, nn.Softplus)):
        # Keep an activation where a Conv/Linear needs one; elsewhere drop it.
        replacement = nn.ReLU6() if after_weights or isinstance(module, nn.ReLU) else nn.Identity()
    elif isinstance(module, (nn.Softmax, nn.LogSoftmax)) and name == order[-1]:
        replacement = nn.Identity()
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout)):
        replacement = nn.Identity()
    else:
        return False
    setattr(parent, child, replacement)
    return True


def _static_checks(col: _Collector):
    for name, m in col.modules.items():
        kind = type(m).__name__
        if kind in _RECURRENT:
            col.add(name, "export", f"{kind}: recurrent layers have no Akida equivalent", kind)
        elif kind in _ATTENTION:
            col.add(name, "export", f"{kind}: attention has no Akida equivalent", kind)


def _check_akida2(model, col: _Collector, samples):
    import torch

    from .convert import _first_unquantized, quantize_onnx, to_akida, unquantized_nodes
    from .export import export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        try:
            exported = export_onnx(model, torch.from_numpy(samples[:1]), Path(tmp) / "m.onnx")
        except AkidaWorkflowError as exc:
            col.add(type(model).__name__, "export", str(exc), "model")
            return None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                quantized = quantize_onnx(exported, samples, allow_partial=True)
        except IncompatibleModelError as exc:
            col.add(type(model).__name__, "quantization", str(exc), "model")
            return None
        left = unquantized_nodes(quantized)
        causes = _first_unquantized(quantized, left) if left else []
        from .convert import HEAD_OPS

        blocking = [c for c in causes if c[1] not in HEAD_OPS]
        for node, op in blocking:
            module = _module_for_name(node, col.names)
            if module in col.order and col.order.index(module) > 0:
                prev = col.order[col.order.index(module) - 1]
                prev_kind = type(col.modules[prev]).__name__
                if prev_kind in _NON_LINEAR_LUT + ("Sigmoid", "Tanh"):
                    col.add(prev, "quantization",
                            f"{prev_kind} followed by {op}: no quantizable pattern; the "
                            "toolchain stops here and drops the rest of the graph")
                    continue
            col.add(node, "quantization",
                    f"{op}: no quantizable pattern; the toolchain stops here and drops the rest "
                    "of the graph")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                akida_model = to_akida(quantized, allow_partial=True)
        except IncompatibleModelError as exc:
            for node in exc.nodes or [type(model).__name__]:
                col.add(node, "conversion", str(exc))
            return None
    return akida_model


def _check_akida1(model, input_shape, col: _Collector, samples):
    from .keras_bridge import convert_keras, quantize_4bit, to_keras, to_nhwc

    work = _fold_quietly(model)
    for entry in work.folding_report.unfolded:
        col.add(entry.name, "conversion", f"BatchNorm cannot be folded: {entry.reason}")
    if work.folding_report.unfolded:
        return None
    try:
        keras_model = to_keras(work, input_shape)
    except IncompatibleModelError as exc:
        for node in exc.nodes or [type(model).__name__]:
            col.add(node, "conversion", str(exc).split(": ", 1)[-1])
        return None
    try:
        quantized = quantize_4bit(keras_model, to_nhwc(samples, flip=keras_model),
                                  akida_version="v1")
    except IncompatibleModelError as exc:
        for node in exc.nodes or [type(model).__name__]:
            col.add(node, "quantization",
                    "Akida 1.0 needs bounded activations; this ReLU has no maximum"
                    if "bounded" in str(exc) else str(exc))
        return None
    try:
        return convert_keras(quantized)
    except IncompatibleModelError as exc:
        message = str(exc).split("failed for Akida v1: ", 1)[-1]
        names = [n for n in re.findall(r"\b([a-z0-9]+_[A-Za-z0-9_]+)\b", message)
                 if _module_for_name(n, col.names)]
        for node in names[:1] or [type(model).__name__]:
            col.add(node, "conversion", message)
        return None


def check_compatibility(model, input_shape, target: str = "akida2", *,
                        samples=None, seed: int = 0) -> CompatibilityReport:
    """Check a PyTorch model against an Akida target by running the real toolchain.

    Parameters
    ----------
    model : torch.nn.Module
        Not modified (a copy in eval mode is checked).
    input_shape : tuple of int
        Channel-first input shape without batch, e.g. ``(1, 28, 28)``; ``(C, L)``
        for a 1-D model, which is checked as its exact 2-D form
        (:func:`akida_workflows.lowering.prepare`).
    target : {"akida2", "akida1"}, default "akida2"
    samples : numpy.ndarray, optional
        Calibration inputs (float NCHW, or ``(N, C, L)`` for a 1-D model).
        Random values in [-1, 1] by default: enough for a verdict on
        compatibility, not for accuracy.
    seed : int, default 0

    Returns
    -------
    CompatibilityReport
        Every leaf module with ``ok`` / ``fixable`` / ``unsupported``, the
        stage (export, quantization, conversion, mapping), the reason and the fix.

    Raises
    ------
    AkidaWorkflowError
        Unknown target or invalid ``input_shape``; a 1-D model that has no
        exact 2-D form or exceeds the target's limits
        (:class:`~akida_workflows.errors.IncompatibleModelError`, with the fix).
    """
    import torch

    if target not in TARGETS:
        raise AkidaWorkflowError(f"target must be one of {sorted(TARGETS)}, got {target!r}")
    # 1-D models (Conv1d …, input_shape (C, L)) are checked as their exact 2-D form.
    from .lowering import prepare, prepare_samples

    model, input_shape = prepare(model, input_shape, target)
    if samples is not None:
        samples = prepare_samples(samples, input_shape)
    shape = tuple(int(s) for s in input_shape)
    if len(shape) < 1 or min(shape) < 1:
        raise AkidaWorkflowError(f"invalid input_shape {input_shape}")
    device = TARGETS[target][1]
    work = copy.deepcopy(model).eval()
    col = _Collector(work, target)
    _static_checks(col)
    if samples is None:
        samples = np.random.default_rng(seed).uniform(-1, 1, (64, *shape)).astype(np.float32)
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    torch.manual_seed(seed)
    if col.found:  # recurrent/attention layers: the toolchain cannot get past them
        return col.report(device, None)
    hw_fraction = None
    quiet = contextlib.redirect_stdout(io.StringIO())  # QuantizeML prints calibration progress
    with quiet:
        hw_fraction = _run_rounds(work, shape, col, samples, target, device)
    return col.report(device, hw_fraction)


def _run_rounds(work, shape, col, samples, target, device):
    from .deploy import map_report

    hw_fraction = None
    for _ in range(8):  # each round patches what the previous one reported
        before = set(col.found)
        if target == "akida2":
            akida_model = _check_akida2(work, col, samples)
        else:
            akida_model = _check_akida1(work, shape, col, samples)
        new = [k for k in col.found if k not in before]
        if akida_model is not None and not any(
                col.found[k].stage == "quantization" for k in new):
            mapping = map_report(akida_model, device)
            hw_fraction = mapping.hw_fraction
            for layer in mapping.software_layers:
                col.add(layer.name, "mapping", layer.reason or "stays in software")
            break
        if not new or not all(_patch(work, k, target, col.order) for k in new):
            break
    return hw_fraction
