"""Symmetric int4 (and other small bit-width) weight quantization, and nibble packing.

Akida 1.0 chips (AKD1000, AKD1500) store weights in 1, 2 or 4 bits. This
module gives the numerics to study and export such weights outside the Keras
toolchain: per-tensor and per-channel symmetric quantization with a choice of
calibrator, dequantization, packing two int4 values per byte, and a per-layer
error report.

Conventions
-----------
- Symmetric, zero-point 0: ``q = clip(round(w / scale), -2**(bits-1), 2**(bits-1) - 1)``,
  so int4 values are in ``[-8, 7]``; ``w ≈ q * scale``. ``round`` is half-to-even and
  ``w / scale`` a float32 division, as in QuantizeML.
- ``narrow_range=True`` is the convention of QuantizeML's ``WeightQuantizer``, hence of
  the weights an Akida model carries: codes in ``[-(2**(bits-1) - 1), 2**(bits-1) - 1]``
  (``[-7, 7]`` for int4) and each channel's range (the value mapped to the largest
  code) at most its own max-abs. :func:`akida_workflows.keras_bridge.quantize_4bit`
  writes these codes into the quantized model.
- ``scale = 0`` for an all-zero tensor or channel (its ``q`` is all zeros):
  no division by zero, and dequantization gives zeros back.
- Packing: two's-complement nibbles, **low nibble first**, no header;
  ``n`` values take ``(n + 1) // 2`` bytes, the last high nibble zero when ``n``
  is odd.
"""

from __future__ import annotations

import numpy as np

from .errors import QuantizationError
from .tables import Table

__all__ = [
    "QuantizationError",
    "METHODS",
    "MSE_GRID",
    "quantize_per_tensor",
    "quantize_per_channel",
    "dequantize",
    "pack_int4",
    "unpack_int4",
    "sqnr_db",
    "fake_quantize_weights",
    "quantization_error_report",
]

#: Calibrators of :func:`quantize_per_channel`.
METHODS = ("maxabs", "mse", "percentile")
#: Clipping ratios (of each channel's max-abs) the MSE calibrator tries.
MSE_GRID = np.linspace(0.2, 1.0, 81, dtype=np.float32)


def _qrange(bits: int, narrow_range: bool = False) -> tuple[int, int]:
    if not isinstance(bits, (int, np.integer)) or not 2 <= bits <= 8:
        raise QuantizationError(f"bits must be an integer in 2..8, got {bits!r}")
    qmax = (1 << (bits - 1)) - 1
    return (-qmax if narrow_range else -qmax - 1), qmax


def _as_finite_float(w, what: str = "weights") -> np.ndarray:
    w = np.asarray(w)
    if not (np.issubdtype(w.dtype, np.floating) or np.issubdtype(w.dtype, np.integer)):
        raise QuantizationError(f"{what} must be numeric, got {w.dtype}")
    w = w.astype(np.float32, copy=False)
    if w.size and not np.isfinite(w).all():
        bad = int((~np.isfinite(w)).sum())
        raise QuantizationError(f"{what} hold {bad} NaN/inf value(s); fix them before quantizing")
    return w


_TINY = np.finfo(np.float32).tiny


def _flush(scale):
    """Scales below float32's smallest normal number are 0 (1/scale would overflow)."""
    scale = np.asarray(scale, dtype=np.float32)
    return np.where(scale >= _TINY, scale, np.float32(0.0)).astype(np.float32)


def _quantize_with_scale(w: np.ndarray, scale: np.ndarray, qmin: int, qmax: int) -> np.ndarray:
    """round(w / scale) clipped, as int8; scale 0 gives 0. ``scale`` broadcasts to ``w``.

    A float32 division then half-to-even rounding: bit for bit what QuantizeML's
    ``QFloat.quantize`` computes, so codes agree at rounding ties too.
    """
    safe = np.where(scale > 0, scale, np.float32(1.0)).astype(np.float32)
    tmp = np.divide(w, safe, dtype=np.float32)
    np.rint(tmp, out=tmp)
    np.clip(tmp, qmin, qmax, out=tmp)
    if np.any(scale == 0):
        tmp *= (scale > 0)
    return tmp.astype(np.int8)


def quantize_per_tensor(w, bits: int = 4) -> tuple[np.ndarray, float]:
    """One symmetric scale for the whole tensor (max-abs calibration).

    Parameters
    ----------
    w : array-like
        Weights, any shape.
    bits : int, default 4

    Returns
    -------
    (numpy.ndarray, float)
        ``q`` (``int8``, same shape, in ``[-2**(bits-1), 2**(bits-1) - 1]``) and ``scale``.

    Raises
    ------
    QuantizationError
        NaN/inf weights or an invalid ``bits``.

    Examples
    --------
    >>> q, scale = quantize_per_tensor([0.7, -0.35, 0.0])
    >>> q.tolist(), round(scale, 3)
    ([7, -4, 0], 0.1)
    """
    qmin, qmax = _qrange(bits)
    w = _as_finite_float(w)
    maxabs = float(np.abs(w).max()) if w.size else 0.0
    scale = _flush(maxabs / qmax)
    return _quantize_with_scale(w, scale, qmin, qmax), float(scale)


def _channels_first(w: np.ndarray, axis: int) -> np.ndarray:
    if w.ndim == 0:
        raise QuantizationError("per-channel quantization needs at least a 1-D array")
    if not isinstance(axis, (int, np.integer)) or not -w.ndim <= axis < w.ndim:
        raise QuantizationError(f"axis {axis!r} is out of range for a {w.ndim}-D array {w.shape}")
    return np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)


def _channel_scales(flat: np.ndarray, method: str, qmin: int, qmax: int,
                    percentile: float, narrow_range: bool) -> np.ndarray:
    maxabs = np.abs(flat).max(axis=1) if flat.shape[1] else np.zeros(len(flat), np.float32)
    # A scale is always range / qmax with the range a float32 (as QuantizeML computes it).
    if method == "maxabs":
        return maxabs / np.float32(qmax)
    if method == "percentile":
        clip = np.percentile(np.abs(flat), percentile, axis=1).astype(np.float32)
        return np.minimum(np.maximum(clip, 0), maxabs) / np.float32(qmax)
    # "mse": per channel, the clipping of max-abs minimising the squared error. Outside
    # the narrow (QuantizeML) convention the per-tensor scale is a candidate too, so
    # per-channel MSE is never worse than per-tensor max-abs, channel by channel.
    best_scale = maxabs / np.float32(qmax)
    best_err = np.full(len(flat), np.inf, dtype=np.float64)
    candidates = [_flush((maxabs * ratio) / np.float32(qmax)) for ratio in MSE_GRID]
    if not narrow_range:
        tensor_max = np.float32(maxabs.max()) if maxabs.size else np.float32(0.0)
        candidates.append(_flush(np.full_like(maxabs, tensor_max / np.float32(qmax))))
    for scale in candidates:
        q = _quantize_with_scale(flat, scale[:, None], qmin, qmax)
        err = ((q.astype(np.float32) * scale[:, None] - flat) ** 2).sum(axis=1, dtype=np.float64)
        better = err < best_err
        best_err = np.where(better, err, best_err)
        best_scale = np.where(better, scale, best_scale)
    return best_scale


def _check_percentile(percentile) -> None:
    if (isinstance(percentile, bool) or not isinstance(percentile, (int, float, np.number))
            or not 0 < percentile <= 100):
        raise QuantizationError(f"percentile must be a number in (0, 100], got {percentile!r}")


def quantize_per_channel(w, axis: int = 0, bits: int = 4, method: str = "maxabs", *,
                         percentile: float = 99.9,
                         narrow_range: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """One symmetric scale per slice along ``axis`` (the output channels).

    Parameters
    ----------
    w : array-like
        Weights, e.g. PyTorch Conv2d ``(out, in, kh, kw)`` with ``axis=0``, or
        Keras Conv2D ``(kh, kw, in, out)`` with ``axis=-1``.
    axis : int, default 0
    bits : int, default 4
    method : {"maxabs", "mse", "percentile"}, default "maxabs"
        ``"maxabs"`` maps each channel's largest magnitude to the largest
        code (error at most half a step per weight); ``"mse"`` searches, per
        channel, the scale minimising the squared error among clippings of
        that range (:data:`MSE_GRID`) and the per-tensor scale, so it is never
        worse than either max-abs or per-tensor quantization; ``"percentile"``
        clips at the ``percentile``-th percentile of ``|w|``.
    percentile : float, default 99.9
        In ``(0, 100]``; used by ``method="percentile"``.
    narrow_range : bool, default False
        QuantizeML's (and so Akida's) convention: codes in ``[-qmax, qmax]``
        (``[-7, 7]`` for int4) and each channel's range at most its max-abs
        (the MSE search then leaves out the per-tensor candidate). The codes
        :func:`~akida_workflows.keras_bridge.quantize_4bit` deploys.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ``q`` (``int8``, same shape as ``w``) and ``scales`` (``float32``, one
        per channel; 0 for an all-zero channel).

    Raises
    ------
    QuantizationError
        NaN/inf weights, an out-of-range ``axis``, an unknown ``method`` or ``bits``.
    """
    qmin, qmax = _qrange(bits, narrow_range)
    if method not in METHODS:
        raise QuantizationError(f"unknown method {method!r}; choose one of {METHODS}")
    _check_percentile(percentile)
    w = _as_finite_float(w)
    flat = _channels_first(w, axis)
    scales = _flush(_channel_scales(flat, method, qmin, qmax, percentile, narrow_range))
    q = _quantize_with_scale(flat, scales[:, None], qmin, qmax)
    moved = list(np.moveaxis(w, axis, 0).shape)
    q = np.moveaxis(q.reshape(moved), 0, axis)
    return np.ascontiguousarray(q), scales


def dequantize(q, scales, axis: int = 0) -> np.ndarray:
    """``q * scale``, with one scale or one per slice along ``axis``.

    Parameters
    ----------
    q : array-like of int
    scales : float or 1-D array
        A scalar (per-tensor) or one scale per slice along ``axis``.
    axis : int, default 0

    Returns
    -------
    numpy.ndarray
        ``float32``, same shape as ``q``.
    """
    q = np.asarray(q)
    scales = np.asarray(scales, dtype=np.float32)
    if scales.ndim == 0:
        return q.astype(np.float32) * scales
    if q.ndim == 0 or not -q.ndim <= axis < q.ndim:
        raise QuantizationError(f"axis {axis!r} is out of range for a {q.ndim}-D array")
    if scales.shape != (q.shape[axis],):
        raise QuantizationError(
            f"{scales.shape[0] if scales.ndim == 1 else scales.shape} scales for "
            f"{q.shape[axis]} channels along axis {axis}"
        )
    shape = [1] * q.ndim
    shape[axis] = -1
    return q.astype(np.float32) * scales.reshape(shape)


def pack_int4(q) -> np.ndarray:
    """Pack int4 values two per byte: two's complement, low nibble first.

    Parameters
    ----------
    q : array-like of int in [-8, 7]
        Flattened in C order.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of ``(n + 1) // 2`` bytes.

    Raises
    ------
    QuantizationError
        Non-integer values or values outside [-8, 7].

    Examples
    --------
    >>> pack_int4([1, -1, 7]).tolist()
    [241, 7]
    """
    q = np.asarray(q).ravel()
    if q.dtype == np.bool_ or not (
        np.issubdtype(q.dtype, np.integer) or np.issubdtype(q.dtype, np.floating)
    ):
        raise QuantizationError(f"pack_int4 takes integers, got {q.dtype}")
    if np.issubdtype(q.dtype, np.floating):
        if not np.isfinite(q).all() or not np.array_equal(q, np.round(q)):
            raise QuantizationError("pack_int4 takes integers; got non-integer values")
    if q.size and (q.min() < -8 or q.max() > 7):
        raise QuantizationError(
            f"int4 values must be in [-8, 7]; got values in [{q.min()}, {q.max()}]"
        )
    nibbles = q.astype(np.int8).view(np.uint8) & np.uint8(0x0F)
    if nibbles.size % 2:
        nibbles = np.concatenate([nibbles, np.zeros(1, np.uint8)])
    return (nibbles[0::2] | (nibbles[1::2] << np.uint8(4))).astype(np.uint8)


def unpack_int4(packed, n: int) -> np.ndarray:
    """Inverse of :func:`pack_int4`: the first ``n`` int4 values, as ``int8``.

    Raises
    ------
    QuantizationError
        ``packed`` is not bytes-like ``uint8`` data or too short for ``n`` values.
    """
    if isinstance(packed, (bytes, bytearray, memoryview)):
        packed = np.frombuffer(packed, dtype=np.uint8)
    packed = np.asarray(packed)
    if packed.dtype != np.uint8:
        raise QuantizationError(f"packed data must be uint8, got {packed.dtype}")
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise QuantizationError(f"n must be a non-negative integer, got {n!r}")
    packed = packed.ravel()
    need = (n + 1) // 2
    if packed.size < need:
        raise QuantizationError(
            f"{packed.size} packed bytes hold at most {2 * packed.size} values, {n} asked"
        )
    packed = packed[:need]
    out = np.empty(2 * need, dtype=np.uint8)
    out[0::2] = packed & np.uint8(0x0F)
    out[1::2] = packed >> np.uint8(4)
    values = out[:n].astype(np.int8)
    return ((values ^ np.int8(8)) - np.int8(8)).astype(np.int8)


def sqnr_db(w, w_hat) -> float:
    """Signal-to-quantization-noise ratio ``10 log10(Σw² / Σ(w - ŵ)²)`` in dB (inf if exact)."""
    w = np.asarray(w, dtype=np.float64)
    noise = float(((w - np.asarray(w_hat, dtype=np.float64)) ** 2).sum())
    signal = float((w ** 2).sum())
    if noise == 0:
        return float("inf")
    if signal == 0:
        return float("-inf")
    return 10.0 * np.log10(signal / noise)


def _weighted_layers(model):
    from torch import nn

    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))]


def fake_quantize_weights(model, bits: int = 4, per_channel: bool = True,
                          method: str = "maxabs", *, percentile: float = 99.9,
                          narrow_range: bool = False):
    """A copy of a PyTorch model whose Conv/Linear weights are quantized then dequantized.

    Activations and biases stay in float: this isolates the effect of weight
    quantization on accuracy ("weights-only" fake quantization).

    Parameters
    ----------
    model : torch.nn.Module
    bits : int, default 4
    per_channel : bool, default True
        One scale per output channel (with ``method``), else one max-abs scale per tensor.
    method, percentile, narrow_range
        As in :func:`quantize_per_channel` (``narrow_range=True``: the codes an
        Akida model carries).

    Returns
    -------
    torch.nn.Module
    """
    import copy

    import torch

    out = copy.deepcopy(model).eval()
    with torch.no_grad():
        for name, module in _weighted_layers(out):
            w = module.weight.detach().cpu().numpy()
            try:
                if per_channel:
                    q, scales = quantize_per_channel(w, axis=0, bits=bits, method=method,
                                                     percentile=percentile,
                                                     narrow_range=narrow_range)
                    w_hat = dequantize(q, scales, axis=0)
                else:
                    q, scale = quantize_per_tensor(w, bits=bits)
                    w_hat = dequantize(q, scale)
            except QuantizationError as exc:
                raise QuantizationError(f"{name}: {exc}") from exc
            module.weight.copy_(torch.from_numpy(w_hat).to(module.weight.dtype))
    return out


def quantization_error_report(model, bits: int = 4, method: str = "maxabs", *,
                              percentile: float = 99.9, narrow_range: bool = False):
    """Per layer: per-tensor vs per-channel SQNR (dB) and max abs error of the weights.

    Parameters
    ----------
    model : torch.nn.Module
        Its Conv and Linear layers are analysed (fold BatchNorm first).
    bits : int, default 4
    method : str, default "maxabs"
        Calibrator of the per-channel column (see :func:`quantize_per_channel`).
    percentile, narrow_range
        As in :func:`quantize_per_channel`, for the per-channel column.

    Returns
    -------
    akida_workflows.evaluate.Table
        Prints as text, renders as HTML; ``.rows`` holds the numbers.
    """
    rows, records = [], []
    for name, module in _weighted_layers(model):
        w = module.weight.detach().cpu().numpy()
        try:
            qt, st = quantize_per_tensor(w, bits)
            qc, sc = quantize_per_channel(w, 0, bits, method, percentile=percentile,
                                          narrow_range=narrow_range)
        except QuantizationError as exc:
            raise QuantizationError(f"{name}: {exc}") from exc
        wt, wc = dequantize(qt, st), dequantize(qc, sc, axis=0)
        row = {
            "layer": name, "type": type(module).__name__, "weights": int(w.size),
            "sqnr_tensor_db": sqnr_db(w, wt), "sqnr_channel_db": sqnr_db(w, wc),
            "max_err_tensor": float(np.abs(w - wt).max()),
            "max_err_channel": float(np.abs(w - wc).max()),
        }
        rows.append(row)
        records.append({
            "layer": f"{name} ({row['type']})", "weights": f"{row['weights']:,}",
            "SQNR per-tensor": f"{row['sqnr_tensor_db']:.1f} dB",
            f"SQNR per-channel ({method})": f"{row['sqnr_channel_db']:.1f} dB",
            "max error per-tensor": f"{row['max_err_tensor']:.4f}",
            "max error per-channel": f"{row['max_err_channel']:.4f}",
        })
    table = Table(records, title=f"int{bits} weight quantization error")
    table.rows = rows
    return table
