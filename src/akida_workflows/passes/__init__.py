"""The rewrites between a PyTorch model and an Akida backend, as passes with two faces.

Each pass (:class:`~akida_workflows.passes.base.Pass`) has a *plan* — read the
one traced graph, say what it will change and what blocks it, hand on the
graph the rewrite leaves — and an *apply* that performs the rewrite. A target's
flow is the ordered list of its passes (:data:`FLOWS`):

- ``akida2``: ``lower_1d`` → ``fold_batchnorm``;
- ``akida1``: ``lower_1d`` → ``fold_batchnorm`` → ``flip_stride2`` →
  ``merge_separable`` → ``pool_head``.

:func:`run_plans` runs every plan of a flow, each on the graph the previous
ones leave; :func:`akida_workflows.compat.check_compatibility` then checks the
rule table on that graph, so a report names the limits in whichever rewrite
they show up, and announces the rewrites ``convert`` applies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import akida1 as _akida1  # noqa: F401  (registers its passes)
from . import lower_1d as _lower_1d  # noqa: F401
from .base import PASSES, Blocker, Change, FlowState, Pass, Plan, register

__all__ = ["PASSES", "FLOWS", "Blocker", "Change", "FlowState", "FlowResult", "Pass", "Plan",
           "register", "flow", "run_plans"]

#: The passes of each target, in order.
FLOWS: dict[str, tuple[str, ...]] = {
    "akida2": ("lower_1d", "fold_batchnorm"),
    "akida1": ("lower_1d", "fold_batchnorm", "flip_stride2", "merge_separable", "pool_head"),
}


def flow(target: str) -> list[Pass]:
    """The passes of ``target``'s flow, in order."""
    return [PASSES[name] for name in FLOWS[target]]


@dataclass
class FlowResult:
    """What :func:`run_plans` found: every plan, and the model/graph the flow leaves.

    Attributes
    ----------
    plans : list of Plan
    model, input_shape, graph :
        The model after the rewrites that change it (the 1-D lowering), its
        input shape and graph.
    planned_graph : ModelGraph or None
        Set when a rewrite is blocked: the graph as it would leave it, for the rules.
    """

    plans: list = field(default_factory=list)
    model: object = None
    input_shape: tuple = ()
    graph: object = None
    planned_graph: object = None

    @property
    def changes(self) -> list[Change]:
        return [c for p in self.plans for c in p.changes]

    @property
    def blockers(self) -> list[Blocker]:
        return [b for p in self.plans for b in p.blockers]


def run_plans(model, input_shape, target: str, graph) -> FlowResult:
    """Every plan of ``target``'s flow on ``graph`` (traced from ``model``), in order.

    A pass that changes the model hands on its model and graph; when one is
    blocked with a planned graph, the passes after it that need a real model
    are not planned (the rules still judge the planned graph).
    """
    state = FlowState(model, tuple(input_shape), graph, target, original=model)
    result = FlowResult(model=model, input_shape=tuple(input_shape), graph=graph)
    for p in flow(target):
        plan = p.plan(state)
        result.plans.append(plan)
        if plan.planned_graph is not None:
            result.planned_graph = plan.planned_graph
            break
        if plan.model is not None:
            state.model, state.input_shape, state.graph = plan.model, plan.input_shape, plan.graph
    result.model, result.input_shape, result.graph = state.model, state.input_shape, state.graph
    return result
