"""Export a PyTorch model to ONNX, checked structurally and numerically."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ExportError

__all__ = ["OnnxExport", "export_onnx", "check_finite_parameters"]


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
    """

    path: Path
    model: object
    max_abs_diff: float

    def __getattr__(self, name):
        # Behave like the onnx.ModelProto where one is expected (``.graph``, ``.opset_import``…).
        if name.startswith("__") or name == "model":
            raise AttributeError(name)
        return getattr(self.model, name)

    @property
    def size_bytes(self) -> int:
        """Size of the ``.onnx`` file in bytes."""
        return self.path.stat().st_size


def check_finite_parameters(model) -> None:
    """Raise :class:`ExportError` naming the first parameter or buffer holding NaN/inf.

    Parameters
    ----------
    model : torch.nn.Module
    """
    import torch

    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            bad = (~torch.isfinite(tensor)).sum().item()
            raise ExportError(
                f"parameter {name!r} holds {bad} NaN/inf value(s); "
                "the model cannot be exported meaningfully (retrain or fix the checkpoint)"
            )


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

    Parameters
    ----------
    model : torch.nn.Module
    sample : torch.Tensor or numpy.ndarray
        A float batch of inputs, NCHW for image models (e.g. ``(1, 1, 28, 28)``).
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

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            try:
                reference = model(sample)
            except Exception as exc:
                raise ExportError(
                    f"{type(model).__name__} does not accept a sample of shape "
                    f"{tuple(sample.shape)}: {exc}"
                ) from exc
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
            doubled = torch.cat([sample, sample])
            reference_doubled = model(doubled)
    finally:
        model.train(was_training)

    onnx_model = onnx.load(str(path))
    try:
        onnx.checker.check_model(onnx_model)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{path}: the exported graph is invalid: {exc}") from exc

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    max_diff = 0.0
    for x, ref in ((sample, reference), (doubled, reference_doubled)):
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
    return OnnxExport(path=path, model=onnx_model, max_abs_diff=max_diff)
