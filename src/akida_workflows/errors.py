"""The exception family of :mod:`akida_workflows`.

Every error raised on purpose by this library derives from
:class:`AkidaWorkflowError`, so ``except AkidaWorkflowError`` catches them all.
Messages name the file, layer or node at fault and, where there is one, the fix.
"""

from __future__ import annotations

__all__ = [
    "AkidaWorkflowError",
    "DatasetError",
    "ChecksumError",
    "ExportError",
    "FoldingError",
    "IncompatibleModelError",
    "InvalidInputError",
    "MappingError",
    "ModelFileError",
    "QuantizationError",
    "UnsafeModelFileError",
    "describe_exception",
]


class AkidaWorkflowError(Exception):
    """Base class of every error raised by :mod:`akida_workflows`."""


class DatasetError(AkidaWorkflowError):
    """A data file is missing, truncated, corrupt or of the wrong shape."""


class ChecksumError(DatasetError):
    """A downloaded file does not match its published checksum."""


class ExportError(AkidaWorkflowError):
    """Export to ONNX failed, or the ONNX graph disagrees with the PyTorch model."""


class FoldingError(AkidaWorkflowError):
    """A BatchNorm cannot be folded: invalid statistics, training mode, mismatched layers."""


class IncompatibleModelError(AkidaWorkflowError):
    """A model cannot be quantized or converted for Akida.

    Attributes
    ----------
    nodes : list of str
        Names of the offending ONNX nodes or layers (may be empty when the
        toolchain did not say).
    fix : str or None
        What to change, when the message's own fix is known as data (reports use it
        as the row's fix instead of guessing one).
    reason : str or None
        What is wrong with each of ``nodes``, in one phrase (a report's reason column),
        when the raiser knows it as data.
    """

    def __init__(self, message: str, nodes: list[str] | None = None, fix: str | None = None,
                 reason: str | None = None):
        super().__init__(message)
        self.nodes = list(nodes or [])
        self.fix = fix
        self.reason = reason


class InvalidInputError(AkidaWorkflowError, ValueError):
    """Samples or labels given to a function are of the wrong shape, dtype or range, or
    empty (also a :class:`ValueError`)."""


class MappingError(AkidaWorkflowError):
    """An Akida model could not be mapped onto the requested virtual device."""


class ModelFileError(AkidaWorkflowError):
    """A model file is missing, unreadable, of an unsupported kind, or does not fit
    the class named to hold its weights."""


class UnsafeModelFileError(ModelFileError):
    """Loading a model file would run code its author put in it, and the caller did
    not say they trust it (a full pickle without ``trust_pickle=True``, or TorchScript
    code that calls file-access operators)."""


class QuantizationError(AkidaWorkflowError):
    """Weights or codes cannot be quantized or packed (NaN/inf, range, shape, axis)."""


def describe_exception(exc: BaseException, limit: int = 400, causes=()) -> str:
    """One line saying what went wrong, even when the exception's message is empty.

    A bare ``assert`` in a library raises an ``AssertionError`` without a
    message; this returns its type and the line that raised it instead (e.g.
    ``AssertionError at quantizeml/.../dense.py:77: assert input_ts.dtype ==
    np.int8``). Long multi-line messages (TorchScript graphs) are cut to their
    first line; class representations are cut to the class name. ``causes`` is a
    sequence of ``(marker, cause)``: the first whose marker occurs in the
    description (case-insensitive) appends ``" (cause)"``.
    """
    text = _describe(exc, limit)
    for marker, cause in causes:
        if marker in text.lower():
            return f"{text} ({cause})"
    return text


def _describe(exc: BaseException, limit: int) -> str:
    import re
    import traceback

    text = str(exc).strip()
    if text:
        # "<class 'tf_keras.src.layers.core.dense.Dense'>" reads as "Dense".
        first = re.sub(r"<class '(?:\w+\.)*(\w+)'>", r"\1", text.splitlines()[0].strip())
        return first if len(first) <= limit else first[: limit - 1] + "…"
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    if not frames:
        return type(exc).__name__
    last = frames[-1]
    parts = last.filename.replace("\\", "/").split("/")
    where = "/".join(parts[-3:])
    code = f": {last.line.strip()}" if last.line else ""
    return f"{type(exc).__name__} at {where}:{last.lineno}{code}"
