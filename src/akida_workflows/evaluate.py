"""One evaluation call for PyTorch, ONNX (float or quantized) and Akida models.

:func:`predict` and :func:`evaluate` accept any stage of the pipeline, so the
same code measures every step; :class:`StageReport` collects the figures of
each stage (accuracy, file size, compression, wall time, and for Akida the
fraction of compute layers mapped onto hardware) and prints them as a table.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import AkidaWorkflowError
from .tables import Table, _html_table, _text_table  # noqa: F401  (re-exported)

__all__ = [
    "Metrics",
    "StageResult",
    "StageReport",
    "predict",
    "evaluate",
    "accuracy",
    "confusion_matrix",
    "wilson_interval",
    "compare_reports",
    "Table",
]


# ----------------------------------------------------------------------- predict


def _model_kind(model) -> str:
    try:
        import torch

        if isinstance(model, torch.nn.Module):
            return "torch"
    except ImportError:  # pragma: no cover
        pass
    type_name = f"{type(model).__module__}.{type(model).__name__}"
    if type_name.startswith("akida") and hasattr(model, "predict") and hasattr(model, "layers"):
        return "akida"
    if "InferenceSession" in type_name:
        return "ort"
    if "ModelProto" in type_name or type(model).__name__ == "OnnxExport":
        return "onnx"
    if isinstance(model, (str, os.PathLike)):
        suffix = Path(model).suffix
        if suffix == ".onnx":
            return "onnx"
        if suffix == ".fbz":
            return "akida-file"
    raise AkidaWorkflowError(
        f"cannot evaluate a {type(model).__name__}: expected a torch.nn.Module, an ONNX "
        "model (ModelProto, .onnx path, OnnxExport, InferenceSession) or an akida.Model/.fbz"
    )


def _ort_session(model):
    import onnxruntime as ort

    from .export import OnnxExport

    if isinstance(model, OnnxExport):
        model = model.model
    if isinstance(model, (str, os.PathLike)):
        from .loading import load_model

        model = load_model(model)
    options = ort.SessionOptions()
    if any(n.domain == "com.brainchip" for n in model.graph.node):
        # QuantizeML's quantized ops run through onnxruntime-extensions.
        from onnxruntime_extensions import get_library_path

        options.register_custom_ops_library(get_library_path())
    return ort.InferenceSession(
        model.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"]
    )


def _akida_layout(model, x: np.ndarray) -> np.ndarray:
    """An NCHW batch for an Akida model that takes NHWC, converted (and flipped if the
    model takes flipped input); ``(N, F)`` vectors for a model that takes ``(1, 1, F)``
    (a Linear-first model) as ``(N, 1, 1, F)``; anything else unchanged."""
    shape = tuple(int(d) for d in model.input_shape)
    if x.ndim == 2 and shape == (1, 1, x.shape[1]):
        return x.reshape(len(x), 1, 1, x.shape[1])
    if x.ndim == 4 and tuple(x.shape[1:]) != shape and (x.shape[2], x.shape[3],
                                                         x.shape[1]) == shape:
        from .keras_bridge import to_nhwc

        return to_nhwc(x, flip=model)
    return x


def predict(model, x, *, batch_size: int = 256) -> np.ndarray:
    """Raw outputs of ``model`` on ``x``, as a 2-D ``(N, outputs)`` float array.

    Parameters
    ----------
    model : torch.nn.Module, ONNX model/path/session, akida.Model or .fbz path
        Or a :class:`~akida_workflows.lowering.LoweredModel`.
    x : numpy.ndarray or torch.Tensor
        Float NCHW inputs, preprocessed as for training; ``(N, C, L)`` signals
        for a model lowered from 1-D (lowered module or its Akida conversion),
        which are lifted to the rows it takes. Akida models from the Keras path
        take NHWC: NCHW batches are converted for them (and flipped in H and W
        when the model records a flipped input, see
        :func:`akida_workflows.keras_bridge.input_flip`); NHWC batches are
        passed as they are.
    batch_size : int, default 256

    Returns
    -------
    numpy.ndarray
        ``float32`` logits (or scores), one row per input. For an Akida model
        with an edge-learning layer, one score per class: the potential of its
        most active neuron.
    """
    from .lowering import LoweredModel, lift_for

    x = x.numpy() if hasattr(x, "numpy") and not isinstance(x, np.ndarray) else np.asarray(x)
    x = lift_for(model, x)  # (N, C, L) signals for a model lowered from 1-D: lifted here
    if isinstance(model, LoweredModel):
        model = model.model
    kind = _model_kind(model)
    if x.ndim < 2 or len(x) == 0:
        raise AkidaWorkflowError(f"expected a non-empty batch of inputs, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise AkidaWorkflowError(
            f"inputs have dtype {x.dtype}; give float NCHW inputs "
            "(akida_workflows.datasets.preprocess scales uint8 images)"
        )
    x = np.ascontiguousarray(x, dtype=np.float32)
    outputs = []
    if kind == "torch":
        import torch

        from .training import channels_last

        model.eval()
        with torch.no_grad(), channels_last(model) as prepare:  # NHWC: faster on CPU
            for i in range(0, len(x), batch_size):
                outputs.append(model(prepare(torch.from_numpy(x[i : i + batch_size]))).numpy())
    elif kind in ("onnx", "ort"):
        session = model if kind == "ort" else _ort_session(model)
        name = session.get_inputs()[0].name
        for i in range(0, len(x), batch_size):
            outputs.append(session.run(None, {name: x[i : i + batch_size]})[0])
    else:
        if kind == "akida-file":
            from .deploy import load

            model = load(model)
        x = _akida_layout(model, x)
        for i in range(0, len(x), batch_size):
            outputs.append(model.predict(x[i : i + batch_size]))
    out = np.concatenate(outputs)
    out = out.reshape(len(out), -1).astype(np.float32)
    learning = getattr(model, "learning", None) if kind.startswith("akida") else None
    if learning is not None:
        # An edge-learning layer (akida_workflows.edge): neurons i*n .. i*n+n-1 belong to
        # class i; a class scores its most active neuron (argmax = predict_classes).
        classes = int(learning.num_classes)
        out = out.reshape(len(out), classes, -1).max(axis=2)
    return out


# ----------------------------------------------------------------------- metrics


def accuracy(y_true, y_pred) -> float:
    """Fraction of equal labels."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise AkidaWorkflowError(f"label shapes differ or are empty: {y_true.shape} vs {y_pred.shape}")
    return float(np.mean(y_true == y_pred))


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """``C[i, j]`` = number of samples of true class ``i`` predicted as ``j``."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    n = num_classes or int(max(y_true.max(initial=0), y_pred.max(initial=0)) + 1)
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def wilson_interval(correct: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of an accuracy measured on ``total`` test samples.

    On a small test set one sample moves the accuracy by ``1 / total``; the
    interval says which true accuracies the measurement cannot tell apart. Unlike
    the normal approximation it stays inside [0, 1] and is not empty at 0 or
    100 %.

    Parameters
    ----------
    correct : int
        Correctly classified samples (``0 <= correct <= total``).
    total : int
        Test samples (``>= 1``).
    confidence : float, default 0.95
        Two-sided confidence level, in (0, 1).

    Returns
    -------
    (float, float)
        Lower and upper bound, as fractions.

    Raises
    ------
    AkidaWorkflowError
        Counts that are not integers with ``0 <= correct <= total``, ``total >= 1``,
        or a confidence outside (0, 1).

    Examples
    --------
    >>> low, high = wilson_interval(90, 100)
    >>> round(low, 4), round(high, 4)
    (0.8256, 0.9448)
    """
    from statistics import NormalDist

    counts = (correct, total)
    if any(isinstance(c, bool) or int(c) != c for c in counts) or not 0 <= correct <= total \
            or total < 1:
        raise AkidaWorkflowError(f"need integers 0 <= correct <= total, total >= 1; got "
                                 f"correct={correct!r}, total={total!r}")
    if not 0 < confidence < 1:
        raise AkidaWorkflowError(f"confidence must be in (0, 1), got {confidence!r}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    n, p = int(total), int(correct) / int(total)
    denominator = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half = z / denominator * float(np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)))
    return max(0.0, center - half), min(1.0, center + half)


@dataclass
class Metrics:
    """Classification metrics of one model on one labelled set.

    Attributes
    ----------
    accuracy : float
        Fraction of correct predictions.
    precision, recall, f1 : numpy.ndarray
        Per class (0 where undefined).
    confusion : numpy.ndarray
        Confusion matrix, rows = true class.
    predictions : numpy.ndarray
        Predicted labels.
    seconds : float
        Wall time of the predictions.
    classes : tuple of str
    """

    accuracy: float
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    confusion: np.ndarray
    predictions: np.ndarray
    seconds: float
    classes: tuple[str, ...]

    def table(self) -> str:
        """Per-class precision / recall / F1 as text."""
        lines = [f"{'class':>12}  {'precision':>9}  {'recall':>6}  {'f1':>6}  {'support':>7}"]
        support = self.confusion.sum(axis=1)
        for i, name in enumerate(self.classes):
            lines.append(
                f"{name:>12}  {self.precision[i]:9.3f}  {self.recall[i]:6.3f}  "
                f"{self.f1[i]:6.3f}  {support[i]:7d}"
            )
        lines.append(f"{'accuracy':>12}  {self.accuracy:9.4f}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def evaluate(model, x, y, *, classes=None, batch_size: int = 256) -> Metrics:
    """Accuracy, per-class precision/recall/F1 and confusion matrix of any stage.

    Parameters
    ----------
    model : torch.nn.Module, ONNX model/path/session, akida.Model or .fbz path
        Or a :class:`~akida_workflows.lowering.LoweredModel`.
    x : array-like
        Float NCHW inputs (``(N, C, L)`` signals for a lowered 1-D model, see
        :func:`predict`).
    y : array-like
        Integer labels.
    classes : sequence of str, optional
        Class names (default: ``"0"``, ``"1"``, …).
    batch_size : int, default 256

    Returns
    -------
    Metrics
    """
    y = np.asarray(y, dtype=np.int64)
    if len(y) != len(x):
        raise AkidaWorkflowError(f"{len(x)} inputs but {len(y)} labels")
    start = time.perf_counter()
    scores = predict(model, x, batch_size=batch_size)
    seconds = time.perf_counter() - start
    pred = scores.argmax(axis=1)
    n = max(scores.shape[1], int(y.max(initial=0)) + 1)
    cm = confusion_matrix(y, pred, n)
    tp = np.diag(cm).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.nan_to_num(tp / cm.sum(axis=0))
        recall = np.nan_to_num(tp / cm.sum(axis=1))
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    names = tuple(classes) if classes is not None else tuple(str(i) for i in range(n))
    return Metrics(
        accuracy=float(np.mean(pred == y)), precision=precision, recall=recall, f1=f1,
        confusion=cm, predictions=pred, seconds=seconds, classes=names,
    )


# ------------------------------------------------------------------ stage report


@dataclass
class StageResult:
    """One row of a :class:`StageReport`."""

    stage: str
    accuracy: float | None
    size_bytes: int | None
    seconds: float | None
    hw_fraction: float | None = None
    status: str = "ok"
    eval_seconds: float | None = None
    program_bytes: int | None = None


def _fmt_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s:.2f} s" if s < 10 else f"{s:.1f} s"


def _fmt_size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1024:.1f} KiB"


@dataclass
class StageReport:
    """Figures of each pipeline stage of one model, printed as a table.

    Columns: accuracy, file size, compression ratio versus the first stage
    with a size (the float model), wall time to build the stage (that stage
    alone, not the time since the start) and to evaluate it, and for Akida
    stages the fraction of compute layers mapped onto hardware. Accuracy and
    evaluation time that were not measured show ``missing`` (``"-"`` by
    default; the command line says ``"not measured"``).

    Examples
    --------
    >>> report = StageReport("my CNN")
    >>> report.add("float (PyTorch)", accuracy=0.975, size_bytes=4_000_000, seconds=30.0)
    >>> report.add("Akida", accuracy=0.974, size_bytes=1_000_000, seconds=4.0, hw_fraction=1.0)
    >>> print(report)  # doctest: +SKIP
    """

    title: str = ""
    rows: list[StageResult] = field(default_factory=list)
    #: Shown for a figure that was not measured (e.g. ``"not measured"`` in the CLI).
    missing: str = "-"

    def add(
        self,
        stage: str,
        *,
        accuracy: float | None = None,
        size_bytes: int | None = None,
        path: str | os.PathLike | None = None,
        seconds: float | None = None,
        hw_fraction: float | None = None,
        status: str = "ok",
        eval_seconds: float | None = None,
        metrics: Metrics | None = None,
        program_bytes: int | None = None,
    ) -> StageResult:
        """Append a stage.

        Parameters
        ----------
        stage : str
            Name of the stage, e.g. ``"Akida"``.
        accuracy : float, optional
            Fraction in [0, 1]; taken from ``metrics`` when not given.
        size_bytes : int, optional
            Size of the stage's file; read from ``path`` when not given.
        path : path-like, optional
            The file the stage produced (``.pt``, ``.onnx``, ``.fbz``).
        seconds : float, optional
            Time taken to produce the stage (training, export, quantization…).
        hw_fraction : float, optional
            Fraction of compute layers mapped onto hardware (Akida stages).
        status : str, default "ok"
            A failed stage is recorded with its status (e.g. ``"failed: …"``)
            and no accuracy: it is never replaced by a copy of another stage.
        eval_seconds : float, optional
            Time of the evaluation; taken from ``metrics`` when not given.
        metrics : Metrics, optional
            Result of :func:`evaluate` on this stage.
        program_bytes : int, optional
            For an Akida stage, the size of the mapped program (what the device
            stores; see :func:`akida_workflows.deploy.summarize`). Shown in a
            ``program`` column next to the file size when any stage has one.
        """
        if metrics is not None:
            accuracy = metrics.accuracy if accuracy is None else accuracy
            eval_seconds = metrics.seconds if eval_seconds is None else eval_seconds
        if size_bytes is None and path is not None:
            size_bytes = Path(path).stat().st_size
        if accuracy is not None and not 0.0 <= accuracy <= 1.0:
            raise AkidaWorkflowError(f"accuracy must be a fraction in [0, 1], got {accuracy}")
        if program_bytes is not None and (isinstance(program_bytes, bool)
                                          or not isinstance(program_bytes, (int, np.integer))
                                          or program_bytes < 0):
            raise AkidaWorkflowError(
                f"program_bytes must be a non-negative integer, got {program_bytes!r}")
        row = StageResult(stage, accuracy, size_bytes, seconds, hw_fraction, status, eval_seconds,
                          None if program_bytes is None else int(program_bytes))
        self.rows.append(row)
        return row

    def __getitem__(self, stage: str) -> StageResult:
        for row in self.rows:
            if row.stage == stage:
                return row
        raise KeyError(stage)

    @property
    def reference_size(self) -> int | None:
        """Size of the first stage that has one (the float model)."""
        return next((r.size_bytes for r in self.rows if r.size_bytes), None)

    def records(self) -> list[dict[str, str]]:
        """The table as a list of formatted rows (strings), one per stage."""
        ref = self.reference_size
        out = []
        for r in self.rows:
            out.append({
                "stage": r.stage,
                "accuracy": (self.missing if r.accuracy is None and r.status == "ok" else
                             "-" if r.accuracy is None else f"{100 * r.accuracy:.2f} %"),
                "size": _fmt_size(r.size_bytes),
                "program": _fmt_size(r.program_bytes),
                "compression": (
                    f"{ref / r.size_bytes:.1f}x" if ref and r.size_bytes else "-"
                ),
                "build time": _fmt_seconds(r.seconds),
                "eval time": (self.missing if r.eval_seconds is None and r.status == "ok" else
                              _fmt_seconds(r.eval_seconds)),
                "on hardware": "-" if r.hw_fraction is None else f"{100 * r.hw_fraction:.0f} %",
                "status": r.status,
            })
        return out

    #: Columns of the table (a ``program`` column is added after ``size`` when a stage
    #: has a mapped program size, a ``status`` column when a stage failed).
    COLUMNS = ("stage", "accuracy", "size", "compression", "build time", "eval time",
               "on hardware")

    def _columns(self) -> list[str]:
        return _stage_columns([self])

    def __str__(self) -> str:
        return _text_table(self.records(), self._columns(), self.title)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return _html_table(self.records(), self._columns(), self.title)


def compare_reports(*reports: StageReport):
    """Several :class:`StageReport` in one table (a ``model`` column first).

    Returns a :class:`Table`: it prints as text and renders as HTML in notebooks.
    """
    records = [{"model": rep.title, **rec} for rep in reports for rec in rep.records()]
    return Table(records, ["model", *_stage_columns(reports)])


def _stage_columns(reports) -> list[str]:
    cols = list(StageReport.COLUMNS)
    rows = [r for rep in reports for r in rep.rows]
    if any(r.program_bytes is not None for r in rows):
        cols.insert(cols.index("size") + 1, "program")
    if any(r.status != "ok" for r in rows):
        cols.append("status")
    return cols
