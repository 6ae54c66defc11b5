"""Export a PyTorch model to ONNX, checked structurally and numerically."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ExportError
from .validation import check_finite_parameters  # noqa: F401  (re-exported)

__all__ = ["OnnxExport", "export_onnx", "check_finite_parameters", "explicit_pool_pads"]


@dataclass
class OnnxExport:
    """Result of :func:`export_onnx`.

    Other attributes (``graph``, ``opset_import``, …) are those of ``model``, so
    the result can be used where an ``onnx.ModelProto`` is read.

    Attributes
    ----------
    path : pathlib.Path
        Where the ``.onnx`` file was written.
    model : onnx.ModelProto
        The exported graph (already checked by :func:`onnx.checker.check_model`).
    max_abs_diff : float
        Largest absolute difference between PyTorch and ONNX Runtime outputs
        on the parity inputs.
    lowering : akida_workflows.lowering.LoweredModel or None
        Set when a 1-D model was exported as its 2-D form (its input is then
        ``(N, C, rows, L)``: lift signals with ``lowering.lift``).
    """

    path: Path
    model: object
    max_abs_diff: float
    lowering: object = None

    def __getattr__(self, name):
        # Behave like the onnx.ModelProto where one is expected (``.graph``, ``.opset_import``…).
        if name.startswith("__") or name == "model":
            raise AttributeError(name)
        return getattr(self.model, name)

    @property
    def size_bytes(self) -> int:
        """Size of the ``.onnx`` file in bytes."""
        return self.path.stat().st_size


def explicit_pool_pads(onnx_model) -> int:
    """Rewrite ``ceil_mode=1`` pooling nodes as floor pooling with explicit end pads, in place.

    PyTorch exports ``MaxPool2d(..., ceil_mode=True)`` (the "same" pooling of a
    lowered 1-D model, :mod:`akida_workflows.lowering`) as an ONNX ``MaxPool``
    with ``ceil_mode=1``, whose output size QuantizeML cannot infer ("shape …
    must be static"). The same pooling with ``ceil_mode=0`` and the missing
    border added as end padding (``-inf`` for max pooling, so the values are
    unchanged) is what QuantizeML and CNN2SNN read as 'same' pooling.
    ``AveragePool`` nodes are rewritten only when no padding is needed (their
    padded border would enter the average).

    Parameters
    ----------
    onnx_model : onnx.ModelProto
        With static spatial sizes (batch may be symbolic).

    Returns
    -------
    int
        Number of nodes rewritten.
    """
    import onnx
    from onnx import helper, shape_inference

    inferred = shape_inference.infer_shapes(onnx_model)
    shapes = {}
    for value in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    changed = 0
    for node in onnx_model.graph.node:
        if node.op_type not in ("MaxPool", "AveragePool"):
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if not attrs.get("ceil_mode"):
            continue
        spatial = shapes.get(node.input[0], [])[2:]
        kernel = list(attrs["kernel_shape"])
        strides = list(attrs.get("strides", [1] * len(kernel)))
        dilations = list(attrs.get("dilations", [1] * len(kernel)))
        pads = list(attrs.get("pads", [0] * 2 * len(kernel)))
        if not spatial or None in spatial or any(d != 1 for d in dilations):
            raise ExportError(
                f"{node.name}: ceil-mode pooling on an input of unknown size {spatial}; "
                "export with a fixed input size")
        n_dims = len(kernel)
        extra = []
        for i, (n, k, s) in enumerate(zip(spatial, kernel, strides)):
            begin, end = pads[i], pads[i + n_dims]
            size = n + begin + end
            out = -(-(size - k) // s) + 1
            if (out - 1) * s >= n + begin:  # the last window must start inside the input
                out -= 1
            extra.append(max((out - 1) * s + k - size, 0))
        if node.op_type == "AveragePool" and any(extra):
            continue
        new_pads = pads[:n_dims] + [pads[i + n_dims] + extra[i] for i in range(n_dims)]
        kept = [a for a in node.attribute if a.name not in ("ceil_mode", "pads")]
        del node.attribute[:]
        node.attribute.extend(kept)
        node.attribute.extend([helper.make_attribute("ceil_mode", 0),
                               helper.make_attribute("pads", new_pads)])
        changed += 1
    if changed:
        onnx.checker.check_model(onnx_model)
    return changed


def export_onnx(
    model,
    sample,
    path: str | os.PathLike,
    *,
    tolerance: float = 1e-4,
    opset: int | None = None,
    input_name: str = "input",
    output_name: str = "output",
) -> OnnxExport:
    """Export ``model`` to ONNX with a dynamic batch axis, then verify it.

    Uses the legacy TorchScript exporter (``dynamo=False``), the one QuantizeML
    is tested with. The model is exported in eval mode. The result is checked
    with :func:`onnx.checker.check_model` and run with ONNX Runtime on
    ``sample`` (and on the same batch twice stacked, which exercises the
    dynamic batch axis); outputs must match PyTorch within ``tolerance``.
    Ceil-mode pooling is rewritten with explicit pads (:func:`explicit_pool_pads`)
    before that check.

    Parameters
    ----------
    model : torch.nn.Module
    sample : torch.Tensor or numpy.ndarray
        A float batch of inputs, NCHW for image models (e.g. ``(1, 1, 28, 28)``).
        ``(N, C, L)`` signals for a 1-D model: it is then lowered to its exact
        2-D form first (:func:`akida_workflows.lowering.lower_1d`) and exported
        as that (see ``OnnxExport.lowering``).
    path : str or path-like
        The ``.onnx`` file to write (parent folders are created).
    tolerance : float, default 1e-4
        Largest accepted ``|torch - onnxruntime|``, relative to ``max(1, |torch|)``.
    opset : int, optional
        ONNX opset; the exporter's default if not given.
    input_name, output_name : str
        Names of the graph's input and output.

    Returns
    -------
    OnnxExport
        The path, the loaded ``onnx.ModelProto`` and the measured max abs diff.

    Raises
    ------
    ExportError
        NaN/inf parameters, a sample that is not a float tensor with a batch
        axis, an exporter failure, an invalid graph, or outputs that differ
        beyond ``tolerance``.
    """
    import onnx
    import onnxruntime as ort
    import torch

    model, sample, lowered = _export_input(model, sample)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _eval_mode(model), torch.no_grad():
        reference = _reference(model, sample)
        _torch_export(model, sample, path, opset, input_name, output_name)
        doubled = torch.cat([sample, sample])
        reference_doubled = model(doubled)

    onnx_model = onnx.load(str(path))
    if explicit_pool_pads(onnx_model):  # checked against PyTorch below like the rest
        onnx.save(onnx_model, str(path))
    try:
        onnx.checker.check_model(onnx_model)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{path}: the exported graph is invalid: {exc}") from exc

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    max_diff = _max_diff(session, path, input_name, tolerance,
                         ((sample, reference), (doubled, reference_doubled)))
    return OnnxExport(path=path, model=onnx_model, max_abs_diff=max_diff, lowering=lowered)


def _export_input(model, sample):
    """``(model, sample, lowering)``: the sample checked and made float32; a 1-D model
    given ``(N, C, L)`` signals lowered to its exact 2-D form (``lowering`` else None)."""
    import torch

    if isinstance(sample, np.ndarray):
        sample = torch.from_numpy(sample)
    if not isinstance(sample, torch.Tensor):
        raise ExportError(f"sample must be a torch.Tensor or numpy array, got {type(sample)}")
    if not sample.is_floating_point():
        raise ExportError(
            f"sample has dtype {sample.dtype}; models take float input "
            "(scale uint8 images with akida_workflows.datasets.preprocess)"
        )
    if sample.ndim < 2:
        raise ExportError(f"sample needs a batch axis first, got shape {tuple(sample.shape)}")
    sample = sample.float()
    check_finite_parameters(model)
    lowered = None
    if sample.ndim == 3:  # (N, C, L) signals: a 1-D model, exported as its exact 2-D form
        from .lowering import is_1d, lower_1d

        if is_1d(model):
            lowered = lower_1d(model, tuple(sample.shape[1:]), example_input=sample.numpy())
            model, sample = lowered.model, lowered.lift(sample)
    return model, sample, lowered


@contextlib.contextmanager
def _eval_mode(model):
    """``model`` in eval mode for the duration, then back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _reference(model, sample):
    """PyTorch's output on ``sample``: what ONNX Runtime must reproduce."""
    import torch

    try:
        out = model(sample)
    except Exception as exc:
        raise ExportError(
            f"{type(model).__name__} does not accept a sample of shape "
            f"{tuple(sample.shape)}: {exc}"
        ) from exc
    if not isinstance(out, torch.Tensor):
        what = (f"{len(out)} outputs" if isinstance(out, (tuple, list))
                else f"a {type(out).__name__}")
        fix = ("return one tensor: an Akida model has one output (concatenate the heads with "
               "torch.cat, or convert one model per head)")
        err = ExportError(f"{type(model).__name__}.forward() returns {what}, not one tensor. "
                          f"Fix: {fix}")
        err.fix = fix
        raise err
    return out


def _torch_export(model, sample, path: Path, opset, input_name: str, output_name: str) -> None:
    """The legacy TorchScript exporter, with a dynamic batch axis."""
    import torch

    kwargs = {} if opset is None else {"opset_version": opset}
    try:
        torch.onnx.export(
            model, (sample,), str(path), dynamo=False,
            input_names=[input_name], output_names=[output_name],
            dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
            **kwargs,
        )
    except Exception as exc:  # the exporter raises many types
        raise ExportError(f"torch.onnx.export failed for {type(model).__name__}: {exc}") from exc


def _max_diff(session, path: Path, input_name: str, tolerance: float, runs) -> float:
    """Largest ``|onnxruntime - torch|`` over ``runs`` of ``(input, torch output)``;
    ExportError when a shape differs or a difference exceeds ``tolerance``."""
    max_diff = 0.0
    for x, ref in runs:
        out = session.run(None, {input_name: x.numpy()})[0]
        ref = ref.numpy()
        if out.shape != ref.shape:
            raise ExportError(
                f"{path}: ONNX output shape {out.shape} differs from PyTorch {ref.shape}"
            )
        diff = np.abs(out - ref)
        max_diff = max(max_diff, float(diff.max(initial=0.0)))
        if np.any(diff > tolerance * np.maximum(1.0, np.abs(ref))):
            raise ExportError(
                f"{path}: ONNX Runtime and PyTorch outputs differ by up to {diff.max():.3g} "
                f"(tolerance {tolerance:g}); the graph does not compute what the model does"
            )
    return max_diff
