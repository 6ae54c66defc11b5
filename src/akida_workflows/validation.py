"""Checks on a PyTorch model that every stage runs first (a leaf: imports only errors)."""

from __future__ import annotations

from .errors import ExportError

__all__ = ["check_finite_parameters"]


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
