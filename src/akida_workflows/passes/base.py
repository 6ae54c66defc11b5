"""What a pass is: a *plan* that reads the graph and an *apply* that performs the rewrite.

A pass's :meth:`Pass.plan` inspects the :class:`~akida_workflows.graph.ModelGraph`
(and the model it was traced from) without changing anything and returns a
:class:`Plan`: the :class:`Change` s it will make, the :class:`Blocker` s that
stop it (module path, the limit, the measured value, the fix) — all of them,
never only the first — and, when the rewrite changes the model, the model and
graph it leaves, so that the next pass and the rule table see what the
conversion will see. :meth:`Pass.apply` performs the exact rewrite.

Passes are registered by name (:func:`register` refuses duplicates) and run in
the order of a target's flow (:data:`akida_workflows.passes.FLOWS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Change", "Blocker", "Plan", "FlowState", "Pass", "PASSES", "register"]


@dataclass(frozen=True)
class Change:
    """One rewrite the conversion applies.

    Attributes
    ----------
    pass_name : str
    nodes : tuple of str
        Module paths (or fx names) of the operations it rewrites; empty for the
        whole model.
    text : str
        What changes, in the user's terms.
    """

    pass_name: str
    nodes: tuple
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Blocker:
    """What stops a rewrite, tied to the operation it is about.

    Attributes
    ----------
    pass_name, node, kind : str
        The pass, the module path (or fx name) and its type.
    reason : str
        The limit and the measured value.
    fix : str
        What to change in the model, specific to this operation.
    stage, status : str
        Where the conversion stops (``"conversion"`` …) and ``"fixable"`` or
        ``"unsupported"``.
    """

    pass_name: str
    node: str
    kind: str
    reason: str
    fix: str
    stage: str = "conversion"
    status: str = "fixable"


@dataclass
class Plan:
    """The result of a pass's :meth:`~Pass.plan`.

    Attributes
    ----------
    pass_name : str
    changes : list of Change
    blockers : list of Blocker
    model, input_shape, graph :
        The model the pass leaves, its input shape and graph; ``None`` when the
        pass leaves the model as it is (or, with blockers, cannot rewrite it).
    planned_graph : ModelGraph or None
        When the rewrite is blocked: the graph as the rewrite *would* leave it
        (geometry only, no weights), so that the rule table can still judge
        every operation in one run.
    """

    pass_name: str
    changes: list = field(default_factory=list)
    blockers: list = field(default_factory=list)
    model: object = None
    input_shape: tuple | None = None
    graph: object = None
    planned_graph: object = None


@dataclass
class FlowState:
    """What the passes of a flow hand on: the model, its input shape and graph, the target."""

    model: object
    input_shape: tuple
    graph: object
    target: str
    original: object = None
    info: dict = field(default_factory=dict)


class Pass:
    """A rewrite of the model: :meth:`plan` (read only) and :meth:`apply` (the rewrite).

    Subclasses set :attr:`name`, :attr:`targets` and :attr:`summary` and
    implement :meth:`plan`; passes that only announce what a backend does
    during conversion (the Keras bridge's flip, merge and pool folding) keep
    the default :meth:`apply`, which returns the model unchanged.
    """

    name: str = ""
    targets: tuple = ("akida2", "akida1")
    summary: str = ""

    def plan(self, state: FlowState) -> Plan:  # pragma: no cover - abstract
        raise NotImplementedError

    def apply(self, model, input_shape, target: str):
        """``(model, input_shape)`` after the rewrite (default: unchanged)."""
        return model, tuple(input_shape)


#: Registered passes by name.
PASSES: dict[str, Pass] = {}


def register(cls):
    """Class decorator: register one instance of a :class:`Pass` under its name."""
    instance = cls()
    if not instance.name:
        raise ValueError(f"{cls.__name__} has no name")
    if instance.name in PASSES:
        raise ValueError(f"a pass named {instance.name!r} is already registered")
    PASSES[instance.name] = instance
    return cls
