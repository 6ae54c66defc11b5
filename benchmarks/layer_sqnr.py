"""Where a quantized model loses accuracy: per-layer SQNR against its float model, on real inputs.

QuantizeML's own analysis (:mod:`quantizeml.analysis`) compares each quantized
layer with its float counterpart, but on *random* inputs, and reports a SMAPE
that leaves saturated values out. Here the same comparison runs on real
(preprocessed) images, and the figure is the signal-to-quantization-noise ratio
with every value counted, clipping included::

    SQNR = 10 log10( sum(float²) / sum((float - dequantized)²) )   [dB]

Two figures per quantized layer:

* **cumulative** — the quantized model from its input up to the layer against
  the float model up to the same layer: how far the quantized network has
  drifted by then (the last layer's figure is the logits');
* **local** — the layer alone, both versions fed the *same* (quantized) input:
  the noise that this layer's own weights and output quantizer add.

A layer whose cumulative SQNR falls well below the previous layer's, with a
low local SQNR, is where the loss comes from. ``top code`` is the share of the
layer's quantized outputs at the largest (or smallest) code: values clipped by
the activation range (ReLU6's cap included).

Both paths use the real quantized models: the Keras model of
:func:`akida_workflows.keras_bridge.quantize_4bit` (Akida 1.0, 4-bit) against the
float Keras model it was made from, and the QuantizeML ONNX model of
:func:`akida_workflows.convert.quantize_onnx` (Akida 2.0, 8-bit) against the
float ONNX export. QuantizeML's measurement code is reused; only its random
inputs and its SMAPE are replaced (patched for the duration of one call).
"""

from __future__ import annotations

import contextlib

import numpy as np

__all__ = ["sqnr_db", "keras_layer_sqnr", "onnx_layer_sqnr", "summarize"]

#: Reported instead of an infinite SQNR (identical outputs).
SQNR_CAP = 99.0


def sqnr_db(reference, quantized) -> float:
    """:func:`akida_workflows.int4.sqnr_db` over all values, capped at ±:data:`SQNR_CAP`
    (identical outputs, or a silent reference) and rounded to 0.01 dB."""
    from akida_workflows.int4 import sqnr_db as exact

    value = exact(np.ravel(reference), np.ravel(quantized))
    if value == -np.inf:
        return -SQNR_CAP
    return round(min(SQNR_CAP, value), 2)


def _error_module(name: str):
    """``quantizeml.analysis.quantization_error.<name>``, importable without the plotting
    extra: ``quantizeml.analysis``'s ``__init__`` also imports its TensorBoard plots
    (``tensorboardX``, the ``quantizeml[analysis]`` extra), which the error
    measurement does not use; when that import fails the package is registered
    without them."""
    import importlib
    import importlib.util
    import sys
    import types

    try:
        import quantizeml.analysis  # noqa: F401
    except ImportError:
        spec = importlib.util.find_spec("quantizeml.analysis")
        package = types.ModuleType("quantizeml.analysis")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        sys.modules["quantizeml.analysis"] = package
    return importlib.import_module(f"quantizeml.analysis.quantization_error.{name}")


@contextlib.contextmanager
def _patched(module, **names):
    old = {name: getattr(module, name) for name in names}
    try:
        for name, value in names.items():
            setattr(module, name, value)
        yield
    finally:
        for name, value in old.items():
            setattr(module, name, value)


def _keras_compare(foutputs, qoutputs, per_channel=False):
    from quantizeml.tensors import QTensor

    bits = qoutputs.value_bits
    codes = qoutputs.values.numpy()
    top = float(np.mean((codes <= -(2 ** bits)) | (codes >= 2 ** bits - 1)))
    q = qoutputs.to_float().numpy() if isinstance(qoutputs, QTensor) else np.asarray(qoutputs)
    return {"sqnr": sqnr_db(np.asarray(foutputs), q), "top": round(100 * top, 2)}


def keras_layer_sqnr(float_model, quantized_model, x) -> list[dict]:
    """Per-layer SQNR of a QuantizeML Keras model against its float Keras model.

    Parameters
    ----------
    float_model : tf_keras.Model
        The float model the quantized one was made from (after the same rewrites,
        e.g. :func:`akida_workflows.keras_bridge.separable_blocks`).
    quantized_model : tf_keras.Model
    x : numpy.ndarray
        Float NHWC inputs, as the quantized model takes them.

    Returns
    -------
    list of dict
        ``layer``, ``cumulative`` and ``local`` SQNR (dB), ``top code`` (%), in
        the model's order.
    """
    kq = _error_module("keras_quantization_error")

    x = np.asarray(x, np.float32)
    return _measure(kq, float_model, quantized_model,
                    generate_keras_random_samples=lambda *a, **k: x,
                    compare_outputs=_keras_compare)


def onnx_layer_sqnr(float_model, quantized_model, x) -> list[dict]:
    """Per-node SQNR of a QuantizeML ONNX model against the float ONNX model.

    Parameters
    ----------
    float_model : onnx.ModelProto
        The float export that was quantized.
    quantized_model : onnx.ModelProto
    x : numpy.ndarray
        Float NCHW inputs.

    Returns
    -------
    list of dict
        As :func:`keras_layer_sqnr`, one entry per quantized node.
    """
    oq = _error_module("onnx_quantization_error")

    x = np.asarray(x, np.float32)
    feed = {float_model.graph.input[0].name: x}

    def compare(foutputs, qoutputs, qscales, per_channel=False):
        info = np.iinfo(qoutputs.dtype)
        top = float(np.mean((qoutputs <= info.min) | (qoutputs >= info.max)))
        q = oq._dequantize(qoutputs, qscales)
        return {"sqnr": sqnr_db(foutputs, q), "top": round(100 * top, 2)}

    return _measure(oq, float_model, quantized_model,
                    generate_onnx_random_samples=lambda *a, **k: dict(feed),
                    compare_outputs=compare)


def _measure(module, float_model, quantized_model, **patches) -> list[dict]:
    """QuantizeML's cumulative and per-layer error functions of ``module`` with
    ``patches`` (real inputs, SQNR); a failure is an entry with its ``error``."""
    out = {}
    for kind, fn in (("cumulative", module.cumulative_quantization_error),
                     ("local", module.quantization_error)):
        with _patched(module, eval_metrics=lambda m: m, **patches):
            try:
                result = fn(float_model, quantized_model)
            except Exception as exc:  # noqa: BLE001 - a figure is optional, its reason is not
                out[f"_error_{kind}"] = {"layer": "-", "error": f"{kind}: {exc}"}
                continue
        for key, value in result.items():
            name = key.split(" (")[0]
            entry = out.setdefault(name, {"layer": name})
            entry[kind] = value["sqnr"]
            entry.setdefault("top code", value["top"])
    return list(out.values())


def summarize(layers: list[dict]) -> str:
    """One line: each layer's cumulative/local SQNR and top-code share, then the layer
    with the lowest local SQNR and the layer where the cumulative SQNR drops most."""
    if not layers:
        return "no quantized layer measured"
    errors = [e["error"] for e in layers if "error" in e]
    layers = [e for e in layers if "error" not in e]
    parts = []
    for e in layers:
        cum, loc = e.get("cumulative"), e.get("local")
        parts.append(f"{e['layer']} {_db(cum)}/{_db(loc)} ({e.get('top code', 0):g} % top)")
    text = "per-layer SQNR, cumulative/local dB (share at the top code): " + "; ".join(parts)
    local = [e for e in layers if e.get("local") is not None]
    if local:
        worst = min(local, key=lambda e: e["local"])
        text += f". Lowest local SQNR: {worst['layer']} ({worst['local']:.1f} dB)"
    drops = [(prev["cumulative"] - e["cumulative"], e["layer"])
             for prev, e in zip(layers, layers[1:])
             if prev.get("cumulative") is not None and e.get("cumulative") is not None]
    if drops:
        drop, layer = max(drops)
        text += f"; largest cumulative drop: {drop:.1f} dB at {layer}"
    if errors:
        text += f" (not measured: {'; '.join(errors)})"
    return text


def _db(value) -> str:
    return "-" if value is None else f"{value:.1f}"
