"""Everything between a PyTorch model and an Akida target, in PyTorch terms, with fixes.

:func:`check_compatibility` diagnoses the whole model in one run, from two
sources that it keeps apart:

1. the rule table of :mod:`akida_workflows.rules` (Akida's measured limits)
   reads every operation of the model — kernel shapes, pooling, padding,
   bounded activations, residual additions, layer sequences — and reports every
   violation at once, each with the fix that works;
2. the real toolchain — export, quantization, conversion and mapping with
   ``hw_only`` semantics on a virtual device of the target — runs on a *working
   copy* in which each reported operation is replaced by a shape-preserving
   stand-in where one exists (an unbounded ReLU by ReLU6, an unfoldable
   BatchNorm by an identity, …), so that it gets past them and judges the rest.

Every module (by its PyTorch qualified name) and every functional operation
with an issue gets a status: ``ok`` only when the toolchain converted and
mapped the model entirely; ``fixable`` or ``unsupported`` from a rule or from
the toolchain; ``not reached`` when a failure that has no stand-in (an LSTM, a
Conv1d) stopped the toolchain before it could judge the module — never ``ok``
by default. A report with no issue therefore means the model converts and
maps entirely, as :func:`~akida_workflows.deploy.map_report` and
``map(device, hw_only=True)`` would say.

Targets:

- ``"akida2"``: PyTorch → ONNX → QuantizeML (8-bit) → CNN2SNN → Akida 2.0,
  mapped on ``SixNodesIPv2``;
- ``"akida1"``: PyTorch → tf-keras → QuantizeML (4-bit weights and
  activations) → CNN2SNN → Akida 1.0, mapped on ``AKD1000``.
"""

from __future__ import annotations

import copy
import html
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import targets as _targets
from ._quiet import quiet_logs as _quiet_logs
from .errors import AkidaWorkflowError, IncompatibleModelError, describe_exception
from .findings import NOT_JUDGED, fix_all_first, user_rows
from .tables import Table
from .working_copy import _generic_patch, _to_features, _WorkingCopy

__all__ = ["TARGETS", "STATUSES", "CompatibilityIssue", "CompatibilityReport",
           "check_compatibility"]

#: target -> (description, virtual device used for mapping), from
#: :data:`akida_workflows.targets.TARGETS`.
TARGETS = {name: (lim.description, lim.device) for name, lim in _targets.TARGETS.items()}
#: Status of a report row.
STATUSES = ("ok", "fixable", "unsupported", "not reached")
_NOT_REACHED = "not reached"

_RECURRENT = ("LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell")
_ATTENTION = ("MultiheadAttention", "Transformer", "TransformerEncoder", "TransformerDecoder",
              "TransformerEncoderLayer", "TransformerDecoderLayer")
_ACTIVATIONS = ("ReLU", "ReLU6", "Hardtanh", "LeakyReLU", "GELU", "SiLU", "Hardswish", "Mish",
                "ELU", "PReLU", "Softplus", "Sigmoid", "Tanh", "SELU", "CELU")

#: Fixes for toolchain refusals that no rule of the table covers, by op/module type.
_OP_FIXES = {
    "LayerNorm": "remove it, or use a BatchNorm right after a Conv2d/Linear (it folds away)",
    "LayerNormalization": "remove it, or use a BatchNorm right after a Conv2d/Linear",
    **{k: "concatenate only the outputs of quantized convolutions (Akida 2.0), or use one wider "
          "convolution" for k in ("Concat", "cat")},
    "Pad": "use the Conv2d's own padding (padding=k//2) instead of a separate pad",
    **{k: "use the convolution's own padding (padding=k//2) instead of a separate pad"
       for k in ("ConstantPad1d", "ConstantPad2d", "ZeroPad2d")},
    **{k: "keep the channel axis where it is: Akida has no transpose layer"
       for k in ("Transpose", "permute", "transpose")},
    "Embedding": "Akida has no embedding layer: feed numeric features (e.g. a one-hot image)",
    **{k: "use torch.flatten(x, 1) (or an nn.Flatten() module) for this reshape to "
          "(batch, features)" for k in ("view", "reshape", "squeeze")},
    "add": "add a learned constant in the bias of the layer before instead",
    "mul": "fold the scaling into the weights of the layer before",
    **{k: "normalise the input on the host, or fold the constant into the weights and bias of "
          "the first layer" for k in ("sub", "truediv", "div")},
}
_GENERIC_FIX = ("no Akida layer computes this operation: remove it or rewrite it with "
                "Conv2d, depthwise Conv2d, Linear, ReLU6, MaxPool2d(2) and "
                "AdaptiveAvgPool2d(1)")


@dataclass
class CompatibilityIssue:
    """One row of a :class:`CompatibilityReport`.

    Attributes
    ----------
    module : str
        PyTorch qualified name (or the torch.fx name of a functional operation).
    kind : str
        Module class or function name.
    status : str
        ``"ok"``, ``"fixable"``, ``"unsupported"`` or ``"not reached"``.
    stage : str
        Where the toolchain refuses it: ``"export"``, ``"quantization"``,
        ``"conversion"`` or ``"mapping"``.
    reason, fix : str
    rule : str
        Id of the :mod:`~akida_workflows.rules` rule, "" when only the
        toolchain reported it.
    """

    module: str
    kind: str
    status: str
    stage: str = ""
    reason: str = ""
    fix: str = ""
    rule: str = ""


@dataclass
class CompatibilityReport:
    """Per-module verdict of :func:`check_compatibility`.

    Attributes
    ----------
    target : str
    device : str
        Virtual device the model was mapped on.
    rows : list of CompatibilityIssue
        One per module (leaf modules) and per functional operation with an
        issue, in model order.
    hw_fraction : float or None
        Fraction of Akida compute layers in hardware in the mapping below,
        when the toolchain got as far as mapping the whole model.
    mapping : MapReport or None
        The mapping of the converted working copy, when it got that far. When
        ``stand_ins`` is not empty it is the mapping of the model *with those
        modules replaced*: what the model would give once they are fixed.
    rewrites : list of str
        Exact rewrites applied before checking (e.g. 1-D → 2-D lowering).
    toolchain : str
        How far the toolchain got: ``"mapped"`` or where it stopped.
    stand_ins : list of str
        Reported modules replaced by a shape-preserving stand-in in the
        working copy so that the toolchain could check the rest.
    """

    target: str
    device: str
    rows: list[CompatibilityIssue] = field(default_factory=list)
    hw_fraction: float | None = None
    mapping: object = None
    rewrites: list = field(default_factory=list)
    toolchain: str = ""
    stand_ins: list = field(default_factory=list)

    @property
    def issues(self) -> list[CompatibilityIssue]:
        """Rows that are not ``ok`` (``not reached`` included)."""
        return [r for r in self.rows if r.status != "ok"]

    @property
    def ok(self) -> bool:
        """True when the model converts and maps entirely on the target."""
        return bool(self.rows) and not self.issues

    @property
    def complete(self) -> bool:
        """True when every module got a verdict (none ``not reached``)."""
        return not any(r.status == _NOT_REACHED for r in self.rows)

    def raise_for_status(self) -> None:
        """Raise :class:`IncompatibleModelError` listing the issues, if any."""
        if not self.ok:
            raise IncompatibleModelError(str(self), nodes=[r.module for r in self.issues])

    def records(self):
        return [{"module": r.module, "type": r.kind, "status": r.status, "stage": r.stage,
                 "reason": r.reason, "fix": r.fix} for r in self.rows]

    @property
    def np_counts(self) -> dict:
        """NPs of each type the mapper gave the converted model (``{}`` when not mapped):
        the counts ``convert`` then reports, wide Dense layers split over several NPs
        included."""
        return dict(self.mapping.np_counts) if self.mapping is not None else {}

    def summary_line(self) -> str:
        desc = TARGETS[self.target][0]
        if self.ok:
            nps = ", ".join(f"{n} {t}" for t, n in sorted(self.np_counts.items())) or "none"
            passes = self.mapping.hardware_passes if self.mapping is not None else 1
            if passes > 1:
                return (f"{desc}: compatible over {passes} hardware passes, not at once: every "
                        f"layer maps onto {self.device} (NPs: {nps}), but the model does not "
                        f"fit its NPs together, so the mapper reprograms them {passes - 1} "
                        "time(s) per input (slower; a smaller model runs in one pass)")
            return f"{desc}: compatible; every layer maps onto {self.device} (NPs: {nps})"
        counts = {s: sum(r.status == s for r in self.issues) for s in STATUSES[1:]}
        line = (f"{desc}: {counts['fixable']} fixable, {counts['unsupported']} unsupported "
                f"module(s)")
        if counts[_NOT_REACHED]:
            line += f", {counts[_NOT_REACHED]} not reached"
        line += f" (checked on {self.device})"
        if self.rewrites:
            line += "; rewritten first: " + ", ".join(self.rewrites)
        return line

    def __str__(self) -> str:
        return self.summary_line() + "\n" + str(Table(self.records()))

    __repr__ = __str__

    def _repr_html_(self) -> str:
        colors = {"ok": "#e6f4ea", "fixable": "#fff4e5", "unsupported": "#fdecea",
                  _NOT_REACHED: "#eeeeee"}
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


def _type_name(module) -> str:
    """The module's class name (a TorchScript module keeps it as ``original_name``)."""
    return getattr(module, "original_name", None) or type(module).__name__


def _leaf_modules(model):
    """Leaf modules, with recurrent/attention blocks reported as one unit."""
    units = [n for n, m in model.named_modules()
             if n and _type_name(m) in _RECURRENT + _ATTENTION]
    out = []
    for n, m in model.named_modules():
        if not n or any(n.startswith(u + ".") for u in units):
            continue
        if n in units or not list(m.children()):
            out.append((n, m))
    return out


def _sanitize(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_]", "_", name)


def _module_for_name(name: str, module_names) -> str | None:
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
        for scope in reversed(scopes):  # '/features/features.0/conv' style: last full scope
            if scope in module_names:
                return scope
    match = re.match(r"^[a-z0-9]+_(.+)$", name)  # keras_bridge names: kind_torchname
    if match:
        wanted = match.group(1)
        for candidate in module_names:
            if _sanitize(candidate) == wanted:
                return candidate
    return None


def _op_of(name: str) -> str:
    return name.rstrip("/").split("/")[-1] if "/" in name else name



class _Collector:
    """Rows of the report: rule findings, toolchain verdicts, and what was not reached."""

    def __init__(self, model, graph, target, kinds=None):
        self.target = target
        self.graph = graph
        self.modules = dict(_leaf_modules(model))
        #: module -> its type in the user's model (a lowered Conv1d stays "Conv1d")
        self.kinds = {n: _type_name(m) for n, m in self.modules.items()}
        self.kinds.update({n: k for n, k in (kinds or {}).items() if n in self.modules})
        self.order = list(self.modules)
        self.names = set(self.modules)
        self.site_names = {s.name for s in graph.sites} if graph is not None else set()
        self.found: dict[str, CompatibilityIssue] = {}
        self.patched: set[str] = set()
        self.tried: set[tuple[str, str]] = set()  # (key, stand-in) pairs applied or attempted
        self.removed: dict[str, str] = {}  # modules taken out of the working copy -> why
        self.stopped: tuple[str, str] | None = None  # (where, stage) of an unpatchable failure
        self.aliases: dict[str, str] = {}  # working-copy module -> the model's module
        self.contradicted: list[CompatibilityIssue] = []  # rule findings the mapper disproved
        self.mapped = False

    # ------------------------------------------------------------ naming
    def _kind(self, key: str) -> str:
        if key in self.modules:
            return self.kinds[key]
        sites = self.graph.named(key) if self.graph is not None else []
        return sites[0].kind if sites else _op_of(key)

    def resolve(self, name: str) -> str:
        """Report key (module or functional op name) of a toolchain name."""
        module = _module_for_name(name, self.names | set(self.aliases))
        if module:
            return self.aliases.get(module, module)
        if name in self.site_names:
            return name
        op = _op_of(name)
        by_onnx = self._functional_by_onnx(name)
        if by_onnx:
            return by_onnx
        for site_name in self.site_names:  # keras names of functional ops: kind_nodename
            if re.match(rf"^[a-z0-9]+_{re.escape(_sanitize(site_name))}$", name):
                return site_name
        return op

    _ONNX_FUNCTIONS = {"Add": ("add",), "Mul": ("mul",), "Relu": ("relu", "relu_"),
                       "Clip": ("relu6", "clamp", "hardtanh", "clip"), "MatMul": ("matmul", "bmm"),
                       "Concat": ("cat",), "Softmax": ("softmax",), "LogSoftmax": ("log_softmax",),
                       "Sigmoid": ("sigmoid",), "Tanh": ("tanh",), "Squeeze": ("squeeze",),
                       "MaxPool": ("max_pool2d", "max_pool1d"), "Reshape": ("view", "reshape"),
                       "AveragePool": ("avg_pool2d", "avg_pool1d"),
                       "GlobalAveragePool": ("adaptive_avg_pool2d", "mean"),
                       "ReduceMean": ("mean",),
                       "Transpose": ("permute", "transpose")}

    def _functional_by_onnx(self, name: str) -> str | None:
        """'/Add_1' → the second functional add of the model (ONNX numbers them in order)."""
        match = re.match(r"^/?([A-Za-z]+)(?:_(\d+))?$", name.strip("/").split("/")[-1])
        if not match or "/" in name.strip("/") or self.graph is None:
            return None
        kinds = self._ONNX_FUNCTIONS.get(match.group(1))
        if not kinds:
            return None
        candidates = [s.name for s in self.graph.sites if s.module is None and s.kind in kinds]
        index = int(match.group(2) or 0)
        return candidates[index] if index < len(candidates) else None

    # ------------------------------------------------------------ rows
    def add_finding(self, finding):
        key = finding.site.name
        issue = self.found.get(key)
        if issue is None:
            self.found[key] = CompatibilityIssue(
                key, self.kinds.get(key, finding.site.kind), finding.status, finding.stage,
                finding.reason, finding.fix, finding.rule.id)
        elif finding.rule.id not in issue.rule.split("+"):
            issue.reason += "; " + finding.reason
            issue.fix += "; and " + finding.fix
            issue.rule += "+" + finding.rule.id
            if finding.status == "unsupported":
                issue.status = "unsupported"

    def add_blocker(self, blocker) -> None:
        """A pass's blocker (:class:`~akida_workflows.passes.Blocker`) as a row."""
        issue = self.found.get(blocker.node)
        if issue is not None:
            if blocker.reason not in issue.reason:
                issue.reason += "; " + blocker.reason
                issue.fix += "; and " + blocker.fix
            return
        kind = self.kinds.get(blocker.node, blocker.kind or "model")
        self.found[blocker.node] = CompatibilityIssue(
            blocker.node, kind, blocker.status, blocker.stage, blocker.reason, blocker.fix,
            blocker.pass_name)

    def add_toolchain(self, name: str, stage: str, reason: str, *, kind: str | None = None,
                      fix: str | None = None, status: str | None = None) -> str:
        """Record a toolchain verdict on ``name``; returns the report key."""
        from .rules import rule_at

        key = self.resolve(name)
        sites = self.graph.named(key) if self.graph is not None else []
        # the limit this module breaks, read from its geometry (not from the message)
        rule = rule_at(sites[0], self.graph, self.target) if sites else None
        if key in self.found:
            issue = self.found[key]
            same = rule is not None and rule.id in issue.rule.split("+")
            if not same and reason not in issue.reason and fix is not None:
                issue.reason += f"; {reason}"  # a second, independent refusal of this module
                issue.fix += f"; and {fix}"
            return key
        kind = kind or self._kind(key)
        if fix is None:
            fix = _OP_FIXES.get(kind) or _OP_FIXES.get(_op_of(name))
            if kind in ("view", "reshape", "squeeze") and not (
                    sites and _to_features(sites[0], self.graph)):
                fix = None
            elif kind == "squeeze":
                fix += " (torch.squeeze(x) also drops the batch axis of a one-sample batch)"
            if rule is not None and sites:
                try:
                    fix = rule.fix(sites[0], self.graph, self.target)
                except Exception:  # the rule's fix reads geometry this op does not have
                    fix = fix or f"meet the limit: {rule.limit}"
            elif rule is not None:
                fix = fix or f"meet the limit: {rule.limit}"
            fix = fix or _GENERIC_FIX
        if status is None:
            status = rule.status if rule is not None else (
                "unsupported" if fix == _GENERIC_FIX else "fixable")
        self.found[key] = CompatibilityIssue(key, kind, status, stage, reason, fix,
                                             rule.id if rule is not None else "")
        return key

    def drop_contradicted(self) -> None:
        """The working copy mapped entirely: a rule that saw the original op was wrong there.

        Rules are measured limits, so this should not happen; if a rule
        over-reaches on some model, the toolchain's verdict wins.
        """
        for key in [k for k, issue in self.found.items()
                    if issue.rule and k not in self.patched and k not in self.removed]:
            self.contradicted.append(self.found.pop(key))

    def report(self, device, mapping, rewrites) -> CompatibilityReport:
        rows = []
        for name in self.order:
            issue = self.found.get(name)
            if issue is None:
                issue = self._verdict(name)
            rows.append(issue)
        rows += [issue for key, issue in self.found.items() if key not in self.modules]
        if self.graph is not None:
            order = {s.name: s.index for s in reversed(self.graph.sites)}
            rows.sort(key=lambda r: order.get(r.module, len(order)))
        rows = user_rows(rows, self.graph, self.kinds)  # the user's names
        rows = fix_all_first(rows)
        toolchain = "mapped" if self.mapped else (
            f"stopped at {self._user_name(self.stopped[0])} ({self.stopped[1]})"
            if self.stopped else "not run")
        hw = mapping.hw_fraction if mapping is not None else None
        patched = sorted({self._user_name(k) for k in self.patched & set(self.found)})
        return CompatibilityReport(self.target, device, rows, hw, mapping, list(rewrites),
                                   toolchain, patched)

    def _user_name(self, name: str) -> str:
        return self.graph.origin_name(name) if self.graph is not None else name

    def _verdict(self, name: str) -> CompatibilityIssue:
        kind = self.kinds[name]
        if name in self.removed:
            return CompatibilityIssue(name, kind, _NOT_REACHED, "", self.removed[name],
                                      "fix the issues above and check again")
        if self.mapped:
            return CompatibilityIssue(name, kind, "ok")
        if self.stopped:
            where, stage = self.stopped
            return CompatibilityIssue(
                name, kind, _NOT_REACHED, "",
                f"{NOT_JUDGED}{where} ({stage})",
                f"fix {where} and check again")
        return CompatibilityIssue(name, kind, _NOT_REACHED, "", "not judged",
                                  "fix the issues above and check again")


def _fold_quietly(model):
    """fold_batchnorm without its FoldingWarning: the report lists what stayed."""
    from .folding import fold_batchnorm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fold_batchnorm(model)


# ---------------------------------------------------------------- toolchain rounds


def _check_akida2(model, col: _Collector, samples):
    """One pass of the Akida 2.0 toolchain; the converted model, or None where it stopped.

    Returns ``(akida_model, new_keys, stage)``.
    """
    import torch

    from .convert import HEAD_OPS, _first_unquantized, quantize_onnx, to_akida, unquantized_nodes
    from .export import export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        try:
            exported = export_onnx(model, torch.from_numpy(samples[:1]), Path(tmp) / "m.onnx")
        except Exception as exc:  # the exporter and ONNX Runtime raise many types
            return None, [_export_failure(col, exc)], "export"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                quantized = quantize_onnx(exported, samples, allow_partial=True)
        except Exception as exc:
            return None, [_quantization_failure(col, exported, exc)], "quantization"
        left = unquantized_nodes(quantized)
        causes = _first_unquantized(quantized, left) if left else []
        blocking = [c for c in causes if c[1] not in HEAD_OPS]
        if blocking:
            keys = []
            for node, op in blocking:
                keys.append(col.add_toolchain(
                    node, "quantization",
                    f"{op}: no quantizable pattern; QuantizeML stops here and CNN2SNN would drop "
                    "the rest of the graph", kind=None))
            return None, keys, "quantization"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                akida_model = to_akida(quantized, allow_partial=True)
        except Exception as exc:
            message = describe_exception(exc).replace("cnn2snn.convert failed: ", "")
            nodes = getattr(exc, "nodes", None) or [_first_unpatched_finding(col) or "model"]
            keys = [col.add_toolchain(node, "conversion", message) for node in nodes]
            return None, keys, "conversion"
    return akida_model, [], ""


def _first_unpatched_finding(col) -> str | None:
    """The first operation a rule reported that still stands in the working copy."""
    for site in col.graph.sites if col.graph is not None else []:
        issue = col.found.get(site.name)
        if issue is not None and issue.rule and site.name not in col.patched:
            return site.name
    return None


def _export_failure(col, exc) -> str:
    culprit = _first_unpatched_finding(col)
    if culprit is not None:  # the exporter stops on an operation the rules already reported
        return culprit
    fix = getattr(exc, "fix", None) or ("make forward() exportable with torch.onnx.export("
                                        "dynamo=False) on one input of this shape")
    return col.add_toolchain("model", "export", describe_exception(exc), kind="model", fix=fix,
                             status="unsupported")


def _quantization_failure(col, exported, exc) -> str:
    """QuantizeML raised (rather than leaving nodes in float): name the operation when possible."""
    culprit = _first_unpatched_finding(col)
    if culprit is not None:
        return culprit
    node = _first_quantizable(exported)
    return col.add_toolchain(node or "model", "quantization", describe_exception(exc),
                             kind=None if node else "model")


def _first_quantizable(exported) -> str | None:
    model = getattr(exported, "model", exported)
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul"):
            return node.name or node.output[0]
    return None


def _check_akida1(model, input_shape, col: _Collector, samples):
    from .keras_bridge import convert_keras, quantize_4bit, to_keras, to_nhwc

    try:
        work = _fold_quietly(model)
    except Exception as exc:
        return None, [col.add_toolchain("model", "conversion", describe_exception(exc),
                                        kind="model", fix=getattr(exc, "fix", None))], "conversion"
    keys = []
    for entry in work.folding_report.unfolded:
        keys.append(col.add_toolchain(entry.name, "conversion",
                                      f"BatchNorm cannot be folded: {entry.reason}"))
    if keys:
        return None, keys, "conversion"
    try:
        keras_model = to_keras(work, input_shape)
    except IncompatibleModelError as exc:
        reason = exc.reason or (str(exc).split(": ", 1)[-1] if exc.nodes else str(exc))
        keys = [col.add_toolchain(node, "conversion", reason, fix=exc.fix)
                for node in exc.nodes or [_first_unpatched_finding(col) or "model"]]
        return None, keys, "conversion"
    except Exception as exc:  # the bridge's tracer can raise anything on unusual models
        return None, [_first_unpatched_finding(col) or col.add_toolchain(
            "model", "conversion", describe_exception(exc), kind="model", status="unsupported",
            fix=_GENERIC_FIX)], "conversion"
    try:
        quantized = quantize_4bit(keras_model, to_nhwc(samples, flip=keras_model),
                                  akida_version="v1")
    except Exception as exc:
        if not isinstance(exc, IncompatibleModelError):
            return None, [_first_unpatched_finding(col) or col.add_toolchain(
                "model", "quantization", describe_exception(exc), kind="model")], "quantization"
        keys = [col.add_toolchain(node, "quantization", exc.reason or str(exc))
                for node in exc.nodes or [_first_unpatched_finding(col) or "model"]]
        return None, keys, "quantization"
    try:
        return convert_keras(quantized), [], ""
    except Exception as exc:
        message = str(exc).split("failed for Akida v1: ", 1)[-1]
        # the layer at fault, as convert_keras found it in the model (not in the text)
        names = [n for n in getattr(exc, "nodes", None) or () if col.resolve(n) != _op_of(n)]
        keys = [col.add_toolchain(node, "conversion", message)
                for node in names[:1] or [_first_unpatched_finding(col) or "model"]]
        return None, keys, "conversion"


#: Mapper reasons that follow from another layer staying in software.
_CONSEQUENCE = re.compile(r"max pooling cannot be the last layer|must be followed by|"
                          r"requires an outbound that is mappable|^kept in software",
                          re.IGNORECASE)


def _record_mapping(col: _Collector, mapping) -> None:
    """Software layers → rows; a pooled layer left last by another's refusal is a consequence."""
    software = mapping.software_layers
    roots = [layer for layer in software if layer.reason and not _CONSEQUENCE.search(layer.reason)]
    for layer in software:
        key = col.resolve(layer.name)
        if key in col.found:
            continue
        fused = _pool_rule_after(col, key)  # a pooling with a finding, run inside this layer
        if not _CONSEQUENCE.search(layer.reason or ""):
            if fused is None:
                col.add_toolchain(layer.name, "mapping", layer.reason or "stays in software")
            else:  # the mapper names the layer; the pooling inside it broke the limit
                shown = col._user_name(fused)
                col.add_toolchain(
                    layer.name, "mapping",
                    f"{layer.reason or 'stays in software'} (the limit of {shown}, which runs "
                    "inside this layer)",
                    fix=f"nothing to change here: it maps once {shown} is fixed",
                    status="fixable")
            continue
        cause = fused or _cause_after(col, key) or next(
            (col.resolve(r.name) for r in roots if col.resolve(r.name) != key), None)
        if cause is None:
            col.add_toolchain(
                layer.name, "mapping", layer.reason,
                fix=("follow this max-pooled convolution with another, unpooled "
                     "convolution (nn.Conv2d(C, C, 3, padding=1) → nn.ReLU6()), or drop "
                     "the pooling"))
            continue
        reason = layer.reason
        if reason.startswith("kept in software"):
            reason = "kept in software with the rest of its sequence"
        col.add_toolchain(layer.name, "mapping", f"{reason} (because of {cause})",
                          fix=f"nothing to change here: it maps once {cause} is fixed",
                          status="fixable")


def _cause_after(col, key) -> str | None:
    """The first module after ``key`` (in execution order) with a rule's finding."""
    graph = col.graph
    if graph is None:
        return None
    sites = graph.named(key)
    start = sites[0].index if sites else -1
    for site in graph.sites[start + 1:]:
        issue = col.found.get(site.name)
        if issue is not None and issue.rule and site.name != key:
            return site.name
    return None


def _pool_rule_after(col, key) -> str | None:
    """The pooling reported by a rule right after convolution ``key`` (the mapper names the conv)."""
    graph = col.graph
    if graph is None:
        return None
    for site in graph.named(key):
        for nxt in graph.next_ops(site, skip={"ReLU", "ReLU6", "Hardtanh", "relu", "relu6",
                                               "BatchNorm2d", "Dropout", "Identity"}):
            issue = col.found.get(nxt.name)
            if issue is not None and issue.rule:
                return nxt.name
    return None


def _action_id(action) -> str:
    if isinstance(action, (list, tuple)):
        return "+".join(_action_id(a[1] if isinstance(a, tuple) else a) for a in (
            action if isinstance(action, list) else [action]))
    return action if isinstance(action, str) else type(action).__name__


def _next_patch(col, key, site, target):
    """A stand-in for ``site`` not tried yet: its rule's, then a generic one."""
    from .rules import RULES

    issue = col.found.get(key)
    candidates = []
    for rule in RULES:
        if issue and rule.id in issue.rule.split("+") and rule.patch is not None:
            candidates.append(rule.patch(site, col.graph, target))
    candidates.append(_generic_patch(site, target, col.graph))
    for action in candidates:
        if action is not None and (key, _action_id(action)) not in col.tried:
            return action
    return None


def _run_toolchain(work: _WorkingCopy, shape, col: _Collector, samples, target, device):
    from .deploy import map_report

    for _ in range(12):  # each round gets past what the previous one refused
        try:
            if target == "akida2":
                akida_model, keys, stage = _check_akida2(work.current, col, samples)
            else:
                akida_model, keys, stage = _check_akida1(work.current, shape, col, samples)
        except Exception as exc:  # last resort: never crash, say what stopped the check
            key = _first_unpatched_finding(col) or col.add_toolchain(
                "model", "conversion", describe_exception(exc), kind="model",
                status="unsupported", fix=_GENERIC_FIX)
            col.stopped = (key, "conversion")
            return None
        if akida_model is not None:
            try:
                mapping = map_report(akida_model, device)
            except AkidaWorkflowError as exc:
                col.add_toolchain("model", "mapping", str(exc), kind="model",
                                  status="unsupported", fix=_GENERIC_FIX)
                col.stopped = ("model", "mapping")
                return None
            _record_mapping(col, mapping)
            col.mapped = True
            if mapping.fully_mapped:
                col.drop_contradicted()
            return mapping
        progressed = False
        for key in keys:
            for site in col.graph.named(key) if col.graph is not None else []:
                action = _next_patch(col, key, site, target)
                if action is None:
                    continue
                col.tried.add((key, _action_id(action)))
                if work.patch(site, action, col):
                    col.patched.add(key)
                    progressed = True
                    break
        if not progressed:
            col.stopped = (keys[0] if keys else "model", stage or "conversion")
            return None
    col.stopped = ("model", "conversion")
    return None


# ---------------------------------------------------------------------- the check


def check_compatibility(model, input_shape, target: str = "akida2", *,
                        samples=None, seed: int = 0) -> CompatibilityReport:
    """Diagnose a PyTorch model for an Akida target in one run: rules plus the real toolchain.

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
        Every leaf module (and functional operation with an issue) with
        ``ok`` / ``fixable`` / ``unsupported`` / ``not reached``, the stage
        (export, quantization, conversion, mapping), the reason, the fix and
        the rule id.

    Raises
    ------
    AkidaWorkflowError
        Unknown target, invalid ``input_shape``, or a model that does not run
        on an input of that shape (the message says why). A 1-D model past the
        target's limits is *reported* (every limit, in whichever rewrite it shows
        up), not raised.
    """
    import torch

    from .passes import run_plans
    from .rules import check_graph

    shape, device = _validated(model, input_shape, target)
    work = copy.deepcopy(model).eval()
    torch.manual_seed(seed)
    graph = _trace(work, shape)
    kinds = {n: _type_name(m) for n, m in _leaf_modules(work)}
    if graph.n_inputs != 1:
        return _several_inputs(work, graph, target, device)
    with _quiet_logs():
        flow = run_plans(work, shape, target, graph)
    rewrites = [change.text for change in flow.changes]
    if flow.planned_graph is not None:  # a rewrite is blocked: the rules judge its plan
        return _planned_report(work, flow, target, device, rewrites, kinds)
    work, shape, graph = flow.model, flow.input_shape, flow.graph
    col = _Collector(work, graph, target, kinds)
    findings = check_graph(graph, target)
    for finding in findings:
        col.add_finding(finding)
    for blocker in flow.blockers:
        col.add_blocker(blocker)
    working = _WorkingCopy(work, graph)
    _patch_findings(findings, working, col, graph, target)
    samples = _samples(samples, shape, seed)
    with _quiet_logs():
        mapping = _run_toolchain(working, shape, col, samples, target, device)
    return col.report(device, mapping, rewrites)


def _validated(model, input_shape, target) -> tuple[tuple, str]:
    """``(input shape, virtual device)``, or AkidaWorkflowError on bad arguments."""
    from .lowering import is_1d

    if target not in TARGETS:
        raise AkidaWorkflowError(f"target must be one of {sorted(TARGETS)}, got {target!r}")
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        raise AkidaWorkflowError(f"invalid input_shape {input_shape!r}") from None
    if len(shape) < 1 or min(shape) < 1:
        raise AkidaWorkflowError(f"invalid input_shape {input_shape}")
    if is_1d(model) and len(shape) != 2:
        raise IncompatibleModelError(
            f"{type(model).__name__} has 1-D layers: give its input shape as C,L "
            f"(channels, length), got {','.join(map(str, shape))}")
    return shape, TARGETS[target][1]


def _trace(model, shape):
    """The one graph of ``model`` (:func:`akida_workflows.graph.trace_graph`), quietly."""
    from .graph import trace_graph

    try:
        with _quiet_logs():
            return trace_graph(model, shape)
    except Exception as exc:
        raise AkidaWorkflowError(
            f"{type(model).__name__} does not run on an input of shape {shape}: "
            f"{describe_exception(exc)}") from exc


def _several_inputs(model, graph, target, device) -> CompatibilityReport:
    col = _Collector(model, graph, target)
    col.add_toolchain("model", "export",
                      f"forward() takes {graph.n_inputs} inputs; an Akida model takes one",
                      kind="model", status="unsupported",
                      fix="merge the inputs into one tensor before the model (e.g. extra "
                          "features as channels), or run the other branch on the host")
    col.stopped = ("model", "export")
    return col.report(device, None, [])


def _patch_findings(findings, working, col, graph, target) -> None:
    """Put each reported operation's stand-in (if its rule has one) in the working copy."""
    for finding in findings:
        if finding.rule.patch is None or finding.site.name in col.patched:
            continue
        action = finding.rule.patch(finding.site, graph, target)
        if action is None:
            continue
        col.tried.add((finding.site.name, _action_id(action)))
        if working.patch(finding.site, action, col):
            col.patched.add(finding.site.name)


def _samples(samples, shape, seed) -> np.ndarray:
    """Calibration inputs as the (lowered) model takes them; random in [-1, 1] by default."""
    from .lowering import prepare_samples

    if samples is None:
        return np.random.default_rng(seed).uniform(-1, 1, (64, *shape)).astype(np.float32)
    return np.ascontiguousarray(prepare_samples(samples, shape), dtype=np.float32)


def _planned_report(model, flow, target, device, rewrites, kinds) -> CompatibilityReport:
    """A rewrite has no exact form: the rules judge the graph it would leave; nothing runs."""
    from .rules import check_graph

    col = _Collector(model, flow.planned_graph, target, kinds)
    findings = check_graph(flow.planned_graph, target)
    for finding in findings:
        col.add_finding(finding)
    for blocker in flow.blockers:
        if blocker.node != "model" or not findings:
            col.add_blocker(blocker)
    blocked = next((b.node for b in flow.blockers if b.node in col.found), None)
    first = blocked or next((s.name for s in flow.planned_graph.sites if s.name in col.found),
                            "model")
    col.stopped = (first, "no 2-D form yet: nothing was converted")
    return col.report(device, None, rewrites)
