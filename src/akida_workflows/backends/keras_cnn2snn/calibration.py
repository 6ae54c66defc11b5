"""Per-channel weight calibration written into a QuantizeML Keras model.

:func:`_calibrate_weights` sets each quantized kernel so that QuantizeML (and
CNN2SNN after it) derive exactly the codes of
:func:`akida_workflows.int4.quantize_per_channel`, and reports them per kernel.
"""

from __future__ import annotations

import numpy as np

from ...errors import IncompatibleModelError

#: (weight quantizer attribute, kernel attribute) of QuantizeML's quantized layers:
#: Conv2D / Dense (``kernel``), DepthwiseConv2D (``depthwise_kernel``), SeparableConv2D.
_WEIGHT_KERNELS = (
    ("weight_quantizer", "kernel"),
    ("weight_quantizer", "depthwise_kernel"),
    ("dw_weight_quantizer", "depthwise_kernel"),
    ("pw_weight_quantizer", "pointwise_kernel"),
)
#: QuantizeML's WeightQuantizer never uses a scale below this (tf.maximum(scales, 1e-6)).
_QUANTIZEML_MIN_SCALE = 1e-6
#: Layer types whose weight quantizer sees the kernel as stored (not transposed).
_CALIBRATED_LAYER_TYPES = ("QuantizedConv2D", "QuantizedDense", "QuantizedDepthwiseConv2D",
                           "QuantizedSeparableConv2D")


def _weight_kernels(quantized):
    """(layer, kernel attribute, quantizer, kernel variable) of each quantized weight."""
    from quantizeml.layers import WeightQuantizer

    out = []
    for layer in quantized.layers:
        for qattr, kattr in _WEIGHT_KERNELS:
            quantizer, kernel = getattr(layer, qattr, None), getattr(layer, kattr, None)
            if isinstance(quantizer, WeightQuantizer) and kernel is not None:
                out.append((layer, kattr, quantizer, kernel))
    return out


def _quantizer_output(quantizer, kernel) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes (what CNN2SNN writes into Akida) and float values QuantizeML gives."""
    qfloat = quantizer(kernel)
    return qfloat.fp.values.numpy(), qfloat.to_float().numpy()


def _calibrate_weights(quantized, method: str, percentile: float):
    """Write the per-channel codes of :mod:`akida_workflows.int4` into a quantized model.

    QuantizeML's ``WeightQuantizer`` maps each channel's max-abs to the largest
    code. Setting each kernel to ``dequantize(q, scales)`` of
    ``quantize_per_channel(kernel, method=..., narrow_range=True)`` makes that
    max-abs the calibrated range, so QuantizeML, and CNN2SNN after it, derive
    exactly the codes ``q``; this is checked here, layer by layer. Channels whose
    scale would fall under QuantizeML's floor (1e-6) keep QuantizeML's own codes.

    Returns
    -------
    list of dict
        Per kernel: layer, kernel, bits, channels, clipped channels, kept channels,
        weight SQNR (dB) with max-abs and with ``method``.
    """
    from ...int4 import dequantize, quantize_per_channel, sqnr_db

    rows = []
    for layer, kattr, quantizer, kernel in _weight_kernels(quantized):
        label = f"{layer.name} ({type(layer).__name__}.{kattr})"
        if method != "maxabs" and type(layer).__name__ not in _CALIBRATED_LAYER_TYPES:
            raise IncompatibleModelError(
                f"{label}: weight_calibration={method!r} is not implemented for this layer "
                "type; use weight_calibration='maxabs' (QuantizeML's own)", nodes=[layer.name])
        w = kernel.numpy()
        bits = int(quantizer.bitwidth)
        # Channels first, whatever the quantizer's axis (None: one range for the tensor).
        flat = (w.reshape(1, -1) if quantizer.axis is None
                else np.moveaxis(w, quantizer.axis, 0).reshape(w.shape[quantizer.axis], -1))
        q_max, s_max = quantize_per_channel(flat, 0, bits, "maxabs", narrow_range=True)
        q, scales = quantize_per_channel(flat, 0, bits, method, percentile=percentile,
                                         narrow_range=True)
        keep = (scales < _QUANTIZEML_MIN_SCALE) & (s_max > 0)
        if method != "maxabs":  # max-abs is QuantizeML's own: nothing to write
            w_hat = np.where(keep[:, None], flat, dequantize(q, scales, 0))
            if quantizer.axis is None:
                kernel.assign(w_hat.reshape(w.shape))
            else:
                moved = np.moveaxis(w, quantizer.axis, 0).shape
                kernel.assign(np.moveaxis(w_hat.reshape(moved), 0, quantizer.axis))
        codes, deployed = (
            a.reshape(1, -1) if quantizer.axis is None
            else np.moveaxis(a, quantizer.axis, 0).reshape(len(flat), -1)
            for a in _quantizer_output(quantizer, kernel))
        if method != "maxabs" and not np.array_equal(codes[~keep], q[~keep]):
            raise IncompatibleModelError(
                f"{label}: QuantizeML did not keep the {method!r} codes written into the "
                "kernel; report this with the model, or use weight_calibration='maxabs'",
                nodes=[layer.name])
        rows.append({
            "layer": layer.name, "kernel": kattr, "bits": bits,
            "channels": len(scales), "clipped": int(np.sum(scales < s_max)),
            "kept": int(keep.sum()),
            "sqnr_maxabs_db": sqnr_db(flat, dequantize(q_max, s_max, 0)),
            "sqnr_db": sqnr_db(flat, deployed),
        })
    return rows
