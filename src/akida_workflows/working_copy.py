"""The working copy :func:`~akida_workflows.compat.check_compatibility` runs the toolchain on.

Each operation the rules (or the toolchain) report is replaced by a
shape-preserving stand-in where one exists (:mod:`akida_workflows.stand_ins`,
or a generic one: ReLU6 for an unbounded activation, an identity for a
BatchNorm, …), in the module tree and in the torch.fx graph, so that the real
toolchain gets past it and judges the rest of the model in the same run.
"""

from __future__ import annotations

import copy


def _add_module(root, name: str, new) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    parent.add_module(child, new)


def _set_module(root, name: str, new) -> bool:
    parent_name, _, child = name.rpartition(".")
    try:
        parent = root.get_submodule(parent_name) if parent_name else root
        getattr(parent, child)
    except AttributeError:
        return False
    setattr(parent, child, new)
    return True


class _WorkingCopy:
    """The model the toolchain runs on, with stand-ins for the reported operations."""

    def __init__(self, model, graph):
        self.model = model
        self.graph = graph
        self.gm = graph.gm if graph is not None and graph.traced else None
        self.use_gm = False

    @property
    def current(self):
        return self.gm if self.use_gm else self.model

    def patch(self, site, action, col) -> bool:
        """Apply one stand-in; False when there is none for this operation."""
        from torch import nn

        if action is None:
            return False
        if isinstance(action, list):  # several operations at once (e.g. a conv and its BN)
            done = [self.patch(other, act, col) for other, act in action]
            return all(done)
        if isinstance(action, tuple):  # a stand-in for another operation (e.g. the Flatten before)
            other, action = action
            return self.patch(other, action, col)
        if isinstance(action, nn.Module):
            return self._swap(site.name, action)
        if action == "relu6":
            if site.module is not None:
                return self._swap(site.name, nn.ReLU6())
            return self._retarget(site, "relu6")
        if action == "identity":
            if site.module is not None:
                return self._swap(site.name, nn.Identity())
            return self._bypass(site, col)
        if action == "flatten":
            if site.module is not None:
                return self._swap(site.name, nn.Flatten())
            return self._retarget(site, "flatten")
        if action == "split-calls":
            return self._split_calls(site.name, col)
        if action == "drop-add":
            return self._bypass(site, col, keep_last=True)
        if action == "cat-as-conv":
            return self._concat_stand_in(site, col)
        if action == "identity-next-activation":
            done = False
            for nxt in self.graph.next_ops(site, skip={"BatchNorm2d", "Dropout", "Identity"}):
                if nxt.kind in ("ReLU", "ReLU6", "Hardtanh", "relu", "relu6", "hardtanh"):
                    done = self.patch(nxt, "identity", col) or done
            return done
        return False

    def _swap(self, name, new) -> bool:
        ok = _set_module(self.model, name, new)
        if self.gm is not None:
            ok = _set_module(self.gm, name, copy.deepcopy(new)) or ok
        return ok

    def _retarget(self, site, function) -> bool:
        import torch
        import torch.nn.functional as F

        node = site.node
        if self.gm is None or node is None or node.op not in ("call_function", "call_method"):
            return False
        if function == "flatten":
            node.op, node.target = "call_function", torch.flatten
            node.args, node.kwargs = (node.args[0], 1), {}
        else:
            node.op, node.target = "call_function", getattr(F, function)
            node.args, node.kwargs = node.args[:1], {}
        self._recompile()
        return True

    def _bypass(self, site, col, keep_last=False) -> bool:
        node = site.node
        if self.gm is None or node is None:
            return False
        operands = [a for a in node.all_input_nodes if a.op != "get_attr"]
        if not operands:
            return False
        keep = operands[-1] if keep_last else operands[0]
        node.replace_all_uses_with(keep)
        self.gm.graph.erase_node(node)
        self._drop_dead(site, col)
        return True

    def _concat_stand_in(self, site, col) -> bool:
        """A channel concatenation → a 1x1 convolution (+ ReLU6) of its last operand to as
        many channels: the shapes after it stay, the other branches drop out (not judged)."""
        from torch import nn

        node = site.node
        if self.gm is None or node is None or not node.args:
            return False
        operands = [a for a in node.args[0] if hasattr(a, "op")] if isinstance(
            node.args[0], (list, tuple)) else []
        if len(operands) < 2:  # shapes: checked by the rule's stand-in (_merge_stand_in)
            return False
        keep = operands[-1]
        # a bounded activation after it, as the branches end (Akida 1.0 blocks need one)
        stand_in = nn.Sequential(nn.Conv2d(int(site.in_shapes[-1][0]), int(site.out_shape[0]), 1),
                                 nn.ReLU6())
        name = f"{site.name}_stand_in"
        self.gm.add_submodule(name, stand_in)
        with self.gm.graph.inserting_after(node):
            new = self.gm.graph.call_module(name, (keep,))
        node.replace_all_uses_with(new)
        self.gm.graph.erase_node(node)
        self._drop_dead(site, col)
        return True

    def _drop_dead(self, site, col) -> None:
        """Remove what no longer feeds the output; its modules are rows 'not judged'."""
        before = {n.target for n in self.gm.graph.nodes if n.op == "call_module"}
        self.gm.graph.eliminate_dead_code()
        after = {n.target for n in self.gm.graph.nodes if n.op == "call_module"}
        for name in before - after:
            col.removed[name] = (f"not judged: its branch was taken out with {site.name} so "
                                 "that the rest could be checked")
        self._recompile()

    def _split_calls(self, name, col) -> bool:
        """One copy of a reused module per call (later calls get ``name_call2``, …)."""
        if self.gm is None:
            return False
        calls = [n for n in self.gm.graph.nodes if n.op == "call_module" and n.target == name]
        if len(calls) < 2:
            return False
        module = self.gm.get_submodule(name)
        for i, node in enumerate(calls[1:], start=2):
            alias = f"{name}_call{i}"
            _add_module(self.gm, alias, copy.deepcopy(module))
            node.target = alias
            col.aliases[alias] = name
        self._recompile()
        return True

    def _recompile(self):
        self.gm.graph.lint()
        self.gm.recompile()
        self.use_gm = True


_GENERIC_PATCHES = {
    **{k: "relu6" for k in ("ReLU", "relu", "relu_", "LeakyReLU", "GELU", "SiLU", "ELU",
                            "Hardswish", "Mish", "PReLU", "Softplus", "gelu", "silu",
                            "leaky_relu")},
    **{k: "identity" for k in ("Sigmoid", "Tanh", "sigmoid", "tanh", "BatchNorm1d",
                               "BatchNorm2d", "Dropout", "Softmax", "LogSoftmax", "softmax",
                               "log_softmax")},
}


def _to_features(site, graph) -> bool:
    """A reshape whose result feeds a Linear as (batch, features): torch.flatten(x, 1)."""
    if site.kind not in ("view", "reshape", "squeeze", "flatten", "Flatten", "Unflatten"):
        return False
    if site.out_shape is not None and len(site.out_shape) <= 1:
        return True
    nxt = graph.next_ops(site) if graph is not None else []
    return bool(nxt) and all(n.kind == "Linear" for n in nxt)


def _generic_patch(site, target, graph=None):
    """A stand-in for an operation the toolchain refused but no rule reported."""
    if _to_features(site, graph):
        return "flatten"
    if site.module is not None and graph is not None and len(graph.named(site.name)) > 1:
        return "split-calls"
    action = _GENERIC_PATCHES.get(site.kind)
    if action == "relu6" and target == "akida2" and site.kind in ("ReLU", "relu", "relu_"):
        return None
    if site.kind in ("add",) and target == "akida1":
        return "drop-add"
    return action
