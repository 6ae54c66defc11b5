"""One traced graph of a PyTorch model: the representation every check reads.

:func:`trace_graph` traces a model once — ``torch.fx`` with the output of every
node recorded on one input (functional operations and branches visible), or,
for models fx cannot trace, forward hooks on the leaf modules (a chain is
assumed) — into a :class:`ModelGraph`: the operations in execution order as
:class:`Site` nodes carrying the module path, the op kind, the module or the
functional arguments, and the input/output shapes, with producer and consumer
edges. The rule table (:mod:`akida_workflows.rules`) and the passes
(:mod:`akida_workflows.passes`) read it; a pass that rewrites the model (1-D
lowering) hands on the graph of the model it leaves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Site", "ModelGraph", "trace_graph", "fx_trace", "run_recorded", "NodeError",
           "TRANSPARENT", "WEIGHTED"]

_RECURRENT = {"LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell"}
_ATTENTION = {"MultiheadAttention", "Transformer", "TransformerEncoder", "TransformerDecoder",
              "TransformerEncoderLayer", "TransformerDecoderLayer"}
_WEIGHTED = {"Conv1d", "Conv2d", "Linear"}
#: Operations that move or relabel data without computing (skipped when looking
#: for a layer's neighbours).
_TRANSPARENT = {"Dropout", "Identity", "Flatten", "dropout", "flatten", "view", "reshape",
                "squeeze", "unsqueeze", "contiguous", "size", "getattr", "getitem", "float",
                "Dropout1d", "Dropout2d", "to", "clone", "detach"}


@dataclass
class Site:
    """One operation of the model, as the rules see it.

    Attributes
    ----------
    name : str
        PyTorch qualified name of the module, or the torch.fx name of a
        functional operation (``add``, ``relu_1``, …).
    kind : str
        Module class (``Conv2d``) or function/method name (``add``, ``view``).
    module : torch.nn.Module or None
    in_shapes : list of tuple
        Shapes of the tensor inputs, without the batch axis.
    out_shape : tuple or None
        Output shape without the batch axis (``None`` for tuples/unknown).
    inputs, users : list of int
        Indices of producing / consuming sites (``-1`` is the model input).
    params : dict
        Arguments of a functional operation (``kernel_size``, ``min``, …).
    has_constant_input : bool
        A parameter or constant is one of the operands (e.g. ``x + pos_embedding``).
    """

    index: int
    name: str
    kind: str
    module: object = None
    in_shapes: list = field(default_factory=list)
    out_shape: tuple | None = None
    inputs: list = field(default_factory=list)
    users: list = field(default_factory=list)
    params: dict = field(default_factory=dict)
    has_constant_input: bool = False
    node: object = None  # the torch.fx node, when traced


@dataclass
class ModelGraph:
    """The operations of a model in execution order, with shapes and edges.

    Built by :func:`trace_graph` with ``torch.fx`` (functional operations and
    branches visible) or, for models fx cannot trace, from forward hooks on the
    leaf modules (a chain is assumed).
    """

    sites: list[Site]
    input_shape: tuple
    traced: bool
    gm: object = None
    n_inputs: int = 1
    unfoldable: dict = field(default_factory=dict)  # BatchNorm name -> why fold_batchnorm cannot
    foldable: dict = field(default_factory=dict)  # BatchNorm name -> (direction, into)
    #: For a graph a pass rewrote (1-D lowering): node name -> the original model's Site.
    origins: dict = field(default_factory=dict)
    #: Modules the rewrite added (``mean_gap`` for ``x.mean(-1)``) -> the original op's name.
    helpers: dict = field(default_factory=dict)

    def origin_name(self, name: str) -> str:
        """The name in the user's model of node ``name`` (a helper's op, else ``name``)."""
        return self.helpers.get(name, name)

    # ---------------------------------------------------------------- navigation
    def producers(self, site: Site) -> list[Site]:
        return [self.sites[i] for i in site.inputs if i >= 0]

    def consumers(self, site: Site) -> list[Site]:
        return [self.sites[i] for i in site.users]

    def fed_by_input(self, site: Site) -> bool:
        """True when only data-moving operations separate ``site`` from the model input."""
        seen, todo = set(), list(site.inputs)
        while todo:
            i = todo.pop()
            if i < 0:
                continue
            if i in seen:
                continue
            seen.add(i)
            s = self.sites[i]
            if s.kind not in _TRANSPARENT:
                return False
            todo += s.inputs
        return -1 in site.inputs or bool(seen)

    def is_input_layer(self, site: Site) -> bool:
        return site.kind in _WEIGHTED and self.fed_by_input(site)

    def next_ops(self, site: Site, skip=_TRANSPARENT) -> list[Site]:
        """The first operations after ``site`` that are not in ``skip``."""
        out, todo, seen = [], list(site.users), set()
        while todo:
            i = todo.pop(0)
            if i in seen:
                continue
            seen.add(i)
            s = self.sites[i]
            if s.kind in skip:
                todo += s.users
            else:
                out.append(s)
        return out

    def previous_op(self, site: Site, skip=_TRANSPARENT) -> Site | None:
        """The operation feeding ``site``, skipping data-moving ones (first input only)."""
        i = site.inputs[0] if site.inputs else -1
        while i >= 0:
            s = self.sites[i]
            if s.kind not in skip:
                return s
            i = s.inputs[0] if s.inputs else -1
        return None

    def previous_weighted(self, site: Site) -> Site | None:
        """The nearest Conv/Linear before ``site`` along its first input."""
        i = site.inputs[0] if site.inputs else -1
        while i >= 0:
            s = self.sites[i]
            if s.kind in _WEIGHTED:
                return s
            i = s.inputs[0] if s.inputs else -1
        return None

    def is_last_compute(self, site: Site) -> bool:
        """True when nothing but data-moving operations follow ``site``."""
        return not self.next_ops(site)

    def named(self, name: str) -> list[Site]:
        return [s for s in self.sites if s.name == name]


def _shape(value):
    import torch

    if isinstance(value, torch.Tensor):
        return tuple(int(d) for d in value.shape[1:])
    return None


def _function_name(node) -> str:
    if node.op == "call_method":
        return str(node.target)
    name = getattr(node.target, "__name__", str(node.target))
    return {"iadd": "add", "__add__": "add", "__iadd__": "add", "mul": "mul",
            "__getitem__": "getitem"}.get(name, name)


# ------------------------------------------------------------------ the one tracer


def fx_trace(model, *, error=None, purpose: str = "", fix: str = ""):
    """``torch.fx.symbolic_trace(model)``: the one place the project traces a model.

    The graph (:func:`trace_graph`), BatchNorm folding, the 1-D lowering and the
    Keras bridge all trace through here. When torch.fx fails and ``error`` (an
    exception class) is given, that error is raised instead, naming the model,
    what the trace was ``purpose``-d for and the ``fix`` (also set as its ``fix``
    attribute, which reports show as the row's fix).
    """
    import torch.fx

    try:
        return torch.fx.symbolic_trace(model)
    except Exception as exc:
        if error is None:
            raise
        first = (str(exc).splitlines() or [""])[0]
        err = error(f"cannot trace {type(model).__name__} with torch.fx"
                    f"{' ' + purpose if purpose else ''} ({type(exc).__name__}: {first}). "
                    f"{fix[:1].upper()}{fix[1:]}")
        err.fix = fix
        raise err from exc


class NodeError(Exception):
    """An operation of a traced model raised when run: ``node`` (the torch.fx node) and
    ``cause`` (what it raised)."""

    def __init__(self, node, cause: BaseException):
        super().__init__(f"{node.name}: {cause}")
        self.node, self.cause = node, cause


def run_recorded(gm, example, on_node=None) -> dict:
    """Run the traced ``gm`` once on ``example``: ``{node: output}`` for every node.

    ``on_node(node, output)`` is called as each node runs (the Keras bridge records
    shapes and shape-query values on the nodes). An operation that raises is a
    :class:`NodeError` naming its node.
    """
    import torch
    import torch.fx

    values = {}

    class _Recorder(torch.fx.Interpreter):
        def run_node(self, n):
            try:
                out = super().run_node(n)
            except Exception as exc:
                raise NodeError(n, exc) from exc
            values[n] = out
            if on_node is not None:
                on_node(n, out)
            return out

    with torch.no_grad():
        _Recorder(gm).run(example)
    return values


def _trace_fx(model, example):
    gm = fx_trace(model)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        return gm, None, len(placeholders)
    values = run_recorded(gm, example)  # every node's output (tuples included)
    modules = dict(gm.named_modules())
    sites, index = [], {}
    for node in gm.graph.nodes:
        if node.op in ("placeholder", "output", "get_attr"):
            continue
        if node.op == "call_module":
            module = modules[node.target]
            kind, name = type(module).__name__, str(node.target)
        else:
            module, kind, name = None, _function_name(node), node.name
        tensor_inputs, constant = [], False
        ins = []
        for arg in node.all_input_nodes:
            if arg.op == "placeholder":
                ins.append(-1)
                tensor_inputs.append(_shape(example) if example is not None else None)
            elif arg.op == "get_attr":
                constant = True
            elif arg in index:
                ins.append(index[arg])
                tensor_inputs.append(_shape(values.get(arg)))
        params = {}
        if module is None:
            params = {"args": node.args[1:], "kwargs": dict(node.kwargs)}
            if any(isinstance(a, (int, float)) for a in node.args[:2]) and kind in ("add", "mul",
                                                                                       "sub"):
                constant = True
        site = Site(index=len(sites), name=name, kind=kind, module=module,
                    in_shapes=[s for s in tensor_inputs if s is not None],
                    out_shape=_shape(values.get(node)), inputs=ins, params=params,
                    has_constant_input=constant, node=node)
        index[node] = site.index
        sites.append(site)
    for site in sites:
        for i in site.inputs:
            if i >= 0:
                sites[i].users.append(site.index)
    return gm, sites, 1


def _trace_hooks(model, example):
    """Leaf-module calls in order (a chain is assumed): for models fx cannot trace."""
    import torch

    calls = []
    handles = []

    def hook(module, args, output, name=None):
        shapes = [_shape(a) for a in args if isinstance(a, torch.Tensor)]
        calls.append((name, module, shapes, _shape(output) if isinstance(
            output, torch.Tensor) else None))

    for name, module in model.named_modules():
        if name and not list(module.children()) or type(module).__name__ in _RECURRENT | _ATTENTION:
            handles.append(module.register_forward_hook(
                lambda m, a, o, n=name: hook(m, a, o, n)))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    sites = []
    seen_units = set()
    for name, module, shapes, out in calls:
        if any(name.startswith(u + ".") for u in seen_units):
            continue
        if type(module).__name__ in _RECURRENT | _ATTENTION:
            seen_units.add(name)
        i = len(sites)
        sites.append(Site(index=i, name=name, kind=type(module).__name__, module=module,
                          in_shapes=[s for s in shapes if s is not None], out_shape=out,
                          inputs=[i - 1] if i else [-1]))
    for site in sites:
        for j in site.inputs:
            if j >= 0:
                sites[j].users.append(site.index)
    return sites


def trace_graph(model, input_shape) -> ModelGraph:
    """The :class:`ModelGraph` of ``model`` on one input of ``input_shape``.

    Parameters
    ----------
    model : torch.nn.Module
        In eval mode.
    input_shape : tuple of int
        Channel-first, without the batch axis.

    Returns
    -------
    ModelGraph
        ``n_inputs`` > 1 (and no sites) for a model whose forward takes
        several tensors.

    Raises
    ------
    Exception
        Whatever the model raises on a zero input of that shape.
    """
    import torch

    example = torch.zeros(1, *input_shape)
    try:
        gm, sites, n_inputs = _trace_fx(model, example)
    except Exception:
        gm, sites, n_inputs = None, None, 1
    if n_inputs != 1:
        return ModelGraph([], tuple(input_shape), traced=True, gm=gm, n_inputs=n_inputs)
    if sites is None:
        if isinstance(model, torch.jit.ScriptModule):
            # Compiled TorchScript: neither torch.fx nor hooks see its layers. The rules
            # have nothing to read; the toolchain still judges it.
            with torch.no_grad():
                model(example)
            return ModelGraph([], tuple(input_shape), traced=False)
        return ModelGraph(_trace_hooks(model, example), tuple(input_shape), traced=False)
    return ModelGraph(sites, tuple(input_shape), traced=True, gm=gm)


#: Public names of the op sets the rules share.
TRANSPARENT = _TRANSPARENT
WEIGHTED = _WEIGHTED
