"""The graph pass of :func:`~akida_workflows.lowering.lower_1d`: every signal node made 2-D.

:class:`_Lifter` walks a ``torch.fx`` graph once, node by node, running the
original and the rewritten node side by side on a random batch. Each node that
sees the signal is rewritten into its 2-D form (the converters of
:mod:`akida_workflows.lowering_ops`) and checked against the original as it is
built; the Linear after the Flatten gets its weights permuted to the lowered
feature order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import IncompatibleModelError
from .lowering_ops import (
    _ELEMENTWISE_FUNCTIONS,
    _ELEMENTWISE_MODULES,
    _FLATTENING_METHODS,
    _FUNCTIONAL_POOLS,
    _cat_dim,
    _converter_for,
    _fn_name,
    _reduces_time_axis,
    _refuse,
    _run,
)

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


def _feature_index(c: int, h: int, width: int, valid: int) -> np.ndarray:
    """:attr:`_Flat.index` of a flattened ``(C, H, L')`` signal: the middle row's valid columns."""
    index = -np.ones((c, h, width), dtype=np.int64)
    mid = h // 2
    original = np.arange(c * valid).reshape(c, valid)
    index[:, mid, :valid] = original
    return index.ravel()


def _permuted_linear(m, index: np.ndarray):
    """``m`` reading the lowered features: permuted weights, zero for features it ignores."""
    import torch
    from torch import nn

    linear = nn.Linear(len(index), m.out_features, bias=m.bias is not None)
    with torch.no_grad():
        weight = torch.zeros(m.out_features, len(index), dtype=m.weight.dtype)
        keep = torch.from_numpy(np.flatnonzero(index >= 0))
        weight[:, keep] = m.weight.detach()[:, torch.from_numpy(index[index >= 0])]
        linear.weight.copy_(weight)
        if m.bias is not None:
            linear.bias.copy_(m.bias.detach())
    return linear.eval()


# ----------------------------------------------------------------------------- the pass


class _Lifter:
    """Pass 2 of :func:`~akida_workflows.lowering.lower_1d` on the traced model ``gm``.

    ``old_env`` holds each node's original value, ``new_env`` its lowered value and
    ``info`` what the lowered value stands for (:class:`_Signal`, :class:`_Flat`, or
    None where the signal does not reach). ``record(node, kind, into, shape, note)``
    is called for each rewrite, in order. The lifter is also the ``ctx`` the module
    converters receive.
    """

    def __init__(self, gm, tolerance: float, record: Callable):
        self.gm = gm
        self.graph = gm.graph
        self.tolerance = tolerance
        self._record = record
        self.modules = dict(gm.named_modules())
        self.original = dict(self.modules)  # a module called twice is lowered once per call
        self.lowered: set = set()
        self.old_env: dict = {}
        self.new_env: dict = {}
        self.info: dict = {}
        self.inputs = None
        #: modules the pass adds -> the user's op or module they stand for
        self.helpers: dict = {}

    # ------------------------------------------------------------------- bookkeeping

    def set_module(self, target: str, module) -> None:
        parent, _, child = target.rpartition(".")
        setattr(self.gm.get_submodule(parent) if parent else self.gm, child, module)
        self.modules[target] = module

    def add_module(self, base: str, module, origin: str) -> str:
        """Add ``module`` under a free name from ``base``; it stands for the user's ``origin``
        (the op or module a report names instead of it)."""
        name, i = base, 0
        while name in self.modules:
            i += 1
            name = f"{base}_{i}"
        self.gm.add_submodule(name, module)
        self.modules[name] = module
        self.helpers[name] = origin
        return name

    def old(self, a):
        import torch.fx

        return torch.fx.node.map_arg(a, lambda n: self.old_env[n])

    def new(self, a):
        import torch.fx

        return torch.fx.node.map_arg(a, lambda n: self.new_env[n])

    def signal_inputs(self, node):
        return [a for a in node.all_input_nodes if isinstance(self.info.get(a), _Signal)]

    def flat_inputs(self, node):
        return [a for a in node.all_input_nodes if isinstance(self.info.get(a), _Flat)]

    def record(self, node, kind, into, note=""):
        value = self.new_env[node]
        shape_ = tuple(int(s) for s in value.shape[1:]) if hasattr(value, "shape") else ()
        self._record(node.target if node.op == "call_module" else node.name,
                     kind, into, shape_, note)

    def check(self, node, label):
        o, n = self.old_env[node], self.new_env[node]
        sig = self.info[node]
        if not isinstance(sig, _Signal):
            return
        if n.ndim != 4 or n.shape[:2] != o.shape[:2] or sig.valid != o.shape[-1]:
            raise IncompatibleModelError(
                f"{label}: the lowered output {tuple(n.shape)} does not match the original "
                f"{tuple(o.shape)}; please report this model", nodes=[label])
        diff = float((n[..., : sig.valid] - o[:, :, None, :]).abs().max())
        scale = max(1.0, float(o.abs().max()))
        if diff > self.tolerance * scale:
            raise IncompatibleModelError(
                f"{label}: the 2-D rewrite differs from the original by {diff:.3g}; "
                "please report this model", nodes=[label])

    def flatten(self, node, src, label, kind):
        """Make ``node`` (a flattening op on a signal) an ``nn.Flatten``; record the feature order."""
        import torch
        from torch import nn

        sig, value = self.info[src], self.new_env[src]
        c, h, width = (int(v) for v in value.shape[1:])
        if node.op == "call_module":  # an nn.Flatten flattens (C, H, L) as it is
            flat = node
        else:
            target = self.add_module(f"{node.name}_flatten", nn.Flatten(), node.name)
            with self.graph.inserting_after(node):
                flat = self.graph.call_module(target, (src,))
            node.replace_all_uses_with(flat)
        self.old_env[flat] = self.old_env[node]
        self.new_env[flat] = torch.flatten(value, 1)
        self.info[flat] = _Flat(_feature_index(c, h, width, sig.valid))
        note = f"{c}x{h}x{width} -> {c * h * width} features"
        if sig.tail(value):
            note += f"; {sig.tail(value)} padded column(s) get zero weights"
        self._record(label, kind, "Flatten", (c * h * width,), note)
        return flat

    # ------------------------------------------------------------------ node by node

    def run(self, x, lifted):
        """Lower every node of the graph; ``x`` is the random batch, ``lifted`` it lifted."""
        self.inputs = (x, lifted)
        handlers = {"placeholder": self.placeholder, "output": self.output,
                    "get_attr": self.get_attr, "call_module": self.call_module}
        for node in list(self.graph.nodes):
            handlers.get(node.op, self.call_function)(node)
        self.graph.eliminate_dead_code()
        self.graph.lint()
        self.gm.delete_all_unused_submodules()
        self.gm.recompile()
        # which added module stands for which op of the user's model (reports name those)
        self.gm.lowering_helpers = {n: o for n, o in self.helpers.items()
                                    if n in dict(self.gm.named_modules())}
        return self.gm

    def placeholder(self, node):
        if self.old_env:
            raise IncompatibleModelError("models with several inputs cannot be lowered")
        x, lifted = self.inputs
        self.old_env[node] = x
        self.new_env[node] = lifted
        self.info[node] = _Signal(int(x.shape[-1]))

    def output(self, node):
        """The output node computes nothing: the values it returns are lowered already."""

    def get_attr(self, node):
        gm = self.gm
        self.old_env[node] = self.new_env[node] = getattr(gm, node.target) \
            if "." not in node.target else gm.get_parameter(node.target)

    # ------------------------------------------------------------------------ modules

    def call_module(self, node):
        from torch import nn

        sig_in, flat_in = self.signal_inputs(node), self.flat_inputs(node)
        m = self.original.get(node.target, self.modules[node.target])
        kind = type(m).__name__
        self.old_env[node] = m(*self.old(node.args), **self.old(node.kwargs))
        if sig_in:
            self.module_on_signal(node, m, kind, sig_in[0])
        elif flat_in and isinstance(m, nn.Linear):
            self.permute_linear(node, m, kind, flat_in[0])
        elif flat_in:
            self.module_on_features(node, m, kind, flat_in[0])
        else:
            self.new_env[node] = m(*self.new(node.args), **self.new(node.kwargs))
            self.info[node] = None

    def module_on_signal(self, node, m, kind, src):
        from torch import nn

        sig = self.info[src]
        converter = _converter_for(m)
        if isinstance(m, nn.Flatten):
            if m.start_dim != 1 or m.end_dim != -1:
                raise _refuse(node.target, kind, f"Flatten(start_dim={m.start_dim}, "
                              f"end_dim={m.end_dim})", "use nn.Flatten() (start_dim=1)")
            self.flatten(node, src, node.target, kind)
        elif converter is not None:
            self.convert_module(node, m, kind, src, converter)
        elif kind in _ELEMENTWISE_MODULES:
            self.new_env[node] = m(*self.new(node.args), **self.new(node.kwargs))
            self.info[node] = _Signal(sig.valid)
            self.check(node, node.target)
        elif isinstance(m, nn.Linear):
            raise _refuse(node.target, kind, "a Linear applied along the time axis has "
                          "no Akida form", "flatten (nn.Flatten()) before the Linear, "
                          "or use a Conv1d with kernel 1 to mix channels")
        else:
            raise _refuse(node.target, kind, "no 2-D equivalent is known for this layer",
                          "use Conv1d, MaxPool1d, AvgPool1d, AdaptiveAvgPool1d(1), "
                          "BatchNorm1d, ReLU/ReLU6, Flatten and Linear")

    def convert_module(self, node, m, kind, src, converter):
        from torch import nn

        sig, value = self.info[src], self.new_env[src]
        if sig.tail(value) and not isinstance(m, nn.Dropout1d):
            raise _refuse(
                node.target, kind,
                f"it follows a pooling of an odd length: Akida pools 'same' and "
                f"keeps {sig.tail(value)} extra column(s) the original drops, "
                "which this layer would read",
                "use ceil_mode=True in the pooling layers and retrain, or a signal "
                "length that every pooling divides (window or resample it)")
        lowered, into, note = converter(m, node.target, value, self)
        if node.target in self.lowered:  # second call: its own lowered copy
            node.target = self.add_module(node.target.replace(".", "_"), lowered, node.target)
        else:
            self.set_module(node.target, lowered)
            self.lowered.add(node.target)
        self.new_env[node] = lowered(self.new_env[src])
        valid = int(self.old_env[node].shape[-1])
        self.info[node] = _Signal(valid)
        if isinstance(lowered, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            self.info[node] = _Signal(1)
        self.record(node, kind, into, note)
        self.check(node, node.target)

    def permute_linear(self, node, m, kind, src):
        """Pass 3 (``permute_linear``): the Linear after the Flatten reads the lowered order."""
        index = self.info[src].index
        if m.in_features != int(np.max(index)) + 1:
            raise _refuse(node.target, kind, f"expects {m.in_features} features, the "
                          f"flattened signal has {int(np.max(index)) + 1}",
                          "check the model's input length")
        linear = _permuted_linear(m, index)
        self.set_module(node.target, linear)
        self.new_env[node] = linear(self.new_env[src])
        self.info[node] = None
        self.record(node, kind, f"Linear {len(index)} -> {m.out_features}",
                    f"weights permuted to the lowered (C, H, L) order; "
                    f"{int(np.sum(index < 0))} input(s) get zero weights")

    def module_on_features(self, node, m, kind, src):
        from torch import nn

        if isinstance(m, nn.BatchNorm1d):
            raise _refuse(node.target, kind, "a BatchNorm on flattened features that "
                          "could not be folded", "put a Linear right after it (it folds)")
        if kind not in _ELEMENTWISE_MODULES:
            raise _refuse(node.target, kind, "only element-wise layers may sit between the "
                          "Flatten and the Linear", "move it after the Linear")
        self.new_env[node] = m(*self.new(node.args), **self.new(node.kwargs))
        self.info[node] = self.info[src]

    # ------------------------------------------------------- functions and methods

    def call_function(self, node):
        """A ``call_function`` or ``call_method`` node."""
        sig_in, flat_in = self.signal_inputs(node), self.flat_inputs(node)
        name = _fn_name(node)
        self.old_env[node] = _run(node, self.old)
        if sig_in:
            self.function_on_signal(node, name, sig_in)
        elif flat_in:  # element-wise only until the Linear
            if name not in _ELEMENTWISE_FUNCTIONS:
                raise _refuse(node.name, name, "only element-wise functions may sit between "
                              "the Flatten and the Linear", "move it after the Linear")
            self.new_env[node] = _run(node, self.new)
            self.info[node] = self.info[flat_in[0]]
        else:
            self.new_env[node] = _run(node, self.new)
            self.info[node] = None

    def function_on_signal(self, node, name, sig_in):
        src = sig_in[0]
        out_old = self.old_env[node]
        if name in ("size", "dim") or (name == "getattr" and node.args[1] in ("shape",)):
            self.new_env[node] = out_old  # batch size and rank questions: as before
            self.info[node] = None
        elif name in _FLATTENING_METHODS or name == "flatten":
            ok = (hasattr(out_old, "shape") and out_old.ndim == 2
                  and out_old.shape[0] == self.old_env[src].shape[0])
            if not ok:
                raise _refuse(node.name, name, f"reshapes the signal to "
                              f"{tuple(getattr(out_old, 'shape', ()))}",
                              "only flattening to (N, features) is supported")
            self.flatten(node, src, node.name, name)
            self.graph.erase_node(node)
        elif name == "mean" and _reduces_time_axis(node, out_old):
            self.mean_over_time(node, src, out_old)
        elif name in _FUNCTIONAL_POOLS:
            self.functional_pool(node, name, src, out_old)
        elif name in _ELEMENTWISE_FUNCTIONS or name == "cat" and _cat_dim(node) == 1:
            self.new_env[node] = _run(node, self.new)
            tails = {self.info[a].tail(self.new_env[a]) for a in sig_in}
            self.info[node] = _Signal(self.info[src].valid)
            if len(tails) > 1:
                raise _refuse(node.name, name, "its inputs have different lengths after "
                              "'same' pooling", "use ceil_mode=True in the pooling layers")
            self.check(node, node.name)
        else:
            raise _refuse(node.name, name, "this operation on the signal has no 2-D equivalent "
                          "here", "use layers (Conv1d, pooling, activations, Flatten) or "
                          "element-wise functions; reshape only to flatten before the head")

    def mean_over_time(self, node, src, out_old):
        """``x.mean(-1)``: global average pooling and a Flatten."""
        import torch
        from torch import nn

        if out_old.ndim != 2:
            raise _refuse(node.name, "mean", "keepdim=True leaves a 3-D tensor",
                          "use x.mean(-1) (no keepdim) before the Linear head")
        if self.info[src].tail(self.new_env[src]):
            raise _refuse(node.name, "mean", "it averages over extra columns kept by "
                          "'same' pooling", "use ceil_mode=True in the pooling layers")
        target = self.add_module(f"{node.name}_gap", nn.AdaptiveAvgPool2d(1), node.name)
        flat_target = self.add_module(f"{node.name}_flatten", nn.Flatten(), node.name)
        with self.graph.inserting_before(node):
            gap = self.graph.call_module(target, (src,))
            res = self.graph.call_module(flat_target, (gap,))
        node.replace_all_uses_with(res)
        self.graph.erase_node(node)
        self.new_env[gap] = self.modules[target](self.new_env[src])
        self.old_env[res] = out_old
        self.new_env[res] = torch.flatten(self.new_env[gap], 1)
        self.info[res] = _Flat(np.arange(out_old.shape[1]))
        self._record(node.name, "mean over time", "AdaptiveAvgPool2d(1) + Flatten",
                     tuple(self.new_env[res].shape[1:]))

    def functional_pool(self, node, name, src, out_old):
        """``F.max_pool1d`` …: the pooling module it stands for, then lowered as a module."""
        module = _FUNCTIONAL_POOLS[name](node)
        target = self.add_module(f"{node.name}_1d", module, node.name)
        with self.graph.inserting_before(node):
            call = self.graph.call_module(target, (src,))
        node.replace_all_uses_with(call)
        self.graph.erase_node(node)
        self.old_env[call] = out_old
        converter = _converter_for(module)
        if self.info[src].tail(self.new_env[src]):
            raise _refuse(node.name, name, "it reads extra columns kept by 'same' "
                          "pooling", "use ceil_mode=True in the pooling layers")
        lowered, into, note = converter(module, node.name, self.new_env[src], self)
        self.set_module(target, lowered)
        self.new_env[call] = lowered(self.new_env[src])
        self.info[call] = _Signal(1 if "adaptive" in name else int(out_old.shape[-1]))
        self._record(node.name, name, into, tuple(self.new_env[call].shape[1:]), note)
        self.check(call, node.name)
