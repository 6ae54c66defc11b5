"""Passes of the Akida 1.0 route: BatchNorm folding and the Keras bridge's exact rewrites.

The tf-keras bridge (:func:`akida_workflows.keras_bridge.to_keras` and
:func:`~akida_workflows.keras_bridge.quantize_4bit`) rewrites the network on
its way to Akida 1.0. Their plans read the graph and announce each rewrite
before any conversion runs, so that ``check`` says what ``convert`` will do:

- ``fold_batchnorm``: BatchNorm folded into its Conv/Linear neighbour (both targets;
  on Akida 2.0 the ONNX export folds a BatchNorm that follows a Conv/Linear);
- ``flip_stride2``: stride-2 ``padding=1`` convolutions on even maps are Keras
  'same' convolutions only on the spatially flipped map: the whole network runs flipped;
- ``merge_separable``: a depthwise convolution feeding a 1x1 convolution becomes one
  ``SeparableConv2D`` (Akida 1.0 runs depthwise convolutions only there);
- ``pool_head``: average pooling → (Flatten) → Linear folds into one Dense; a max-pooled
  convolution right before the Dense gets an identity 1x1 convolution after it.
"""

from __future__ import annotations

import warnings

from ..errors import AkidaWorkflowError, IncompatibleModelError
from ..geometry import linear_after, separable_partner
from .base import Blocker, Change, FlowState, Pass, Plan, register

__all__ = ["FoldBatchNorm", "FlipStride2", "MergeSeparable", "PoolHead"]

_ACTIVATIONS = {"ReLU", "ReLU6", "Hardtanh", "relu", "relu6", "hardtanh"}


@register
class FoldBatchNorm(Pass):
    """BatchNorm folded exactly into the Conv/Linear before (or after) it."""

    name = "fold_batchnorm"
    summary = "BatchNorm folded into its Conv/Linear neighbour (exact)"

    def plan(self, state: FlowState) -> Plan:
        from ..folding import fold_batchnorm

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                folded = fold_batchnorm(state.model)
        except AkidaWorkflowError:
            return Plan(self.name)
        report = folded.folding_report
        state.graph.unfoldable.update({u.name: u.reason for u in report.unfolded})
        state.graph.foldable.update({f.name: (f.direction, f.into) for f in report.folded})
        if state.target == "akida1":
            done = [(f.name, f.into) for f in report.folded]
            how = "fold_batchnorm"
        else:  # the ONNX export folds a BatchNorm only right after its Conv/Linear
            done = [(f.name, f.into) for f in report.folded if f.direction == "backward"]
            how = "the ONNX export"
        if not done:
            return Plan(self.name)
        pairs = ", ".join(f"{bn} → {into}" for bn, into in done)
        return Plan(self.name, [Change(self.name, tuple(b for b, _ in done),
                                       f"{len(done)} BatchNorm folded by {how} ({pairs})")])


@register
class FlipStride2(Pass):
    """The whole network in flipped coordinates when that makes stride-2 paddings exact."""

    name = "flip_stride2"
    targets = ("akida1",)
    summary = ("stride-2 padding=1 convolutions on even maps run exactly in spatially "
               "flipped coordinates")

    def plan(self, state: FlowState) -> Plan:
        from ..backends.keras_cnn2snn.geometry import _choose_flip
        from ..backends.keras_cnn2snn.trace import _sequence
        from ..folding import fold_batchnorm

        if len(state.input_shape) != 3:
            return Plan(self.name)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sequence = _sequence(fold_batchnorm(state.model), state.input_shape)
        except Exception:  # not a chain: the bridge itself reports it during conversion
            return Plan(self.name)
        try:
            flip = _choose_flip(sequence, state.input_shape, None)
        except IncompatibleModelError as exc:
            if not exc.nodes:
                return Plan(self.name)
            node = exc.nodes[0]
            reason, fix = exc.reason or str(exc), exc.fix or "see the reason"
            kind = next((s.kind for s in state.graph.named(node)), "")
            return Plan(self.name, blockers=[Blocker(self.name, node, kind, reason, fix)])
        if not flip:
            return Plan(self.name)
        strided = tuple(s.name for s in state.graph.sites if s.kind == "Conv2d"
                        and tuple(s.module.stride) == (2, 2) and s.module.padding not in
                        ((0, 0), "valid"))
        return Plan(self.name, [Change(self.name, strided, (
            "the whole network runs in spatially flipped coordinates: the stride-2 padding=1 "
            f"convolution(s) {', '.join(strided)} are exact Keras/Akida 'same' convolutions "
            "there (the model then takes flipped input)"))])


@register
class MergeSeparable(Pass):
    """Depthwise → 1x1 convolution merged into one SeparableConv2D (Akida 1.0)."""

    name = "merge_separable"
    targets = ("akida1",)
    summary = "a depthwise convolution feeding a 1x1 convolution becomes one SeparableConv2D"

    def plan(self, state: FlowState) -> Plan:
        graph = state.graph
        changes = []
        for site in graph.sites:
            pointwise = separable_partner(site, graph)  # the bridge's test, on the graph
            if pointwise is not None:
                changes.append(Change(self.name, (site.name, pointwise.name), (
                    f"{site.name} + {pointwise.name}: depthwise convolution feeding a 1x1 "
                    "convolution merged into one SeparableConv2D (exact)")))
        return Plan(self.name, changes)


@register
class PoolHead(Pass):
    """Average pooling → Linear folded into one Dense; an unpooling identity conv (Akida 1.0)."""

    name = "pool_head"
    targets = ("akida1",)
    summary = ("average pooling → (Flatten) → Linear folded into one Dense; an identity 1x1 "
               "convolution after a max-pooled convolution that feeds a Dense")

    def plan(self, state: FlowState) -> Plan:
        graph = state.graph
        changes = []
        for site in graph.sites:
            if site.module is None:
                continue
            linear = linear_after(site, graph)  # the avg-pool rule's test too
            if linear is None:
                continue
            if site.kind in ("AvgPool2d", "AdaptiveAvgPool2d"):
                changes.append(Change(self.name, (site.name, linear.name), (
                    f"{site.name} + {linear.name}: average pooling folded into one Dense on "
                    "the unpooled map (exact)")))
            elif site.kind == "MaxPool2d" or (
                    site.kind in _ACTIVATIONS and (graph.previous_op(site) or site).kind
                    == "MaxPool2d"):
                pool = site if site.kind == "MaxPool2d" else graph.previous_op(site)
                changes.append(Change(self.name, (pool.name,), (
                    f"{pool.name}: an identity 1x1 convolution inserted after it (Akida cannot "
                    "end a hardware sequence with a pooled convolution before a Dense; exact)")))
        return Plan(self.name, changes)
