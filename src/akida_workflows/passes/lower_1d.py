"""The 1-D lowering pass: Conv1d, 1-D pooling and BatchNorm1d as their exact 2-D form.

:meth:`Lower1D.plan` runs :func:`akida_workflows.lowering.lower_1d` *without*
a target, so that the hardware limits are judged by the rule table on the
lowered graph — every over-long (dilation-expanded) kernel, stride and input
size in one run — rather than by the lowering, which would stop at the first.
When no exact 2-D form exists (e.g. M5's 80-tap, stride-16 input layer, whose
strides leave no rows to pool), the plan returns the blockers and a *planned*
graph: the 2-D geometry each operation would get (kernel ``d (k - 1) + 1``
square, the same stride both ways, rows left open), on which the rules still
name every limit.
"""

from __future__ import annotations

import copy

from ..errors import IncompatibleModelError
from ..graph import ModelGraph, trace_graph
from .base import Blocker, Change, FlowState, Pass, Plan, register

__all__ = ["Lower1D", "planned_2d_graph"]

_POOLS_1D = {"MaxPool1d": "MaxPool2d", "AvgPool1d": "AvgPool2d",
             "AdaptiveAvgPool1d": "AdaptiveAvgPool2d", "AdaptiveMaxPool1d": "AdaptiveMaxPool2d"}
_FUNCTIONS_1D = {"max_pool1d": "max_pool2d", "avg_pool1d": "avg_pool2d",
                 "adaptive_avg_pool1d": "adaptive_avg_pool2d",
                 "adaptive_max_pool1d": "adaptive_max_pool2d"}


def _single(v):
    return v[0] if isinstance(v, (tuple, list)) else v


def _conv2d_like(m):
    """The square Conv2d a Conv1d becomes (geometry only, on the meta device)."""
    from torch import nn

    k, s, d = _single(m.kernel_size), _single(m.stride), _single(m.dilation)
    k_eff = d * (k - 1) + 1
    if isinstance(m.padding, str):
        p = k_eff // 2 if m.padding == "same" else 0
    else:
        p = _single(m.padding)
        p = k_eff // 2 if p and p == d * (k - 1) // 2 else p
    return nn.Conv2d(m.in_channels, m.out_channels, k_eff, stride=s, padding=p,
                     groups=m.groups, bias=m.bias is not None, device="meta")


def _pool2d_like(m, kind):
    from torch import nn

    cls = getattr(nn, kind)
    if kind.startswith("Adaptive"):
        return cls(_single(m.output_size))
    k = _single(m.kernel_size)
    s = _single(m.stride if m.stride is not None else m.kernel_size) or k
    return cls(k, s, padding=_single(m.padding), ceil_mode=bool(m.ceil_mode))


def _lift_shape(shape):
    """``(C, L)`` → ``(C, None, L)``: rows are open in a planned graph."""
    if shape is not None and len(shape) == 2:
        return (shape[0], None, shape[1])
    return shape


def planned_2d_graph(graph: ModelGraph) -> ModelGraph:
    """``graph`` with every 1-D operation replaced by the 2-D geometry the lowering gives it.

    No weights are computed (convolutions live on the meta device) and the
    number of rows is left open (``None``), so the rules judge kernels,
    strides, widths, channels, pooling and Dense inputs without assuming rows.
    """
    sites = []
    for s in graph.sites:
        n = copy.copy(s)
        n.inputs, n.users, n.params = list(s.inputs), list(s.users), dict(s.params)
        n.in_shapes = [_lift_shape(x) for x in s.in_shapes]
        n.out_shape = _lift_shape(s.out_shape)
        n.node = None
        if s.kind == "Conv1d" and s.module is not None:
            n.kind, n.module = "Conv2d", _conv2d_like(s.module)
        elif s.kind in _POOLS_1D and s.module is not None:
            n.kind = _POOLS_1D[s.kind]
            n.module = _pool2d_like(s.module, n.kind)
        elif s.kind == "BatchNorm1d":
            n.kind = "BatchNorm2d"
        elif s.kind in _FUNCTIONS_1D:
            n.kind = _FUNCTIONS_1D[s.kind]
        sites.append(n)
    planned = ModelGraph(sites, _lift_shape(graph.input_shape), traced=graph.traced,
                         n_inputs=graph.n_inputs)
    planned.unfoldable, planned.foldable = dict(graph.unfoldable), dict(graph.foldable)
    planned.origins = {s.name: s for s in graph.sites}
    return planned


def _blockers(exc: IncompatibleModelError, graph: ModelGraph) -> list[Blocker]:
    """The lowering's refusal as blockers: per named node, or one for the whole model."""
    text = str(exc)
    reason, _, fix = text.partition(" Fix: ")
    kinds = {s.name: s.kind for s in graph.sites}
    out = []
    for node in exc.nodes or ["model"]:
        why = reason.split("): ", 1)[-1] if reason.startswith(f"{node} (") else reason
        out.append(Blocker("lower_1d", node, kinds.get(node, "model"),
                           f"no exact 2-D form: {why}", fix or "see the reason"))
    return out


@register
class Lower1D(Pass):
    """Conv1d / 1-D pooling / BatchNorm1d → their exact 2-D form (both targets)."""

    name = "lower_1d"
    summary = ("1-D layers rewritten as their exact 2-D form (signal copied into identical "
               "rows; dilated kernels expanded with zeros)")

    def plan(self, state: FlowState) -> Plan:
        from .._quiet import quiet_toolchain_logs
        from ..lowering import is_1d, lower_1d

        if not is_1d(state.model):
            return Plan(self.name)
        try:
            with quiet_toolchain_logs():
                lowered = lower_1d(state.model, state.input_shape)
        except IncompatibleModelError as exc:
            return Plan(self.name, blockers=_blockers(exc, state.graph),
                        planned_graph=planned_2d_graph(state.graph))
        lowered.model.lowering_report = lowered.report
        graph = trace_graph(lowered.model, lowered.shape)
        graph.origins = {s.name: s for s in state.graph.sites}
        graph.helpers = dict(getattr(lowered.model, "lowering_helpers", {}))
        changes = [Change(self.name, (), f"1-D layers lowered to their exact 2-D form "
                                          f"({lowered.rows} rows)")]
        for r in lowered.report.rewrites:
            note = r.note.split(";")[0] if r.note.startswith("dilation") else ""
            if note:
                changes.append(Change(self.name, (r.node,), f"{r.node}: {note}"))
        return Plan(self.name, changes, [], lowered.model, lowered.shape, graph)

    def apply(self, model, input_shape, target: str):
        from ..lowering import prepare

        return prepare(model, input_shape)
